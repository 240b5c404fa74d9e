// eva — the register-only multiply-add loop of eva/peak.hpp and its timing, for one xsimd architecture
// (peak_arch.cpp instantiates it once per x86 SIMD level, each compiled with that level's flags;
// WebAssembly and -march=native builds use the default architecture).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include <xsimd/xsimd.hpp>

namespace eva::detail {

struct PeakSample {
    double gflops = 0;
    int lanes = 0;
    bool fused = false;
};

// 12 chains: two FMA units × a 4-cycle latency need 8 in flight; 12 also covers 5-6 cycle latencies
// and still fits in AVX2's 16 registers beside the two constants.
constexpr int kPeakChains = 12;

/// Runs `rounds` rounds of kPeakChains independent acc ← acc·a + c on full registers and returns a sum
/// of the results (kept by the caller, so the compiler cannot drop the loop).
template <class Arch>
float peak_loop(std::uint64_t rounds) {
    using B = xsimd::batch<float, Arch>;
    // a < 1 and c > 0 keep every chain at a finite fixed point (c / (1 − a)): no overflow, no subnormals.
    const B a(0.9999f), c(1e-4f);
    B acc[kPeakChains];
    for (int i = 0; i < kPeakChains; ++i) acc[i] = B(1.0f + 0.01f * float(i));
    for (std::uint64_t r = 0; r < rounds; ++r)
        for (int i = 0; i < kPeakChains; ++i) acc[i] = xsimd::fma(acc[i], a, c);
    B s = acc[0];
    for (int i = 1; i < kPeakChains; ++i) s += acc[i];
    return xsimd::hadd(s);
}

/// The fastest of `repeats` runs of about `seconds` each. The round count is found by doubling from a
/// short run, which also warms the core up (an idle core may start at a lower clock).
template <class Arch>
PeakSample peak_run(Arch, double seconds, int repeats) {
    using B = xsimd::batch<float, Arch>;
    using clock = std::chrono::steady_clock;
    auto elapsed = [](clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); };
    volatile float sink = 0;
    std::uint64_t rounds = 1 << 12;
    for (;;) {
        const auto t0 = clock::now();
        sink = sink + peak_loop<Arch>(rounds);
        const double t = elapsed(t0);
        if (t >= seconds / 4 || rounds >= (std::uint64_t(1) << 40)) {
            rounds = std::max<std::uint64_t>(1, std::uint64_t(double(rounds) * seconds / std::max(t, 1e-9)));
            break;
        }
        rounds *= 2;
    }
    PeakSample p;
    for (int r = 0; r < std::max(1, repeats); ++r) {
        const auto t0 = clock::now();
        sink = sink + peak_loop<Arch>(rounds);
        p.gflops = std::max(p.gflops, 2e-9 * double(B::size) * kPeakChains * double(rounds) / elapsed(t0));
    }
    p.lanes = int(B::size);
    // x86 levels from AVX2+FMA up have a fused instruction; SSE2 and SIMD128 multiply, then add.
    p.fused = Arch::version() >= xsimd::fma3<xsimd::avx2>::version();
    return p;
}

#define EVA_PEAK_KERNEL_INSTANCE(EXTERN, ARCH) EXTERN template PeakSample peak_run<ARCH>(ARCH, double, int);

}  // namespace eva::detail
