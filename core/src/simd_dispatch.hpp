// eva — running a SIMD kernel on the widest x86 level the CPU has. The portable build compiles each kernel
// (the GEMM micro-kernel, the FP8 codec, the peak loop, AdamW's update) once per level in its *_arch.cpp,
// with that level's flags (CMakeLists.txt lists the same levels); WebAssembly and -march=native builds
// compile one, for xsimd's default architecture.
#pragma once

#include <xsimd/xsimd.hpp>

namespace eva::detail {

#if defined(EVA_GEMM_DISPATCH)
/// The levels, widest first: xsimd::dispatch takes the first one the CPU supports.
using SimdArchs = xsimd::arch_list<xsimd::avx512bw, xsimd::fma3<xsimd::avx2>, xsimd::sse2>;
#endif

/// Run{}(arch, args...) for the best architecture available. Run is a functor whose call operator is a
/// template over the architecture type.
template <class Run, class... Args>
auto run_on_best_arch(Args... args) {
#if defined(EVA_GEMM_DISPATCH)
    static const auto dispatched = xsimd::dispatch<SimdArchs>(Run{});  // reads CPUID once
    auto run = dispatched;
    return run(args...);
#else
    return Run{}(xsimd::default_arch{}, args...);
#endif
}

}  // namespace eva::detail
