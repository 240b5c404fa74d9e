// eva — Hugging Face config.json ↔ ModelArgs. See hf_config.hpp and docs/checkpoints.md.
#include "eva/hf_config.hpp"

#include <cmath>
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"
#include "eva/rmsnorm.hpp"

namespace eva {
namespace {

using json = nlohmann::json;

ConfigError field_error(const std::string& field, const std::string& allowed, const json& got) {
    std::string g = got.is_string() || got.is_number() || got.is_boolean() || got.is_null() ? got.dump() : "";
    if (got.is_array()) g = "an array";
    if (got.is_object()) g = "an object";
    if (g.size() > 60) g = g.substr(0, 60) + "…";
    return ConfigError("config.json: field '" + field + "' must be " + allowed + ", got " + g);
}

std::int64_t get_int(const json& v, const std::string& field) {
    if (!v.is_number_integer()) throw field_error(field, "an integer", v);
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(INT64_MAX)) throw field_error(field, "an integer below 2^63", v);
    return v.get<std::int64_t>();
}
double get_real(const json& v, const std::string& field) {
    if (!v.is_number()) throw field_error(field, "a number", v);
    return v.get<double>();
}
bool get_bool(const json& v, const std::string& field) {
    if (!v.is_boolean()) throw field_error(field, "true or false", v);
    return v.get<bool>();
}
std::string get_string(const json& v, const std::string& field) {
    if (!v.is_string()) throw field_error(field, "a string", v);
    return v.get<std::string>();
}
// An integer stored as a JSON number (YaRN's beta_fast/beta_slow are 32 and 1, sometimes written 32.0).
std::int64_t get_integral(const json& v, const std::string& field) {
    if (v.is_number_integer()) return get_int(v, field);
    const double d = get_real(v, field);
    if (!(std::abs(d) < 9.0e15) || d != std::floor(d)) throw field_error(field, "a whole number", v);
    return std::int64_t(d);
}

// Fields that do not change the forward pass: tokenizer ids, library bookkeeping, initialization and
// training-only loss weights (aux_loss_alpha, seq_aux weigh Hugging Face's training loss; ep_size is
// expert parallelism). They are accepted with any value and not used.
const std::set<std::string>& metadata_fields() {
    static const std::set<std::string> f = {"_name_or_path", "architectures", "auto_map", "torch_dtype",
                                            "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id",
                                            "use_cache", "initializer_range", "ep_size", "aux_loss_alpha",
                                            "seq_aux", "attention_dropout"};
    return f;
}

// Fields with one value eva implements; any other value is an error naming the field.
void check_fixed(const std::string& name, const json& v, const json& raw) {
    if (name == "model_type") {
        const std::string t = get_string(v, name);
        if (t != "deepseek_v2" && t != "deepseek_v3") throw field_error(name, "\"deepseek_v2\" or \"deepseek_v3\"", v);
    } else if (name == "hidden_act") {
        if (get_string(v, name) != "silu") throw field_error(name, "\"silu\" (SwiGLU experts)", v);
    } else if (name == "num_key_value_heads") {
        // MLA has no separate K/V heads: Hugging Face's DeepSeek code does not use this field either.
        if (!raw.contains("num_attention_heads") || get_int(v, name) != get_int(raw["num_attention_heads"], "num_attention_heads"))
            throw field_error(name, "equal to num_attention_heads (MLA has no grouped K/V heads)", v);
    } else if (name == "tie_word_embeddings" || name == "attention_bias" || name == "mlp_bias") {
        if (get_bool(v, name)) throw field_error(name, "false (eva's Linear layers have no bias, embed and head are separate)", v);
    } else if (name == "moe_layer_freq" || name == "pretraining_tp") {
        if (get_int(v, name) != 1) throw field_error(name, "1 (every layer from first_k_dense_replace on is MoE)", v);
    } else if (name == "rope_interleave") {
        // The released weights rotate adjacent pairs (x[2i], x[2i+1]), the official layout eva uses.
        if (!get_bool(v, name)) throw field_error(name, "true (eva rotates interleaved pairs)", v);
    } else if (name == "head_dim") {
        if (!raw.contains("qk_rope_head_dim") || get_int(v, name) != get_int(raw["qk_rope_head_dim"], "qk_rope_head_dim"))
            throw field_error(name, "equal to qk_rope_head_dim", v);
    }
}

const std::set<std::string>& fixed_fields() {
    static const std::set<std::string> f = {"model_type", "hidden_act", "num_key_value_heads", "tie_word_embeddings",
                                            "attention_bias", "mlp_bias", "moe_layer_freq", "pretraining_tp",
                                            "rope_interleave", "head_dim"};
    return f;
}

// The fields mapped onto ModelArgs; those marked required have no default eva can trust (Hugging Face's
// defaults differ between the V2 and V3 config classes).
const std::map<std::string, bool>& mapped_fields() {
    static const std::map<std::string, bool> f = {
        {"vocab_size", true}, {"hidden_size", true}, {"intermediate_size", true}, {"moe_intermediate_size", true},
        {"num_hidden_layers", true}, {"first_k_dense_replace", false}, {"num_attention_heads", true},
        {"n_routed_experts", true}, {"n_shared_experts", true}, {"num_experts_per_tok", true}, {"n_group", false},
        {"topk_group", false}, {"scoring_func", true}, {"routed_scaling_factor", true}, {"norm_topk_prob", true},
        {"topk_method", true}, {"q_lora_rank", true}, {"kv_lora_rank", true}, {"qk_nope_head_dim", true},
        {"qk_rope_head_dim", true}, {"v_head_dim", true}, {"rope_theta", false}, {"rope_scaling", false},
        {"max_position_embeddings", true}, {"rms_norm_eps", false}, {"num_nextn_predict_layers", false},
        {"quantization_config", false}};
    return f;
}

// YaRN (Hugging Face DeepseekV2YarnRotaryEmbedding) onto the official single-mscale form.
void read_rope_scaling(const json& rs, ModelArgs& a) {
    if (rs.is_null()) {  // plain RoPE: no position ever exceeds the "original" length, so YaRN never applies
        a.original_seq_len = a.max_seq_len;
        return;
    }
    if (!rs.is_object()) throw field_error("rope_scaling", "null or an object", rs);
    static const std::set<std::string> keys = {"type", "rope_type", "factor", "original_max_position_embeddings",
                                               "beta_fast", "beta_slow", "mscale", "mscale_all_dim"};
    for (const auto& [k, v] : rs.items())
        if (!keys.count(k))
            throw ConfigError("config.json: unknown field 'rope_scaling." + k.substr(0, 60) +
                              "' (known: type, factor, original_max_position_embeddings, beta_fast, beta_slow, "
                              "mscale, mscale_all_dim)");
    const char* type_key = rs.contains("type") ? "type" : "rope_type";
    if (!rs.contains(type_key) || get_string(rs[type_key], std::string("rope_scaling.") + type_key) != "yarn")
        throw field_error(std::string("rope_scaling.") + type_key, "\"yarn\" (the only scaling DeepSeek uses)",
                          rs.contains(type_key) ? rs[type_key] : json(nullptr));
    for (const char* k : {"factor", "original_max_position_embeddings"})
        if (!rs.contains(k)) throw ConfigError(std::string("config.json: rope_scaling lacks '") + k + "'");
    a.rope_factor = get_real(rs["factor"], "rope_scaling.factor");
    a.original_seq_len = get_int(rs["original_max_position_embeddings"], "rope_scaling.original_max_position_embeddings");
    // Hugging Face's defaults for the optional YaRN fields.
    a.beta_fast = rs.contains("beta_fast") ? get_integral(rs["beta_fast"], "rope_scaling.beta_fast") : 32;
    a.beta_slow = rs.contains("beta_slow") ? get_integral(rs["beta_slow"], "rope_scaling.beta_slow") : 1;
    const double mscale = rs.contains("mscale") ? get_real(rs["mscale"], "rope_scaling.mscale") : 1.0;
    const double mscale_all_dim = rs.contains("mscale_all_dim") ? get_real(rs["mscale_all_dim"], "rope_scaling.mscale_all_dim") : 0.0;
    // Hugging Face multiplies cos/sin by m(mscale)/m(mscale_all_dim) and the softmax scale by
    // m(mscale_all_dim)², with m(x) = 0.1·x·ln(factor) + 1. The official code has no cos/sin factor and
    // multiplies the softmax scale by m(mscale)². Both agree exactly when the two fields are equal (every
    // DeepSeek release: 0.707/0.707 for V2, 1.0/1.0 for V3); then the official mscale is that value.
    if (mscale != mscale_all_dim && a.rope_factor > 1)
        throw ConfigError("config.json: rope_scaling.mscale (" + json(mscale).dump() + ") must equal mscale_all_dim (" +
                          json(mscale_all_dim).dump() + "): eva, like the official code, has no separate cos/sin scale");
    a.mscale = mscale_all_dim;
    // Hugging Face applies YaRN at every length; the official code (and eva) only when the context
    // exceeds the original one. They agree when max_position_embeddings is the longer one.
    if (a.max_seq_len <= a.original_seq_len)
        throw ConfigError("config.json: with rope_scaling yarn, max_position_embeddings (" + std::to_string(a.max_seq_len) +
                          ") must exceed rope_scaling.original_max_position_embeddings (" +
                          std::to_string(a.original_seq_len) + "), or YaRN would not apply");
}

void read_quantization(const json& q, HfConfig& c) {
    if (q.is_null()) return;
    if (!q.is_object()) throw field_error("quantization_config", "null or an object", q);
    for (const auto& [k, v] : q.items()) {
        const std::string f = "quantization_config." + k.substr(0, 60);
        if (k == "quant_method") {
            if (get_string(v, f) != "fp8") throw field_error(f, "\"fp8\"", v);
        } else if (k == "fmt") {
            if (get_string(v, f) != "e4m3") throw field_error(f, "\"e4m3\" (the V3 release's weight format)", v);
        } else if (k == "weight_block_size") {
            if (!v.is_array() || v.size() != 2 || v[0] != 128 || v[1] != 128)
                throw field_error(f, "[128, 128] (the block of weight_dequant)", v);
        } else if (k == "activation_scheme") {
            // eva dequantizes the weights and runs activations in fp32, so the runtime scheme is only
            // checked to be the released one.
            if (get_string(v, f) != "dynamic") throw field_error(f, "\"dynamic\"", v);
        } else if (k == "scale_fmt") {
            if (!v.is_null() && get_string(v, f) != "ue8m0") throw field_error(f, "null or \"ue8m0\"", v);
            c.args.scale_fmt = v.is_null() ? "" : "ue8m0";
        } else {
            throw ConfigError("config.json: unknown field '" + f +
                              "' (known: quant_method, fmt, weight_block_size, activation_scheme, scale_fmt)");
        }
    }
    for (const char* k : {"quant_method", "fmt", "weight_block_size"})
        if (!q.contains(k)) throw ConfigError(std::string("config.json: quantization_config lacks '") + k + "'");
    c.fp8 = true;
    c.args.dtype = "fp8";
}

// The router: Hugging Face's three topk_methods onto the official gate (score_func, groups, bias).
void read_routing(const json& j, HfConfig& c) {
    ModelArgs& a = c.args;
    const std::string method = get_string(j["topk_method"], "topk_method");
    const std::string score = get_string(j["scoring_func"], "scoring_func");
    const bool norm = get_bool(j["norm_topk_prob"], "norm_topk_prob");
    a.score_func = score;
    auto groups = [&](std::int64_t fallback) {
        const auto g = [&](const char* k) {
            return !j.contains(k) || j[k].is_null() ? fallback : get_int(j[k], k);
        };
        a.n_expert_groups = g("n_group");
        a.n_limited_groups = g("topk_group");
    };
    if (method == "greedy" || method == "group_limited_greedy") {
        // DeepseekV2MoEGate: softmax only. The official softmax gate never renormalizes and always
        // multiplies by route_scale, which is Hugging Face's norm_topk_prob = false branch (with one
        // expert per token renormalizing is skipped there too).
        if (score != "softmax")
            throw field_error("scoring_func", "\"softmax\" with topk_method " + method, j["scoring_func"]);
        if (norm && a.n_activated_experts > 1)
            throw field_error("norm_topk_prob", "false with softmax scores (the official gate does not renormalize them)",
                              j["norm_topk_prob"]);
        // greedy ignores n_group/topk_group; group_limited_greedy scores a group by its best expert,
        // which is the official gate's rule without a bias.
        if (method == "greedy") {
            a.n_expert_groups = 1;
            a.n_limited_groups = 1;
        } else {
            groups(1);
        }
        c.gate_bias = false;
    } else if (method == "noaux_tc") {
        // DeepseekV3MoEGate: sigmoid, choice by score + e_score_correction_bias, groups scored by their
        // top-2 biased experts, weights the original scores renormalized (norm_topk_prob, when more than
        // one expert is chosen), then × routed_scaling_factor — the official sigmoid gate with a bias.
        if (score != "sigmoid") throw field_error("scoring_func", "\"sigmoid\" with topk_method noaux_tc", j["scoring_func"]);
        if (!norm) throw field_error("norm_topk_prob", "true with sigmoid scores (the official gate renormalizes them)", j["norm_topk_prob"]);
        if (a.n_activated_experts < 2)
            throw field_error("num_experts_per_tok", "at least 2 with noaux_tc (Hugging Face skips renormalizing one expert)",
                              j["num_experts_per_tok"]);
        groups(1);
        c.gate_bias = true;
    } else {
        throw field_error("topk_method", "\"greedy\", \"group_limited_greedy\" or \"noaux_tc\"", j["topk_method"]);
    }
}

}  // namespace

MoeConfig HfConfig::moe() const { return moe_config(args, gate_bias ? Balance::aux_free : Balance::none); }

HfConfig hf_config_from_json(const json& j) {
    if (!j.is_object()) throw ConfigError("config.json must be a JSON object");
    for (const auto& [k, v] : j.items()) {
        if (mapped_fields().count(k) || metadata_fields().count(k)) continue;
        if (fixed_fields().count(k)) {
            check_fixed(k, v, j);
            continue;
        }
        throw ConfigError("config.json: unknown field '" + k.substr(0, 60) +
                          "' (eva maps the DeepSeek-V2/V3 fields listed in docs/checkpoints.md)");
    }
    for (const auto& [k, required] : mapped_fields())
        if (required && !j.contains(k)) throw ConfigError("config.json: missing field '" + k + "'");

    HfConfig c;
    ModelArgs& a = c.args;
    if (j.contains("model_type")) c.model_type = j["model_type"].get<std::string>();
    const auto nullable = [&](const char* k, std::int64_t if_null) {
        return j[k].is_null() ? if_null : get_int(j[k], k);
    };
    a.vocab_size = get_int(j["vocab_size"], "vocab_size");
    a.dim = get_int(j["hidden_size"], "hidden_size");
    a.inter_dim = get_int(j["intermediate_size"], "intermediate_size");
    a.moe_inter_dim = get_int(j["moe_intermediate_size"], "moe_intermediate_size");
    a.n_layers = get_int(j["num_hidden_layers"], "num_hidden_layers");
    a.n_dense_layers = j.contains("first_k_dense_replace") ? get_int(j["first_k_dense_replace"], "first_k_dense_replace") : 0;
    a.n_heads = get_int(j["num_attention_heads"], "num_attention_heads");
    a.n_routed_experts = get_int(j["n_routed_experts"], "n_routed_experts");
    a.n_shared_experts = nullable("n_shared_experts", 0);
    a.n_activated_experts = get_int(j["num_experts_per_tok"], "num_experts_per_tok");
    a.route_scale = get_real(j["routed_scaling_factor"], "routed_scaling_factor");
    a.q_lora_rank = nullable("q_lora_rank", 0);  // null: one q_proj, no query compression
    if (!j["q_lora_rank"].is_null() && a.q_lora_rank <= 0)
        throw field_error("q_lora_rank", "null (no query compression) or a positive rank", j["q_lora_rank"]);
    a.kv_lora_rank = get_int(j["kv_lora_rank"], "kv_lora_rank");
    a.qk_nope_head_dim = get_int(j["qk_nope_head_dim"], "qk_nope_head_dim");
    a.qk_rope_head_dim = get_int(j["qk_rope_head_dim"], "qk_rope_head_dim");
    a.v_head_dim = get_int(j["v_head_dim"], "v_head_dim");
    a.rope_theta = j.contains("rope_theta") ? get_real(j["rope_theta"], "rope_theta") : 10000.0;
    a.max_seq_len = get_int(j["max_position_embeddings"], "max_position_embeddings");
    read_routing(j, c);
    read_rope_scaling(j.contains("rope_scaling") ? j["rope_scaling"] : json(nullptr), a);
    if (j.contains("rms_norm_eps") && get_real(j["rms_norm_eps"], "rms_norm_eps") != kRmsNormEps)
        throw field_error("rms_norm_eps", "1e-06 (eva's RMSNorm epsilon, every DeepSeek release's)", j["rms_norm_eps"]);
    if (j.contains("num_nextn_predict_layers")) {
        c.n_mtp_layers = get_int(j["num_nextn_predict_layers"], "num_nextn_predict_layers");
        if (c.n_mtp_layers < 0 || c.n_mtp_layers > 8)
            throw field_error("num_nextn_predict_layers", "between 0 and 8", j["num_nextn_predict_layers"]);
        a.n_mtp_layers = c.n_mtp_layers;  // the modules are loaded (eva/mtp.hpp), as layers n_layers + k
    }
    read_quantization(j.contains("quantization_config") ? j["quantization_config"] : json(nullptr), c);
    if (a.n_routed_experts <= 0) throw field_error("n_routed_experts", "a positive integer (eva's FFN after the dense layers is MoE)", j["n_routed_experts"]);
    try {
        a.validate();
        (void)c.moe();
    } catch (const ConfigError& e) {
        throw ConfigError(std::string("config.json (as ModelArgs): ") + e.what());
    }
    return c;
}

json hf_config_to_json(const HfConfig& c) {
    const ModelArgs& a = c.args;
    const bool sigmoid = a.score_func == "sigmoid";
    if (sigmoid && !c.gate_bias)
        throw ConfigError("config.json: a sigmoid gate without a selection bias has no Hugging Face topk_method "
                          "(noaux_tc needs e_score_correction_bias; train with --balance aux-free)");
    if (!sigmoid && c.gate_bias)
        throw ConfigError("config.json: a softmax gate with a selection bias has no Hugging Face topk_method");
    const bool v3 = sigmoid;
    json j = json::object();
    j["architectures"] = {v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"};
    j["model_type"] = v3 ? "deepseek_v3" : "deepseek_v2";
    j["vocab_size"] = a.vocab_size;
    j["hidden_size"] = a.dim;
    j["intermediate_size"] = a.inter_dim;
    j["moe_intermediate_size"] = a.moe_inter_dim;
    j["num_hidden_layers"] = a.n_layers;
    j["first_k_dense_replace"] = a.n_dense_layers;
    j["num_attention_heads"] = a.n_heads;
    j["num_key_value_heads"] = a.n_heads;
    j["n_routed_experts"] = a.n_routed_experts;
    j["n_shared_experts"] = a.n_shared_experts;
    j["num_experts_per_tok"] = a.n_activated_experts;
    j["n_group"] = a.n_expert_groups;
    j["topk_group"] = a.n_limited_groups;
    j["scoring_func"] = a.score_func;
    j["topk_method"] = sigmoid ? "noaux_tc" : (a.n_expert_groups > 1 ? "group_limited_greedy" : "greedy");
    j["norm_topk_prob"] = sigmoid;
    j["routed_scaling_factor"] = a.route_scale;
    j["q_lora_rank"] = a.q_lora_rank == 0 ? json(nullptr) : json(a.q_lora_rank);
    j["kv_lora_rank"] = a.kv_lora_rank;
    j["qk_nope_head_dim"] = a.qk_nope_head_dim;
    j["qk_rope_head_dim"] = a.qk_rope_head_dim;
    j["v_head_dim"] = a.v_head_dim;
    j["rope_theta"] = a.rope_theta;
    j["max_position_embeddings"] = a.max_seq_len;
    if (a.yarn())
        j["rope_scaling"] = {{"type", "yarn"}, {"factor", a.rope_factor}, {"original_max_position_embeddings", a.original_seq_len},
                             {"beta_fast", a.beta_fast}, {"beta_slow", a.beta_slow}, {"mscale", a.mscale},
                             {"mscale_all_dim", a.mscale}};
    else
        j["rope_scaling"] = nullptr;
    j["rms_norm_eps"] = kRmsNormEps;
    j["hidden_act"] = "silu";
    j["moe_layer_freq"] = 1;
    j["tie_word_embeddings"] = false;
    j["attention_bias"] = false;
    j["num_nextn_predict_layers"] = a.n_mtp_layers;
    if (c.fp8) {
        j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                    {"weight_block_size", {128, 128}}};
        if (!a.scale_fmt.empty()) j["quantization_config"]["scale_fmt"] = a.scale_fmt;
    }
    return j;
}

}  // namespace eva
