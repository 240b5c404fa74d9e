// hf_config: the released config.json files map onto the official ModelArgs, every rule of the mapping
// (docs/checkpoints.md) holds, and every field eva cannot honour is an error naming it.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"
#include "eva/hf_checkpoint.hpp"
#include "eva/hf_config.hpp"

namespace {

using nlohmann::json;

json released(const std::string& name) {
    std::ifstream in(std::string(EVA_SOURCE_DIR) + "/tests/checkpoints/" + name);
    REQUIRE(in.good());
    return json::parse(in);
}

std::string error_of(const json& j) {
    try {
        eva::hf_config_from_json(j);
    } catch (const eva::ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("hf_config: DeepSeek-V3's config.json is the official 671B ModelArgs", "[hf_config]") {
    const eva::HfConfig c = eva::hf_config_from_json(released("deepseek-v3-config.json"));
    const eva::ModelArgs v3 = eva::preset("v3");  // the official inference/configs/config_671B.json
    for (auto [got, want] : {std::pair{c.args.dim, v3.dim}, {c.args.inter_dim, v3.inter_dim},
                             {c.args.moe_inter_dim, v3.moe_inter_dim}, {c.args.n_layers, v3.n_layers},
                             {c.args.n_dense_layers, v3.n_dense_layers}, {c.args.n_heads, v3.n_heads},
                             {c.args.n_routed_experts, v3.n_routed_experts}, {c.args.n_shared_experts, v3.n_shared_experts},
                             {c.args.n_activated_experts, v3.n_activated_experts}, {c.args.n_expert_groups, v3.n_expert_groups},
                             {c.args.n_limited_groups, v3.n_limited_groups}, {c.args.q_lora_rank, v3.q_lora_rank},
                             {c.args.kv_lora_rank, v3.kv_lora_rank}, {c.args.qk_nope_head_dim, v3.qk_nope_head_dim},
                             {c.args.qk_rope_head_dim, v3.qk_rope_head_dim}, {c.args.v_head_dim, v3.v_head_dim},
                             {c.args.vocab_size, v3.vocab_size}, {c.args.original_seq_len, v3.original_seq_len},
                             {c.args.beta_fast, v3.beta_fast}, {c.args.beta_slow, v3.beta_slow}})
        CHECK(got == want);
    CHECK(c.args.score_func == "sigmoid");
    CHECK(c.args.route_scale == 2.5);
    CHECK(c.args.rope_factor == 40);
    CHECK(c.args.mscale == 1.0);  // mscale_all_dim (= mscale)
    CHECK(c.args.max_seq_len == 163840);
    CHECK(c.args.yarn());
    CHECK(c.args.dtype == "fp8");
    CHECK(c.fp8);
    CHECK(c.gate_bias);  // noaux_tc: e_score_correction_bias, eva's aux-free selection bias
    CHECK(c.n_mtp_layers == 1);
    CHECK(c.args.n_mtp_layers == 1);
    eva::ModelArgs main = c.args;  // the main model alone
    main.n_mtp_layers = 0;
    CHECK(c.moe().balance == eva::Balance::aux_free);
    // The report: 671B total, 37B activated (README_WEIGHTS: 36.7B; eva also counts the embedding rows).
    CHECK(eva::parameter_count(main) / 100'000'000 == 6710);
    const double active = double(eva::parameter_count(main, true)) / 1e9;
    CHECK(active > 36.5);
    CHECK(active < 38.0);
    // 685B on the release: main model, the MTP module with its copies of embed and head, biases, scales.
    const auto mtp = eva::mtp_parameter_count(c.args);
    const double stored = double(eva::parameter_count(main) + mtp.stored + 59 * 256 + eva::fp8_scale_count(c.args)) / 1e9;
    CHECK(stored > 684.5);
    CHECK(stored < 685.5);
    CHECK(double(mtp.unique) / 1e9 == Approx(11.6).margin(0.1));  // README_WEIGHTS: 11.5B unique + eh_proj/norms
}

TEST_CASE("hf_config: DeepSeek-V2-Lite's config.json (softmax, greedy, q_lora_rank null)", "[hf_config]") {
    const eva::HfConfig c = eva::hf_config_from_json(released("deepseek-v2-lite-config.json"));
    const eva::ModelArgs lite = eva::preset("v2-lite");
    CHECK(c.args.dim == lite.dim);
    CHECK(c.args.n_layers == lite.n_layers);
    CHECK(c.args.n_shared_experts == lite.n_shared_experts);
    CHECK(c.args.n_activated_experts == lite.n_activated_experts);
    CHECK(c.args.q_lora_rank == 0);  // null → one wq
    CHECK(c.args.score_func == "softmax");
    CHECK(c.args.n_expert_groups == 1);
    CHECK(c.args.mscale == 0.707);  // the official config_16B.json's mscale
    CHECK_FALSE(c.gate_bias);
    CHECK_FALSE(c.fp8);
    CHECK(c.args.dtype == "bf16");
    CHECK(c.n_mtp_layers == 0);
}

TEST_CASE("hf_config: each mapping rule", "[hf_config]") {
    const json v3 = released("deepseek-v3-config.json"), lite = released("deepseek-v2-lite-config.json");
    SECTION("greedy ignores n_group/topk_group, as Hugging Face's gate does") {
        json j = lite;
        j["n_group"] = 8;
        j["topk_group"] = 3;
        const auto c = eva::hf_config_from_json(j);
        CHECK(c.args.n_expert_groups == 1);
        CHECK(c.args.n_limited_groups == 1);
    }
    SECTION("group_limited_greedy keeps the groups, without a bias (group score = its best expert)") {
        json j = lite;
        j["topk_method"] = "group_limited_greedy";
        j["n_group"] = 8;
        j["topk_group"] = 3;
        const auto c = eva::hf_config_from_json(j);
        CHECK(c.args.n_expert_groups == 8);
        CHECK(c.args.n_limited_groups == 3);
        CHECK_FALSE(c.gate_bias);
    }
    SECTION("no rope_scaling: plain RoPE, YaRN never applies") {
        json j = lite;
        j.erase("rope_scaling");
        const auto c = eva::hf_config_from_json(j);
        CHECK_FALSE(c.args.yarn());
    }
    SECTION("to_json maps back to the same ModelArgs") {
        for (const json& j : {v3, lite}) {
            const auto c = eva::hf_config_from_json(j);
            const auto back = eva::hf_config_from_json(eva::hf_config_to_json(c));
            CHECK(eva::to_json(back.args) == eva::to_json(c.args));
            CHECK(back.gate_bias == c.gate_bias);
            CHECK(back.fp8 == c.fp8);
            CHECK(back.n_mtp_layers == c.n_mtp_layers);
        }
    }
    SECTION("eva's mini model round-trips (sigmoid with bias: noaux_tc; no YaRN: rope_scaling null)") {
        eva::HfConfig c;
        c.args = eva::preset("mini");
        c.gate_bias = true;
        const json j = eva::hf_config_to_json(c);
        CHECK(j["topk_method"] == "noaux_tc");
        CHECK(j["rope_scaling"].is_null());
        const auto back = eva::hf_config_from_json(j);
        CHECK(back.args.dim == c.args.dim);
        CHECK(back.args.n_expert_groups == c.args.n_expert_groups);
        CHECK_FALSE(back.args.yarn());
        c.gate_bias = false;
        CHECK_THROWS_AS(eva::hf_config_to_json(c), eva::ConfigError);  // sigmoid without bias: no HF method
    }
}

TEST_CASE("hf_config: fields eva cannot honour are errors naming them", "[hf_config]") {
    const json v3 = released("deepseek-v3-config.json"), lite = released("deepseek-v2-lite-config.json");
    auto with = [](json j, const std::string& k, const json& v) {
        j[k] = v;
        return j;
    };
    auto without = [](json j, const std::string& k) {
        j.erase(k);
        return j;
    };
    auto rope = [&](const std::string& k, const json& v) {
        json j = v3;
        j["rope_scaling"][k] = v;
        return j;
    };
    const std::vector<std::pair<json, std::string>> cases = {
        {with(v3, "hidden_size", "7168"), "'hidden_size' must be an integer"},
        {with(v3, "hidden_size", 7168.5), "'hidden_size' must be an integer"},
        {with(v3, "norm_topk_prob", 1), "'norm_topk_prob' must be true or false"},
        {with(v3, "sliding_window", 4096), "unknown field 'sliding_window'"},
        {without(v3, "num_experts_per_tok"), "missing field 'num_experts_per_tok'"},
        {with(lite, "norm_topk_prob", true), "'norm_topk_prob' must be false with softmax"},
        {with(v3, "norm_topk_prob", false), "'norm_topk_prob' must be true with sigmoid"},
        {with(v3, "scoring_func", "softmax"), "'scoring_func' must be \"sigmoid\" with topk_method noaux_tc"},
        {with(lite, "scoring_func", "sigmoid"), "'scoring_func' must be \"softmax\" with topk_method greedy"},
        {with(v3, "topk_method", "top_p"), "'topk_method' must be"},
        {with(v3, "q_lora_rank", 0), "'q_lora_rank' must be null"},
        {with(v3, "hidden_act", "gelu"), "'hidden_act' must be \"silu\""},
        {with(v3, "num_key_value_heads", 8), "'num_key_value_heads' must be equal to num_attention_heads"},
        {with(v3, "tie_word_embeddings", true), "'tie_word_embeddings' must be false"},
        {with(v3, "moe_layer_freq", 2), "'moe_layer_freq' must be 1"},
        {with(v3, "rms_norm_eps", 1e-5), "'rms_norm_eps' must be 1e-06"},
        {with(v3, "model_type", "llama"), "'model_type' must be"},
        {with(v3, "num_nextn_predict_layers", -1), "'num_nextn_predict_layers' must be between 0 and 8"},
        {with(v3, "max_position_embeddings", 4096), "max_position_embeddings (4096) must exceed"},
        {rope("mscale_all_dim", 0.707), "rope_scaling.mscale (1.0) must equal mscale_all_dim (0.707)"},
        {rope("type", "linear"), "'rope_scaling.type' must be \"yarn\""},
        {rope("beta_fast", 32.5), "'rope_scaling.beta_fast' must be a whole number"},
        {rope("attn_factor", 1), "unknown field 'rope_scaling.attn_factor'"},
        {rope("factor", 0.5), "'rope_factor' must be a number >= 1"},
        {with(v3, "quantization_config", json{{"quant_method", "fp8"}, {"fmt", "e5m2"}, {"weight_block_size", {128, 128}}}),
         "'quantization_config.fmt' must be \"e4m3\""},
        {with(v3, "quantization_config", json{{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"weight_block_size", {64, 64}}}),
         "'quantization_config.weight_block_size' must be [128, 128]"},
        {with(v3, "quantization_config", json{{"quant_method", "awq"}}), "'quantization_config.quant_method' must be \"fp8\""},
        {with(v3, "n_group", 7), "n_expert_groups"},
        {json::array(), "config.json must be a JSON object"},
    };
    for (const auto& [j, want] : cases) {
        INFO(want);
        const std::string err = error_of(j);
        CHECK_THAT(err, Catch::Matchers::Contains(want));
    }
}
