// eva — measuring the fp32 multiply-add peak (eva/peak.hpp): the run-time choice of architecture and
// the clock; the loop and its timing are in peak_kernel.hpp.
#include "eva/peak.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "peak_kernel.hpp"
#include "simd_dispatch.hpp"

namespace eva {

#if defined(EVA_GEMM_DISPATCH)
// x86-64: the loop is compiled for each level the GEMM is (peak_arch.cpp); the widest the CPU has runs.
namespace detail {
EVA_PEAK_KERNEL_INSTANCE(extern, xsimd::avx512bw)
EVA_PEAK_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>)
EVA_PEAK_KERNEL_INSTANCE(extern, xsimd::sse2)
}  // namespace detail
#endif

namespace {

struct PeakRun {  // the functor run_on_best_arch calls with the chosen architecture
    template <class Arch>
    FmaPeak operator()(Arch arch, double seconds, int repeats) const {
        const detail::PeakSample s = detail::peak_run(arch, seconds, repeats);
        FmaPeak p;
        p.simd = Arch::name();
        p.lanes = s.lanes;
        p.fused = s.fused;
        p.gflops = s.gflops;
        return p;
    }
};

// The clock: a chain of dependent register-to-register integer adds runs at one add per cycle on every
// x86-64 core, so adds per second = cycles per second. (Adds of an immediate would not do: recent Intel
// cores fold those at register renaming and retire several per cycle.) The loop's own counter is a
// second, independent chain that overlaps.
double measure_ghz(double seconds) {
#if defined(__x86_64__)
    auto run = [](std::uint64_t iters) {
        std::uint64_t x = 0, one = 1;
        const auto t0 = std::chrono::steady_clock::now();
        for (std::uint64_t i = 0; i < iters; ++i)
            asm volatile(
                "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                : "+r"(x)
                : "r"(one));
        return 10.0 * double(iters) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    const std::uint64_t iters = std::uint64_t(std::max(1.0, run(1 << 20) * seconds / 10.0));
    double best = 0;
    for (int r = 0; r < 3; ++r) best = std::max(best, run(iters));
    return best * 1e-9;
#else
    (void)seconds;
    return 0;  // WebAssembly has no instruction whose latency in cycles is known
#endif
}

}  // namespace

FmaPeak measure_fma_peak(double seconds, int repeats) {
    FmaPeak p = detail::run_on_best_arch<PeakRun>(seconds, repeats);
    p.ghz = measure_ghz(seconds);
    return p;
}

}  // namespace eva
