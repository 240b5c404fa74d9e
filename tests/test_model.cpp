// The assembled model: parameter counts against the published ones, the whole model's gradient
// against central finite differences in double, and cached generation against the full forward.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "eva/error.hpp"
#include "eva/model.hpp"

namespace {

// A tiny model with every structural feature: q compression, YaRN, one dense and two MoE layers with
// sigmoid group-limited routing, a shared expert, and the sequence-wise balance loss.
eva::ModelArgs tiny_args() {
    return eva::model_args_from_json({{"vocab_size", 11}, {"dim", 8}, {"inter_dim", 6}, {"moe_inter_dim", 4},
                                      {"n_layers", 3}, {"n_dense_layers", 1}, {"n_heads", 2},
                                      {"n_routed_experts", 4}, {"n_shared_experts", 1}, {"n_activated_experts", 2},
                                      {"n_expert_groups", 2}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
                                      {"route_scale", 1.5}, {"q_lora_rank", 4}, {"kv_lora_rank", 4},
                                      {"qk_nope_head_dim", 2}, {"qk_rope_head_dim", 2}, {"v_head_dim", 3},
                                      {"max_seq_len", 16}, {"original_seq_len", 4}, {"rope_factor", 4.0},
                                      {"mscale", 0.7}});
}

std::vector<eva::Token> random_tokens(std::size_t n, int vocab, eva::Rng& rng) {
    std::vector<eva::Token> t(n);
    for (auto& x : t) x = eva::Token(rng.next_u32() % std::uint32_t(vocab));
    return t;
}

}  // namespace

TEST_CASE("parameter counts match DeepSeek-V3's published 671B total / 37B activated", "[model]") {
    // Technical report, Table 1 / §1: 671B total parameters, 37B activated per token (main model,
    // without the 14B MTP module). Computed here from the official config's shapes.
    CHECK(eva::parameter_count(eva::preset("v3")) == 671'026'404'352ull);
    CHECK(eva::parameter_count(eva::preset("v3"), true) == 37'552'282'624ull);
    // The closed form agrees with the tensors a model actually allocates (bias excluded: not a parameter).
    eva::Rng rng(1);
    const auto args = eva::preset("mini");
    auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
    std::size_t n = 0;
    for (const auto& t : eva::named_tensors(m.w)) n += t.trainable ? t.size() : 0;
    CHECK(n == eva::parameter_count(args));
}

TEST_CASE("whole-model gradients match central finite differences (double)", "[model]") {
    const auto args = tiny_args();
    eva::Rng rng(7);
    auto m = eva::model_init<double>(args, eva::moe_config(args, eva::Balance::seq_loss, 0.001, 0.05), rng, 0.5);
    const std::size_t B = 2, T = 5;
    const auto inputs = random_tokens(B * T, 11, rng), targets = random_tokens(B * T, 11, rng);
    auto grad = eva::model_zeros(m);
    const eva::Loss loss = eva::model_loss_and_grad(m, inputs, targets, B, T, grad);
    REQUIRE(loss.balance > 0);  // the sequence-wise balance loss is part of what is differentiated

    // Routing is piecewise: a perturbation that changes an expert choice has no derivative. Such
    // coordinates (rare at h = 1e-5) are detected by comparing the chosen experts and skipped.
    auto routing_of = [&](const eva::Model<double>& mm) {
        eva::ModelActivations<double> a;
        eva::model_forward(mm, inputs, B, T, &a);
        std::vector<std::int32_t> idx;
        for (const auto& L : a.layers) idx.insert(idx.end(), L.moe.routing.indices.begin(), L.moe.routing.indices.end());
        return idx;
    };
    const auto routing0 = routing_of(m);
    auto params = eva::named_tensors(m.w);
    auto grads = eva::named_tensors(grad);
    const double h = 1e-5;
    std::size_t checked = 0, skipped = 0;
    for (std::size_t p = 0; p < params.size(); ++p) {
        if (!params[p].trainable) continue;
        // Central differences: truncation O(h²) ≈ 1e-10 relative, rounding ≈ 1e-16/h ≈ 1e-11.
        for (std::size_t i = 0; i < params[p].size(); i += 1 + params[p].size() / 12) {
            double& v = params[p].data[i];
            const double v0 = v;
            v = v0 + h;
            const double lp = eva::model_loss(m, inputs, targets, B, T).total();
            const bool same_p = routing_of(m) == routing0;
            v = v0 - h;
            const double lm = eva::model_loss(m, inputs, targets, B, T).total();
            const bool same_m = routing_of(m) == routing0;
            v = v0;
            if (!same_p || !same_m) {
                ++skipped;
                continue;
            }
            const double fd = (lp - lm) / (2 * h), an = grads[p].data[i];
            INFO(params[p].name << "[" << i << "]: analytic " << an << ", finite difference " << fd);
            CHECK(std::abs(an - fd) <= 1e-6 * (std::abs(an) + std::abs(fd)) + 1e-9);
            ++checked;
        }
    }
    CHECK(checked > 200);
    CHECK(skipped * 20 < checked);
}

TEST_CASE("cached generation equals the full forward, absorbed and naive", "[model]") {
    const auto args = tiny_args();
    eva::Rng rng(3);
    auto m = eva::model_init<float>(args, eva::moe_config(args, eva::Balance::aux_free), rng, 0.5);
    const auto tokens = random_tokens(12, 11, rng);
    for (auto kind : {eva::AttentionCache::absorbed, eva::AttentionCache::naive}) {
        eva::Generator<float> gen(m, kind, 16);
        auto logits = gen.feed({tokens.begin(), tokens.begin() + 4});  // a prompt chunk, then single steps
        for (std::size_t t = 4; t <= tokens.size(); ++t) {
            const std::vector<eva::Token> prefix(tokens.begin(), tokens.begin() + t);
            const auto full = eva::model_forward(m, prefix, 1, t);
            double err = 0, scale = 0;
            for (std::size_t v = 0; v < 11; ++v) {
                err = std::max(err, double(std::abs(logits[v] - full(t - 1, v))));
                scale = std::max(scale, double(std::abs(full(t - 1, v))));
            }
            // Same float math in a different order (cache vs batched): rounding-level differences only.
            CHECK(err <= 1e-5 * scale + 1e-6);
            if (t < tokens.size()) logits = gen.feed({tokens[t]});
        }
        CHECK(gen.length() == tokens.size());
    }
}

TEST_CASE("sampling: greedy, top-k and top-p keep only the allowed tokens", "[model]") {
    const std::vector<float> logits{1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
    eva::Rng rng(1);
    CHECK(eva::sample_token(logits, {0.0, 0, 1.0}, rng) == 1);  // greedy: the first of the tied maxima
    for (int i = 0; i < 200; ++i) {
        const auto t = eva::sample_token(logits, {1.0, 2, 1.0}, rng);
        CHECK((t == 1 || t == 3));
    }
    // top-p 0.5: p(1) = p(3) ≈ 0.38 each, so the nucleus is {1, 3}.
    for (int i = 0; i < 200; ++i) {
        const auto t = eva::sample_token(logits, {1.0, 0, 0.5}, rng);
        CHECK((t == 1 || t == 3));
    }
    CHECK_THROWS_AS(eva::sample_token(logits, {1.0, 0, 0.0}, rng), eva::ConfigError);
}

TEST_CASE("Generator's views: newest token's attention and the latent cache equal the full forward's", "[model]") {
    // The full causal forward keeps, per layer, the softmax probabilities [B, H, T, T] and c_KV = kv_norm(kv)
    // [T, kv_lora_rank]. Token-by-token decoding must reproduce the last row of each head's probabilities
    // (the newest token's weights over positions 0…t−1) and every cached c_KV row. Tolerance: the same float
    // math in another order, as in the test above (1e-5 absolute on probabilities ≤ 1 and on c_KV rows of
    // RMS-normalised values with gains 1, so entries are O(1)).
    const auto args = tiny_args();
    const std::size_t H = 2, R = 4;  // n_heads, kv_lora_rank of tiny_args()
    eva::Rng rng(5);
    auto m = eva::model_init<float>(args, eva::moe_config(args, eva::Balance::aux_free), rng, 0.5);
    const auto tokens = random_tokens(9, 11, rng);
    eva::ModelActivations<float> acts;
    eva::model_forward(m, tokens, 1, tokens.size(), &acts);
    const std::size_t T = tokens.size();
    for (auto kind : {eva::AttentionCache::absorbed, eva::AttentionCache::naive}) {
        eva::Generator<float> gen(m, kind, 16);
        for (std::size_t t = 0; t < T; ++t) {
            gen.feed({tokens[t]});
            for (std::size_t l = 0; l < 3; ++l) {
                const auto& p = gen.attention(l);
                REQUIRE(p.size() == H * (t + 1));
                const auto& full = acts.layers[l].mla.probs;  // [1, H, T, T]
                for (std::size_t h = 0; h < H; ++h) {
                    double sum = 0;
                    for (std::size_t s = 0; s <= t; ++s) {
                        sum += p[h * (t + 1) + s];
                        REQUIRE(std::abs(p[h * (t + 1) + s] - full[(h * T + t) * T + s]) <= 1e-5);
                    }
                    REQUIRE(sum == Approx(1).epsilon(1e-5));
                }
            }
        }
        if (kind == eva::AttentionCache::naive) {
            REQUIRE_THROWS_AS(gen.absorbed_cache(0), eva::ConfigError);
            continue;
        }
        for (std::size_t l = 0; l < 3; ++l) {
            const auto& c = gen.absorbed_cache(l);
            REQUIRE(c.length == T);
            for (std::size_t i = 0; i < T * R; ++i)
                REQUIRE(std::abs(c.kv[i] - acts.layers[l].mla.kv_n.data()[i]) <= 1e-5);
            // The windows over positions first..T−1 are those views cut (and the latent transposed), exactly.
            const std::size_t first = 3, n = T - first;
            const auto att = gen.attention_window(l, first), lat = gen.latent_window(l, first);
            REQUIRE(att.size() == H * n);
            REQUIRE(lat.size() == R * n);
            for (std::size_t t = 0; t < n; ++t) {
                for (std::size_t h = 0; h < H; ++h) CHECK(att[h * n + t] == gen.attention(l)[h * T + first + t]);
                for (std::size_t j = 0; j < R; ++j) CHECK(lat[j * n + t] == c.kv[(first + t) * R + j]);
            }
            CHECK(gen.attention_window(l, T).empty());
            CHECK_THROWS_AS(gen.latent_window(l, T + 1), eva::ShapeError);
        }
    }
}

TEST_CASE("CacheLockstep: both caches fed token by token, compared, and sampled from the absorbed logits", "[model]") {
    // The reference: two independent Generators fed the same tokens, the sampled ones drawn from the
    // absorbed logits with the same Rng stream. The lockstep must give the same tokens and bit-identical
    // logits (the same calls in the same order), and its differences and scale are maxima over them.
    const auto args = tiny_args();
    eva::Rng rng(7);
    auto m = eva::model_init<float>(args, eva::moe_config(args, eva::Balance::aux_free), rng, 0.5);
    const auto prompt = random_tokens(4, 11, rng);
    const eva::SamplingConfig sampling{0.8, 0, 1.0};
    const std::size_t cap = 10;
    eva::CacheLockstep run(m, prompt, cap, 9);
    std::size_t halves = 0;
    while (run.step(sampling)) {
        ++halves;
        CHECK(run.naive_behind() == (halves % 2 == 1));
    }
    CHECK(halves == 2 * cap);
    CHECK(run.finished());
    CHECK(run.prompt_len == 4);
    REQUIRE(run.tokens.size() == cap);
    CHECK(std::equal(prompt.begin(), prompt.end(), run.tokens.begin()));

    eva::Generator<float> absorbed(m, eva::AttentionCache::absorbed, cap), naive(m, eva::AttentionCache::naive, cap);
    eva::Rng draw(9);
    std::vector<eva::Token> tokens = prompt;
    std::vector<float> la, ln;
    double max_diff = 0, scale = 0;
    for (std::size_t t = 0; t < cap; ++t) {
        if (t == tokens.size()) tokens.push_back(eva::sample_token(la, sampling, draw));
        la = absorbed.feed({tokens[t]});
        ln = naive.feed({tokens[t]});
        for (std::size_t v = 0; v < la.size(); ++v) {
            max_diff = std::max(max_diff, double(std::abs(la[v] - ln[v])));
            scale = std::max(scale, double(std::abs(la[v])));
        }
    }
    CHECK(run.tokens == tokens);
    CHECK(run.logits_absorbed == la);
    CHECK(run.logits_naive == ln);
    CHECK(run.max_diff == max_diff);
    CHECK(run.logit_scale == scale);
    CHECK(run.max_diff <= 1e-5 * scale);  // rounding only, as in "cached generation equals the full forward"
    CHECK(run.ms_absorbed > 0);

    // A prompt longer than the cache is cut so that one token can still be sampled.
    eva::CacheLockstep cut(m, random_tokens(15, 11, rng), cap, 1);
    CHECK(cut.prompt_len == cap - 1);
}
