// eva — a training run's figures step by step, as a front end draws them: the loss and its moving
// average, each MoE layer's MaxVio of the step's batch and of the load summed over the last steps, the
// last MoE layer's load and selection bias per expert, the speed. The browser's Train panel keeps one
// per trainer and only draws it; tests/test_train_panel.cpp checks the panel's balancing lesson on the
// same figures.
#pragma once

#include <cstddef>
#include <vector>

#include "eva/trainer.hpp"

namespace eva {

struct TrainHistory {
    /// Steps over which each expert's load is summed for the windowed MaxVio (20 × 512 top-2 slots: the
    /// chance fluctuation of the busiest of 16 experts is then ~0.1, far below 1).
    static constexpr std::size_t kVioWindow = 20;

    std::vector<float> steps, loss, loss_ema, grad_norm, seconds;  // one entry per optimizer step
    std::vector<std::vector<float>> max_vio;         // [MoE layer][step] of each step's batch
    std::vector<std::vector<float>> max_vio_window;  // [MoE layer][step] of the load over the last kVioWindow steps
    std::vector<std::vector<double>> shares;         // [MoE layer][step · experts] each expert's share of the top-k slots
    std::vector<float> load;  // [step · experts] of the last MoE layer: share / even share (1 = even)
    std::vector<float> bias;  // [step · experts] the last MoE layer's selection bias after each step
    std::vector<float> val_steps, val_loss;
    std::size_t tokens_per_step = 0;

    /// Appends one optimizer step.
    void add(const StepStats& s);
    /// A validation loss measured after the latest step.
    void add_validation(double loss);
    /// Routed experts of the last MoE layer (0 before the first step or without MoE layers).
    std::size_t experts() const { return steps.empty() ? 0 : load.size() / steps.size(); }
    /// The last min(n, steps) steps of `load` or `bias` as [experts, steps] row-major: each expert's
    /// history a row, time left to right, as a heatmap draws it.
    std::vector<float> expert_rows(const std::vector<float>& per_step, std::size_t n) const;
    /// Tokens per second from the median time of the last 20 steps (a step slowed by the machine does
    /// not move it); 0 before the first step.
    double tokens_per_s() const;
};

/// The bias update speed γ of the browser's Train panel. DeepSeek-V3's γ = 0.001 is tuned for ~14.3T
/// tokens: with ~60M-token batches that is ~2·10^5 steps, over which a bias can travel ±200 — far more than
/// the spread of the gate's scores. The panel's run is a few hundred steps of 256 tokens, in which
/// γ = 0.001 moves a bias by at most 0.2 while the gate's scores drift apart by more (its weights learn at
/// lr 3e-3 per step): the bias cannot keep up and a few experts take most tokens. γ sets how fast the bias
/// can follow; 0.02 per step lets it cross the scores' spread in a few tens of steps, so the load evens out
/// within the first 200 (tests/test_train_panel.cpp checks it), while its ±γ jitter stays small against
/// the gaps between experts' scores.
constexpr double kTrainPanelGamma = 0.02;

/// The Train panel's default run (the settings its controls start from, with γ = kTrainPanelGamma): 4 × 64
/// tokens a step, a 2000-step schedule with 20 warmup steps, and TrainConfig's defaults (lr 3e-3, seed 1).
/// tests/test_train_panel.cpp trains it natively to check the balancing lesson the panel tells, and
/// eva_speed (native/speed.cpp) times its step.
TrainConfig train_panel_config();

/// A curve of at most `max_points` points for drawing: consecutive points averaged in buckets of
/// ceil(n / max_points) (the last may be shorter); returned unchanged when it already fits.
struct Curve {
    std::vector<float> x, y;
};
Curve thin_curve(const std::vector<float>& x, const std::vector<float>& y, std::size_t max_points);

}  // namespace eva
