// eva — a parallel loop over independent pieces of work (private header of eva_core).
//
// parallel_for(n, f) calls f(i) once for every i in [0, n), spread over eva::num_threads() threads.
// The pieces must be independent (each writes its own outputs) and each must compute the same result
// whichever thread runs it: then the outcome is bit-identical for every thread count. Inside another
// parallel region (e.g. a GEMM called from a per-expert loop) it runs serially on the calling thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>

#include "eva/threads.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace eva::detail {

/// Threads a new parallel region would get here: 1 inside a parallel region or without OpenMP.
inline int available_threads() {
#if defined(_OPENMP)
    return omp_in_parallel() ? 1 : num_threads();
#else
    return 1;
#endif
}

template <class F>
void parallel_for(std::size_t n, F&& f) {
#if defined(_OPENMP)
    const int threads = available_threads();
    if (threads > 1 && n > 1) {
        // Dynamic: pieces (experts, sequences) differ in cost; the assignment of pieces to threads
        // never changes a piece's result.
        // An exception must not leave a parallel region: the one of the lowest piece is rethrown
        // after the loop, as the serial loop would have thrown it first.
        std::exception_ptr error;
        std::size_t error_at = n;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(n); ++i) {
            try {
                f(std::size_t(i));
            } catch (...) {
#pragma omp critical(eva_parallel_for_error)
                if (std::size_t(i) < error_at) {
                    error_at = std::size_t(i);
                    error = std::current_exception();
                }
            }
        }
        if (error) std::rethrow_exception(error);
        return;
    }
#endif
    for (std::size_t i = 0; i < n; ++i) f(i);
}

/// f(begin, end) over consecutive ranges of at most `chunk` of [0, n): for element-wise loops.
template <class F>
void parallel_ranges(std::size_t n, std::size_t chunk, F&& f) {
    parallel_for((n + chunk - 1) / chunk, [&](std::size_t c) { f(c * chunk, std::min(n, (c + 1) * chunk)); });
}

}  // namespace eva::detail
