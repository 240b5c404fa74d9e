// ModelArgs: the presets against the official config tables (DESIGN.md), JSON round trip, the official
// config files' extra fields, and every validation rule raising ConfigError that names its field.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/config.hpp"
#include "eva/error.hpp"
#include "eva/model.hpp"

using nlohmann::json;

namespace {

// Runs `f`, requires a ConfigError whose message contains `field`.
template <class F>
void require_error_naming(F f, const std::string& field) {
    try {
        f();
    } catch (const eva::ConfigError& e) {
        INFO(e.what());
        REQUIRE(std::string(e.what()).find(field) != std::string::npos);
        return;
    }
    FAIL("expected a ConfigError naming " << field);
}

}  // namespace

TEST_CASE("config presets match the official configs", "[config]") {
    // The table in DESIGN.md (from the official inference/configs/*.json).
    const auto l = eva::preset("v2-lite"), v2 = eva::preset("v2"), v3 = eva::preset("v3"), m = eva::preset("mini");
    REQUIRE((l.dim == 2048 && l.inter_dim == 10944 && l.moe_inter_dim == 1408 && l.n_layers == 27 &&
             l.n_dense_layers == 1 && l.n_heads == 16 && l.n_routed_experts == 64 && l.n_shared_experts == 2 &&
             l.n_activated_experts == 6 && l.n_expert_groups == 1 && l.q_lora_rank == 0 && l.score_func == "softmax" &&
             l.route_scale == 1.0 && l.mscale == 0.707 && l.vocab_size == 102400));
    REQUIRE((v2.dim == 5120 && v2.inter_dim == 12288 && v2.moe_inter_dim == 1536 && v2.n_layers == 60 &&
             v2.n_heads == 128 && v2.n_routed_experts == 160 && v2.n_expert_groups == 8 && v2.n_limited_groups == 3 &&
             v2.route_scale == 16.0 && v2.q_lora_rank == 1536 && v2.score_func == "softmax"));
    REQUIRE((v3.dim == 7168 && v3.inter_dim == 18432 && v3.moe_inter_dim == 2048 && v3.n_layers == 61 &&
             v3.n_dense_layers == 3 && v3.n_heads == 128 && v3.n_routed_experts == 256 && v3.n_shared_experts == 1 &&
             v3.n_activated_experts == 8 && v3.n_expert_groups == 8 && v3.n_limited_groups == 4 &&
             v3.route_scale == 2.5 && v3.q_lora_rank == 1536 && v3.score_func == "sigmoid" && v3.vocab_size == 129280));
    for (const auto& a : {l, v2, v3})
        REQUIRE((a.kv_lora_rank == 512 && a.qk_nope_head_dim == 128 && a.qk_rope_head_dim == 64 && a.v_head_dim == 128 &&
                 a.yarn()));
    REQUIRE((m.vocab_size == 256 && m.dim == 256 && m.n_layers == 4 && m.n_dense_layers == 1 && m.n_heads == 4 &&
             m.q_lora_rank == 128 && m.kv_lora_rank == 64 && m.qk_nope_head_dim == 32 && m.qk_rope_head_dim == 16 &&
             m.v_head_dim == 32 && m.inter_dim == 768 && m.moe_inter_dim == 256 && m.n_routed_experts == 16 &&
             m.n_shared_experts == 1 && m.n_activated_experts == 2 && m.n_expert_groups == 4 &&
             m.n_limited_groups == 2 && m.score_func == "sigmoid" && m.route_scale == 1.0 && m.max_seq_len == 256 &&
             !m.yarn()));
    require_error_naming([] { eva::preset("v4"); }, "v4");
}

TEST_CASE("config preset baby: nanoGPT's CPU baby size with mini's structure", "[config]") {
    const auto b = eva::preset("baby");
    REQUIRE((b.vocab_size == 256 && b.dim == 128 && b.n_layers == 4 && b.n_dense_layers == 1 && b.n_heads == 4 &&
             b.max_seq_len == 64 && b.q_lora_rank == 64 && b.kv_lora_rank == 32 && b.qk_nope_head_dim == 16 &&
             b.qk_rope_head_dim == 16 && b.v_head_dim == 32 && b.inter_dim == 512 && b.moe_inter_dim == 128 &&
             b.n_routed_experts == 8 && b.n_shared_experts == 1 && b.n_activated_experts == 2 &&
             b.n_expert_groups == 1 && b.score_func == "sigmoid" && !b.yarn()));
    // Counted by hand. A block's attention: wq_a 64·128 + q_norm 64 + wq_b 128·64 + wkv_a 48·128 +
    // kv_norm 32 + wkv_b 192·32 + wo 128·128 = 45,152, plus two norms of 128. The dense FFN 3·128·512 =
    // 196,608; a MoE FFN: gate 8·128 + (8 routed + 1 shared)·3·128·128 = 443,392 (with 2 routed active:
    // 148,480). Embedding + head 2·256·128 and the final norm 128: 65,664.
    //   all:       65,664 + 4·45,408 + 196,608 + 3·443,392 = 1,774,080
    //   activated: 65,664 + 4·45,408 + 196,608 + 3·148,480 =   889,344
    REQUIRE(eva::parameter_count(b) == 1774080);
    REQUIRE(eva::parameter_count(b, true) == 889344);
    REQUIRE(eva::preset_or_file("baby").dim == 128);
}

TEST_CASE("config preset tiny: mini's structure at 134 K parameters", "[config]") {
    const auto t = eva::preset("tiny");
    REQUIRE((t.vocab_size == 256 && t.dim == 64 && t.n_layers == 2 && t.n_dense_layers == 1 && t.n_heads == 2 &&
             t.max_seq_len == 64 && t.q_lora_rank == 32 && t.kv_lora_rank == 32 && t.qk_nope_head_dim == 16 &&
             t.qk_rope_head_dim == 8 && t.v_head_dim == 16 && t.inter_dim == 128 && t.moe_inter_dim == 32 &&
             t.n_routed_experts == 8 && t.n_shared_experts == 1 && t.n_activated_experts == 2 &&
             t.n_expert_groups == 2 && t.n_limited_groups == 1 && t.score_func == "sigmoid" && !t.yarn()));
    // Counted by hand. A block's attention: wq_a 32·64 + q_norm 32 + wq_b 48·32 + wkv_a 40·64 + kv_norm 32
    // + wkv_b 64·32 + wo 64·32 = 10,304, plus two norms of 64. The dense FFN 3·64·128 = 24,576; the MoE
    // FFN: gate 8·64 + (8 routed + 1 shared)·3·32·64 = 55,808 (with 2 routed active: 18,944). Embedding +
    // head 2·256·64 and the final norm 64: 32,832.
    //   all:       32,832 + 2·10,432 + 24,576 + 55,808 = 134,080
    //   activated: 32,832 + 2·10,432 + 24,576 + 18,944 =  97,216
    REQUIRE(eva::parameter_count(t) == 134080);
    REQUIRE(eva::parameter_count(t, true) == 97216);
    REQUIRE(eva::preset_or_file("tiny").dim == 64);
}

TEST_CASE("config JSON: round trip, official files, and errors naming the field", "[config]") {
    const auto v3 = eva::preset("v3");
    const auto back = eva::model_args_from_json(eva::to_json(v3));
    REQUIRE(eva::to_json(back) == eva::to_json(v3));
    // The official config_v3.1.json adds "dtype" and "scale_fmt": both are ModelArgs fields.
    REQUIRE(eva::model_args_from_json({{"dtype", "fp8"}, {"scale_fmt", "ue8m0"}}).scale_fmt == "ue8m0");
    REQUIRE(eva::model_args_from_json({{"scale_fmt", nullptr}}).scale_fmt.empty());

    require_error_naming([] { eva::model_args_from_json({{"n_head", 4}}); }, "n_head");
    require_error_naming([] { eva::model_args_from_json({{"dim", 0}}); }, "dim");
    require_error_naming([] { eva::model_args_from_json({{"kv_lora_rank", -1}}); }, "kv_lora_rank");
    require_error_naming([] { eva::model_args_from_json({{"qk_rope_head_dim", 63}}); }, "qk_rope_head_dim");
    require_error_naming([] { eva::model_args_from_json({{"dim", 2.5}}); }, "dim");
    require_error_naming([] { eva::model_args_from_json({{"q_lora_rank", -3}}); }, "q_lora_rank");
    require_error_naming([] { eva::model_args_from_json({{"n_activated_experts", 65}}); }, "n_activated_experts");
    require_error_naming([] { eva::model_args_from_json({{"n_expert_groups", 5}}); }, "n_expert_groups");
    require_error_naming([] { eva::model_args_from_json({{"n_expert_groups", 4}, {"n_limited_groups", 5}}); },
                         "n_limited_groups");
    require_error_naming([] { eva::model_args_from_json({{"n_dense_layers", 28}}); }, "n_dense_layers");
    require_error_naming([] { eva::model_args_from_json({{"score_func", "relu"}}); }, "score_func");
    require_error_naming([] { eva::model_args_from_json({{"dtype", "fp16"}}); }, "dtype");
    require_error_naming([] { eva::model_args_from_json({{"route_scale", 0}}); }, "route_scale");
    require_error_naming([] { eva::model_args_from_json({{"rope_factor", 0.5}}); }, "rope_factor");
    require_error_naming([] { eva::model_args_from_json({{"beta_fast", 1}}); }, "beta_fast");
    require_error_naming([] { eva::model_args_from_json(json::array()); }, "object");
}

TEST_CASE("config files: load, and a clear error for a missing or broken file", "[config]") {
    const std::string path = "eva_test_config.json";
    std::ofstream(path) << R"({"dim": 64, "n_heads": 2, "q_lora_rank": 32, "max_seq_len": 128})";
    const auto a = eva::preset_or_file(path);
    REQUIRE((a.dim == 64 && a.n_heads == 2 && a.q_lora_rank == 32 && a.max_seq_len == 128 && !a.yarn()));
    std::ofstream(path) << "{\"dim\": ";
    REQUIRE_THROWS_AS(eva::load_model_args(path), eva::FileError);
    std::remove(path.c_str());
    REQUIRE_THROWS_AS(eva::load_model_args("no_such_eva_config.json"), eva::FileError);
}
