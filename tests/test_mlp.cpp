// SwiGLU MLP: forward against the formula written as plain loops, every gradient against central finite
// differences in double.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "eva/mlp.hpp"
#include "eva/rng.hpp"

namespace {

std::vector<double> random_vector(std::size_t n, eva::Rng& rng) {
    std::vector<double> v(n);
    for (auto& x : v) x = rng.normal();
    return v;
}

double silu(double h) { return h / (1 + std::exp(-h)); }

// y = w2(silu(w1 x) ⊙ w3 x) evaluated directly from the definition, one token at a time.
std::vector<double> mlp_by_definition(const eva::Mlp<double>& m, const std::vector<double>& x, std::size_t n) {
    std::vector<double> y(n * m.dim, 0.0), a(m.inter_dim);
    for (std::size_t t = 0; t < n; ++t) {
        for (std::size_t f = 0; f < m.inter_dim; ++f) {
            double h1 = 0, h3 = 0;
            for (std::size_t d = 0; d < m.dim; ++d) {
                h1 += m.w1(f, d) * x[t * m.dim + d];
                h3 += m.w3(f, d) * x[t * m.dim + d];
            }
            a[f] = silu(h1) * h3;
        }
        for (std::size_t d = 0; d < m.dim; ++d)
            for (std::size_t f = 0; f < m.inter_dim; ++f) y[t * m.dim + d] += m.w2(d, f) * a[f];
    }
    return y;
}

}  // namespace

TEST_CASE("mlp forward matches the SwiGLU definition", "[mlp]") {
    eva::Rng rng(11);
    const std::size_t D = 9, F = 13, n = 7;
    auto m = eva::Mlp<double>::random(D, F, rng, 0.5f);
    auto x = random_vector(n * D, rng);
    std::vector<double> y(n * D);
    eva::MlpCache<double> cache;
    eva::mlp_forward(m, x.data(), n, y.data(), cache);
    const auto ref = mlp_by_definition(m, x, n);
    // Same math in double with a different summation order: ~F·u relative to O(1) values.
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(ref[i]).margin(1e-13));

    // accumulate = true adds onto what is there.
    std::vector<double> y2(n * D, 1.0);
    eva::mlp_forward(m, x.data(), n, y2.data(), cache, true);
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y2[i] == Approx(ref[i] + 1.0).margin(1e-13));
}

TEST_CASE("mlp gradients match central finite differences", "[mlp]") {
    eva::Rng rng(12);
    const std::size_t D = 5, F = 6, n = 4;
    auto m = eva::Mlp<double>::random(D, F, rng, 0.7f);
    auto x = random_vector(n * D, rng), dy = random_vector(n * D, rng);
    // Scalar loss L = Σ dy ⊙ y, so dL/dy = dy.
    auto loss = [&](const eva::Mlp<double>& mm, const std::vector<double>& xx) {
        std::vector<double> y(n * D);
        eva::MlpCache<double> c;
        eva::mlp_forward(mm, xx.data(), n, y.data(), c);
        double L = 0;
        for (std::size_t i = 0; i < y.size(); ++i) L += dy[i] * y[i];
        return L;
    };
    eva::MlpCache<double> cache;
    std::vector<double> y(n * D), dx(n * D);
    eva::mlp_forward(m, x.data(), n, y.data(), cache);
    auto g = eva::Mlp<double>::zeros(D, F);
    eva::mlp_backward(m, x.data(), n, cache, dy.data(), dx.data(), g);

    // Central differences have truncation error O(h²·f''') ≈ 1e-10 and rounding error O(u/h) ≈ 1e-10
    // at h = 1e-5 for O(1) values; 1e-7 leaves a wide margin while catching any wrong term.
    const double h = 1e-5, tol = 1e-7;
    for (auto [w, gw] : {std::pair{&m.w1, &g.w1}, {&m.w2, &g.w2}, {&m.w3, &g.w3}})
        for (std::size_t i = 0; i < w->size(); ++i) {
            const double keep = w->data()[i];
            w->data()[i] = keep + h;
            const double up = loss(m, x);
            w->data()[i] = keep - h;
            const double down = loss(m, x);
            w->data()[i] = keep;
            REQUIRE(gw->data()[i] == Approx((up - down) / (2 * h)).margin(tol));
        }
    for (std::size_t i = 0; i < x.size(); ++i) {
        auto xp = x, xm = x;
        xp[i] += h;
        xm[i] -= h;
        REQUIRE(dx[i] == Approx((loss(m, xp) - loss(m, xm)) / (2 * h)).margin(tol));
    }
}
