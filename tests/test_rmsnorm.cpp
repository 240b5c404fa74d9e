// RMSNorm: forward against the closed form, backward against central finite differences in double.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "eva/rmsnorm.hpp"
#include "eva/rng.hpp"

TEST_CASE("rmsnorm forward matches the closed form", "[rmsnorm]") {
    // x = (3, 4): mean(x²) = 12.5, so y = x·w / sqrt(12.5 + 1e-6). Double rounding only: 1e-15.
    const double x[2] = {3, 4}, w[2] = {0.5, -2};
    double y[2], rstd;
    eva::rmsnorm_forward(x, 2, w, y, 2, &rstd, 1, 2);
    const double r = 1 / std::sqrt(12.5 + 1e-6);
    REQUIRE(rstd == Approx(r).epsilon(1e-15));
    REQUIRE(y[0] == Approx(1.5 * r).epsilon(1e-15));
    REQUIRE(y[1] == Approx(-8 * r).epsilon(1e-15));
    // A row inside a wider buffer (leading dimension 3): the third column is neither read nor written.
    float xf[6] = {3, 4, 99, 0, 1e-3f, 99}, wf[2] = {1, 1}, yf[6] = {0, 0, 7, 0, 0, 7};
    eva::rmsnorm_forward(xf, 3, wf, yf, 3, static_cast<float*>(nullptr), 2, 2);
    REQUIRE(yf[2] == 7);
    REQUIRE(yf[5] == 7);
    // Row (0, 1e-3): mean(x²) = 5e-7 is comparable to eps, which must be inside the square root.
    REQUIRE(yf[4] == Approx(1e-3 / std::sqrt(5e-7 + 1e-6)).epsilon(1e-6));
}

TEST_CASE("rmsnorm backward matches central finite differences", "[rmsnorm]") {
    const std::size_t rows = 3, dim = 7;
    eva::Rng rng(11);
    std::vector<double> x(rows * dim), w(dim), g(rows * dim);
    for (auto& v : x) v = rng.normal();
    for (auto& v : w) v = 1 + 0.3 * rng.normal();
    for (auto& v : g) v = rng.normal();
    auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww) {
        std::vector<double> y(rows * dim), r(rows);
        eva::rmsnorm_forward(xx.data(), dim, ww.data(), y.data(), dim, r.data(), rows, dim);
        double l = 0;
        for (std::size_t i = 0; i < y.size(); ++i) l += y[i] * g[i];
        return l;
    };
    std::vector<double> y(rows * dim), r(rows), dx(rows * dim), dw(dim, 0.0);
    eva::rmsnorm_forward(x.data(), dim, w.data(), y.data(), dim, r.data(), rows, dim);
    eva::rmsnorm_backward(g.data(), dim, x.data(), dim, w.data(), r.data(), dx.data(), dim, dw.data(), rows, dim);
    // Central differences with h = 1e-5: truncation O(h²·f''') ~ 1e-10 and rounding O(ε/h) ~ 1e-11,
    // far below the 1e-6 relative bound.
    const double h = 1e-5;
    auto fd = [&](std::vector<double>& p, std::size_t i, bool is_x) {
        const double keep = p[i];
        p[i] = keep + h;
        const double lp = is_x ? loss(p, w) : loss(x, p);
        p[i] = keep - h;
        const double lm = is_x ? loss(p, w) : loss(x, p);
        p[i] = keep;
        return (lp - lm) / (2 * h);
    };
    for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(std::abs(dx[i] - fd(x, i, true)) <= 1e-6 * std::abs(dx[i]) + 1e-9);
    for (std::size_t i = 0; i < w.size(); ++i) REQUIRE(std::abs(dw[i] - fd(w, i, false)) <= 1e-6 * std::abs(dw[i]) + 1e-9);
}
