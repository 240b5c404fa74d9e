// The Train panel talks to its trainers, which run in Web Workers (web/train_worker.cpp), through
// Emscripten's worker calls: the page sends bytes, the worker answers with one JSON message per call.
// This header holds what both sides must agree on: the worker's function names, the layout of the
// start message ({"train": TrainConfig::to_json(), "gamma"}), and the panel's default run.
#pragma once

#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"
#include "eva/trainer.hpp"

namespace eva::web::train_protocol {

// The worker's entry points (each `void f(char* data, int size)`, answered with emscripten_worker_respond).
constexpr const char* kStart = "eva_train_start";    // start message (below) → {"ok", "experts"} or {"error"}
constexpr const char* kStep = "eva_train_step";      // {"eval": bool} → one optimizer step's statistics
constexpr const char* kSample = "eva_train_sample";  // {"prompt", "tokens", "seed"} → {"text", "step"}
constexpr const char* kScript = "eva_train_worker.js";

/// The start message: one line of JSON settings (dump() writes no raw newline), then
/// settings["corpus_bytes"] bytes of training text, then (optionally) a whole safetensors checkpoint to
/// continue from instead of a fresh model.
inline std::string pack_start(nlohmann::json settings, const std::string& corpus, const std::string& checkpoint) {
    settings["corpus_bytes"] = corpus.size();
    return settings.dump() + "\n" + corpus + checkpoint;
}

struct Start {
    nlohmann::json settings;
    std::string corpus, checkpoint;
};

inline Start unpack_start(const char* data, std::size_t size) {
    const char* end = static_cast<const char*>(std::memchr(data, '\n', size));
    if (!end) throw FileError("train start message: no settings line");
    Start s;
    s.settings = nlohmann::json::parse(data, end);
    const std::size_t head = std::size_t(end - data) + 1, corpus = s.settings.at("corpus_bytes").get<std::size_t>();
    if (size - head < corpus) throw FileError("train start message: truncated corpus");
    s.corpus.assign(end + 1, corpus);
    s.checkpoint.assign(end + 1 + corpus, size - head - corpus);
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

/// The Train panel's default run (the settings its controls start from, with γ = kPanelGamma), also what
/// tests/test_train_panel.cpp trains natively to check the balancing lesson the panel tells: 4 × 64
/// tokens a step, a 2000-step schedule with 20 warmup steps, and TrainConfig's defaults (lr 3e-3, seed 1).
inline TrainConfig default_config() {
    return TrainConfig::from_json({{"batch", 4}, {"seq_len", 64}, {"steps", 2000}, {"warmup_steps", 20}, {"shards", 0}});
}

}  // namespace eva::web::train_protocol
