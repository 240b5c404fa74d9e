// eva — DeepSeek's real checkpoint formats: Hugging Face folders, BF16 and FP8 block-scaled weights, shards.
//
// A released checkpoint (deepseek-ai/DeepSeek-V3, -V2-Lite, …) is a folder: `config.json` (hf_config.hpp),
// the weights in `model.safetensors` or in shards `model-0000K-of-0000N.safetensors` located through
// `model.safetensors.index.json`'s weight_map, under Hugging Face's tensor names. V3 stores every Linear
// weight inside the blocks as F8_E4M3 with a float32 companion `<name>_scale_inv` of shape
// [ceil(out/128), ceil(in/128)]: weight ≈ fp8 · scale_inv per 128×128 block (edge blocks partial).
//
// Names map exactly as the official inference/convert.py maps them: drop `model.`, self_attn → attn,
// mlp → ffn, kv_a_proj_with_mqa → wkv_a, gate_proj/down_proj/up_proj → w1/w2/w3,
// e_score_correction_bias → bias, weight_scale_inv → scale, lm_head → head, … (one table, both ways).
// Layers at index ≥ num_hidden_layers are the MTP modules (num_nextn_predict_layers → n_mtp_layers,
// eva/mtp.hpp), loaded under the same names; their stored copies of the embedding and the head are
// skipped, since eva's modules share the main model's (the official converter drops the module).
//
// Loading maps every file (no copy), checks the whole folder's headers first — every tensor the config
// implies present exactly once with its shape, a known dtype, a scale of the right shape for each FP8
// weight, nothing else — and only then allocates the model (after comparing its bytes with the free
// memory) and converts tensor by tensor into it. Writing goes the other way, tensor by tensor, into a
// temporary file (or folder) renamed at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/fp8.hpp"
#include "eva/hf_config.hpp"
#include "eva/model.hpp"
#include "eva/safetensors.hpp"

namespace eva {

// ------------------------------------------------------------------------------------------- names
/// The Hugging Face name of an eva (official inference) tensor name; ConfigError outside the map.
std::string hf_tensor_name(const std::string& eva_name);
/// The eva name of a Hugging Face tensor name; FileError naming it if it is not a DeepSeek tensor.
std::string eva_tensor_name(const std::string& hf_name);

// ------------------------------------------------------------------------------------------ dtypes
float bf16_to_f32(std::uint16_t bits);
/// Round to nearest, ties to even (what PyTorch's .to(torch.bfloat16) does); NaN stays NaN.
std::uint16_t f32_to_bf16(float x);
float f16_to_f32(std::uint16_t bits);

/// kernel.py's weight_dequant: y[r, c] = float(fp8[r, c]) · scale_inv[r / 128, c / 128] in float32, for a
/// [rows, cols] weight with scale_inv [ceil(rows/128), ceil(cols/128)] (partial edge blocks).
void weight_dequant(const std::uint8_t* codes, Fp8Format format, std::size_t rows, std::size_t cols,
                    const float* scale_inv, float* out);
/// The shape of a weight's scale_inv: [ceil(rows/128), ceil(cols/128)].
std::vector<std::size_t> fp8_scale_shape(std::size_t rows, std::size_t cols);

/// Decodes one stored tensor (F32, F16, BF16; F8_E4M3/F8_E5M2 with `scale`, F32 [ceil/128, ceil/128])
/// into float32 `out` of `shape`; FileError naming the tensor for any other dtype, shape or scale.
void decode_tensor(const SafetensorsFile& file, const std::string& name, const std::vector<std::size_t>& shape,
                   const SafetensorsFile* scale_file, const std::string& scale_name, float* out);

// ----------------------------------------------------------------------------------------- reading
/// model.safetensors.index.json → weight_map (tensor name → shard file name). FileError unless it is an
/// object with a "weight_map" object of strings naming plain `*.safetensors` files in the same folder
/// (and, optionally, a "metadata" object).
std::map<std::string, std::string> parse_safetensors_index(const std::string& text, const std::string& source);

enum class Layout { eva, hf };
enum class StoreDType { f32, bf16, fp8 };
Layout parse_layout(const std::string& s);          // "eva" | "hf"
StoreDType parse_store_dtype(const std::string& s);  // "f32" | "bf16" | "fp8"

/// A checkpoint opened and validated from its headers: an eva .safetensors file or a Hugging Face folder.
class Checkpoint {
public:
    /// FileError / ConfigError naming the first problem (missing shard, tensor in two shards, …).
    static Checkpoint open(const std::string& path);

    Layout layout() const { return layout_; }
    const HfConfig& config() const { return config_; }
    const MoeConfig& moe() const { return moe_; }
    /// eva layout: __metadata__ entries parsed as JSON where they are JSON.
    const nlohmann::json& metadata() const { return metadata_; }
    const std::vector<std::string>& files() const { return file_names_; }
    std::uint64_t file_bytes() const { return file_bytes_; }
    /// Stored names not loaded: each MTP module's copies of the embedding and the head (eva shares them).
    const std::vector<std::string>& skipped() const { return skipped_; }

    /// One stored tensor: its file, stored name and, for FP8, its scale.
    struct Stored {
        const SafetensorsFile* file = nullptr;
        std::string name;
        const SafetensorsFile* scale_file = nullptr;
        std::string scale_name;
    };
    /// Stored tensors by eva name (scales folded into their weights).
    const std::map<std::string, Stored>& tensors() const { return tensors_; }

    /// The model, converted tensor by tensor; FileError if a tensor the config implies is missing,
    /// shaped differently or not convertible.
    Model<float> load() const;

private:
    Layout layout_ = Layout::eva;
    HfConfig config_;
    MoeConfig moe_;
    nlohmann::json metadata_ = nlohmann::json::object();
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::vector<std::string> file_names_, skipped_;
    std::uint64_t file_bytes_ = 0;
    std::map<std::string, Stored> tensors_;

    void add_file(const std::string& path, const std::string& display);
    void index_tensors();
};

/// A Linear weight exactly as an FP8 checkpoint stores it, without dequantizing: its E4M3/E5M2 codes
/// [rows, cols] and its float32 weight_scale_inv [ceil(rows/128), ceil(cols/128)], copied byte for byte
/// into an Fp8Matrix of 128×128 blocks, so dequantize(q) is weight_dequant of the same bytes (what load()
/// put in the model). Empty codes when `eva_name` is stored in another dtype; FileError for a name the
/// checkpoint lacks or a scale of the wrong shape or dtype.
Fp8Matrix stored_fp8_weight(const Checkpoint& c, const std::string& eva_name);

/// A stored FP8 weight beside the loaded one (the FP8 panel's stored view): the codes and scales as the
/// file has them, how often each code occurs, and dequantize(q) against the loaded weight. That check is
/// exact, since load() dequantized the same bytes: any difference is a loader bug.
struct StoredFp8View {
    std::string name;                 // "" when the weight is not stored in FP8
    Fp8Matrix q;                      // stored_fp8_weight
    std::vector<std::size_t> counts;  // fp8_code_counts of the codes
    Fp8ErrorMetrics check;            // dequantize(q) against the loaded weight
    /// name, dtype (F8_E4M3 / F8_E5M2), shape, scale_shape, scales, codes_head (the first 64 codes),
    /// counts, max_rel_diff_loaded.
    nlohmann::json to_json() const;
};
/// The view of `eva_name`; `loaded` is the model's weight [q.rows, q.cols] (read only when stored in FP8).
StoredFp8View stored_fp8_view(const Checkpoint& c, const std::string& eva_name, const float* loaded);

/// Checkpoint::open(path).load(); `metadata_out` receives the eva layout's __metadata__ (empty for hf).
Model<float> load_checkpoint(const std::string& path, nlohmann::json* metadata_out = nullptr);

// ----------------------------------------------------------------------------------------- writing
struct CheckpointWriteOptions {
    Layout layout = Layout::eva;
    StoreDType dtype = StoreDType::f32;
    /// Hugging Face layout: shard size limit (a tensor larger than it gets a shard of its own).
    std::uint64_t max_shard_bytes = std::uint64_t(5) << 30;
};

/// Whether `--dtype fp8` stores this tensor as E4M3 + 128×128 scales: every Linear weight inside the
/// blocks (attention projections, dense and expert w1/w2/w3), as in the V3 release; not the gate, the
/// norms, the embedding or the head.
bool is_fp8_linear(const std::string& eva_name, std::size_t rank);

/// Writes `m` to `path` (a file for eva, a folder for hf) atomically, tensor by tensor. Stored dtypes:
/// f32 all F32; bf16 all BF16 but the gate bias (F32); fp8 the Linear weights F8_E4M3 + F32 scales, the
/// gate bias F32, the rest BF16 (the V3 release's choice). `metadata`: extra eva __metadata__ entries.
void save_checkpoint(Model<float>& m, const std::string& path, const CheckpointWriteOptions& o,
                     const nlohmann::json& metadata = nlohmann::json::object());

// -------------------------------------------------------------------------------------- inspecting
/// A checkpoint's config, parameter counts (total / activated per token / MTP module / per stored dtype),
/// file bytes, KV-cache bytes per token (MLA vs MHA) and FP8 scale statistics — from the headers (and the
/// small scale tensors) only. `path`: an eva file, a Hugging Face folder (shards optional) or a config.json.
nlohmann::json inspect_checkpoint(const std::string& path);
/// How a checkpoint stores its weights, in one sentence from inspect_checkpoint's figures of its files
/// (stored_by_dtype, file_bytes): FP8 E4M3 Linear weights with 128x128 scales as DeepSeek-V3 stores them,
/// BF16, or float32; its size, and what its tensors would take in float32 (without the FP8 scales).
/// `eva inspect` prints it; the page shows it.
std::string storage_summary(const nlohmann::json& inspect);

/// Parameters of the MTP modules as Hugging Face stores them: per module one MoE block, eh_proj [dim, 2·dim],
/// enorm, hnorm and shared_head.norm ("unique"), plus its copies of the embedding and the head ("stored").
struct MtpParameterCount {
    std::uint64_t unique = 0, stored = 0;
};
MtpParameterCount mtp_parameter_count(const ModelArgs& args);  // args.n_mtp_layers modules

/// Elements of all weight_scale_inv tensors of an FP8 checkpoint (one per 128×128 block of every Linear
/// weight inside the blocks, the MTP modules' included).
std::uint64_t fp8_scale_count(const ModelArgs& args);

}  // namespace eva
