// eva — GEMM kernel, generic over the scalar type and the SIMD architecture (private header).
//
// The classic Goto/BLIS structure. For each block of KC inner-dimension steps, B is packed once into
// panels of NR columns, laid out k-major, so the micro-kernel streams it from contiguous memory. The
// micro-kernel keeps an MR × NR tile of C in SIMD registers and does MR·NR/lanes fused multiply-adds
// per step k: one broadcast of A's element per row, NV vector loads of B. A last partial panel of rows
// has a micro-kernel of its own row count, so no multiply-add is spent on rows that do not exist.
// The broadcasts read A in place: when op(A) = A each row is contiguous in k; when op(A) = Aᵀ (the
// weight gradient dyᵀ·x) the MR elements of one step k lie side by side in a stored row, exactly as in
// a packed panel, only lda apart from step to step. Packing would copy A element by element for
// nothing, which costs as much as the product itself when N spans only a few panels, as in a small
// model's layers. A product of kPackAColumns columns or more, which reuses each panel of A against
// many panels of B, packs A all the same (see run).
//   register budget: MR·NV accumulators + NV B vectors + 1 broadcast ≤ number of vector registers
//   (AVX-512: 32 → MR 12, NV 2, or the wide tile MR 6, NV 4; AVX2/SSE: 16 → MR 6, NV 2; wasm: MR 5,
//   see kNarrowRows).
// Block sizes keep a block of A (MC × KC) in L2. A B panel (KC × NR: 48 KiB, or 96 KiB for the wide
// tile, with AVX-512 floats) is larger than a 32 KiB L1 and streams from L2; a KC small enough to fit
// it in L1 (128–256) measured no faster on a Zen 4 core, and KC = 384 halves the passes over C.
//
// This header is included by one translation unit per architecture, each compiled with that
// architecture's flags. It must therefore allocate nothing and call no non-template library code, so
// that no instruction of a wider ISA leaks into code shared with the other units.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "eva/gemm.hpp"

namespace eva::detail {

struct GemmWorkspace {
    void* packed_a;  // MC × KC scalars, aligned
    void* packed_b;  // KC × NC scalars, aligned
    void* row;       // K · 8 scalars (short-M paths: up to DR gathered rows of A)
    const void* prepacked_b = nullptr;  // all of op(B) packed already (GemmKernel::pack_all), or nullptr
};

#if defined(__EMSCRIPTEN__)
// V8 keeps fewer WebAssembly SIMD values in registers than a native compiler does: 5 rows (10
// accumulators, 2 B vectors, a broadcast and the product of the unfused multiply-add: 14 of x86-64's
// 16) is the most that stays in registers. eva_speed under node 20, 5 alternating runs, medians:
// 5 rows ~36 GFLOP/s at 256³–1024³, 4 rows ~33, 6 rows ~25 (spilled); a training step +6%.
constexpr std::size_t kNarrowRows = 5;
// Every WebAssembly address is a 32-bit index that V8 computes with instructions of its own, so MR rows
// of A lda apart cost an address computation per row and step; a packed panel's MR elements sit at
// constant offsets from one pointer, which V8 folds into the loads (V8's x86-64 code for the
// micro-kernel's loop: an address computation per row and step in place, none packed; eva_speed 1024³,
// packed, ~44 GFLOP/s, about 90% of the SIMD128 peak, against ~38.5 at 256³ in place). So A is packed
// from 128 columns up, where AVX-512 packs from 512 (see GemmKernel::run). 5 alternating eva_speed
// runs, medians of tokens/s of the training step: 128 columns 1232, 512 1139, 256 1208, 64 1256,
// always 1217 (64 and 0 within noise of 128; a narrower product reuses a packed panel too few times to
// repay the copy).
constexpr std::size_t kPackAFrom = 128;
#else
constexpr std::size_t kNarrowRows = 6;
constexpr std::size_t kPackAFrom = 512;
#endif

/// Tile and block sizes for scalar T with SIMD registers of `Bytes` bytes. Every size grows with the
/// register width, so GemmShape<T, 64> bounds the workspace any architecture needs.
template <class T, std::size_t Bytes>
struct GemmShape {
    static constexpr std::size_t L = Bytes / sizeof(T);  // lanes per vector
    static constexpr std::size_t NV = 2;                 // vectors per tile row
    static constexpr std::size_t NR = NV * L;            // tile columns
    static constexpr std::size_t MR = Bytes == 64 ? 12 : kNarrowRows;  // tile rows
    // AVX-512's 32 registers also hold a wide tile of 6 rows × 4 vectors: the same 24 accumulators fed
    // by 6 broadcasts and 4 loads per step k instead of 12 and 2 (one thread, eva gemm: 512 × 256 × 768
    // from ~106 to ~111 GFLOP/s, 64 × 256 × 256 with op(B) = Bᵀ from ~91 to ~103). It is used where it
    // pads N no more than the narrow tile does (GemmKernel::run): a product of 32 or 96 columns, as in
    // attention, would compute half or a quarter of its wide panels on zeros.
    static constexpr std::size_t kWideRows = Bytes == 64 ? 6 : MR;
    static constexpr std::size_t kWideVectors = Bytes == 64 ? 4 : NV;
    static constexpr std::size_t kWideCols = kWideVectors * L;  // the widest panel of B (workspace bound)
    static constexpr std::size_t KC = 384;
    static constexpr std::size_t MC = MR * 16;  // a multiple of both tiles' rows
    static constexpr std::size_t NC = NR * 128;  // a multiple of both tiles' columns
    static constexpr std::size_t kShortRows = 2 * MR;  // at most this many rows of C: B is not packed
    // Fewer rows than this: B streamed, not packed. MR/2, but at least 3, so that a speculative verify
    // of 2 tokens takes this path on every instruction set (WebAssembly's 5-row tile included).
    static constexpr std::size_t kSmallRows = MR / 2 < 3 ? 3 : MR / 2;
    // At least this many columns of C: A is packed even where it could be read in place (see run).
    static constexpr std::size_t kPackAColumns = kPackAFrom;
};

#if defined(__AVX512F__)
/// Transposes a 16 × 16 block of floats held as 16 rows (r[i] = row i), so that r[j] becomes column j:
/// 64 shuffles for 256 values instead of 256 scalar stores. Three rounds: rows interleaved in pairs,
/// then in fours within each 128-bit lane, then the 128-bit lanes of four registers exchanged.
inline void transpose16x16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {  // lane by lane: t[2i] = (r2i,0 r2i+1,0 r2i,1 r2i+1,1), t[2i+1] columns 2, 3
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {  // r[4i + j], 128-bit lane L: rows 4i .. 4i+3 at column 4L + j
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {  // lane L of r[j], r[4+j], r[8+j], r[12+j] together: column 4L + j
        const __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);  // lanes 0, 2 of each
        const __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);  // lanes 1, 3 of each
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        const __m512 u3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        t[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        t[12 + j] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
    for (int j = 0; j < 16; ++j) r[j] = t[j];
}

/// Packs 16 steps of n ≤ 16 stored rows (`ld` floats apart, from `src`) as 16 packed rows `stride`
/// apart: out[q·stride + c] = src[c·ld + q]. Rows past n enter the transpose as zeros and are not stored.
inline void pack_transposed16(const float* src, std::size_t ld, std::size_t n, float* out, std::size_t stride) {
    __m512 r[16];
    for (std::size_t c = 0; c < 16; ++c) r[c] = c < n ? _mm512_loadu_ps(src + c * ld) : _mm512_setzero_ps();
    transpose16x16(r);
    const __mmask16 lanes = __mmask16((1u << n) - 1);
    for (std::size_t q = 0; q < 16; ++q) _mm512_mask_storeu_ps(out + q * stride, lanes, r[q]);
}
#endif

/// The packed path with a register tile of MR rows × NV vectors of C (GemmShape's narrow or wide tile).
template <class T, class Arch, std::size_t MR, std::size_t NV>
struct GemmTile {
    using batch = xsimd::batch<T, Arch>;
    using S = GemmShape<T, sizeof(batch)>;
    static constexpr std::size_t L = S::L, NR = NV * L, KC = S::KC, MC = S::MC, NC = S::NC;
    static_assert(MC % MR == 0 && NC % NR == 0, "blocks hold whole tiles");

    // Packs op(A)[i0 : i0+m, p0 : p0+kc] as ⌈m/MR⌉ panels of kc × MR (a last partial panel's missing
    // rows are never read: its tile has exactly that many rows). A whole panel's row count is a
    // constant to the compiler, so its copy has no per-element test of how many rows there are.
    static void pack_a(Op op, const T* A, std::size_t lda, std::size_t i0, std::size_t m, std::size_t p0,
                       std::size_t kc, T* out) {
        for (std::size_t ir = 0; ir < m; ir += MR) {
            const std::size_t mr = std::min(MR, m - ir), i = i0 + ir;
            T* panel = out + ir * kc;
            const std::size_t p_done = mr == MR && op == Op::N ? pack_a_rows(A + i * lda + p0, lda, kc, panel) : 0;
            const auto copy = [&](auto rows) {
                for (std::size_t p = p_done; p < kc; ++p)
                    for (std::size_t r = 0; r < rows; ++r)
                        panel[p * MR + r] = op == Op::N ? A[(i + r) * lda + p0 + p] : A[(p0 + p) * lda + i + r];
            };
            if (mr == MR)
                copy(std::integral_constant<std::size_t, MR>{});
            else
                copy(mr);
        }
    }

    // The first steps of a whole panel of op(A) = A: MR stored rows from `rows` (lda apart), each step p
    // a column of them. With AVX-512, 16 steps at a time go through the 16 × 16 transpose (the rows past
    // MR are zeros, never stored); returns how many steps are packed, the rest left to pack_a's loop.
    // 512³ spent ~6% of its time in the element-by-element copy.
    static std::size_t pack_a_rows([[maybe_unused]] const T* rows, [[maybe_unused]] std::size_t lda,
                                   [[maybe_unused]] std::size_t kc, [[maybe_unused]] T* panel) {
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float> && std::is_same_v<Arch, xsimd::avx512bw>) {
            static_assert(MR <= 16, "a column of a panel fits one register");
            for (std::size_t p = 0; p + 16 <= kc; p += 16) pack_transposed16(rows + p, lda, MR, panel + p * MR, MR);
            return kc / 16 * 16;
        }
#endif
        return 0;
    }

    // Packs op(B)[p0 : p0+kc, j0 : j0+n] as ⌈n/NR⌉ panels of kc × NR; columns past n are zero.
    static void pack_b(Op op, const T* B, std::size_t ldb, std::size_t p0, std::size_t kc, std::size_t j0,
                       std::size_t n, T* out) {
        for (std::size_t jr = 0; jr < n; jr += NR) {
            const std::size_t nr = std::min(NR, n - jr);
            T* panel = out + jr * kc;
            if (op == Op::N) {
                for (std::size_t p = 0; p < kc; ++p) {
                    const T* src = B + (p0 + p) * ldb + j0 + jr;
                    for (std::size_t c = 0; c < nr; ++c) panel[p * NR + c] = src[c];
                    for (std::size_t c = nr; c < NR; ++c) panel[p * NR + c] = T(0);
                }
            } else {
                pack_bt_panel(B, ldb, p0, kc, j0 + jr, nr, panel);
            }
        }
    }

    // One panel of op(B) = Bᵀ (op(B)(k, j) = B[j, k]): stored rows j .. j+nr of B, steps p0 .. p0+kc,
    // each stored row read contiguously; columns past nr are zero. With AVX-512 a whole panel goes by
    // 16 × 16 transposes in registers (the forward's x·Wᵀ packs every weight this way: once per
    // training step, through WeightCache, or per product elsewhere); the scalar loop does the rest, and
    // is the reference the tests hold it to.
    static void pack_bt_panel(const T* B, std::size_t ldb, std::size_t p0, std::size_t kc, std::size_t j,
                              std::size_t nr, T* panel) {
        std::size_t p_done = 0;  // steps below this are packed
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float> && std::is_same_v<Arch, xsimd::avx512bw>) {
            if (nr == NR) {
                p_done = kc / 16 * 16;
                for (std::size_t c0 = 0; c0 < NR; c0 += 16)
                    for (std::size_t p = 0; p < p_done; p += 16)
                        pack_transposed16(B + (j + c0) * ldb + p0 + p, ldb, 16, panel + p * NR + c0, NR);
            }
        }
#endif
        for (std::size_t c = 0; c < nr; ++c) {
            const T* src = B + (j + c) * ldb + p0;
            for (std::size_t p = p_done; p < kc; ++p) panel[p * NR + c] = src[p];
        }
        for (std::size_t c = nr; c < NR; ++c)
            for (std::size_t p = 0; p < kc; ++p) panel[p * NR + c] = T(0);
    }

    // C[0:R, 0:n] (+)= Ap · Bp over kc steps, for one R × NR tile (R ≤ MR, n ≤ NR). Row p of the B
    // panel starts at Bp + p·ldbp: ldbp = NR for a packed panel, ldb when B is read in place. A's element
    // (i, p) is Ap[i·lda + p] when ARows (op(A) = A in place), else Ap[p·lda + i] (a packed panel,
    // lda = MR, or op(A) = Aᵀ in place). R is a template argument so that a last partial panel of rows
    // keeps its accumulators in registers and spends no multiply-adds on missing rows.
    template <bool ARows, std::size_t R>
    static void micro(std::size_t kc, const T* Ap, std::size_t lda, const T* Bp, std::size_t ldbp, T* C,
                      std::size_t ldc, bool add, std::size_t n) {
        batch acc[R][NV];
        for (std::size_t i = 0; i < R; ++i)
            for (std::size_t v = 0; v < NV; ++v) acc[i][v] = batch(T(0));
        // C's tile is read and written only after the loop; asking for it now hides its latency behind
        // the kc steps. It is often far away: a weight gradient dW += dyᵀ·x adds into a gradient buffer
        // last touched when it was cleared, a large C has left the caches since the previous block of
        // K. (One thread: 1024³ ~104 → ~108 GFLOP/s, 4096×256×256 ~103 → ~110, eva-mini's training step
        // ~5% faster. WebAssembly has no prefetch: the compiler drops it.) A partial tile's row may end
        // at the end of C, so the addresses past its n columns are computed as integers, not pointers; a
        // prefetch never faults. (Prefetching only the n columns measured 3% slower at 512×96×256.)
        for (std::size_t i = 0; i < R; ++i) {
            const auto row = reinterpret_cast<std::uintptr_t>(C + i * ldc);
            for (std::size_t v = 0; v < NV; ++v)
                __builtin_prefetch(reinterpret_cast<const void*>(row + v * L * sizeof(T)), 1);
        }
        // One pointer into A and one into B advance by a step each: row i's element is then ap[i·a_row], a
        // constant offset in a packed panel. (Indexing Ap and Bp by p instead cost WebAssembly an address
        // computation per row and step: eva_speed under node, 512³ from ~35 to ~42.5 GFLOP/s, 1024³
        // from ~37 to ~44; the AVX-512 loop is the same instructions.)
        const std::size_t a_step = ARows ? 1 : lda, a_row = ARows ? lda : 1;
        const T* bp = Bp;
        for (const T *ap = Ap, *a_end = Ap + kc * a_step; ap != a_end; ap += a_step, bp += ldbp) {
            batch b[NV];
            for (std::size_t v = 0; v < NV; ++v) b[v] = batch::load_unaligned(bp + v * L);
            for (std::size_t i = 0; i < R; ++i) {
                const batch a(ap[i * a_row]);
                for (std::size_t v = 0; v < NV; ++v) acc[i][v] = xsimd::fma(a, b[v], acc[i][v]);
            }
        }
        if (n == NR) {
            for (std::size_t i = 0; i < R; ++i)
                for (std::size_t v = 0; v < NV; ++v) {
                    T* c = C + i * ldc + v * L;
                    (add ? acc[i][v] + batch::load_unaligned(c) : acc[i][v]).store_unaligned(c);
                }
            return;
        }
        alignas(64) T tile[R * NR];
        for (std::size_t i = 0; i < R; ++i)
            for (std::size_t v = 0; v < NV; ++v) acc[i][v].store_aligned(tile + i * NR + v * L);
        for (std::size_t i = 0; i < R; ++i)
            for (std::size_t j = 0; j < n; ++j) C[i * ldc + j] = add ? C[i * ldc + j] + tile[i * NR + j] : tile[i * NR + j];
    }

    // micro<ARows, rows> for a run-time row count 1 ≤ rows ≤ MR.
    template <bool ARows, std::size_t... R>
    static void micro_rows(std::size_t rows, std::index_sequence<R...>, std::size_t kc, const T* Ap, std::size_t lda,
                           const T* Bp, std::size_t ldbp, T* C, std::size_t ldc, bool add, std::size_t n) {
        using Micro = void (*)(std::size_t, const T*, std::size_t, const T*, std::size_t, T*, std::size_t, bool, std::size_t);
        static constexpr Micro by_rows[] = {&micro<ARows, R + 1>...};
        by_rows[rows - 1](kc, Ap, lda, Bp, ldbp, C, ldc, add, n);
    }

    static std::size_t whole_panels(std::size_t n) { return (n + NR - 1) / NR * NR; }

    // All of op(B) [K × N] packed as run packs it block by block: block (jc, pc) of the loops below at
    // out + jc·K + pc·whole_panels(nc), out holding whole_panels(N)·K scalars.
    static void pack_blocks(Op op_b, std::size_t K, std::size_t N, const T* B, std::size_t ldb, T* out) {
        for (std::size_t jc = 0; jc < N; jc += NC)
            for (std::size_t pc = 0; pc < K; pc += KC) {
                const std::size_t nc = std::min(NC, N - jc), kc = std::min(KC, K - pc);
                pack_b(op_b, B, ldb, pc, kc, jc, nc, out + jc * K + pc * whole_panels(nc));
            }
    }

    // C (+)= op(A)·op(B) through packed panels: for each block of KC steps and NC columns, B packed once
    // (or taken from `prepacked`, laid out by pack_blocks), then each MC block of rows swept against it
    // tile by tile. `pack_all_b` false (never with `prepacked`): B is read in place (op(B) = B with few
    // rows of C), only a partial last panel packed. `pack_all_a` false: A is read in place (see
    // GemmKernel::run).
    static void run(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                    const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate, bool pack_all_a,
                    bool pack_all_b, T* Ap, T* Bp, const T* prepacked) {
        const auto rows = std::make_index_sequence<MR>{};
        for (std::size_t jc = 0; jc < N; jc += NC) {
            const std::size_t nc = std::min(NC, N - jc);
            for (std::size_t pc = 0; pc < K; pc += KC) {
                const std::size_t kc = std::min(KC, K - pc);
                const bool add = accumulate || pc > 0;
                const T* block = prepacked ? prepacked + jc * K + pc * whole_panels(nc) : Bp;
                if (pack_all_b && !prepacked) pack_b(op_b, B, ldb, pc, kc, jc, nc, Bp);
                for (std::size_t ic = 0; ic < M; ic += MC) {
                    const std::size_t mc = std::min(MC, M - ic);
                    if (pack_all_a) pack_a(op_a, A, lda, ic, mc, pc, kc, Ap);
                    for (std::size_t jr = 0; jr < nc; jr += NR) {
                        const T* bp = block + jr * kc;
                        std::size_t ldbp = NR;
                        if (!pack_all_b && nc - jr >= NR) {
                            bp = B + pc * ldb + jc + jr;
                            ldbp = ldb;
                        } else if (!pack_all_b) {
                            pack_b(op_b, B, ldb, pc, kc, jc + jr, nc - jr, Bp);
                            bp = Bp;
                        }
                        T* c = C + ic * ldc + jc + jr;
                        const std::size_t n = std::min(NR, nc - jr);
                        for (std::size_t ir = 0; ir < mc; ir += MR) {
                            const std::size_t i = ic + ir, m = std::min(MR, mc - ir);
                            if (pack_all_a)
                                micro_rows<false>(m, rows, kc, Ap + ir * kc, MR, bp, ldbp, c + ir * ldc, ldc, add, n);
                            else if (op_a == Op::N)
                                micro_rows<true>(m, rows, kc, A + i * lda + pc, lda, bp, ldbp, c + ir * ldc, ldc, add, n);
                            else
                                micro_rows<false>(m, rows, kc, A + pc * lda + i, lda, bp, ldbp, c + ir * ldc, ldc, add, n);
                        }
                    }
                }
            }
        }
    }
};

template <class T, class Arch>
struct GemmKernel : GemmShape<T, sizeof(xsimd::batch<T, Arch>)> {
    using batch = xsimd::batch<T, Arch>;
    using S = GemmShape<T, sizeof(batch)>;
    using S::L, S::NV, S::NR, S::MR, S::kWideRows, S::kWideVectors, S::kWideCols, S::kShortRows, S::kSmallRows,
        S::kPackAColumns;
    using NarrowTile = GemmTile<T, Arch, MR, NV>;
    using WideTile = GemmTile<T, Arch, kWideRows, kWideVectors>;

    // The tile for a product of N columns: the wide one where it pads N no more than the narrow one.
    // Both sum every element of C over k in the same order, so the choice changes no bit.
    static bool wide(std::size_t N) { return kWideCols != NR && WideTile::whole_panels(N) <= NarrowTile::whole_panels(N); }

    static T dot(const T* x, const T* y, std::size_t K) {
        batch s0(T(0)), s1(T(0));
        std::size_t k = 0;
        for (; k + 2 * L <= K; k += 2 * L) {
            s0 = xsimd::fma(batch::load_unaligned(x + k), batch::load_unaligned(y + k), s0);
            s1 = xsimd::fma(batch::load_unaligned(x + k + L), batch::load_unaligned(y + k + L), s1);
        }
        T s = xsimd::hadd(s0 + s1);
        for (; k < K; ++k) s += x[k] * y[k];
        return s;
    }

    // Rows of A per block in dot_rows: with 2 columns, 2·DR accumulators stay in registers.
    static constexpr std::size_t DR = MR == 12 ? 8 : 4;

    // C[i, j] (+)= a_i · b_j for the rows of a block of `rows` ≤ DR rows of A (each K contiguous) and
    // every row b_j of B (each K contiguous): each B row is loaded once per block and used DR times.
    static void dot_block(const T* const* a, std::size_t rows, std::size_t N, std::size_t K, const T* B,
                          std::size_t ldb, T* C, std::size_t ldc, bool add) {
        for (std::size_t j = 0; j < N; j += 2) {
            const T* b0 = B + j * ldb;
            const T* b1 = j + 1 < N ? b0 + ldb : b0;  // odd N: the last column is computed twice
            batch acc[DR][2];
            for (std::size_t i = 0; i < DR; ++i) acc[i][0] = acc[i][1] = batch(T(0));
            std::size_t k = 0;
            for (; k + L <= K; k += L) {
                const batch x0 = batch::load_unaligned(b0 + k), x1 = batch::load_unaligned(b1 + k);
                for (std::size_t i = 0; i < DR; ++i) {
                    const batch y = batch::load_unaligned(a[i] + k);
                    acc[i][0] = xsimd::fma(y, x0, acc[i][0]);
                    acc[i][1] = xsimd::fma(y, x1, acc[i][1]);
                }
            }
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t c = 0; c < 2 && j + c < N; ++c) {
                    T s = xsimd::hadd(acc[i][c]);
                    const T* bc = c ? b1 : b0;
                    for (std::size_t kk = k; kk < K; ++kk) s += a[i][kk] * bc[kk];
                    T& out = C[i * ldc + j + c];
                    out = (add ? out : T(0)) + s;
                }
        }
    }

    // Short products with op(B) = Bᵀ (few rows of C, long B — e.g. attention scores against a long
    // cache): dot products of A's rows with B's rows, B streamed once per DR rows of A, no packing.
    static void dot_rows(Op op_a, std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                         const T* B, std::size_t ldb, T* C, std::size_t ldc, bool add, T* rows) {
        for (std::size_t i0 = 0; i0 < M; i0 += DR) {
            const std::size_t m = std::min(DR, M - i0);
            const T* a[DR];
            for (std::size_t i = 0; i < DR; ++i) {
                const std::size_t r = i0 + std::min(i, m - 1);  // rows past m repeat the last one
                if (op_a == Op::N) {
                    a[i] = A + r * lda;
                } else {
                    T* dst = rows + i * K;
                    for (std::size_t k = 0; k < K; ++k) dst[k] = A[k * lda + r];
                    a[i] = dst;
                }
            }
            dot_block(a, m, N, K, B, ldb, C + i0 * ldc, ldc, add);
        }
    }

    static void axpy(T a, const T* x, T* y, std::size_t n) {
        const batch va(a);
        std::size_t j = 0;
        for (; j + L <= n; j += L)
            xsimd::fma(va, batch::load_unaligned(x + j), batch::load_unaligned(y + j)).store_unaligned(y + j);
        for (; j < n; ++j) y[j] += a * x[j];
    }

    // Few rows of C (decode steps, matrix-vector products, a speculative verify of 2–5 tokens): packing B
    // would cost as much as the product itself, so stream B directly — dot products for op(B) = Bᵀ, row
    // updates for op(B) = B. All M rows go through B together, so B (a weight matrix, usually beyond the
    // caches) is read once for all of them instead of once per row; each row's own arithmetic is exactly
    // what it would be alone (same dot(), same fma sequence over k), so C's rows do not depend on M —
    // a verifying forward of several tokens gives each the logits of a one-token step, bit for bit.
    static void small_m(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A,
                        std::size_t lda, const T* B, std::size_t ldb, T* C, std::size_t ldc, bool add,
                        T* rows) {
        const T* a[kSmallRows] = {};
        for (std::size_t i = 0; i < M; ++i) {
            if (op_a == Op::N) {
                a[i] = A + i * lda;
                continue;
            }
            T* dst = rows + i * K;
            for (std::size_t k = 0; k < K; ++k) dst[k] = A[k * lda + i];
            a[i] = dst;
        }
        if (op_b == Op::T) {
            for (std::size_t j = 0; j < N; ++j)
                for (std::size_t i = 0; i < M; ++i) {
                    T& c = C[i * ldc + j];
                    c = (add ? c : T(0)) + dot(a[i], B + j * ldb, K);
                }
            return;
        }
        if (!add)
            for (std::size_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
        for (std::size_t k = 0; k < K; ++k)
            for (std::size_t i = 0; i < M; ++i) axpy(a[i][k], B + k * ldb, C + i * ldc, N);
    }

    static void run(Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A,
                    std::size_t lda, const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate,
                    const GemmWorkspace& ws) {
        T* row = static_cast<T*>(ws.row);
        if (M < kSmallRows) return small_m(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, row);
        if (op_b == Op::T && M <= kShortRows) return dot_rows(op_a, M, N, K, A, lda, B, ldb, C, ldc, accumulate, row);
        // With few rows of C, packing B would cost as much as using it: B is then read in place
        // (op(B) = B has its panel rows contiguous already); only a partial last panel is packed. B
        // packed already (ws.prepacked_b) is used as it is.
        const T* prepacked = static_cast<const T*>(ws.prepacked_b);
        const bool pack_all_b = prepacked || !(op_b == Op::N && M <= kShortRows);
        // A wide product uses each panel of A against many panels of B: packing it then costs little, and
        // the micro-kernel streams one contiguous panel instead of MR rows lda apart, which share L1 sets
        // when lda is a multiple of 1024 (one thread, 1024³: AVX-512 from ~90 to ~100 GFLOP/s, WebAssembly
        // from ~34 to ~37). A narrow one reads A in place, where the copy would cost more than it saves
        // (256 columns: 4% slower packed with AVX-512). WebAssembly packs from 128 columns: see kPackAFrom.
        const bool pack_all_a = N >= kPackAColumns;
        T* Ap = static_cast<T*>(ws.packed_a);
        T* Bp = static_cast<T*>(ws.packed_b);
        if (wide(N))
            WideTile::run(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, pack_all_a, pack_all_b, Ap, Bp, prepacked);
        else
            NarrowTile::run(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, pack_all_a, pack_all_b, Ap, Bp, prepacked);
    }

    // All of op(B) packed for run's packed path (ws.prepacked_b): whole_panels(N)·K scalars at `out`.
    static void pack_all(Op op_b, std::size_t K, std::size_t N, const T* B, std::size_t ldb, T* out) {
        if (wide(N)) WideTile::pack_blocks(op_b, K, N, B, ldb, out);
        else NarrowTile::pack_blocks(op_b, K, N, B, ldb, out);
    }
};

/// Runs the kernel for one architecture. Deliberately a non-inline function template: each
/// architecture's unit instantiates it explicitly, and the dispatching unit declares those
/// instantiations `extern`, so it never compiles a kernel body with the wrong instruction set.
template <class Arch, class T>
void run_gemm_kernel(Arch, Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A,
                     std::size_t lda, const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate,
                     const GemmWorkspace& ws);

template <class Arch, class T>
void run_gemm_kernel(Arch, Op op_a, Op op_b, std::size_t M, std::size_t N, std::size_t K, const T* A,
                     std::size_t lda, const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate,
                     const GemmWorkspace& ws) {
    GemmKernel<T, Arch>::run(op_a, op_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, ws);
}

template <class Arch, class T>
void run_gemm_pack(Arch, Op op_b, std::size_t K, std::size_t N, const T* B, std::size_t ldb, T* out);

template <class Arch, class T>
void run_gemm_pack(Arch, Op op_b, std::size_t K, std::size_t N, const T* B, std::size_t ldb, T* out) {
    GemmKernel<T, Arch>::pack_all(op_b, K, N, B, ldb, out);
}

#define EVA_GEMM_KERNEL_INSTANCE(PREFIX, A, T)                                                          \
    PREFIX template void run_gemm_kernel<A, T>(A, Op, Op, std::size_t, std::size_t, std::size_t, const T*, \
                                               std::size_t, const T*, std::size_t, T*, std::size_t, bool,  \
                                               const GemmWorkspace&);                                      \
    PREFIX template void run_gemm_pack<A, T>(A, Op, std::size_t, std::size_t, const T*, std::size_t, T*);

}  // namespace eva::detail
