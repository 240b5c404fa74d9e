// eva — the one matrix product every layer uses.
//
//   C[M×N] = op(A)[M×K] · op(B)[K×N]      (or C += … with accumulate)
//
// op(X) is X as stored (Op::N) or its transpose (Op::T). All operands are row-major with an explicit
// leading dimension (row stride), so sub-blocks of larger matrices are used in place. The three products
// of a Linear layer y = x·Wᵀ (weight W[out, in]) are:
//   forward          y  = x · Wᵀ     gemm(Op::N, Op::T, …)
//   input gradient   dx = dy · W     gemm(Op::N, Op::N, …)
//   weight gradient  dW = dyᵀ · x    gemm(Op::T, Op::N, …, accumulate)
//
// `gemm` is the fast kernel (packed panels, cache blocking, an xsimd register-tiled micro-kernel chosen
// at run time for the CPU: AVX-512, AVX2+FMA or SSE2 natively, SIMD128 in WebAssembly). `gemm_reference`
// is the plain triple loop it is tested against, kept beside it as the algorithmic definition.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "eva/tensor.hpp"

namespace eva {

enum class Op { N, T };

template <class T>
void gemm(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
          const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate = false);

template <class T>
void gemm_reference(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A,
                    std::size_t lda, const T* B, std::size_t ldb, T* C, std::size_t ldc,
                    bool accumulate = false);

extern template void gemm<float>(Op, Op, std::size_t, std::size_t, std::size_t, const float*,
                                 std::size_t, const float*, std::size_t, float*, std::size_t, bool);
extern template void gemm<double>(Op, Op, std::size_t, std::size_t, std::size_t, const double*,
                                  std::size_t, const double*, std::size_t, double*, std::size_t, bool);
extern template void gemm_reference<float>(Op, Op, std::size_t, std::size_t, std::size_t, const float*,
                                           std::size_t, const float*, std::size_t, float*, std::size_t,
                                           bool);
extern template void gemm_reference<double>(Op, Op, std::size_t, std::size_t, std::size_t,
                                            const double*, std::size_t, const double*, std::size_t,
                                            double*, std::size_t, bool);

/// op(B) [K×N] packed once for several products that share it: the panels `gemm` would pack on every
/// call, kept. A training step multiplies by each Linear weight once per gradient shard in each
/// direction (x·Wᵀ forward, dy·W backward); packing the weight once per step instead of once per shard
/// leaves every value and every multiply-add as it was, so the products have the same bits.
/// The packed panels refer to B: it must stay alive and unchanged while they are used.
class PackedB {
public:
    /// Packs op(B) (B stored K×N for Op::N, N×K for Op::T, rows ldb apart), reusing this object's memory.
    void pack(Op op_b, std::size_t K, std::size_t N, const float* B, std::size_t ldb);

private:
    friend void gemm(Op, std::size_t, const float*, std::size_t, const PackedB&, float*, std::size_t, bool);
    Op op_ = Op::N;
    std::size_t K_ = 0, N_ = 0, ldb_ = 0;
    const float* B_ = nullptr;
    std::vector<float> panels_;
};

/// C[M×N] (+)= op(A)·op(B) with op(B) packed: the same bits as gemm with B itself.
void gemm(Op op_a, std::size_t M, const float* A, std::size_t lda, const PackedB& B, float* C, std::size_t ldc,
          bool accumulate = false);

/// op(A)·op(B) for row-major xtensor matrices; throws ShapeError if the inner dimensions differ.
template <class T>
Matrix<T> matmul(const Matrix<T>& A, const Matrix<T>& B, Op op_a = Op::N, Op op_b = Op::N) {
    const std::size_t M = op_a == Op::N ? A.shape(0) : A.shape(1);
    const std::size_t K = op_a == Op::N ? A.shape(1) : A.shape(0);
    const std::size_t Kb = op_b == Op::N ? B.shape(0) : B.shape(1);
    const std::size_t N = op_b == Op::N ? B.shape(1) : B.shape(0);
    if (K != Kb)
        throw ShapeError("matmul: inner dimensions differ (" + std::to_string(K) + " vs " +
                         std::to_string(Kb) + ")");
    Matrix<T> C = Matrix<T>::from_shape({M, N});
    gemm(op_a, op_b, M, N, K, A.data(), A.shape(1), B.data(), B.shape(1), C.data(), N);
    return C;
}

/// Name of the SIMD instruction set the GEMM kernel uses on this machine (e.g. "avx512f").
std::string gemm_arch();

/// How far a float product C = op(A)·op(B) (C[M×N], leading dimension N) is from the exact one, computed
/// by gemm_reference in double from the same operands: the largest |C − C_ref| entry, and that divided by
/// the largest |C_ref| entry (0 when C_ref is all zero). `eva gemm --check` and the GEMM panel show it.
struct GemmError {
    double max_abs = 0, max_rel = 0;
};
GemmError gemm_error(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
                     const float* B, std::size_t ldb, const float* C);

/// The experiment of `eva gemm` and the GEMM panel: C = op(A)·op(B) [M×N] with A then B drawn standard
/// normal from Rng(seed) (stored M×K or K×M, K×N or N×K as the ops say), multiplied `repeat` ≥ 1 times;
/// the median time, its GFLOP/s (2·M·N·K per product) and, with `check`, the product's gemm_error.
struct GemmExperiment {
    double median_seconds = 0, gflops = 0;
    GemmError error;  // zero without check
};
GemmExperiment gemm_random_run(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, std::uint64_t seed, int repeat,
                        bool check);

}  // namespace eva
