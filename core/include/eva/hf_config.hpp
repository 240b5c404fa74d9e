// eva — Hugging Face `config.json` (DeepSeek-V2 / V3 releases) ↔ ModelArgs.
//
// The released checkpoints describe the model with Hugging Face's field names (`hidden_size`,
// `num_experts_per_tok`, `rope_scaling`, …); the official inference code (and eva) use `ModelArgs`.
// Every field of a released config is either mapped, checked against the one value eva implements, or
// listed as metadata that does not change the forward (tokenizer ids, library versions, training-only
// loss weights). Anything else — an unknown field, a value of the wrong type, a combination eva
// cannot compute the same way Hugging Face's modeling code does — raises ConfigError naming the field.
// docs/checkpoints.md gives the table and the reasons (mscale vs mscale_all_dim, norm_topk_prob, …).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "eva/config.hpp"
#include "eva/moe.hpp"

namespace eva {

/// What a config.json says, in eva's terms.
struct HfConfig {
    ModelArgs args;
    /// noaux_tc routing: the gate has a selection bias (`e_score_correction_bias`), eva's aux-free balancing.
    bool gate_bias = false;
    /// quantization_config present: Linear weights stored as FP8 (E4M3) with 128×128 `weight_scale_inv`.
    bool fp8 = false;
    /// num_nextn_predict_layers: MTP modules stored as layers n_layers … n_layers + n_mtp_layers − 1
    /// (also args.n_mtp_layers: eva loads them).
    std::int64_t n_mtp_layers = 0;
    std::string model_type = "deepseek_v3";  // "deepseek_v2" | "deepseek_v3"

    /// The MoE settings eva's model needs: balancing aux-free when the gate has a bias, none otherwise.
    MoeConfig moe() const;
};

/// Parses a config.json object; ConfigError naming the first field eva cannot honour.
HfConfig hf_config_from_json(const nlohmann::json& j);

/// The config.json of `args` (+ gate bias, FP8) that hf_config_from_json maps back to the same ModelArgs
/// (max_batch_size and, without YaRN, the unused YaRN constants excepted). ConfigError when Hugging Face's
/// DeepSeek code cannot express the model (softmax scores with a selection bias; sigmoid group-limited
/// routing without one).
nlohmann::json hf_config_to_json(const HfConfig& c);

}  // namespace eva
