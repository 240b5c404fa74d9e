// FP8: the codecs against an independent reference built from the OFP8 spec (a sorted table of the
// representable magnitudes searched in double, with ties resolved explicitly to the even code), the SIMD
// codec against the scalar one, scaled quantization against closed-form error bounds, the FP8 GEMM against
// a double-precision product of the dequantized inputs, the accumulator model, and the error metrics.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"
#include "eva/fp8.hpp"
#include "eva/rng.hpp"
#if defined(EVA_SIMD_KERNELS_X86)
#include "../core/src/fp8_kernel.hpp"
namespace eva::detail {
EVA_FP8_KERNEL_INSTANCE(extern, xsimd::avx512bw)
EVA_FP8_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>)
EVA_FP8_KERNEL_INSTANCE(extern, xsimd::sse2)
}  // namespace eva::detail
#endif

using eva::Fp8Format;

namespace {

float from_bits(std::uint32_t u) {
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}
std::uint32_t to_bits(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
}

// ------------------------------------------------------------------------- the independent reference
// The spec's parameters, written out again here rather than taken from the library.
struct Spec {
    int mbits, bias;
    unsigned max_code;  // 0x7E (E4M3) / 0x7B (E5M2)
    bool has_inf;       // E5M2
};
Spec spec(Fp8Format f) { return f == Fp8Format::E4M3 ? Spec{3, 7, 0x7E, false} : Spec{2, 15, 0x7B, true}; }

// Magnitude of code c ∈ [0, max_code] by the OFP8 definition, in double: subnormal 0.m·2^(1−bias),
// normal 1.m·2^(e−bias). Ascending in c, so the table index IS the code.
std::vector<double> magnitudes(Fp8Format f) {
    const Spec s = spec(f);
    std::vector<double> v;
    for (unsigned c = 0; c <= s.max_code; ++c) {
        const unsigned e = c >> s.mbits, m = c & ((1u << s.mbits) - 1);
        const double frac = double(m) / double(1u << s.mbits);
        v.push_back(e == 0 ? std::ldexp(frac, 1 - s.bias) : std::ldexp(1 + frac, int(e) - s.bias));
    }
    return v;
}

// encode(x) by binary search: the two table neighbours of |x|, the nearer one, the even code on a tie.
// One code past the maximum stands for "overflow" (its magnitude is the next value the exponent range
// would have, max + one step), so the overflow threshold is the midpoint and obeys the same tie rule.
struct Reference {
    Fp8Format f;
    std::vector<double> v;
    explicit Reference(Fp8Format format) : f(format), v(magnitudes(format)) {
        v.push_back(v.back() + (v.back() - v[v.size() - 2]));  // virtual overflow code max_code + 1
    }
    std::uint8_t encode(float x, bool saturate) const {
        const Spec s = spec(f);
        const unsigned sign = (to_bits(x) >> 24) & 0x80;
        if (std::isnan(x)) return std::uint8_t(sign | 0x7F);
        const double a = std::fabs(double(x));
        unsigned code;
        if (std::isinf(x)) {
            code = s.max_code + 1;
        } else if (a >= v.back()) {
            code = s.max_code + 1;
        } else {
            const std::size_t hi = std::size_t(std::upper_bound(v.begin(), v.end(), a) - v.begin());
            const std::size_t lo = hi - 1;  // v[lo] ≤ a < v[hi]
            const double mid = (v[lo] + v[hi]) / 2;  // exact in double
            code = unsigned(a < mid ? lo : a > mid ? hi : (lo % 2 == 0 ? lo : hi));
        }
        if (code == s.max_code + 1)  // overflow: ±max when saturating, else inf (E5M2) or NaN (E4M3)
            code = saturate ? s.max_code : (s.has_inf ? 0x7C : 0x7F);
        return std::uint8_t(sign | code);
    }
};

// Float32 patterns for the strided sweep: every 4099th pattern, and dense runs around every place where the
// answer changes: each fp8 value and each midpoint between neighbours (±64 ulps), the overflow thresholds,
// the whole fp8 subnormal range's lower end, float32 subnormals, zeros, infinities and NaNs; both signs.
std::vector<std::uint32_t> sweep_patterns() {
    std::vector<std::uint32_t> p;
    for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += 4099) p.push_back(std::uint32_t(u));
    auto around = [&](double value, int ulps) {
        const std::uint32_t c = to_bits(float(value));
        for (int d = -ulps; d <= ulps; ++d) {
            const std::uint32_t u = std::uint32_t(std::int64_t(c) + d);
            p.push_back(u);
            p.push_back(u ^ 0x80000000u);
        }
    };
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
        const Reference r(f);
        for (std::size_t i = 0; i < r.v.size(); ++i) {
            around(r.v[i], 64);
            if (i + 1 < r.v.size()) around((r.v[i] + r.v[i + 1]) / 2, 64);
        }
    }
    for (double t : {448.0, 464.0, 480.0, 57344.0, 61440.0, 65536.0}) around(t, 1024);
    for (std::uint32_t u = 0; u < 4096; ++u) {  // float32 subnormals (smallest and largest) and zeros
        for (std::uint32_t base : {0u, 0x007FF000u}) {
            p.push_back(base + u);
            p.push_back((base + u) | 0x80000000u);
        }
    }
    for (std::uint32_t u : {0x7F800000u, 0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0x7FA00000u, 0x00800000u})
        for (std::uint32_t s : {0u, 0x80000000u}) p.push_back(u | s);
    return p;
}

const char* name(Fp8Format f) { return eva::fp8_format_name(f); }

}  // namespace

TEST_CASE("fp8: decoding of all 256 codes follows the OFP8 definition", "[fp8]") {
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
        const std::vector<double> v = magnitudes(f);
        const Spec s = spec(f);
        for (unsigned c = 0; c < 256; ++c) {
            INFO(name(f) << " code " << c);
            const unsigned mag = c & 0x7F;
            const float d = eva::fp8_decode(std::uint8_t(c), f);
            REQUIRE(std::signbit(d) == bool(c & 0x80));
            if (mag <= s.max_code) REQUIRE(double(std::fabs(d)) == v[mag]);
            else if (s.has_inf && mag == 0x7C) REQUIRE(std::isinf(d));
            else REQUIRE(std::isnan(d));
        }
    }
    // Anchors quoted in the spec.
    CHECK(eva::fp8_decode(0x7E, Fp8Format::E4M3) == 448.0f);
    CHECK(eva::fp8_decode(0x08, Fp8Format::E4M3) == std::ldexp(1.0f, -6));
    CHECK(eva::fp8_decode(0x01, Fp8Format::E4M3) == std::ldexp(1.0f, -9));
    CHECK(eva::fp8_decode(0x7B, Fp8Format::E5M2) == 57344.0f);
    CHECK(eva::fp8_decode(0x04, Fp8Format::E5M2) == std::ldexp(1.0f, -14));
    CHECK(eva::fp8_decode(0x01, Fp8Format::E5M2) == std::ldexp(1.0f, -16));
    CHECK(eva::fp8_decode(0xFC, Fp8Format::E5M2) == -std::numeric_limits<float>::infinity());
}

TEST_CASE("fp8: every code round-trips through decode and encode", "[fp8]") {
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
        for (bool sat : {false, true})
            for (unsigned c = 0; c < 256; ++c) {
                const float d = eva::fp8_decode(std::uint8_t(c), f);
                const unsigned sign = c & 0x80;
                unsigned expect = c;
                if (std::isnan(d)) expect = sign | 0x7F;                             // canonical NaN
                else if (std::isinf(d)) expect = sat ? (sign | 0x7B) : (sign | 0x7C);  // E5M2 ±inf
                INFO(name(f) << " code " << c << " saturate " << sat);
                REQUIRE(eva::fp8_encode(d, f, sat) == expect);
            }
}

TEST_CASE("fp8: saturating and non-saturating overflow, specials", "[fp8]") {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const float above464 = std::nextafter(464.0f, inf), below61440 = std::nextafter(61440.0f, 0.0f);
    const auto e4 = Fp8Format::E4M3, e5 = Fp8Format::E5M2;
    // E4M3: 464 is the tie between 448 (0x7E, even) and the virtual 480 (0x7F): it rounds to 448.
    CHECK(eva::fp8_encode(464.0f, e4, false) == 0x7E);
    CHECK(eva::fp8_encode(above464, e4, false) == 0x7F);
    CHECK(eva::fp8_encode(above464, e4, true) == 0x7E);
    CHECK(eva::fp8_encode(-above464, e4, true) == 0xFE);
    CHECK(eva::fp8_encode(inf, e4, false) == 0x7F);
    CHECK(eva::fp8_encode(-inf, e4, true) == 0xFE);
    // E5M2: 61440 is the tie between 57344 (0x7B, odd) and inf (0x7C, even): it becomes inf.
    CHECK(eva::fp8_encode(below61440, e5, false) == 0x7B);
    CHECK(eva::fp8_encode(61440.0f, e5, false) == 0x7C);
    CHECK(eva::fp8_encode(61440.0f, e5, true) == 0x7B);
    CHECK(eva::fp8_encode(-inf, e5, false) == 0xFC);
    CHECK(eva::fp8_encode(inf, e5, true) == 0x7B);
    for (auto f : {e4, e5})
        for (bool sat : {false, true}) {
            CHECK(eva::fp8_encode(nan, f, sat) == 0x7F);
            CHECK(eva::fp8_encode(-nan, f, sat) == 0xFF);
            CHECK(eva::fp8_encode(0.0f, f, sat) == 0x00);
            CHECK(eva::fp8_encode(-0.0f, f, sat) == 0x80);
        }
    // Subnormal ties: 2^-10 is half the E4M3 min subnormal → 0 (even); 3·2^-10 → 2·2^-10 = code 2 (even).
    CHECK(eva::fp8_encode(std::ldexp(1.0f, -10), e4) == 0x00);
    CHECK(eva::fp8_encode(std::ldexp(3.0f, -10), e4) == 0x02);
    CHECK(eva::fp8_encode(std::nextafter(std::ldexp(1.0f, -10), 1.0f), e4) == 0x01);
}

TEST_CASE("fp8: strided sweep of float32 patterns against the table reference, SIMD equals scalar", "[fp8]") {
    const std::vector<std::uint32_t> patterns = sweep_patterns();
    std::vector<float> x(patterns.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = from_bits(patterns[i]);
    std::vector<std::uint8_t> simd(x.size());
    std::vector<float> decoded(x.size()), scalar_decoded(x.size());
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
        const Reference ref(f);
        for (bool sat : {false, true}) {
            eva::fp8_encode(x.data(), simd.data(), x.size(), f, sat);
            std::size_t bad = 0, simd_bad = 0;
            for (std::size_t i = 0; i < x.size(); ++i) {
                const std::uint8_t s = eva::fp8_encode(x[i], f, sat);
                if (s != ref.encode(x[i], sat) && bad++ < 5)
                    FAIL_CHECK(name(f) << " sat=" << sat << " x bits 0x" << std::hex << patterns[i] << " got 0x"
                                       << int(s) << " want 0x" << int(ref.encode(x[i], sat)));
                simd_bad += simd[i] != s;
            }
            INFO(name(f) << " saturate " << sat << ", " << x.size() << " patterns");
            CHECK(bad == 0);
            CHECK(simd_bad == 0);
            // Decoding: SIMD equals scalar bit for bit (NaNs included) on the codes just produced.
            eva::fp8_decode(simd.data(), decoded.data(), simd.size(), f);
            std::size_t decode_bad = 0;
            for (std::size_t i = 0; i < simd.size(); ++i)
                decode_bad += to_bits(decoded[i]) != to_bits(eva::fp8_decode(simd[i], f));
            CHECK(decode_bad == 0);
        }
    }
}

TEST_CASE("fp8: SIMD decoding of every code equals the scalar decoder, at any length", "[fp8]") {
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
        for (std::size_t n : {std::size_t(1), std::size_t(15), std::size_t(16), std::size_t(256), std::size_t(2048 + 256 + 7)}) {
            std::vector<std::uint8_t> codes(n);
            for (std::size_t i = 0; i < n; ++i) codes[i] = std::uint8_t(i * 37 + i / 256);  // every code, shuffled
            std::vector<float> x(n);
            eva::fp8_decode(codes.data(), x.data(), n, f);
            for (std::size_t i = 0; i < n; ++i) {
                INFO(name(f) << " n=" << n << " code " << int(codes[i]));
                REQUIRE(to_bits(x[i]) == to_bits(eva::fp8_decode(codes[i], f)));
            }
        }
}

#if defined(EVA_SIMD_KERNELS_X86)
// The portable build carries the SIMD codec for AVX-512, AVX2 and SSE2 and runs the widest one the CPU has;
// the others are checked here directly (on the CPUs that can run them), on the strided sweep's patterns.
template <class Arch>
void check_kernel(const char* arch, const std::vector<float>& x) {
    const std::size_t n = x.size() - x.size() % 16;  // the kernels take multiples of 16
    std::vector<std::uint8_t> codes(n);
    std::vector<float> decoded(n), rounded(n);
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
        for (bool sat : {false, true}) {
            eva::detail::fp8_encode_kernel<Arch>(Arch{}, x.data(), codes.data(), n, f, sat);
            eva::detail::fp8_decode_kernel<Arch>(Arch{}, codes.data(), decoded.data(), n, f);
            std::size_t bad = 0, decode_bad = 0;
            for (std::size_t i = 0; i < n; ++i) {
                bad += codes[i] != eva::fp8_encode(x[i], f, sat);
                decode_bad += to_bits(decoded[i]) != to_bits(eva::fp8_decode(codes[i], f));
            }
            INFO(arch << " " << name(f) << " saturate " << sat);
            CHECK(bad == 0);
            CHECK(decode_bad == 0);
        }
    // The scaled-quantization kernels against their definitions in scalar code, on the same patterns
    // divided by scales that push some past the format's range.
    std::int32_t amax = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isnan(x[i])) amax = std::max(amax, std::int32_t(to_bits(std::fabs(x[i]))));
    CHECK(eva::detail::fp8_amax_bits_kernel<Arch>(Arch{}, x.data(), n) == amax);
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
        for (float s : {1.0f, 0.37f, 3e-3f}) {
            const std::size_t over = eva::detail::fp8_scaled_encode_kernel<Arch>(Arch{}, x.data(), s, codes.data(), n, f);
            eva::detail::fp8_scaled_round_kernel<Arch>(Arch{}, x.data(), s, rounded.data(), n, f);
            std::size_t bad = 0, round_bad = 0, expected_over = 0;
            for (std::size_t i = 0; i < n; ++i) {
                const float y = x[i] / s;
                const std::uint8_t c = eva::fp8_encode(y, f, true);
                bad += codes[i] != c;
                round_bad += to_bits(rounded[i]) != to_bits(eva::fp8_decode(c, f) * s);
                expected_over += f == Fp8Format::E4M3 ? std::fabs(y) > 464.0f : std::fabs(y) >= 61440.0f;
            }
            INFO(arch << " " << name(f) << " scale " << s);
            CHECK(bad == 0);
            CHECK(round_bad == 0);
            CHECK(over == expected_over);
        }
}

TEST_CASE("fp8: every compiled SIMD codec (AVX-512, AVX2, SSE2) equals the scalar codec", "[fp8]") {
    const std::vector<std::uint32_t> patterns = sweep_patterns();
    std::vector<float> x(patterns.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = from_bits(patterns[i]);
    check_kernel<xsimd::sse2>("sse2", x);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) check_kernel<xsimd::fma3<xsimd::avx2>>("avx2", x);
    else WARN("this CPU has no AVX2+FMA: that kernel was not checked");
    if (__builtin_cpu_supports("avx512bw")) check_kernel<xsimd::avx512bw>("avx512bw", x);
    else WARN("this CPU has no AVX-512BW: that kernel was not checked");
}
#endif

// The full sweep: all 2^32 float32 patterns, both formats, both modes, scalar and SIMD. Hidden (run with
// `eva_tests "[.exhaustive]"`); the reference is evaluated once per magnitude and applied to both signs.
TEST_CASE("fp8: exhaustive sweep of all 2^32 float32 patterns", "[.exhaustive]") {
    const auto t0 = std::chrono::steady_clock::now();
    constexpr std::size_t kBlock = 1 << 16;
    std::vector<float> x(kBlock);
    std::vector<std::uint8_t> simd(kBlock);
    std::uint64_t mismatches = 0, simd_mismatches = 0, round_mismatches = 0, checked = 0;
#if defined(EVA_SIMD_KERNELS_X86)
    // The scaled-round kernel (quantize then dequantize without the code, scale 1) of the widest SIMD level
    // this CPU runs, against decode(encode(x)) of the scalar codec.
    std::vector<float> rounded(kBlock);
    const auto scaled_round = [&](Fp8Format f) {
        using namespace eva::detail;
        if (__builtin_cpu_supports("avx512bw")) fp8_scaled_round_kernel(xsimd::avx512bw{}, x.data(), 1.0f, rounded.data(), kBlock, f);
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            fp8_scaled_round_kernel(xsimd::fma3<xsimd::avx2>{}, x.data(), 1.0f, rounded.data(), kBlock, f);
        else fp8_scaled_round_kernel(xsimd::sse2{}, x.data(), 1.0f, rounded.data(), kBlock, f);
    };
#endif
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
        const Reference ref(f);
        for (std::uint64_t base = 0; base < (std::uint64_t(1) << 32); base += kBlock) {
            for (std::size_t i = 0; i < kBlock; ++i) x[i] = from_bits(std::uint32_t(base + i));
            const bool negative = base >= 0x80000000u;
            for (bool sat : {false, true}) {
                eva::fp8_encode(x.data(), simd.data(), kBlock, f, sat);
                for (std::size_t i = 0; i < kBlock; ++i) {
                    // Reference of |x| with the sign bit of x: the spec's rounding is sign-symmetric.
                    const std::uint8_t want = std::uint8_t(ref.encode(std::fabs(x[i]), sat) | (negative ? 0x80 : 0));
                    const std::uint8_t got = eva::fp8_encode(x[i], f, sat);
                    mismatches += got != want;
                    simd_mismatches += simd[i] != got;
                    ++checked;
                }
#if defined(EVA_SIMD_KERNELS_X86)
                if (!sat) continue;
                scaled_round(f);
                for (std::size_t i = 0; i < kBlock; ++i)
                    round_mismatches += to_bits(rounded[i]) != to_bits(eva::fp8_decode(simd[i], f));
#endif
            }
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    WARN("exhaustive: " << checked << " encodings (2^32 patterns x 2 formats x 2 modes), " << mismatches
                        << " scalar mismatches, " << simd_mismatches << " SIMD mismatches, " << round_mismatches
                        << " scaled-round mismatches, " << seconds << " s");
    CHECK(checked == (std::uint64_t(1) << 34));
    CHECK(mismatches == 0);
    CHECK(simd_mismatches == 0);
    CHECK(round_mismatches == 0);
}

// ----------------------------------------------------------------------------- scaled quantization
namespace {

std::vector<float> normal_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed, float std = 1) {
    eva::Rng rng(seed);
    std::vector<float> x(rows * cols);
    rng.fill_normal(x.data(), x.size(), 0, std);
    return x;
}

// Rounding to the nearest of a grid whose relative spacing is 2^-M (normal range) errs by at most half a
// step: |x − x̂| ≤ 2^-(M+1)·|x|. Below the normal range the step is the min subnormal 2^(1−bias−M), so the
// error there is at most half of it, times the scale. Both bounds are the spec's rounding, nothing looser.
void check_dequantized(const std::vector<float>& x, std::size_t cols, const eva::Fp8Matrix& q) {
    const Spec s = spec(q.format);
    std::vector<float> d(x.size());
    eva::dequantize(q, d.data(), cols);
    for (std::size_t i = 0; i < x.size(); ++i) {
        const std::size_t r = i / cols, c = i % cols;
        const double scale = q.scale(r, c);
        const double bound = std::max(std::ldexp(std::fabs(double(x[i])), -(s.mbits + 1)),
                                      scale * std::ldexp(1.0, -s.bias - s.mbits));
        INFO("element " << r << "," << c << " x=" << x[i] << " dequantized=" << d[i] << " scale=" << scale);
        // 1e-6 relative slack: x/s and decode·s are each rounded once in float32 (2^-24 each).
        REQUIRE(std::fabs(double(d[i]) - double(x[i])) <= bound * (1 + 1e-6) + 1e-6 * std::fabs(double(x[i])));
    }
}

}  // namespace

TEST_CASE("fp8: per-tile, per-block and per-tensor scales are amax/max of their group", "[fp8]") {
    const std::size_t rows = 130, cols = 300;  // ragged: neither is a multiple of 128
    std::vector<float> x = normal_matrix(rows, cols, 11);
    for (std::size_t c = 0; c < 128; ++c) x[5 * cols + c] = 0;  // one all-zero tile: scale from the amax floor
    x[7 * cols + 200] = 1000;                                     // an outlier only its own group sees
    for (auto g : {eva::Fp8Granularity::Tensor, eva::Fp8Granularity::Tile, eva::Fp8Granularity::Block})
        for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
            eva::Fp8QuantConfig cfg;
            cfg.format = f;
            cfg.granularity = g;
            const eva::Fp8Matrix q = eva::quantize(x.data(), rows, cols, cols, cfg);
            const std::size_t gr = g == eva::Fp8Granularity::Tensor ? rows : g == eva::Fp8Granularity::Tile ? 1 : 128;
            const std::size_t gc = g == eva::Fp8Granularity::Tensor ? cols : 128;
            REQUIRE(q.scales.size() == ((rows + gr - 1) / gr) * ((cols + gc - 1) / gc));
            for (std::size_t r = 0; r < rows; r += gr)
                for (std::size_t c = 0; c < cols; c += gc) {
                    float amax = 0;
                    for (std::size_t i = r; i < std::min(rows, r + gr); ++i)
                        for (std::size_t j = c; j < std::min(cols, c + gc); ++j) amax = std::max(amax, std::fabs(x[i * cols + j]));
                    // The same float32 division as the definition: exact equality is expected.
                    REQUIRE(q.scale(r, c) == std::max(amax, 1e-4f) / eva::fp8_max(f));
                }
            CHECK(q.saturated == 0);  // online scales never clip
            check_dequantized(x, cols, q);
            const eva::Fp8ErrorMetrics m = eva::quantization_metrics(x.data(), cols, q);
            CHECK(m.nan == 0);
            if (g == eva::Fp8Granularity::Tile) CHECK(q.scale(5, 0) == 1e-4f / eva::fp8_max(f));
        }
}

TEST_CASE("fp8: quantize_dequantize is dequantize(quantize(x)), bit for bit", "[fp8]") {
    // quantize_dequantize on ragged, strided matrices with an outlier, a zero tile, a NaN and an inf, for
    // every granularity, format and scale rule: equal bit for bit to the two-step definition.
    const std::size_t rows = 131, cols = 300, ld = 311;
    std::vector<float> m = normal_matrix(rows, ld, 12);
    for (std::size_t c = 0; c < 128; ++c) m[5 * ld + c] = 0;
    m[7 * ld + 200] = 1000;
    m[9 * ld + 3] = std::numeric_limits<float>::quiet_NaN();
    m[130 * ld + 299] = std::numeric_limits<float>::infinity();
    for (auto g : {eva::Fp8Granularity::Tensor, eva::Fp8Granularity::Tile, eva::Fp8Granularity::Block})
        for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
            for (bool pow2 : {false, true}) {
                eva::Fp8QuantConfig cfg;
                cfg.format = f;
                cfg.granularity = g;
                cfg.pow2_scales = pow2;
                std::vector<float> two_step(rows * cols), one_pass(rows * (cols + 5));
                eva::dequantize(eva::quantize(m.data(), rows, cols, ld, cfg), two_step.data(), cols);
                eva::quantize_dequantize(m.data(), rows, cols, ld, cfg, one_pass.data(), cols + 5);
                std::size_t bad = 0;
                for (std::size_t r = 0; r < rows; ++r)
                    for (std::size_t c = 0; c < cols; ++c) bad += to_bits(two_step[r * cols + c]) != to_bits(one_pass[r * (cols + 5) + c]);
                INFO(name(f) << " granularity " << int(g) << " pow2 " << pow2);
                CHECK(bad == 0);
            }
    std::vector<float> small(4);
    CHECK_THROWS_AS(eva::quantize_dequantize(m.data(), 2, 300, ld, eva::Fp8QuantConfig{}, small.data(), 2), eva::ShapeError);
}

TEST_CASE("fp8: 128x1 tiles down the columns are the transpose of 1x128 tiles of the transpose", "[fp8]") {
    // quantize_dequantize_columns against its definition: transpose, quantize_dequantize in 1×128 tiles,
    // transpose back. Ragged: 300 rows (a strip of 44 after two of 128), 37 columns (a SIMD run of 32 and
    // a scalar tail of 5), strided input and output; a zero column strip, an outlier, NaN and inf.
    const std::size_t rows = 300, cols = 37, ld = 41, ldy = 39;
    std::vector<float> m = normal_matrix(rows, ld, 13);
    for (std::size_t r = 0; r < 128; ++r) m[r * ld + 4] = 0;
    m[140 * ld + 20] = 3000;
    m[9 * ld + 33] = std::numeric_limits<float>::quiet_NaN();
    m[299 * ld + 36] = -std::numeric_limits<float>::infinity();
    std::vector<float> t(cols * rows);  // mᵀ [cols, rows]
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) t[c * rows + r] = m[r * ld + c];
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
        for (bool pow2 : {false, true}) {
            eva::Fp8QuantConfig cfg;
            cfg.format = f;
            cfg.granularity = eva::Fp8Granularity::Tile;
            cfg.pow2_scales = pow2;
            std::vector<float> by_rows(cols * rows), by_columns(rows * ldy);
            eva::quantize_dequantize(t.data(), cols, rows, rows, cfg, by_rows.data(), rows);
            eva::quantize_dequantize_columns(m.data(), rows, cols, ld, cfg, by_columns.data(), ldy);
            std::size_t bad = 0;
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t c = 0; c < cols; ++c) bad += to_bits(by_rows[c * rows + r]) != to_bits(by_columns[r * ldy + c]);
            INFO(name(f) << " pow2 " << pow2);
            CHECK(bad == 0);
        }
    std::vector<float> small(4);
    CHECK_THROWS_AS(eva::quantize_dequantize_columns(m.data(), 2, 37, 30, eva::Fp8QuantConfig{}, small.data(), 37),
                    eva::ShapeError);
}

TEST_CASE("fp8: power-of-two scales", "[fp8]") {
    const std::size_t rows = 4, cols = 256;
    const std::vector<float> x = normal_matrix(rows, cols, 12, 3);
    eva::Fp8QuantConfig cfg;
    cfg.pow2_scales = true;
    const eva::Fp8Matrix q = eva::quantize(x.data(), rows, cols, cols, cfg);
    for (std::size_t i = 0; i < q.scales.size(); ++i) {
        float amax = 0;
        for (std::size_t c = (i % 2) * 128; c < (i % 2) * 128 + 128; ++c) amax = std::max(amax, std::fabs(x[(i / 2) * cols + c]));
        int e;
        REQUIRE(std::frexp(q.scales[i], &e) == 0.5f);  // a power of two
        // The smallest power of two that keeps amax/s within the format: amax/448 ≤ s < 2·amax/448.
        REQUIRE(q.scales[i] >= amax / 448);
        REQUIRE(q.scales[i] < 2 * amax / 448);
    }
    check_dequantized(x, cols, q);
}

TEST_CASE("fp8: delayed scaling from an amax history", "[fp8]") {
    eva::AmaxHistory history(2);
    eva::Fp8QuantConfig cfg;
    const std::size_t n = 64;
    auto tensor = [&](float amax) {  // values spread linearly up to amax
        std::vector<float> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = amax * float(i + 1) / float(n);
        return x;
    };
    // Step 1: empty history, the current amax is used. Steps 2–3: the max of the previous two.
    const auto x1 = tensor(1), x2 = tensor(2), x3 = tensor(8), x4 = tensor(1);
    CHECK(eva::quantize_delayed(x1.data(), 1, n, n, history, cfg).scales[0] == 1.0f / 448);
    CHECK(eva::quantize_delayed(x2.data(), 1, n, n, history, cfg).scales[0] == 1.0f / 448);
    const eva::Fp8Matrix q3 = eva::quantize_delayed(x3.data(), 1, n, n, history, cfg);
    CHECK(q3.scales[0] == 2.0f / 448);
    // With s = 2/448, x/s = 224·x: values above 464/224 overflow and saturate to 448·s = 2.
    std::size_t expect_saturated = 0;
    for (float v : x3) expect_saturated += 224 * v > 464;
    CHECK(q3.saturated == expect_saturated);
    CHECK(q3.saturated > 0);
    std::vector<float> d(n);
    eva::dequantize(q3, d.data(), n);
    CHECK(*std::max_element(d.begin(), d.end()) == 2.0f);
    CHECK(eva::quantize_delayed(x4.data(), 1, n, n, history, cfg).scales[0] == 8.0f / 448);  // max(2, 8)
    CHECK(history.size() == 2);
    CHECK_THROWS_AS(eva::AmaxHistory(0), eva::ConfigError);
}

TEST_CASE("fp8: a delayed-scaling run saturates at the spike the history has not seen, and only there", "[fp8]") {
    // x = 1..128 in one row, per-tensor E4M3. Step t's tensor is x·g_t with g_t = 1.03^t (×4 at step 16).
    std::vector<float> x(128);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i + 1);
    eva::Fp8QuantConfig cfg;
    eva::Fp8DelayedRun run(4, true, cfg);
    while (!run.finished()) run.advance(x, 1, 128);
    run.advance(x, 1, 128);  // past the end: nothing
    REQUIRE(run.done() == eva::Fp8DelayedRun::kSteps);
    const auto g = [](int t) { return std::pow(1.03f, float(t)) * (t == 16 ? 4.0f : 1.0f); };
    for (int t = 0; t < run.done(); ++t) {
        const std::size_t i = std::size_t(t);
        CHECK(run.amax[i] == 128 * g(t));
        // The history's amax: the step's own while the history is empty, then the largest of the previous
        // four steps' (the growing gain makes that the last one, except for four steps after the spike).
        const float used = t == 0 ? run.amax[0] : t >= 17 && t <= 20 ? run.amax[16] : run.amax[i - 1];
        CHECK(run.used_amax[i] == used);
        // s = used/448, so the largest x/s is 448·amax/used: 448·1.03 ≈ 461 between ordinary steps, below
        // the 464 where E4M3's rounding overflows, so nothing saturates; at the spike x/s = x·4·1.03·448/128,
        // above 464 for x ≥ 33: 96 values.
        CHECK(run.saturated[i] == (t == 16 ? 96.0f : 0.0f));
    }
    // A replayed step is the run's own quantization: the scale from used_amax, the same SNR.
    for (int t : {0, 5, 16}) {
        const eva::Fp8Matrix q = run.replay(x, 1, 128, t);
        CHECK(q.scales[0] == eva::fp8_scale(run.used_amax[std::size_t(t)], cfg));
        const std::vector<float> xt = run.step_tensor(x, t);
        CHECK(float(eva::quantization_metrics(xt.data(), 128, q).snr_db) == run.snr_db[std::size_t(t)]);
    }
    CHECK(run.snr_db[16] < run.snr_db[15] - 10);  // the clipped values dominate the error
    CHECK_THROWS_AS(run.replay(x, 1, 128, 24), eva::ConfigError);
    eva::Fp8DelayedRun calm(1, false, cfg);  // no spike: never saturates, the scale always one step behind
    for (int t = 0; t < 20; ++t) calm.advance(x, 1, 128);
    for (std::size_t t = 1; t < 20; ++t) {
        CHECK(calm.saturated[t] == 0);
        CHECK(calm.used_amax[t] == calm.amax[t - 1]);
    }
}

TEST_CASE("fp8: the 256-code round trip and the exact value text", "[fp8]") {
    const eva::Fp8CodeRoundTrip e4 = eva::fp8_code_round_trip(Fp8Format::E4M3);
    CHECK(e4.mismatches == 0);
    CHECK(e4.simd_scalar_mismatches == 0);
    CHECK(e4.nans == 2);  // S.1111.111
    CHECK(e4.values[0x01] == "0.001953125");  // 2^-9, the smallest subnormal
    CHECK(e4.values[0x7E] == "448");
    CHECK(e4.values[0xFE] == "-448");
    CHECK(e4.values[0x80] == "-0");
    CHECK(e4.values[0x7F] == "nan");
    CHECK(e4.reencoded[0xFF] == 0xFF);
    const eva::Fp8CodeRoundTrip e5 = eva::fp8_code_round_trip(Fp8Format::E5M2);
    CHECK(e5.mismatches == 0);
    CHECK(e5.simd_scalar_mismatches == 0);
    CHECK(e5.nans == 6);  // S.11111.01/10/11
    CHECK(e5.values[0x7B] == "57344");
    CHECK(e5.values[0x7C] == "inf");
    CHECK(e5.values[0xFC] == "-inf");
    CHECK(e5.values[0x01] == "1.52587890625e-05");  // 2^-16
    CHECK(e5.reencoded[0x7D] == 0x7F);  // a NaN comes back as its sign's canonical NaN
    CHECK(e5.reencoded[0xFD] == 0xFF);
    CHECK(eva::fp8_value_text(0.1f) == "0.10000000149011612");  // exact: float 0.1 has 17 significant digits
}

TEST_CASE("fp8: codes ordered by value", "[fp8]") {
    for (const auto& [f, size, lowest, highest] : {std::tuple{Fp8Format::E4M3, 254, 0xFE, 0x7E},
                                                   std::tuple{Fp8Format::E5M2, 250, 0xFC, 0x7C}}) {
        const std::vector<std::uint8_t> order = eva::fp8_codes_by_value(f);
        REQUIRE(int(order.size()) == size);  // 256 minus the NaN codes
        CHECK(order.front() == lowest);
        CHECK(order.back() == highest);
        for (std::size_t i = 1; i < order.size(); ++i)
            CHECK(eva::fp8_decode(order[i - 1], f) <= eva::fp8_decode(order[i], f));
        const auto zero = std::find(order.begin(), order.end(), 0x00);
        REQUIRE(zero + 1 != order.end());
        CHECK(zero[1] == 0x80);  // +0 then −0: equal values keep the codes' order
    }
}

TEST_CASE("fp8: the synthetic tensor with outliers", "[fp8]") {
    std::size_t outliers = 0;
    const std::vector<float> plain = eva::fp8_outlier_tensor(1000, 0, 1000, 7, &outliers);
    CHECK(outliers == 0);
    std::vector<float> normal(1000);
    eva::Rng(7).fill_normal(normal.data(), normal.size(), 0, 1);
    CHECK(plain == normal);
    const std::vector<float> x = eva::fp8_outlier_tensor(1000, 0.01f, 1000, 7, &outliers);
    CHECK(outliers == 10);  // round(0.01 · 1000)
    std::size_t set = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (std::fabs(x[i]) == 1000) ++set;
        else CHECK(x[i] == normal[i]);  // the normal part does not move
    }
    CHECK(set >= 1);
    CHECK(set <= 10);  // positions may repeat
    CHECK(eva::fp8_outlier_tensor(0, 0.5f, 10, 7).empty());
}

TEST_CASE("fp8: error metrics", "[fp8]") {
    const float ref[] = {1, 2, 3, 4, 1e-3f, 5};
    const float approx[] = {1, 2, 3, 5, 0, std::numeric_limits<float>::quiet_NaN()};
    const eva::Fp8ErrorMetrics m = eva::error_metrics(ref, approx, 6);
    // Closed forms over the five non-NaN pairs: errors (0, 0, 0, −1, 1e-3).
    const double r4 = double(1e-3f), sig = 30 + r4 * r4, err = 1 + r4 * r4;
    CHECK(m.count == 5);
    CHECK(m.nan == 1);
    CHECK(m.underflow == 1);
    CHECK(m.mse == Approx(err / 5).epsilon(1e-12));
    CHECK(m.snr_db == Approx(10 * std::log10(sig / err)).epsilon(1e-12));
    CHECK(m.max_rel_error == Approx(1.0).epsilon(1e-12));  // the underflowed element
    CHECK(m.mean_rel_error == Approx((0.25 + 1.0) / 5).epsilon(1e-12));
    CHECK(m.cosine == Approx((1 + 4 + 9 + 20) / std::sqrt(sig * 39)).epsilon(1e-12));
    const eva::Fp8ErrorMetrics exact = eva::error_metrics(ref, ref, 5);
    CHECK(std::isinf(exact.snr_db));
    CHECK(exact.to_json()["snr_db"] == "inf");  // JSON has no infinity
    CHECK(m.to_json()["underflow"] == 1);
    CHECK(m.to_json()["snr_db"] == m.snr_db);
    CHECK(exact.cosine == Approx(1.0).epsilon(1e-12));
}

// ------------------------------------------------------------------------------ views of a quantization
TEST_CASE("fp8: the histogram of |x|/s divides every element by its own group's scale", "[fp8]") {
    // Tiles of 2: (1, 2) has scale 2/448, (100, 200) scale 200/448, so both give |x|/s = 224, 448;
    // 1e-6 with the tile (1e-6, 0)'s floored scale 1e-4/448 gives 4.48 = 2^2.164 (bin ⌊14.164·4⌋ = 56).
    const float x[] = {1, 2, 100, 200, 1e-6f, 0};
    eva::Fp8QuantConfig cfg;
    cfg.group = 2;
    const eva::Fp8Matrix q = eva::quantize(x, 1, 6, 6, cfg);
    const eva::Fp8ScaledHistogram h = eva::fp8_scaled_histogram(x, 6, q);
    // E4M3: lo = ⌊log2 2^-9⌋ − 3 = −12, top = ⌈log2 448⌉ + 3 = 12: 24 octaves of 4 bins.
    CHECK(h.lo == -12);
    REQUIRE(h.counts.size() == 96);
    CHECK(h.zeros == 1);
    // 224 = 2^7.807: bin ⌊(7.807 + 12)·4⌋ = 79; 448 = 2^8.807: bin 83 (hand-computed).
    for (std::size_t b = 0; b < h.counts.size(); ++b)
        CHECK(h.counts[b] == (b == 79 || b == 83 ? 2.0f : b == 56 ? 1.0f : 0.0f));
    // E5M2: lo = ⌊log2 2^-16⌋ − 3 = −19, top = ⌈log2 57344⌉ + 3 = 19; 2 bins per octave: 76 bins. A
    // per-tensor scale of 2^-20/57344 puts 2^-20 at |x|/s = 57344 = 2^15.807 (bin ⌊34.807·2⌋ = 69) and
    // 2^-60 at 2^-24.19, below the first bin: counted in it.
    const float tiny[] = {std::ldexp(1.0f, -20), std::ldexp(1.0f, -60)};
    eva::Fp8QuantConfig t;
    t.format = Fp8Format::E5M2;
    t.granularity = eva::Fp8Granularity::Tensor;
    t.amax_floor = std::ldexp(1.0f, -20);
    const eva::Fp8ScaledHistogram e = eva::fp8_scaled_histogram(tiny, 2, eva::quantize(tiny, 1, 2, 2, t), 2);
    CHECK(e.lo == -19);
    REQUIRE(e.counts.size() == 76);
    CHECK(e.counts[69] == 1);
    CHECK(e.counts[0] == 1);
    CHECK_THROWS_AS(eva::fp8_scaled_histogram(x, 6, q, 0), eva::ConfigError);
}

TEST_CASE("fp8: the error grid averages each cell's error and marks saturated and flushed elements", "[fp8]") {
    // A delayed scale from an amax history of 448 gives s = 1 exactly, so the errors are hand-computed:
    // 17 rounds to 16 (E4M3 spaces [16, 32) by 2; the tie goes to the even code), 0.0005 < 2^-10 flushes to
    // 0, 600 saturates to 448; 1..4 and 0 are exact.
    const float x[] = {17, 1, 2, 3,
                       0.0005f, 4, 600, 0};
    eva::AmaxHistory history(1);
    history.push(448);
    const eva::Fp8Matrix q = eva::quantize_delayed(x, 2, 4, 4, history, {});
    REQUIRE(q.scales[0] == 1.0f);
    // At most 2×2 cells: cells of 1×2 elements.
    const eva::Fp8ErrorGrid a = eva::fp8_error_grid(x, 4, q, false, 2);
    CHECK(a.cell_rows == 1);
    CHECK(a.cell_cols == 2);
    REQUIRE(a.rows == 2);
    REQUIRE(a.cols == 2);
    // Means: (1 + 0)/2, exact, (0.0005 + 0)/2, (152 + 0)/2. The exact cell takes lo. Float error of log10 only.
    const double lo = std::log10(double(0.0005f) / 2), hi = std::log10(76.0);
    CHECK(a.log10_mean[0] == Approx(std::log10(0.5)).epsilon(1e-6));
    CHECK(a.log10_mean[1] == a.lo);
    CHECK(a.log10_mean[2] == Approx(lo).epsilon(1e-6));
    CHECK(a.log10_mean[3] == Approx(hi).epsilon(1e-6));
    CHECK(a.lo == Approx(lo).epsilon(1e-6));
    CHECK(a.hi == Approx(hi).epsilon(1e-6));
    CHECK(a.marked == std::vector<unsigned char>{0, 0, 1, 1});
    // Relative: 1/17 and 0 → 1/34; 0.0005 flushed → relative error 1, and 4 exact → 1/2; x = 0 left out →
    // 152/600 alone.
    const eva::Fp8ErrorGrid r = eva::fp8_error_grid(x, 4, q, true, 2);
    CHECK(r.log10_mean[0] == Approx(std::log10(1.0 / 34)).epsilon(1e-6));
    CHECK(r.log10_mean[2] == Approx(std::log10(0.5)).epsilon(1e-6));
    CHECK(r.log10_mean[3] == Approx(std::log10(152.0 / 600)).epsilon(1e-6));
    // A grid no larger than the matrix: one element per cell; and an exact matrix (the power-of-two scale
    // 2^-7 makes 1, 2, 3 the codes' 128, 256, 384) keeps lo = hi = −8.
    const float exact[] = {1, 2, 3};
    eva::Fp8QuantConfig pow2;
    pow2.pow2_scales = true;
    const eva::Fp8ErrorGrid e = eva::fp8_error_grid(exact, 3, eva::quantize(exact, 1, 3, 3, pow2), false);
    CHECK(e.cell_rows == 1);
    CHECK(e.cols == 3);
    CHECK(e.lo == -8);
    CHECK(e.hi == -8);
    CHECK(e.log10_mean == std::vector<float>{-8, -8, -8});
}

// -------------------------------------------------------------------------------------------- GEMM
namespace {

// ‖C − R‖_F / ‖R‖_F with R = (dequantized A)·(dequantized B)ᵀ in double: only the accumulation error.
double gemm_relative_error(const eva::Fp8Matrix& A, const eva::Fp8Matrix& B, const eva::Fp8GemmConfig& cfg) {
    const std::size_t M = A.rows, N = B.rows, K = A.cols;
    std::vector<float> a(M * K), b(N * K), c(M * N);
    eva::dequantize(A, a.data(), K);
    eva::dequantize(B, b.data(), K);
    eva::fp8_gemm(A, B, c.data(), N, cfg);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            double r = 0;
            for (std::size_t k = 0; k < K; ++k) r += double(a[i * K + k]) * double(b[j * K + k]);
            num += (c[i * N + j] - r) * (c[i * N + j] - r);
            den += r * r;
        }
    return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("fp8: promoted FP8 GEMM with fp32 accumulation equals the double product of its inputs", "[fp8]") {
    const std::size_t M = 37, N = 45, K = 300;  // ragged tiles and blocks
    const auto x = normal_matrix(M, K, 21), w = normal_matrix(N, K, 22, 0.05f);
    const eva::Fp8Matrix A = eva::quantize_tiles(x.data(), M, K), B = eva::quantize_blocks(w.data(), N, K);
    std::vector<float> a(M * K), b(N * K), c(M * N, 0.0f);
    eva::dequantize(A, a.data(), K);
    eva::dequantize(B, b.data(), K);
    eva::Fp8GemmConfig cfg;
    cfg.accum_bits = 0;  // exact fp32 inside each 128-element interval
    eva::fp8_gemm(A, B, c.data(), N, cfg);
    // fp32 error bound (Higham §3.1): an interval of L = 128 products summed in fp32, its rescaling (two
    // roundings) and ⌈K/L⌉ additions into C give |c − r| ≤ (L + ⌈K/L⌉ + 2)·u·Σ|a||b|, u = 2^-24. The
    // dequantized values a, b differ from the kernel's decode·scale products by one more rounding each.
    const double u = std::ldexp(1.0, -24), gamma = (128 + 3 + 2 + 2) * u;
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            double r = 0, mag = 0;
            for (std::size_t k = 0; k < K; ++k) {
                r += double(a[i * K + k]) * double(b[j * K + k]);
                mag += std::fabs(double(a[i * K + k]) * double(b[j * K + k]));
            }
            INFO("i=" << i << " j=" << j);
            REQUIRE(std::fabs(c[i * N + j] - r) <= gamma * mag);
        }
    // Accumulating into C adds the same product again.
    std::vector<float> c2 = c;
    eva::fp8_gemm(A, B, c2.data(), N, cfg, /*accumulate=*/true);
    for (std::size_t i = 0; i < c.size(); ++i) REQUIRE(c2[i] == Approx(2 * c[i]).epsilon(1e-5).margin(1e-6));
}

TEST_CASE("fp8: the limited accumulator rounds toward zero to the given mantissa bits", "[fp8]") {
    eva::Rng rng(5);
    for (int bits : {1, 7, 14, 23})
        for (int t = 0; t < 1000; ++t) {
            const float acc = rng.normal() * 100;
            const double sum = double(rng.normal());
            // Independent formula: ulp = 2^(⌊log2|v|⌋ − bits), result = trunc(v / ulp)·ulp.
            const double v = double(acc) + sum;
            const double ulp = std::ldexp(1.0, int(std::floor(std::log2(std::fabs(v)))) - bits);
            REQUIRE(double(eva::fp8_accumulate(acc, sum, bits)) == std::trunc(v / ulp) * ulp);
        }
}

TEST_CASE("fp8: promotion every 128 removes the limited accumulator's error (K = 4096)", "[fp8]") {
    // The DeepSeek-V3 report: a ~14-bit accumulator over K = 4096 costs up to ~2% relative error; promoting
    // the partial sum to fp32 every N_C = 128 elements fixes it. Both operands per-tensor E4M3 so that the
    // same FP8 inputs can be multiplied with and without promotion.
    const std::size_t M = 16, N = 16, K = 4096;
    const auto x = normal_matrix(M, K, 31), w = normal_matrix(N, K, 32);
    eva::Fp8QuantConfig qc;
    qc.granularity = eva::Fp8Granularity::Tensor;
    const eva::Fp8Matrix A = eva::quantize(x.data(), M, K, K, qc), B = eva::quantize(w.data(), N, K, K, qc);
    eva::Fp8GemmConfig never, every128, exact;
    never.promote_every = 0;  // accum_bits 14, fused width 4 (the defaults)
    exact.accum_bits = 0;
    const double e_never = gemm_relative_error(A, B, never), e_128 = gemm_relative_error(A, B, every128),
                 e_exact = gemm_relative_error(A, B, exact);
    WARN("relative error at K=4096, 14-bit accumulator: no promotion " << e_never << ", promotion every 128 "
                                                                       << e_128 << ", exact fp32 " << e_exact);
    // Model estimate: each of the n = K/4 accumulator updates truncates, shrinking the running sum by at
    // most δ = 2^-(bits+1)/ln 2 ≈ 4.4e-5 of itself on average (half an ulp over |s|, averaged over the
    // binade). For a random-walk sum s_t the accumulated deficit Σ_t δ·s_t has standard deviation
    // δ·σ·n^1.5/√3 against |s_n| ≈ σ·√n, i.e. a relative error ≈ δ·n/√3 ≈ 2.6% for n = 1024, and ≈ 0.08%
    // for the n = 32 updates of one 128-element interval. With FP8 inputs each product has only 8
    // significant bits, so an update loses nothing while the sum is within 2^(bits−8) of the addend: the
    // measured errors are a third of the estimate (0.78% and 0.012% for these seeds). Asserted: the order
    // of magnitude (within the estimate above, and no less than half the measured value), and that
    // promotion wins by at least 10×.
    CHECK(e_never > 0.004);
    CHECK(e_never < 0.03);
    CHECK(e_128 < 0.001);
    CHECK(e_128 * 10 < e_never);
    CHECK(e_exact < 1e-5);  // fp32: ≈ √(K/128)·u-level, far below both
}

TEST_CASE("fp8: the accumulation experiment (fp8_gemm_errors) against a plain double product", "[fp8]") {
    // The one implementation behind `eva fp8 gemm-error`, the FP8 panel's error-vs-K chart and the page's
    // selfTest. Checked here against this file's own loops: the operands are the documented Rng draws
    // quantized by `quantize`, the accumulation error equals gemm_relative_error above bit for bit (same
    // products, same summation order), the total error compares with the unquantized product, and the error
    // sums of row ranges add up to the whole product's (what the panel relies on, a slice per frame).
    const std::size_t M = 130, N = 9, K = 384;  // M > 128: two block rows for the block-scaled case
    for (const auto ga : {eva::Fp8Granularity::Tensor, eva::Fp8Granularity::Tile, eva::Fp8Granularity::Block}) {
        eva::Fp8QuantConfig qa, qb;
        qa.granularity = ga;
        qb.granularity = eva::Fp8Granularity::Block;
        const eva::Fp8GemmOperands ops = eva::fp8_gemm_operands(M, N, K, 5, 3, qa, qb);
        eva::Rng rng(5, 3);
        std::vector<float> x(M * K), w(N * K);
        rng.fill_normal(x.data(), x.size(), 0, 1);
        rng.fill_normal(w.data(), w.size(), 0, 1);
        REQUIRE(ops.x == x);
        REQUIRE(ops.w == w);
        const eva::Fp8Matrix A = eva::quantize(x.data(), M, K, K, qa);
        REQUIRE(ops.A.codes == A.codes);
        REQUIRE(ops.A.scales == A.scales);
        eva::Fp8GemmConfig cfg;
        cfg.promote_every = 128;
        const eva::Fp8GemmErrors all = eva::fp8_gemm_errors(ops, cfg);
        CHECK(all.accumulation.relative() == gemm_relative_error(ops.A, ops.B, cfg));
        // The total error against x·wᵀ, from this test's loop.
        std::vector<float> c(M * N);
        eva::fp8_gemm(ops.A, ops.B, c.data(), N, cfg);
        double num = 0, den = 0, max_err = 0, max_ref = 0;
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                double r = 0;
                for (std::size_t k = 0; k < K; ++k) r += double(x[i * K + k]) * double(w[j * K + k]);
                const double d = double(c[i * N + j]) - r;
                num += d * d, den += r * r;
                max_err = std::max(max_err, std::fabs(d)), max_ref = std::max(max_ref, std::fabs(r));
            }
        CHECK(all.total.relative() == Approx(std::sqrt(num / den)).epsilon(1e-12));  // same sums, same order
        CHECK(all.total.max_relative() == Approx(max_err / max_ref).epsilon(1e-12));
        CHECK(all.total.relative() > all.accumulation.relative());  // quantization adds error
        // Row ranges (block-aligned for a block-scaled A) add up to the whole.
        eva::Fp8GemmErrors parts = eva::fp8_gemm_errors(ops, cfg, 0, 128);
        parts.add(eva::fp8_gemm_errors(ops, cfg, 128, M));
        CHECK(parts.accumulation.sq_error == Approx(all.accumulation.sq_error).epsilon(1e-12));
        CHECK(parts.accumulation.sq_ref == Approx(all.accumulation.sq_ref).epsilon(1e-12));
        CHECK(parts.total.max_error == all.total.max_error);
        if (ga == eva::Fp8Granularity::Block)
            CHECK_THROWS_AS(eva::fp8_gemm_errors(ops, cfg, 1, 2), eva::ConfigError);
        else  // any single row
            CHECK(eva::fp8_gemm_errors(ops, cfg, 7, 8).accumulation.sq_ref > 0);
    }
    const eva::Fp8GemmOperands ops = eva::fp8_gemm_operands(4, 4, 128, 1, 0, {}, {});
    CHECK_THROWS_AS(eva::fp8_gemm_errors(ops, {}, 2, 2), eva::ShapeError);
    CHECK_THROWS_AS(eva::fp8_gemm_errors(ops, {}, 0, 5), eva::ShapeError);
    CHECK_THROWS_AS(eva::fp8_gemm_operands(0, 4, 128, 1, 0, {}, {}), eva::ShapeError);
}

TEST_CASE("fp8: the accumulation sweep over K, a row at a time, equals whole GEMMs against the double product", "[fp8]") {
    eva::Fp8AccumulationSweep sweep;
    sweep.m = 3, sweep.n = 4, sweep.count = 3, sweep.seed = 11, sweep.accum_bits = 10;
    int calls = 0;
    while (!sweep.finished()) sweep.step(1), ++calls;  // a budget below one row: one row per call
    CHECK(calls == 3 * 3);
    REQUIRE(sweep.never.size() == 3);
    REQUIRE(sweep.promoted.size() == 3);
    eva::Fp8QuantConfig tensor;
    tensor.granularity = eva::Fp8Granularity::Tensor;
    for (int i = 0; i < 3; ++i) {
        const eva::Fp8GemmOperands ops = eva::fp8_gemm_operands(3, 4, std::size_t(128) << i, 11, std::uint64_t(i), tensor, tensor);
        eva::Fp8GemmConfig never, promoted;
        never.promote_every = 0, never.accum_bits = promoted.accum_bits = 10;
        // The same sums in another order (per row, then added): agreement to double rounding.
        CHECK(sweep.never[std::size_t(i)] == Approx(gemm_relative_error(ops.A, ops.B, never)).epsilon(1e-9));
        CHECK(sweep.promoted[std::size_t(i)] == Approx(gemm_relative_error(ops.A, ops.B, promoted)).epsilon(1e-9));
    }
    // A budget of one K's products finishes K = 128 (3 rows of 4·128) in one call; restart forgets it.
    sweep.restart();
    sweep.step(3 * 4 * 128);
    CHECK(sweep.never.size() == 1);
    sweep.restart();
    CHECK(sweep.never.empty());
}

TEST_CASE("fp8: GEMM configuration errors", "[fp8]") {
    const auto x = normal_matrix(4, 256, 1), w = normal_matrix(4, 200, 2);
    const eva::Fp8Matrix A = eva::quantize_tiles(x.data(), 4, 256), B = eva::quantize_blocks(w.data(), 4, 200);
    std::vector<float> c(16);
    CHECK_THROWS_AS(eva::fp8_gemm(A, B, c.data(), 4), eva::ShapeError);  // K differs
    const eva::Fp8Matrix B2 = eva::quantize_blocks(x.data(), 4, 256);
    eva::Fp8GemmConfig cfg;
    cfg.promote_every = 0;
    CHECK_THROWS_AS(eva::fp8_gemm(A, B2, c.data(), 4, cfg), eva::ConfigError);  // scales vary along K
    cfg.promote_every = 100;
    CHECK_THROWS_AS(eva::fp8_gemm(A, B2, c.data(), 4, cfg), eva::ConfigError);  // 100 does not divide 128
    cfg.promote_every = 64;
    cfg.accum_bits = 24;
    CHECK_THROWS_AS(eva::fp8_gemm(A, B2, c.data(), 4, cfg), eva::ConfigError);
    CHECK_THROWS_AS(eva::parse_fp8_format("e3m4"), eva::ConfigError);
    CHECK_THROWS_AS(eva::parse_fp8_granularity("row"), eva::ConfigError);
}

TEST_CASE("fp8: eva fp8 gemm-error's experiment is the operands and errors built by hand", "[fp8]") {
    eva::Fp8GemmConfig cfg;
    cfg.accum_bits = 12;
    eva::Fp8QuantConfig tile, block, tensor;
    tile.granularity = eva::Fp8Granularity::Tile;
    block.granularity = eva::Fp8Granularity::Block;
    tensor.granularity = eva::Fp8Granularity::Tensor;
    const auto same = [](const eva::Fp8GemmError& a, const eva::Fp8GemmError& b) {
        return a.sq_error == b.sq_error && a.sq_ref == b.sq_ref && a.max_error == b.max_error && a.max_ref == b.max_ref;
    };
    const auto ds = eva::fp8_gemm_error_experiment(16, 8, 512, 5, "deepseek", Fp8Format::E4M3, cfg);
    const auto ds_ref = eva::fp8_gemm_errors(eva::fp8_gemm_operands(16, 8, 512, 5, 0, tile, block), cfg);
    CHECK(same(ds.accumulation, ds_ref.accumulation));
    CHECK(same(ds.total, ds_ref.total));
    tensor.format = eva::Fp8Format::E5M2;
    const auto t = eva::fp8_gemm_error_experiment(16, 8, 512, 5, "tensor", Fp8Format::E5M2, cfg);
    const auto t_ref = eva::fp8_gemm_errors(eva::fp8_gemm_operands(16, 8, 512, 5, 0, tensor, tensor), cfg);
    CHECK(same(t.total, t_ref.total));
    CHECK(t.total.relative() > ds.total.relative());  // E5M2 per tensor loses more than E4M3 per tile/block
    try {
        eva::fp8_gemm_error_experiment(16, 8, 512, 5, "tile", Fp8Format::E4M3, cfg, "--granularity");
        FAIL("no error");
    } catch (const eva::ConfigError& e) {
        CHECK(std::string(e.what()).find("--granularity: unknown value 'tile'") != std::string::npos);
    }
}
