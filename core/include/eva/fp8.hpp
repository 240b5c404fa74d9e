// eva — FP8 numerics: the number formats, scaled quantization and the GEMM of DeepSeek-V3's FP8 training.
//
// Formats (OCP OFP8 rev 1.0). A code is 1 sign bit, E exponent bits, M mantissa bits:
//   E4M3 ("fn"): bias 7,  max 448 = 0x7E,   min normal 2^-6,  min subnormal 2^-9,  NaN = S.1111.111, no inf.
//   E5M2:        bias 15, max 57344 = 0x7B, min normal 2^-14, min subnormal 2^-16, inf = S.11111.00,
//                NaN = S.11111.{01,10,11}.
// float32 → fp8 rounds to nearest, ties to even, subnormals included. Non-saturating (PyTorch's cast):
// E4M3 magnitudes above 464 and ±inf become NaN; E5M2 magnitudes ≥ 61440 become ±inf. Saturating (what
// scaled quantization uses): every finite overflow and ±inf become ±max. NaN → NaN, ±0 keeps its sign.
// Every result keeps the input's sign bit (so −NaN encodes to 0xFF), as PyTorch's conversion does.
//
// Scaled quantization (DeepSeek-V3 §3.3): a group of values x shares a scale s = max(amax, 1e-4) / max_code
// (optionally rounded up to a power of two) and is stored as q = fp8(x / s); x ≈ decode(q)·s. Groups are
// the whole tensor, 1×128 tiles (activations) or 128×128 blocks (weights).
//
// GEMM (DeepSeek-V3 "increasing accumulation precision"): C = A·Bᵀ with A [M, K] and B [N, K] in FP8.
// Along K, products are accumulated in a limited-precision accumulator (the tensor core, ~14 mantissa
// bits) for N_C = 128 elements, then the partial sum is multiplied by both scales and added into an
// fp32 accumulator ("promotion"). Without promotion the whole K-long sum stays in the limited accumulator.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace eva {

enum class Fp8Format { E4M3, E5M2 };

/// Parses "e4m3" / "e5m2"; throws ConfigError naming `field` otherwise.
Fp8Format parse_fp8_format(const std::string& name, const std::string& field = "format");
const char* fp8_format_name(Fp8Format f);

/// Largest finite magnitude: 448 (E4M3) or 57344 (E5M2).
float fp8_max(Fp8Format f);

// ------------------------------------------------------------------------------------------ codec
/// Scalar codec: the definition the vectorized one is tested against.
std::uint8_t fp8_encode(float x, Fp8Format f, bool saturate = false);
float fp8_decode(std::uint8_t code, Fp8Format f);
/// A decoded value as `eva fp8 table` prints it: exact (a finite FP8 value has at most 12 significant
/// digits, so %.17g neither rounds nor pads), or nan, inf, -inf.
std::string fp8_value_text(float v);

/// Vectorized codec (xsimd): bit-identical to the scalar one, for n values.
void fp8_encode(const float* x, std::uint8_t* codes, std::size_t n, Fp8Format f, bool saturate = false);
void fp8_decode(const std::uint8_t* codes, float* x, std::size_t n, Fp8Format f);

// ------------------------------------------------------------------------------ scaled quantization
enum class Fp8Granularity { Tensor, Tile, Block };  // one scale; per 1×G tile; per G×G block (G = 128)

Fp8Granularity parse_fp8_granularity(const std::string& name, const std::string& field = "granularity");  // tensor|tile|block
const char* fp8_granularity_name(Fp8Granularity g);

struct Fp8QuantConfig {
    Fp8Format format = Fp8Format::E4M3;
    Fp8Granularity granularity = Fp8Granularity::Tile;
    std::size_t group = 128;     // G: tile length / block side (DeepSeek-V3: 128)
    bool pow2_scales = false;    // round every scale up to a power of two (exact rescaling)
    float amax_floor = 1e-4f;    // an all-zero group gets scale amax_floor/max instead of 0 (no NaN)
};

/// A row-major [rows, cols] matrix in FP8 with its scales. The scale of element (r, c) is
/// scales[(r / gr) * scale_cols + c / gc] with (gr, gc) = (rows, cols) per tensor, (1, G) per tile,
/// (G, G) per block.
struct Fp8Matrix {
    Fp8Format format = Fp8Format::E4M3;
    Fp8Granularity granularity = Fp8Granularity::Tile;
    std::size_t rows = 0, cols = 0, group = 128;
    std::vector<std::uint8_t> codes;  // rows·cols
    std::vector<float> scales;        // scale_rows()·scale_cols()
    std::size_t saturated = 0;        // inputs whose |x/s| exceeded the format's max (clipped to ±max)

    std::size_t group_rows() const;   // rows of one scale group
    std::size_t group_cols() const;   // columns of one scale group (along K in a GEMM)
    std::size_t scale_rows() const;
    std::size_t scale_cols() const;
    float scale(std::size_t r, std::size_t c) const {
        return scales[(r / group_rows()) * scale_cols() + c / group_cols()];
    }
};

/// The scale for a group whose largest magnitude is `amax`: max(amax, floor) / max_code, or with
/// pow2 the smallest power of two ≥ that (so |x|/s ≤ max_code still holds).
float fp8_scale(float amax, const Fp8QuantConfig& cfg);

/// Quantizes x [rows, cols] (row stride ld ≥ cols) with one online scale per group.
Fp8Matrix quantize(const float* x, std::size_t rows, std::size_t cols, std::size_t ld, const Fp8QuantConfig& cfg);
/// Per-tile activations [tokens, features] (1×128) and per-block weights [out, in] (128×128), E4M3.
Fp8Matrix quantize_tiles(const float* x, std::size_t rows, std::size_t cols, Fp8Format f = Fp8Format::E4M3);
Fp8Matrix quantize_blocks(const float* w, std::size_t rows, std::size_t cols, Fp8Format f = Fp8Format::E4M3);
/// x ≈ decode(q)·s, written row-major with row stride ld.
void dequantize(const Fp8Matrix& q, float* x, std::size_t ld);
/// dequantize(quantize(x, cfg)) into y (row stride ldy) in one pass, bit for bit the same, without the
/// codes: what an emulated FP8 GEMM feeds its fp32 product (eva/linear.hpp).
void quantize_dequantize(const float* x, std::size_t rows, std::size_t cols, std::size_t ld, const Fp8QuantConfig& cfg,
                         float* y, std::size_t ldy);
/// The same in 128×1 tiles — cfg.group consecutive rows of one column share a scale — for an operand
/// whose inner dimension K runs down the columns (the backward's dW = dyᵀ·x, K = tokens): bit for bit the
/// transpose of quantize_dequantize(xᵀ) in 1×128 tiles, without transposing x. cfg.granularity is not
/// read.
void quantize_dequantize_columns(const float* x, std::size_t rows, std::size_t cols, std::size_t ld,
                                 const Fp8QuantConfig& cfg, float* y, std::size_t ldy);

/// The 256 codes decoded and encoded back (non-saturating), by the scalar codec and the SIMD one: the
/// page's selfTest compares it with `eva fp8 table`. A non-NaN code must come back unchanged, a NaN code
/// as the canonical NaN of its sign (0x7F / 0xFF), the OFP8 rule eva's codec follows.
struct Fp8CodeRoundTrip {
    std::vector<std::string> values;  // fp8_value_text of each code's scalar decode
    std::vector<int> reencoded;       // each decoded value encoded again (scalar)
    int mismatches = 0;               // codes not coming back as the rule says
    int nans = 0;                     // codes that decode to NaN
    int simd_scalar_mismatches = 0;   // decodes (text or sign) and re-encodes where SIMD and scalar differ
};
Fp8CodeRoundTrip fp8_code_round_trip(Fp8Format f);

/// The codes of a format that are not NaN, in the order of their values (−max … +max, −inf … +inf for
/// E5M2; −0 after +0): the axis of the FP8 panel's chart of code frequencies.
std::vector<std::uint8_t> fp8_codes_by_value(Fp8Format f);

/// n standard normal values from Rng(seed) with round(fraction·n) elements set to ±magnitude, positions
/// and signs from the seed's stream 1 (so the normal part does not move with the outlier settings):
/// what activations with outlier channels look like to a quantizer. `outliers` gets how many were set.
std::vector<float> fp8_outlier_tensor(std::size_t n, float fraction, float magnitude, std::uint64_t seed,
                                      std::size_t* outliers = nullptr);

/// Delayed (Transformer-Engine-style) per-tensor scaling: the scale of step t comes from the largest
/// amax seen in the previous `length` steps; the current amax is recorded after quantizing, so a sudden
/// outlier saturates for one step instead of being seen in advance.
class AmaxHistory {
public:
    explicit AmaxHistory(std::size_t length);  // length ≥ 1, else ConfigError
    /// max over the history; `fallback` (the current amax) while the history is empty.
    float amax(float fallback) const;
    void push(float amax);
    std::size_t size() const { return history_.size(); }
    std::size_t length() const { return length_; }

private:
    std::size_t length_;
    std::deque<float> history_;
};

/// Per-tensor quantization with the scale from `history`, then records this tensor's amax in it.
Fp8Matrix quantize_delayed(const float* x, std::size_t rows, std::size_t cols, std::size_t ld, AmaxHistory& history,
                           Fp8QuantConfig cfg);

/// Delayed scaling over a run of kSteps steps (the FP8 panel's chart): step t quantizes x·gain(t) with
/// quantize_delayed, the scale from the largest amax of the previous `history_length` steps. The gain
/// grows 3% a step (weights and activations drift during training) and, with `spike`, is ×4 at
/// kSpikeStep: an outlier the history has not seen, clipped at max·s until the history holds it.
class Fp8DelayedRun {
public:
    static constexpr int kSteps = 24, kSpikeStep = 16;
    Fp8DelayedRun(std::size_t history_length, bool spike, const Fp8QuantConfig& cfg);  // length ≥ 1

    float gain(int t) const;
    std::vector<float> step_tensor(const std::vector<float>& x, int t) const;  // x·gain(t)
    /// Quantizes the next step of x [rows, cols] and records its figures; nothing once finished.
    void advance(const std::vector<float>& x, std::size_t rows, std::size_t cols);
    /// Step t < done() of x [rows, cols] quantized again with the scale its history gave it.
    Fp8Matrix replay(const std::vector<float>& x, std::size_t rows, std::size_t cols, int t) const;
    int done() const { return int(amax.size()); }
    bool finished() const { return done() >= kSteps; }

    // Per finished step: the tensor's own amax, the history's amax its scale came from, and
    // quantization_metrics' SNR (dB) and count of saturated values (as floats, for charts).
    std::vector<float> amax, used_amax, snr_db, saturated;

private:
    bool spike_;
    Fp8QuantConfig cfg_;
    AmaxHistory history_;
};

// -------------------------------------------------------------------------------------------- GEMM
struct Fp8GemmConfig {
    std::size_t promote_every = 128;  // N_C: elements of K per promotion to fp32; 0 = never
    int accum_bits = 14;              // mantissa bits kept by the limited accumulator, 1..23; 0 = exact fp32
    std::size_t fused_width = 4;      // products summed exactly before each accumulator update (dot-product unit)
};

/// C[M, N] (+)= A·Bᵀ with A [M, K] and B [N, K] in FP8 (a Linear forward: A = x tiles, B = W blocks),
/// row stride ldc. Scales along K must be constant over every promotion interval (promote_every divides
/// both operands' K-group, or, with promote_every = 0, both have one scale per row along all of K).
void fp8_gemm(const Fp8Matrix& A, const Fp8Matrix& B, float* C, std::size_t ldc, const Fp8GemmConfig& cfg = {},
              bool accumulate = false);

/// One step of the limited accumulator model: acc + sum rounded toward zero to `bits` mantissa bits
/// (the tensor core aligns the addends and drops the bits shifted out).
float fp8_accumulate(float acc, double sum, int bits);

/// How often each of the 256 codes occurs in codes[0..n): counts[c] for code c (the byte's value).
std::vector<std::size_t> fp8_code_counts(const std::uint8_t* codes, std::size_t n);

// ------------------------------------------------------------------------- the accumulation experiment
/// The operands of the accumulation experiment (`eva fp8 gemm-error`, the FP8 panel's error-vs-K chart,
/// the page's selfTest): x [m, k] then w [n, k] drawn standard normal from Rng(seed, stream), quantized
/// with qa and qb, and their dequantized values a, b — the numbers the FP8 GEMM really multiplies.
struct Fp8GemmOperands {
    std::size_t m = 0, n = 0, k = 0;
    std::vector<float> x, w;  // unquantized, row-major
    Fp8Matrix A, B;
    std::vector<float> a, b;  // dequantize(A), dequantize(B)
};
Fp8GemmOperands fp8_gemm_operands(std::size_t m, std::size_t n, std::size_t k, std::uint64_t seed, std::uint64_t stream,
                                  const Fp8QuantConfig& qa, const Fp8QuantConfig& qb);

/// Error of computed entries of C against a reference R (in double), kept as sums so that the errors of
/// several row ranges add up to the error of the whole product.
struct Fp8GemmError {
    double sq_error = 0, sq_ref = 0;  // Σ(C − R)², ΣR²
    double max_error = 0, max_ref = 0;  // max |C − R|, max |R|
    void add(const Fp8GemmError& o);
    double relative() const { return sq_ref > 0 ? std::sqrt(sq_error / sq_ref) : 0.0; }  // ‖C − R‖_F / ‖R‖_F
    double max_relative() const { return max_ref > 0 ? max_error / max_ref : 0.0; }       // max|C − R| / max|R|
};
struct Fp8GemmErrors {
    Fp8GemmError accumulation;  // R = a·bᵀ: what the accumulator alone costs (the inputs are exactly a, b)
    Fp8GemmError total;         // R = x·wᵀ: quantization and accumulation together
    void add(const Fp8GemmErrors& o) { accumulation.add(o.accumulation), total.add(o.total); }
};
/// Rows [r0, r1) of C = A·Bᵀ computed by fp8_gemm with `cfg`, against both references. A row range of a
/// 128×128-block A must start on a block boundary (ConfigError otherwise); r0 < r1 ≤ m.
Fp8GemmErrors fp8_gemm_errors(const Fp8GemmOperands& ops, const Fp8GemmConfig& cfg, std::size_t r0, std::size_t r1);
/// All rows.
inline Fp8GemmErrors fp8_gemm_errors(const Fp8GemmOperands& ops, const Fp8GemmConfig& cfg) {
    return fp8_gemm_errors(ops, cfg, 0, ops.m);
}
/// The experiment as `eva fp8 gemm-error` runs it (and the page's selfTest, to compare): the operands
/// fp8_gemm_operands(m, n, k, seed, stream 0) in `format`, scaled per `granularity` — "tensor" (one scale
/// each) or "deepseek" (1×128 tiles of x, 128×128 blocks of w); ConfigError naming `field` otherwise —
/// and their errors with cfg.
Fp8GemmErrors fp8_gemm_error_experiment(std::size_t m, std::size_t n, std::size_t k, std::uint64_t seed,
                                        const std::string& granularity, Fp8Format format, const Fp8GemmConfig& cfg,
                                        const std::string& field = "granularity");

/// The accumulation experiment over K (DeepSeek-V3 §3.3.2; the FP8 panel's error-vs-K chart): for
/// K = 128·2^i, i < count, the operands fp8_gemm_operands(m, n, K, seed, stream i) with one E4M3 scale
/// each (so that never promoting is possible), C summed with `accum_bits` mantissa bits over all of K
/// (`never`) or promoted to fp32 every N_C = 128 (`promoted`), and the accumulation error ‖C − R‖/‖R‖ of each.
/// It advances a row of C at a time, so that a front end can spread it over frames.
struct Fp8AccumulationSweep {
    std::size_t m = 16, n = 16;
    int count = 7;                     // values of K: 128 … 128·2^(count−1)
    std::uint64_t seed = 2024;
    int accum_bits = 14;
    std::vector<double> never, promoted;  // one per finished K, in order

    std::size_t k(int i) const { return std::size_t(128) << i; }
    bool finished() const { return int(never.size()) >= count; }
    void restart();  // forgets every result (after a change of the settings)
    /// Computes rows of C until about `budget` products per variant are done (at least one row) or the
    /// sweep ends.
    void step(std::size_t budget);

private:
    std::size_t next_row_ = 0;   // of the current K
    Fp8GemmErrors sums_[2];      // the current K's error sums: never, promoted
    Fp8GemmOperands ops_;        // the current K's operands (empty between values of K)
};

// ------------------------------------------------------------------------------------------ metrics
struct Fp8ErrorMetrics {
    std::size_t count = 0;
    double mse = 0, snr_db = 0, max_rel_error = 0, mean_rel_error = 0, cosine = 0;
    std::size_t underflow = 0;  // reference ≠ 0 but approximation = 0
    std::size_t saturated = 0;  // clipped at ±max (filled by quantization_metrics)
    std::size_t nan = 0;        // NaN in the approximation
    nlohmann::json to_json() const;  // every field by name; an infinite SNR (exact) as "inf"
};

/// Error of `approx` against `ref` over n values. SNR = 10·log10(Σref² / Σ(ref−approx)²) (+inf when
/// exact); relative errors over the elements with ref ≠ 0; NaN pairs are counted and left out.
Fp8ErrorMetrics error_metrics(const float* ref, const float* approx, std::size_t n);
/// The metrics of x [rows, cols] (stride ld) against its dequantized q, with q's saturation count.
Fp8ErrorMetrics quantization_metrics(const float* x, std::size_t ld, const Fp8Matrix& q);

// --------------------------------------------------------------------------- views of a quantization
/// The histogram of |x|/s over log2 bins: every element divided by its own group's scale — the number the
/// encoder rounds — so that all groups meet the same grid of the format, which can be drawn under it (the
/// FP8 panel). `bins_per_octave` bins per power of two, from lo = floor(log2 min_subnormal) − 3 to
/// ceil(log2 max) + 3; magnitudes beyond either end count in the end bins, exact zeros apart.
struct Fp8ScaledHistogram {
    int bins_per_octave = 4;
    float lo = 0;               // log2 of the first bin's left edge
    std::vector<float> counts;  // elements per bin
    std::size_t zeros = 0;      // x = 0: no magnitude to place
};
Fp8ScaledHistogram fp8_scaled_histogram(const float* x, std::size_t ld, const Fp8Matrix& q, int bins_per_octave = 4);

/// The error of x [q.rows, q.cols] (stride ld) against dequantize(q) per element — |x − q|, or relative
/// |x − q| / |x| leaving out x = 0 — averaged over cells of cell_rows × cell_cols elements, the smallest
/// cells that leave at most max_cells × max_cells of them, as log10 of each cell's mean error. A cell is
/// marked when it holds an element that saturated (the plain cast of x/s overflows: what
/// Fp8Matrix::saturated counts) or was flushed to zero (x ≠ 0, q = 0).
struct Fp8ErrorGrid {
    std::size_t cell_rows = 1, cell_cols = 1;  // elements per cell
    std::size_t rows = 0, cols = 0;            // cells down and across
    std::vector<float> log10_mean;             // rows·cols, row-major; an exact cell (mean 0) gets lo
    std::vector<unsigned char> marked;         // rows·cols
    float lo = -8, hi = -8;                    // range over the inexact cells (both −8 when all are exact)
};
Fp8ErrorGrid fp8_error_grid(const float* x, std::size_t ld, const Fp8Matrix& q, bool relative, std::size_t max_cells = 64);

/// The text `eva fp8 encode` reads: one number per line, blanks trimmed — a decimal float (also inf,
/// nan) or a float32 bit pattern 0x + 8 hex digits. ConfigError naming the first bad line.
std::vector<float> parse_fp8_values(const std::string& text);
/// The text `eva fp8 decode` reads: one code 0xHH per line. ConfigError naming the first bad line.
std::vector<std::uint8_t> parse_fp8_codes(const std::string& text);

}  // namespace eva
