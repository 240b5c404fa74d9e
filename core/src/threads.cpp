// eva — the thread count (OpenMP when available, else always 1).
#include "eva/threads.hpp"

#include <cstdlib>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace eva {

namespace {

int default_threads() {
#if defined(_OPENMP)
    if (const char* s = std::getenv("EVA_NUM_THREADS")) {
        const int n = std::atoi(s);
        if (n > 0) return n;
    }
    return omp_get_max_threads();  // OMP_NUM_THREADS, or the number of cores
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
    current() = n > 0 ? n : default_threads();
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
