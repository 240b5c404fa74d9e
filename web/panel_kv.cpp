// The KV-cache panel. Top: the cache footprint of MHA, GQA, MQA and MLA from eva::kv_cache_memory (the
// function behind `eva mla memory`). Bottom: the mini model decoding token by token through two
// eva::Generator instances in lockstep — the absorbed MLA cache (c_KV and k_pe per token) and the naive
// cache (every head's full K and V) — with the latent rows, the newest token's attention weights, the
// logit difference of the two paths and the time each takes per token.
#include "panel_kv.hpp"

#include <emscripten.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>

#include <imgui.h>

#include "app.hpp"
#include "draw.hpp"
#include "eva/checked.hpp"
#include "eva/data.hpp"
#include "eva/mla.hpp"
#include "eva/moe.hpp"
#include "train_worker.hpp"

namespace eva::web {
namespace {

// ------------------------------------------------------------------------------ memory comparison

// A model whose cache sizes the panel compares. `gqa_groups` is the K/V head count of the GQA row;
// `mla` says whether the model has an MLA latent (the Llama-shaped contrast model has none, so its MLA
// row would describe a cache it does not have and is left out).
struct MemoryModel {
    const char* label;
    ModelArgs args;
    std::int64_t gqa_groups;
    bool mla;
    const char* own_scheme;  // the scheme the real model uses
};

// Llama-3-8B's shape, from Meta's published config.json for Meta-Llama-3-8B: num_hidden_layers 32,
// num_attention_heads 32, num_key_value_heads 8, hidden_size 4096 (head_dim 4096 / 32 = 128). Only the
// cache's shape matters here: a key of 128 per K/V head (written as nope 64 + rope 64 because ModelArgs
// splits the key; Llama rotates all of it, which does not change its size) and a value of 128.
ModelArgs llama3_8b_shape() {
    return model_args_from_json({{"dim", 4096}, {"n_layers", 32}, {"n_heads", 32}, {"qk_nope_head_dim", 64},
                                 {"qk_rope_head_dim", 64}, {"v_head_dim", 128}, {"vocab_size", 128256},
                                 {"max_seq_len", 8192}});
}

const std::vector<MemoryModel>& memory_models() {
    static const std::vector<MemoryModel> models = [] {
        std::vector<MemoryModel> m;
        const char* const names[][2] = {{"mini", "mini"}, {"v2-lite", "V2-Lite"}, {"v2", "V2"}, {"v3", "V3"}};
        for (const auto& n : names) {
            ModelArgs a = preset(n[0]);
            m.push_back({n[1], a, default_gqa_groups(a), true, "MLA"});
        }
        m.push_back({"Llama-3-8B shape", llama3_8b_shape(), 8, false, "GQA-8"});
        return m;
    }();
    return models;
}

// kv_cache_memory's rows are MLA, MHA, GQA-g, MQA; the panel shows them from largest to smallest.
constexpr int kShowOrder[] = {1, 2, 3, 0};
const ImU32 kSchemeColour[] = {IM_COL32(90, 200, 140, 255), IM_COL32(220, 110, 90, 255), IM_COL32(230, 170, 70, 255),
                               IM_COL32(150, 140, 220, 255)};  // MLA, MHA, GQA, MQA

void memory_table(const MemoryModel& mm, const std::vector<KVCacheScheme>& bf, const std::vector<KVCacheScheme>& f8,
                  float width) {
    const ImGuiTableFlags flags = ImGuiTableFlags_Borders | ImGuiTableFlags_RowBg | ImGuiTableFlags_SizingStretchProp;
    if (!ImGui::BeginTable("kv_memory", 7, flags, ImVec2(width, 0))) return;
    for (const char* h : {"scheme", "K/V heads", "elem/token/layer", "token bf16", "token fp8", "sequence bf16",
                          "sequence fp8"})
        ImGui::TableSetupColumn(h);
    ImGui::TableHeadersRow();
    for (int i : kShowOrder) {
        if (i == 0 && !mm.mla) continue;
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(kSchemeColour[i]), "%s%s", bf[i].name.c_str(),
                           bf[i].name == mm.own_scheme ? " *" : "");
        ImGui::TableNextColumn();
        if (i == 0) ImGui::TextUnformatted("latent");
        else ImGui::Text("%lld", (long long)bf[i].kv_heads);
        ImGui::TableNextColumn();
        ImGui::Text("%lld", (long long)bf[i].elements_per_token_layer);
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(format_bytes_binary(double(bf[i].bytes_per_token)).c_str());
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(format_bytes_binary(double(f8[i].bytes_per_token)).c_str());
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(format_bytes_binary(double(bf[i].bytes_sequence)).c_str());
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(format_bytes_binary(double(f8[i].bytes_sequence)).c_str());
    }
    ImGui::EndTable();
}

// Two bar charts (bf16, fp8) of the whole sequence's cache in GiB, on one scale so fp8's halving shows.
void memory_bars(const MemoryModel& mm, const std::vector<KVCacheScheme>& bf, const std::vector<KVCacheScheme>& f8,
                 float width, float height) {
    float top = 0;
    std::vector<float> vb, v8;
    std::vector<const char*> labels;
    std::vector<ImU32> colours;
    for (int i : kShowOrder) {
        if (i == 0 && !mm.mla) continue;
        vb.push_back(float(double(bf[i].bytes_sequence) / (1 << 30)));
        v8.push_back(float(double(f8[i].bytes_sequence) / (1 << 30)));
        labels.push_back(bf[i].name.c_str());
        colours.push_back(kSchemeColour[i]);
        top = std::max(top, vb.back());
    }
    const int n = int(vb.size());
    ImGui::BeginGroup();
    ImGui::Text("sequence, GiB: bf16");
    draw::bars("kv_bars_bf16", vb.data(), n, top, ImVec2(width * 0.5f - 6, height), labels.data(), colours.data());
    ImGui::EndGroup();
    ImGui::SameLine();
    ImGui::BeginGroup();
    ImGui::Text("fp8");
    draw::bars("kv_bars_fp8", v8.data(), n, top, ImVec2(width * 0.5f - 6, height), labels.data(), colours.data());
    ImGui::EndGroup();
}

// Each model's own cache per token (its real scheme, bf16): V3, with 671B parameters, caches less per
// token than the 8B GQA model.
void own_scheme_bars(float width, float height) {
    const auto& models = memory_models();
    std::vector<float> kib;
    std::vector<const char*> labels;
    std::vector<ImU32> colours;
    float top = 0;
    for (const auto& mm : models) {
        const auto rows = kv_cache_memory(mm.args, 1, CacheDType::bf16, mm.gqa_groups);
        const int i = mm.mla ? 0 : 2;
        kib.push_back(float(rows[std::size_t(i)].bytes_per_token) / 1024.0f);
        labels.push_back(mm.label == std::string("Llama-3-8B shape") ? "Llama-3-8B" : mm.label);
        colours.push_back(kSchemeColour[i]);
        top = std::max(top, kib.back());
    }
    ImGui::Text("own scheme, KiB/token bf16");
    draw::bars("kv_bars_own", kib.data(), int(kib.size()), top, ImVec2(width, height), labels.data(), colours.data());
}

void memory_section(KvPanel& s) {
    const auto& models = memory_models();
    for (int i = 0; i < int(models.size()); ++i) {
        if (i) same_line_for(models[std::size_t(i)].label, kBox);
        if (ImGui::RadioButton(models[std::size_t(i)].label, s.preset == i)) s.preset = i;
        if (i == 2) s.preset_v2_rect.record();
    }
    ImGui::SetNextItemWidth(320);
    ImGui::SliderInt("sequence length", &s.seq_len, 1, 131072, "%d tokens", ImGuiSliderFlags_Logarithmic);
    s.seq_len = std::clamp(s.seq_len, 1, 131072);  // ctrl-click typing can leave the range
    const MemoryModel& mm = models[std::size_t(s.preset)];
    const auto bf = kv_cache_memory(mm.args, s.seq_len, CacheDType::bf16, mm.gqa_groups);
    const auto f8 = kv_cache_memory(mm.args, s.seq_len, CacheDType::fp8, mm.gqa_groups);
    const ModelArgs& a = mm.args;
    ImGui::Text("%s: %lld layers, %lld query heads, key %lld + value %lld per head%s", mm.label,
                (long long)a.n_layers, (long long)a.n_heads, (long long)a.qk_head_dim(), (long long)a.v_head_dim,
                mm.mla ? "" : " (no latent: MLA does not apply)");
    if (mm.mla)
        ImGui::Text("MLA caches c_KV (kv_lora_rank %lld) + k_pe (rope %lld) per token per layer, for all heads: "
                    "MHA needs %.1fx more.  * = the scheme this model uses",
                    (long long)a.kv_lora_rank, (long long)a.qk_rope_head_dim, bf[1].ratio_to_mla);
    else
        ImGui::Text("GQA-8: each K/V head serves 4 query heads (4x less than MHA).  * = the scheme this model uses");
    const float avail = ImGui::GetContentRegionAvail().x;
    // The table and the two charts in one row when it is wide enough for the table's figures, else the
    // charts under the table.
    const bool one_row = avail >= 1150;
    const float table_w = one_row ? avail * 0.48f : avail, rest = one_row ? avail - table_w - 12 : avail;
    const float chart_w = rest * 0.58f - 8, own_w = rest - chart_w - 12;
    ImGui::BeginGroup();
    memory_table(mm, bf, f8, table_w);
    ImGui::EndGroup();
    if (one_row) ImGui::SameLine(0, 12);
    ImGui::BeginGroup();
    memory_bars(mm, bf, f8, chart_w, 110);
    ImGui::EndGroup();
    ImGui::SameLine(0, 12);
    ImGui::BeginGroup();
    own_scheme_bars(own_w, 110 + ImGui::GetTextLineHeightWithSpacing());
    ImGui::EndGroup();
}

// ---------------------------------------------------------------------------------- live decoding

const char* const kSamples[] = {"Love is", "The meaning of life is", "Q: Why did the chicken cross the road?\nA:",
                                "It was a dark and stormy night"};

void restart(KvDecode& r, const Model<float>* m, const std::string& prompt) {
    const std::size_t cap = std::size_t(m->args.max_seq_len);
    r.model = m;
    r.tokens = encode_bytes(prompt.empty() ? std::string("\n") : prompt);
    if (r.tokens.size() > cap - 1) r.tokens.resize(cap - 1);  // leave room for at least one sampled token
    r.prompt_len = r.tokens.size();
    r.absorbed = std::make_unique<Generator<float>>(*m, AttentionCache::absorbed, cap);
    r.naive = std::make_unique<Generator<float>>(*m, AttentionCache::naive, cap);
    r.fed_absorbed = r.fed_naive = 0;
    r.max_diff = r.last_diff = r.ms_absorbed = r.ms_naive = r.last_ms_absorbed = r.last_ms_naive = 0;
    r.rng = Rng(1 + r.runs++);  // each run its own, reproducible, sampling stream
}

bool finished(const KvDecode& r) {
    return r.tokens.size() >= std::size_t(r.model->args.max_seq_len) && r.fed_naive == r.tokens.size();
}

// One generator's feed of its next token (absorbed first, then naive for the same token), timed.
// After the prompt, the next token is sampled from the absorbed path's logits. False when full.
bool step(KvDecode& r, const SamplingConfig& sampling) {
    if (r.fed_absorbed == r.fed_naive) {
        if (r.fed_absorbed == r.tokens.size()) {
            if (finished(r)) return false;
            r.tokens.push_back(sample_token(r.logits_absorbed, sampling, r.rng));
        }
        const auto t0 = Clock::now();
        r.logits_absorbed = r.absorbed->feed({r.tokens[r.fed_absorbed]});
        r.last_ms_absorbed = ms_since(t0);
        ++r.fed_absorbed;
        r.ms_absorbed += (r.last_ms_absorbed - r.ms_absorbed) / double(r.fed_absorbed);  // running mean
        return true;
    }
    const auto t0 = Clock::now();
    r.logits_naive = r.naive->feed({r.tokens[r.fed_naive]});
    r.last_ms_naive = ms_since(t0);
    ++r.fed_naive;
    r.ms_naive += (r.last_ms_naive - r.ms_naive) / double(r.fed_naive);
    r.last_diff = 0;
    for (std::size_t v = 0; v < r.logits_naive.size(); ++v)
        r.last_diff = std::max(r.last_diff, double(std::abs(r.logits_naive[v] - r.logits_absorbed[v])));
    r.max_diff = std::max(r.max_diff, r.last_diff);
    return true;
}

// Decoding work of one frame: at most one token (both caches) so the text grows at a readable pace, and
// the naive half deferred to the next frame when the measured cost of the absorbed half leaves no room
// in the budget, so the frame stays well under 16 ms on a slow machine.
constexpr double kDecodeBudgetMs = 7.0;

void advance(KvDecode& r, const SamplingConfig& sampling) {
    const auto t0 = Clock::now();
    if (!step(r, sampling) || r.fed_naive == r.fed_absorbed) return;
    if (ms_since(t0) + r.last_ms_naive <= kDecodeBudgetMs) step(r, sampling);
}

// Bytes to displayable text: control bytes other than newline become spaces.
std::string printable(const std::vector<Token>& tokens) {
    std::string s = decode_bytes(tokens);
    for (char& c : s)
        if ((unsigned char)c < 32 && c != '\n') c = ' ';
    return s;
}

void decode_controls(KvPanel& s, const Model<float>& m) {
    ImGui::SetNextItemWidth(280);
    const bool entered = ImGui::InputText("prompt", s.prompt, sizeof s.prompt, ImGuiInputTextFlags_EnterReturnsTrue);
    beside("sample", 200);
    if (ImGui::BeginCombo("sample", kSamples[s.sample])) {
        for (int i = 0; i < int(std::size(kSamples)); ++i)
            if (ImGui::Selectable(kSamples[i], i == s.sample)) {
                s.sample = i;
                std::snprintf(s.prompt, sizeof s.prompt, "%s", kSamples[i]);
                s.restart = true;
            }
        ImGui::EndCombo();
    }
    same_line_for("Restart");
    if (ImGui::Button("Restart") || entered) s.restart = true;
    s.restart_rect.record();
    same_line_for("pause", kBox);
    ImGui::Checkbox("pause", &s.paused);
    beside("temperature (0: greedy)", 120);
    ImGui::SliderFloat("temperature (0: greedy)", &s.temperature, 0.0f, 1.5f, "%.2f");
    beside("layer", 100);
    ImGui::SliderInt("layer", &s.layer, 0, int(m.args.n_layers) - 1);
    s.layer = std::clamp(s.layer, 0, int(m.args.n_layers) - 1);
}

// Cells of one heatmap: Dear ImGui 1.86's WebGL backend indexes a window's vertices with 16 bits
// (65,536 per draw list) and each cell takes 4, so each heatmap sits in its own child window with at
// most 15,360 cells (61,440 vertices): mini's 64 latent rows × 240 positions; longer caches show their
// newest positions.
constexpr std::size_t kMaxCells = 15360;

void cache_views(KvPanel& s, const KvDecode& r) {
    const ModelArgs& a = r.model->args;
    const std::size_t L = r.fed_absorbed, R = std::size_t(a.kv_lora_rank), H = std::size_t(a.n_heads),
                      cap = std::size_t(a.max_seq_len);
    const std::size_t max_shown = kMaxCells / R, shown = std::min(L, max_shown), first = L - shown;
    const float avail = ImGui::GetContentRegionAvail().x, side = 280, plot_w = avail - side - 16;
    const float cell = plot_w / float(std::min(cap, max_shown));
    // Heights fit what is left of the frame (an embedded iframe may be short): 14 px per head and 2.5 per
    // latent row when there is room, down to 8 and 1.
    const float left_y = ImGui::GetContentRegionAvail().y - 2 * ImGui::GetTextLineHeightWithSpacing() - 8;
    const float att_h = (left_y < float(14 * H + R) ? 8.0f : 14.0f) * float(H);
    const float lat_h = std::clamp(left_y - att_h, float(R), 2.5f * float(R));

    ImGui::BeginGroup();
    // The newest token's attention weights, head by head, over the positions it attends to.
    const auto& p = r.absorbed->attention(std::size_t(s.layer));
    std::vector<float> att(H * shown);
    float att_max = 0;
    for (std::size_t h = 0; h < H; ++h)
        for (std::size_t t = 0; t < shown; ++t) att_max = std::max(att_max, att[h * shown + t] = p[h * L + first + t]);
    ImGui::Text("newest token's attention: %zu heads x positions %zu..%zu (max %.3f)", H, first, L - 1, att_max);
    ImGui::BeginChild("kv_att", ImVec2(plot_w, att_h), false, ImGuiWindowFlags_NoScrollbar);
    draw::heatmap("att", att.data(), int(H), int(shown), 0, att_max, ImVec2(cell * float(shown), att_h));
    ImGui::EndChild();
    // The latent rows c_KV that the absorbed cache holds, one column per position.
    const auto& c = r.absorbed->absorbed_cache(std::size_t(s.layer));
    std::vector<float> lat(R * shown);
    float lat_max = 0;
    for (std::size_t t = 0; t < shown; ++t)
        for (std::size_t j = 0; j < R; ++j) {
            const float v = c.kv[(first + t) * R + j];
            lat[j * shown + t] = v;
            lat_max = std::max(lat_max, std::abs(v));
        }
    ImGui::Text("c_KV, layer %d: the cached latent, %zu dims x positions", s.layer, R);
    ImGui::BeginChild("kv_latent", ImVec2(plot_w, lat_h), false, ImGuiWindowFlags_NoScrollbar);
    draw::heatmap("latent", lat.data(), int(R), int(shown), -lat_max, lat_max, ImVec2(cell * float(shown), lat_h), true);
    ImGui::EndChild();
    ImGui::EndGroup();
    same_line_if_fits(side);

    // Size of both caches (all layers, fp32 as decoded here), against the naive cache at max_seq_len.
    ImGui::BeginGroup();
    const float held[] = {float(r.absorbed->cache_floats()) * 4 / 1024, float(r.naive->cache_floats()) * 4 / 1024};
    const float full = float(cap) * float(a.n_layers) * float(H * std::size_t(a.qk_head_dim() + a.v_head_dim)) * 4 / 1024;
    const char* labels[] = {"absorbed", "naive"};
    const ImU32 colours[] = {kSchemeColour[0], kSchemeColour[1]};
    ImGui::Text("cache held, KiB (fp32, %lld layers);", (long long)a.n_layers);
    ImGui::Text("full height: naive at %zu tokens", cap);
    draw::bars("kv_held", held, 2, full,
               ImVec2(side, att_h + lat_h - ImGui::GetTextLineHeightWithSpacing()), labels, colours);
    ImGui::Text("absorbed %s, naive %s", format_bytes_binary(double(held[0]) * 1024).c_str(),
                format_bytes_binary(double(held[1]) * 1024).c_str());
    ImGui::Text("per token per layer: %lld vs %lld floats", (long long)(a.kv_lora_rank + a.qk_rope_head_dim),
                (long long)(a.n_heads * (a.qk_head_dim() + a.v_head_dim)));
    ImGui::EndGroup();
}

void decode_section(KvPanel& s, Pretrained& pretrained) {
    const Model<float>* m = pretrained.shown();
    if (!m) {
        ImGui::TextUnformatted("Live decoding starts when the pretrained mini checkpoint has loaded...");
        return;
    }
    if (s.restart || m != s.run.model) {
        restart(s.run, m, s.prompt);
        s.restart = false;
    }
    KvDecode& r = s.run;
    r.fresh = pretrained.fresh();
    decode_controls(s, *m);
    // The frame's decoding work alternates between the lockstep caches and the speculative run while both
    // have work, so one frame does one of them (either alone fits the frame budget, both do not).
    const bool spec_turn = !s.paused && spec_busy(s.spec) && (finished(r) || (s.frame++ & 1));
    if (!s.paused && !spec_turn) advance(r, SamplingConfig{double(s.temperature), 0, 1.0});
    if (pretrained.fresh())
        ImGui::TextColored(ImVec4(1, 0.75f, 0.4f, 1), "%s - decoding a fresh mini model (eva init --seed 1): its text is "
                           "noise, the caches work the same.", pretrained.message.c_str());
    ImGui::BeginChild("kv_text", ImVec2(0, 2.6f * ImGui::GetTextLineHeightWithSpacing()), true);
    ImGui::TextWrapped("%s", printable(r.tokens).c_str());
    ImGui::EndChild();
    ImGui::Text("%zu / %lld tokens (prompt %zu)%s   naive vs absorbed max |logit diff|: this token %.2e, run %.2e",
                r.fed_naive, (long long)m->args.max_seq_len, r.prompt_len,
                finished(r) ? " - cache full (max_seq_len)" : "", r.last_diff, r.max_diff);
    ImGui::Text("time per token (whole model, mean over the run): absorbed %.2f ms, naive %.2f ms", r.ms_absorbed,
                r.ms_naive);
    ImGui::Separator();
    speculative_section(s.spec, m, s.prompt, s.temperature, spec_turn);
    ImGui::Separator();
    if (r.fed_absorbed > 0) cache_views(s, r);
}

KvPanel* g_shown = nullptr;  // the panel last drawn, for eva_kv_speculative()

}  // namespace

void kv_panel(KvPanel& s, Pretrained& pretrained) {
    g_shown = &s;
    explain("Each generated token attends to every earlier one, so a decoder caches their keys and values: "
            "multi-head attention (MHA) keeps a key and a value per head, per token, per layer, and GQA and MQA "
            "share them among query heads. DeepSeek's Multi-head Latent Attention (MLA) caches one compressed "
            "latent c_KV and a shared rotary key per token instead, folding the up-projections into the query and "
            "the output. Below, the footprint of each scheme; then the mini model decoding live with MLA's latent "
            "cache and the naive per-head cache in lockstep, which must agree; and the same prompt decoded speculatively: "
            "the model's multi-token-prediction (MTP) module drafts the next token from the main model's last hidden "
            "state, and one forward of the main model over both positions verifies it, keeping it or replacing it "
            "(the accept/resample rule leaves the output distribution exactly the main model's).");
    memory_section(s);
    ImGui::Separator();
    decode_section(s, pretrained);
}

nlohmann::json kv_state(const KvPanel& s) {
    const KvDecode& r = s.run;
    return {{"preset", memory_models()[std::size_t(s.preset)].label}, {"seq_len", s.seq_len},
            {"model", !r.model ? "waiting" : r.fresh ? "fresh" : "pretrained"},
            {"tokens", r.fed_naive}, {"prompt_len", r.prompt_len}, {"runs", r.runs},
            {"decoding", r.model && !s.paused && !finished(r)}, {"layer", s.layer},
            {"max_diff", r.max_diff}, {"ms_absorbed", r.ms_absorbed}, {"ms_naive", r.ms_naive},
            {"speculative", spec_state(s.spec)},
            {"preset_v2_rect", s.preset_v2_rect.to_json()}, {"restart_rect", s.restart_rect.to_json()}};
}

namespace {
const char* const kPresetKeys[] = {"mini", "v2-lite", "v2", "v3", "llama3-8b"};  // memory_models() order
}

void kv_from_query(KvPanel& s, const Query& q) {
    s.preset = query_choice(q, "model", kPresetKeys, s.preset);
    s.seq_len = query_int(q, "tokens", s.seq_len, 1, 131072);
}

Query kv_to_query(const KvPanel& s) {
    return {{"model", kPresetKeys[s.preset]}, {"tokens", std::to_string(s.seq_len)}};
}

std::string kv_summary(const KvPanel& s) {
    const MemoryModel& mm = memory_models()[std::size_t(s.preset)];
    std::string out = std::string("KV cache of ") + mm.label + " for " + std::to_string(s.seq_len) + " tokens in bf16:";
    for (const auto& row : kv_cache_memory(mm.args, s.seq_len, CacheDType::bf16, mm.gqa_groups))
        if (mm.mla || row.name != "MLA") out += " " + row.name + " " + format_bytes_binary(double(row.bytes_sequence)) + ";";
    const KvDecode& r = s.run;
    char buf[160];
    std::snprintf(buf, sizeof buf, " decoding: %zu tokens, naive vs absorbed max logit difference %.1e.", r.fed_naive,
                  r.max_diff);
    return out + buf;
}

nlohmann::json kv_self_test() {
    nlohmann::json j;
    // Cache sizes at 4096 tokens, as `eva mla memory --config v3 --seq-len 4096 --dtype D --json` prints them.
    const auto& models = memory_models();
    const std::pair<const char*, const MemoryModel*> compared[] = {{"v3", &models[3]}, {"llama", &models[4]}};
    for (const auto& [key, mm] : compared)
        for (CacheDType d : {CacheDType::bf16, CacheDType::fp8}) {
            nlohmann::json per;
            for (const auto& row : kv_cache_memory(mm->args, 4096, d, mm->gqa_groups))
                if (mm->mla || row.name != "MLA") per[row.name] = row.bytes_per_token;  // no latent, no MLA row
            j[std::string("kv_") + key + "_bytes_per_token_" + dtype_name(d)] = per;
        }
    j["kv_llama_config"] = to_json(models[4].args);
    j["kv_v3_mla_bytes_per_token_bf16"] = j["kv_v3_bytes_per_token_bf16"]["MLA"];

    // Naive vs absorbed logits over a fixed 40-byte decode of the seeded mini model that `eva init
    // --config mini --seed 1` writes (deterministic: Philox stream, no sampling — the tokens are given).
    const Model<float> m = fresh_model(preset("mini"), 1);
    const std::vector<Token> tokens = encode_bytes("MLA caches one latent per token, not K+V.");
    Generator<float> absorbed(m, AttentionCache::absorbed, tokens.size()), naive(m, AttentionCache::naive, tokens.size());
    double diff = 0, scale = 0;
    std::vector<float> la;
    for (Token t : tokens) {
        la = absorbed.feed({t});
        const auto ln = naive.feed({t});
        for (std::size_t v = 0; v < la.size(); ++v) {
            diff = std::max(diff, double(std::abs(la[v] - ln[v])));
            scale = std::max(scale, double(std::abs(la[v])));
        }
    }
    j["kv_tokens"] = tokens;
    j["kv_mla_max_diff"] = diff;
    j["kv_logit_scale"] = scale;
    j["kv_last_logits_absorbed"] = la;
    return j;
}

}  // namespace eva::web

// Sets the speculative run's seed, new-token count and the panel's temperature, as the controls would
// (the run restarts on the next frame), so a browser test can compare several settings with the CLI
// quickly: Module.ccall("eva_kv_speculative", null, ["number", "number", "number"], [seed, tokens, T]).
extern "C" EMSCRIPTEN_KEEPALIVE void eva_kv_speculative(int seed, int max_new_tokens, float temperature) {
    if (!eva::web::g_shown) return;
    eva::web::g_shown->spec.seed = seed;
    eva::web::g_shown->spec.max_new_tokens = std::clamp(max_new_tokens, 1, 240);
    eva::web::g_shown->temperature = std::clamp(temperature, 0.0f, 1.5f);
}
