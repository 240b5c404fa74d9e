// eva — loss, optimizer, schedule, clipping.
#include "eva/train.hpp"

#include <algorithm>

#include "eva/error.hpp"

namespace eva {

template <class T>
T cross_entropy(const T* logits, const Token* targets, std::size_t N, std::size_t V, T* dlogits) {
    if (N == 0) throw ShapeError("cross_entropy: no rows");
    double total = 0;
    for (std::size_t i = 0; i < N; ++i) {
        const T* z = logits + i * V;
        const Token y = targets[i];
        if (y < 0 || std::size_t(y) >= V)
            throw ShapeError("cross_entropy: target " + std::to_string(y) + " outside the vocabulary of " + std::to_string(V));
        const T zmax = *std::max_element(z, z + V);
        T sum = 0;
        for (std::size_t j = 0; j < V; ++j) sum += std::exp(z[j] - zmax);
        // −log softmax(z)_y = log Σ exp(z − zmax) − (z_y − zmax): every term stays small, so no
        // precision is lost to a large zmax.
        total += double(std::log(sum) - (z[y] - zmax));
        if (dlogits) {
            T* d = dlogits + i * V;
            for (std::size_t j = 0; j < V; ++j) d[j] = std::exp(z[j] - zmax) / sum / T(N);
            d[y] -= T(1) / T(N);
        }
    }
    return T(total / double(N));
}

template float cross_entropy<float>(const float*, const Token*, std::size_t, std::size_t, float*);
template double cross_entropy<double>(const double*, const Token*, std::size_t, std::size_t, double*);

double learning_rate(const ScheduleConfig& s, int step) {
    if (step < s.warmup_steps) return s.lr * double(step + 1) / double(s.warmup_steps);
    const double min_lr = s.lr * s.min_lr_ratio;
    if (step >= s.total_steps) return min_lr;
    const double progress = double(step - s.warmup_steps) / double(std::max(1, s.total_steps - s.warmup_steps));
    return min_lr + 0.5 * (s.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double clip_grad_norm(const std::vector<Param>& params, double max_norm) {
    double sq = 0;
    for (const Param& p : params)
        for (std::size_t i = 0; i < p.size; ++i) sq += double(p.grad[i]) * p.grad[i];
    const double norm = std::sqrt(sq);
    if (max_norm > 0 && norm > max_norm) {
        const float scale = float(max_norm / (norm + 1e-6));
        for (const Param& p : params)
            for (std::size_t i = 0; i < p.size; ++i) p.grad[i] *= scale;
    }
    return norm;
}

void AdamW::step(const std::vector<Param>& params, double lr) {
    if (m_.empty()) {
        for (const Param& p : params) {
            m_.emplace_back(p.size, 0.0f);
            v_.emplace_back(p.size, 0.0f);
        }
    }
    if (m_.size() != params.size()) throw ShapeError("AdamW: the parameter list changed between steps");
    ++t_;
    const double bc1 = 1.0 - std::pow(c_.beta1, double(t_)), bc2 = 1.0 - std::pow(c_.beta2, double(t_));
    const float b1 = float(c_.beta1), b2 = float(c_.beta2);
    for (std::size_t k = 0; k < params.size(); ++k) {
        const Param& p = params[k];
        if (m_[k].size() != p.size) throw ShapeError("AdamW: parameter " + p.name + " changed size");
        float* m = m_[k].data();
        float* v = v_[k].data();
        const float decay = p.decay ? float(1.0 - lr * c_.weight_decay) : 1.0f;
        const float step_size = float(lr / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2)), eps = float(c_.eps);
        for (std::size_t i = 0; i < p.size; ++i) {
            const float g = p.grad[i];
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            p.value[i] = p.value[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
        }
    }
}

}  // namespace eva
