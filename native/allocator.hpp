// eva's native programs keep the memory they free for reuse. A training step allocates and frees the
// same few hundred MB of activations and gradients every step; glibc's malloc serves blocks that large
// with mmap and returns them to the kernel on free (and trims the heap's freed top), so every step paid
// again for the kernel zeroing and mapping those pages — about 70,000 minor page faults and a tenth of
// an eva-mini step's time. With both thresholds raised, a block freed by one step serves the next. The
// heap still grows over the first few dozen steps (blocks of sizes that vary with the routing, per
// expert, fragment it until it holds the steps' working set); after that a step takes no page faults
// (eva_bench_train reports the count, after an untimed pass).
// Both thresholds govern the main heap only. A thread other than the main one gets an arena of its own,
// made of 64 MiB sub-heaps that glibc unmaps as soon as they empty, whatever the thresholds: with two
// gradient shards computed side by side, the second thread's step cost ~200 page faults again. One
// arena for all threads keeps everything on the main heap; the price, a lock around each malloc, is
// nothing next to a step's few thousand allocations.
#pragma once

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace eva::native {

inline void keep_freed_memory() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 30);  // blocks up to 1 GiB come from the heap, not from mmap
    mallopt(M_TRIM_THRESHOLD, 1 << 30);  // and freed memory stays in the heap for the next step
    mallopt(M_ARENA_MAX, 1);             // every thread allocates from that one heap
#endif
}

}  // namespace eva::native
