// SwiGLU MLP: three Linear products forward, six backward (fp32 or FP8), element-wise gating between them.
#include "eva/mlp.hpp"

#include <cmath>

#include "eva/exp.hpp"
#include "parallel.hpp"
#include "scratch.hpp"

namespace eva {

namespace {

// Element-wise work is spread over threads in ranges of this many elements (each element independent).
constexpr std::size_t kElementChunk = 1 << 14;

}  // namespace

template <class T>
Mlp<T> Mlp<T>::zeros(std::size_t dim, std::size_t inter_dim) {
    Mlp m;
    m.dim = dim;
    m.inter_dim = inter_dim;
    m.w1 = Matrix<T>::from_shape({inter_dim, dim});
    m.w2 = Matrix<T>::from_shape({dim, inter_dim});
    m.w3 = Matrix<T>::from_shape({inter_dim, dim});
    m.w1.fill(T(0));
    m.w2.fill(T(0));
    m.w3.fill(T(0));
    return m;
}

template <class T>
Mlp<T> Mlp<T>::random(std::size_t dim, std::size_t inter_dim, Rng& rng, float std) {
    Mlp m = zeros(dim, inter_dim);
    for (Matrix<T>* w : {&m.w1, &m.w2, &m.w3})
        for (T& v : *w) v = T(rng.normal() * std);
    return m;
}

template <class T>
void mlp_forward(const Mlp<T>& m, const T* x, std::size_t n, T* y, MlpCache<T>& c, bool accumulate,
                 LinearMode p) {
    const std::size_t D = m.dim, F = m.inter_dim;
    c.h1.resize(n * F);
    c.h3.resize(n * F);
    c.s.resize(n * F);
    c.a.resize(n * F);
    if (n == 0) return;
    linear_forward(p, x, D, m.w1, c.h1.data(), F, n);  // h1 = x·w1ᵀ
    linear_forward(p, x, D, m.w3, c.h3.data(), F, n);  // h3 = x·w3ᵀ
    // σ(h) = 1 / (1 + e^−h): the exps in one batch (eva/exp.hpp), the rest in a loop the compiler runs
    // on SIMD vectors (the same operations, so the same bits).
    detail::parallel_ranges(n * F, kElementChunk, [&](std::size_t i0, std::size_t i1) {
        for (std::size_t i = i0; i < i1; ++i) c.s[i] = -c.h1[i];
        exp_each(c.s.data() + i0, c.s.data() + i0, i1 - i0);
        for (std::size_t i = i0; i < i1; ++i) {
            c.s[i] = T(1) / (T(1) + c.s[i]);
            c.a[i] = c.h1[i] * c.s[i] * c.h3[i];
        }
    });
    linear_forward(p, c.a.data(), F, m.w2, y, D, n, accumulate);  // y (+)= a·w2ᵀ
}

template <class T>
void mlp_backward(const Mlp<T>& m, const T* x, std::size_t n, const MlpCache<T>& c, const T* dy, T* dx,
                  Mlp<T>& g, bool accumulate_dx, LinearMode p) {
    const std::size_t D = m.dim, F = m.inter_dim;
    if (n == 0) return;
    const auto dh1 = detail::scratch<T>(n * F), dh3 = detail::scratch<T>(n * F);  // both written in full below
    linear_backward(p, dy, D, c.a.data(), F, m.w2, g.w2, dh1.get(), F, n);  // dw2 += dyᵀ·a, da = dy·w2 (into dh1)
    detail::parallel_ranges(n * F, kElementChunk, [&](std::size_t i0, std::size_t i1) {
        for (std::size_t i = i0; i < i1; ++i) {
            const T h = c.h1[i], s = c.s[i], da = dh1[i];
            dh3[i] = da * h * s;                                  // ∂/∂h3 of silu(h1)·h3
            dh1[i] = da * c.h3[i] * s * (T(1) + h * (T(1) - s));  // silu'(h1)·h3
        }
    });
    linear_backward(p, dh1.get(), F, x, D, m.w1, g.w1, dx, D, n, accumulate_dx);  // dw1 += dh1ᵀ·x, dx (+)= dh1·w1
    linear_backward(p, dh3.get(), F, x, D, m.w3, g.w3, dx, D, n, true);           // dw3 += dh3ᵀ·x, dx += dh3·w3
}

#define EVA_MLP_INSTANTIATE(T)                                                                         \
    template struct Mlp<T>;                                                                            \
    template void mlp_forward<T>(const Mlp<T>&, const T*, std::size_t, T*, MlpCache<T>&, bool, LinearMode); \
    template void mlp_backward<T>(const Mlp<T>&, const T*, std::size_t, const MlpCache<T>&, const T*, T*, \
                                  Mlp<T>&, bool, LinearMode);
EVA_MLP_INSTANTIATE(float)
EVA_MLP_INSTANTIATE(double)
#undef EVA_MLP_INSTANTIATE

}  // namespace eva
