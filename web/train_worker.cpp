// The Train panel's trainer, in its own WebAssembly module that runs in a Web Worker (linked with
// -sBUILD_AS_WORKER=1). One optimizer step of the mini model takes far longer than a 16 ms frame even
// for a short batch, so the page cannot run it between frames; here it runs on another thread while
// the page keeps drawing. The page (web/panel_train.cpp) creates one worker per trainer (fp32, FP8)
// and keeps one call in flight per worker: start, then step after step, now and then a sample. Each
// call is answered by one small JSON message. The training itself is eva::Trainer, unchanged: the
// same code as `eva train`.
#include <emscripten.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"
#include "eva/hf_checkpoint.hpp"
#include "eva/trainer.hpp"
#include "train_worker.hpp"

namespace {

namespace tp = eva::web::train_protocol;

// The worker's one training run. A worker module is an isolated program whose entry points are the
// C functions below, so its state lives at file scope; the page discards the whole worker to reset.
struct Session {
    eva::Corpus corpus;
    std::unique_ptr<eva::Model<float>> model;
    std::unique_ptr<eva::Trainer> trainer;
};
std::unique_ptr<Session> session;

void respond(const nlohmann::json& j) {
    // Samples are raw bytes and may cut a UTF-8 sequence: replace invalid bytes rather than throw.
    const std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    emscripten_worker_respond(const_cast<char*>(s.data()), int(s.size()));
}

nlohmann::json request(const char* data, int size) {
    return data && size > 0 ? nlohmann::json::parse(std::string(data, std::size_t(size))) : nlohmann::json::object();
}

// Runs `body` and answers with its JSON, or with {"error": message} if anything in eva throws.
template <class F>
void answer(F body) {
    try {
        respond(body());
    } catch (const std::exception& e) {
        respond({{"error", e.what()}});
    }
}

// The pretrained checkpoint as the page received it (FP8 Linear weights with 128x128 scales, the rest
// BF16), read by the core's checkpoint loader from the worker's in-memory file system, as natively.
eva::Model<float> load_pretrained(const std::string& bytes) {
    const char* path = "/mini.safetensors";
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), std::streamsize(bytes.size()));
        if (!out) throw eva::FileError("mini.safetensors: cannot write it to the worker's file system");
    }
    eva::Model<float> m = eva::load_checkpoint(path);
    std::remove(path);
    return m;
}

}  // namespace

extern "C" {

// The start message (train_worker.hpp): settings, corpus bytes, optionally a checkpoint to continue.
EMSCRIPTEN_KEEPALIVE void eva_train_start(char* data, int size) {
    answer([&] {
        const tp::Start start = tp::unpack_start(data, std::size_t(size));
        auto s = std::make_unique<Session>();
        s->corpus = eva::corpus_from_text(start.corpus, "corpus.txt");
        const eva::TrainConfig cfg = eva::TrainConfig::from_json(start.settings.at("train"));
        s->model = std::make_unique<eva::Model<float>>(start.checkpoint.empty() ? eva::fresh_model(eva::preset("mini"), cfg.seed)
                                                                              : load_pretrained(start.checkpoint));
        eva::set_gamma(*s->model, start.settings.at("gamma").get<double>());
        s->trainer = std::make_unique<eva::Trainer>(*s->model, s->corpus, cfg);
        session = std::move(s);
        return nlohmann::json{{"ok", true}, {"experts", session->model->args.n_routed_experts}};
    });
}

// One optimizer step on a fresh batch; with {"eval": true} also the validation loss afterwards.
EMSCRIPTEN_KEEPALIVE void eva_train_step(char* data, int size) {
    answer([&] {
        if (!session) throw eva::ConfigError("eva_train_step before eva_train_start");
        const nlohmann::json req = request(data, size);
        nlohmann::json out = session->trainer->step().to_json();
        if (req.value("eval", false)) out["val_loss"] = session->trainer->evaluate();
        return out;
    });
}

// Text from the model as it is now: the prompt and `tokens` bytes after it, drawn as `eva train` draws
// its samples (eva::sample_text).
EMSCRIPTEN_KEEPALIVE void eva_train_sample(char* data, int size) {
    answer([&] {
        if (!session) throw eva::ConfigError("eva_train_sample before eva_train_start");
        const nlohmann::json req = request(data, size);
        const std::string prompt = req.value("prompt", std::string("The "));
        const std::string text =
            eva::sample_text(*session->model, prompt, req.value("tokens", 120), req.value("seed", std::uint64_t(1)));
        return nlohmann::json{{"text", prompt + text}, {"step", session->trainer->steps_done()}};
    });
}

}  // extern "C"
