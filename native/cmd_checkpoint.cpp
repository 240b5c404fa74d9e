// Checkpoints from the command line:
//   eva convert IN OUT    eva file ↔ Hugging Face folder, stored as f32, bf16 or fp8 (V3's E4M3 + 128×128 scales)
//   eva inspect PATH      config, parameter counts, bytes, KV cache per token, FP8 scales — headers only
#include <cinttypes>
#include <cstdio>
#include <memory>

#include "cli.hpp"
#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/hf_checkpoint.hpp"

namespace eva::cli {
namespace {

struct ConvertOptions {
    std::string in, out, layout = "eva", dtype = "f32";
    double max_shard_gb = 5.0;
};

void run_convert(const ConvertOptions& o) {
    CheckpointWriteOptions w;
    w.layout = parse_layout(o.layout);
    w.dtype = parse_store_dtype(o.dtype);
    if (!(o.max_shard_gb > 0) || o.max_shard_gb > 1e6) throw ConfigError("--max-shard-gb must be a positive number of GB");
    w.max_shard_bytes = std::uint64_t(o.max_shard_gb * 1e9);
    nlohmann::json meta;
    Model<float> m = load_checkpoint(o.in, &meta);
    nlohmann::json keep = nlohmann::json::object();  // eva → eva keeps extra metadata such as a training state
    for (const auto& [k, v] : meta.items())
        if (k != "config" && k != "moe" && k != "format") keep[k] = v;
    save_checkpoint(m, o.out, w, keep);
    std::printf("wrote %s (%s layout, %s)\n", o.out.c_str(), o.layout.c_str(), o.dtype.c_str());
}

// 671.0B, 37.6B, 563.8k: parameter counts the way the releases quote them.
std::string count(double x) {
    char buf[32];
    if (x >= 1e9) std::snprintf(buf, sizeof buf, "%.1fB", x / 1e9);
    else if (x >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", x / 1e6);
    else if (x >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", x / 1e3);
    else std::snprintf(buf, sizeof buf, "%.0f", x);
    return buf;
}

void print_inspect(const nlohmann::json& r) {
    const auto& p = r["parameters"];
    const auto& c = r["config"];
    auto b = [](const nlohmann::json& x) { return count(x.get<double>()); };
    std::printf("%s  (%s layout)\n", r["path"].get<std::string>().c_str(), r["layout"].get<std::string>().c_str());
    std::printf("  dim %" PRId64 ", %" PRId64 " layers (%" PRId64 " dense), %" PRId64 " heads, %" PRId64
                " routed experts (%" PRId64 " active, %" PRId64 " shared), score %s, q_lora_rank %" PRId64
                ", kv_lora_rank %" PRId64 ", MTP modules %" PRId64 "%s\n",
                c["dim"].get<std::int64_t>(), c["n_layers"].get<std::int64_t>(), c["n_dense_layers"].get<std::int64_t>(),
                c["n_heads"].get<std::int64_t>(), c["n_routed_experts"].get<std::int64_t>(),
                c["n_activated_experts"].get<std::int64_t>(), c["n_shared_experts"].get<std::int64_t>(),
                c["score_func"].get<std::string>().c_str(), c["q_lora_rank"].get<std::int64_t>(),
                c["kv_lora_rank"].get<std::int64_t>(), r["mtp_modules"].get<std::int64_t>(),
                r["fp8_weights"].get<bool>() ? ", FP8 weights" : "");
    std::printf("  parameters: %s total, %s activated per token (main model)\n", b(p["total"]).c_str(), b(p["activated_per_token"]).c_str());
    if (r["mtp_modules"].get<std::int64_t>() > 0)
        std::printf("  MTP modules: %s unique, %s as stored (with their embedding and head copies); "
                    "main + MTP as stored: %s\n",
                    b(p["mtp_unique"]).c_str(), b(p["mtp_stored"]).c_str(), b(p["total_with_mtp_stored"]).c_str());
    if (p["fp8_scales"].get<double>() > 0 || p["gate_biases"].get<double>() > 0)
        std::printf("  stored elements: %s (with %s gate-bias entries and %s FP8 scales)\n", b(p["stored_elements"]).c_str(),
                    b(p["gate_biases"]).c_str(), b(p["fp8_scales"]).c_str());
    const auto& kv = r["kv_cache"];
    std::printf("  KV cache per token (bf16, all layers): MLA %s, MHA %s (%.1fx)\n",
                format_bytes(kv["MLA"]["bytes_per_token"].get<std::uint64_t>()).c_str(),
                format_bytes(kv["MHA"]["bytes_per_token"].get<std::uint64_t>()).c_str(), kv["mha_over_mla"].get<double>());
    if (r.contains("file_bytes"))
        std::printf("  files: %zu, %s\n", r["files"].size(), format_bytes(r["file_bytes"].get<std::uint64_t>()).c_str());
    if (r.contains("index_tensors"))
        std::printf("  index: %" PRIu64 " tensors named (shards not present)\n", r["index_tensors"].get<std::uint64_t>());
    if (r.contains("stored_by_dtype")) std::printf("  %s\n", storage_summary(r).c_str());
    if (r.contains("stored_by_dtype"))
        for (const auto& [dt, d] : r["stored_by_dtype"].items())
            std::printf("  %-8s %6" PRIu64 " tensors, %s elements, %s\n", dt.c_str(), d["tensors"].get<std::uint64_t>(),
                        b(d["elements"]).c_str(), format_bytes(d["bytes"].get<std::uint64_t>()).c_str());
    if (r.contains("fp8_scales")) {
        const auto& s = r["fp8_scales"];
        std::printf("  FP8 scales: %" PRIu64 " weights, %" PRIu64 " 128x128 blocks (%" PRIu64 " partial), scale_inv %.3g .. %.3g, mean %.3g\n",
                    s["tensors"].get<std::uint64_t>(), s["blocks"].get<std::uint64_t>(), s["partial_blocks"].get<std::uint64_t>(),
                    s["min"].get<double>(), s["max"].get<double>(), s["mean"].get<double>());
    }
    if (r.value("skipped_mtp_tensors", 0) > 0)
        std::printf("  %zu MTP tensors are not loaded (this model has no MTP)\n", r["skipped_mtp_tensors"].get<std::size_t>());
}

}  // namespace

void add_checkpoint_commands(CLI::App& app) {
    {
        auto o = std::make_shared<ConvertOptions>();
        auto* c = app.add_subcommand("convert", "Convert a checkpoint: eva file <-> Hugging Face folder, f32 / bf16 / fp8");
        c->add_option("in", o->in, "eva .safetensors file or Hugging Face folder")->required()->check(CLI::ExistingPath);
        c->add_option("out", o->out, "Output: a file (--layout eva) or a folder (--layout hf), replaced atomically")->required();
        c->add_option("--layout", o->layout, "Output layout: eva (official inference names, one file) or hf (config.json + shards)")
            ->capture_default_str()->check(CLI::IsMember({"eva", "hf"}));
        c->add_option("--dtype", o->dtype,
                      "Stored dtype: f32; bf16; fp8 = Linear weights in the blocks as E4M3 with 128x128 scale_inv "
                      "(the DeepSeek-V3 release), the rest BF16")
            ->capture_default_str()->check(CLI::IsMember({"f32", "bf16", "fp8"}));
        c->add_option("--max-shard-gb", o->max_shard_gb, "hf layout: shard size limit in GB (1e9 bytes)")->capture_default_str();
        c->callback([o] { run_convert(*o); });
    }
    {
        auto path = std::make_shared<std::string>();
        auto json = std::make_shared<bool>(false);
        auto* c = app.add_subcommand("inspect",
                                     "Config, parameters, bytes, KV cache and FP8 scales of a checkpoint or config.json (headers only)");
        c->add_option("path", *path, "eva .safetensors, Hugging Face folder, or config.json")->required()->check(CLI::ExistingPath);
        c->add_flag("--json", *json, "Print one JSON object");
        c->callback([path, json] {
            const nlohmann::json r = inspect_checkpoint(*path);
            if (*json) return print_json(r);
            print_inspect(r);
        });
    }
}

}  // namespace eva::cli
