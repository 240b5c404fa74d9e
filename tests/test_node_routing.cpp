// Node-limited routing (DeepSeek-V3 §2.1.2) against the group-limited routing it generalizes, and
// against a direct reading of the report's rule on random scores.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "eva/error.hpp"
#include "eva/moe.hpp"
#include "eva/rng.hpp"

namespace {

eva::MoeConfig config(std::size_t E, std::size_t K, std::size_t groups, std::size_t limited) {
    eva::MoeConfig c;
    c.dim = 8;
    c.n_routed_experts = E;
    c.n_activated_experts = K;
    c.n_expert_groups = groups;
    c.n_limited_groups = limited;
    c.score_func = eva::ScoreFunc::sigmoid;
    return c;
}

// n tokens of random sigmoid-like scores in (0, 1) and a random bias.
eva::Routing<float> random_scores(std::size_t n, std::size_t E, std::uint64_t seed, std::vector<float>& bias) {
    eva::Rng rng(seed);
    eva::Routing<float> r;
    r.n_tokens = n;
    r.scores.resize(n * E);
    for (auto& s : r.scores) s = 0.05f + 0.9f * float(rng.next_u32() % 100000) / 100000.0f;
    bias.resize(E);
    for (auto& b : bias) b = 0.1f * (float(rng.next_u32() % 1000) / 1000.0f - 0.5f);
    return r;
}

}  // namespace

TEST_CASE("node-limited routing equals group-limited routing when one group is one node and K/M = 2", "[moe][node]") {
    // V3's own setting: 8 nodes, M = 4, K = 8 (K/M = 2 = the group score's top 2); and smaller ones.
    struct Case { std::size_t E, K, nodes, M; };
    for (const Case c : {Case{256, 8, 8, 4}, Case{16, 4, 4, 2}, Case{16, 2, 8, 1}}) {
        INFO("E " << c.E << " K " << c.K << " nodes " << c.nodes << " M " << c.M);
        std::vector<float> bias;
        auto nodes = random_scores(300, c.E, c.E + c.K, bias);
        auto groups = nodes;
        eva::route(config(c.E, c.K, 1, 1), bias.data(), nodes, eva::NodeLimit{c.nodes, c.M});
        eva::route(config(c.E, c.K, c.nodes, c.M), bias.data(), groups);
        CHECK(nodes.indices == groups.indices);
        CHECK(nodes.weights == groups.weights);
    }
}

TEST_CASE("node-limited routing: each token uses at most M nodes, chosen by the sum of their K/M best scores", "[moe][node]") {
    const std::size_t E = 24, K = 6, nodes = 4, per = E / nodes;
    for (std::size_t M : {1, 2, 3}) {
        INFO("M = " << M);
        std::vector<float> bias;
        auto r = random_scores(200, E, 11 + M, bias);
        eva::route(config(E, K, 1, 1), bias.data(), r, eva::NodeLimit{nodes, M});
        for (std::size_t t = 0; t < r.n_tokens; ++t) {
            // The report's rule, read directly: node score = Σ of its K/M largest s + b.
            std::vector<std::pair<float, std::size_t>> score;
            for (std::size_t q = 0; q < nodes; ++q) {
                std::vector<float> sel;
                for (std::size_t e = q * per; e < (q + 1) * per; ++e) sel.push_back(r.scores[t * E + e] + bias[e]);
                std::sort(sel.rbegin(), sel.rend());
                float sum = 0;
                for (std::size_t j = 0; j < K / M; ++j) sum += sel[j];
                score.push_back({-sum, q});  // ascending: the best first, ties to the lower node
            }
            std::sort(score.begin(), score.end());
            std::set<std::size_t> allowed;
            for (std::size_t j = 0; j < M; ++j) allowed.insert(score[j].second);
            std::set<std::size_t> used;
            for (std::size_t j = 0; j < K; ++j) used.insert(std::size_t(r.indices[t * K + j]) / per);
            CHECK(used.size() <= M);
            for (std::size_t q : used) CHECK(allowed.count(q) == 1);
            // …and within them, the top-k of s + b: no expert on an allowed node beats a chosen one.
            float worst = 1e9f;
            for (std::size_t j = 0; j < K; ++j) {
                const std::size_t e = std::size_t(r.indices[t * K + j]);
                worst = std::min(worst, r.scores[t * E + e] + bias[e]);
            }
            for (std::size_t q : allowed)
                for (std::size_t e = q * per; e < (q + 1) * per; ++e)
                    if (std::find(r.indices.begin() + std::ptrdiff_t(t * K), r.indices.begin() + std::ptrdiff_t(t * K + K),
                                  std::int32_t(e)) == r.indices.begin() + std::ptrdiff_t(t * K + K))
                        CHECK(r.scores[t * E + e] + bias[e] <= worst);
        }
    }
    // Unlimited (M = 0 or M ≥ nodes) is plain top-k.
    std::vector<float> bias;
    auto a = random_scores(50, E, 3, bias);
    auto b = a;
    eva::route(config(E, K, 1, 1), bias.data(), a, eva::NodeLimit{nodes, 0});
    eva::route(config(E, K, 1, 1), bias.data(), b);
    CHECK(a.indices == b.indices);
    CHECK_THROWS_WITH(eva::route(config(E, K, 1, 1), bias.data(), a, eva::NodeLimit{6, 4}),
                      Catch::Contains("max_nodes = 4 must divide n_activated_experts (6)"));
    CHECK_THROWS_WITH(eva::route(config(E, K, 1, 1), bias.data(), a, eva::NodeLimit{5, 1}),
                      Catch::Contains("nodes = 5 must divide the 24 routed experts"));
}
