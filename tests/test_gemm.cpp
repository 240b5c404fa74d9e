// GEMM: the fast kernel against a triple loop accumulated in a wider type, over odd shapes, every
// transpose combination, accumulation, and operands that are sub-blocks of larger matrices.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "eva/error.hpp"
#include "eva/gemm.hpp"
#include "eva/rng.hpp"

using eva::Op;

namespace {

template <class T>
struct Case {
    std::size_t M, N, K;
    Op op_a, op_b;
    std::size_t pad;  // extra columns in every stored row: operands are then non-contiguous views
};

template <class T>
std::vector<T> random_matrix(std::size_t rows, std::size_t cols, eva::Rng& rng) {
    std::vector<T> m(rows * cols);
    for (auto& x : m) x = T(rng.normal());
    return m;
}

// Reference accumulation precision: double for float operands, long double for double operands.
template <class T>
using Wide = std::conditional_t<std::is_same_v<T, float>, double, long double>;

// Checks gemm(op_a, op_b) with (C_in + )A·B against a triple loop in a wider type. The bound is the
// classic one for a length-K dot product in precision u: |ĉ − c| ≤ γ_K · Σ|a||b| with γ_K ≈ K·u
// (Higham, Accuracy and Stability, §3.1); any blocking order satisfies it. We allow 2·K·u.
template <class T>
void check(const Case<T>& c, bool accumulate, std::uint64_t seed) {
    eva::Rng rng(seed);
    const std::size_t a_rows = c.op_a == Op::N ? c.M : c.K, a_cols = c.op_a == Op::N ? c.K : c.M;
    const std::size_t b_rows = c.op_b == Op::N ? c.K : c.N, b_cols = c.op_b == Op::N ? c.N : c.K;
    const std::size_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
    auto A = random_matrix<T>(a_rows, lda, rng);
    auto B = random_matrix<T>(b_rows, ldb, rng);
    auto C = random_matrix<T>(c.M, ldc, rng);
    const auto C0 = C;
    eva::gemm<T>(c.op_a, c.op_b, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, C.data(), ldc, accumulate);

    using W = Wide<T>;
    const W u = std::numeric_limits<T>::epsilon() / 2;
    for (std::size_t i = 0; i < c.M; ++i)
        for (std::size_t j = 0; j < ldc; ++j) {
            if (j >= c.N) {  // padding columns of C must be untouched
                REQUIRE(C[i * ldc + j] == C0[i * ldc + j]);
                continue;
            }
            W ref = accumulate ? C0[i * ldc + j] : 0, mag = std::fabs(ref);
            for (std::size_t k = 0; k < c.K; ++k) {
                const W a = c.op_a == Op::N ? A[i * lda + k] : A[k * lda + i];
                const W b = c.op_b == Op::N ? B[k * ldb + j] : B[j * ldb + k];
                ref += a * b;
                mag += std::fabs(a * b);
            }
            const W err = std::fabs(C[i * ldc + j] - ref);
            INFO("M=" << c.M << " N=" << c.N << " K=" << c.K << " i=" << i << " j=" << j);
            REQUIRE(err <= 2 * (c.K + 1) * u * mag + std::numeric_limits<T>::denorm_min());
        }
}

template <class T>
void sweep(std::size_t pad) {
    const std::array<std::size_t, 3> shapes[] = {{1, 1, 1},     {7, 13, 129},  {128, 128, 128}, {3, 200, 17},
                                     {2, 5, 1000},  {13, 1, 385},  {67, 45, 770},   {200, 33, 31},
                                     {25, 130, 9},  {193, 97, 400}};
    std::uint64_t seed = 1;
    for (const auto& [M, N, K] : shapes)
        for (Op op_a : {Op::N, Op::T})
            for (Op op_b : {Op::N, Op::T})
                for (bool acc : {false, true}) check<T>(Case<T>{M, N, K, op_a, op_b, pad}, acc, seed++);
}

// For each op(A), op(B) and accumulation: C's first N_narrow columns computed in a product of N_wide
// columns and in one of N_narrow (ldc N_wide both times), from the same random operands (A's rows
// lda_pad longer than needed). Returns how many of those entries differ; every path must give 0.
std::size_t leading_columns_differ(std::size_t M, std::size_t K, std::size_t N_narrow, std::size_t N_wide, Op op_a,
                                   Op op_b, bool acc, std::size_t lda_pad, eva::Rng& rng) {
    const std::size_t lda = (op_a == Op::N ? K : M) + lda_pad, ldb = op_b == Op::N ? N_wide : K;
    const auto A = random_matrix<float>(op_a == Op::N ? M : K, lda, rng);
    const auto B = random_matrix<float>(op_b == Op::N ? K : N_wide, ldb, rng);
    const auto C0 = random_matrix<float>(M, N_wide, rng);
    std::vector<float> wide = C0, narrow = C0;
    eva::gemm<float>(op_a, op_b, M, N_wide, K, A.data(), lda, B.data(), ldb, wide.data(), N_wide, acc);
    eva::gemm<float>(op_a, op_b, M, N_narrow, K, A.data(), lda, B.data(), ldb, narrow.data(), N_wide, acc);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N_narrow; ++j) differ += wide[i * N_wide + j] != narrow[i * N_wide + j];
    return differ;
}

}  // namespace

TEST_CASE("gemm float matches the long-double triple loop on odd shapes", "[gemm]") { sweep<float>(0); }
TEST_CASE("gemm float on non-contiguous operands (row stride > row length)", "[gemm]") { sweep<float>(3); }
TEST_CASE("gemm double matches the long-double triple loop", "[gemm]") { sweep<double>(1); }

TEST_CASE("gemm: a row of C in a product of 2 rows equals that row computed alone, bit for bit", "[gemm]") {
    // Speculative decoding verifies drafted tokens in one forward of several rows and must give each the
    // logits a one-token step gives (eva/mtp.hpp): the GEMM's few-row path processes rows together but
    // does each row's arithmetic as it would alone. Exact equality, over both op(B), with and without
    // accumulation, for K and N that leave SIMD tails. Two rows (one drafted token) take that path on
    // every instruction set (it is left from 3 rows on with SSE2 and AVX2, 6 with AVX-512, and 3 in
    // WebAssembly, whose 5-row tile would otherwise send 2 rows to the dot-product path).
    eva::Rng rng(9);
    for (Op op_b : {Op::N, Op::T})
        for (bool acc : {false, true})
            {
                const std::size_t M = 2, N = 37, K = 45;
                const auto A = random_matrix<float>(M, K, rng), B = random_matrix<float>(K, N, rng),
                           C0 = random_matrix<float>(M, N, rng);
                std::vector<float> together = C0, alone = C0;
                const std::size_t ldb = op_b == Op::N ? N : K;
                eva::gemm<float>(Op::N, op_b, M, N, K, A.data(), K, B.data(), ldb, together.data(), N, acc);
                for (std::size_t i = 0; i < M; ++i)
                    eva::gemm<float>(Op::N, op_b, 1, N, K, A.data() + i * K, K, B.data(), ldb, alone.data() + i * N, N, acc);
                std::size_t differ = 0;
                for (std::size_t j = 0; j < M * N; ++j) differ += together[j] != alone[j];
                INFO("op_b " << (op_b == Op::N ? "N" : "T") << ", accumulate " << acc);
                CHECK(differ == 0);
            }
}

TEST_CASE("gemm: op(A) = A and op(A) = Aᵀ of the same matrix give the same bits", "[gemm]") {
    // The micro-kernel broadcasts op(A) = A straight from A's rows and op(A) = Aᵀ straight from the
    // stored rows of Aᵀ (whose MR neighbouring elements lie as in a packed panel). Both read the same
    // values into the same fused multiply-adds in the same order, so the same product stored either way must give
    // identical bits: shapes with whole and partial row panels, several KC blocks (K > 384) and MC
    // blocks (M > 192), padded rows, with and without accumulation, both op(B).
    eva::Rng rng(17);
    const std::array<std::size_t, 3> shapes[] = {{24, 64, 128}, {193, 97, 400}, {250, 33, 800}, {37, 130, 9}};
    for (const auto& [M, N, K] : shapes)
        for (Op op_b : {Op::N, Op::T})
            for (bool acc : {false, true}) {
                const std::size_t lda = K + 3, ldat = M + 1, ldb = (op_b == Op::N ? N : K) + 2;
                const auto A = random_matrix<float>(M, lda, rng);
                std::vector<float> At(K * ldat);  // Aᵀ stored [K, M]
                for (std::size_t i = 0; i < M; ++i)
                    for (std::size_t k = 0; k < K; ++k) At[k * ldat + i] = A[i * lda + k];
                const auto B = random_matrix<float>(op_b == Op::N ? K : N, ldb, rng), C0 = random_matrix<float>(M, N, rng);
                std::vector<float> in_place = C0, packed = C0;
                eva::gemm<float>(Op::N, op_b, M, N, K, A.data(), lda, B.data(), ldb, in_place.data(), N, acc);
                eva::gemm<float>(Op::T, op_b, M, N, K, At.data(), ldat, B.data(), ldb, packed.data(), N, acc);
                std::size_t differ = 0;
                for (std::size_t j = 0; j < M * N; ++j) differ += in_place[j] != packed[j];
                INFO("M " << M << " N " << N << " K " << K << ", op_b " << (op_b == Op::N ? "N" : "T") << ", accumulate " << acc);
                CHECK(differ == 0);
            }
}

TEST_CASE("gemm: the leading columns of C are the same bits in a narrow and a wide product", "[gemm]") {
    // A product of at least 512 columns (128 in WebAssembly) packs all of A, a narrower one reads whole
    // row panels of A in place, on every instruction set: the same values enter the same fused
    // multiply-adds in the same order either way, so C's first 64 columns, computed with 64 and with 1100
    // columns of B, must be equal bit for bit. Both op(A), both op(B), several KC blocks (K > 384), whole and partial row
    // panels, with and without accumulation.
    eva::Rng rng(23);
    const std::size_t N_narrow = 64, N_wide = 1100;  // split over 2 threads, still ≥ 512 columns each
    for (const auto& [M, K] : {std::array<std::size_t, 2>{50, 400}, std::array<std::size_t, 2>{193, 90}})
        for (Op op_a : {Op::N, Op::T})
            for (Op op_b : {Op::N, Op::T})
                for (bool acc : {false, true}) {
                    INFO("M " << M << " K " << K << ", op_a " << (op_a == Op::N ? "N" : "T") << ", op_b "
                              << (op_b == Op::N ? "N" : "T") << ", accumulate " << acc);
                    CHECK(leading_columns_differ(M, K, N_narrow, N_wide, op_a, op_b, acc, 1, rng) == 0);
                }
}

TEST_CASE("gemm: the wide and the narrow register tile give the same bits, for any rows in a last panel", "[gemm]") {
    // With AVX-512 a product takes a 6 × 64 tile when that pads N no more than the 12 × 32 one: 128
    // columns go wide, 96 narrow. Each tile sums every element over k in the same order, so C's first
    // 96 columns must be equal bit for bit either way. M runs over 25..48, every count of rows in a
    // last partial panel of either tile (each has its own micro-kernel), on the packed path (more than
    // 24 rows); both op(A), both op(B), one and two KC blocks, with and without accumulation; and each
    // product is held to the long-double triple loop as in the sweep above.
    eva::Rng rng(29);
    const std::size_t N_wide = 128, N_narrow = 96;
    std::uint64_t seed = 500;
    for (std::size_t M = 25; M <= 48; ++M)
        for (std::size_t K : {std::size_t(50), std::size_t(400)})
            for (Op op_a : {Op::N, Op::T})
                for (Op op_b : {Op::N, Op::T})
                    for (bool acc : {false, true}) {
                        if (K == 400 && (M % 4 != 0 || acc)) continue;  // the long K on a sample: it repeats the short
                        check<float>(Case<float>{M, N_wide, K, op_a, op_b, 1}, acc, seed++);
                        INFO("M " << M << " K " << K << ", op_a " << (op_a == Op::N ? "N" : "T") << ", op_b "
                                  << (op_b == Op::N ? "N" : "T") << ", accumulate " << acc);
                        CHECK(leading_columns_differ(M, K, N_narrow, N_wide, op_a, op_b, acc, 0, rng) == 0);
                    }
}

TEST_CASE("gemm beyond one cache block in every dimension", "[gemm]") {
    // K > KC (384), M > MC (≤ 192), N > NC for double on narrow SIMD (768): all block loops iterate.
    check<float>(Case<float>{300, 1100, 900, Op::N, Op::T, 0}, false, 99);
    check<double>(Case<double>{200, 800, 500, Op::T, Op::N, 2}, true, 98);
}

TEST_CASE("gemm_reference is the plain definition", "[gemm]") {
    // A 2×2 product by hand: [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]].
    const float A[] = {1, 2, 3, 4}, B[] = {5, 6, 7, 8};
    float C[4];
    eva::gemm_reference<float>(Op::N, Op::N, 2, 2, 2, A, 2, B, 2, C, 2);
    CHECK(C[0] == 19);
    CHECK(C[1] == 22);
    CHECK(C[2] == 43);
    CHECK(C[3] == 50);
    eva::gemm<float>(Op::N, Op::T, 2, 2, 2, A, 2, B, 2, C, 2);  // A·Bᵀ = [[17,23],[39,53]]
    CHECK(C[0] == 17);
    CHECK(C[1] == 23);
    CHECK(C[2] == 39);
    CHECK(C[3] == 53);
}

TEST_CASE("gemm with K = 0 writes zeros, or leaves C when accumulating", "[gemm]") {
    float C[6] = {1, 2, 3, 4, 5, 6};
    eva::gemm<float>(Op::N, Op::N, 2, 3, 0, nullptr, 0, nullptr, 3, C, 3, true);
    CHECK(C[5] == 6);
    eva::gemm<float>(Op::N, Op::N, 2, 3, 0, nullptr, 0, nullptr, 3, C, 3, false);
    for (float c : C) CHECK(c == 0);
}

TEST_CASE("gemm rejects inconsistent strides and shapes", "[gemm]") {
    std::vector<float> a(12), b(12), c(12);
    CHECK_THROWS_AS(eva::gemm<float>(Op::N, Op::N, 3, 4, 4, a.data(), 3, b.data(), 4, c.data(), 4),
                    eva::ShapeError);
    CHECK_THROWS_WITH(eva::gemm<float>(Op::N, Op::N, 3, 4, 3, a.data(), 3, b.data(), 4, c.data(), 2),
                      Catch::Contains("ldc"));
    eva::Matrix<float> x = eva::Matrix<float>::from_shape({2, 3}), y = eva::Matrix<float>::from_shape({4, 2});
    eva::Matrix<float> w = eva::Matrix<float>::from_shape({4, 3});
    CHECK_THROWS_AS(eva::matmul(x, y), eva::ShapeError);
    CHECK(eva::matmul(x, w, Op::N, Op::T).shape(1) == 4);
}

TEST_CASE("gemm_error: the largest error against the double product, absolute and relative, by hand", "[gemm]") {
    // A = [[1, 2], [3, 4]], B = [[5, 6], [7, 8]]: A·B = [[19, 22], [43, 50]] exactly (small integers are
    // exact in float). C is that product with 0.25 added to one entry and 0.5 taken from another.
    const std::vector<float> A = {1, 2, 3, 4}, B = {5, 6, 7, 8};
    std::vector<float> C = {19, 22.25f, 42.5f, 50};
    eva::GemmError e = eva::gemm_error(eva::Op::N, eva::Op::N, 2, 2, 2, A.data(), 2, B.data(), 2, C.data());
    CHECK(e.max_abs == 0.5);
    CHECK(e.max_rel == 0.5 / 50);
    // Transposed operands: Aᵀ·Bᵀ = [[1·5 + 3·6, 1·7 + 3·8], [2·5 + 4·6, 2·7 + 4·8]] = [[23, 31], [34, 46]].
    C = {23, 31, 34, 46};
    e = eva::gemm_error(eva::Op::T, eva::Op::T, 2, 2, 2, A.data(), 2, B.data(), 2, C.data());
    CHECK(e.max_abs == 0);
    CHECK(e.max_rel == 0);
    // An all-zero product: relative error 0, not a division by zero.
    const std::vector<float> Z = {0, 0, 0, 0};
    C = {0, 0.125f, 0, 0};
    e = eva::gemm_error(eva::Op::N, eva::Op::N, 2, 2, 2, Z.data(), 2, B.data(), 2, C.data());
    CHECK(e.max_abs == 0.125);
    CHECK(e.max_rel == 0);
}

TEST_CASE("gemm_random_run: eva gemm's experiment on seeded operands, against the same steps by hand", "[gemm]") {
    // The reference draws the operands itself (A then B from Rng(seed)), multiplies once and measures
    // gemm_error: the run's error must be those bits (the GEMM is deterministic), for every op pair.
    const std::size_t M = 7, N = 5, K = 9;
    for (eva::Op op_a : {eva::Op::N, eva::Op::T})
        for (eva::Op op_b : {eva::Op::N, eva::Op::T}) {
            std::vector<float> A(M * K), B(K * N), C(M * N);
            eva::Rng rng(3);
            rng.fill_normal(A.data(), A.size(), 0, 1);
            rng.fill_normal(B.data(), B.size(), 0, 1);
            const std::size_t lda = op_a == eva::Op::T ? M : K, ldb = op_b == eva::Op::T ? K : N;
            eva::gemm<float>(op_a, op_b, M, N, K, A.data(), lda, B.data(), ldb, C.data(), N);
            const eva::GemmError e = eva::gemm_error(op_a, op_b, M, N, K, A.data(), lda, B.data(), ldb, C.data());
            const eva::GemmExperiment run = eva::gemm_random_run(op_a, op_b, M, N, K, 3, 3, true);
            CHECK(run.error.max_abs == e.max_abs);
            CHECK(run.error.max_rel == e.max_rel);
            CHECK(e.max_rel > 0);  // float rounding: the check has something to measure
            CHECK(run.gflops == Approx(2.0 * M * N * K / std::max(run.median_seconds, 1e-9) * 1e-9).epsilon(1e-12));
        }
    const eva::GemmExperiment unchecked = eva::gemm_random_run(eva::Op::N, eva::Op::N, M, N, K, 3, 1, false);
    CHECK(unchecked.error.max_abs == 0);
    CHECK(unchecked.median_seconds > 0);
    CHECK_THROWS_AS(eva::gemm_random_run(eva::Op::N, eva::Op::N, M, N, K, 3, 0, true), eva::ConfigError);
}
