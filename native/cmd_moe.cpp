// `eva moe route`: routes synthetic hidden states through a DeepSeekMoE gate and, with --steps, runs a
// balancing loop (aux-loss-free bias update, or SGD on the gate with the sequence-wise / batch auxiliary
// loss), printing MaxVio per step and the per-expert load table. Only the gate is built, so even the V3
// preset (256 experts, dim 7168) runs in a few hundred MB.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"
#include "eva/error.hpp"
#include "eva/moe.hpp"
#include "eva/rng.hpp"

namespace eva::cli {
namespace {

struct MoeRouteOptions {
    std::string config = "mini", balance = "none";
    std::size_t tokens = 4096, steps = 0, seq_len = 256;
    std::uint64_t seed = 1;
    double skew = 1.0, lr = 1000.0;
    bool json = false;
};

MoeConfig load_config(const std::string& name) {
    if (name.size() < 5 || name.substr(name.size() - 5) != ".json") return MoeConfig::preset(name);
    std::ifstream in(name);
    if (!in) throw FileError("--config: cannot open " + name);
    nlohmann::json j;
    try {
        in >> j;
    } catch (const nlohmann::json::exception& e) {
        throw FileError("--config: " + name + " is not valid JSON (" + e.what() + ")");
    }
    return MoeConfig::from_json(j);
}

// The synthetic router: a gate with rows N(0, 1/dim) and hidden states N(0, 1) plus a common offset
// along feature 0; the first n_activated_experts gate rows also point along feature 0 with weight
// --skew, so those experts start out favoured by every token (the imbalance balancing must undo).
Matrix<float> skewed_gate(const MoeConfig& c, double skew, Rng& rng) {
    auto gate = Matrix<float>::from_shape({c.n_routed_experts, c.dim});
    rng.fill_normal(gate.data(), gate.size(), 0.0f, 1.0f / std::sqrt(float(c.dim)));
    for (std::size_t e = 0; e < c.n_activated_experts; ++e) gate(e, 0) += float(skew);
    return gate;
}

std::vector<float> hidden_states(const MoeConfig& c, std::size_t n, std::uint64_t seed, std::uint64_t step) {
    Rng rng(seed, step + 1);  // one stream per step: a fresh batch from the same distribution
    std::vector<float> x(n * c.dim);
    rng.fill_normal(x.data(), x.size(), 0.0f, 1.0f);
    for (std::size_t t = 0; t < n; ++t) x[t * c.dim] += 1.0f;
    return x;
}

void print_table(const RoutingStats& first, const RoutingStats& last, bool has_bias) {
    std::printf("\n%6s %10s %8s %10s %8s%s\n", "expert", "tokens@0", "load@0", "tokens", "load", has_bias ? "      bias" : "");
    for (std::size_t e = 0; e < last.tokens_per_expert.size(); ++e) {
        std::printf("%6zu %10zu %8.4f %10zu %8.4f", e, first.tokens_per_expert[e], first.load_fraction[e],
                    last.tokens_per_expert[e], last.load_fraction[e]);
        if (has_bias) std::printf(" %+9.4f", last.bias[e]);
        std::printf("\n");
    }
}

void run(const MoeRouteOptions& o) {
    MoeConfig c = load_config(o.config);
    c.balance = parse_balance(o.balance);
    c.validate();
    if (o.tokens % o.seq_len != 0 && c.balance == Balance::seq_loss)
        throw ConfigError("--seq-len = " + std::to_string(o.seq_len) + " must divide --tokens = " + std::to_string(o.tokens));
    Rng rng(o.seed);
    Matrix<float> gate = skewed_gate(c, o.skew, rng);
    std::vector<float> bias(c.balance == Balance::aux_free ? c.n_routed_experts : 0, 0.0f);

    nlohmann::json steps = nlohmann::json::array();
    RoutingStats first, last;
    Routing<float> r;
    if (!o.json)
        std::printf("config %s: %zu routed experts (top-%zu, %zu groups keep %zu), %s scores, balance %s, %zu tokens/step\n",
                    o.config.c_str(), c.n_routed_experts, c.n_activated_experts, c.n_expert_groups,
                    c.n_limited_groups, to_string(c.score_func).c_str(), o.balance.c_str(), o.tokens);
    if (!o.json) std::printf("%6s %9s %8s %8s %12s\n", "step", "MaxVio", "CV", "entropy", "balance loss");
    for (std::size_t step = 0; step <= o.steps; ++step) {
        const auto x = hidden_states(c, o.tokens, o.seed, step);
        gate_forward(c, gate, bias.empty() ? nullptr : bias.data(), x.data(), o.tokens, r);
        RoutingStats st = routing_stats(c, r, bias);
        // Balancing acts after the step is measured, so step 0 shows the untouched router.
        if (c.balance == Balance::aux_free) {
            update_bias(bias, st.tokens_per_expert, c.gamma);
        } else if (c.balance == Balance::seq_loss || c.balance == Balance::aux_loss) {
            std::vector<float> dscores(o.tokens * c.n_routed_experts, 0.0f);
            const std::size_t seq = c.balance == Balance::seq_loss ? o.seq_len : o.tokens;
            st.balance_loss = balance_loss<float>(c, r, seq, dscores.data());
            auto dgate = Matrix<float>::from_shape(gate.shape());
            dgate.fill(0.0f);
            gate_backward<float>(c, gate, x.data(), r, nullptr, dscores, dgate, nullptr);
            gate -= float(o.lr) * dgate;  // plain SGD on the gate: the balance loss is the only loss here
        }
        if (step == 0) first = st;
        last = st;
        steps.push_back({{"step", step}, {"max_vio", st.max_vio}, {"cv", st.cv}, {"entropy", st.entropy},
                         {"balance_loss", st.balance_loss}});
        if (!o.json) std::printf("%6zu %9.4f %8.4f %8.4f %12.4g\n", step, st.max_vio, st.cv, st.entropy, st.balance_loss);
    }
    if (o.json)
        return print_json({{"config", c.to_json()}, {"tokens", o.tokens}, {"seed", o.seed}, {"skew", o.skew},
                           {"steps", steps}, {"first", first.to_json()}, {"last", last.to_json()}});
    print_table(first, last, !bias.empty());
    std::printf("\nMaxVio %.4f -> %.4f, shared-expert weight fraction %.3f\n", first.max_vio, last.max_vio,
                last.shared_fraction);
}

}  // namespace

void add_moe_command(CLI::App& app) {
    auto* moe = app.add_subcommand("moe", "DeepSeekMoE: expert routing and load balancing");
    moe->require_subcommand(1);
    auto o = std::make_shared<MoeRouteOptions>();
    auto* cmd = moe->add_subcommand("route", "Route synthetic hidden states; with --steps, watch balancing converge");
    cmd->add_option("--config", o->config, "mini | v2-lite | v2 | v3 | FILE.json (official ModelArgs field names)")
        ->capture_default_str();
    cmd->add_option("--tokens", o->tokens, "Tokens per step")->capture_default_str()->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--seed", o->seed, "Seed of the gate and the hidden states")->capture_default_str();
    cmd->add_option("--balance", o->balance, "none | aux-free | seq-loss | aux-loss")->capture_default_str();
    cmd->add_option("--steps", o->steps, "Balancing steps after the first routing")
        ->capture_default_str()->check(CLI::Range(0, 100000));
    cmd->add_option("--seq-len", o->seq_len, "Sequence length for the sequence-wise loss")
        ->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--skew", o->skew, "How strongly the synthetic gate favours the first top-k experts")
        ->capture_default_str()->check(CLI::Range(0.0, 100.0));
    cmd->add_option("--lr", o->lr, "SGD learning rate on the gate for seq-loss / aux-loss")
        ->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_flag("--json", o->json, "Print one JSON object instead of text");
    cmd->callback([o] { run(*o); });
}

}  // namespace eva::cli
