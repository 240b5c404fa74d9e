// eva — exp of float32 values on SIMD batches, bit for bit what glibc's expf returns (private header;
// exp_arch.cpp compiles it once per x86 SIMD level, like the GEMM kernel).
//
// glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, from Arm's optimized-routines) works in double:
// with N = 32 and k the integer nearest x·N/ln2,
//   e^x = 2^(k/N) · 2^(r/N),  r = x·N/ln2 − k ∈ [−1/2, 1/2],
// 2^(k/N) from a table of 2^(i/N), i = k mod N, whose exponent field absorbs ⌊k/N⌋, and 2^(r/N) from a
// cubic, 1 + C2·r + C1·r² + C0·r³. Every step is one double operation, so the same operations on
// double lanes give the same double before the final rounding to float, hence the same float. On a
// CPU with FMA glibc runs its variant compiled with fused multiply-adds (__expf_fma); the kernel fuses
// exactly where that variant does. Inputs at or beyond |x| = 88 (overflow, underflow, inf, NaN) take
// glibc's special cases: a batch holding one is recomputed value by value with std::exp.
// tests/test_exp.cpp holds the kernel to std::exp on a sample of every binade, and on all 2^32
// patterns in a hidden case.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace eva::detail {

/// Whether expf_kernel reproduces the C library on this level: glibc on x86-64 with FMA (AVX2, AVX-512).
template <class Arch>
constexpr bool kBatchExpf =
#if defined(__GLIBC__) && defined(__x86_64__)
    Arch::version() >= xsimd::fma3<xsimd::avx2>::version();
#else
    false;
#endif

/// The table: bits of 2^(i/32), less i·2^47, so that adding k·2^47 (k's low bits cancel i, its high bits
/// land in the exponent field, 52 − 5 = 47) gives 2^(k/32) for any k.
struct ExpfTable {
    std::uint64_t t[32];
    ExpfTable() {  // std::exp2 is exact enough here: the tests compare every entry's use with std::exp
        for (int i = 0; i < 32; ++i) {
            const double p = std::exp2(i / 32.0);
            std::memcpy(&t[i], &p, sizeof p);
            t[i] -= std::uint64_t(i) << 47;
        }
    }
};

/// a·b + c with one rounding. xsimd 8.1 fuses only on FMA3 (AVX2); its AVX-512 fma is a multiply and an
/// add, which this unit's -ffp-contract=off keeps apart, so AVX-512 calls the instruction itself.
template <class Arch>
xsimd::batch<double, Arch> fused(xsimd::batch<double, Arch> a, xsimd::batch<double, Arch> b,
                                 xsimd::batch<double, Arch> c) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<Arch, xsimd::avx512bw>) return _mm512_fmadd_pd(a, b, c);
#endif
    return xsimd::fma(a, b, c);
}

/// table[i] for each lane's i. xsimd 8.1's gather moves one lane at a time; AVX2 and AVX-512 have the
/// instruction.
template <class Arch>
xsimd::batch<std::uint64_t, Arch> lookup(const std::uint64_t* table, xsimd::batch<std::uint64_t, Arch> i) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<Arch, xsimd::avx512bw>)
        return _mm512_i64gather_epi64(i, reinterpret_cast<const long long*>(table), 8);
#endif
#if defined(__AVX2__)
    if constexpr (std::is_same_v<Arch, xsimd::fma3<xsimd::avx2>>)
        return _mm256_i64gather_epi64(reinterpret_cast<const long long*>(table), i, 8);
#endif
    return xsimd::batch<std::uint64_t, Arch>::gather(table, i);
}

template <class Arch>
void expf_kernel(Arch, const float* x, float* y, std::size_t n, const std::uint64_t* table) {
    std::size_t i = 0;
    if constexpr (kBatchExpf<Arch>) {
        using D = xsimd::batch<double, Arch>;
        using U = xsimd::batch<std::uint64_t, Arch>;
        const D inv_ln2_n(0x1.71547652b82fep+5);  // N/ln2
        const D shift(0x1.8p+52);                 // adding it rounds to an integer, in the low mantissa bits
        const D c0(0x1.c6af84b912394p-20), c1(0x1.ebfce50fac4f3p-13), c2(0x1.62e42ff0c52d6p-6), one(1.0);
        for (; i + D::size <= n; i += D::size) {
            const D xd = D::load_unaligned(x + i);
            const D z = fused(inv_ln2_n, xd, shift);
            const U ki = xsimd::bitwise_cast<U>(z);  // k in the low bits
            const D kd = z - shift;
            const D r = fused(inv_ln2_n, xd, -kd);  // x·N/ln2 − k
            const U t = lookup<Arch>(table, ki & U(31)) + (ki << 47);
            const D p = fused(r, c0, c1);
            const D q = fused(r, c2, one);
            const D e = fused(p, r * r, q) * xsimd::bitwise_cast<D>(t);
            if (xsimd::any((xsimd::abs(xd) >= D(88.0)) | xsimd::isnan(xd))) {  // glibc's special cases
                // Instead of the batch's store, not after it: when y is x, the store would overwrite the
                // inputs and std::exp would get the batch's own results.
                for (std::size_t j = i; j < i + D::size; ++j) y[j] = std::exp(x[j]);
            } else {
                e.store_unaligned(y + i);  // rounds each lane to float
            }
        }
    }
    for (; i < n; ++i) y[i] = std::exp(x[i]);
}

#define EVA_EXP_KERNEL_INSTANCE(EXTERN, ARCH) \
    EXTERN template void expf_kernel<ARCH>(ARCH, const float*, float*, std::size_t, const std::uint64_t*);

}  // namespace eva::detail
