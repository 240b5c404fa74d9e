// `eva mla`: Multi-head Latent Attention from the command line.
//   eva mla memory        KV-cache size of MLA vs MHA vs GQA vs MQA for a config (per token per layer,
//                         per token for the whole model, for a whole sequence), in a chosen dtype.
//   eva mla decode-check  random weights; the full causal forward vs token-by-token decoding with the
//                         naive and the absorbed cache; prints the max differences and the cache sizes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli.hpp"
#include "eva/checked.hpp"
#include "eva/config.hpp"
#include "eva/mla.hpp"
#include "eva/rng.hpp"
#include "eva/rope.hpp"

namespace eva::cli {
namespace {

struct MemoryOptions {
    std::string config = "v3", dtype = "bf16";
    std::int64_t seq_len = 4096, gqa_groups = 0;  // 0: the largest divisor of n_heads up to 8
    bool json = false;
};

void run_memory(const MemoryOptions& o) {
    // A named model (the presets, llama3-8b: eva/mla.hpp's kv_cache_models, the KV panel's), or a file.
    const KVCacheModel* named = find_kv_cache_model(o.config);
    KVCacheModel model = named ? *named : KVCacheModel{o.config, o.config, preset_or_file(o.config), 0, true, "MLA"};
    const ModelArgs& a = model.args;
    const CacheDType dt = parse_cache_dtype(o.dtype, "--dtype");
    model.gqa_groups = o.gqa_groups == 0 ? default_gqa_groups(a) : o.gqa_groups;
    const auto rows = model.memory(o.seq_len, dt);
    if (o.json) {
        nlohmann::json j = {{"config", o.config}, {"dtype", o.dtype}, {"seq_len", o.seq_len},
                            {"n_layers", a.n_layers}, {"n_heads", a.n_heads}, {"schemes", nlohmann::json::array()}};
        for (const auto& r : rows)
            j["schemes"].push_back({{"name", r.name}, {"kv_heads", r.kv_heads},
                                    {"elements_per_token_layer", r.elements_per_token_layer},
                                    {"bytes_per_token_layer", r.bytes_per_token_layer},
                                    {"bytes_per_token", r.bytes_per_token}, {"bytes_sequence", r.bytes_sequence},
                                    {"ratio_to_mla", r.ratio_to_mla}});
        return print_json(j);
    }
    std::printf("KV cache, config %s: %lld layers, %lld heads, kv_lora_rank %lld, nope %lld + rope %lld, v %lld; "
                "%s, %lld tokens\n",
                o.config.c_str(), (long long)a.n_layers, (long long)a.n_heads, (long long)a.kv_lora_rank,
                (long long)a.qk_nope_head_dim, (long long)a.qk_rope_head_dim, (long long)a.v_head_dim,
                o.dtype.c_str(), (long long)o.seq_len);
    std::printf("%-8s %8s %18s %16s %14s %14s %8s\n", "scheme", "kv heads", "elem/token/layer", "bytes/tok/layer",
                "per token", "sequence", "vs MLA");
    for (const auto& r : rows)
        std::printf("%-8s %8lld %18lld %16lld %14s %14s %7.2fx\n", r.name.c_str(), (long long)r.kv_heads,
                    (long long)r.elements_per_token_layer, (long long)r.bytes_per_token_layer,
                    format_bytes_binary(double(r.bytes_per_token)).c_str(), format_bytes_binary(double(r.bytes_sequence)).c_str(),
                    r.ratio_to_mla);
    if (!model.mla) std::printf("%s has no latent: no MLA row; \"vs MLA\" compares with the default kv_lora_rank.\n", o.config.c_str());
    std::printf("MLA caches kv_lora_rank + qk_rope_head_dim per token for all heads; MHA caches n_heads·"
                "(nope + rope) keys + n_heads·v values.\n");
}

struct DecodeCheckOptions {
    std::string config = "mini";
    std::int64_t seq_len = 64;
    std::uint64_t seed = 1;
    bool json = false;
};

void run_decode_check(const DecodeCheckOptions& o) {
    const ModelArgs a = preset_or_file(o.config);
    if (o.seq_len <= 0 || o.seq_len > a.max_seq_len)
        throw ConfigError("--seq-len must be between 1 and max_seq_len (" + std::to_string(a.max_seq_len) +
                          "), got " + std::to_string(o.seq_len));
    const auto T = std::size_t(o.seq_len), dim = std::size_t(a.dim);
    const auto rope = make_rope(a);
    Rng rng(o.seed);
    // std 1/sqrt(fan-in)-like scale so attention scores are O(1) and the check is not trivially uniform.
    const auto w = mla_init<float>(a, rng, 1.0 / std::sqrt(double(a.dim)));
    Matrix<float> x = Matrix<float>::from_shape({T, dim});
    rng.fill_normal(x.data(), x.size(), 0, 1);
    const auto full = mla_forward(a, rope, w, x, 1, T);
    double scale = 0;
    for (float v : full) scale = std::max(scale, double(std::abs(v)));

    MLANaiveCache<float> naive(a, T);
    MLAAbsorbedCache<float> absorbed(a, T);
    double d_naive = 0, d_abs = 0, d_pair = 0;
    for (std::size_t t = 0; t < T; ++t) {
        Matrix<float> xt = Matrix<float>::from_shape({1, dim});
        std::copy(x.data() + t * dim, x.data() + (t + 1) * dim, xt.data());
        const auto on = mla_decode(a, rope, w, naive, xt), oa = mla_decode(a, rope, w, absorbed, xt);
        for (std::size_t j = 0; j < dim; ++j) {
            const double f = full(t, j);
            d_naive = std::max(d_naive, std::abs(on(0, j) - f));
            d_abs = std::max(d_abs, std::abs(oa(0, j) - f));
            d_pair = std::max(d_pair, double(std::abs(on(0, j) - oa(0, j))));
        }
    }
    const double nb = double(naive.floats()) * 4, ab = double(absorbed.floats()) * 4;
    if (o.json)
        return print_json({{"config", o.config}, {"seq_len", T}, {"seed", o.seed}, {"output_scale", scale},
                           {"max_abs_diff_full_vs_naive", d_naive}, {"max_abs_diff_full_vs_absorbed", d_abs},
                           {"max_abs_diff_naive_vs_absorbed", d_pair}, {"naive_cache_floats", naive.floats()},
                           {"absorbed_cache_floats", absorbed.floats()}, {"cache_ratio", nb / ab}});
    std::printf("MLA decode check, config %s, %zu tokens, seed %llu (fp32, one layer, random weights)\n",
                o.config.c_str(), T, (unsigned long long)o.seed);
    std::printf("  output scale max|y|              %.4g\n", scale);
    std::printf("  full forward vs naive decode     %.3g  (%.2g of scale)\n", d_naive, d_naive / scale);
    std::printf("  full forward vs absorbed decode  %.3g  (%.2g of scale)\n", d_abs, d_abs / scale);
    std::printf("  naive vs absorbed                %.3g\n", d_pair);
    std::printf("  naive cache    %zu floats (%s): per-head K [T, %lld, %lld] + V [T, %lld, %lld]\n", naive.floats(),
                format_bytes_binary(nb).c_str(), (long long)a.n_heads, (long long)a.qk_head_dim(), (long long)a.n_heads,
                (long long)a.v_head_dim);
    std::printf("  absorbed cache %zu floats (%s): c_KV [T, %lld] + k_pe [T, %lld]  → %.1fx smaller\n",
                absorbed.floats(), format_bytes_binary(ab).c_str(), (long long)a.kv_lora_rank, (long long)a.qk_rope_head_dim,
                nb / ab);
}

}  // namespace

void add_mla_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("mla", "Multi-head Latent Attention: KV-cache memory and a decoding self-check");
    cmd->require_subcommand(1);
    const std::string config_help = "Config: a preset (v2-lite, v2, v3, mini, baby, tiny) or a ModelArgs JSON file";

    auto m = std::make_shared<MemoryOptions>();
    auto* mem = cmd->add_subcommand("memory", "KV-cache size of MLA vs MHA vs GQA vs MQA for a config");
    mem->add_option("--config", m->config, "Config: a preset (v2-lite, v2, v3, mini, baby, tiny), llama3-8b (Llama-3-8B's "
                    "attention shape, GQA-8 without a latent) or a ModelArgs JSON file")->capture_default_str();
    mem->add_option("--seq-len", m->seq_len, "Tokens in the sequence")->capture_default_str()->check(kPositive);
    mem->add_option("--dtype", m->dtype, "Cache element type: fp32, bf16 or fp8")->capture_default_str();
    mem->add_option("--gqa-groups", m->gqa_groups, "K/V heads of the GQA comparison (must divide n_heads; default: the largest divisor <= 8)")
        ->capture_default_str();
    mem->add_flag("--json", m->json, "Print one JSON object instead of the table");
    mem->callback([m] { run_memory(*m); });

    auto d = std::make_shared<DecodeCheckOptions>();
    auto* dc = cmd->add_subcommand("decode-check",
                                   "Random weights: full forward vs naive vs absorbed token-by-token decoding");
    dc->add_option("--config", d->config, config_help)->capture_default_str();
    dc->add_option("--seq-len", d->seq_len, "Tokens to decode")->capture_default_str();
    dc->add_option("--seed", d->seed, "Seed of the random weights and inputs")->capture_default_str();
    dc->add_flag("--json", d->json, "Print one JSON object instead of text");
    dc->callback([d] { run_decode_check(*d); });
}

}  // namespace eva::cli
