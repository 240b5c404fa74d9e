// eva — RMSNorm (Zhang & Sennrich 2019), as DeepSeek-V3 uses it before attention, before the FFN, on
// the compressed query (q_norm) and on the compressed key/value latent (kv_norm):
//
//   y = x · r · w,   r = 1/sqrt(mean(x²) + eps),   eps = 1e-6
//
// Backward (g = dy ∘ w, n = row length):
//   dx = r·g − (r³/n)·(g·x)·x        dw += Σ_rows dy ∘ x · r
// Each row may live inside a wider buffer (leading dimensions), e.g. the kv part of wkv_a's output.
#pragma once
#include <cstddef>
#include <vector>

#include "eva/tensor.hpp"

namespace eva {

constexpr double kRmsNormEps = 1e-6;

/// y[r] = rmsnorm(x[r]) · w for `rows` rows of `dim`; rstd[r] = r (kept for backward; may be null).
template <class T>
void rmsnorm_forward(const T* x, std::size_t ldx, const T* w, T* y, std::size_t ldy, T* rstd, std::size_t rows,
                     std::size_t dim);

/// dx[r] = ∂L/∂x (overwritten), dw += ∂L/∂w, from dy and the forward's x, w and rstd.
template <class T>
void rmsnorm_backward(const T* dy, std::size_t lddy, const T* x, std::size_t ldx, const T* w, const T* rstd,
                      T* dx, std::size_t lddx, T* dw, std::size_t rows, std::size_t dim);

/// Whole-matrix form: y = rmsnorm(x)·w row by row, y and rstd (re)allocated.
template <class T>
void rmsnorm_rows(const Matrix<T>& x, const Vector<T>& w, Matrix<T>& y, std::vector<T>& rstd) {
    const std::size_t n = x.shape(0), D = x.shape(1);
    y = Matrix<T>::from_shape({n, D});
    rstd.resize(n);
    rmsnorm_forward(x.data(), D, w.data(), y.data(), D, rstd.data(), n, D);
}

/// dx += ∂L/∂x of y = rmsnorm(x)·w given dy; dw += ∂L/∂w.
template <class T>
void rmsnorm_rows_grad_add(const Matrix<T>& dy, const Matrix<T>& x, const Vector<T>& w, const std::vector<T>& rstd,
                           Matrix<T>& dx, Vector<T>& dw) {
    const std::size_t n = x.shape(0), D = x.shape(1);
    Matrix<T> d = Matrix<T>::from_shape({n, D});
    rmsnorm_backward(dy.data(), D, x.data(), D, w.data(), rstd.data(), d.data(), D, dw.data(), n, D);
    dx += d;
}

}  // namespace eva
