// eva — the three products of a Linear layer y = x·Wᵀ (W [out, in]), in fp32 or through DeepSeek-V3's
// FP8 training recipe (technical report §3.3).
//
//   forward          y  = x · Wᵀ      K = in
//   input gradient   dx = dy · W      K = out
//   weight gradient  dW += dyᵀ · x    K = tokens
//
// In FP8 every one of the three GEMMs takes FP8 inputs: activations and gradients quantized per 1×128
// tile along K, weights per 128×128 block, each group's scale amax/448 computed online; the inner
// dimension runs in intervals of 128 whose partial products are rescaled and added into an fp32
// accumulator (promotion every N_C = 128). Master weights, their gradients and everything outside the
// Linear layers (embedding, head, gate, norms, attention) stay fp32. The variants `fp8-tensor` (one
// scale per tensor) and `fp8-e5m2` (E5M2 everywhere) show what the recipe's choices buy.
#pragma once

#include <cstddef>
#include <string>

#include "eva/tensor.hpp"

namespace eva {

enum class LinearPrecision { fp32, fp8, fp8_tensor, fp8_e5m2 };

/// "fp32" | "fp8" | "fp8-tensor" | "fp8-e5m2", else ConfigError naming `field`.
LinearPrecision parse_linear_precision(const std::string& s, const std::string& field = "precision");
std::string to_string(LinearPrecision p);

/// y[n, out] (+)= x[n, in]·Wᵀ; rows of x and y have strides ldx and ldy.
template <class T>
void linear_forward(LinearPrecision p, const T* x, std::size_t ldx, const Matrix<T>& W, T* y, std::size_t ldy,
                    std::size_t n, bool accumulate = false);

/// dW += dyᵀ·x and dx (+)= dy·W for the forward above.
template <class T>
void linear_backward(LinearPrecision p, const T* dy, std::size_t lddy, const T* x, std::size_t ldx, const Matrix<T>& W,
                     Matrix<T>& dW, T* dx, std::size_t lddx, std::size_t n, bool accumulate_dx = false);

}  // namespace eva
