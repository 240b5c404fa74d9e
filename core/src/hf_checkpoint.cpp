// eva — Hugging Face checkpoint folders, stored dtypes, FP8 dequantization, conversion and inspection.
// See hf_checkpoint.hpp and docs/checkpoints.md.
#include "eva/hf_checkpoint.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <unistd.h>

#include "eva/checked.hpp"
#include "eva/checkpoint.hpp"
#include "eva/error.hpp"
#include "eva/io.hpp"
#include "eva/json.hpp"
#include "eva/mla.hpp"

namespace eva {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr std::size_t kBlock = 128;  // weight_block_size of the V3 release and of kernel.py

// ------------------------------------------------------------------------------------------ names
// One table of name components, Hugging Face → official inference (inference/convert.py's `mapping`
// plus its string replacements). Components not listed (layers, digits, norm, gate, experts,
// shared_experts, weight, and the MTP module's enorm, hnorm, eh_proj, shared_head) are the same in both.
const std::vector<std::pair<std::string, std::string>>& component_table() {
    static const std::vector<std::pair<std::string, std::string>> t = {
        {"self_attn", "attn"}, {"mlp", "ffn"}, {"input_layernorm", "attn_norm"},
        {"post_attention_layernorm", "ffn_norm"}, {"q_proj", "wq"}, {"q_a_proj", "wq_a"},
        {"q_a_layernorm", "q_norm"}, {"q_b_proj", "wq_b"}, {"kv_a_proj_with_mqa", "wkv_a"},
        {"kv_a_layernorm", "kv_norm"}, {"kv_b_proj", "wkv_b"}, {"o_proj", "wo"}, {"gate_proj", "w1"},
        {"down_proj", "w2"}, {"up_proj", "w3"}, {"weight_scale_inv", "scale"}, {"e_score_correction_bias", "bias"}};
    return t;
}
const std::set<std::string>& same_components() {
    static const std::set<std::string> s = {"layers", "norm", "gate", "experts", "shared_experts", "weight",
                                            "enorm", "hnorm", "eh_proj", "shared_head", "head", "embed_tokens"};
    return s;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (;;) {
        const std::size_t dot = s.find('.', start);
        parts.push_back(s.substr(start, dot - start));
        if (dot == std::string::npos) return parts;
        start = dot + 1;
    }
}
bool is_index(const std::string& c) {
    return !c.empty() && c.size() <= 9 && std::all_of(c.begin(), c.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Maps the components of a layer-internal name; `to_eva` picks the direction. False if one is unknown.
bool map_components(std::vector<std::string>& parts, std::size_t from, bool to_eva) {
    for (std::size_t i = from; i < parts.size(); ++i) {
        std::string& c = parts[i];
        if (is_index(c) || same_components().count(c)) continue;
        bool found = false;
        for (const auto& [hf, ev] : component_table()) {
            if (c == (to_eva ? hf : ev)) {
                c = to_eva ? ev : hf;
                found = true;
                break;
            }
        }
        if (!found) return false;
    }
    return true;
}

std::string join(const std::vector<std::string>& parts, std::size_t from) {
    std::string r;
    for (std::size_t i = from; i < parts.size(); ++i) r += (i > from ? "." : "") + parts[i];
    return r;
}

std::string show(const std::vector<std::size_t>& s) {
    std::string r = "[";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

// ----------------------------------------------------------------------------------------- dtypes
std::size_t element_count(const std::vector<std::size_t>& shape, const std::string& what) {
    std::uint64_t n = 1;
    for (std::size_t d : shape) n = checked_mul(n, d, what);
    return to_size(n, what);
}

std::uint16_t load_u16(const char* p) {
    std::uint16_t v;
    std::memcpy(&v, p, 2);  // little-endian storage on little-endian targets (x86-64, WebAssembly)
    return v;
}

// A layer index of an eva or Hugging Face name ("layers.{i}.…"), or -1.
long layer_of(const std::vector<std::string>& parts, std::size_t at) {
    if (parts.size() > at + 1 && parts[at] == "layers" && is_index(parts[at + 1])) return std::stol(parts[at + 1]);
    return -1;
}

// ---------------------------------------------------------------------------------------- writing
// The stored form of one tensor.
struct Planned {
    std::string name;  // in the output layout
    std::string dtype;
    std::vector<std::size_t> shape;
    std::size_t bytes = 0;
    const NamedTensor<float>* source = nullptr;
    bool is_scale = false;  // the FP8 weight's scale_inv, computed with it
};

std::string scale_name(const std::string& weight_name, Layout layout) {
    // "X.weight" → "X.scale" (eva: the official inference name) or "X.weight_scale_inv" (Hugging Face).
    const std::string stem = weight_name.substr(0, weight_name.size() - std::string("weight").size());
    return layout == Layout::eva ? stem + "scale" : weight_name + "_scale_inv";
}

// The tensors a layout stores: the model's, and in the Hugging Face layout each MTP module's copies.
std::vector<NamedTensor<float>> stored_tensors(const std::vector<NamedTensor<float>>& named, Layout layout,
                                               std::int64_t n_layers, std::int64_t n_mtp_layers) {
    std::vector<NamedTensor<float>> all = named;
    if (layout == Layout::hf) {
        // The release stores in each MTP module a copy of the embedding and of the head (eva shares them).
        const auto find = [&](const std::string& n) {
            return *std::find_if(named.begin(), named.end(), [&](const auto& t) { return t.name == n; });
        };
        for (std::int64_t k = 0; k < n_mtp_layers; ++k) {
            const std::string p = "layers." + std::to_string(n_layers + k) + ".";
            NamedTensor<float> e = find("embed.weight"), h = find("head.weight");
            e.name = p + "embed_tokens.weight";
            h.name = p + "shared_head.head.weight";
            all.push_back(e);
            all.push_back(h);
        }
    }
    return all;
}

std::vector<Planned> plan_tensors(const std::vector<NamedTensor<float>>& all, const CheckpointWriteOptions& o) {
    std::vector<Planned> plan;
    for (const auto& t : all) {
        const std::string out_name = o.layout == Layout::hf ? hf_tensor_name(t.name) : t.name;
        const std::size_t n = element_count(t.shape, t.name);
        const bool bias = t.name.size() > 5 && t.name.substr(t.name.size() - 5) == ".bias";
        if (o.dtype == StoreDType::fp8 && is_fp8_linear(t.name, t.shape.size())) {
            plan.push_back({out_name, "F8_E4M3", t.shape, n, &t, false});
            const auto ss = fp8_scale_shape(t.shape[0], t.shape[1]);
            plan.push_back({scale_name(out_name, o.layout), "F32", ss, ss[0] * ss[1] * 4, &t, true});
        } else if (o.dtype == StoreDType::f32 || bias) {
            plan.push_back({out_name, "F32", t.shape, n * 4, &t, false});
        } else {
            plan.push_back({out_name, "BF16", t.shape, n * 2, &t, false});
        }
    }
    return plan;
}

// The safetensors header for `tensors` laid out in that order (offsets from the data buffer's start),
// padded with spaces so the data starts 8-byte aligned, as SafetensorsWriter does.
std::string header_bytes(const std::vector<const Planned*>& tensors, const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    std::size_t offset = 0;
    for (const Planned* p : tensors) {
        header[p->name] = {{"dtype", p->dtype}, {"shape", p->shape}, {"data_offsets", {offset, offset + p->bytes}}};
        offset += p->bytes;
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = char((std::uint64_t(text.size()) >> (8 * i)) & 0xff);
    return out + text;
}

// Writes one safetensors file, converting each tensor only when its turn comes.
void write_shard(const std::string& path, const std::vector<const Planned*>& tensors,
                 const std::map<std::string, std::string>& metadata) {
    AtomicWriter out(path);
    const std::string head = header_bytes(tensors, metadata);
    out.write(head.data(), head.size());
    Fp8Matrix q;  // the FP8 weight just written, whose scale follows it
    std::string buf;
    for (const Planned* p : tensors) {
        const NamedTensor<float>& t = *p->source;
        const std::size_t n = t.size();
        if (p->is_scale) {
            out.write(reinterpret_cast<const char*>(q.scales.data()), q.scales.size() * sizeof(float));
        } else if (p->dtype == "F8_E4M3") {
            // Online block scales, s = max(amax, 1e-4) / 448 per 128×128 block (fp8.hpp quantize_blocks);
            // the stored scale_inv is s itself: weight ≈ code · s.
            q = quantize_blocks(t.data, t.shape[0], t.shape[1], Fp8Format::E4M3);
            out.write(reinterpret_cast<const char*>(q.codes.data()), q.codes.size());
        } else if (p->dtype == "F32") {
            out.write(reinterpret_cast<const char*>(t.data), n * sizeof(float));
        } else {  // BF16
            buf.resize(n * 2);
            for (std::size_t i = 0; i < n; ++i) {
                const std::uint16_t b = f32_to_bf16(t.data[i]);
                std::memcpy(&buf[2 * i], &b, 2);
            }
            out.write(buf.data(), buf.size());
        }
    }
    out.commit();
}

// Tensors in write order: each FP8 weight directly followed by its scale.
std::vector<const Planned*> in_order(const std::vector<Planned>& plan) {
    std::vector<const Planned*> r;
    for (const auto& p : plan) r.push_back(&p);
    return r;
}

}  // namespace

// ------------------------------------------------------------------------------------------- names
std::string hf_tensor_name(const std::string& eva_name) {
    auto fail = [&] { return ConfigError("no Hugging Face name for tensor \"" + preview(eva_name) + "\""); };
    if (eva_name == "embed.weight") return "model.embed_tokens.weight";
    if (eva_name == "head.weight") return "lm_head.weight";
    if (eva_name == "norm.weight") return "model.norm.weight";
    std::vector<std::string> parts = split(eva_name);
    if (layer_of(parts, 0) < 0 || !map_components(parts, 2, false)) throw fail();
    return "model." + join(parts, 0);
}

std::string eva_tensor_name(const std::string& hf_name) {
    auto fail = [&] { return FileError("tensor \"" + preview(hf_name) + "\" is not a DeepSeek-V2/V3 tensor name"); };
    if (hf_name == "model.embed_tokens.weight") return "embed.weight";
    if (hf_name == "lm_head.weight") return "head.weight";
    if (hf_name == "model.norm.weight") return "norm.weight";
    std::vector<std::string> parts = split(hf_name);
    if (parts.size() < 4 || parts[0] != "model" || layer_of(parts, 1) < 0 || !map_components(parts, 3, true)) throw fail();
    return join(parts, 1);
}

// ------------------------------------------------------------------------------------------ dtypes
float bf16_to_f32(std::uint16_t bits) {
    const std::uint32_t u = std::uint32_t(bits) << 16;  // bf16 is the top half of a float32
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

std::uint16_t f32_to_bf16(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40);  // NaN stays a (quiet) NaN
    // Round to nearest even on the 16 dropped bits: add 0x7fff plus the kept part's lowest bit.
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t(u >> 16);
}

float f16_to_f32(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    float mag;
    if (exp == 0) mag = std::ldexp(float(man), -24);  // subnormal: man · 2^-24
    else if (exp == 31) mag = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else mag = std::ldexp(float(man | 0x400u), int(exp) - 25);  // (1024 + man) · 2^(e − 15 − 10)
    std::uint32_t u;
    std::memcpy(&u, &mag, 4);
    u |= sign;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

std::vector<std::size_t> fp8_scale_shape(std::size_t rows, std::size_t cols) {
    return {(rows + kBlock - 1) / kBlock, (cols + kBlock - 1) / kBlock};
}

void weight_dequant(const std::uint8_t* codes, Fp8Format format, std::size_t rows, std::size_t cols,
                    const float* scale_inv, float* out) {
    // fp8.hpp's block-scaled matrix with the stored scales is exactly the kernel's computation: decode
    // each code to float32, multiply by its block's scale in float32.
    Fp8Matrix q;
    q.format = format;
    q.granularity = Fp8Granularity::Block;
    q.rows = rows;
    q.cols = cols;
    q.group = kBlock;
    q.codes.assign(codes, codes + rows * cols);
    q.scales.assign(scale_inv, scale_inv + q.scale_rows() * q.scale_cols());
    dequantize(q, out, cols);
}

void decode_tensor(const SafetensorsFile& file, const std::string& name, const std::vector<std::size_t>& shape,
                   const SafetensorsFile* scale_file, const std::string& scale_name, float* out) {
    const SafetensorsEntry& e = file.entry(name);
    const std::string where = file.source() + ": tensor \"" + preview(name) + "\"";
    if (e.shape != shape) throw FileError(where + " has shape " + show(e.shape) + ", expected " + show(shape));
    const char* p = file.tensor_bytes(e);
    const std::size_t n = element_count(shape, name);
    const bool fp8 = e.dtype == "F8_E4M3" || e.dtype == "F8_E5M2";
    if (fp8 != (scale_file != nullptr))
        throw FileError(fp8 ? where + " is " + e.dtype + " but has no scale (" + scale_name + ")"
                            : where + " is " + e.dtype + ", yet has an FP8 scale " + scale_name);
    if (e.dtype == "F32") {
        std::memcpy(out, p, n * 4);
    } else if (e.dtype == "BF16") {
        for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(p + 2 * i));
    } else if (e.dtype == "F16") {
        for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(p + 2 * i));
    } else if (fp8) {
        if (shape.size() != 2) throw FileError(where + ": FP8 tensors must be 2-D weights [out, in]");
        const SafetensorsEntry& s = scale_file->entry(scale_name);
        const auto want = fp8_scale_shape(shape[0], shape[1]);
        const std::string swhere = scale_file->source() + ": scale \"" + preview(scale_name) + "\"";
        if (s.dtype != "F32") throw FileError(swhere + " is " + s.dtype + ", expected F32");
        if (s.shape != want)
            throw FileError(swhere + " has shape " + show(s.shape) + ", expected " + show(want) + " (ceil(" +
                            std::to_string(shape[0]) + "/128), ceil(" + std::to_string(shape[1]) + "/128))");
        std::vector<float> scales(want[0] * want[1]);
        std::memcpy(scales.data(), scale_file->tensor_bytes(s), scales.size() * 4);
        weight_dequant(reinterpret_cast<const std::uint8_t*>(p), e.dtype == "F8_E4M3" ? Fp8Format::E4M3 : Fp8Format::E5M2,
                       shape[0], shape[1], scales.data(), out);
    } else {
        throw FileError(where + " has dtype " + e.dtype + "; eva reads F32, F16, BF16, F8_E4M3 and F8_E5M2");
    }
}

// ----------------------------------------------------------------------------------------- reading
Layout parse_layout(const std::string& s) {
    if (s == "eva") return Layout::eva;
    if (s == "hf") return Layout::hf;
    throw ConfigError("--layout must be eva or hf, got \"" + preview(s) + "\"");
}

StoreDType parse_store_dtype(const std::string& s) {
    if (s == "f32") return StoreDType::f32;
    if (s == "bf16") return StoreDType::bf16;
    if (s == "fp8") return StoreDType::fp8;
    throw ConfigError("--dtype must be f32, bf16 or fp8, got \"" + preview(s) + "\"");
}

std::map<std::string, std::string> parse_safetensors_index(const std::string& text, const std::string& source) {
    const json j = parse_json(text, source);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        throw FileError(source + ": must be an object with a \"weight_map\" object");
    for (const auto& [k, v] : j.items()) {
        if (k == "metadata") {
            if (!v.is_object()) throw FileError(source + ": \"metadata\" must be an object");
        } else if (k != "weight_map") {
            throw FileError(source + ": unknown field \"" + preview(k) + "\" (known: metadata, weight_map)");
        }
    }
    std::map<std::string, std::string> map;
    for (const auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string()) throw FileError(source + ": weight_map[\"" + preview(name) + "\"] must be a file name");
        const std::string f = file.get<std::string>();
        // A shard is a plain file beside the index: no folders, no way out of the checkpoint.
        const bool plain = !f.empty() && f.find('/') == std::string::npos && f.find('\\') == std::string::npos &&
                           f.find('\0') == std::string::npos && f[0] != '.' && f.size() > 12 &&
                           f.substr(f.size() - 12) == ".safetensors";
        if (!plain)
            throw FileError(source + ": weight_map[\"" + preview(name) + "\"] = \"" + preview(f) +
                            "\" is not a .safetensors file name in the checkpoint's folder");
        map.emplace(name, f);
    }
    if (map.empty()) throw FileError(source + ": weight_map is empty");
    return map;
}

void Checkpoint::add_file(const std::string& path, const std::string& display) {
    file_bytes_ = checked_add(file_bytes_, input_file_size(path, ""), "checkpoint bytes");
    files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::parse(map_input_file(path, kMaxDataFileBytes, ""), display)));
    file_names_.push_back(display);
}

Checkpoint Checkpoint::open(const std::string& path) {
    Checkpoint c;
    if (!is_directory(path)) {  // an eva file: official names, ModelArgs in __metadata__
        c.layout_ = Layout::eva;
        c.add_file(path, path);
        const SafetensorsFile& f = *c.files_[0];
        const auto cfg = checkpoint_config(f);
        c.config_.args = cfg.first;
        c.moe_ = cfg.second;
        c.config_.gate_bias = c.moe_.balance == Balance::aux_free;
        for (const auto& [k, v] : f.metadata()) {
            try {
                c.metadata_[k] = parse_json(v, "checkpoint: __metadata__[\"" + preview(k) + "\"]");
            } catch (const FileError&) {
                c.metadata_[k] = v;
            }
        }
        for (const auto& [name, e] : f.entries()) {
            const bool scale = name.size() > 6 && name.substr(name.size() - 6) == ".scale";
            const std::string weight = scale ? name.substr(0, name.size() - 5) + "weight" : name;
            Stored& s = c.tensors_[weight];
            if (scale) {
                s.scale_file = &f;
                s.scale_name = name;
                c.config_.fp8 = true;
            } else {
                s.file = &f;
                s.name = name;
            }
        }
        c.index_tensors();
        return c;
    }

    // A Hugging Face folder.
    c.layout_ = Layout::hf;
    const std::string dir = path.back() == '/' ? path : path + "/";
    c.config_ = hf_config_from_json(parse_json(read_input_file(dir + "config.json", kMaxConfigFileBytes, "config"),
                                               dir + "config.json"));
    c.moe_ = c.config_.moe();
    const std::string index_path = dir + "model.safetensors.index.json";
    std::map<std::string, std::string> weight_map;
    const bool sharded = fs::exists(index_path);
    if (sharded) {
        weight_map = parse_safetensors_index(read_input_file(index_path, kMaxConfigFileBytes, "index"), index_path);
        std::set<std::string> shards;
        for (const auto& [name, file] : weight_map) shards.insert(file);
        for (const auto& file : shards) {
            if (!fs::exists(dir + file))
                throw FileError(index_path + ": shard " + preview(file) + " is missing (named by the index for " +
                                std::to_string(std::count_if(weight_map.begin(), weight_map.end(),
                                                             [&](const auto& kv) { return kv.second == file; })) +
                                " tensors)");
            c.add_file(dir + file, file);
        }
    } else {
        if (!fs::exists(dir + "model.safetensors"))
            throw FileError(path + ": a Hugging Face checkpoint needs model.safetensors or model.safetensors.index.json");
        c.add_file(dir + "model.safetensors", "model.safetensors");
    }
    // Every .safetensors file in the folder must be part of the checkpoint (a stray shard is a mistake).
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name.size() > 12 && name.substr(name.size() - 12) == ".safetensors" &&
            std::find(c.file_names_.begin(), c.file_names_.end(), name) == c.file_names_.end())
            throw FileError(path + ": " + preview(name) + " is not part of the checkpoint (" +
                            (sharded ? "the index does not name it" : "no index") + ")");
    }

    const std::int64_t L = c.config_.args.n_layers, mtp = c.config_.args.n_mtp_layers;
    std::map<std::string, std::string> seen;  // stored name → shard
    for (const auto& f : c.files_) {
        for (const auto& [name, e] : f->entries()) {
            const auto [it, fresh] = seen.emplace(name, f->source());
            if (!fresh) throw FileError(path + ": tensor \"" + preview(name) + "\" is in two shards, " + it->second + " and " + f->source());
            if (sharded) {
                const auto w = weight_map.find(name);
                if (w == weight_map.end())
                    throw FileError(path + ": tensor \"" + preview(name) + "\" of " + f->source() + " is not in the index");
                if (w->second != f->source())
                    throw FileError(path + ": tensor \"" + preview(name) + "\" is in " + f->source() + " but the index says " + w->second);
            }
            const std::vector<std::string> parts = split(name);
            const long layer = layer_of(parts, 1);
            if (parts[0] == "model" && layer >= L) {
                if (layer >= L + mtp)
                    throw FileError(path + ": tensor \"" + preview(name) + "\" belongs to layer " + std::to_string(layer) +
                                    ", beyond num_hidden_layers + num_nextn_predict_layers = " + std::to_string(L + mtp));
                // An MTP module stores its own copies of the embedding and the head; eva's modules share
                // the main model's (as the V3 report describes), so the copies are not loaded.
                const std::string tail = join(parts, 3);
                if (tail == "embed_tokens.weight" || tail == "shared_head.head.weight") {
                    c.skipped_.push_back(name);
                    continue;
                }
            }
            const std::string ev = eva_tensor_name(name);
            const bool scale = parts.back() == "weight_scale_inv";
            const std::string weight = scale ? ev.substr(0, ev.size() - 5) + "weight" : ev;
            Stored& s = c.tensors_[weight];
            if (scale) {
                s.scale_file = f.get();
                s.scale_name = name;
            } else {
                s.file = f.get();
                s.name = name;
            }
        }
    }
    for (const auto& [name, file] : weight_map)
        if (!seen.count(name)) throw FileError(path + ": tensor \"" + preview(name) + "\" is in the index but not in " + file);
    c.index_tensors();
    return c;
}

// The tensor names of a model with `args`' structure: the same layers, experts, query path and biases
// at the smallest sizes, so a 671B config costs a few MB here.
std::vector<std::string> expected_names(const ModelArgs& args, const MoeConfig& moe) {
    ModelArgs a = args;
    a.vocab_size = a.dim = a.inter_dim = a.moe_inter_dim = a.kv_lora_rank = a.qk_nope_head_dim = a.v_head_dim = 1;
    a.n_heads = 1;
    a.qk_rope_head_dim = 2;
    if (a.q_lora_rank > 0) a.q_lora_rank = 1;
    a.max_seq_len = 2;
    a.original_seq_len = 2;
    MoeConfig mc = moe;
    mc.dim = 1;
    mc.moe_inter_dim = 1;
    Model<float> m = model_alloc<float>(a, mc);
    std::vector<std::string> names;
    for (const auto& t : named_tensors(m.w)) names.push_back(t.name);
    return names;
}

// Checks the stored names against the config before anything is allocated: every tensor the config
// implies is there (with its scale when it is FP8), nothing else, and the elements stored equal the
// elements the config implies (so a config claiming huge sizes beside small files allocates nothing).
void Checkpoint::index_tensors() {
    auto shown = [&](const std::string& eva_name) { return layout_ == Layout::hf ? hf_tensor_name(eva_name) : eva_name; };
    const std::vector<std::string> names = expected_names(config_.args, moe_);
    const std::set<std::string> expected(names.begin(), names.end());
    for (const auto& n : names)
        if (!tensors_.count(n) || !tensors_.at(n).file)
            throw FileError("checkpoint: missing tensor \"" + shown(n) + "\" (the config implies it)");
    std::uint64_t stored = 0;
    for (const auto& [name, s] : tensors_) {
        if (!s.file) throw FileError("checkpoint: scale \"" + preview(s.scale_name) + "\" has no weight tensor");
        if (!expected.count(name)) throw FileError("checkpoint: unexpected tensor \"" + preview(s.name) + "\" for this config");
        const SafetensorsEntry& e = s.file->entry(s.name);
        const bool fp8 = e.dtype == "F8_E4M3" || e.dtype == "F8_E5M2";
        if (fp8 && !s.scale_file)
            throw FileError(s.file->source() + ": tensor \"" + preview(s.name) + "\" is " + e.dtype + " but its scale \"" +
                            (layout_ == Layout::hf ? s.name + "_scale_inv" : scale_name(s.name, Layout::eva)) + "\" is missing");
        stored = checked_add(stored, element_count(e.shape, s.name), "checkpoint elements");
    }
    const std::uint64_t need = model_bytes(config_.args, moe_, 1);
    if (stored != need)
        throw FileError("checkpoint: its config implies " + std::to_string(need) + " parameters, the file" + (files_.size() > 1 ? "s hold " : " holds ") +
                        std::to_string(stored) + " (a tensor has the wrong shape)");
}

Model<float> Checkpoint::load() const {
    Model<float> m = model_alloc<float>(config_.args, moe_);  // checks the memory first
    std::set<std::string> used;
    for (const auto& t : named_tensors(m.w)) {
        const auto it = tensors_.find(t.name);
        if (it == tensors_.end())
            throw FileError("checkpoint: missing tensor \"" +
                            (layout_ == Layout::hf ? hf_tensor_name(t.name) : t.name) + "\"");
        const Stored& s = it->second;
        decode_tensor(*s.file, s.name, t.shape, s.scale_file, s.scale_name, t.data);
        used.insert(t.name);
    }
    for (const auto& [name, s] : tensors_)
        if (!used.count(name)) throw FileError("checkpoint: unexpected tensor \"" + preview(s.name) + "\" for this config");
    return m;
}

Fp8Matrix stored_fp8_weight(const Checkpoint& c, const std::string& eva_name) {
    const auto it = c.tensors().find(eva_name);
    if (it == c.tensors().end() || !it->second.file) throw FileError("checkpoint: no tensor \"" + preview(eva_name) + "\"");
    const Checkpoint::Stored& s = it->second;
    const SafetensorsEntry& e = s.file->entry(s.name);
    Fp8Matrix q;
    if ((e.dtype != "F8_E4M3" && e.dtype != "F8_E5M2") || !s.scale_file || e.shape.size() != 2) return q;
    q.format = e.dtype == "F8_E4M3" ? Fp8Format::E4M3 : Fp8Format::E5M2;
    q.granularity = Fp8Granularity::Block;
    q.group = kBlock;
    q.rows = e.shape[0];
    q.cols = e.shape[1];
    const SafetensorsEntry& se = s.scale_file->entry(s.scale_name);
    const std::string swhere = s.scale_file->source() + ": scale \"" + preview(s.scale_name) + "\"";
    if (se.dtype != "F32") throw FileError(swhere + " is " + se.dtype + ", expected F32");
    if (se.shape != fp8_scale_shape(q.rows, q.cols)) throw FileError(swhere + " has shape " + show(se.shape) + ", expected " + show(fp8_scale_shape(q.rows, q.cols)));
    const auto* codes = reinterpret_cast<const std::uint8_t*>(s.file->tensor_bytes(e));
    q.codes.assign(codes, codes + q.rows * q.cols);
    q.scales.resize(q.scale_rows() * q.scale_cols());
    std::memcpy(q.scales.data(), s.scale_file->tensor_bytes(se), q.scales.size() * sizeof(float));
    return q;
}

StoredFp8View stored_fp8_view(const Checkpoint& c, const std::string& eva_name, const float* loaded) {
    StoredFp8View v;
    v.q = stored_fp8_weight(c, eva_name);
    if (v.q.codes.empty()) return v;  // stored in BF16/F32 (the gate, norms, embedding, head)
    v.name = eva_name;
    v.counts = fp8_code_counts(v.q.codes.data(), v.q.codes.size());
    std::vector<float> deq(v.q.rows * v.q.cols);
    dequantize(v.q, deq.data(), v.q.cols);
    v.check = error_metrics(loaded, deq.data(), deq.size());
    return v;
}

json StoredFp8View::to_json() const {
    const std::size_t head = std::min<std::size_t>(64, q.codes.size());
    return {{"name", name}, {"dtype", q.format == Fp8Format::E4M3 ? "F8_E4M3" : "F8_E5M2"},
            {"shape", {q.rows, q.cols}}, {"scale_shape", {q.scale_rows(), q.scale_cols()}}, {"scales", q.scales},
            {"codes_head", std::vector<int>(q.codes.begin(), q.codes.begin() + std::ptrdiff_t(head))},
            {"counts", counts}, {"max_rel_diff_loaded", check.max_rel_error}};
}

Model<float> load_checkpoint(const std::string& path, json* metadata_out) {
    const Checkpoint c = Checkpoint::open(path);
    if (metadata_out) *metadata_out = c.metadata();
    return c.load();
}

// ----------------------------------------------------------------------------------------- writing
bool is_fp8_linear(const std::string& eva_name, std::size_t rank) {
    if (rank != 2 || eva_name.rfind("layers.", 0) != 0) return false;
    const std::string tail = ".weight";
    if (eva_name.size() < tail.size() || eva_name.substr(eva_name.size() - tail.size()) != tail) return false;
    // The gate stays in higher precision (DeepSeek-V3 §3.3.1), as in the release; so do an MTP module's
    // copies of the embedding and the head.
    return eva_name.find(".ffn.gate.") == std::string::npos && eva_name.find(".embed_tokens.") == std::string::npos &&
           eva_name.find(".shared_head.head.") == std::string::npos;
}

void save_checkpoint(Model<float>& m, const std::string& path, const CheckpointWriteOptions& o, const json& metadata) {
    const std::vector<NamedTensor<float>> named = named_tensors(m.w);
    const std::vector<NamedTensor<float>> all = stored_tensors(named, o.layout, m.args.n_layers, m.args.n_mtp_layers);
    const std::vector<Planned> plan = plan_tensors(all, o);
    if (o.layout == Layout::eva) {
        ModelArgs args = m.args;
        args.dtype = o.dtype == StoreDType::fp8 ? "fp8" : "bf16";
        std::map<std::string, std::string> meta = {
            {"config", to_json(args).dump()},
            {"moe", json{{"balance", to_string(m.moe.balance)}, {"gamma", m.moe.gamma}, {"alpha", m.moe.alpha}}.dump()},
            {"format", "eva"}};
        for (const auto& [k, v] : metadata.items()) meta[k] = v.dump();
        write_shard(path, in_order(plan), meta);
        return;
    }

    HfConfig hc;
    hc.args = m.args;
    hc.gate_bias = m.moe.balance == Balance::aux_free;
    hc.fp8 = o.dtype == StoreDType::fp8;
    json config = hf_config_to_json(hc);
    config["torch_dtype"] = o.dtype == StoreDType::f32 ? "float32" : "bfloat16";
    if (fs::exists(path) && !is_directory(path)) throw FileError(path + ": exists and is not a folder");
    // Everything goes into a temporary folder beside the target, renamed over it at the end.
    const std::string tmp = path + ".tmp" + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(tmp, ec);
    if (!fs::create_directory(tmp, ec))
        throw FileError(path + ": cannot create the temporary folder " + tmp + " (" + ec.message() + ")");
    try {
        // Shards filled in order up to max_shard_bytes (an FP8 weight and its scale stay together).
        std::vector<std::vector<const Planned*>> shards(1);
        std::uint64_t in_shard = 0;
        for (std::size_t i = 0; i < plan.size(); ++i) {
            const std::uint64_t b = plan[i].bytes + (i + 1 < plan.size() && plan[i + 1].is_scale ? plan[i + 1].bytes : 0);
            if (!plan[i].is_scale && in_shard > 0 && in_shard + b > o.max_shard_bytes) {
                shards.emplace_back();
                in_shard = 0;
            }
            shards.back().push_back(&plan[i]);
            in_shard += plan[i].bytes;
        }
        const std::map<std::string, std::string> meta = {{"format", "pt"}};
        if (shards.size() == 1) {
            write_shard(tmp + "/model.safetensors", shards[0], meta);
        } else {
            json weight_map = json::object();
            std::uint64_t total = 0;
            for (std::size_t k = 0; k < shards.size(); ++k) {
                char name[64];
                std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
                write_shard(tmp + "/" + name, shards[k], meta);
                for (const Planned* p : shards[k]) {
                    weight_map[p->name] = name;
                    total += p->bytes;
                }
            }
            write_file_atomically(tmp + "/model.safetensors.index.json",
                                  json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) + "\n");
        }
        write_file_atomically(tmp + "/config.json", config.dump(2) + "\n");
        // Replace the target: move an old folder aside, rename the new one in, then delete the old.
        const std::string old = path + ".old" + std::to_string(::getpid());
        const bool had = fs::exists(path);
        if (had) fs::rename(path, old);
        fs::rename(tmp, path);
        if (had) fs::remove_all(old);
    } catch (const fs::filesystem_error& e) {
        fs::remove_all(tmp, ec);
        throw FileError(path + ": " + e.what());
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
}

// -------------------------------------------------------------------------------------- inspecting
MtpParameterCount mtp_parameter_count(const ModelArgs& args) {
    // parameter_count counts the modules (eva/mtp.hpp); the difference to the main model is theirs.
    ModelArgs main = args;
    main.n_mtp_layers = 0;
    const std::uint64_t unique = parameter_count(args) - parameter_count(main);
    const std::uint64_t copies = 2 * std::uint64_t(args.vocab_size) * std::uint64_t(args.dim);  // embed_tokens, shared_head.head
    return {unique, unique + std::uint64_t(args.n_mtp_layers) * copies};
}

std::uint64_t fp8_scale_count(const ModelArgs& a) {
    const std::int64_t n_mtp_layers = a.n_mtp_layers;
    using u64 = std::uint64_t;
    const auto blocks = [](std::int64_t rows, std::int64_t cols) {
        return u64((rows + 127) / 128) * u64((cols + 127) / 128);
    };
    const std::int64_t D = a.dim, H = a.n_heads;
    const u64 q = a.q_lora_rank == 0 ? blocks(H * a.qk_head_dim(), D)
                                     : blocks(a.q_lora_rank, D) + blocks(H * a.qk_head_dim(), a.q_lora_rank);
    const u64 attn = q + blocks(a.kv_lora_rank + a.qk_rope_head_dim, D) +
                     blocks(H * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank) + blocks(D, H * a.v_head_dim);
    const auto mlp = [&](std::int64_t inter) { return 2 * blocks(inter, D) + blocks(D, inter); };
    const u64 moe = u64(a.n_routed_experts) * mlp(a.moe_inter_dim) +
                    (a.n_shared_experts > 0 ? mlp(a.n_shared_experts * a.moe_inter_dim) : 0);
    const u64 main = u64(a.n_layers) * attn + u64(a.n_dense_layers) * mlp(a.inter_dim) + u64(a.n_layers - a.n_dense_layers) * moe;
    return main + u64(n_mtp_layers) * (attn + moe + blocks(D, 2 * D));  // an MTP module: a MoE block + eh_proj
}

json inspect_checkpoint(const std::string& path) {
    json r = json::object();
    r["path"] = path;
    HfConfig cfg;
    std::vector<const SafetensorsFile*> files;
    std::unique_ptr<Checkpoint> ckpt;
    std::uint64_t index_tensors = 0;
    const bool config_only = !is_directory(path) && path.size() > 5 && path.substr(path.size() - 5) == ".json";
    const bool folder_without_weights =
        is_directory(path) && !fs::exists(path + "/model.safetensors") && !fs::exists(path + "/model.safetensors.index.json");
    bool index_only = false;
    if (config_only || folder_without_weights) {
        const std::string cp = config_only ? path : path + "/config.json";
        cfg = hf_config_from_json(parse_json(read_input_file(cp, kMaxConfigFileBytes, "config"), cp));
        r["layout"] = "config";
    } else if (is_directory(path) && fs::exists(path + "/model.safetensors.index.json")) {
        // Index present: open the shards if they are all there; else report from the index alone.
        const std::string ip = path + "/model.safetensors.index.json";
        const auto wm = parse_safetensors_index(read_input_file(ip, kMaxConfigFileBytes, "index"), ip);
        index_tensors = wm.size();
        bool all = true;
        for (const auto& [n, f] : wm) all = all && fs::exists(path + "/" + f);
        if (all) {
            ckpt = std::make_unique<Checkpoint>(Checkpoint::open(path));
        } else {
            index_only = true;
            cfg = hf_config_from_json(parse_json(read_input_file(path + "/config.json", kMaxConfigFileBytes, "config"),
                                                 path + "/config.json"));
            r["layout"] = "hf (index only, shards absent)";
        }
    } else {
        ckpt = std::make_unique<Checkpoint>(Checkpoint::open(path));
    }
    if (ckpt) {
        cfg = ckpt->config();
        r["layout"] = ckpt->layout() == Layout::hf ? "hf" : "eva";
        r["files"] = ckpt->files();
        r["file_bytes"] = ckpt->file_bytes();
        r["skipped_mtp_tensors"] = ckpt->skipped().size();
    }
    const ModelArgs& a = cfg.args;
    r["config"] = to_json(a);
    r["gate_bias"] = cfg.gate_bias;
    r["fp8_weights"] = cfg.fp8;
    r["mtp_modules"] = a.n_mtp_layers;

    ModelArgs main = a;  // the main model alone: the release's 671B / 37B
    main.n_mtp_layers = 0;
    const std::uint64_t total = parameter_count(main), active = parameter_count(main, true);
    const MtpParameterCount mtp = mtp_parameter_count(a);
    // What a hub page counts: every stored element, so also the gate biases and, for FP8, the scales.
    const std::uint64_t biases = cfg.gate_bias ? std::uint64_t(a.n_layers - a.n_dense_layers + a.n_mtp_layers) * std::uint64_t(a.n_routed_experts) : 0;
    const std::uint64_t scales = cfg.fp8 ? fp8_scale_count(a) : 0;
    r["parameters"] = {{"total", total},
                       {"activated_per_token", active},
                       {"mtp_unique", mtp.unique},
                       {"mtp_stored", mtp.stored},
                       {"total_with_mtp_stored", total + mtp.stored},
                       {"gate_biases", biases},
                       {"fp8_scales", scales},
                       {"stored_elements", total + mtp.stored + biases + scales}};

    // KV cache per token (all layers), bf16 like the release's activations.
    json kv = json::object();
    for (const auto& s : kv_cache_memory(a, 1, CacheDType::bf16, 1))
        if (s.name == "MLA" || s.name == "MHA") kv[s.name] = {{"elements_per_token_layer", s.elements_per_token_layer},
                                                               {"bytes_per_token", s.bytes_per_token}};
    kv["dtype"] = "bf16";
    kv["mha_over_mla"] = double(kv["MHA"]["bytes_per_token"].get<std::int64_t>()) / double(kv["MLA"]["bytes_per_token"].get<std::int64_t>());
    r["kv_cache"] = kv;

    if (index_only) r["index_tensors"] = index_tensors;
    if (!ckpt) return r;

    // Per stored dtype, from the headers; FP8 scale statistics from the (small) scale tensors.
    json by = json::object();
    std::uint64_t fp8_tensors = 0, blocks = 0, partial = 0, scale_count = 0;
    double smin = INFINITY, smax = 0, ssum = 0;
    std::set<const SafetensorsFile*> seen;
    for (const auto& [name, s] : ckpt->tensors()) {
        const SafetensorsEntry& e = s.file->entry(s.name);
        json& d = by[e.dtype];
        if (d.is_null()) d = {{"tensors", 0}, {"elements", 0}, {"bytes", 0}};
        d["tensors"] = d["tensors"].get<std::uint64_t>() + 1;
        d["elements"] = d["elements"].get<std::uint64_t>() + element_count(e.shape, name);
        d["bytes"] = d["bytes"].get<std::uint64_t>() + (e.end - e.begin);
        if (!s.scale_file) continue;
        const SafetensorsEntry& se = s.scale_file->entry(s.scale_name);
        ++fp8_tensors;
        if (se.dtype != "F32" || se.shape.size() != 2) continue;  // load() names the problem
        const std::size_t n = se.shape[0] * se.shape[1];
        blocks += n;
        // Partial blocks: the last block row if rows % 128 ≠ 0, the last block column if cols % 128 ≠ 0.
        if (e.shape.size() == 2) {
            const bool r_edge = e.shape[0] % kBlock != 0, c_edge = e.shape[1] % kBlock != 0;
            partial += (r_edge ? se.shape[1] : 0) + (c_edge ? se.shape[0] : 0) - (r_edge && c_edge ? 1 : 0);
        }
        const char* p = s.scale_file->tensor_bytes(se);
        for (std::size_t i = 0; i < n; ++i) {
            float v;
            std::memcpy(&v, p + 4 * i, 4);
            smin = std::min(smin, double(v));
            smax = std::max(smax, double(v));
            ssum += v;
            ++scale_count;
        }
    }
    r["stored_by_dtype"] = by;
    if (fp8_tensors)
        r["fp8_scales"] = {{"tensors", fp8_tensors}, {"blocks", blocks}, {"partial_blocks", partial},
                           {"min", scale_count ? smin : 0.0}, {"max", smax}, {"mean", scale_count ? ssum / double(scale_count) : 0.0}};
    return r;
}

std::string storage_summary(const nlohmann::json& inspect) {
    const json& by = inspect.at("stored_by_dtype");
    const std::string how = by.contains("F8_E4M3") ? "weights stored as DeepSeek-V3 stores them: FP8 E4M3 Linear weights "
                                                     "with 128x128 scales (weight_scale_inv), the rest BF16"
                            : by.contains("BF16") ? "weights stored in BF16"
                                                  : "weights stored in float32";
    // The file's own tensors in float32 (stored_by_dtype counts every tensor once; an FP8 weight's scales
    // are part of it, not elements of their own, and float32 needs none).
    std::uint64_t elements = 0;
    for (const auto& [dtype, d] : by.items()) elements = checked_add(elements, d.at("elements").get<std::uint64_t>(), "elements");
    const std::uint64_t f32_bytes = checked_mul(4, elements, "float32 bytes of the stored elements");
    return how + ", " + format_bytes(inspect.at("file_bytes").get<std::uint64_t>()) + " (float32 would be " +
           format_bytes(f32_bytes) + ")";
}

}  // namespace eva
