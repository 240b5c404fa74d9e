// Linear layers in fp32 and FP8: the FP8 products equal the fp32 products of the FP8-rounded operands
// (the emulation adds no error of its own), and FP8 training tracks fp32 training.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "eva/fp8.hpp"
#include "eva/linear.hpp"
#include "eva/rng.hpp"

namespace {

eva::Matrix<float> random(std::size_t r, std::size_t c, eva::Rng& rng, float scale = 1) {
    eva::Matrix<float> m = eva::Matrix<float>::from_shape({r, c});
    for (auto& v : m) v = scale * rng.normal();
    return m;
}

// x rounded through FP8 and back, as the recipe quantizes it.
eva::Matrix<float> fp8_rounded(const eva::Matrix<float>& x, bool weight) {
    const auto q = weight ? eva::quantize_blocks(x.data(), x.shape(0), x.shape(1))
                          : eva::quantize_tiles(x.data(), x.shape(0), x.shape(1));
    eva::Matrix<float> y = eva::Matrix<float>::from_shape(x.shape());
    eva::dequantize(q, y.data(), x.shape(1));
    return y;
}

double rel_frobenius(const eva::Matrix<float>& a, const eva::Matrix<float>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (double(a.data()[i]) - b.data()[i]) * (double(a.data()[i]) - b.data()[i]);
        den += double(b.data()[i]) * b.data()[i];
    }
    return std::sqrt(num / den);
}

// One Linear layer's forward and backward in `mode`: y = x·Wᵀ, and for the output gradient dy,
// dx = dy·W and dW = dyᵀ·x (accumulated from zero).
struct LayerPass {
    eva::Matrix<float> y, dx, dW;
};

LayerPass layer_pass(const eva::LinearMode& mode, const eva::Matrix<float>& x, const eva::Matrix<float>& dy,
                     const eva::Matrix<float>& W) {
    const std::size_t n = x.shape(0), out = W.shape(0), in = W.shape(1);
    LayerPass r{eva::Matrix<float>::from_shape({n, out}), eva::Matrix<float>::from_shape({n, in}),
                eva::Matrix<float>::from_shape({out, in})};
    r.dW.fill(0);
    eva::linear_forward(mode, x.data(), in, W, r.y.data(), out, n);
    eva::linear_backward(mode, dy.data(), out, x.data(), in, W, r.dW, r.dx.data(), in, n);
    return r;
}

// The two passes agree bit for bit in y, dx and dW.
void check_same_bits(const LayerPass& a, const LayerPass& b) {
    CHECK(std::equal(a.y.begin(), a.y.end(), b.y.begin()));
    CHECK(std::equal(a.dx.begin(), a.dx.end(), b.dx.begin()));
    CHECK(std::equal(a.dW.begin(), a.dW.end(), b.dW.begin()));
}

}  // namespace

TEST_CASE("FP8 forward = fp32 product of the FP8-rounded operands", "[linear]") {
    eva::Rng rng(4);
    const std::size_t n = 70, in = 300, out = 130;  // partial tiles and blocks on every side
    const auto x = random(n, in, rng), W = random(out, in, rng, 0.05f);
    eva::Matrix<float> y8 = eva::Matrix<float>::from_shape({n, out}), ref = y8, y32 = y8;
    eva::linear_forward(eva::LinearPrecision::fp8, x.data(), in, W, y8.data(), out, n);
    eva::linear_forward(eva::LinearPrecision::fp32, fp8_rounded(x, false).data(), in, fp8_rounded(W, true), ref.data(),
                        out, n);
    eva::linear_forward(eva::LinearPrecision::fp32, x.data(), in, W, y32.data(), out, n);
    // Same rounded operands, fp32 sums in another order (promotion every 128): ~1e-7 relative.
    CHECK(rel_frobenius(y8, ref) < 1e-5);
    // Against the unquantized product: E4M3 keeps 3 mantissa bits, relative rounding ≤ 2^-4 per
    // operand, averaging to a few percent over a dot product.
    const double err = rel_frobenius(y8, y32);
    CHECK(err > 1e-3);
    CHECK(err < 0.06);
}

TEST_CASE("FP8 backward tracks fp32; E5M2 loses more", "[linear]") {
    eva::Rng rng(5);
    const std::size_t n = 256, in = 256, out = 128;
    const auto x = random(n, in, rng);
    const auto W = random(out, in, rng, 0.05f), dy = random(n, out, rng, 0.01f);
    auto run = [&](eva::LinearPrecision p, eva::Matrix<float>& dW, eva::Matrix<float>& dx) {
        dW = eva::Matrix<float>::from_shape({out, in});
        dW.fill(0);
        dx = eva::Matrix<float>::from_shape({n, in});
        eva::linear_backward(p, dy.data(), out, x.data(), in, W, dW, dx.data(), in, n);
    };
    eva::Matrix<float> dW32, dx32, dW8, dx8, dW5, dx5;
    run(eva::LinearPrecision::fp32, dW32, dx32);
    run(eva::LinearPrecision::fp8, dW8, dx8);
    run(eva::LinearPrecision::fp8_e5m2, dW5, dx5);
    CHECK(rel_frobenius(dx8, dx32) < 0.06);
    CHECK(rel_frobenius(dW8, dW32) < 0.06);
    // dx = dy·W is the fp32 product of dy rounded in 1×128 tiles and of Wᵀ rounded in its own 128×128
    // blocks (DeepSeek-V3's operands for this product), although the layer rounds W, not Wᵀ: a block
    // of Wᵀ holds the values of a block of W. linear_forward(dy_r, Wᵀ_r) = dy_r·(Wᵀ_r)ᵀ. Same rounded
    // operands, fp32 sums in another order: ~1e-7 relative, as in the forward test.
    eva::Matrix<float> Wt = eva::Matrix<float>::from_shape({in, out}), dx_ref = dx8;
    for (std::size_t r = 0; r < out; ++r)
        for (std::size_t c = 0; c < in; ++c) Wt(c, r) = W(r, c);
    eva::linear_forward(eva::LinearPrecision::fp32, fp8_rounded(dy, false).data(), out, fp8_rounded(Wt, true),
                        dx_ref.data(), in, n);
    CHECK(rel_frobenius(dx8, dx_ref) < 1e-5);
    // E5M2 has one mantissa bit fewer: about twice the rounding error of E4M3.
    CHECK(rel_frobenius(dx5, dx32) > 1.5 * rel_frobenius(dx8, dx32));
    CHECK(rel_frobenius(dW5, dW32) > 1.5 * rel_frobenius(dW8, dW32));
}

TEST_CASE("fine-grained scaling isolates activation outliers; one scale per tensor does not", "[linear]") {
    eva::Rng rng(6);
    const std::size_t n = 64, in = 256, out = 64;
    auto x = random(n, in, rng);
    x(3, 7) = 1e5f;  // one outlier. E4M3's normal range spans 448 / 2^-6 ≈ 2.9e4: with a single scale
                     // set by it, values of size 1 fall into the subnormals, where few bits are left.
    const auto W = random(out, in, rng, 0.05f);
    auto median_row_error = [&](eva::LinearPrecision p) {
        eva::Matrix<float> y = eva::Matrix<float>::from_shape({n, out}), ref = y;
        eva::linear_forward(p, x.data(), in, W, y.data(), out, n);
        eva::linear_forward(eva::LinearPrecision::fp32, x.data(), in, W, ref.data(), out, n);
        std::vector<double> errors;
        for (std::size_t r = 0; r < n; ++r) {
            double num = 0, den = 0;
            for (std::size_t c = 0; c < out; ++c) {
                num += std::pow(double(y(r, c)) - ref(r, c), 2);
                den += std::pow(double(ref(r, c)), 2);
            }
            errors.push_back(std::sqrt(num / den));
        }
        std::sort(errors.begin(), errors.end());
        return errors[n / 2];
    };
    const double tile = median_row_error(eva::LinearPrecision::fp8), tensor = median_row_error(eva::LinearPrecision::fp8_tensor);
    INFO("median row error: tiles " << tile << ", one scale " << tensor);
    CHECK(tile < 0.06);  // only the outlier's own 1×128 tile is affected
    CHECK(tensor > 3 * tile);
}

TEST_CASE("FP8 Linear layers exist only in float32", "[linear]") {
    eva::Matrix<double> W = eva::Matrix<double>::from_shape({2, 2});
    std::vector<double> x(2), y(2);
    CHECK_THROWS_AS(eva::linear_forward(eva::LinearPrecision::fp8, x.data(), 2, W, y.data(), 2, 1), eva::ConfigError);
    CHECK(eva::parse_linear_precision("fp8-e5m2") == eva::LinearPrecision::fp8_e5m2);
    CHECK_THROWS_WITH(eva::parse_linear_precision("bf16"), Catch::Contains("fp8-tensor"));
}

TEST_CASE("WeightCache: a step's packed fp32 weights give the bits of the unpacked layer", "[linear]") {
    // The cache packs W once per step as op(B) of x·Wᵀ and of dy·W; the layer then multiplies by the
    // packed panels. Shapes: 130 columns (the narrow tile with a partial panel on AVX-512), 256 (the
    // wide tile), K over one KC block (400); rows for every path of the GEMM: 2 (rows streamed), 20 (dot
    // products / B in place), 77 (packed). Forward and backward, twice per step (the second from the
    // panels already made), against the layer without a cache, bit for bit; after next_step() the
    // panels follow the changed weights.
    eva::Rng rng(8);
    eva::WeightCache cache;
    for (const auto& [out, in] : {std::pair<std::size_t, std::size_t>{130, 400}, {256, 96}})
        for (std::size_t n : {std::size_t(2), std::size_t(20), std::size_t(77)}) {
            auto W = random(out, in, rng);
            const auto x = random(n, in, rng), dy = random(n, out, rng);
            const eva::LinearMode alone, cached(eva::LinearPrecision::fp32, &cache);
            for (int step = 0; step < 2; ++step) {
                const LayerPass reference = layer_pass(alone, x, dy, W);
                for (int use = 0; use < 2; ++use) {
                    INFO("out " << out << " in " << in << " n " << n << " step " << step << " use " << use);
                    check_same_bits(reference, layer_pass(cached, x, dy, W));
                }
                cache.next_step();
                for (auto& v : W) v *= -0.5f;
            }
        }
}

TEST_CASE("WeightCache: a step's FP8 weight images have the bits the layer computes without it", "[linear]") {
    eva::Rng rng(6);
    const std::size_t n = 40, in = 300, out = 200;  // partial 128x128 blocks on both sides
    auto W = random(out, in, rng, 0.05f);
    for (std::size_t c = 0; c < in; c += 37) W(130, c) = 40.0f;  // outliers in some blocks: their scales differ
    const auto x = random(n, in, rng), dy = random(n, out, rng);
    eva::WeightCache cache;
    for (auto p : {eva::LinearPrecision::fp8, eva::LinearPrecision::fp8_tensor, eva::LinearPrecision::fp8_e5m2}) {
        const eva::LinearMode alone(p), cached(p, &cache);
        for (int step = 0; step < 2; ++step) {
            // Forward and backward through the cache, twice (the second time from the images already
            // made), against the same calls quantizing the weight themselves: bit for bit.
            const LayerPass reference = layer_pass(alone, x, dy, W);
            for (int use = 0; use < 2; ++use) check_same_bits(reference, layer_pass(cached, x, dy, W));
            // After the optimizer's update the images follow the new weights: a stale one would give the
            // old product.
            cache.next_step();
            for (auto& v : W) v *= 1.5f;
        }
    }
}
