// Training pieces: cross-entropy against closed forms and finite differences, the learning-rate
// schedule at its defining points, clipping, and AdamW against the algorithm re-derived in double.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "eva/rng.hpp"
#include "eva/error.hpp"
#include "eva/train.hpp"
#include "../core/src/adamw_kernel.hpp"

#if defined(EVA_SIMD_KERNELS_X86)
namespace eva::detail {
EVA_ADAMW_KERNEL_INSTANCE(extern, xsimd::avx512bw)
EVA_ADAMW_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>)
EVA_ADAMW_KERNEL_INSTANCE(extern, xsimd::sse2)
}  // namespace eva::detail
#endif

TEST_CASE("cross-entropy equals its closed form", "[train]") {
    // Uniform logits: every class has probability 1/V, so the loss is ln V whatever the target.
    std::vector<double> z(2 * 7, 0.3);
    const eva::Token y[] = {0, 6};
    CHECK(eva::cross_entropy(z.data(), y, 2, 7) == Approx(std::log(7.0)).epsilon(1e-15));
    // logits (1, 2, 3), target 2: ln(e + e² + e³) − 3 = ln(1 + e⁻¹ + e⁻²).
    const double z2[] = {1, 2, 3};
    const eva::Token y2[] = {2};
    CHECK(eva::cross_entropy(z2, y2, 1, 3) == Approx(std::log(1 + std::exp(-1.0) + std::exp(-2.0))).epsilon(1e-15));
    // Huge logits must not overflow: shifting all logits leaves the loss unchanged.
    const float z3[] = {1001, 1002, 1003};
    CHECK(eva::cross_entropy(z3, y2, 1, 3) == Approx(0.40760596444).epsilon(1e-6));
    CHECK_THROWS_AS(eva::cross_entropy(z2, std::vector<eva::Token>{3}.data(), 1, 3), eva::ShapeError);
}

TEST_CASE("cross-entropy gradient matches central finite differences", "[train]") {
    const std::size_t N = 4, V = 9;
    eva::Rng rng(3);
    std::vector<double> z(N * V), d(N * V);
    for (auto& x : z) x = 2.0 * rng.normal();
    const eva::Token y[] = {0, 8, 3, 3};
    eva::cross_entropy(z.data(), y, N, V, d.data());
    // Central differences have truncation error O(h²·f''') ≈ 1e-10 at h = 1e-5 and rounding error
    // O(ε/h) ≈ 1e-11; 1e-8 absolute on gradients of size ~0.1 is a relative error near 1e-7.
    const double h = 1e-5;
    for (std::size_t i = 0; i < z.size(); ++i) {
        auto zp = z, zm = z;
        zp[i] += h;
        zm[i] -= h;
        const double fd = (eva::cross_entropy(zp.data(), y, N, V) - eva::cross_entropy(zm.data(), y, N, V)) / (2 * h);
        CHECK(d[i] == Approx(fd).margin(1e-8));
    }
}

TEST_CASE("learning-rate schedule: linear warmup, cosine decay, floor", "[train]") {
    const eva::ScheduleConfig s{1e-3, 10, 110, 0.1};
    CHECK(eva::learning_rate(s, 0) == Approx(1e-4));
    CHECK(eva::learning_rate(s, 9) == Approx(1e-3));
    CHECK(eva::learning_rate(s, 10) == Approx(1e-3));         // cos(0) = 1: the peak
    CHECK(eva::learning_rate(s, 60) == Approx(0.55e-3));      // halfway: (lr + min_lr) / 2
    CHECK(eva::learning_rate(s, 110) == Approx(1e-4));        // min_lr = 0.1 · lr
    CHECK(eva::learning_rate(s, 500) == Approx(1e-4));
}

TEST_CASE("gradient clipping rescales to the global norm", "[train]") {
    // The norm over all parameters, and the factor that brings it to the bound (AdamW::step applies it
    // as it reads each gradient: the test below holds that to scaling the gradients first, as here).
    std::vector<float> v1{0, 0}, g1{3, 0}, v2{0}, g2{4};
    const std::vector<eva::Param> ps{{"a", v1.data(), g1.data(), 2, true}, {"b", v2.data(), g2.data(), 1, false}};
    CHECK(eva::grad_norm(ps) == Approx(5.0));
    CHECK(eva::clip_scale(eva::grad_norm(ps), 10.0) == 1.0f);  // below the bound: untouched
    const float scale = eva::clip_scale(eva::grad_norm(ps), 1.0);
    CHECK(g1[0] * scale == Approx(0.6).epsilon(1e-5));
    CHECK(g2[0] * scale == Approx(0.8).epsilon(1e-5));
}

TEST_CASE("AdamW follows the decoupled-decay algorithm step by step", "[train]") {
    // Reference: the algorithm as published (Loshchilov & Hutter; PyTorch's AdamW documentation),
    // written out in double. eva runs in float, so agreement is to float rounding: after 10 steps the
    // parameters (of size ~1) agree to ~1e-6.
    const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
    eva::Rng rng(11);
    const std::size_t n = 50;
    std::vector<float> w(n), g(n), b(n), gb(n);
    for (auto& x : w) x = rng.normal();
    for (auto& x : b) x = rng.normal();
    std::vector<double> rw(w.begin(), w.end()), rb(b.begin(), b.end()), m1(2 * n, 0), m2(2 * n, 0);
    eva::AdamW opt(eva::AdamWConfig{b1, b2, eps, wd});
    const std::vector<eva::Param> ps{{"w", w.data(), g.data(), n, true}, {"b", b.data(), gb.data(), n, false}};
    for (int t = 1; t <= 10; ++t) {
        for (std::size_t i = 0; i < n; ++i) {
            g[i] = rng.normal();
            gb[i] = rng.normal();
        }
        opt.step(ps, lr);
        for (std::size_t i = 0; i < 2 * n; ++i) {
            const bool decay = i < n;
            double& p = decay ? rw[i] : rb[i - n];
            const double grad = decay ? g[i] : gb[i - n];
            if (decay) p -= lr * wd * p;
            m1[i] = b1 * m1[i] + (1 - b1) * grad;
            m2[i] = b2 * m2[i] + (1 - b2) * grad * grad;
            const double mhat = m1[i] / (1 - std::pow(b1, t)), vhat = m2[i] / (1 - std::pow(b2, t));
            p -= lr * mhat / (std::sqrt(vhat) + eps);
        }
    }
    CHECK(opt.steps() == 10);
    for (std::size_t i = 0; i < n; ++i) {
        CHECK(w[i] == Approx(rw[i]).margin(2e-6));
        CHECK(b[i] == Approx(rb[i]).margin(2e-6));
    }
}

namespace {

// Gradients and moments over many binades (1e-30 to 1e6, both signs, zeros), so that the square root,
// the division and ε all matter somewhere; n = 1000 + 13 leaves a tail after every batch width.
struct AdamWCase {
    std::vector<float> w, g, m, v;
    explicit AdamWCase(std::uint64_t seed) {
        eva::Rng rng(seed);
        for (std::size_t i = 0; i < 1013; ++i) {
            const float scale = std::pow(10.0f, float(rng.uniform() * 36 - 30));
            w.push_back(float(rng.normal()));
            g.push_back(i % 97 == 0 ? 0.0f : float(rng.normal()) * scale);
            m.push_back(float(rng.normal()) * scale);
            v.push_back(i % 89 == 0 ? 0.0f : float(rng.uniform()) * scale * scale);
        }
    }
    bool operator==(const AdamWCase& o) const {  // bit for bit (memcmp: also tells -0 from 0)
        auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
            return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
        };
        return same(w, o.w) && same(g, o.g) && same(m, o.m) && same(v, o.v);
    }
};

// The definition, one element at a time (compiled here, for the baseline ISA: no fused multiply-add).
void adamw_by_definition(const eva::detail::AdamWStep& s, AdamWCase& c) {
    for (std::size_t i = 0; i < c.w.size(); ++i) eva::detail::adamw_element(s, c.w[i], c.g[i], c.m[i], c.v[i]);
}

}  // namespace

TEST_CASE("AdamW's SIMD update equals its one-element definition bit for bit", "[train]") {
    // A clipping factor other than 1, so that the kernel's multiplication of each gradient is checked too.
    const eva::detail::AdamWStep s{0.9f, 0.95f, 3e-3f / 0.1f, float(1 / std::sqrt(0.05)), 1e-8f, 1 - 3e-4f, 0.37f};
    AdamWCase expected(5);
    adamw_by_definition(s, expected);
    AdamWCase expected_zeroed = expected;  // the same update, and every gradient zero afterwards
    std::fill(expected_zeroed.g.begin(), expected_zeroed.g.end(), 0.0f);
    auto check = [&](auto arch, const char* name) {
        INFO(name);
        for (const bool zero_g : {false, true}) {
            AdamWCase c(5);
            eva::detail::adamw_kernel(arch, s, c.w.data(), c.g.data(), c.m.data(), c.v.data(), c.w.size(), zero_g);
            CHECK(c == (zero_g ? expected_zeroed : expected));
        }
    };
#if defined(EVA_SIMD_KERNELS_X86)
    check(xsimd::sse2{}, "sse2");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) check(xsimd::fma3<xsimd::avx2>{}, "avx2");
    else WARN("this CPU has no AVX2+FMA: that kernel was not checked");
    if (__builtin_cpu_supports("avx512bw")) check(xsimd::avx512bw{}, "avx512bw");
    else WARN("this CPU has no AVX-512BW: that kernel was not checked");
#else
    check(xsimd::default_arch{}, "default");
#endif
    // And through AdamW::step, whose constants come from its config and step count: the first step
    // with lr 3e-3 has step size lr / (1 − β1) and 1 / √(1 − β2); decay applies to "w" only.
    AdamWCase c(5);
    AdamWCase by_def(5);
    eva::AdamW opt(eva::AdamWConfig{0.9, 0.95, 1e-8, 0.1});
    const std::size_t n = c.w.size();
    opt.first_moments() = {c.m};
    opt.second_moments() = {c.v};
    opt.step({{"w", c.w.data(), c.g.data(), n, true}}, 3e-3);
    const eva::detail::AdamWStep first{0.9f, 0.95f, float(3e-3 / (1 - 0.9)), float(1 / std::sqrt(1 - 0.95)), 1e-8f,
                                       float(1 - 3e-3 * 0.1)};
    adamw_by_definition(first, by_def);
    c.m = opt.first_moments()[0];
    c.v = opt.second_moments()[0];
    CHECK(c == by_def);
}

TEST_CASE("AdamW clipping as it reads the gradients equals clipping them first, bit for bit", "[train]") {
    // The trainer hands clip_scale(grad_norm) to AdamW::step instead of scaling the gradients in place
    // first: both multiply each gradient by the same float once, so the updates must agree to the bit,
    // clipped (bound 0.5) or not (bound 1e9).
    for (const double bound : {0.5, 1e9}) {
        INFO("bound " << bound);
        AdamWCase in_place(7), as_read(7);
        const std::size_t n = in_place.w.size();
        eva::AdamW a, b;
        const std::vector<eva::Param> pa{{"w", in_place.w.data(), in_place.g.data(), n, true}},
            pb{{"w", as_read.w.data(), as_read.g.data(), n, true}};
        const double norm = eva::grad_norm(pa);
        for (float& g : in_place.g) g *= eva::clip_scale(norm, bound);
        a.step(pa, 3e-3);
        CHECK(eva::grad_norm(pb) == norm);
        b.step(pb, 3e-3, false, eva::clip_scale(norm, bound));
        CHECK(as_read.w == in_place.w);
        CHECK(b.first_moments() == a.first_moments());
        CHECK(b.second_moments() == a.second_moments());
        CHECK((eva::clip_scale(norm, bound) == 1.0f) == (bound > norm));
    }
}
