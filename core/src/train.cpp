// eva — loss, optimizer, schedule, clipping.
#include "eva/train.hpp"

#include <algorithm>

#include "adamw_kernel.hpp"
#include "eva/error.hpp"
#include "eva/exp.hpp"
#include "parallel.hpp"
#include "scratch.hpp"
#include "simd_dispatch.hpp"
#include "sum.hpp"

namespace eva {

#if defined(EVA_GEMM_DISPATCH)
namespace detail {  // compiled per x86 SIMD level in adamw_arch.cpp
EVA_ADAMW_KERNEL_INSTANCE(extern, xsimd::avx512bw)
EVA_ADAMW_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>)
EVA_ADAMW_KERNEL_INSTANCE(extern, xsimd::sse2)
}  // namespace detail
#endif

template <class T>
T cross_entropy(const T* logits, const Token* targets, std::size_t N, std::size_t V, T* dlogits) {
    if (N == 0) throw ShapeError("cross_entropy: no rows");
    for (std::size_t i = 0; i < N; ++i)
        if (targets[i] < 0 || std::size_t(targets[i]) >= V)
            throw ShapeError("cross_entropy: target " + std::to_string(targets[i]) + " outside the vocabulary of " +
                             std::to_string(V));
    // Rows are independent; their losses are summed in row order afterwards, whatever the threads.
    std::vector<double> row_loss(N);
    constexpr std::size_t kRows = 64;
    detail::parallel_for((N + kRows - 1) / kRows, [&](std::size_t block) {
        const auto own = detail::scratch<T>(dlogits ? 0 : V);  // the exps of a row, when there is no dlogits
        for (std::size_t i = block * kRows; i < std::min(N, (block + 1) * kRows); ++i) {
            const T* z = logits + i * V;
            const Token y = targets[i];
            const T zmax = *std::max_element(z, z + V);
            T* d = dlogits ? dlogits + i * V : nullptr;  // holds exp(z − zmax) until the sum is known
            T* e = d ? d : own.get();
            for (std::size_t j = 0; j < V; ++j) e[j] = z[j] - zmax;
            exp_each(e, e, V);
            const T sum = detail::sum8<T>(V, [&](std::size_t j) { return e[j]; });
            // −log softmax(z)_y = log Σ exp(z − zmax) − (z_y − zmax): every term stays small, so no
            // precision is lost to a large zmax.
            row_loss[i] = double(std::log(sum) - (z[y] - zmax));
            if (d) {
                for (std::size_t j = 0; j < V; ++j) d[j] = d[j] / sum / T(N);
                d[y] -= T(1) / T(N);
            }
        }
    });
    double total = 0;
    for (double l : row_loss) total += l;
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

namespace {

// The parameters cut into pieces of at most kGradPiece elements: the unit of work of the element-wise
// loops below, so that they spread over threads. The cut depends only on the parameter sizes.
struct Chunk {
    std::size_t param, begin, end;
};

std::vector<Chunk> chunks(const std::vector<Param>& params) {
    std::vector<Chunk> out;
    for (std::size_t k = 0; k < params.size(); ++k)
        for (std::size_t b = 0; b < params[k].size; b += kGradPiece)
            out.push_back({k, b, std::min(params[k].size, b + kGradPiece)});
    return out;
}

}  // namespace

std::vector<std::vector<double>> grad_square_sums(const std::vector<Param>& params) {
    // Partial sums per chunk, so that the work spreads over threads and the result does not depend on
    // their number.
    const auto cs = chunks(params);
    std::vector<std::vector<double>> out(params.size());
    for (const Chunk& c : cs) out[c.param].push_back(0.0);
    detail::parallel_for(cs.size(), [&](std::size_t c) {
        const float* g = params[cs[c].param].grad + cs[c].begin;
        out[cs[c].param][cs[c].begin / kGradPiece] =
            detail::sum8<double>(cs[c].end - cs[c].begin, [&](std::size_t i) { return double(g[i]) * g[i]; });
    });
    return out;
}

double grad_norm(const std::vector<Param>& params) {
    double sq = 0;  // the chunks' sums added in order: the same for every thread count
    for (const auto& p : grad_square_sums(params))
        for (double x : p) sq += x;
    return std::sqrt(sq);
}

float clip_scale(double norm, double max_norm) {
    return max_norm > 0 && norm > max_norm ? float(max_norm / (norm + 1e-6)) : 1.0f;
}

namespace {

struct AdamWRun {  // the functor run_on_best_arch calls with the chosen architecture
    template <class Arch, class... Args>
    void operator()(Arch arch, Args... args) const { detail::adamw_kernel<Arch>(arch, args...); }
};

// AdamW's update of n elements on the widest SIMD level the CPU has (adamw_kernel.hpp).
void adamw_update(const detail::AdamWStep& s, float* w, float* g, float* m, float* v, std::size_t n, bool zero_g) {
    detail::run_on_best_arch<AdamWRun>(s, w, g, m, v, n, zero_g);
}

}  // namespace

void AdamW::step(const std::vector<Param>& params, double lr, bool zero_grads, float grad_scale) {
    if (m_.empty()) {
        for (const Param& p : params) {
            m_.emplace_back(p.size, 0.0f);
            v_.emplace_back(p.size, 0.0f);
        }
    }
    if (m_.size() != params.size()) throw ShapeError("AdamW: the parameter list changed between steps");
    for (std::size_t k = 0; k < params.size(); ++k)
        if (m_[k].size() != params[k].size) throw ShapeError("AdamW: parameter " + params[k].name + " changed size");
    ++t_;
    const double bc1 = 1.0 - std::pow(c_.beta1, double(t_)), bc2 = 1.0 - std::pow(c_.beta2, double(t_));
    const detail::AdamWStep with_decay{float(c_.beta1), float(c_.beta2), float(lr / bc1),
                                       float(1.0 / std::sqrt(bc2)), float(c_.eps), float(1.0 - lr * c_.weight_decay),
                                       grad_scale};
    detail::AdamWStep without_decay = with_decay;
    without_decay.decay = 1.0f;
    const auto cs = chunks(params);
    detail::parallel_for(cs.size(), [&](std::size_t c) {  // every element's update is independent
        const Param& p = params[cs[c].param];
        const std::size_t i = cs[c].begin, n = cs[c].end - cs[c].begin;
        adamw_update(p.decay ? with_decay : without_decay, p.value + i, p.grad + i, m_[cs[c].param].data() + i,
                     v_[cs[c].param].data() + i, n, zero_grads);
    });
}

}  // namespace eva
