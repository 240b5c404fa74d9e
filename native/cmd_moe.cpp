// `eva moe route`: routes hidden states (synthetic, or a [tokens, dim] float32/float64 .npy file) through a
// DeepSeekMoE gate and, with --steps, runs a
// balancing loop (aux-loss-free bias update, or SGD on the gate with the sequence-wise / batch auxiliary
// loss), printing MaxVio per step and the per-expert load table. Only the gate is built, so even the V3
// preset (256 experts, dim 7168) runs in a few hundred MB.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"
#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/io.hpp"
#include "eva/json.hpp"
#include "eva/moe.hpp"
#include "eva/npy.hpp"
#include "eva/rng.hpp"

namespace eva::cli {
namespace {

struct MoeRouteOptions {
    std::string config = "mini", balance, input;  // empty balance: the config file's (presets: none)
    std::size_t tokens = 4096, steps = 0, seq_len = 256;
    std::uint64_t seed = 1;
    double skew = 1.0, lr = 1000.0;
    bool json = false;
};

MoeConfig load_config(const std::string& name) {
    if (name.size() < 5 || name.substr(name.size() - 5) != ".json") return MoeConfig::preset(name);
    return MoeConfig::from_json(parse_json(read_input_file(name, kMaxConfigFileBytes, "--config"), "--config " + name));
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
    if (!o.balance.empty()) c.balance = parse_balance(o.balance);
    c.validate();
    std::size_t tokens = o.tokens;
    std::vector<float> given;  // hidden states from --input: the same batch every step
    if (!o.input.empty()) {
        NpyArray a = read_npy(o.input, "--input", 2, 2);
        if (a.shape[1] != c.dim)
            throw ShapeError("--input " + o.input + " has rows of " + std::to_string(a.shape[1]) +
                             " features; the config's dim is " + std::to_string(c.dim));
        if (a.shape[0] == 0) throw FileError("--input " + o.input + " holds no tokens");
        tokens = a.shape[0];
        given = std::move(a.data);
    }
    // The two big buffers, asked for before they exist: the hidden states [tokens, dim] (twice: the batch
    // and the copy each step routes) and the gate [experts, dim], float32.
    const std::uint64_t hidden = checked_mul(tokens, c.dim, "--tokens × dim");
    require_memory(checked_mul(checked_add(2 * hidden, checked_mul(c.n_routed_experts, c.dim, "the gate"), "the buffers"),
                               sizeof(float), "the buffers"),
                   "routing " + std::to_string(tokens) + " tokens of dim " + std::to_string(c.dim));
    if (tokens % o.seq_len != 0 && c.balance == Balance::seq_loss)
        throw ConfigError("--seq-len = " + std::to_string(o.seq_len) + " must divide the token count " + std::to_string(tokens));
    // The synthetic router (eva/moe.hpp) routed and balanced step by step.
    const std::vector<RoutingStats> run = synthetic_balancing_run(c, o.skew, o.seed, tokens, o.steps, o.seq_len, o.lr, given);
    const RoutingStats &first = run.front(), &last = run.back();
    nlohmann::json steps = nlohmann::json::array();
    if (!o.json)
        std::printf("config %s: %zu routed experts (top-%zu, %zu groups keep %zu), %s scores, balance %s, %zu tokens/step\n",
                    o.config.c_str(), c.n_routed_experts, c.n_activated_experts, c.n_expert_groups,
                    c.n_limited_groups, to_string(c.score_func).c_str(), to_string(c.balance).c_str(), tokens);
    if (!o.json) std::printf("%6s %9s %8s %8s %12s\n", "step", "MaxVio", "CV", "entropy", "balance loss");
    for (std::size_t step = 0; step < run.size(); ++step) {
        const RoutingStats& st = run[step];
        steps.push_back({{"step", step}, {"max_vio", st.max_vio}, {"cv", st.cv}, {"entropy", st.entropy},
                         {"balance_loss", st.balance_loss}});
        if (!o.json) std::printf("%6zu %9.4f %8.4f %8.4f %12.4g\n", step, st.max_vio, st.cv, st.entropy, st.balance_loss);
    }
    if (o.json)
        return print_json({{"config", c.to_json()}, {"tokens", tokens}, {"seed", o.seed}, {"skew", o.skew},
                           {"steps", steps}, {"first", first.to_json()}, {"last", last.to_json()}});
    print_table(first, last, c.balance == Balance::aux_free);
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
    cmd->add_option("--input", o->input, "Hidden states [tokens, dim] as a float32/float64 .npy (default: synthetic)");
    cmd->add_option("--tokens", o->tokens, "Tokens per step (synthetic input)")->capture_default_str()->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--seed", o->seed, "Seed of the gate and the hidden states")->capture_default_str();
    cmd->add_option("--balance", o->balance, "none | aux-free | seq-loss | aux-loss (default: the config file's, else none)");
    cmd->add_option("--steps", o->steps, "Balancing steps after the first routing")
        ->capture_default_str()->check(CLI::Range(0, 100000));
    cmd->add_option("--seq-len", o->seq_len, "Sequence length for the sequence-wise loss")
        ->capture_default_str()->check(kPositive);
    cmd->add_option("--skew", o->skew, "How strongly the synthetic gate favours the first top-k experts")
        ->capture_default_str()->check(CLI::Range(0.0, 100.0));
    cmd->add_option("--lr", o->lr, "SGD learning rate on the gate for seq-loss / aux-loss")
        ->capture_default_str()->check(kPositive);
    cmd->add_flag("--json", o->json, "Print one JSON object instead of text");
    cmd->callback([o] { run(*o); });
}

}  // namespace eva::cli
