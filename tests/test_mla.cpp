// MLA: the batched forward against token-by-token decoding with both caches and against prefill +
// decode; the absorbed cache size; an independent plain-MHA computation from reconstructed per-head K/V;
// every gradient against central finite differences; a PyTorch cross-check; the V3 memory figures;
// and the errors (capacity, max_seq_len, GQA groups).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/config.hpp"
#include "eva/mla.hpp"
#include "eva/rng.hpp"
#include "eva/rope.hpp"

using eva::Matrix;
using eva::ModelArgs;

namespace {

// Small configs that keep every code path: q_lora_rank 0 or > 0, YaRN off or on (original_seq_len 16 <
// max_seq_len 64 puts the correction ramp inside the rotary dimensions).
ModelArgs tiny(std::int64_t q_lora_rank, bool yarn, std::int64_t dim = 32, std::int64_t heads = 4) {
    ModelArgs a = eva::preset("mini");
    a.dim = dim;
    a.n_heads = heads;
    a.q_lora_rank = q_lora_rank;
    a.kv_lora_rank = 16;
    a.qk_nope_head_dim = 8;
    a.qk_rope_head_dim = 8;
    a.v_head_dim = 6;
    a.max_seq_len = 64;
    if (yarn) {
        a.original_seq_len = 16;
        a.rope_factor = 4;
        a.mscale = 0.707;
    }
    a.validate();
    return a;
}

template <class T>
Matrix<T> random_matrix(std::size_t r, std::size_t c, eva::Rng& rng, double std = 1) {
    Matrix<T> m = Matrix<T>::from_shape({r, c});
    for (auto& v : m) v = T(std * rng.normal());
    return m;
}

// Weights large enough that attention is far from uniform, and norm weights away from 1 so their
// gradients are exercised.
template <class T>
eva::MLAWeights<T> random_weights(const ModelArgs& a, eva::Rng& rng) {
    auto w = eva::mla_init<T>(a, rng, 0.35);
    w.visit([&](const std::string& name, auto& t) {
        if (name == "q_norm" || name == "kv_norm")
            for (auto& v : t) v = T(1 + 0.3 * rng.normal());
    });
    return w;
}

template <class T>
Matrix<T> rows(const Matrix<T>& m, std::size_t start, std::size_t count) {
    Matrix<T> r = Matrix<T>::from_shape({count, m.shape(1)});
    std::copy(m.data() + start * m.shape(1), m.data() + (start + count) * m.shape(1), r.data());
    return r;
}

template <class T>
double max_abs(const Matrix<T>& m) {
    double r = 0;
    for (auto v : m) r = std::max(r, std::abs(double(v)));
    return r;
}

// max |out − full[rows start…]| over a decode output.
template <class T>
double max_diff(const Matrix<T>& out, const Matrix<T>& full, std::size_t start) {
    double r = 0;
    for (std::size_t i = 0; i < out.size(); ++i)
        r = std::max(r, std::abs(double(out.data()[i]) - double(full.data()[start * full.shape(1) + i])));
    return r;
}

// Feeds sequence b of x through a fresh cache in chunks of the given sizes (in order), returns the worst
// difference with the full forward's rows of that sequence.
template <class T, class Cache>
double decode_in_chunks(const ModelArgs& a, const eva::RopeTable& rope, const eva::MLAWeights<T>& w,
                        const Matrix<T>& x, const Matrix<T>& full, std::size_t b, std::size_t seq_len,
                        const std::vector<std::size_t>& chunks) {
    Cache cache(a, seq_len);
    double worst = 0;
    for (std::size_t pos = 0, k = 0; pos < seq_len; ++k) {
        const std::size_t n = std::min(chunks[k], seq_len - pos);
        const auto out = eva::mla_decode(a, rope, w, cache, rows(x, b * seq_len + pos, n));
        worst = std::max(worst, max_diff(out, full, b * seq_len + pos));
        pos += n;
    }
    REQUIRE(cache.length == seq_len);
    return worst;
}

template <class T>
void check_paths_agree(const ModelArgs& a, std::size_t seq_len, double tol, std::uint64_t seed) {
    eva::Rng rng(seed);
    const auto rope = eva::make_rope(a);
    const auto w = random_weights<T>(a, rng);
    const std::size_t batch = 2;
    const auto x = random_matrix<T>(batch * seq_len, std::size_t(a.dim), rng);
    const auto full = eva::mla_forward(a, rope, w, x, batch, seq_len);
    const double scale = max_abs(full);
    using Naive = eva::MLANaiveCache<T>;
    using Absorbed = eva::MLAAbsorbedCache<T>;
    // Chunk schedules (sizes of successive mla_decode calls): token by token; one prompt chunk of p then
    // single steps (p = 1, half, all but one); the whole sequence at once; mixed chunks starting
    // mid-sequence at positions 3, 4, 8, 9, 14, …
    auto then_steps = [&](std::size_t p) {
        std::vector<std::size_t> s = {p};
        s.resize(1 + seq_len - p, 1);
        return s;
    };
    const std::vector<std::vector<std::size_t>> schedules = {
        then_steps(1), then_steps(seq_len / 2), then_steps(seq_len - 1), {seq_len}, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}};
    for (std::size_t b = 0; b < batch; ++b)
        for (const auto& sched : schedules) {
            const double dn = decode_in_chunks<T, Naive>(a, rope, w, x, full, b, seq_len, sched);
            const double da = decode_in_chunks<T, Absorbed>(a, rope, w, x, full, b, seq_len, sched);
            INFO("q_lora_rank " << a.q_lora_rank << " yarn " << a.yarn() << " seq " << b << " first chunk "
                                << sched[0] << ": naive " << dn / scale << ", absorbed " << da / scale);
            REQUIRE(dn <= tol * scale);
            REQUIRE(da <= tol * scale);
        }
}

}  // namespace

TEST_CASE("MLA full forward == naive decode == absorbed decode == prefill + decode", "[mla]") {
    // float32: each output is a few chained dot products over O(1) values; rounding is ~1e-7 relative per
    // product and the paths sum in different orders (the absorbed one reassociates q·(W c) as (q W)·c).
    // A score s carries an absolute error ~|s|·ε, which the softmax passes on, so the difference grows with
    // the score magnitude: observed ≤ 4e-7 of the output scale on the tiny configs and ≤ 3e-6 on mini with
    // std-0.35 weights (fan-in 256: scores of order 100, a deliberately peaked softmax). The bound
    // 1e-5 holds. In double the same differences are ≤ 1.1e-15: 1e-12 is tight.
    for (std::int64_t qr : {0, 12})
        for (bool yarn : {false, true}) {
            const auto a = tiny(qr, yarn);
            check_paths_agree<float>(a, 19, 1e-5, 100 + std::uint64_t(qr) + yarn);
            check_paths_agree<double>(a, 19, 1e-12, 200 + std::uint64_t(qr) + yarn);
        }
    // eva's mini preset itself (dim 256, 4 heads, q_lora 128, kv_lora 64, nope 32 / rope 16 / v 32).
    check_paths_agree<float>(eva::preset("mini"), 12, 1e-5, 7);
}

TEST_CASE("MLA absorbed cache holds exactly (kv_lora_rank + rope) floats per token", "[mla]") {
    const auto a = tiny(12, false);
    const auto rope = eva::make_rope(a);
    eva::Rng rng(3);
    const auto w = random_weights<float>(a, rng);
    eva::MLAAbsorbedCache<float> ab(a, 10);
    eva::MLANaiveCache<float> nv(a, 10);
    for (std::size_t t = 1; t <= 10; ++t) {
        const auto x = random_matrix<float>(1, 32, rng);
        eva::mla_decode(a, rope, w, ab, x);
        eva::mla_decode(a, rope, w, nv, x);
        REQUIRE(ab.floats() == (16 + 8) * t);          // kv_lora_rank 16 + rope 8, all heads together
        REQUIRE(nv.floats() == 4 * (16 + 6) * t);      // H · ((nope + rope) + v)
    }
    // The buffers hold exactly the capacity: nothing per head.
    REQUIRE(ab.kv.size() + ab.pe.size() == (16 + 8) * 10);
}

TEST_CASE("MLA equals plain MHA over the reconstructed per-head K and V", "[mla]") {
    // An independent path in double with plain loops: build Q, per-head K = [k_nope_h, k_pe] and V_h from
    // the weights, RoPE from the closed-form angle p·theta^(−2i/d) (YaRN off), then textbook causal
    // softmax(Q Kᵀ/√d_qk) V and the output projection. Only rounding separates the two: 1e-12 of scale.
    for (std::int64_t qr : {0, 12}) {
        const auto a = tiny(qr, false);
        // T = 45 spans two of the forward's causal blocks of 32 rows (mla.cpp's for_causal_blocks).
        const std::size_t T = 45, D = 32, H = 4, nope = 8, rp = 8, qk = 16, v = 6, kvr = 16;
        eva::Rng rng(40 + std::uint64_t(qr));
        const auto w = random_weights<double>(a, rng);
        const auto x = random_matrix<double>(T, D, rng);
        const auto out = eva::mla_forward(a, eva::make_rope(a), w, x, 1, T);

        auto lin = [](const std::vector<double>& in, std::size_t n_in, const Matrix<double>& W) {
            const std::size_t n = in.size() / n_in, o = W.shape(0);
            std::vector<double> y(n * o, 0.0);
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t j = 0; j < o; ++j)
                    for (std::size_t k = 0; k < n_in; ++k) y[i * o + j] += in[i * n_in + k] * W(j, k);
            return y;
        };
        auto rms = [](std::vector<double> y, std::size_t off, std::size_t width, std::size_t stride,
                      const eva::Vector<double>& g) {
            std::vector<double> r;
            for (std::size_t i = 0; i * stride < y.size(); ++i) {
                double ss = 0;
                for (std::size_t j = 0; j < width; ++j) ss += y[i * stride + off + j] * y[i * stride + off + j];
                for (std::size_t j = 0; j < width; ++j)
                    r.push_back(y[i * stride + off + j] / std::sqrt(ss / double(width) + 1e-6) * g(j));
            }
            return r;
        };
        auto rot = [&](double* p, std::size_t pos) {
            for (std::size_t i = 0; i < rp / 2; ++i) {
                const double th = double(pos) * std::pow(10000.0, -2.0 * double(i) / double(rp));
                const double re = p[2 * i], im = p[2 * i + 1];
                p[2 * i] = re * std::cos(th) - im * std::sin(th);
                p[2 * i + 1] = re * std::sin(th) + im * std::cos(th);
            }
        };
        const std::vector<double> xv(x.begin(), x.end());
        auto q = qr == 0 ? lin(xv, D, w.wq) : lin(rms(lin(xv, D, w.wq_a), 0, 12, 12, w.q_norm), 12, w.wq_b);
        auto kva = lin(xv, D, w.wkv_a);
        const auto c = rms(kva, 0, kvr, kvr + rp, w.kv_norm);
        const auto kvb = lin(c, kvr, w.wkv_b);
        std::vector<double> K(T * H * qk), V(T * H * v), O(T * H * v, 0.0);
        for (std::size_t t = 0; t < T; ++t) {
            rot(&kva[t * (kvr + rp) + kvr], t);
            for (std::size_t h = 0; h < H; ++h) {
                rot(&q[(t * H + h) * qk + nope], t);
                for (std::size_t j = 0; j < nope; ++j) K[(t * H + h) * qk + j] = kvb[(t * H + h) * (nope + v) + j];
                for (std::size_t j = 0; j < rp; ++j) K[(t * H + h) * qk + nope + j] = kva[t * (kvr + rp) + kvr + j];
                for (std::size_t j = 0; j < v; ++j) V[(t * H + h) * v + j] = kvb[(t * H + h) * (nope + v) + nope + j];
            }
        }
        for (std::size_t h = 0; h < H; ++h)
            for (std::size_t s = 0; s < T; ++s) {
                std::vector<double> p(s + 1);
                double mx = -1e300, sum = 0;
                for (std::size_t t = 0; t <= s; ++t) {
                    double d = 0;
                    for (std::size_t j = 0; j < qk; ++j) d += q[(s * H + h) * qk + j] * K[(t * H + h) * qk + j];
                    p[t] = d / std::sqrt(double(qk));
                    mx = std::max(mx, p[t]);
                }
                for (auto& e : p) sum += (e = std::exp(e - mx));
                for (std::size_t t = 0; t <= s; ++t)
                    for (std::size_t j = 0; j < v; ++j) O[(s * H + h) * v + j] += p[t] / sum * V[(t * H + h) * v + j];
            }
        const auto ref = lin(O, H * v, w.wo);
        double err = 0, scale = 0;
        for (std::size_t i = 0; i < ref.size(); ++i) {
            err = std::max(err, std::abs(ref[i] - out.data()[i]));
            scale = std::max(scale, std::abs(ref[i]));
        }
        INFO("q_lora_rank " << qr << ": max |MLA − MHA| / scale = " << err / scale);
        REQUIRE(err <= 1e-12 * scale);
    }
}

namespace {

// Per tensor: ‖analytic − FD‖∞ ≤ 1e-6·‖FD‖∞, with central differences (h = 1e-5: truncation ~h²,
// rounding ~ε/h, both below 1e-9 of the gradient's scale here).
void check_gradients(const ModelArgs& a, std::uint64_t seed, std::size_t T = 5) {
    eva::Rng rng(seed);
    const auto rope = eva::make_rope(a);
    auto w = random_weights<double>(a, rng);
    const std::size_t B = 2;
    auto x = random_matrix<double>(B * T, std::size_t(a.dim), rng);
    const auto G = random_matrix<double>(B * T, std::size_t(a.dim), rng);
    auto loss = [&]() {
        const auto out = eva::mla_forward(a, rope, w, x, B, T);
        double l = 0;
        for (std::size_t i = 0; i < out.size(); ++i) l += out.data()[i] * G.data()[i];
        return l;
    };
    eva::MLAActivations<double> acts;
    eva::mla_forward(a, rope, w, x, B, T, &acts);
    auto grad = eva::mla_zeros<double>(a);
    const auto dx = eva::mla_backward(a, rope, w, acts, G, grad);

    auto check = [&](const std::string& name, double* p, const double* analytic, std::size_t n) {
        const double h = 1e-5;
        double err = 0, scale = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double keep = p[i];
            p[i] = keep + h;
            const double lp = loss();
            p[i] = keep - h;
            const double lm = loss();
            p[i] = keep;
            const double fd = (lp - lm) / (2 * h);
            err = std::max(err, std::abs(fd - analytic[i]));
            scale = std::max(scale, std::abs(fd));
        }
        INFO("q_lora_rank " << a.q_lora_rank << " yarn " << a.yarn() << " d" << name << ": rel err " << err / scale);
        REQUIRE(scale > 0);
        REQUIRE(err <= 1e-6 * scale);
    };
    std::vector<std::string> names;
    w.visit([&](const std::string& name, auto& t) {
        names.push_back(name);
        const double* g = nullptr;
        grad.visit([&](const std::string& gname, auto& gt) {
            if (gname == name) g = gt.data();
        });
        check(name, t.data(), g, t.size());
    });
    check("x", x.data(), dx.data(), x.size());
    REQUIRE(names.size() == (a.q_lora_rank ? 7u : 5u));
}

}  // namespace

TEST_CASE("MLA backward: every weight and the input match finite differences", "[mla]") {
    check_gradients(tiny(0, false, 12, 2), 61);
    check_gradients(tiny(6, false, 12, 2), 62);
    check_gradients(tiny(6, true, 12, 2), 63);
    // 37 tokens cross a causal block boundary (32): the backward's block-restricted products (mla.cpp)
    // are checked where a key's gradient gathers queries from two blocks.
    check_gradients(tiny(6, false, 12, 2), 64, 37);
}

TEST_CASE("MLA KV-cache memory for V3 matches hand-computed numbers", "[mla]") {
    const auto v3 = eva::preset("v3");
    const auto rows = eva::kv_cache_memory(v3, 4096, eva::CacheDType::bf16, 8);
    REQUIRE(rows.size() == 4);
    // MLA: kv_lora_rank + qk_rope_head_dim = 512 + 64 = 576 elements per token per layer, for all heads.
    REQUIRE(rows[0].name == "MLA");
    REQUIRE(rows[0].elements_per_token_layer == 576);
    REQUIRE(rows[0].bytes_per_token_layer == 1152);                 // bf16
    REQUIRE(rows[0].bytes_per_token == 1152 * 61);                  // 61 layers: 70,272 B per token
    REQUIRE(rows[0].bytes_sequence == std::int64_t(1152) * 61 * 4096);  // 288 MB for 4096 tokens
    // MHA with the same heads and head sizes caches per head a key of nope + rope = 192 and a value of
    // 128: 128·(192 + 128) = 40,960 elements per token per layer, 71.1× MLA.
    REQUIRE(rows[1].name == "MHA");
    REQUIRE(rows[1].elements_per_token_layer == 40960);
    REQUIRE(rows[1].ratio_to_mla == Approx(40960.0 / 576).epsilon(1e-15));
    REQUIRE(rows[1].ratio_to_mla == Approx(71.11).epsilon(1e-4));
    // (The DeepSeek-V2 paper's comparison uses 2·n_h·d_h = 2·128·128 = 32,768, i.e. 56.9× MLA.)
    // GQA with 8 groups: 8·320 = 2,560 (4.44×); MQA: 320 (0.56×: one head caches less than the latent).
    REQUIRE(rows[2].name == "GQA-8");
    REQUIRE(rows[2].elements_per_token_layer == 2560);
    REQUIRE(rows[3].name == "MQA");
    REQUIRE(rows[3].elements_per_token_layer == 320);
    // fp8 and fp32 scale the bytes, not the elements.
    REQUIRE(eva::kv_cache_memory(v3, 1, eva::CacheDType::fp8, 1)[0].bytes_per_token_layer == 576);
    REQUIRE(eva::kv_cache_memory(v3, 1, eva::CacheDType::fp32, 1)[1].bytes_per_token_layer == 163840);
    REQUIRE_THROWS_AS(eva::kv_cache_memory(v3, 1, eva::CacheDType::fp8, 3), eva::ConfigError);  // 3 ∤ 128
    REQUIRE_THROWS_AS(eva::parse_cache_dtype("fp16"), eva::ConfigError);
}

TEST_CASE("default_gqa_groups: the largest divisor of n_heads up to 8", "[mla]") {
    // Checked against a brute-force search over every candidate 1..8.
    for (std::int64_t h = 1; h <= 200; ++h) {
        eva::ModelArgs a = eva::preset("mini");
        a.n_heads = h;
        std::int64_t best = 1;
        for (std::int64_t g = 1; g <= 8; ++g)
            if (h % g == 0) best = g;
        REQUIRE(eva::default_gqa_groups(a) == best);
    }
    CHECK(eva::default_gqa_groups(eva::preset("v3")) == 8);       // 128 heads
    CHECK(eva::default_gqa_groups(eva::preset("v2-lite")) == 8);  // 16 heads
    eva::ModelArgs bad = eva::preset("mini");
    bad.n_heads = 0;
    CHECK_THROWS_AS(eva::default_gqa_groups(bad), eva::ConfigError);
}

TEST_CASE("the named cache models: DeepSeek's presets and Llama-3-8B's shape, hand-computed", "[mla]") {
    std::vector<std::string> keys;
    for (const auto& m : eva::kv_cache_models()) keys.push_back(m.key);
    CHECK(keys == std::vector<std::string>{"mini", "v2-lite", "v2", "v3", "llama3-8b"});
    // Llama-3-8B: 32 layers, 32 query heads, 8 K/V heads of key 128 + value 128, bf16 (2 bytes).
    const eva::KVCacheModel* llama = eva::find_kv_cache_model("llama3-8b");
    REQUIRE(llama);
    CHECK(!llama->mla);
    const auto rows = llama->memory(1, eva::CacheDType::bf16);  // no latent: no MLA row
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].name == "MHA");
    CHECK(rows[0].bytes_per_token == 32 * 256 * 2 * 32);  // 524288
    CHECK(rows[1].name == "GQA-8");
    CHECK(rows[1].bytes_per_token == 8 * 256 * 2 * 32);   // 131072
    CHECK(rows[2].name == "MQA");
    CHECK(rows[2].bytes_per_token == 256 * 2 * 32);       // 16384
    CHECK(rows[1].name == llama->own_scheme);
    // V3 keeps its MLA row first: 576 elements · 2 bytes · 61 layers.
    const eva::KVCacheModel* v3 = eva::find_kv_cache_model("v3");
    REQUIRE(v3);
    const auto v3_rows = v3->memory(4096, eva::CacheDType::bf16);
    REQUIRE(v3_rows.size() == 4);
    CHECK(v3_rows[0].name == "MLA");
    CHECK(v3_rows[0].bytes_per_token == 576 * 2 * 61);
    CHECK(v3->gqa_groups == 8);
    CHECK(eva::find_kv_cache_model("llama") == nullptr);
}

TEST_CASE("MLA decode: capacity growth is explicit and max_seq_len is a hard limit", "[mla]") {
    const auto a = tiny(0, false);  // max_seq_len 64
    const auto rope = eva::make_rope(a);
    eva::Rng rng(9);
    const auto w = random_weights<float>(a, rng);
    eva::MLAAbsorbedCache<float> c(a, 4);
    eva::mla_decode(a, rope, w, c, random_matrix<float>(4, 32, rng));
    REQUIRE_THROWS_AS(eva::mla_decode(a, rope, w, c, random_matrix<float>(1, 32, rng)), eva::ShapeError);
    REQUIRE(c.length == 4);  // a refused step leaves the cache as it was
    c.reserve(64);
    eva::mla_decode(a, rope, w, c, random_matrix<float>(60, 32, rng));
    REQUIRE_THROWS_AS(c.reserve(65), eva::ConfigError);
    REQUIRE_THROWS_AS(eva::mla_decode(a, rope, w, c, random_matrix<float>(1, 32, rng)), eva::ConfigError);
    REQUIRE_THROWS_AS(eva::MLANaiveCache<float>(a, 65), eva::ConfigError);
    REQUIRE_THROWS_AS(eva::mla_decode(a, rope, w, c, random_matrix<float>(1, 31, rng)), eva::ShapeError);
}

#ifndef __EMSCRIPTEN__
namespace {

void write_f64(const std::string& path, const double* p, std::size_t n) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(p), std::streamsize(n * sizeof(double)));  // little-endian x86
}

std::vector<double> read_f64(const std::string& path, std::size_t n) {
    std::vector<double> v(n);
    std::ifstream f(path, std::ios::binary);
    f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(double)));
    REQUIRE(f.gcount() == std::streamsize(n * sizeof(double)));
    return v;
}

double rel_diff(const std::vector<double>& ref, const double* got) {
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        err = std::max(err, std::abs(ref[i] - got[i]));
        scale = std::max(scale, std::abs(ref[i]));
    }
    return err / scale;
}

}  // namespace

TEST_CASE("MLA forward and gradients match an independent PyTorch implementation", "[mla][torch]") {
    if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        WARN("SKIPPED: /usr/bin/python3 cannot import torch (install Debian's python3-torch)");
        return;
    }
    const std::string here = __FILE__, script = here.substr(0, here.find_last_of('/')) + "/torch_mla.py";
    // Two configs cover both query paths and both RoPE variants (each run pays torch's ~1.4 s import).
    for (auto [qr, yarn] : {std::pair<std::int64_t, bool>{0, false}, {12, true}}) {
        {  // one cross-check per config
            const auto a = tiny(qr, yarn);
            const auto rope = eva::make_rope(a);
            eva::Rng rng(500 + std::uint64_t(qr) + yarn);
            const auto w = random_weights<double>(a, rng);
            const std::size_t B = 2, T = 7;
            const auto x = random_matrix<double>(B * T, 32, rng);
            const auto G = random_matrix<double>(B * T, 32, rng);
            eva::MLAActivations<double> acts;
            const auto out = eva::mla_forward(a, rope, w, x, B, T, &acts);
            auto grad = eva::mla_zeros<double>(a);
            const auto dx = eva::mla_backward(a, rope, w, acts, G, grad);

            char tmpl[] = "/tmp/eva_torch_mla_XXXXXX";
            REQUIRE(mkdtemp(tmpl) != nullptr);
            const std::string dir = tmpl;
            nlohmann::json header = {{"config", eva::to_json(a)}, {"batch", B}, {"seq_len", T}, {"tensors", {}}};
            auto put = [&](const std::string& name, const auto& t) {
                write_f64(dir + "/" + name + ".bin", t.data(), t.size());
                header["tensors"][name] = t.shape();
            };
            w.visit(put);
            put("x", x);
            put("dout", G);
            std::ofstream(dir + "/header.json") << header.dump();
            const int rc = std::system(("/usr/bin/python3 " + script + " " + dir).c_str());
            REQUIRE(rc == 0);
            // Both sides compute in float64 with different summation orders and torch's own cos/sin and
            // softmax: agreement to ~1e-14; 1e-10 leaves room and still catches any semantic difference
            // (a wrong pair layout, scale or mask changes outputs at the 1e-1 level).
            INFO("q_lora_rank " << qr << " yarn " << yarn);
            CHECK(rel_diff(read_f64(dir + "/out.torch.bin", out.size()), out.data()) <= 1e-10);
            CHECK(rel_diff(read_f64(dir + "/x.grad.bin", dx.size()), dx.data()) <= 1e-10);
            grad.visit([&](const std::string& name, const auto& g) {
                INFO("d" << name);
                CHECK(rel_diff(read_f64(dir + "/" + name + ".grad.bin", g.size()), g.data()) <= 1e-10);
            });
            std::system(("rm -rf " + dir).c_str());
        }
    }
}
#endif
