// eva — FP8 numerics: codecs (scalar and xsimd), scaled quantization, the promoted FP8 GEMM, metrics.
#include "eva/fp8.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "eva/error.hpp"
#include "eva/gemm.hpp"
#include "eva/checked.hpp"
#include "eva/json.hpp"
#include "eva/rng.hpp"
#include "fp8_kernel.hpp"
#include "parallel.hpp"
#include "simd_dispatch.hpp"

namespace eva {

using detail::Fp8Layout;
using detail::fp8_layout;
using detail::kFloatInf;
using detail::kFloatQuietNan;
using detail::kFp8NanCode;

namespace {

std::int32_t float_bits(float x) {
    std::int32_t u;
    std::memcpy(&u, &x, 4);
    return u;
}
float bits_float(std::int32_t u) {
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}

}  // namespace

// ----------------------------------------------------------------------------------------- names
Fp8Format parse_fp8_format(const std::string& name, const std::string& field) {
    if (name == "e4m3") return Fp8Format::E4M3;
    if (name == "e5m2") return Fp8Format::E5M2;
    throw ConfigError(field + ": unknown FP8 format '" + preview(name) + "' (allowed: e4m3, e5m2)");
}
const char* fp8_format_name(Fp8Format f) { return f == Fp8Format::E4M3 ? "e4m3" : "e5m2"; }
float fp8_max(Fp8Format f) { return f == Fp8Format::E4M3 ? 448.0f : 57344.0f; }

Fp8Granularity parse_fp8_granularity(const std::string& name, const std::string& field) {
    if (name == "tensor") return Fp8Granularity::Tensor;
    if (name == "tile") return Fp8Granularity::Tile;
    if (name == "block") return Fp8Granularity::Block;
    throw ConfigError(field + ": unknown value '" + preview(name) + "' (allowed: tensor, tile, block)");
}
const char* fp8_granularity_name(Fp8Granularity g) {
    return g == Fp8Granularity::Tensor ? "tensor" : g == Fp8Granularity::Tile ? "tile" : "block";
}

// ------------------------------------------------------------------------------------ scalar codec
std::uint8_t fp8_encode(float x, Fp8Format f, bool saturate) {
    const Fp8Layout& L = fp8_layout(f);
    const std::int32_t u = float_bits(x);
    const std::int32_t sign = (u >> 24) & 0x80;
    const std::int32_t a = u & 0x7FFFFFFF;
    std::int32_t code;
    if (a > kFloatInf) {
        code = kFp8NanCode;
    } else if (a < L.min_normal_bits) {
        code = float_bits(bits_float(a) + bits_float(L.magic_bits)) - L.magic_bits;
    } else {
        code = detail::round_normal(a, L);
        if (code > L.max_code) code = saturate ? L.max_code : L.overflow;  // includes ±inf
    }
    return std::uint8_t(sign | code);
}

float fp8_decode(std::uint8_t code, Fp8Format f) {
    const Fp8Layout& L = fp8_layout(f);
    const bool negative = code & 0x80;
    const int mag = code & 0x7F, e = mag >> L.mbits, m = mag & ((1 << L.mbits) - 1);
    const int e_special = (1 << (7 - L.mbits)) - 1;  // all-ones exponent
    float v;
    if (f == Fp8Format::E4M3 && mag == kFp8NanCode) v = bits_float(kFloatQuietNan);
    else if (f == Fp8Format::E5M2 && e == e_special) v = m == 0 ? bits_float(kFloatInf) : bits_float(kFloatQuietNan);
    else if (e == 0) v = std::ldexp(float(m), 1 - L.bias - L.mbits);                     // subnormal
    else v = std::ldexp(float((1 << L.mbits) + m), e - L.bias - L.mbits);               // normal
    return negative ? -v : v;  // the sign bit is kept for NaN too
}

// -------------------------------------------------------------------------------------- SIMD codec
// x86-64 portable builds compile the kernel for AVX-512, AVX2 and SSE2 (fp8_arch.cpp, alongside the GEMM's
// per-architecture objects, hence the shared EVA_GEMM_DISPATCH switch) and pick the widest the CPU has;
// other builds (WebAssembly, -march=native) compile it here for the build's own architecture.
#if defined(EVA_GEMM_DISPATCH)
namespace detail {
EVA_FP8_KERNEL_INSTANCE(extern, xsimd::avx512bw)
EVA_FP8_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>)
EVA_FP8_KERNEL_INSTANCE(extern, xsimd::sse2)
}  // namespace detail
#endif

namespace {

struct EncodeRun {
    template <class Arch, class... Args>
    void operator()(Arch arch, Args... args) const { detail::fp8_encode_kernel<Arch>(arch, args...); }
};
struct DecodeRun {
    template <class Arch, class... Args>
    void operator()(Arch arch, Args... args) const { detail::fp8_decode_kernel<Arch>(arch, args...); }
};
struct AmaxRun {
    template <class Arch, class... Args>
    std::int32_t operator()(Arch arch, Args... args) const { return detail::fp8_amax_bits_kernel<Arch>(arch, args...); }
};
struct ScaledEncodeRun {
    template <class Arch, class... Args>
    std::size_t operator()(Arch arch, Args... args) const { return detail::fp8_scaled_encode_kernel<Arch>(arch, args...); }
};
struct ScaledRoundRun {
    template <class Arch, class... Args>
    void operator()(Arch arch, Args... args) const { detail::fp8_scaled_round_kernel<Arch>(arch, args...); }
};
struct ScaledRoundLanesRun {
    template <class Arch, class... Args>
    void operator()(Arch arch, Args... args) const { detail::fp8_scaled_round_lanes_kernel<Arch>(arch, args...); }
};

}  // namespace

void fp8_encode(const float* x, std::uint8_t* codes, std::size_t n, Fp8Format f, bool saturate) {
    const std::size_t simd = n - n % detail::kFp8Multiple;
    if (simd) detail::run_on_best_arch<EncodeRun>(x, codes, simd, f, saturate);
    for (std::size_t i = simd; i < n; ++i) codes[i] = fp8_encode(x[i], f, saturate);  // the last n mod 16
}

void fp8_decode(const std::uint8_t* codes, float* x, std::size_t n, Fp8Format f) {
    const std::size_t simd = n - n % detail::kFp8Multiple;
    if (simd) detail::run_on_best_arch<DecodeRun>(codes, x, simd, f);
    for (std::size_t i = simd; i < n; ++i) x[i] = fp8_decode(codes[i], f);
}

std::string fp8_value_text(float v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", double(v));
    return buf;
}

Fp8CodeRoundTrip fp8_code_round_trip(Fp8Format f) {
    Fp8CodeRoundTrip r;
    std::uint8_t codes[256], simd_codes[256];
    float decoded[256], simd_decoded[256];
    for (int c = 0; c < 256; ++c) codes[c] = std::uint8_t(c);
    fp8_decode(codes, simd_decoded, 256, f);
    for (int c = 0; c < 256; ++c) {
        decoded[c] = fp8_decode(std::uint8_t(c), f);
        const std::uint8_t back = fp8_encode(decoded[c], f);
        const bool nan = std::isnan(decoded[c]);
        r.nans += nan;
        r.mismatches += back != (nan ? std::uint8_t((c & 0x80) | 0x7F) : std::uint8_t(c));
        r.values.push_back(fp8_value_text(decoded[c]));
        r.reencoded.push_back(back);
        r.simd_scalar_mismatches += fp8_value_text(simd_decoded[c]) != r.values.back() ||
                                    std::signbit(simd_decoded[c]) != std::signbit(decoded[c]);
    }
    fp8_encode(decoded, simd_codes, 256, f);
    for (int c = 0; c < 256; ++c) r.simd_scalar_mismatches += simd_codes[c] != r.reencoded[std::size_t(c)];
    return r;
}

std::vector<std::uint8_t> fp8_codes_by_value(Fp8Format f) {
    std::vector<std::uint8_t> order;
    for (int c = 0; c < 256; ++c)
        if (!std::isnan(fp8_decode(std::uint8_t(c), f))) order.push_back(std::uint8_t(c));
    std::stable_sort(order.begin(), order.end(),
                     [f](std::uint8_t a, std::uint8_t b) { return fp8_decode(a, f) < fp8_decode(b, f); });
    return order;
}

std::vector<float> fp8_outlier_tensor(std::size_t n, float fraction, float magnitude, std::uint64_t seed,
                                      std::size_t* outliers) {
    std::vector<float> x(n);
    Rng(seed).fill_normal(x.data(), n, 0, 1);
    Rng pick(seed, 1);
    const std::size_t count = n == 0 ? 0 : std::size_t(std::lround(double(fraction) * double(n)));
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t at = std::min(n - 1, std::size_t(pick.uniform() * float(n)));
        x[at] = (pick.uniform() < 0.5f ? -1.0f : 1.0f) * magnitude;
    }
    if (outliers) *outliers = count;
    return x;
}

// ----------------------------------------------------------------------------- scaled quantization
std::size_t Fp8Matrix::group_rows() const {
    return granularity == Fp8Granularity::Tensor ? std::max<std::size_t>(rows, 1)
         : granularity == Fp8Granularity::Tile   ? 1
                                                 : group;
}
std::size_t Fp8Matrix::group_cols() const {
    return granularity == Fp8Granularity::Tensor ? std::max<std::size_t>(cols, 1) : group;
}
std::size_t Fp8Matrix::scale_rows() const { return (rows + group_rows() - 1) / group_rows(); }
std::size_t Fp8Matrix::scale_cols() const { return (cols + group_cols() - 1) / group_cols(); }

float fp8_scale(float amax, const Fp8QuantConfig& cfg) {
    const float s = std::max(amax, cfg.amax_floor) / fp8_max(cfg.format);
    if (!cfg.pow2_scales) return s;
    int e;
    const float m = std::frexp(s, &e);  // s = m·2^e, m ∈ [0.5, 1)
    return m == 0.5f ? s : std::ldexp(1.0f, e);
}

namespace {

void check_config(const Fp8QuantConfig& cfg) {
    if (cfg.group == 0) throw ConfigError("group: must be at least 1 (DeepSeek-V3 uses 128)");
    if (!(cfg.amax_floor > 0) || !std::isfinite(cfg.amax_floor))
        throw ConfigError("amax_floor: must be a positive finite number (default 1e-4)");
}

// The scalar forms of the scaled-quantization kernels (fp8_kernel.hpp), for the last n mod 16 values of a
// run: bits of |x| unless NaN; whether the non-saturating cast of y overflows (|y| > 464 for E4M3, the tie
// rounding to 448; |y| ≥ 61440 for E5M2, the tie rounding to inf).
std::int32_t abs_bits_unless_nan(float x) {
    const std::int32_t b = float_bits(x) & 0x7FFFFFFF;
    return b > detail::kFloatInf ? 0 : b;
}
// decode(encode(x / s))·s, saturating: quantize then dequantize one value (fp8_scaled_round_kernel's form).
float scaled_round(float x, float s, Fp8Format f) { return fp8_decode(fp8_encode(x / s, f, /*saturate=*/true), f) * s; }
bool overflows(float y, Fp8Format f) {
    const float a = std::fabs(y);
    return f == Fp8Format::E4M3 ? a > 464.0f : a >= 61440.0f;
}

// Encodes rows [r0, r1) of x, each run of one scale divided by it (a division, not a multiplication by
// 1/s, which would round differently), counting the values the scale could not keep in range.
void encode_rows(const float* x, std::size_t ld, std::size_t r0, std::size_t r1, Fp8Matrix& q) {
    const std::size_t gc = q.group_cols();
    for (std::size_t r = r0; r < r1; ++r)
        for (std::size_t c0 = 0; c0 < q.cols; c0 += gc) {
            const float s = q.scale(r, c0), *xr = x + r * ld + c0;
            std::uint8_t* codes = q.codes.data() + r * q.cols + c0;
            const std::size_t len = std::min(gc, q.cols - c0), simd = len - len % detail::kFp8Multiple;
            if (simd) q.saturated += detail::run_on_best_arch<ScaledEncodeRun>(xr, s, codes, simd, q.format);
            for (std::size_t c = simd; c < len; ++c) {
                q.saturated += overflows(xr[c] / s, q.format);
                codes[c] = fp8_encode(xr[c] / s, q.format, /*saturate=*/true);
            }
        }
}

// max |x| as float bits over x[c0, c1) of one row, NaNs left out (a NaN input does not poison its
// group's scale).
std::int32_t run_amax_bits(const float* xr, std::size_t c0, std::size_t c1) {
    const std::size_t len = c1 - c0, simd = len - len % detail::kFp8Multiple;
    std::int32_t amax = simd ? detail::run_on_best_arch<AmaxRun>(xr + c0, simd) : 0;
    for (std::size_t c = c0 + simd; c < c1; ++c) amax = std::max(amax, abs_bits_unless_nan(xr[c]));
    return amax;
}

float group_amax(const float* x, std::size_t ld, std::size_t r0, std::size_t r1, std::size_t c0, std::size_t c1) {
    std::int32_t amax = 0;
    for (std::size_t r = r0; r < r1; ++r) amax = std::max(amax, run_amax_bits(x + r * ld, c0, c1));
    return bits_float(amax);
}

// A matrix with x's shape and the configured groups, its scales and codes not yet set (codes only
// when `with_codes`: the one-pass quantize_dequantize needs the scales alone).
Fp8Matrix empty_matrix(std::size_t rows, std::size_t cols, std::size_t ld, const Fp8QuantConfig& cfg, bool with_codes = true) {
    check_config(cfg);
    if (ld < cols)
        throw ShapeError("quantize: ld " + std::to_string(ld) + " is smaller than the row length " + std::to_string(cols));
    Fp8Matrix q;
    q.format = cfg.format;
    q.granularity = cfg.granularity;
    q.rows = rows;
    q.cols = cols;
    q.group = cfg.group;
    if (with_codes) q.codes.resize(rows * cols);
    q.scales.resize(q.scale_rows() * q.scale_cols());
    return q;
}

// The online scales (from each group's amax) of strip `br`: the group_rows() rows [r0, r1) that share
// one row of scales. Returns [r0, r1).
std::pair<std::size_t, std::size_t> set_strip_scales(const float* x, std::size_t ld, const Fp8QuantConfig& cfg,
                                                     std::size_t br, Fp8Matrix& q) {
    // Row by row through the strip, each row's runs into their group's running max: memory is read in
    // order (a 128×128 block's rows are 16 KB apart in a 4096-wide matrix).
    const std::size_t gr = q.group_rows(), gc = q.group_cols(), r0 = br * gr, r1 = std::min(q.rows, r0 + gr);
    std::vector<std::int32_t> amax(q.scale_cols(), 0);
    for (std::size_t r = r0; r < r1; ++r)
        for (std::size_t bc = 0; bc < amax.size(); ++bc)
            amax[bc] = std::max(amax[bc], run_amax_bits(x + r * ld, bc * gc, std::min(q.cols, bc * gc + gc)));
    for (std::size_t bc = 0; bc < amax.size(); ++bc)
        q.scales[br * q.scale_cols() + bc] = fp8_scale(bits_float(amax[bc]), cfg);
    return {r0, r1};
}

}  // namespace

// Strip by strip — one row for tiles, 128 for blocks — the scales, then the codes: each strip is read
// from memory once for its amax and encoded while it is still in cache.
Fp8Matrix quantize(const float* x, std::size_t rows, std::size_t cols, std::size_t ld, const Fp8QuantConfig& cfg) {
    Fp8Matrix q = empty_matrix(rows, cols, ld, cfg);
    for (std::size_t br = 0; br < q.scale_rows(); ++br) {
        const auto [r0, r1] = set_strip_scales(x, ld, cfg, br, q);
        encode_rows(x, ld, r0, r1, q);
    }
    return q;
}

void quantize_dequantize(const float* x, std::size_t rows, std::size_t cols, std::size_t ld, const Fp8QuantConfig& cfg,
                         float* y, std::size_t ldy) {
    if (ldy < cols)
        throw ShapeError("quantize_dequantize: ldy " + std::to_string(ldy) + " is smaller than the row length " + std::to_string(cols));
    Fp8Matrix q = empty_matrix(rows, cols, ld, cfg, /*with_codes=*/false);
    const std::size_t gc = q.group_cols();
    // Strips are independent (each has its own scales and output rows), so they are spread over the
    // threads, in pieces of at least 16K values: the training step's FP8 emulation quantizes every GEMM
    // operand, and on one thread that work did not shrink when the GEMMs split over two.
    const std::size_t strip = std::max<std::size_t>(1, q.group_rows() * cols);
    detail::parallel_ranges(q.scale_rows(), std::max<std::size_t>(1, 16384 / strip), [&](std::size_t b0, std::size_t b1) {
        for (std::size_t br = b0; br < b1; ++br) {
            const auto [r0, r1] = set_strip_scales(x, ld, cfg, br, q);
            for (std::size_t r = r0; r < r1; ++r) {
                float* yr = y + r * ldy;
                const float* xr = x + r * ld;
                // The same three steps as quantize then dequantize — divide by the scale, round to the
                // FP8 grid (saturating), multiply by the scale — with the same float operations, so the
                // result is bit for bit dequantize(quantize(x)); only the codes never reach memory.
                for (std::size_t c0 = 0; c0 < cols; c0 += gc) {
                    const float s = q.scale(r, c0);
                    const std::size_t len = std::min(gc, cols - c0), simd = len - len % detail::kFp8Multiple;
                    if (simd) detail::run_on_best_arch<ScaledRoundRun>(xr + c0, s, yr + c0, simd, cfg.format);
                    for (std::size_t c = c0 + simd; c < c0 + len; ++c)
                        yr[c] = scaled_round(xr[c], s, cfg.format);
                }
            }
        }
    });
}

// Strip by strip of 128 rows (spread over the threads like quantize_dequantize's): each column's amax
// over the strip as the bits of |x|, NaNs left out as run_amax_bits leaves them, read row by row in
// memory order; then every row rounded with its columns' scales.
void quantize_dequantize_columns(const float* x, std::size_t rows, std::size_t cols, std::size_t ld,
                                 const Fp8QuantConfig& cfg, float* y, std::size_t ldy) {
    if (ld < cols || ldy < cols)
        throw ShapeError("quantize_dequantize_columns: a row stride is smaller than the row length " + std::to_string(cols));
    check_config(cfg);
    const std::size_t G = cfg.group, strips = (rows + G - 1) / G, simd = cols - cols % detail::kFp8Multiple;
    detail::parallel_ranges(strips, std::max<std::size_t>(1, 16384 / std::max<std::size_t>(1, G * cols)),
                            [&](std::size_t b0, std::size_t b1) {
        std::vector<std::int32_t> amax(cols);
        std::vector<float> scale(cols);
        for (std::size_t b = b0; b < b1; ++b) {
            const std::size_t r0 = b * G, r1 = std::min(rows, r0 + G);
            std::fill(amax.begin(), amax.end(), 0);
            for (std::size_t r = r0; r < r1; ++r)
                for (std::size_t c = 0; c < cols; ++c) amax[c] = std::max(amax[c], abs_bits_unless_nan(x[r * ld + c]));
            for (std::size_t c = 0; c < cols; ++c) scale[c] = fp8_scale(bits_float(amax[c]), cfg);
            for (std::size_t r = r0; r < r1; ++r) {
                const float* xr = x + r * ld;
                float* yr = y + r * ldy;
                if (simd) detail::run_on_best_arch<ScaledRoundLanesRun>(xr, scale.data(), yr, simd, cfg.format);
                for (std::size_t c = simd; c < cols; ++c)
                    yr[c] = scaled_round(xr[c], scale[c], cfg.format);
            }
        }
    });
}

Fp8Matrix quantize_tiles(const float* x, std::size_t rows, std::size_t cols, Fp8Format f) {
    Fp8QuantConfig cfg;
    cfg.format = f;
    cfg.granularity = Fp8Granularity::Tile;
    return quantize(x, rows, cols, cols, cfg);
}

Fp8Matrix quantize_blocks(const float* w, std::size_t rows, std::size_t cols, Fp8Format f) {
    Fp8QuantConfig cfg;
    cfg.format = f;
    cfg.granularity = Fp8Granularity::Block;
    return quantize(w, rows, cols, cols, cfg);
}

void dequantize(const Fp8Matrix& q, float* x, std::size_t ld) {
    if (ld < q.cols)
        throw ShapeError("dequantize: ld " + std::to_string(ld) + " is smaller than the row length " + std::to_string(q.cols));
    const std::size_t gc = q.group_cols();
    for (std::size_t r = 0; r < q.rows; ++r) {
        float* row = x + r * ld;
        fp8_decode(q.codes.data() + r * q.cols, row, q.cols, q.format);
        for (std::size_t c0 = 0; c0 < q.cols; c0 += gc) {  // one multiply per element, one scale per run
            const float s = q.scale(r, c0);
            const std::size_t c1 = std::min(q.cols, c0 + gc);
            for (std::size_t c = c0; c < c1; ++c) row[c] *= s;
        }
    }
}

std::vector<std::size_t> fp8_code_counts(const std::uint8_t* codes, std::size_t n) {
    std::vector<std::size_t> counts(256, 0);
    for (std::size_t i = 0; i < n; ++i) ++counts[codes[i]];
    return counts;
}

AmaxHistory::AmaxHistory(std::size_t length) : length_(length) {
    if (length == 0) throw ConfigError("amax history length: must be at least 1");
}

float AmaxHistory::amax(float fallback) const {
    if (history_.empty()) return fallback;
    return *std::max_element(history_.begin(), history_.end());
}

void AmaxHistory::push(float amax) {
    history_.push_back(amax);
    if (history_.size() > length_) history_.pop_front();
}

Fp8Matrix quantize_delayed(const float* x, std::size_t rows, std::size_t cols, std::size_t ld, AmaxHistory& history,
                           Fp8QuantConfig cfg) {
    cfg.granularity = Fp8Granularity::Tensor;
    Fp8Matrix q = empty_matrix(rows, cols, ld, cfg);
    const float current = group_amax(x, ld, 0, rows, 0, cols);
    q.scales[0] = fp8_scale(history.amax(current), cfg);
    encode_rows(x, ld, 0, rows, q);
    history.push(current);
    return q;
}

Fp8GemmErrors fp8_gemm_error_experiment(std::size_t m, std::size_t n, std::size_t k, std::uint64_t seed,
                                        const std::string& granularity, Fp8Format format, const Fp8GemmConfig& cfg,
                                        const std::string& field) {
    Fp8QuantConfig qa, qb;
    qa.format = qb.format = format;
    if (granularity == "tensor") {
        qa.granularity = qb.granularity = Fp8Granularity::Tensor;
    } else if (granularity == "deepseek") {
        qa.granularity = Fp8Granularity::Tile;
        qb.granularity = Fp8Granularity::Block;
    } else {
        throw ConfigError(field + ": unknown value '" + preview(granularity) + "' (allowed: tensor, deepseek)");
    }
    return fp8_gemm_errors(fp8_gemm_operands(m, n, k, seed, 0, qa, qb), cfg);
}

Fp8DelayedRun::Fp8DelayedRun(std::size_t history_length, bool spike, const Fp8QuantConfig& cfg)
    : spike_(spike), cfg_(cfg), history_(history_length) {}

float Fp8DelayedRun::gain(int t) const {
    return std::pow(1.03f, float(t)) * (spike_ && t == kSpikeStep ? 4.0f : 1.0f);
}

std::vector<float> Fp8DelayedRun::step_tensor(const std::vector<float>& x, int t) const {
    std::vector<float> y(x.size());
    const float g = gain(t);
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * g;
    return y;
}

void Fp8DelayedRun::advance(const std::vector<float>& x, std::size_t rows, std::size_t cols) {
    if (finished()) return;
    const std::vector<float> xt = step_tensor(x, done());
    float current = 0;
    for (float v : xt) current = std::max(current, std::fabs(v));
    used_amax.push_back(history_.amax(current));  // what quantize_delayed is about to use
    amax.push_back(current);
    const Fp8Matrix q = quantize_delayed(xt.data(), rows, cols, cols, history_, cfg_);
    const Fp8ErrorMetrics m = quantization_metrics(xt.data(), cols, q);
    snr_db.push_back(float(m.snr_db));
    saturated.push_back(float(m.saturated));
}

Fp8Matrix Fp8DelayedRun::replay(const std::vector<float>& x, std::size_t rows, std::size_t cols, int t) const {
    if (t < 0 || t >= done()) throw ConfigError("delayed scaling: step " + std::to_string(t) + " was not run");
    AmaxHistory h(1);  // a history holding exactly the amax step t's scale came from
    h.push(used_amax[std::size_t(t)]);
    const std::vector<float> xt = step_tensor(x, t);
    return quantize_delayed(xt.data(), rows, cols, cols, h, cfg_);
}

// -------------------------------------------------------------------------------------------- GEMM
float fp8_accumulate(float acc, double sum, int bits) {
    // The exact sum of an fp32 value and a few FP8 products fits a double in practice (rounding there is
    // 2^-53 relative, far below the 2^-bits being modelled). Clearing the low 52 − bits mantissa bits of
    // a double rounds it toward zero to `bits` bits.
    const double t = double(acc) + sum;
    std::uint64_t u;
    std::memcpy(&u, &t, 8);
    u &= ~((std::uint64_t(1) << (52 - bits)) - 1);
    double r;
    std::memcpy(&r, &u, 8);
    return float(r);
}

namespace {

void check_gemm(const Fp8Matrix& A, const Fp8Matrix& B, std::size_t ldc, const Fp8GemmConfig& cfg) {
    if (A.cols != B.cols)
        throw ShapeError("fp8_gemm: A is [" + std::to_string(A.rows) + ", " + std::to_string(A.cols) + "] and B is [" +
                         std::to_string(B.rows) + ", " + std::to_string(B.cols) + "]; C = A·Bᵀ needs equal columns (K)");
    if (ldc < B.rows) throw ShapeError("fp8_gemm: ldc " + std::to_string(ldc) + " is smaller than N = " + std::to_string(B.rows));
    if (cfg.accum_bits < 0 || cfg.accum_bits > 23)
        throw ConfigError("accum_bits: " + std::to_string(cfg.accum_bits) + " is outside 0..23 (0 = exact fp32 accumulation)");
    if (cfg.fused_width == 0) throw ConfigError("fused_width: must be at least 1");
    for (const Fp8Matrix* m : {&A, &B}) {
        if (m->scale_cols() <= 1) continue;  // one scale along K: any interval works
        if (cfg.promote_every == 0)
            throw ConfigError("promote_every: 0 (never) needs one scale per row along K (granularity tensor, or K ≤ group); "
                              "this operand has " + std::to_string(m->scale_cols()) + " scale groups along K");
        if (m->group_cols() % cfg.promote_every != 0)
            throw ConfigError("promote_every: " + std::to_string(cfg.promote_every) + " must divide the scale group " +
                              std::to_string(m->group_cols()) + " along K");
    }
}

std::vector<float> decode_all(const Fp8Matrix& m) {
    std::vector<float> v(m.codes.size());
    fp8_decode(m.codes.data(), v.data(), v.size(), m.format);
    return v;
}

// Sum of the products over one promotion interval in the limited accumulator, fused_width at a time.
float limited_dot(const float* a, const float* b, std::size_t n, const Fp8GemmConfig& cfg) {
    float acc = 0;
    for (std::size_t k = 0; k < n; k += cfg.fused_width) {
        double group = 0;  // products of FP8 values are exact in float, their short sum exact in double
        for (std::size_t t = k; t < std::min(n, k + cfg.fused_width); ++t) group += double(a[t] * b[t]);
        acc = fp8_accumulate(acc, group, cfg.accum_bits);
    }
    return acc;
}

}  // namespace

void fp8_gemm(const Fp8Matrix& A, const Fp8Matrix& B, float* C, std::size_t ldc, const Fp8GemmConfig& cfg,
              bool accumulate) {
    check_gemm(A, B, ldc, cfg);
    const std::size_t M = A.rows, N = B.rows, K = A.cols;
    const std::size_t L = cfg.promote_every == 0 ? std::max<std::size_t>(K, 1) : cfg.promote_every;
    const std::vector<float> a = decode_all(A), b = decode_all(B);
    if (!accumulate)
        for (std::size_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
    std::vector<float> partial(cfg.accum_bits == 0 ? M * N : 0);
    for (std::size_t k0 = 0; k0 < K; k0 += L) {
        const std::size_t len = std::min(L, K - k0);
        if (cfg.accum_bits == 0)  // exact: the interval's products summed in fp32 by eva::gemm
            gemm<float>(Op::N, Op::T, M, N, len, a.data() + k0, K, b.data() + k0, K, partial.data(), N);
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                const float p = cfg.accum_bits == 0 ? partial[i * N + j]
                                                    : limited_dot(a.data() + i * K + k0, b.data() + j * K + k0, len, cfg);
                C[i * ldc + j] += p * (A.scale(i, k0) * B.scale(j, k0));  // promotion: rescale, add in fp32
            }
    }
}

// ----------------------------------------------------------------------------------------- metrics
// ------------------------------------------------------------------------- the accumulation experiment
Fp8GemmOperands fp8_gemm_operands(std::size_t m, std::size_t n, std::size_t k, std::uint64_t seed, std::uint64_t stream,
                                  const Fp8QuantConfig& qa, const Fp8QuantConfig& qb) {
    if (m == 0 || n == 0 || k == 0) throw ShapeError("fp8_gemm_operands: m, n and k must be positive");
    Fp8GemmOperands o;
    o.m = m, o.n = n, o.k = k;
    o.x.resize(checked_mul(m, k, "m × k"));
    o.w.resize(checked_mul(n, k, "n × k"));
    Rng rng(seed, stream);  // x first, then w, from one stream: the CLI's --seed names both
    rng.fill_normal(o.x.data(), o.x.size(), 0, 1);
    rng.fill_normal(o.w.data(), o.w.size(), 0, 1);
    o.A = quantize(o.x.data(), m, k, k, qa);
    o.B = quantize(o.w.data(), n, k, k, qb);
    o.a.resize(o.x.size());
    o.b.resize(o.w.size());
    dequantize(o.A, o.a.data(), k);
    dequantize(o.B, o.b.data(), k);
    return o;
}

void Fp8GemmError::add(const Fp8GemmError& o) {
    sq_error += o.sq_error;
    sq_ref += o.sq_ref;
    max_error = std::max(max_error, o.max_error);
    max_ref = std::max(max_ref, o.max_ref);
}

Fp8GemmErrors fp8_gemm_errors(const Fp8GemmOperands& ops, const Fp8GemmConfig& cfg, std::size_t r0, std::size_t r1) {
    const Fp8Matrix& A = ops.A;
    if (!(r0 < r1 && r1 <= ops.m)) throw ShapeError("fp8_gemm_errors: rows must satisfy r0 < r1 <= m");
    const std::size_t gr = A.group_rows();
    if (A.granularity == Fp8Granularity::Block && r0 % gr != 0)
        throw ConfigError("fp8_gemm_errors: a row range of a block-scaled A must start on a block boundary");
    // The rows of A as a matrix of their own: the same codes, and the scale rows they use.
    Fp8Matrix rows = A;
    rows.rows = r1 - r0;
    rows.codes.assign(A.codes.begin() + std::ptrdiff_t(r0 * A.cols), A.codes.begin() + std::ptrdiff_t(r1 * A.cols));
    if (A.granularity != Fp8Granularity::Tensor) {
        const std::size_t s0 = r0 / gr, s1 = (r1 + gr - 1) / gr, sc = A.scale_cols();
        rows.scales.assign(A.scales.begin() + std::ptrdiff_t(s0 * sc), A.scales.begin() + std::ptrdiff_t(s1 * sc));
    }
    const std::size_t N = ops.n, K = ops.k;
    std::vector<float> c((r1 - r0) * N);
    fp8_gemm(rows, ops.B, c.data(), N, cfg);
    Fp8GemmErrors e;
    auto compare = [&](Fp8GemmError& err, const std::vector<float>& p, const std::vector<float>& q, std::size_t i,
                       std::size_t j) {
        double r = 0;  // the reference entry in double (every float product is exact in double)
        const float* pi = &p[i * K];
        const float* qj = &q[j * K];
        for (std::size_t t = 0; t < K; ++t) r += double(pi[t]) * double(qj[t]);
        const double d = double(c[(i - r0) * N + j]) - r;
        err.sq_error += d * d;
        err.sq_ref += r * r;
        err.max_error = std::max(err.max_error, std::fabs(d));
        err.max_ref = std::max(err.max_ref, std::fabs(r));
    };
    for (std::size_t i = r0; i < r1; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            compare(e.accumulation, ops.a, ops.b, i, j);
            compare(e.total, ops.x, ops.w, i, j);
        }
    return e;
}

nlohmann::json Fp8ErrorMetrics::to_json() const {
    return {{"count", count},
            {"mse", mse},
            {"snr_db", std::isinf(snr_db) ? nlohmann::json("inf") : nlohmann::json(snr_db)},
            {"max_rel_error", max_rel_error},
            {"mean_rel_error", mean_rel_error},
            {"cosine", cosine},
            {"underflow", underflow},
            {"saturated", saturated},
            {"nan", nan}};
}

Fp8ErrorMetrics error_metrics(const float* ref, const float* approx, std::size_t n) {
    Fp8ErrorMetrics m;
    double sig = 0, err = 0, dot = 0, aa = 0, rel_sum = 0;
    std::size_t rel_count = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double x = ref[i], y = approx[i];
        if (std::isnan(y) || std::isnan(x)) {
            m.nan += std::isnan(y);
            continue;
        }
        ++m.count;
        const double d = x - y;
        sig += x * x;
        err += d * d;
        dot += x * y;
        aa += y * y;
        if (x != 0) {
            const double r = std::fabs(d) / std::fabs(x);
            m.max_rel_error = std::max(m.max_rel_error, r);
            rel_sum += r;
            ++rel_count;
            m.underflow += y == 0;
        }
    }
    m.mse = m.count ? err / double(m.count) : 0;
    m.snr_db = err > 0 ? 10 * std::log10(sig / err) : std::numeric_limits<double>::infinity();
    m.mean_rel_error = rel_count ? rel_sum / double(rel_count) : 0;
    m.cosine = sig > 0 && aa > 0 ? dot / std::sqrt(sig * aa) : (sig == aa ? 1.0 : 0.0);
    return m;
}

Fp8ErrorMetrics quantization_metrics(const float* x, std::size_t ld, const Fp8Matrix& q) {
    std::vector<float> ref(q.rows * q.cols), approx(q.rows * q.cols);
    for (std::size_t r = 0; r < q.rows; ++r) std::copy(x + r * ld, x + r * ld + q.cols, ref.begin() + r * q.cols);
    dequantize(q, approx.data(), q.cols);
    Fp8ErrorMetrics m = error_metrics(ref.data(), approx.data(), ref.size());
    m.saturated = q.saturated;
    return m;
}

// ------------------------------------------------------------------------- the accumulation sweep
void Fp8AccumulationSweep::restart() {
    never.clear();
    promoted.clear();
    next_row_ = 0;
    sums_[0] = sums_[1] = {};
    ops_ = {};
}

void Fp8AccumulationSweep::step(std::size_t budget) {
    std::size_t products = 0;
    while (!finished() && (products == 0 || products < budget)) {
        const int i = int(never.size());
        if (ops_.k != k(i)) {
            Fp8QuantConfig cfg;
            cfg.granularity = Fp8Granularity::Tensor;
            ops_ = fp8_gemm_operands(m, n, k(i), seed, std::uint64_t(i), cfg, cfg);
        }
        for (int v = 0; v < 2; ++v) {  // row next_row_ of C, without and with promotion
            Fp8GemmConfig g;
            g.accum_bits = accum_bits;
            g.promote_every = v == 0 ? 0 : 128;
            sums_[v].add(fp8_gemm_errors(ops_, g, next_row_, next_row_ + 1));
        }
        products += n * k(i);
        if (++next_row_ == m) {  // this K is done
            never.push_back(sums_[0].accumulation.relative());
            promoted.push_back(sums_[1].accumulation.relative());
            next_row_ = 0;
            sums_[0] = sums_[1] = {};
            ops_ = {};
        }
    }
}

// --------------------------------------------------------------------------- views of a quantization
Fp8ScaledHistogram fp8_scaled_histogram(const float* x, std::size_t ld, const Fp8Matrix& q, int bins_per_octave) {
    if (bins_per_octave < 1) throw ConfigError("bins_per_octave: must be at least 1");
    Fp8ScaledHistogram h;
    h.bins_per_octave = bins_per_octave;
    h.lo = std::floor(std::log2(fp8_decode(0x01, q.format))) - 3;  // code 0x01: the smallest subnormal
    const float hi = std::ceil(std::log2(fp8_max(q.format))) + 3;
    const int bins = int(hi - h.lo) * bins_per_octave;
    h.counts.assign(std::size_t(bins), 0.0f);
    for (std::size_t r = 0; r < q.rows; ++r)
        for (std::size_t c = 0; c < q.cols; ++c) {
            const float u = std::fabs(x[r * ld + c]) / q.scale(r, c);
            if (u == 0) {
                ++h.zeros;
                continue;
            }
            const int b = int(std::floor((std::log2(u) - h.lo) * float(bins_per_octave)));
            h.counts[std::size_t(std::clamp(b, 0, bins - 1))] += 1;
        }
    return h;
}

Fp8ErrorGrid fp8_error_grid(const float* x, std::size_t ld, const Fp8Matrix& q, bool relative, std::size_t max_cells) {
    if (max_cells == 0) throw ConfigError("max_cells: must be at least 1");
    Fp8ErrorGrid g;
    g.cell_rows = std::max<std::size_t>(1, (q.rows + max_cells - 1) / max_cells);
    g.cell_cols = std::max<std::size_t>(1, (q.cols + max_cells - 1) / max_cells);
    g.rows = (q.rows + g.cell_rows - 1) / g.cell_rows;
    g.cols = (q.cols + g.cell_cols - 1) / g.cell_cols;
    const std::size_t cells = g.rows * g.cols;
    std::vector<float> xq(q.rows * q.cols);
    dequantize(q, xq.data(), q.cols);
    std::vector<double> sum(cells, 0.0);
    std::vector<std::size_t> count(cells, 0);
    g.marked.assign(cells, 0);
    for (std::size_t r = 0; r < q.rows; ++r)
        for (std::size_t c = 0; c < q.cols; ++c) {
            const std::size_t cell = (r / g.cell_rows) * g.cols + c / g.cell_cols;
            const float v = x[r * ld + c], vq = xq[r * q.cols + c], e = std::fabs(v - vq);
            if (overflows(v / q.scale(r, c), q.format) || (v != 0 && vq == 0)) g.marked[cell] = 1;
            if (relative && v == 0) continue;  // the relative error is undefined at 0
            sum[cell] += relative ? e / std::fabs(v) : e;
            ++count[cell];
        }
    g.log10_mean.assign(cells, NAN);
    float lo = INFINITY, hi = -INFINITY;
    for (std::size_t i = 0; i < cells; ++i)
        if (count[i] && sum[i] > 0) {
            g.log10_mean[i] = float(std::log10(sum[i] / double(count[i])));
            lo = std::min(lo, g.log10_mean[i]);
            hi = std::max(hi, g.log10_mean[i]);
        }
    if (lo <= hi) g.lo = lo, g.hi = hi;
    for (float& v : g.log10_mean)
        if (std::isnan(v)) v = g.lo;
    return g;
}

// ------------------------------------------------------------------------------ text input (CLI stdin)
namespace {

// Calls f(line_number, text) for every line of `input` with surrounding blanks (and a CR) removed.
template <class F>
void for_each_line(const std::string& input, F f) {
    std::size_t pos = 0, line = 0;
    while (pos < input.size()) {
        std::size_t end = input.find('\n', pos);
        if (end == std::string::npos) end = input.size();
        std::size_t b = pos, e = end;
        while (b < e && (input[b] == ' ' || input[b] == '\t')) ++b;
        while (e > b && (input[e - 1] == ' ' || input[e - 1] == '\t' || input[e - 1] == '\r')) --e;
        f(++line, input.data() + b, input.data() + e);
        pos = end + 1;
    }
}

bool parse_hex(const char* b, const char* e, std::size_t digits, std::uint32_t& out) {
    if (std::size_t(e - b) != digits + 2 || b[0] != '0' || (b[1] != 'x' && b[1] != 'X')) return false;
    auto r = std::from_chars(b + 2, e, out, 16);
    return r.ec == std::errc() && r.ptr == e;
}

// One input number: a float32 bit pattern 0x + 8 hex digits, or a decimal float (also inf, nan).
float parse_number(const char* b, const char* e, std::size_t line) {
    auto fail = [&] {
        throw ConfigError("stdin line " + std::to_string(line) + ": '" + std::string(b, std::min(e, b + 40)) +
                          "' is not a number (expected a decimal float or 0x followed by 8 hex digits)");
    };
    if (e - b >= 2 && b[0] == '0' && (b[1] == 'x' || b[1] == 'X')) {
        std::uint32_t u;
        if (!parse_hex(b, e, 8, u)) fail();
        float x;
        std::memcpy(&x, &u, 4);
        return x;
    }
    // A decimal float, correctly rounded to float32 by strtof (WebAssembly's libc++ has no float
    // from_chars). strtof alone is laxer than the format: it skips leading blanks and accepts '+' and
    // hexadecimal floats, so those are refused first. Out of range gives ±inf or ±0, as it should.
    if (b == e || *b == '+' || std::isspace(static_cast<unsigned char>(*b)) || std::find_if(b, e, [](char c) {
            return c == 'x' || c == 'X';
        }) != e)
        fail();
    const std::string text(b, e);
    char* end = nullptr;
    const float x = std::strtof(text.c_str(), &end);
    if (end != text.c_str() + text.size()) fail();
    return x;
}

}  // namespace

std::vector<float> parse_fp8_values(const std::string& text) {
    std::vector<float> x;
    for_each_line(text, [&](std::size_t line, const char* b, const char* e) { x.push_back(parse_number(b, e, line)); });
    return x;
}

std::vector<std::uint8_t> parse_fp8_codes(const std::string& text) {
    std::vector<std::uint8_t> codes;
    for_each_line(text, [&](std::size_t line, const char* b, const char* e) {
        std::uint32_t c;
        if (!parse_hex(b, e, 2, c))
            throw ConfigError("stdin line " + std::to_string(line) + ": '" + std::string(b, std::min(e, b + 40)) +
                              "' is not an FP8 code (expected 0x followed by 2 hex digits)");
        codes.push_back(std::uint8_t(c));
    });
    return codes;
}

}  // namespace eva
