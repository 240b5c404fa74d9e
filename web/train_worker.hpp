// The Train panel talks to its trainers, which run in Web Workers (web/train_worker.cpp), through
// Emscripten's worker calls: the page sends bytes, the worker answers with one JSON message per call.
// This header holds what both sides must agree on: the worker's function names, the layout of the
// start message, and how the model and the training run are built from the start settings, so that
// the page's self-test trains exactly what the worker and the native `eva train` do.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/config.hpp"
#include "eva/error.hpp"
#include "eva/model.hpp"
#include "eva/trainer.hpp"

namespace eva::web::train_protocol {

// The worker's entry points (each `void f(char* data, int size)`, answered with emscripten_worker_respond).
constexpr const char* kStart = "eva_train_start";    // start message (below) → {"ok", "params", …} or {"error"}
constexpr const char* kStep = "eva_train_step";      // {"eval": bool} → one optimizer step's statistics
constexpr const char* kSample = "eva_train_sample";  // {"prompt", "tokens", "seed"} → {"text", "step"}
constexpr const char* kScript = "eva_train_worker.js";

/// The start message: a 4-byte little-endian length L, L bytes of JSON settings, then
/// settings["corpus_bytes"] bytes of training text, then (optionally) a whole safetensors checkpoint to
/// continue from instead of a fresh model.
inline std::string pack_start(const nlohmann::json& settings, const std::string& corpus, const std::string& checkpoint) {
    nlohmann::json s = settings;
    s["corpus_bytes"] = corpus.size();
    const std::string head = s.dump();
    const std::uint32_t n = std::uint32_t(head.size());
    std::string out(4, '\0');
    for (int i = 0; i < 4; ++i) out[std::size_t(i)] = char((n >> (8 * i)) & 0xFF);
    return out + head + corpus + checkpoint;
}

struct Start {
    nlohmann::json settings;
    std::string corpus, checkpoint;
};

inline Start unpack_start(const char* data, std::size_t size) {
    if (size < 4) throw FileError("train start message: shorter than its header");
    std::uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= std::uint32_t(std::uint8_t(data[i])) << (8 * i);
    if (size < 4 + std::size_t(n)) throw FileError("train start message: truncated settings");
    Start s;
    s.settings = nlohmann::json::parse(std::string(data + 4, n));
    const std::size_t corpus = s.settings.at("corpus_bytes").get<std::size_t>();
    if (size < 4 + std::size_t(n) + corpus) throw FileError("train start message: truncated corpus");
    s.corpus.assign(data + 4 + n, corpus);
    s.checkpoint.assign(data + 4 + n + corpus, size - 4 - n - corpus);
    return s;
}

/// The bias update speed γ of the Train panel's runs. DeepSeek-V3's γ = 0.001 is tuned for ~14.3T
/// tokens: with ~60M-token batches that is ~2·10^5 steps, over which a bias can travel ±200 — far more than
/// the spread of the gate's scores. The panel's run is a few hundred steps of 256 tokens, in which
/// γ = 0.001 moves a bias by at most 0.2 while the gate's scores drift apart by more (its weights learn at
/// lr 3e-3 per step): the bias cannot keep up and a few experts take most tokens. γ sets how fast the bias
/// can follow; 0.02 per step lets it cross the scores' spread in a few tens of steps, so the load evens out
/// within the first 200 (tests/test_train_panel.cpp checks it), while its ±γ jitter stays small against
/// the gaps between experts' scores.
constexpr double kPanelGamma = 0.02;

/// Steps over which the panel sums each expert's load for its windowed MaxVio (20 × 512 top-2 slots: the
/// chance fluctuation of the busiest of 16 experts is then ~0.1, far below 1).
constexpr int kVioWindow = 20;

/// The Train panel's default run (the settings its controls start from), also what
/// tests/test_train_panel.cpp trains natively to check the balancing lesson the panel tells.
inline nlohmann::json default_settings() {
    return {{"batch", 4}, {"seq_len", 64}, {"steps", 2000}, {"lr", 3e-3}, {"warmup", 20},
            {"seed", 1},  {"gamma", kPanelGamma}, {"precision", "fp32"}};
}

/// The training run of the settings {"batch", "seq_len", "steps", "lr", "warmup", "seed", "precision"}:
/// everything else is TrainConfig's default, as in `eva train`.
inline TrainConfig train_config(const nlohmann::json& s) {
    TrainConfig t;
    t.batch = s.at("batch");
    t.seq_len = s.at("seq_len");
    t.steps = s.at("steps");
    t.schedule.lr = s.at("lr");
    t.schedule.warmup_steps = s.at("warmup");
    t.schedule.total_steps = t.steps;
    t.seed = s.at("seed");
    t.precision = parse_linear_precision(s.at("precision").get<std::string>());
    return t;
}

/// A freshly initialized model exactly as `eva train --config C --seed S --gamma G` builds it (aux-free
/// balancing, N(0, 0.006²) weights; γ defaults to V3's 0.001, `eva train`'s default). This is also the
/// untrained fallback the page shows without a checkpoint (`eva init --config mini --seed 1`).
inline Model<float> fresh_model(const ModelArgs& args, std::uint64_t seed, double gamma = 0.001) {
    Rng rng(seed);
    return model_init<float>(args, moe_config(args, Balance::aux_free, gamma), rng);
}

/// Sets the bias update speed γ of every MoE layer of `m` (its config and each block's copy, MTP
/// modules included): a run continuing a checkpoint uses the panel's γ, not the one it was trained with.
inline void set_gamma(Model<float>& m, double gamma) {
    m.moe.gamma = gamma;
    m.moe.validate();
    for (auto& b : m.w.layers)
        if (!b.dense) b.moe.cfg.gamma = gamma;
    for (auto& k : m.w.mtp)
        if (!k.block.dense) k.block.moe.cfg.gamma = gamma;
}

}  // namespace eva::web::train_protocol
