// eva — GEMM entry points: argument checks, workspace, and the run-time choice of SIMD architecture.
#include "eva/gemm.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "eva/error.hpp"
#include "eva/rng.hpp"
#include "gemm_kernel.hpp"
#include "simd_dispatch.hpp"
#include "parallel.hpp"

namespace eva {

#if defined(EVA_GEMM_DISPATCH)
// x86-64: the kernel is compiled for each of these (gemm_arch.cpp) and the widest the CPU supports is
// used. xsimd's AVX-512 code needs the BW/DQ/CD extensions too (every AVX-512 CPU since Skylake-X).
namespace detail {
EVA_GEMM_KERNEL_INSTANCE(extern, xsimd::avx512bw, float)
EVA_GEMM_KERNEL_INSTANCE(extern, xsimd::avx512bw, double)
EVA_GEMM_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>, float)
EVA_GEMM_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>, double)
EVA_GEMM_KERNEL_INSTANCE(extern, xsimd::sse2, float)
EVA_GEMM_KERNEL_INSTANCE(extern, xsimd::sse2, double)
}  // namespace detail
#endif

namespace {

using detail::GemmWorkspace;

struct GemmRun {  // the functor run_on_best_arch calls with the chosen architecture
    template <class Arch, class T, class... Args>
    void operator()(Arch arch, Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A,
                    Args... rest) const {
        detail::run_gemm_kernel<Arch, T>(arch, op_a, op_b, M, N, K, A, rest...);
    }
};

struct GemmPack {  // the functor run_on_best_arch calls with the chosen architecture
    template <class Arch, class T>
    void operator()(Arch arch, Op op_b, std::size_t K, std::size_t N, const T* B, std::size_t ldb, T* out) const {
        detail::run_gemm_pack<Arch, T>(arch, op_b, K, N, B, ldb, out);
    }
};

template <class T>
void run_kernel(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate, const GemmWorkspace& ws) {
    detail::run_on_best_arch<GemmRun>(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, ws);
}

void check_args(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const void* A, std::size_t lda,
                const void* B, std::size_t ldb, const void* C, std::size_t ldc) {
    auto fail = [](const std::string& what) { throw ShapeError("gemm: " + what); };
    const std::size_t a_cols = op_a == Op::N ? K : M, b_cols = op_b == Op::N ? N : K;
    if (lda < a_cols) fail("lda " + std::to_string(lda) + " is smaller than A's row length " + std::to_string(a_cols));
    if (ldb < b_cols) fail("ldb " + std::to_string(ldb) + " is smaller than B's row length " + std::to_string(b_cols));
    if (ldc < N) fail("ldc " + std::to_string(ldc) + " is smaller than C's row length " + std::to_string(N));
    if (M * K != 0 && !A) fail("A is null");
    if (K * N != 0 && !B) fail("B is null");
    if (M * N != 0 && !C) fail("C is null");
}

// One thread's GEMM scratch (packed panels of A and B, gathered rows), kept for the thread's lifetime
// and grown on demand: a training step calls the GEMM hundreds of times, and allocating the panels per
// call cost page faults every time.
template <class T>
class Scratch {
    struct Free {
        void operator()(T* p) const { ::operator delete[](p, std::align_val_t{64}); }
    };
    std::unique_ptr<T[], Free> data_;
    std::size_t size_ = 0;

public:
    T* get(std::size_t n) {
        if (n > size_) {
            data_.reset(static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t{64})));
            size_ = n;
        }
        return data_.get();
    }
};

template <class T>
void run_serial(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate, const T* prepacked_b = nullptr) {
    // Upper bounds over all architectures (the widest registers need the largest panels).
    using Bound = detail::GemmShape<T, 64>;
    thread_local Scratch<T> a, b, row;
    const std::size_t kc = std::min(K, Bound::KC);
    GemmWorkspace ws{a.get((std::min(M, Bound::MC) + Bound::MR) * kc), b.get((std::min(N, Bound::NC) + Bound::kWideCols) * kc),
                     // Short products gather up to DR (≤ 8) rows of a transposed A; matrix–vector ones a single row.
                     row.get(K * (M <= Bound::kShortRows ? 8 : 1)), prepacked_b};
    run_kernel(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, ws);
}

// Multi-threaded products split C into blocks of whole rows or whole columns, one per thread; every
// element is still summed over all of K by one thread in the kernel's order, so the result does not
// depend on the thread count. A row split is used only when every block stays on the packed-panel
// path (more than kShortRows rows, the path the whole product takes too); otherwise columns are split,
// which no path's per-element arithmetic depends on. Small products stay on one thread: starting a
// parallel region costs a few microseconds. A prepacked op(B) serves whole-row blocks; column blocks
// pack their own columns.
template <class T>
void run_split(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
               const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate, const T* prepacked_b = nullptr) {
    using Bound = detail::GemmShape<T, 64>;
    constexpr double kMinFlopsPerThread = 2.0e6;
    const std::size_t threads = std::size_t(detail::available_threads());
    const std::size_t parts = std::min<std::size_t>(threads, std::size_t(2.0 * double(M) * double(N) * double(K) / kMinFlopsPerThread));
    auto round_up = [](std::size_t x, std::size_t m) { return (x + m - 1) / m * m; };
    const std::size_t rows = parts >= 2 ? round_up((M + parts - 1) / parts, Bound::MR) : M;
    const std::size_t blocks = (M + rows - 1) / rows, last = M - (blocks - 1) * rows;
    if (parts >= 2 && blocks >= 2 && last > Bound::kShortRows) {
        detail::parallel_for(blocks, [&](std::size_t p) {
            const std::size_t i0 = p * rows, m = std::min(rows, M - i0);
            run_serial(op_a, op_b, m, N, K, op_a == Op::N ? A + i0 * lda : A + i0, lda, B, ldb, C + i0 * ldc, ldc, accumulate,
                       prepacked_b);
        });
    } else if (parts >= 2 && N / parts >= Bound::NR) {
        const std::size_t cols = round_up((N + parts - 1) / parts, Bound::NR);
        detail::parallel_for((N + cols - 1) / cols, [&](std::size_t p) {
            const std::size_t j0 = p * cols, n = std::min(cols, N - j0);
            run_serial(op_a, op_b, M, n, K, A, lda, op_b == Op::N ? B + j0 : B + j0 * ldb, ldb, C + j0, ldc, accumulate);
        });
    } else {
        run_serial(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, prepacked_b);
    }
}

}  // namespace

template <class T>
void gemm(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda, const T* B,
          std::size_t ldb, T* C, std::size_t ldc, bool accumulate) {
    check_args(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc);
    if (M == 0 || N == 0) return;
    if (K == 0) {  // an empty sum: C = 0, or C unchanged when accumulating
        if (!accumulate)
            for (std::size_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
        return;
    }
    run_split(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void PackedB::pack(Op op_b, std::size_t K, std::size_t N, const float* B, std::size_t ldb) {
    check_args(Op::N, op_b, 0, N, K, nullptr, K, B, ldb, nullptr, N);
    // Whole panels of the widest tile any architecture uses bound every layout.
    using Bound = detail::GemmShape<float, 64>;
    panels_.resize((N + Bound::kWideCols - 1) / Bound::kWideCols * Bound::kWideCols * K);
    op_ = op_b, K_ = K, N_ = N, ldb_ = ldb, B_ = B;
    if (K > 0 && N > 0) detail::run_on_best_arch<GemmPack>(op_b, K, N, B, ldb, panels_.data());
}

void gemm(Op op_a, std::size_t M, const float* A, std::size_t lda, const PackedB& B, float* C, std::size_t ldc,
          bool accumulate) {
    if (M == 0 || B.N_ == 0 || B.K_ == 0)
        return gemm<float>(op_a, B.op_, M, B.N_, B.K_, A, lda, B.B_, B.ldb_, C, ldc, accumulate);
    check_args(op_a, B.op_, M, B.N_, B.K_, A, lda, B.B_, B.ldb_, C, ldc);
    run_split(op_a, B.op_, M, B.N_, B.K_, A, lda, B.B_, B.ldb_, C, ldc, accumulate, B.panels_.data());
}

template <class T>
void gemm_reference(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                    const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate) {
    check_args(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc);
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            T s = accumulate ? C[i * ldc + j] : T(0);
            for (std::size_t k = 0; k < K; ++k)
                s += (op_a == Op::N ? A[i * lda + k] : A[k * lda + i]) * (op_b == Op::N ? B[k * ldb + j] : B[j * ldb + k]);
            C[i * ldc + j] = s;
        }
}

GemmError gemm_error(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
                     const float* B, std::size_t ldb, const float* C) {
    const std::size_t rows_a = op_a == Op::N ? M : K, rows_b = op_b == Op::N ? K : N;
    const std::vector<double> Ad(A, A + rows_a * lda), Bd(B, B + rows_b * ldb);
    std::vector<double> ref(M * N);
    gemm_reference<double>(op_a, op_b, M, N, K, Ad.data(), lda, Bd.data(), ldb, ref.data(), N);
    GemmError e;
    double largest = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        e.max_abs = std::max(e.max_abs, std::abs(double(C[i]) - ref[i]));
        largest = std::max(largest, std::abs(ref[i]));
    }
    e.max_rel = largest > 0 ? e.max_abs / largest : 0.0;
    return e;
}

GemmExperiment gemm_random_run(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, std::uint64_t seed, int repeat,
                        bool check) {
    if (repeat < 1) throw ConfigError("gemm: repeat must be at least 1, got " + std::to_string(repeat));
    Rng rng(seed);
    std::vector<float> A(M * K), B(K * N), C(M * N);
    rng.fill_normal(A.data(), A.size(), 0, 1);
    rng.fill_normal(B.data(), B.size(), 0, 1);
    const std::size_t lda = op_a == Op::T ? M : K, ldb = op_b == Op::T ? K : N;
    std::vector<double> seconds;
    for (int r = 0; r < repeat; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        gemm<float>(op_a, op_b, M, N, K, A.data(), lda, B.data(), ldb, C.data(), N);
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(seconds.begin(), seconds.end());
    GemmExperiment run;
    run.median_seconds = seconds[seconds.size() / 2];
    run.gflops = 2.0 * double(M) * double(N) * double(K) / std::max(run.median_seconds, 1e-9) * 1e-9;
    if (check) run.error = gemm_error(op_a, op_b, M, N, K, A.data(), lda, B.data(), ldb, C.data());
    return run;
}

std::string gemm_arch() {
#if defined(EVA_GEMM_DISPATCH)
    const unsigned best = xsimd::available_architectures().best;
    if (xsimd::avx512bw::version() <= best) return xsimd::avx512bw::name();
    if (xsimd::fma3<xsimd::avx2>::version() <= best) return xsimd::fma3<xsimd::avx2>::name();
    return xsimd::sse2::name();
#else
    return xsimd::default_arch::name();
#endif
}

template void gemm<float>(Op, Op, std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*,
                          std::size_t, float*, std::size_t, bool);
template void gemm<double>(Op, Op, std::size_t, std::size_t, std::size_t, const double*, std::size_t,
                           const double*, std::size_t, double*, std::size_t, bool);
template void gemm_reference<float>(Op, Op, std::size_t, std::size_t, std::size_t, const float*, std::size_t,
                                    const float*, std::size_t, float*, std::size_t, bool);
template void gemm_reference<double>(Op, Op, std::size_t, std::size_t, std::size_t, const double*, std::size_t,
                                     const double*, std::size_t, double*, std::size_t, bool);

}  // namespace eva
