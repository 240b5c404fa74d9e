// The Train panel: the mini model trains in the browser, fp32 and DeepSeek-V3's FP8 recipe side by
// side, each in its own Web Worker (web/train_worker.cpp) so the page never waits for a step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <imgui.h>
#include <nlohmann/json.hpp>

#include "panel.hpp"

namespace eva::web {

/// Bytes fetched from beside the page (the corpus, the pretrained checkpoint), once, on demand.
struct FetchedFile {
    enum class State { none, loading, ready, failed } state = State::none;
    const char* url = "";
    std::string bytes;
};

struct TrainPanel;

/// One trainer: its worker and what it has reported so far, step by step.
struct TrainRun {
    const char* label = "";      // legend text
    const char* precision = "";  // the worker's LinearPrecision: "fp32" or "fp8"
    ImU32 colour = 0;
    TrainPanel* panel = nullptr;
    int worker = -1;             // Emscripten worker handle, -1: none
    enum class State { off, starting, ready, failed } state = State::off;
    bool busy = false;           // a call is in flight (at most one per worker)
    std::string error;
    long long params = 0;
    int experts = 0, tokens_per_step = 0;
    std::vector<float> steps, loss, loss_ema, grad_norm, seconds;  // one entry per optimizer step
    std::vector<std::vector<float>> max_vio;  // [MoE layer][step] of each step's batch
    std::vector<std::vector<float>> max_vio_window;  // [MoE layer][step] of the load over the last train_protocol::kVioWindow steps
    std::vector<std::vector<double>> shares;  // [MoE layer][step][expert] each expert's share of the top-k slots
    std::vector<float> load;                  // [step][expert] of the last MoE layer, load / mean load
    std::vector<float> bias;                  // [step][expert] the last MoE layer's selection bias after each step
    std::vector<float> val_steps, val_loss;
    std::string sample;
    int sample_step = 0;
    double next_sample_ms = 0;
    double tokens_per_s() const;  // median over the last 20 steps
    void clear();
};

struct TrainPanel {
    // Settings, applied when training (re)starts; their defaults are train_protocol::default_settings().
    int batch = 0, seq_len = 0, warmup = 0, schedule_steps = 0;
    float lr = 0;
    float gamma = 0;  // the aux-free bias update speed (V3: 0.001; see train_protocol::kPanelGamma)
    bool train_fp32 = true, train_fp8 = true, from_pretrained = false;
    int seed = 1;
    // Run state.
    bool running = false, start_pending = false;
    FetchedFile corpus, checkpoint;  // corpus.txt and mini.safetensors beside the page
    TrainRun runs[2];
    int load_run = 0;  // whose expert loads the heatmap shows
    std::string message;
    Rect button_rect;                     // the start/pause button, for tests driving the page
    Rect reset_rect;                      // the reset button

    TrainPanel();
    void start();  // fetch what is missing, then start a worker per enabled trainer
    void reset();  // terminate the workers, forget every curve
};

void train_panel(TrainPanel& state, Pretrained&);
/// The panel's state (window.eva.state("train")): per trainer its steps, losses, MaxVio, speed and sample.
nlohmann::json train_state(const TrainPanel& state);
/// The settings from / to the query string: batch, seq_len, lr, warmup, gamma, fp32=0|1, fp8=0|1.
void train_from_query(TrainPanel& p, const Query& q);
Query train_to_query(const TrainPanel& p);
std::string train_summary(const TrainPanel& state);
/// Figures for window.eva.selfTest(): a few steps of mini training from a fixed seed on fixed text,
/// computed by the wasm core (the browser test repeats them with the native `eva train`).
nlohmann::json train_self_test();

}  // namespace eva::web
