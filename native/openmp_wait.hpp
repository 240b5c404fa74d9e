// eva's native programs let idle OpenMP threads sleep rather than spin. A training step opens thousands
// of short parallel regions (every split GEMM, every per-expert and per-sequence loop); between them
// libgomp's default keeps each idle thread spinning for up to ~300,000 iterations before it sleeps.
// On a quiet machine that is harmless, but as soon as anything else wants the cores the spinning
// threads take CPU time from the thread that still works, and every region's barrier waits for a
// thread that is not running: measured on eva-mini on a shared 2-core machine (load 5), 2-thread steps
// took about twice as long as with sleeping waits, and a step cut into 4 gradient shards (4× the
// regions) five times as long (at load 11: ten times). OMP_WAIT_POLICY is read once, when libgomp loads, so the program sets it and re-executes
// itself once; a policy the user set is kept.
#pragma once

#include <cstdlib>
#include <unistd.h>

#include "eva/threads.hpp"

namespace eva::native {

inline void passive_openmp_wait(char** argv) {
#if defined(__linux__)
    if (!eva::threads_available() || std::getenv("OMP_WAIT_POLICY")) return;
    // Executing the file /proc/self/exe points to (not the link itself) keeps the process name: ps,
    // pgrep and mpirun's ranks still show "eva", not "exe".
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv(self, argv);  // returns only on failure: then run on with libgomp's default
#else
    (void)argv;
#endif
}

}  // namespace eva::native
