// eva — AdamW's element-wise update (eva/train.hpp): its definition on one element, and the same update
// on SIMD batches for one xsimd architecture (adamw_arch.cpp compiles it once per x86 SIMD level, like the
// GEMM kernel; WebAssembly and -march=native builds use the default architecture).
//
// Why SIMD by hand: GCC does not vectorise the plain loop (it reports "no vectype" for it), so the
// release build ran one scalar square root and one division per parameter, about 7% of a training step.
// The batches do the same operations in the same order with one rounding each (no fused multiply-add:
// adamw_arch.cpp is compiled with -ffp-contract=off), and IEEE square root and division round correctly
// on every ISA, so the result is the scalar one bit for bit.
#pragma once

#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

namespace eva::detail {

/// A step's constants, the same for every element of one parameter: the moment decays β1 and β2, the
/// step size lr / (1 − β1^t), 1 / √(1 − β2^t), ε, the decoupled weight decay factor 1 − lr·λ, and the
/// gradient clipping factor (clip_scale; 1 when the norm is within bounds).
struct AdamWStep {
    float b1, b2, step_size, inv_sqrt_bc2, eps, decay, grad_scale = 1.0f;
};

/// The update of one element (the reference the SIMD form must reproduce), from the stored gradient g:
///   g ← g·clip,  m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g·g,
///   w ← w·decay − step·m / (√v · (1/√bc2) + ε).
inline void adamw_element(const AdamWStep& s, float& w, float g, float& m, float& v) {
    g = g * s.grad_scale;  // rounded once, as clipping the gradient in place would round it
    m = s.b1 * m + (1 - s.b1) * g;
    v = s.b2 * v + (1 - s.b2) * g * g;
    w = w * s.decay - s.step_size * m / (std::sqrt(v) * s.inv_sqrt_bc2 + s.eps);
}

/// adamw_element over n elements: full batches, then the tail one by one. With `zero_g`, each gradient is
/// set to zero once read (the next backward accumulates into it): the line is in the cache then, so this
/// costs less than a separate fill of the gradients before the next step.
template <class Arch>
void adamw_kernel(Arch, const AdamWStep& s, float* w, float* g, float* m, float* v, std::size_t n, bool zero_g) {
    using B = xsimd::batch<float, Arch>;
    const B b1(s.b1), c1(1 - s.b1), b2(s.b2), c2(1 - s.b2), step(s.step_size), inv(s.inv_sqrt_bc2), eps(s.eps),
        decay(s.decay), clip(s.grad_scale);
    std::size_t i = 0;
    for (; i + B::size <= n; i += B::size) {
        const B gi = B::load_unaligned(g + i) * clip;
        const B mi = b1 * B::load_unaligned(m + i) + c1 * gi;
        const B vi = b2 * B::load_unaligned(v + i) + c2 * gi * gi;
        const B wi = B::load_unaligned(w + i) * decay - step * mi / (xsimd::sqrt(vi) * inv + eps);
        if (zero_g) B(0.0f).store_unaligned(g + i);
        mi.store_unaligned(m + i);
        vi.store_unaligned(v + i);
        wi.store_unaligned(w + i);
    }
    for (; i < n; ++i) {
        adamw_element(s, w[i], g[i], m[i], v[i]);
        if (zero_g) g[i] = 0.0f;
    }
}

#define EVA_ADAMW_KERNEL_INSTANCE(EXTERN, ARCH) \
    EXTERN template void adamw_kernel<ARCH>(ARCH, const AdamWStep&, float*, float*, float*, float*, std::size_t, bool);

}  // namespace eva::detail
