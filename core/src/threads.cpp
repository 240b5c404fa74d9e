// eva — the thread count (OpenMP when available, else always 1).
#include "eva/threads.hpp"

#include <cstdlib>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace eva {

namespace {

#if defined(_OPENMP)
// EVA_NUM_THREADS when set to a positive number, else 0.
int env_threads() {
    const char* s = std::getenv("EVA_NUM_THREADS");
    const int n = s ? std::atoi(s) : 0;
    return n > 0 ? n : 0;
}
#endif

// The library's own default: one thread unless the environment asks for more (no threads the caller
// did not give).
int default_threads() {
#if defined(_OPENMP)
    const int n = env_threads();
    return n > 0 ? n : 1;
#else
    return 1;
#endif
}

int& current() {
    static int n = default_threads();
    return n;
}

}  // namespace

void set_num_threads(int n) {
#if defined(_OPENMP)
    const int env = env_threads();
    current() = n > 0 ? n : env > 0 ? env : omp_get_max_threads();  // OMP_NUM_THREADS, or every core
#else
    (void)n;
#endif
}

int num_threads() { return current(); }

bool threads_available() {
#if defined(_OPENMP)
    return true;
#else
    return false;
#endif
}

}  // namespace eva
