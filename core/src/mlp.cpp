// SwiGLU MLP: three eva::gemm calls forward, five backward, and element-wise gating between them.
#include "eva/mlp.hpp"

#include <cmath>

#include "eva/gemm.hpp"

namespace eva {

namespace {

template <class T>
T sigmoid(T h) {
    return T(1) / (T(1) + std::exp(-h));
}

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
void mlp_forward(const Mlp<T>& m, const T* x, std::size_t n, T* y, MlpCache<T>& c, bool accumulate) {
    const std::size_t D = m.dim, F = m.inter_dim;
    c.h1.resize(n * F);
    c.h3.resize(n * F);
    c.a.resize(n * F);
    if (n == 0) return;
    gemm<T>(Op::N, Op::T, n, F, D, x, D, m.w1.data(), D, c.h1.data(), F);  // h1 = x·w1ᵀ
    gemm<T>(Op::N, Op::T, n, F, D, x, D, m.w3.data(), D, c.h3.data(), F);  // h3 = x·w3ᵀ
    for (std::size_t i = 0; i < n * F; ++i) c.a[i] = c.h1[i] * sigmoid(c.h1[i]) * c.h3[i];
    gemm<T>(Op::N, Op::T, n, D, F, c.a.data(), F, m.w2.data(), F, y, D, accumulate);  // y (+)= a·w2ᵀ
}

template <class T>
void mlp_backward(const Mlp<T>& m, const T* x, std::size_t n, const MlpCache<T>& c, const T* dy, T* dx,
                  Mlp<T>& g, bool accumulate_dx) {
    const std::size_t D = m.dim, F = m.inter_dim;
    if (n == 0) return;
    gemm<T>(Op::T, Op::N, D, F, n, dy, D, c.a.data(), F, g.w2.data(), F, true);  // dw2 += dyᵀ·a
    std::vector<T> dh1(n * F), dh3(n * F);
    gemm<T>(Op::N, Op::N, n, F, D, dy, D, m.w2.data(), F, dh1.data(), F);  // da = dy·w2 (into dh1)
    for (std::size_t i = 0; i < n * F; ++i) {
        const T h = c.h1[i], s = sigmoid(h), da = dh1[i];
        dh3[i] = da * h * s;                                  // ∂/∂h3 of silu(h1)·h3
        dh1[i] = da * c.h3[i] * s * (T(1) + h * (T(1) - s));  // silu'(h1)·h3
    }
    gemm<T>(Op::T, Op::N, F, D, n, dh1.data(), F, x, D, g.w1.data(), D, true);  // dw1 += dh1ᵀ·x
    gemm<T>(Op::T, Op::N, F, D, n, dh3.data(), F, x, D, g.w3.data(), D, true);  // dw3 += dh3ᵀ·x
    gemm<T>(Op::N, Op::N, n, D, F, dh1.data(), F, m.w1.data(), D, dx, D, accumulate_dx);  // dx (+)= dh1·w1
    gemm<T>(Op::N, Op::N, n, D, F, dh3.data(), F, m.w3.data(), D, dx, D, true);           //    + dh3·w3
}

#define EVA_MLP_INSTANTIATE(T)                                                                         \
    template struct Mlp<T>;                                                                            \
    template void mlp_forward<T>(const Mlp<T>&, const T*, std::size_t, T*, MlpCache<T>&, bool);        \
    template void mlp_backward<T>(const Mlp<T>&, const T*, std::size_t, const MlpCache<T>&, const T*, T*, \
                                  Mlp<T>&, bool);
EVA_MLP_INSTANTIATE(float)
EVA_MLP_INSTANTIATE(double)
#undef EVA_MLP_INSTANTIATE

}  // namespace eva
