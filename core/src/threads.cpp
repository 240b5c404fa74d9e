// eva — the thread count (OpenMP when available, else always 1).
#include "eva/threads.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "eva/error.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace eva {

namespace {

#if defined(_OPENMP)
// EVA_NUM_THREADS when set to a positive number, else 0.
int env_threads() {
    const char* s = std::getenv("EVA_NUM_THREADS");
    const long n = s ? std::strtol(s, nullptr, 10) : 0;
    return n > 0 ? int(std::min<long>(n, max_threads())) : 0;
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

int max_threads() { return 4 * std::max(1, int(std::thread::hardware_concurrency())); }

void set_num_threads(int n) {
    if (n < 0 || n > max_threads())
        throw ConfigError("thread count " + std::to_string(n) + " is outside 0.." + std::to_string(max_threads()) +
                          " (4 × the " + std::to_string(max_threads() / 4) + " hardware threads; 0: the default)");
#if defined(_OPENMP)
    const int env = env_threads();
    // OMP_NUM_THREADS, or every core; capped like EVA_NUM_THREADS.
    current() = n > 0 ? n : env > 0 ? env : std::min(omp_get_max_threads(), max_threads());
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
