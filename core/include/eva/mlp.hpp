// eva — the SwiGLU feed-forward network: DeepSeek-V3's `MLP` (dense layers, shared experts) and
// `Expert` (routed experts) are the same function,
//
//   y = w2( silu(w1·x) ⊙ (w3·x) ),        silu(h) = h·σ(h)
//
// with Linear weights in PyTorch layout: w1, w3 `[inter_dim, dim]`, w2 `[dim, inter_dim]`. A batch of
// n tokens is a row-major `[n, dim]` buffer, so each Linear is one eva::gemm over all n rows.
//
// Backward (hand-written; a = silu(h1) ⊙ h3 with h1 = x·w1ᵀ, h3 = x·w3ᵀ):
//   dw2 += dyᵀ·a,   da = dy·w2,
//   dh1 = da ⊙ h3 ⊙ silu'(h1),  silu'(h) = σ(h)·(1 + h·(1 − σ(h))),   dh3 = da ⊙ silu(h1),
//   dw1 += dh1ᵀ·x,  dw3 += dh3ᵀ·x,  dx = dh1·w1 + dh3·w3.
#pragma once

#include <cstddef>
#include <vector>

#include "eva/linear.hpp"
#include "eva/rng.hpp"
#include "eva/tensor.hpp"

namespace eva {

/// One SwiGLU MLP. Also used as the container of its own gradients (same shapes).
template <class T>
struct Mlp {
    std::size_t dim = 0, inter_dim = 0;
    Matrix<T> w1, w2, w3;  // [inter_dim, dim], [dim, inter_dim], [inter_dim, dim]

    /// All-zero weights of the given shape (the starting point of a gradient accumulator).
    static Mlp zeros(std::size_t dim, std::size_t inter_dim);
    /// Weights drawn from N(0, std²) (DeepSeek-V3's init std is 0.006).
    static Mlp random(std::size_t dim, std::size_t inter_dim, Rng& rng, float std);
};

/// What the forward pass keeps for the backward pass, for n tokens: h1, h3, s = σ(h1) and
/// a = silu(h1)⊙h3, each `[n, inter_dim]`. Keeping σ(h1) spares the backward a second exp and division
/// per element (the two cost as much as the rest of the element-wise work). Reused across calls
/// (resized, not reallocated, when shapes repeat).
template <class T>
struct MlpCache {
    Buffer<T> h1, h3, s, a;
};

/// y[n, dim] (+)= MLP(x[n, dim]). With `accumulate` the output is added to y (the MoE combine).
template <class T>
void mlp_forward(const Mlp<T>& m, const T* x, std::size_t n, T* y, MlpCache<T>& cache, bool accumulate = false,
                 LinearMode precision = {});

/// Gradients of the forward above: adds into g.w1/w2/w3, and writes (or with `accumulate_dx` adds)
/// dx[n, dim]. `cache` must hold this x's forward.
template <class T>
void mlp_backward(const Mlp<T>& m, const T* x, std::size_t n, const MlpCache<T>& cache, const T* dy, T* dx,
                  Mlp<T>& g, bool accumulate_dx = false, LinearMode precision = {});

}  // namespace eva
