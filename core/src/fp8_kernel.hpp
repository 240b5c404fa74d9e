// eva — the FP8 codec's bit-level recipe, shared by the scalar codec (fp8.cpp) and the SIMD codec, which
// is compiled once per x86 SIMD level (fp8_arch.cpp) and chosen at run time, like the GEMM kernel.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "eva/fp8.hpp"

namespace eva::detail {

// Everything the codec needs, derived from (mantissa bits M, bias). Codes and float bit patterns are
// handled as int32 so the same expressions serve the scalar and the SIMD codec.
struct Fp8Layout {
    int mbits;                     // M
    int bias;
    std::int32_t max_code;         // largest finite magnitude code (0x7E / 0x7B)
    std::int32_t overflow;         // non-saturating result of a finite overflow or ±inf: NaN (E4M3), inf (E5M2)
    std::int32_t min_normal_bits;  // float32 bits of 2^(1 − bias), the smallest normal fp8 magnitude
    // Subnormal rounding: adding magic = 2^(1 − bias − M + 23) puts the fp8 subnormal step 2^(1 − bias − M)
    // exactly on float32's unit in the last place, so the hardware float addition rounds to nearest even
    // at the right bit, and bits(|x| + magic) − bits(magic) is the fp8 code (2^M = the min normal, 0x08/0x04).
    std::int32_t magic_bits;
    int shift() const { return 23 - mbits; }  // float32 mantissa bits dropped
};

constexpr std::int32_t float_exponent_bits(int e) { return std::int32_t(127 + e) << 23; }

constexpr Fp8Layout kE4M3{3, 7, 0x7E, 0x7F, float_exponent_bits(1 - 7), float_exponent_bits(1 - 7 - 3 + 23)};
constexpr Fp8Layout kE5M2{2, 15, 0x7B, 0x7C, float_exponent_bits(1 - 15), float_exponent_bits(1 - 15 - 2 + 23)};
constexpr std::int32_t kFp8NanCode = 0x7F;     // S.1111.111 (E4M3) and S.11111.11 (E5M2)
constexpr std::int32_t kFloatInf = 0x7F800000;  // bits of +inf; larger magnitudes are NaN
constexpr std::int32_t kFloatQuietNan = 0x7FC00000;
constexpr std::size_t kFp8Chunk = 1024;         // values per SIMD pass through the int32 staging buffer
constexpr std::size_t kFp8Multiple = 16;        // the SIMD kernels take n divisible by this (the widest batch)

inline const Fp8Layout& fp8_layout(Fp8Format f) { return f == Fp8Format::E4M3 ? kE4M3 : kE5M2; }

// Round-to-nearest-even of a normal magnitude `a` (float bits) to M mantissa bits, rebiased: add the
// exponent difference, then half an fp8 step minus one plus the lowest kept bit (ties go to the even
// neighbour), and drop the low bits. A carry out of the mantissa bumps the exponent, as it should.
template <class I>
I round_normal(I a, const Fp8Layout& L) {
    const I rebias = I(std::int32_t(std::uint32_t(L.bias - 127) << 23));
    const I half_minus_one = I((std::int32_t(1) << (L.shift() - 1)) - 1);
    return (a + rebias + half_minus_one + ((a >> L.shift()) & I(1))) >> L.shift();
}

// The same integer expressions as the scalar codec, on batches of int32; each branch is computed for
// every lane and picked with select. `encode_lanes` takes float bits and gives codes, `decode_lanes` the
// reverse; the kernels below are these two with their loads and stores.
template <class BI>
BI encode_lanes(BI u, const Fp8Layout& L, bool saturate) {
    using BF = xsimd::batch<float, typename BI::arch_type>;
    const BI magic(L.magic_bits), min_normal(L.min_normal_bits), max_code(L.max_code), inf(kFloatInf);
    const BI a = u & BI(0x7FFFFFFF);
    const BI sub = xsimd::bitwise_cast<BI>(xsimd::bitwise_cast<BF>(a) + xsimd::bitwise_cast<BF>(magic)) - magic;
    BI code = xsimd::select(a < min_normal, sub, round_normal(a, L));
    code = xsimd::select(code > max_code, BI(saturate ? L.max_code : L.overflow), code);
    code = xsimd::select(a > inf, BI(kFp8NanCode), code);
    return code | ((u >> 24) & BI(0x80));
}

template <class BI>
BI decode_lanes(BI c, const Fp8Layout& L, Fp8Format f) {
    using BF = xsimd::batch<float, typename BI::arch_type>;
    const BI mag = c & BI(0x7F);
    const BI normal = (mag << L.shift()) + BI(float_exponent_bits(-L.bias));
    // mag · 2^(1-bias-M), exact (mag < 2^M); the power of two built from its bits, since a call to
    // ldexp per batch is a libm call the compiler does not hoist (5% of an FP8 step at the panel's batch).
    const BF unit = xsimd::bitwise_cast<BF>(BI(float_exponent_bits(1 - L.bias - L.mbits)));
    const BF sub = xsimd::to_float(mag) * unit;
    BI v = xsimd::select(mag < BI(1 << L.mbits), xsimd::bitwise_cast<BI>(sub), normal);
    if (f == Fp8Format::E4M3) {
        v = xsimd::select(mag == BI(kFp8NanCode), BI(kFloatQuietNan), v);
    } else {
        v = xsimd::select(mag == BI(L.overflow), BI(kFloatInf), v);
        v = xsimd::select(mag > BI(L.overflow), BI(kFloatQuietNan), v);
    }
    return v | ((c & BI(0x80)) << 24);
}

/// decode(encode(u, saturating)) as float bits, without the code: the codec's own roundings, with no
/// byte, sign or NaN code in between. A subnormal-range |y|: |y| + magic − magic is code · 2^(1 − bias − M),
/// exactly the value decode gives (Sterbenz: the subtraction is exact). A normal one: round_normal, then
/// decode's normal formula. Saturation: a magnitude above the largest finite one is taken as that one
/// before rounding (it lies on the grid, and nothing below it rounds past it). NaN stays NaN.
template <class BI>
BI round_lanes(BI u, const Fp8Layout& L) {
    using BF = xsimd::batch<float, typename BI::arch_type>;
    const BI a = u & BI(0x7FFFFFFF);
    const BF magic = xsimd::bitwise_cast<BF>(BI(L.magic_bits));
    const BI sub = xsimd::bitwise_cast<BI>((xsimd::bitwise_cast<BF>(a) + magic) - magic);
    const BI exponent_bias(float_exponent_bits(-L.bias));
    const BI max_bits = (BI(L.max_code) << L.shift()) + exponent_bias;  // 448 (E4M3), 57344 (E5M2)
    const BI normal = (round_normal(xsimd::min(a, max_bits), L) << L.shift()) + exponent_bias;
    BI v = xsimd::select(a < BI(L.min_normal_bits), sub, normal);
    v = xsimd::select(a > BI(kFloatInf), BI(kFloatQuietNan), v);
    return v | (u ^ a);  // u ^ a: the sign bit alone
}

/// Encodes/decodes n values, n a multiple of kFp8Multiple, with Arch's SIMD instructions. Codes travel
/// through an int32 buffer of one chunk, narrowed to bytes (and widened back for decoding) by plain
/// loops the compiler vectorizes.
template <class Arch>
void fp8_encode_kernel(Arch, const float* x, std::uint8_t* codes, std::size_t n, Fp8Format f, bool saturate) {
    using BI = xsimd::batch<std::int32_t, Arch>;
    using BF = xsimd::batch<float, Arch>;
    const Fp8Layout& L = fp8_layout(f);
    alignas(64) std::int32_t buf[kFp8Chunk];
    for (std::size_t i = 0; i < n; i += kFp8Chunk) {
        const std::size_t len = std::min(kFp8Chunk, n - i);
        for (std::size_t j = 0; j < len; j += BI::size)
            encode_lanes(xsimd::bitwise_cast<BI>(BF::load_unaligned(x + i + j)), L, saturate).store_aligned(buf + j);
        for (std::size_t j = 0; j < len; ++j) codes[i + j] = std::uint8_t(buf[j]);
    }
}

template <class Arch>
void fp8_decode_kernel(Arch, const std::uint8_t* codes, float* x, std::size_t n, Fp8Format f) {
    using BI = xsimd::batch<std::int32_t, Arch>;
    using BF = xsimd::batch<float, Arch>;
    const Fp8Layout& L = fp8_layout(f);
    alignas(64) std::int32_t buf[kFp8Chunk];
    for (std::size_t i = 0; i < n; i += kFp8Chunk) {
        const std::size_t len = std::min(kFp8Chunk, n - i);
        for (std::size_t j = 0; j < len; ++j) buf[j] = codes[i + j];
        for (std::size_t j = 0; j < len; j += BI::size)
            xsimd::bitwise_cast<BF>(decode_lanes(BI::load_aligned(buf + j), L, f)).store_unaligned(x + i + j);
    }
}

/// The kernels of scaled quantization, on one group's run of n values (n a multiple of kFp8Multiple)
/// that share the scale s. amax: the largest |x| as float bits, NaNs left out (for non-negative floats
/// the bit patterns order as the values do, and a NaN's exceed inf's), so the max is an integer max.
template <class Arch>
std::int32_t fp8_amax_bits_kernel(Arch, const float* x, std::size_t n) {
    using BI = xsimd::batch<std::int32_t, Arch>;
    using BF = xsimd::batch<float, Arch>;
    BI m(0);
    for (std::size_t i = 0; i < n; i += BI::size) {
        const BI a = xsimd::bitwise_cast<BI>(BF::load_unaligned(x + i)) & BI(0x7FFFFFFF);
        m = xsimd::max(m, xsimd::select(a > BI(kFloatInf), BI(0), a));
    }
    alignas(64) std::int32_t lanes[BI::size];
    m.store_aligned(lanes);
    return *std::max_element(lanes, lanes + BI::size);
}

/// codes = encode(x / s), saturating; returns how many x / s the non-saturating cast would overflow
/// (|y| > 464 for E4M3, the tie rounding to 448; |y| ≥ 61440 for E5M2, the tie rounding to inf).
template <class Arch>
std::size_t fp8_scaled_encode_kernel(Arch, const float* x, float s, std::uint8_t* codes, std::size_t n, Fp8Format f) {
    using BI = xsimd::batch<std::int32_t, Arch>;
    using BF = xsimd::batch<float, Arch>;
    const Fp8Layout& L = fp8_layout(f);
    // On the bits of |y|, as the codec works: overflow is bits above those of the largest magnitude that
    // still rounds into range (464 itself for E4M3; the float just below 61440 for E5M2), NaN excluded.
    const BF scale(s);
    const BI in_range(f == Fp8Format::E4M3 ? 0x43E80000 /* 464 */ : 0x476FFFFF /* 61440⁻ */), inf(kFloatInf);
    BI overflows(0);
    alignas(64) std::int32_t buf[BI::size];
    for (std::size_t i = 0; i < n; i += BI::size) {
        const BI u = xsimd::bitwise_cast<BI>(BF::load_unaligned(x + i) / scale), a = u & BI(0x7FFFFFFF);
        overflows += xsimd::select((a > in_range) && (a <= inf), BI(1), BI(0));
        encode_lanes(u, L, true).store_aligned(buf);
        for (std::size_t j = 0; j < BI::size; ++j) codes[i + j] = std::uint8_t(buf[j]);
    }
    return std::size_t(xsimd::hadd(overflows));
}

/// y = decode(encode(x / s))·s, saturating: quantize then dequantize with the code kept in its register.
template <class Arch>
void fp8_scaled_round_kernel(Arch, const float* x, float s, float* y, std::size_t n, Fp8Format f) {
    using BI = xsimd::batch<std::int32_t, Arch>;
    using BF = xsimd::batch<float, Arch>;
    const Fp8Layout& L = fp8_layout(f);
    const BF scale(s);
    for (std::size_t i = 0; i < n; i += BI::size)
        (xsimd::bitwise_cast<BF>(round_lanes(xsimd::bitwise_cast<BI>(BF::load_unaligned(x + i) / scale), L)) * scale)
            .store_unaligned(y + i);
}

/// The same with a scale per element, s[i] for x[i]: a row of a matrix quantized in 128×1 tiles, where
/// each column has its own scale.
template <class Arch>
void fp8_scaled_round_lanes_kernel(Arch, const float* x, const float* s, float* y, std::size_t n, Fp8Format f) {
    using BI = xsimd::batch<std::int32_t, Arch>;
    using BF = xsimd::batch<float, Arch>;
    const Fp8Layout& L = fp8_layout(f);
    for (std::size_t i = 0; i < n; i += BI::size) {
        const BF scale = BF::load_unaligned(s + i);
        (xsimd::bitwise_cast<BF>(round_lanes(xsimd::bitwise_cast<BI>(BF::load_unaligned(x + i) / scale), L)) * scale)
            .store_unaligned(y + i);
    }
}

#define EVA_FP8_KERNEL_INSTANCE(PREFIX, A)                                                                 \
    PREFIX template void fp8_encode_kernel<A>(A, const float*, std::uint8_t*, std::size_t, Fp8Format, bool); \
    PREFIX template void fp8_decode_kernel<A>(A, const std::uint8_t*, float*, std::size_t, Fp8Format);       \
    PREFIX template std::int32_t fp8_amax_bits_kernel<A>(A, const float*, std::size_t);                   \
    PREFIX template std::size_t fp8_scaled_encode_kernel<A>(A, const float*, float, std::uint8_t*, std::size_t, Fp8Format); \
    PREFIX template void fp8_scaled_round_kernel<A>(A, const float*, float, float*, std::size_t, Fp8Format); \
    PREFIX template void fp8_scaled_round_lanes_kernel<A>(A, const float*, const float*, float*, std::size_t, Fp8Format);

}  // namespace eva::detail
