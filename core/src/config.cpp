// eva — ModelArgs: JSON loading, validation and presets. See config.hpp.
#include "eva/config.hpp"

#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eva/error.hpp"
#include "eva/io.hpp"
#include "eva/json.hpp"
#include "eva/model.hpp"  // parameter_count: the derived sizes, checked

namespace eva {
namespace {

using json = nlohmann::json;

// One table drives parsing, printing and the unknown-field check, so the three never disagree.
struct Field {
    std::function<void(ModelArgs&, const json&, const std::string&)> read;
    std::function<json(const ModelArgs&)> write;
};

Field int_field(std::int64_t ModelArgs::*m) {
    return {[m](ModelArgs& a, const json& v, const std::string& name) {
                if (!v.is_number_integer())
                    throw ConfigError("config field '" + name + "' must be an integer, got " + json_preview(v));
                a.*m = v.get<std::int64_t>();
            },
            [m](const ModelArgs& a) { return json(a.*m); }};
}

Field real_field(double ModelArgs::*m) {
    return {[m](ModelArgs& a, const json& v, const std::string& name) {
                if (!v.is_number())
                    throw ConfigError("config field '" + name + "' must be a number, got " + json_preview(v));
                a.*m = v.get<double>();
            },
            [m](const ModelArgs& a) { return json(a.*m); }};
}

Field string_field(std::string ModelArgs::*m, bool nullable) {
    return {[m, nullable](ModelArgs& a, const json& v, const std::string& name) {
                if (nullable && v.is_null()) a.*m = "";
                else if (!v.is_string())
                    throw ConfigError("config field '" + name + "' must be a string, got " + json_preview(v));
                else a.*m = v.get<std::string>();
            },
            [m, nullable](const ModelArgs& a) { return nullable && (a.*m).empty() ? json(nullptr) : json(a.*m); }};
}

const std::map<std::string, Field>& fields() {
    static const std::map<std::string, Field> f = {
        {"max_batch_size", int_field(&ModelArgs::max_batch_size)},
        {"max_seq_len", int_field(&ModelArgs::max_seq_len)},
        {"dtype", string_field(&ModelArgs::dtype, false)},
        {"scale_fmt", string_field(&ModelArgs::scale_fmt, true)},
        {"vocab_size", int_field(&ModelArgs::vocab_size)},
        {"dim", int_field(&ModelArgs::dim)},
        {"inter_dim", int_field(&ModelArgs::inter_dim)},
        {"moe_inter_dim", int_field(&ModelArgs::moe_inter_dim)},
        {"n_layers", int_field(&ModelArgs::n_layers)},
        {"n_dense_layers", int_field(&ModelArgs::n_dense_layers)},
        {"n_heads", int_field(&ModelArgs::n_heads)},
        {"n_routed_experts", int_field(&ModelArgs::n_routed_experts)},
        {"n_shared_experts", int_field(&ModelArgs::n_shared_experts)},
        {"n_activated_experts", int_field(&ModelArgs::n_activated_experts)},
        {"n_expert_groups", int_field(&ModelArgs::n_expert_groups)},
        {"n_limited_groups", int_field(&ModelArgs::n_limited_groups)},
        {"score_func", string_field(&ModelArgs::score_func, false)},
        {"route_scale", real_field(&ModelArgs::route_scale)},
        {"q_lora_rank", int_field(&ModelArgs::q_lora_rank)},
        {"kv_lora_rank", int_field(&ModelArgs::kv_lora_rank)},
        {"qk_nope_head_dim", int_field(&ModelArgs::qk_nope_head_dim)},
        {"qk_rope_head_dim", int_field(&ModelArgs::qk_rope_head_dim)},
        {"v_head_dim", int_field(&ModelArgs::v_head_dim)},
        {"original_seq_len", int_field(&ModelArgs::original_seq_len)},
        {"rope_theta", real_field(&ModelArgs::rope_theta)},
        {"rope_factor", real_field(&ModelArgs::rope_factor)},
        {"beta_fast", int_field(&ModelArgs::beta_fast)},
        {"beta_slow", int_field(&ModelArgs::beta_slow)},
        {"mscale", real_field(&ModelArgs::mscale)},
        {"n_mtp_layers", int_field(&ModelArgs::n_mtp_layers)},
    };
    return f;
}

void require(bool ok, const std::string& field, const std::string& allowed, const std::string& got) {
    if (!ok) throw ConfigError("config field '" + field + "' must be " + allowed + ", got " + got);
}

std::string str(std::int64_t v) { return std::to_string(v); }
std::string str(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
}

}  // namespace

void ModelArgs::validate() const {
    const std::pair<const char*, std::int64_t> positive[] = {
        {"max_batch_size", max_batch_size}, {"max_seq_len", max_seq_len}, {"vocab_size", vocab_size},
        {"dim", dim}, {"inter_dim", inter_dim}, {"moe_inter_dim", moe_inter_dim}, {"n_layers", n_layers},
        {"n_heads", n_heads}, {"n_routed_experts", n_routed_experts},
        {"n_activated_experts", n_activated_experts}, {"n_expert_groups", n_expert_groups},
        {"n_limited_groups", n_limited_groups}, {"kv_lora_rank", kv_lora_rank},
        {"qk_nope_head_dim", qk_nope_head_dim}, {"qk_rope_head_dim", qk_rope_head_dim},
        {"v_head_dim", v_head_dim}, {"original_seq_len", original_seq_len}, {"beta_fast", beta_fast},
        {"beta_slow", beta_slow}};
    for (const auto& [name, v] : positive) require(v > 0, name, "a positive integer", str(v));
    // Each size is bounded before any is combined, so the sums and products below cannot wrap.
    const std::pair<const char*, std::int64_t> sizes[] = {
        {"n_dense_layers", n_dense_layers}, {"n_shared_experts", n_shared_experts}, {"q_lora_rank", q_lora_rank}};
    for (const auto& [name, v] : positive)
        require(v <= kMaxConfigSize, name, "at most " + str(kMaxConfigSize), str(v));
    for (const auto& [name, v] : sizes) require(v <= kMaxConfigSize, name, "at most " + str(kMaxConfigSize), str(v));
    require(n_dense_layers >= 0 && n_dense_layers <= n_layers, "n_dense_layers",
            "between 0 and n_layers (" + str(n_layers) + ")", str(n_dense_layers));
    // V3 releases one module; a handful is already far beyond what a sequential chain of drafts gains.
    require(n_mtp_layers >= 0 && n_mtp_layers <= 8, "n_mtp_layers", "between 0 and 8", str(n_mtp_layers));
    require(n_shared_experts >= 0, "n_shared_experts", "0 or more", str(n_shared_experts));
    require(q_lora_rank >= 0, "q_lora_rank", "0 (no query compression) or a positive rank", str(q_lora_rank));
    // RoPE rotates adjacent pairs (x[2i], x[2i+1]): the rotary part must have an even size.
    require(qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "even (RoPE rotates pairs)", str(qk_rope_head_dim));
    validate_expert_groups(n_routed_experts, n_activated_experts, n_expert_groups, n_limited_groups);
    require(score_func == "softmax" || score_func == "sigmoid", "score_func", "\"softmax\" or \"sigmoid\"",
            "\"" + preview(score_func) + "\"");
    require(dtype == "bf16" || dtype == "fp8", "dtype", "\"bf16\" or \"fp8\"", "\"" + preview(dtype) + "\"");
    require(scale_fmt.empty() || scale_fmt == "ue8m0", "scale_fmt", "null or \"ue8m0\"", "\"" + preview(scale_fmt) + "\"");
    require(std::isfinite(route_scale) && route_scale > 0, "route_scale", "a positive number", str(route_scale));
    require(std::isfinite(rope_theta) && rope_theta > 1, "rope_theta", "a number above 1", str(rope_theta));
    // mscale uses ln(rope_factor); a factor below 1 would shrink the context instead of stretching it.
    require(std::isfinite(rope_factor) && rope_factor >= 1, "rope_factor", "a number >= 1", str(rope_factor));
    require(std::isfinite(mscale) && mscale >= 0, "mscale", "a number >= 0", str(mscale));
    require(beta_fast > beta_slow, "beta_fast", "greater than beta_slow (" + str(beta_slow) + ")", str(beta_fast));
    // Every tensor's size and the total, in checked arithmetic: ConfigError if any exceeds 2^48.
    parameter_count(*this);
}

void validate_expert_groups(std::int64_t n_routed_experts, std::int64_t n_activated_experts,
                            std::int64_t n_expert_groups, std::int64_t n_limited_groups) {
    require(n_routed_experts >= 1, "n_routed_experts", "a positive integer", str(n_routed_experts));
    require(n_activated_experts >= 1 && n_activated_experts <= n_routed_experts, "n_activated_experts",
            "1 .. n_routed_experts (" + str(n_routed_experts) + ")", str(n_activated_experts));
    require(n_expert_groups >= 1 && n_routed_experts % n_expert_groups == 0, "n_expert_groups",
            "a divisor of n_routed_experts (" + str(n_routed_experts) + ")", str(n_expert_groups));
    // With a routing bias a group scores as the sum of its top-2 experts, so a group needs two.
    require(n_expert_groups == 1 || n_routed_experts / n_expert_groups >= 2, "n_expert_groups",
            "1, or small enough that each group holds at least 2 experts", str(n_expert_groups));
    require(n_limited_groups >= 1 && n_limited_groups <= n_expert_groups, "n_limited_groups",
            "1 .. n_expert_groups (" + str(n_expert_groups) + ")", str(n_limited_groups));
    require(n_activated_experts <= n_limited_groups * (n_routed_experts / n_expert_groups), "n_activated_experts",
            "at most the experts in the n_limited_groups kept groups (" +
                str(n_limited_groups * (n_routed_experts / n_expert_groups)) + ")",
            str(n_activated_experts));
}

ModelArgs model_args_from_json(const json& j) {
    if (!j.is_object()) throw ConfigError("config must be a JSON object of ModelArgs fields, got " + json_preview(j));
    ModelArgs a;
    for (const auto& [name, value] : j.items()) {
        const auto it = fields().find(name);
        if (it == fields().end()) {
            std::string known;
            for (const auto& [k, f] : fields()) known += (known.empty() ? "" : ", ") + k;
            throw ConfigError("unknown config field '" + preview(name) + "' (known: " + known + ")");
        }
        it->second.read(a, value, name);
    }
    a.validate();
    return a;
}

json to_json(const ModelArgs& a) {
    json j = json::object();
    for (const auto& [name, f] : fields()) j[name] = f.write(a);
    return j;
}

ModelArgs load_model_args(const std::string& path) {
    const std::string source = "config file " + path;
    return model_args_from_json(parse_json(read_input_file(path, kMaxConfigFileBytes, "config file"), source));
}

const std::vector<std::string>& preset_names() {
    static const std::vector<std::string> names = {"v2-lite", "v2", "v3", "mini", "baby", "tiny"};
    return names;
}

ModelArgs preset(const std::string& name) {
    // v2-lite, v2, v3: the official inference/configs/config_{16B,236B,671B}.json over the official
    // defaults (so max_seq_len 16384 > original_seq_len 4096: YaRN on, as the official code runs them).
    if (name == "v2-lite")
        return model_args_from_json({{"mscale", 0.707}});  // the defaults are V2-Lite's dimensions
    if (name == "v2")
        return model_args_from_json({{"dim", 5120}, {"inter_dim", 12288}, {"moe_inter_dim", 1536}, {"n_layers", 60},
                                     {"n_heads", 128}, {"n_routed_experts", 160}, {"n_expert_groups", 8},
                                     {"n_limited_groups", 3}, {"route_scale", 16.0}, {"q_lora_rank", 1536}});
    if (name == "v3")
        return model_args_from_json({{"vocab_size", 129280}, {"dim", 7168}, {"inter_dim", 18432},
                                     {"moe_inter_dim", 2048}, {"n_layers", 61}, {"n_dense_layers", 3},
                                     {"n_heads", 128}, {"n_routed_experts", 256}, {"n_shared_experts", 1},
                                     {"n_activated_experts", 8}, {"n_expert_groups", 8}, {"n_limited_groups", 4},
                                     {"route_scale", 2.5}, {"score_func", "sigmoid"}, {"q_lora_rank", 1536},
                                     {"dtype", "fp8"}});
    if (name == "mini")
        // eva's trainable model: V3's structure (q compression, sigmoid group-limited routing, one shared
        // expert) at 11M parameters. route_scale 1.0: with sigmoid weights renormalized to sum 1, the
        // routed experts then add as much as one expert, the same scale as the shared expert; V3's 2.5
        // compensates for 8 active experts of a much wider model, which does not carry over.
        // max_seq_len 256 <= original_seq_len 4096, so no YaRN.
        return model_args_from_json({{"max_seq_len", 256}, {"vocab_size", 256}, {"dim", 256}, {"inter_dim", 768},
                                     {"moe_inter_dim", 256}, {"n_layers", 4}, {"n_dense_layers", 1}, {"n_heads", 4},
                                     {"n_routed_experts", 16}, {"n_shared_experts", 1}, {"n_activated_experts", 2},
                                     {"n_expert_groups", 4}, {"n_limited_groups", 2}, {"score_func", "sigmoid"},
                                     {"route_scale", 1.0}, {"q_lora_rank", 128}, {"kv_lora_rank", 64},
                                     {"qk_nope_head_dim", 32}, {"qk_rope_head_dim", 16}, {"v_head_dim", 32}});
    if (name == "baby")
        // mini's structure at the size of nanoGPT's CPU "baby" run (4 layers, 128 wide, context 64), the
        // small-model comparison on tinyshakespeare (docs/5-model.md, docs/performance.md): 1.77 M
        // parameters, 0.89 M activated; one group of 8 experts, as 8 small experts need no group limit.
        return model_args_from_json({{"max_seq_len", 64}, {"vocab_size", 256}, {"dim", 128}, {"inter_dim", 512},
                                     {"moe_inter_dim", 128}, {"n_layers", 4}, {"n_dense_layers", 1}, {"n_heads", 4},
                                     {"n_routed_experts", 8}, {"n_shared_experts", 1}, {"n_activated_experts", 2},
                                     {"n_expert_groups", 1}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
                                     {"route_scale", 1.0}, {"q_lora_rank", 64}, {"kv_lora_rank", 32},
                                     {"qk_nope_head_dim", 16}, {"qk_rope_head_dim", 16}, {"v_head_dim", 32}});
    if (name == "tiny")
        // mini's structure at the smallest size that keeps every part (a dense block, then a MoE block of 8
        // experts in 2 groups keeping 1, q and kv compression, decoupled RoPE): 134 K parameters, a few
        // milliseconds a step even in WebAssembly, for the page's selfTest, which trains it in wasm and
        // compares the losses with `eva train --config tiny` (tests/browser/train.test.mjs).
        return model_args_from_json({{"max_seq_len", 64}, {"vocab_size", 256}, {"dim", 64}, {"inter_dim", 128},
                                     {"moe_inter_dim", 32}, {"n_layers", 2}, {"n_dense_layers", 1}, {"n_heads", 2},
                                     {"n_routed_experts", 8}, {"n_shared_experts", 1}, {"n_activated_experts", 2},
                                     {"n_expert_groups", 2}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
                                     {"route_scale", 1.0}, {"q_lora_rank", 32}, {"kv_lora_rank", 32},
                                     {"qk_nope_head_dim", 16}, {"qk_rope_head_dim", 8}, {"v_head_dim", 16}});
    std::string known;
    for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError("unknown config preset '" + name + "' (presets: " + known + ", or a .json file)");
}

ModelArgs preset_or_file(const std::string& name_or_path) {
    for (const auto& n : preset_names())
        if (n == name_or_path) return preset(n);
    if (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".json")
        return load_model_args(name_or_path);
    return preset(name_or_path);  // throws, listing the presets
}

}  // namespace eva
