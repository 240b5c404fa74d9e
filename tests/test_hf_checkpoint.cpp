// hf_checkpoint: the official name map, the stored dtypes, weight_dequant bit for bit against an
// independent decoding, and checkpoints written and read back in both layouts and all three dtypes.
// (Folders written by PyTorch are checked by tests/cli_hf.sh.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/hf_checkpoint.hpp"
#include "eva/rng.hpp"

namespace {

std::uint32_t bits(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
}
float from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// An FP8 code's value straight from the OFP8 layout (sign, E exponent bits, M mantissa bits, bias),
// written without eva's codec: (-1)^s · 2^(e-bias) · (1 + m/2^M), subnormal 2^(1-bias) · m/2^M.
double ofp8_value(std::uint8_t code, int E, int M, int bias) {
    const int s = code >> 7, e = (code >> M) & ((1 << E) - 1), m = code & ((1 << M) - 1);
    const double mag = e == 0 ? std::ldexp(double(m) / (1 << M), 1 - bias) : std::ldexp(1 + double(m) / (1 << M), e - bias);
    return s ? -mag : mag;
}

eva::ModelArgs tiny(bool q_lora, const std::string& score, int mtp) {
    // dim 136 and inter 130: two 128-blocks each way, the second partial.
    return eva::model_args_from_json({{"max_seq_len", 32}, {"original_seq_len", 8}, {"rope_factor", 4.0}, {"mscale", 0.707},
                                      {"vocab_size", 40}, {"dim", 136}, {"inter_dim", 130}, {"moe_inter_dim", 24},
                                      {"n_layers", 2}, {"n_dense_layers", 1}, {"n_heads", 2}, {"n_routed_experts", 4},
                                      {"n_shared_experts", 1}, {"n_activated_experts", 2}, {"n_expert_groups", 2},
                                      {"n_limited_groups", 1}, {"score_func", score}, {"q_lora_rank", q_lora ? 24 : 0},
                                      {"kv_lora_rank", 16}, {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4},
                                      {"v_head_dim", 8}, {"n_mtp_layers", mtp}});
}

eva::Model<float> tiny_model(bool q_lora, const std::string& score, eva::Balance balance) {
    eva::Rng rng(7);
    const eva::ModelArgs a = tiny(q_lora, score, score == "sigmoid" ? 1 : 0);  // V3-like: one MTP module
    eva::Model<float> m = eva::model_init<float>(a, eva::moe_config(a, balance), rng, 0.05);
    // Norm gains and the bias away from their init, so a mix-up of tensors would show.
    for (auto& t : eva::named_tensors(m.w))
        if (t.shape.size() == 1)
            for (std::size_t i = 0; i < t.size(); ++i) t.data[i] = float(rng.normal()) * 0.1f + (t.trainable ? 1.0f : 0.0f);
    return m;
}

std::string tmp_path(const std::string& name) { return (std::filesystem::temp_directory_path() / ("eva_test_hf_" + name)).string(); }

}  // namespace

TEST_CASE("hf_checkpoint: names map exactly as inference/convert.py maps them", "[hf_checkpoint]") {
    const std::vector<std::pair<std::string, std::string>> pairs = {
        {"model.embed_tokens.weight", "embed.weight"},
        {"lm_head.weight", "head.weight"},
        {"model.norm.weight", "norm.weight"},
        {"model.layers.0.input_layernorm.weight", "layers.0.attn_norm.weight"},
        {"model.layers.0.post_attention_layernorm.weight", "layers.0.ffn_norm.weight"},
        {"model.layers.3.self_attn.q_proj.weight", "layers.3.attn.wq.weight"},
        {"model.layers.3.self_attn.q_a_proj.weight", "layers.3.attn.wq_a.weight"},
        {"model.layers.3.self_attn.q_a_proj.weight_scale_inv", "layers.3.attn.wq_a.scale"},
        {"model.layers.3.self_attn.q_a_layernorm.weight", "layers.3.attn.q_norm.weight"},
        {"model.layers.3.self_attn.q_b_proj.weight", "layers.3.attn.wq_b.weight"},
        {"model.layers.3.self_attn.kv_a_proj_with_mqa.weight", "layers.3.attn.wkv_a.weight"},
        {"model.layers.3.self_attn.kv_a_layernorm.weight", "layers.3.attn.kv_norm.weight"},
        {"model.layers.3.self_attn.kv_b_proj.weight", "layers.3.attn.wkv_b.weight"},
        {"model.layers.3.self_attn.o_proj.weight", "layers.3.attn.wo.weight"},
        {"model.layers.0.mlp.gate_proj.weight", "layers.0.ffn.w1.weight"},
        {"model.layers.0.mlp.down_proj.weight", "layers.0.ffn.w2.weight"},
        {"model.layers.0.mlp.up_proj.weight", "layers.0.ffn.w3.weight"},
        {"model.layers.60.mlp.gate.weight", "layers.60.ffn.gate.weight"},
        {"model.layers.60.mlp.gate.e_score_correction_bias", "layers.60.ffn.gate.bias"},
        {"model.layers.60.mlp.experts.255.down_proj.weight", "layers.60.ffn.experts.255.w2.weight"},
        {"model.layers.60.mlp.experts.7.up_proj.weight_scale_inv", "layers.60.ffn.experts.7.w3.scale"},
        {"model.layers.60.mlp.shared_experts.gate_proj.weight", "layers.60.ffn.shared_experts.w1.weight"},
    };
    for (const auto& [hf, ev] : pairs) {
        CHECK(eva::eva_tensor_name(hf) == ev);
        CHECK(eva::hf_tensor_name(ev) == hf);
    }
    for (const char* bad : {"model.layers.0.self_attn.rotary_emb.inv_freq", "transformer.h.0.attn.weight", "model.layers.x.mlp.gate.weight", ""})
        CHECK_THROWS_AS(eva::eva_tensor_name(bad), eva::FileError);
    CHECK_THROWS_AS(eva::hf_tensor_name("layers.0.attn.rope.weight"), eva::ConfigError);
}

TEST_CASE("hf_checkpoint: BF16 and F16 from their bit layouts", "[hf_checkpoint]") {
    CHECK(eva::bf16_to_f32(0x3F80) == 1.0f);
    CHECK(eva::bf16_to_f32(0xC040) == -3.0f);
    CHECK(eva::f32_to_bf16(1.0f) == 0x3F80);
    // Round to nearest even on the dropped 16 bits: a tie goes to the even neighbour.
    CHECK(eva::f32_to_bf16(from_bits(0x3F808000u)) == 0x3F80);
    CHECK(eva::f32_to_bf16(from_bits(0x3F818000u)) == 0x3F82);
    CHECK(eva::f32_to_bf16(from_bits(0x3F808001u)) == 0x3F81);
    CHECK(eva::f32_to_bf16(from_bits(0x7F7FFFFFu)) == 0x7F80);  // the largest float rounds to inf, as in PyTorch
    CHECK(std::isnan(eva::bf16_to_f32(eva::f32_to_bf16(std::nanf("")))));
    CHECK(eva::f16_to_f32(0x3C00) == 1.0f);
    CHECK(eva::f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(eva::f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24));
    CHECK(eva::f16_to_f32(0xFBFF) == -65504.0f);
    CHECK(eva::f16_to_f32(0x7C00) == INFINITY);
    CHECK(std::isnan(eva::f16_to_f32(0x7E00)));
    CHECK(bits(eva::f16_to_f32(0x8000)) == 0x80000000u);  // -0 keeps its sign
}

TEST_CASE("hf_checkpoint: weight_dequant is kernel.py's float32(code) * scale_inv, bit for bit", "[hf_checkpoint]") {
    // 200 x 300: scale_inv [2, 3], the last block row 72 high and the last block column 44 wide.
    const std::size_t R = 200, C = 300;
    CHECK(eva::fp8_scale_shape(R, C) == std::vector<std::size_t>{2, 3});
    CHECK(eva::fp8_scale_shape(128, 129) == std::vector<std::size_t>{1, 2});
    eva::Rng rng(3);
    for (auto [fmt, E, M, bias] : {std::tuple{eva::Fp8Format::E4M3, 4, 3, 7}, {eva::Fp8Format::E5M2, 5, 2, 15}}) {
        std::vector<std::uint8_t> codes(R * C);
        for (auto& c : codes) {
            do c = std::uint8_t(rng.next_u32() & 0xff);
            while (std::isnan(eva::fp8_decode(c, fmt)) || std::isinf(eva::fp8_decode(c, fmt)));
        }
        std::vector<float> scales(6);
        for (auto& s : scales) s = float(std::exp(rng.normal() * 3));
        std::vector<float> got(R * C);
        eva::weight_dequant(codes.data(), fmt, R, C, scales.data(), got.data());
        std::size_t mismatches = 0;
        for (std::size_t r = 0; r < R; ++r)
            for (std::size_t c = 0; c < C; ++c) {
                // Every code is exact in float32; the one rounding is the float32 product, as on the GPU.
                const float want = float(ofp8_value(codes[r * C + c], E, M, bias)) * scales[(r / 128) * 3 + c / 128];
                mismatches += bits(got[r * C + c]) != bits(want);
            }
        CHECK(mismatches == 0);
    }
}

TEST_CASE("hf_checkpoint: writing and reading back, both layouts, f32 / bf16 / fp8", "[hf_checkpoint]") {
    for (auto [q_lora, score, balance] : {std::tuple{true, std::string("sigmoid"), eva::Balance::aux_free},
                                          {false, std::string("softmax"), eva::Balance::none}}) {
        eva::Model<float> m = tiny_model(q_lora, score, balance);
        const auto named = eva::named_tensors(m.w);
        for (auto layout : {eva::Layout::eva, eva::Layout::hf}) {
            for (auto dtype : {eva::StoreDType::f32, eva::StoreDType::bf16, eva::StoreDType::fp8}) {
                INFO("q_lora " << q_lora << " layout " << int(layout) << " dtype " << int(dtype));
                const std::string path = tmp_path(layout == eva::Layout::hf ? "dir" : "file.safetensors");
                eva::CheckpointWriteOptions o;
                o.layout = layout;
                o.dtype = dtype;
                o.max_shard_bytes = 60'000;  // several shards for the hf layout
                eva::save_checkpoint(m, path, o);
                if (layout == eva::Layout::hf)
                    CHECK(std::filesystem::exists(path + "/model.safetensors.index.json"));
                eva::Model<float> back = eva::load_checkpoint(path);
                // The same config, but for `dtype`, which records how the Linear weights were stored.
                auto ja = eva::to_json(back.args), jb = eva::to_json(m.args);
                CHECK(ja["dtype"] == (dtype == eva::StoreDType::fp8 ? "fp8" : "bf16"));
                ja.erase("dtype");
                jb.erase("dtype");
                CHECK(ja == jb);
                const auto got = eva::named_tensors(back.w);
                REQUIRE(got.size() == named.size());
                std::size_t differ = 0;
                for (std::size_t k = 0; k < named.size(); ++k) {
                    const auto& t = named[k];
                    REQUIRE(got[k].name == t.name);
                    std::vector<float> want(t.data, t.data + t.size());
                    const bool bias = t.name.find("gate.bias") != std::string::npos;
                    if (dtype == eva::StoreDType::fp8 && eva::is_fp8_linear(t.name, t.shape.size())) {
                        // One quantization: E4M3 codes with online 128x128 scales, dequantized.
                        const eva::Fp8Matrix q = eva::quantize_blocks(t.data, t.shape[0], t.shape[1]);
                        eva::dequantize(q, want.data(), t.shape[1]);
                    } else if (dtype != eva::StoreDType::f32 && !bias) {
                        for (auto& x : want) x = eva::bf16_to_f32(eva::f32_to_bf16(x));
                    }
                    for (std::size_t i = 0; i < want.size(); ++i) differ += bits(got[k].data[i]) != bits(want[i]);
                }
                CHECK(differ == 0);  // bit for bit: f32 exactly, bf16 one rounding, fp8 one quantization
                std::filesystem::remove_all(path);
            }
        }
    }
}

TEST_CASE("hf_checkpoint: the index is validated", "[hf_checkpoint]") {
    using eva::parse_safetensors_index;
    CHECK(parse_safetensors_index(R"({"metadata": {"total_size": 8}, "weight_map": {"a": "model-1.safetensors"}})", "i").size() == 1);
    for (const char* bad : {R"([])", R"({"weight_map": []})", R"({"weight_map": {}})", R"({"weight_map": {"a": 3}})",
                            R"({"weight_map": {"a": "../x.safetensors"}})", R"({"weight_map": {"a": "sub/x.safetensors"}})",
                            R"({"weight_map": {"a": "x.bin"}})", R"({"weight_map": {"a": ".safetensors"}})",
                            R"({"weight_map": {"a": "x.safetensors"}, "extra": 1})", R"({"weight_map": {"a": "x.safetensors"}} x)"})
        CHECK_THROWS_AS(parse_safetensors_index(bad, "i"), eva::FileError);
}

TEST_CASE("hf_checkpoint: stored_fp8_weight returns the file's codes and scales unchanged", "[hf_checkpoint]") {
    eva::Model<float> m = tiny_model(true, "sigmoid", eva::Balance::aux_free);
    const std::string path = tmp_path("stored.safetensors");
    eva::CheckpointWriteOptions o;
    o.dtype = eva::StoreDType::fp8;
    eva::save_checkpoint(m, path, o);
    const eva::Checkpoint c = eva::Checkpoint::open(path);
    const eva::Model<float> back = c.load();
    const auto loaded = eva::named_tensors(const_cast<eva::ModelWeights<float>&>(back.w));
    std::size_t fp8_tensors = 0;
    for (const auto& t : eva::named_tensors(m.w)) {
        INFO(t.name);
        const eva::Fp8Matrix q = eva::stored_fp8_weight(c, t.name);
        if (!eva::is_fp8_linear(t.name, t.shape.size())) {
            CHECK(q.codes.empty());  // BF16 or F32 in the file: no codes to show
            continue;
        }
        ++fp8_tensors;
        // What save_checkpoint quantized (one quantization of the original weight): the same bytes.
        const eva::Fp8Matrix want = eva::quantize_blocks(t.data, t.shape[0], t.shape[1]);
        REQUIRE(q.rows == t.shape[0]);
        REQUIRE(q.cols == t.shape[1]);
        CHECK(q.format == eva::Fp8Format::E4M3);
        CHECK(q.codes == want.codes);
        REQUIRE(q.scales.size() == want.scales.size());
        std::size_t differ = 0;
        for (std::size_t i = 0; i < q.scales.size(); ++i) differ += bits(q.scales[i]) != bits(want.scales[i]);
        CHECK(differ == 0);
        // Dequantizing them gives the loaded model's weight bit for bit.
        std::vector<float> x(t.size());
        eva::dequantize(q, x.data(), q.cols);
        const auto it = std::find_if(loaded.begin(), loaded.end(), [&](const auto& l) { return l.name == t.name; });
        REQUIRE(it != loaded.end());
        differ = 0;
        for (std::size_t i = 0; i < x.size(); ++i) differ += bits(x[i]) != bits(it->data[i]);
        CHECK(differ == 0);
        // The code counts against a count written here, and they cover every element.
        const auto counts = eva::fp8_code_counts(q.codes.data(), q.codes.size());
        REQUIRE(counts.size() == 256);
        std::size_t total = 0, of_first = 0;
        for (auto n : counts) total += n;
        for (auto code : q.codes) of_first += code == q.codes[0];
        CHECK(total == q.codes.size());
        CHECK(counts[q.codes[0]] == of_first);
        // The panel's view: the same codes, counts and check (0: the loaded weight is these codes).
        const eva::StoredFp8View view = eva::stored_fp8_view(c, t.name, it->data);
        CHECK(view.name == t.name);
        CHECK(view.q.codes == q.codes);
        CHECK(view.counts == counts);
        CHECK(view.check.count == x.size());
        CHECK(view.check.max_rel_error == 0);
        const nlohmann::json j = view.to_json();
        CHECK(j["dtype"] == "F8_E4M3");
        CHECK(j["scale_shape"] == nlohmann::json::array({q.scale_rows(), q.scale_cols()}));
        const std::size_t head = std::min<std::size_t>(64, q.codes.size());
        CHECK(j["codes_head"].get<std::vector<int>>() == std::vector<int>(q.codes.begin(), q.codes.begin() + std::ptrdiff_t(head)));
    }
    CHECK(eva::stored_fp8_view(c, "norm.weight", nullptr).name.empty());  // F32 in the file: no view
    CHECK(fp8_tensors > 0);
    CHECK_THROWS_AS(eva::stored_fp8_weight(c, "layers.0.attn.nonexistent.weight"), eva::FileError);
    std::filesystem::remove_all(path);
}

TEST_CASE("hf_checkpoint: storage_summary says how a file stores its weights and what float32 would take",
          "[hf_checkpoint]") {
    eva::Model<float> m = tiny_model(true, "sigmoid", eva::Balance::aux_free);
    // float32 bytes counted here from the model's own tensors: the main model, the MTP module and the
    // gate biases, as the file holds them (an eva file stores no copies of the embedding and head).
    std::uint64_t elements = 0;
    for (const auto& t : eva::named_tensors(m.w)) elements += t.size();
    const std::string path = tmp_path("summary.safetensors");
    for (auto [dtype, how] : {std::pair{eva::StoreDType::f32, "weights stored in float32, "},
                              {eva::StoreDType::bf16, "weights stored in BF16, "},
                              {eva::StoreDType::fp8, "weights stored as DeepSeek-V3 stores them: FP8 E4M3 Linear "
                                                     "weights with 128x128 scales (weight_scale_inv), the rest BF16, "}}) {
        eva::CheckpointWriteOptions o;
        o.dtype = dtype;
        eva::save_checkpoint(m, path, o);
        CHECK(eva::storage_summary(eva::inspect_checkpoint(path)) == how + eva::format_bytes(std::filesystem::file_size(path)) +
                                                                         " (float32 would be " + eva::format_bytes(4 * elements) + ")");
        std::filesystem::remove(path);
    }
}
