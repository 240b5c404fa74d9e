// The Train panel talks to its trainers, which run in Web Workers (web/train_worker.cpp), through
// Emscripten's worker calls: the page sends bytes, the worker answers with one JSON message per call.
// This header holds what both sides must agree on: the worker's function names and the layout of the
// start message ({"train": TrainConfig::to_json(), "gamma"}).
#pragma once

#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"

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

}  // namespace eva::web::train_protocol
