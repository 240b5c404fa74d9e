// RoPE: the interleaved-pair layout, norm preservation, the relative-position property, the YaRN
// frequency table against its closed form for V3, and the backward (inverse rotation) against finite
// differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "eva/config.hpp"
#include "eva/rng.hpp"
#include "eva/rope.hpp"

namespace {

eva::ModelArgs small(bool yarn) {
    eva::ModelArgs a = eva::preset("mini");  // rope 16, theta 1e4, max_seq_len 256 <= 4096: no YaRN
    if (yarn) {
        a.original_seq_len = 64;
        a.rope_factor = 4;
        a.mscale = 0.707;
    }
    a.validate();
    return a;
}

std::vector<double> random_vec(std::size_t n, eva::Rng& rng) {
    std::vector<double> v(n);
    for (auto& x : v) x = rng.normal();
    return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

std::vector<double> rotated(const eva::RopeTable& t, std::vector<double> v, std::size_t pos) {
    eva::rope_apply(t, v.data(), 1, v.size(), 1, v.size(), 1, pos);
    return v;
}

}  // namespace

TEST_CASE("rope rotates interleaved adjacent pairs", "[rope]") {
    const auto t = eva::make_rope(small(false));
    REQUIRE(t.freqs.size() == 8);
    for (std::size_t i = 0; i < 8; ++i) REQUIRE(t.freqs[i] == Approx(std::pow(1e4, -2.0 * double(i) / 16)).epsilon(1e-15));
    REQUIRE(t.attention_scale == 1);
    // e_2 (first element of pair 1) at position p goes to (cos p·f1) e_2 + (sin p·f1) e_3; a rotate-half
    // layout would move it to element 2 + 8 instead.
    std::vector<double> e(16, 0.0);
    e[2] = 1;
    const auto y = rotated(t, e, 7);
    for (std::size_t j = 0; j < 16; ++j) {
        const double want = j == 2 ? std::cos(7 * t.freqs[1]) : j == 3 ? std::sin(7 * t.freqs[1]) : 0.0;
        REQUIRE(y[j] == Approx(want).margin(1e-15));
    }
}

TEST_CASE("rope preserves norms and depends only on the position difference", "[rope]") {
    for (bool yarn : {false, true}) {
        const auto t = eva::make_rope(small(yarn));
        eva::Rng rng(3);
        const auto q = random_vec(16, rng), k = random_vec(16, rng);
        for (std::size_t m : {0u, 1u, 17u, 200u, 255u}) {
            const auto qm = rotated(t, q, m);
            // Rotations are orthogonal: |R q| = |q| up to double rounding (1e-14 relative).
            REQUIRE(std::sqrt(dot(qm, qm)) == Approx(std::sqrt(dot(q, q))).epsilon(1e-14));
            for (std::size_t n : {0u, 5u, 100u}) {
                // <R(m) q, R(n) k> = <q, R(n − m) k>: compare with both shifted by s. Angles reach 255 rad,
                // whose cos/sin carry ~1e-14 absolute error; 1e-12 relative to |q||k| leaves margin.
                const double base = dot(qm, rotated(t, k, n));
                for (std::size_t s : {1u, 30u}) {
                    if (m + s > 255 || n + s > 255) continue;
                    const double shifted = dot(rotated(t, q, m + s), rotated(t, k, n + s));
                    REQUIRE(std::abs(shifted - base) <= 1e-12 * std::sqrt(dot(q, q) * dot(k, k)));
                }
            }
        }
    }
}

TEST_CASE("YaRN frequencies and mscale for V3 match the closed form", "[rope]") {
    const auto a = eva::preset("v3");  // max_seq_len 16384 > original 4096: YaRN on, factor 40, mscale 1
    REQUIRE(a.yarn());
    const auto t = eva::make_rope(a);
    // Correction dims, d = 64, base 1e4, L = 4096:
    //   corr(32) = 64·ln(4096/(64π)) / (2 ln 1e4) = 10.47… → low = 10
    //   corr(1)  = 64·ln(4096/(2π))  / (2 ln 1e4) = 22.51… → high = 23
    // so pairs 0..10 keep their frequency, 23..31 are divided by 40, and the ramp mixes in between.
    const double pi = 3.14159265358979323846;
    REQUIRE(std::floor(64 * std::log(4096 / (64 * pi)) / (2 * std::log(1e4))) == 10);
    REQUIRE(std::ceil(64 * std::log(4096 / (2 * pi)) / (2 * std::log(1e4))) == 23);
    for (std::size_t i = 0; i < 32; ++i) {
        const double f = std::pow(1e4, -2.0 * double(i) / 64);
        const double ramp = i <= 10 ? 0.0 : i >= 23 ? 1.0 : (double(i) - 10) / 13;
        REQUIRE(t.freqs[i] == Approx(f / 40 * ramp + f * (1 - ramp)).epsilon(1e-14));
    }
    // mscale² = (0.1·1·ln 40 + 1)² = 1.368888…² = 1.873855…
    REQUIRE(t.attention_scale == Approx(std::pow(0.1 * std::log(40.0) + 1, 2)).epsilon(1e-15));
    REQUIRE(t.attention_scale == Approx(1.873855).epsilon(1e-6));
    // V2-Lite uses mscale 0.707: (0.0707·ln 40 + 1)² = 1.59963…
    REQUIRE(eva::make_rope(eva::preset("v2-lite")).attention_scale == Approx(std::pow(0.0707 * std::log(40.0) + 1, 2)).epsilon(1e-15));
}

TEST_CASE("rope backward is the inverse rotation (finite differences)", "[rope]") {
    const auto t = eva::make_rope(small(true));
    eva::Rng rng(5);
    // Three rows of two 16-vectors with a 4-element gap (stride 20), positions 9, 10, 11.
    const std::size_t rows = 3, ld = 40;
    auto x = random_vec(rows * ld, rng), g = random_vec(rows * ld, rng);
    auto loss = [&](std::vector<double> v) {
        eva::rope_apply(t, v.data(), rows, ld, 2, 20, rows, 9);
        return dot(v, g);
    };
    auto dx = g;
    eva::rope_apply(t, dx.data(), rows, ld, 2, 20, rows, 9, true);
    // The map is linear, so central differences are exact up to rounding (ε·|L|/h ~ 1e-11).
    const double h = 1e-5;
    for (std::size_t i = 0; i < x.size(); ++i) {
        auto p = x, m = x;
        p[i] += h;
        m[i] -= h;
        const double want = (loss(p) - loss(m)) / (2 * h);  // gaps between vectors pass through: want = g
        REQUIRE(std::abs(dx[i] - want) <= 1e-6 * std::abs(want) + 1e-9);
    }
}

TEST_CASE("rope's angle table gives the bits of angles computed on the fly", "[rope]") {
    // make_rope tabulates cos and sin for the context's positions; positions past the table (and a table
    // left empty) compute them as they go. Both paths must agree exactly, forward and inverse, in float
    // (the model's type) and double, with and without YaRN.
    const bool yarn = GENERATE(false, true);
    const auto tabled = eva::make_rope(small(yarn));
    REQUIRE(tabled.cos_table.size() == 256 * 8);  // mini: max_seq_len 256 positions of 8 pairs
    eva::RopeTable plain = tabled;
    plain.cos_table.clear();
    plain.sin_table.clear();
    eva::Rng rng(3);
    const std::size_t rows = 300, ld = 40, n_vec = 2, stride = 16;  // rows 256…299 lie past the table
    for (const bool inverse : {false, true}) {
        std::vector<float> a(rows * ld), b;
        rng.fill_normal(a.data(), a.size(), 0, 1);
        b = a;
        eva::rope_apply(tabled, a.data(), rows, ld, n_vec, stride, rows, 0, inverse);
        eva::rope_apply(plain, b.data(), rows, ld, n_vec, stride, rows, 0, inverse);
        CHECK(a == b);
        std::vector<double> c = random_vec(rows * ld, rng), d = c;
        eva::rope_apply(tabled, c.data(), rows, ld, n_vec, stride, rows, 0, inverse);
        eva::rope_apply(plain, d.data(), rows, ld, n_vec, stride, rows, 0, inverse);
        CHECK(c == d);
    }
}

TEST_CASE("rope's angle table is bounded whatever the config says", "[rope]") {
    eva::ModelArgs a = small(false);
    a.max_seq_len = 1 << 30;  // a config may claim any context: the table stops at 2^16 angles
    const auto t = eva::make_rope(a);
    CHECK(t.cos_table.size() == (std::size_t(1) << 16));
    CHECK(t.sin_table.size() == t.cos_table.size());
}
