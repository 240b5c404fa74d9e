// eva — Linear layers in fp32 or emulated FP8.
#include "eva/linear.hpp"

#include <memory>

#include "eva/error.hpp"
#include "eva/fp8.hpp"
#include "eva/gemm.hpp"
#include "eva/json.hpp"
#include "scratch.hpp"

namespace eva {

LinearPrecision parse_linear_precision(const std::string& s, const std::string& field) {
    if (s == "fp32") return LinearPrecision::fp32;
    if (s == "fp8") return LinearPrecision::fp8;
    if (s == "fp8-tensor") return LinearPrecision::fp8_tensor;
    if (s == "fp8-e5m2") return LinearPrecision::fp8_e5m2;
    throw ConfigError(field + " = \"" + preview(s) + "\"; allowed: fp32, fp8, fp8-tensor, fp8-e5m2");
}

std::string to_string(LinearPrecision p) {
    switch (p) {
        case LinearPrecision::fp32: return "fp32";
        case LinearPrecision::fp8: return "fp8";
        case LinearPrecision::fp8_tensor: return "fp8-tensor";
        case LinearPrecision::fp8_e5m2: return "fp8-e5m2";
    }
    return "?";
}

namespace {

// How activations/gradients (tiles along K) and weights (blocks) are quantized in precision p.
Fp8QuantConfig quant_config(LinearPrecision p, bool weight) {
    Fp8QuantConfig c;
    c.format = p == LinearPrecision::fp8_e5m2 ? Fp8Format::E5M2 : Fp8Format::E4M3;
    c.granularity = p == LinearPrecision::fp8_tensor ? Fp8Granularity::Tensor
                    : weight                         ? Fp8Granularity::Block
                                                     : Fp8Granularity::Tile;
    return c;
}

// X [rows, cols] (stride ld), an activation or gradient, rounded to FP8 in precision p's 1×128 tiles
// along its rows, each value multiplied back by its tile's scale: what an FP8 GEMM sees.
//
// With an exact fp32 accumulator, promoting every 128 products — Σ_I s_A·s_B·Σ_{k∈I} a_k·b_k — equals
// Σ_k (s_A·a_k)·(s_B·b_k) up to fp32 rounding (an FP8 code times a scale is exact to 2^-24), so the
// operands of a product are dequantized once and multiplied by eva::gemm. Every input the GEMM sees is an
// FP8 value times its group's scale: the recipe's rounding is emulated exactly, at fp32 GEMM speed.
// (fp8_gemm models the limited-precision accumulator itself; eva fp8 gemm-error shows that effect.)
std::unique_ptr<float[]> fp8_image(LinearPrecision p, const float* X, std::size_t rows, std::size_t cols,
                                   std::size_t ld) {
    auto out = detail::scratch<float>(rows * cols);
    quantize_dequantize(X, rows, cols, ld, quant_config(p, false), out.get(), cols);
    return out;
}

// An activation or gradient X [tokens, features] (stride ld) quantized along the tokens, 128×1 tiles:
// bit for bit the transpose of Xᵀ's 1×128-tile image (quantize_dequantize_columns). One scale per tensor
// does not care which way the tensor lies.
std::unique_ptr<float[]> token_image(LinearPrecision p, const float* X, std::size_t rows, std::size_t cols, std::size_t ld) {
    const Fp8QuantConfig c = quant_config(p, false);
    if (c.granularity == Fp8Granularity::Tensor) return fp8_image(p, X, rows, cols, ld);
    auto out = detail::scratch<float>(rows * cols);
    quantize_dequantize_columns(X, rows, cols, ld, c, out.get(), cols);
    return out;
}

// W's FP8 image [out, in] from the step's cache; outside a training step, from a cache of this call's
// own (`own`), so that the image is made in one place either way.
const float* weight_image(LinearMode mode, const Matrix<float>& W, WeightCache& own) {
    return (mode.weights ? *mode.weights : own).image(mode.precision, W);
}

void require_fp32(LinearPrecision p) {
    if (p != LinearPrecision::fp32) throw ConfigError("precision: FP8 Linear layers are emulated in float32 only");
}

}  // namespace

const float* WeightCache::image(LinearPrecision p, const Matrix<float>& W) {
    const std::size_t out = W.shape(0), in = W.shape(1);
    return current(images_, std::make_pair(W.data(), p), [&](Image& e) {
               if (e.size != W.size()) e.data = detail::scratch<float>(e.size = W.size());
               quantize_dequantize(W.data(), out, in, in, quant_config(p, true), e.data.get(), in);
           }).data.get();
}

const PackedB& WeightCache::packed(const Matrix<float>& W, Op op) {
    const std::size_t out = W.shape(0), in = W.shape(1);
    return current(packed_, std::make_pair(W.data(), op), [&](Packed& e) {
               // x·Wᵀ: op(B) = Wᵀ, K = in, N = out; dy·W: op(B) = W, K = out, N = in. W's rows are `in` apart.
               if (op == Op::T) e.panels.pack(Op::T, in, out, W.data(), in);
               else e.panels.pack(Op::N, out, in, W.data(), in);
           }).panels;
}

template <class T>
void linear_forward(LinearMode mode, const T* x, std::size_t ldx, const Matrix<T>& W, T* y, std::size_t ldy,
                    std::size_t n, bool accumulate) {
    const std::size_t out = W.shape(0), in = W.shape(1);
    const LinearPrecision p = mode.precision;
    if constexpr (std::is_same_v<T, float>) {
        if (p != LinearPrecision::fp32) {
            WeightCache own;
            const float* w = weight_image(mode, W, own);
            return gemm<float>(Op::N, Op::T, n, out, in, fp8_image(p, x, n, in, ldx).get(), in, w, in, y, ldy, accumulate);
        }
        if (mode.weights) return gemm(Op::N, n, x, ldx, mode.weights->packed(W, Op::T), y, ldy, accumulate);
    } else {
        require_fp32(p);
    }
    gemm<T>(Op::N, Op::T, n, out, in, x, ldx, W.data(), in, y, ldy, accumulate);
}

template <class T>
void linear_backward(LinearMode mode, const T* dy, std::size_t lddy, const T* x, std::size_t ldx, const Matrix<T>& W,
                     Matrix<T>& dW, T* dx, std::size_t lddx, std::size_t n, bool accumulate_dx) {
    const std::size_t out = W.shape(0), in = W.shape(1);
    const LinearPrecision p = mode.precision;
    if constexpr (std::is_same_v<T, float>) {
        if (p != LinearPrecision::fp32) {
            // dW += dyᵀ·x: K = tokens runs down the columns of dy and x, so they are quantized in 128×1
            // tiles (the report's tiling for this product) as they lie, and the GEMM reads them
            // transposed; dx = dy·W multiplies by W's own image: Wᵀ's 128×128 blocks are W's blocks
            // transposed, with the same values, so the same amax and scale.
            gemm<float>(Op::T, Op::N, out, in, n, token_image(p, dy, n, out, lddy).get(), out,
                        token_image(p, x, n, in, ldx).get(), in, dW.data(), in, true);
            WeightCache own;
            const float* w = weight_image(mode, W, own);
            return gemm<float>(Op::N, Op::N, n, in, out, fp8_image(p, dy, n, out, lddy).get(), out, w, in, dx, lddx,
                               accumulate_dx);
        }
    } else {
        require_fp32(p);
    }
    gemm<T>(Op::T, Op::N, out, in, n, dy, lddy, x, ldx, dW.data(), in, true);
    if constexpr (std::is_same_v<T, float>)
        if (mode.weights) return gemm(Op::N, n, dy, lddy, mode.weights->packed(W, Op::N), dx, lddx, accumulate_dx);
    gemm<T>(Op::N, Op::N, n, in, out, dy, lddy, W.data(), in, dx, lddx, accumulate_dx);
}

template void linear_forward<float>(LinearMode, const float*, std::size_t, const Matrix<float>&, float*,
                                    std::size_t, std::size_t, bool);
template void linear_forward<double>(LinearMode, const double*, std::size_t, const Matrix<double>&, double*,
                                     std::size_t, std::size_t, bool);
template void linear_backward<float>(LinearMode, const float*, std::size_t, const float*, std::size_t,
                                     const Matrix<float>&, Matrix<float>&, float*, std::size_t, std::size_t, bool);
template void linear_backward<double>(LinearMode, const double*, std::size_t, const double*, std::size_t,
                                      const Matrix<double>&, Matrix<double>&, double*, std::size_t, std::size_t, bool);

}  // namespace eva
