// exp_each against std::exp, bit for bit: the batch kernel (exp_kernel.hpp) claims to be glibc's expf
// computed on SIMD lanes, so any difference in a single bit of a single value is a failure. Each x86
// level's kernel is checked where the CPU runs it (each is what exp_each picks on some CPU), and
// exp_each itself.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "eva/exp.hpp"
#include "../core/src/exp_kernel.hpp"

#if defined(EVA_SIMD_KERNELS_X86)
namespace eva::detail {
EVA_EXP_KERNEL_INSTANCE(extern, xsimd::avx512bw)
EVA_EXP_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>)
EVA_EXP_KERNEL_INSTANCE(extern, xsimd::sse2)
}  // namespace eva::detail
#endif

namespace {

using Exp = std::function<void(const float*, float*, std::size_t)>;

template <class Arch>
Exp kernel(Arch arch) {
    static const eva::detail::ExpfTable table;
    return [arch](const float* x, float* y, std::size_t n) { eva::detail::expf_kernel(arch, x, y, n, table.t); };
}

// exp_each and every kernel this CPU runs.
std::vector<std::pair<std::string, Exp>> candidates() {
    std::vector<std::pair<std::string, Exp>> c = {{"exp_each", [](const float* x, float* y, std::size_t n) { eva::exp_each(x, y, n); }}};
#if defined(EVA_SIMD_KERNELS_X86)
    c.emplace_back("sse2", kernel(xsimd::sse2{}));
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) c.emplace_back("avx2", kernel(xsimd::fma3<xsimd::avx2>{}));
    else WARN("this CPU has no AVX2+FMA: that kernel was not checked");
    if (__builtin_cpu_supports("avx512bw")) c.emplace_back("avx512bw", kernel(xsimd::avx512bw{}));
    else WARN("this CPU has no AVX-512BW: that kernel was not checked");
#endif
    return c;
}

float from_bits(std::uint32_t b) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
}

bool same(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)); }

// Each candidate over xs (in chunks of changing odd and even lengths, so every batch position and tail is
// exercised) against std::exp, once into another array and once in place (as the model calls it): adds
// the values that differ to bad[c] and records the first.
void compare(const std::vector<float>& xs, std::vector<std::size_t>& bad, std::vector<float>& first) {
    std::vector<float> ref(xs.size()), ys(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) ref[i] = std::exp(xs[i]);
    const auto c = candidates();
    bad.resize(c.size());
    first.resize(c.size());
    for (std::size_t k = 0; k < c.size(); ++k)
        for (const bool in_place : {false, true}) {
            if (in_place) ys = xs;
            const float* in = in_place ? ys.data() : xs.data();
            for (std::size_t i = 0, chunk = 1; i < xs.size(); i += chunk, chunk = chunk % 997 + 37)
                c[k].second(in + i, ys.data() + i, std::min(chunk, xs.size() - i));
            for (std::size_t i = 0; i < xs.size(); ++i)
                if (!same(ys[i], ref[i]) && bad[k]++ == 0) first[k] = xs[i];
        }
}

void require_none(const std::vector<std::size_t>& bad, const std::vector<float>& first) {
    const auto c = candidates();
    for (std::size_t k = 0; k < c.size(); ++k) {
        INFO(c[k].first << ": first differing input " << first[k]);
        CHECK(bad[k] == 0);
    }
}

}  // namespace

TEST_CASE("exp_each: std::exp's bits on every 61st float32 pattern and on glibc's special inputs", "[exp]") {
    // Stride 61 (prime) visits every binade and every residue of the low mantissa bits: 70 M values, of
    // which about 37 M fall in (−88, 88), where the batch path computes. A fast first check: a kernel
    // that rounds once too often differs from std::exp in a few inputs per hundred million, which only
    // the exhaustive case below is sure to find.
    std::vector<float> xs;
    for (std::uint64_t b = 0; b < (std::uint64_t(1) << 32); b += 61) xs.push_back(from_bits(std::uint32_t(b)));
    // The edges of glibc's cases: |x| at 88 (its batch bound), overflow past 0x1.62e42ep6, the
    // underflow thresholds near −103, zeros, infinities, NaN, subnormals, and the ends of the table.
    const float inf = std::numeric_limits<float>::infinity();
    for (float x : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 88.0f, -88.0f,
                    std::nextafter(88.0f, 0.0f), std::nextafter(-88.0f, 0.0f), 0x1.62e42ep6f, 0x1.62e430p6f,
                    -0x1.9fe368p6f, -0x1.9d1d9ep6f, -87.33f, 1e-45f, -1e-45f, 0x1p-126f, 0.5f, -0.5f, 1.0f})
        xs.push_back(x);
    std::vector<std::size_t> bad;
    std::vector<float> first;
    compare(xs, bad, first);
    require_none(bad, first);
}

TEST_CASE("exp_each: in place, and short arrays", "[exp]") {
    // Steps of 0.173 from −69 to 69, and every 47th value at or beyond ±88 or NaN (glibc's special
    // cases, which send their whole batch to std::exp): 47 is odd, so specials land in every batch position.
    std::vector<float> x;
    for (int i = -400; i <= 400; ++i)
        x.push_back((i + 400) % 47 == 0 ? std::array<float, 3>{89.5f, -95.0f, NAN}[std::size_t(i + 400) / 47 % 3]
                                        : float(i) * 0.173f);
    for (std::size_t n : {0, 1, 3, 7, 8, 9, 16, 17, 801}) {
        std::vector<float> y(x.begin(), x.begin() + std::ptrdiff_t(n));
        eva::exp_each(y.data(), y.data(), n);
        std::size_t bad = 0;
        for (std::size_t i = 0; i < n; ++i) bad += !same(y[i], std::exp(x[i]));
        INFO("n " << n);
        CHECK(bad == 0);
    }
    std::vector<double> d = {-1.5, 0.0, 2.25}, e(3);
    eva::exp_each(d.data(), e.data(), 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(e[i] == std::exp(d[i]));
}

// All 2^32 patterns: hidden from the default run, which the ASan and wasm builds also make; the
// release build's ctest runs it (CMakeLists.txt: exp_each_exhaustive, about a minute).
TEST_CASE("exp_each: exhaustive over all 2^32 float32 patterns", "[.exhaustive]") {
    std::vector<std::size_t> bad, total;
    std::vector<float> first, first_seen;
    std::vector<float> xs(std::size_t(1) << 24);
    for (std::uint64_t base = 0; base < (std::uint64_t(1) << 32); base += xs.size()) {
        for (std::size_t k = 0; k < xs.size(); ++k) xs[k] = from_bits(std::uint32_t(base + k));
        bad.assign(bad.size(), 0);
        compare(xs, bad, first);
        total.resize(bad.size());
        first_seen.resize(bad.size());
        for (std::size_t k = 0; k < bad.size(); ++k) {
            if (bad[k] && !total[k]) first_seen[k] = first[k];
            total[k] += bad[k];
        }
    }
    require_none(total, first_seen);
}
