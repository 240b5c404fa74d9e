// eva — how many CPU threads the core may use.
//
// Native builds use OpenMP when the compiler has it; WebAssembly (and any build without OpenMP) runs
// everything on the calling thread, and these functions then report 1.
//
// Determinism does not depend on the thread count: work is only ever split into pieces whose results
// do not depend on which thread computes them (GEMM output blocks — the inner dimension K is never
// split —, whole sequences of attention, whole experts), so the same seed gives bit-identical losses
// and weights with 1 thread or many.
#pragma once

namespace eva {

/// The most threads eva will start: 4 × the hardware threads (at least 4). More only oversubscribes the
/// cores, and 100,000 OpenMP threads crash the runtime; EVA_NUM_THREADS and OMP_NUM_THREADS are capped here.
int max_threads();

/// Threads the core uses from now on: n ≥ 1, or 0 for "as many as the machine offers" (EVA_NUM_THREADS
/// if set, else the OpenMP default: OMP_NUM_THREADS if set, else every core). Without OpenMP it stays 1.
/// ConfigError if n < 0 or n > max_threads().
void set_num_threads(int n);

/// The current thread count. Until set_num_threads is called: EVA_NUM_THREADS if set, else 1 — the
/// library starts no threads the caller did not ask for.
int num_threads();

/// Whether this build can use more than one thread (compiled with OpenMP).
bool threads_available();

}  // namespace eva
