// eva — a training run's figures step by step (train_history.hpp).
#include "eva/train_history.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"

namespace eva {

void TrainHistory::add(const StepStats& s) {
    const float l = float(s.loss);
    steps.push_back(float(s.step));
    loss.push_back(l);
    // An exponential moving average (weight 0.9 on the past) shows the trend through the noise of small
    // batches; it starts at the first loss rather than at 0.
    loss_ema.push_back(loss_ema.empty() ? l : 0.9f * loss_ema.back() + 0.1f * l);
    grad_norm.push_back(float(s.grad_norm));
    seconds.push_back(float(s.seconds));
    tokens_per_step = s.tokens;
    const std::size_t layers = s.max_vio.size();
    if (s.expert_load.size() != layers || (!s.bias.empty() && s.bias.size() != layers))
        throw ShapeError("TrainHistory::add: max_vio, expert_load and bias disagree on the MoE layers");
    max_vio.resize(layers), max_vio_window.resize(layers), shares.resize(layers);
    for (std::size_t l = 0; l < layers; ++l) {
        max_vio[l].push_back(float(s.max_vio[l]));
        const std::size_t E = s.expert_load[l].size();
        shares[l].insert(shares[l].end(), s.expert_load[l].begin(), s.expert_load[l].end());
        const std::size_t n = shares[l].size() / E, w = std::min(n, kVioWindow);
        max_vio_window[l].push_back(float(eva::max_vio(shares[l].data() + (n - w) * E, w, E)));
    }
    if (layers == 0) return;
    for (double f : s.expert_load.back()) load.push_back(float(f * double(s.expert_load.back().size())));
    if (!s.bias.empty()) bias.insert(bias.end(), s.bias.back().begin(), s.bias.back().end());
}

void TrainHistory::add_validation(double l) {
    if (steps.empty()) throw ShapeError("TrainHistory::add_validation before the first step");
    val_steps.push_back(steps.back());
    val_loss.push_back(float(l));
}

std::vector<float> TrainHistory::expert_rows(const std::vector<float>& per_step, std::size_t n) const {
    const std::size_t E = experts(), T = steps.size(), cols = std::min(n, T);
    if (per_step.size() != T * E) throw ShapeError("TrainHistory::expert_rows: not one value per step and expert");
    std::vector<float> rows(E * cols);
    for (std::size_t t = 0; t < cols; ++t)
        for (std::size_t e = 0; e < E; ++e) rows[e * cols + t] = per_step[(T - cols + t) * E + e];
    return rows;
}

double TrainHistory::tokens_per_s() const {
    if (seconds.empty()) return 0;
    std::vector<float> last(seconds.end() - std::min<std::ptrdiff_t>(20, std::ptrdiff_t(seconds.size())), seconds.end());
    std::nth_element(last.begin(), last.begin() + std::ptrdiff_t(last.size() / 2), last.end());
    return double(tokens_per_step) / std::max(1e-9, double(last[last.size() / 2]));
}

Curve thin_curve(const std::vector<float>& x, const std::vector<float>& y, std::size_t max_points) {
    if (x.size() != y.size() || max_points == 0) throw ShapeError("thin_curve: x and y differ in length, or no points");
    const std::size_t n = y.size(), k = (n + max_points - 1) / max_points;
    if (k <= 1) return {x, y};
    Curve c;
    for (std::size_t i = 0; i < n; i += k) {
        const std::size_t e = std::min(n, i + k);
        float sx = 0, sy = 0;
        for (std::size_t j = i; j < e; ++j) sx += x[j], sy += y[j];
        c.x.push_back(sx / float(e - i));
        c.y.push_back(sy / float(e - i));
    }
    return c;
}

TrainConfig train_panel_config() {
    return TrainConfig::from_json({{"batch", 4}, {"seq_len", 64}, {"steps", 2000}, {"warmup_steps", 20}, {"shards", 0}});
}

}  // namespace eva
