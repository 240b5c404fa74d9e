// eva — the model configuration, field for field DeepSeek-V3's `ModelArgs` (inference/model.py).
//
// JSON config files use exactly the official field names (the files in the official
// inference/configs/ load unchanged); a field left out keeps the official default. Loading validates
// every field: an unknown name, a non-positive size, an odd `qk_rope_head_dim`, more activated experts
// than routed ones, … raise ConfigError naming the field and what is allowed. MLA, the MoE and the
// model all read this one struct.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace eva {

/// Upper bound of every size field (2^24 = 16,777,216): far above any real model (V3's largest field is
/// vocab_size 129,280), and small enough that sums and pairwise products of fields cannot wrap.
constexpr std::int64_t kMaxConfigSize = std::int64_t(1) << 24;

struct ModelArgs {
    // Defaults are the official ones (DeepSeek-V2-Lite dimensions, YaRN context 4096 → 16384).
    std::int64_t max_batch_size = 8;
    std::int64_t max_seq_len = 4096 * 4;
    std::string dtype = "bf16";      // "bf16" | "fp8": storage of the official checkpoint's Linear weights
    std::string scale_fmt;           // "" (none) | "ue8m0": FP8 scale format of V3.1 checkpoints
    std::int64_t vocab_size = 102400;
    std::int64_t dim = 2048;
    std::int64_t inter_dim = 10944;
    std::int64_t moe_inter_dim = 1408;
    std::int64_t n_layers = 27;
    std::int64_t n_dense_layers = 1;
    std::int64_t n_heads = 16;
    // MoE
    std::int64_t n_routed_experts = 64;
    std::int64_t n_shared_experts = 2;
    std::int64_t n_activated_experts = 6;
    std::int64_t n_expert_groups = 1;
    std::int64_t n_limited_groups = 1;
    std::string score_func = "softmax";  // "softmax" | "sigmoid"
    double route_scale = 1.0;
    // MLA
    std::int64_t q_lora_rank = 0;  // 0: one wq; > 0: wq_a → q_norm → wq_b
    std::int64_t kv_lora_rank = 512;
    std::int64_t qk_nope_head_dim = 128;
    std::int64_t qk_rope_head_dim = 64;
    std::int64_t v_head_dim = 128;
    // YaRN (applies only when max_seq_len > original_seq_len)
    std::int64_t original_seq_len = 4096;
    double rope_theta = 10000.0;
    double rope_factor = 40;
    std::int64_t beta_fast = 32;
    std::int64_t beta_slow = 1;
    double mscale = 1.0;
    // Multi-token prediction (DeepSeek-V3 §2.2): D sequential MTP modules after the main model, module k
    // predicting the token k+1 ahead (Hugging Face: num_nextn_predict_layers). 0: none, the model is
    // exactly the official inference code's. Not an official ModelArgs field; eva's own.
    std::int64_t n_mtp_layers = 0;

    std::int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
    bool yarn() const { return max_seq_len > original_seq_len; }

    /// Throws ConfigError naming the first field outside its allowed values, or a derived size (a tensor,
    /// the parameter count) above eva's bound of 2^48 (checked.hpp).
    void validate() const;
};

/// The routed experts' layout, one rule for the model and the MoE layer alike (ModelArgs::validate and
/// MoeConfig::validate both call it): n_expert_groups divides n_routed_experts and, when > 1, leaves at
/// least 2 experts per group (a group's score with a selection bias is the sum of its top-2 experts, and
/// DeepSeek's configs always carry the bias); 1 ≤ n_limited_groups ≤ n_expert_groups; 1 ≤
/// n_activated_experts ≤ the experts in the kept groups. ConfigError naming the field otherwise.
void validate_expert_groups(std::int64_t n_routed_experts, std::int64_t n_activated_experts,
                            std::int64_t n_expert_groups, std::int64_t n_limited_groups);

/// Parses a JSON object with official field names over the official defaults, then validates.
ModelArgs model_args_from_json(const nlohmann::json& j);
/// Every field, official names, as a JSON object (round-trips through model_args_from_json).
nlohmann::json to_json(const ModelArgs& a);
/// Reads a JSON config file (FileError if unreadable or not JSON; ConfigError if invalid).
ModelArgs load_model_args(const std::string& path);

/// Named presets: "v2-lite", "v2", "v3" (the official configs), "mini" (eva's trainable model), "baby"
/// (mini's structure at the size of nanoGPT's CPU "baby" run) and "tiny" (mini's structure at 134 K
/// parameters, for the page's selfTest).
ModelArgs preset(const std::string& name);
const std::vector<std::string>& preset_names();
/// A preset name or, failing that, a JSON file path.
ModelArgs preset_or_file(const std::string& name_or_path);

}  // namespace eva
