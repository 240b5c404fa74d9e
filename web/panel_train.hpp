// The Train panel: the mini model trains in the browser, fp32 and DeepSeek-V3's FP8 recipe side by
// side, each in its own Web Worker (web/train_worker.cpp) so the page never waits for a step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <imgui.h>
#include <nlohmann/json.hpp>

#include "eva/train_history.hpp"
#include "panel.hpp"

namespace eva::web {

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
    TrainHistory h;  // its figures, step by step
    std::string sample;
    int sample_step = 0;
    double next_sample_ms = 0;
    void clear();
};

struct TrainPanel {
    // Settings, applied when training (re)starts, from train_panel_config() and kTrainPanelGamma.
    TrainConfig cfg;
    float gamma = 0;  // the aux-free bias update speed (V3: 0.001; see eva::kTrainPanelGamma)
    bool train_fp32 = true, train_fp8 = true, from_pretrained = false;
    // Run state.
    bool running = false, start_pending = false;
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
/// Figures for window.eva.selfTest(): a few steps of training the `tiny` preset from a fixed seed on fixed
/// text, computed by the wasm core (the browser test repeats them with the native `eva train --config tiny`).
nlohmann::json train_self_test();

}  // namespace eva::web
