// eva — training pieces that do not depend on the architecture: the cross-entropy loss, AdamW with
// decoupled weight decay, the warmup + cosine learning-rate schedule, and global gradient-norm clipping.
//
// AdamW follows Loshchilov & Hutter and PyTorch's torch.optim.AdamW step for step, so that a training
// run can be compared with PyTorch's loss for loss:
//   θ ← θ − lr·λ·θ                               (decoupled decay, only for tensors marked `decay`)
//   m ← β1·m + (1−β1)·g,   v ← β2·v + (1−β2)·g²
//   θ ← θ − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)
// DeepSeek-V3 trains with β = (0.9, 0.95) and weight decay 0.1; decay applies to matrices, not to norm
// gains or biases.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "eva/data.hpp"

namespace eva {

/// Mean cross-entropy over N rows of logits [N, V] with integer targets, in nats. If `dlogits` is not
/// null it receives ∂loss/∂logits = (softmax(logits) − onehot(target)) / N. The log-sum-exp subtracts the
/// row maximum, so large logits do not overflow.
template <class T>
T cross_entropy(const T* logits, const Token* targets, std::size_t N, std::size_t V, T* dlogits = nullptr);

struct ScheduleConfig {
    double lr = 3e-3;          // peak learning rate
    int warmup_steps = 100;    // linear warmup from lr/warmup to lr
    int total_steps = 1000;    // cosine decay reaches min_lr at this step
    double min_lr_ratio = 0.1; // min_lr = lr · min_lr_ratio
};
/// Learning rate at `step` (0-based): linear warmup, then cosine decay to min_lr, then constant.
double learning_rate(const ScheduleConfig& s, int step);

/// One trainable tensor as the optimizer sees it: value and gradient buffers of `size` floats.
struct Param {
    std::string name;
    float* value;
    float* grad;
    std::size_t size;
    bool decay;  // apply weight decay (matrices yes, norm gains no)
};

/// The global L2 norm of the gradients: the square root of grad_square_sums' entries added in order.
double grad_norm(const std::vector<Param>& params);
/// Per parameter, Σ g² (in double) of each piece of at most kGradPiece elements, in order: the norm's
/// terms, which gradients spread over ranks compute where they lie.
constexpr std::size_t kGradPiece = std::size_t(1) << 15;
std::vector<std::vector<double>> grad_square_sums(const std::vector<Param>& params);
/// What clipping multiplies every gradient by so that the global norm is at most `max_norm`: 1 when it
/// is already (or max_norm ≤ 0), else max_norm / (norm + 10⁻⁶). AdamW::step applies it as it reads each
/// gradient, so clipping takes no pass of its own over the gradients.
float clip_scale(double norm, double max_norm);

struct AdamWConfig {
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
public:
    explicit AdamW(AdamWConfig c = {}) : c_(c) {}
    /// One update of every parameter with learning rate `lr`. The moment buffers are created on the
    /// first call and matched to parameters by position; the parameter list must not change afterwards.
    /// With `zero_grads`, every gradient is zero afterwards, ready for the next step's accumulation.
    /// Each gradient is multiplied by `grad_scale` as it is read (clip_scale), with the rounding of
    /// scaling it in place first.
    void step(const std::vector<Param>& params, double lr, bool zero_grads = false, float grad_scale = 1.0f);
    long steps() const { return t_; }
    /// Moment buffers, exposed for checkpointing a resumable training state.
    std::vector<std::vector<float>>& first_moments() { return m_; }
    std::vector<std::vector<float>>& second_moments() { return v_; }
    void set_steps(long t) { t_ = t; }

private:
    AdamWConfig c_;
    long t_ = 0;
    std::vector<std::vector<float>> m_, v_;
};

}  // namespace eva
