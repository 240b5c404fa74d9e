// eva — the physical limit a benchmark is measured against: this core's fp32 multiply-add peak.
//
// A ratio to a peer library says little when the peer's own efficiency changes by 2× from one CPU to
// the next; the fraction of the machine's peak does not. `measure_fma_peak` times a loop that keeps
// independent multiply-add chains in registers (no memory traffic at all), in the widest vector
// instruction set the GEMM dispatches to — AVX-512, AVX2+FMA or SSE2 natively, SIMD128 in
// WebAssembly — so its GFLOP/s is what one core can do at best. A GEMM's or a training step's
// GFLOP/s divided by it is the fraction of the peak (for a training step: the model FLOPs utilisation,
// MFU, with the FLOPs counted in eva/flops.hpp).
//
//   peak = chains · lanes · 2 FLOPs / (time per round of `chains` multiply-adds)
//
// Each chain is one register updated by acc ← acc·a + c: a chain waits on its own previous result
// (a latency of ~4 cycles), so enough chains run side by side to keep every FMA unit busy.
#pragma once

#include <string>

namespace eva {

struct FmaPeak {
    std::string simd;      // instruction set of the loop: "avx512bw", "fma3<avx2>", "sse2", "sse4.1" (SIMD128)
    int lanes = 0;         // floats per register
    bool fused = false;    // one fused instruction per multiply-add (false: a multiply and an add)
    double gflops = 0;     // fp32 GFLOP/s of the calling thread's core; a multiply-add counts 2 FLOPs
    double ghz = 0;        // the core's clock from a chain of dependent integer adds; 0 where not measurable
    /// FLOPs per cycle (e.g. 64 for two 16-lane FMA units); 0 without a clock.
    double flops_per_cycle() const { return ghz > 0 ? gflops / ghz : 0; }
};

/// Measures the calling thread's peak: the fastest of `repeats` timed runs of about `seconds` each,
/// after a warm-up (noise — another process, an interrupt — only ever slows a run down, so the fastest
/// run is the best estimate of the limit).
FmaPeak measure_fma_peak(double seconds = 0.1, int repeats = 5);

}  // namespace eva
