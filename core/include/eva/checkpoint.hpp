// eva — model checkpoints as safetensors files with DeepSeek-V3's tensor names.
//
// The model file holds every tensor under its official name (`embed.weight`, `layers.0.attn.wq_a.weight`,
// …) and, in `__metadata__`, the ModelArgs JSON ("config", official field names), eva's MoE training
// settings ("moe": balance, gamma, alpha) and, for a resumable training checkpoint, the training state
// ("training": step, data position, …). Loading rebuilds the model from the config and requires exactly
// the expected tensors: a missing or unexpected name, a wrong shape or dtype is a FileError naming it.
#pragma once

#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "eva/model.hpp"
#include "eva/safetensors.hpp"

namespace eva {

/// Writes `m` atomically to `path`; `metadata` entries (JSON values) are added to __metadata__ as strings.
void save_model(Model<float>& m, const std::string& path, const nlohmann::json& metadata = nlohmann::json::object());

/// The ModelArgs and MoE settings in an eva checkpoint's __metadata__ ("config", "moe"), validated.
std::pair<ModelArgs, MoeConfig> checkpoint_config(const SafetensorsFile& f);

/// Reads a model written by save_model (or any file with the same names, shapes and config).
Model<float> load_model(const std::string& path);
/// The same from an already parsed file; `metadata_out` receives __metadata__ parsed as JSON values.
Model<float> load_model(const SafetensorsFile& f, nlohmann::json* metadata_out = nullptr);

}  // namespace eva
