// The KV-cache panel. Top: the cache footprint of MHA, GQA, MQA and MLA (eva::kv_cache_memory, behind
// `eva mla memory`). Bottom: the mini model decoding token by token through eva::CacheLockstep, the absorbed
// MLA cache (c_KV and k_pe per token) beside the naive one (every head's K and V), with the latent rows, the
// newest token's attention, the logit difference of the two paths and the time each takes per token.
#include "panel_kv.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <iterator>

#include <imgui.h>

#include "app.hpp"
#include "draw.hpp"
#include "eva/checked.hpp"
#include "eva/data.hpp"
#include "eva/mla.hpp"

namespace eva::web {
namespace {

// ------------------------------------------------------------------------------ memory comparison

// The rows of a model's cache sizes as the panel shows them: MHA, GQA-g, MQA, then MLA (if it has a latent).
std::vector<KVCacheScheme> shown_rows(const KVCacheModel& mm, std::int64_t seq_len, CacheDType dtype) {
    std::vector<KVCacheScheme> rows = mm.memory(seq_len, dtype);  // MLA first when present
    if (mm.mla) std::rotate(rows.begin(), rows.begin() + 1, rows.end());
    return rows;
}

ImU32 scheme_colour(const std::string& name) {
    return name == "MLA"   ? IM_COL32(90, 200, 140, 255)
           : name == "MHA" ? IM_COL32(220, 110, 90, 255)
           : name == "MQA" ? IM_COL32(150, 140, 220, 255)
                           : IM_COL32(230, 170, 70, 255);  // GQA-g
}

void memory_table(const KVCacheModel& mm, const std::vector<KVCacheScheme>& bf, const std::vector<KVCacheScheme>& f8,
                  float width) {
    const ImGuiTableFlags flags = ImGuiTableFlags_Borders | ImGuiTableFlags_RowBg | ImGuiTableFlags_SizingStretchProp;
    if (!ImGui::BeginTable("kv_memory", 7, flags, ImVec2(width, 0))) return;
    for (const char* h : {"scheme", "K/V heads", "elem/token/layer", "token bf16", "token fp8", "sequence bf16",
                          "sequence fp8"})
        ImGui::TableSetupColumn(h);
    ImGui::TableHeadersRow();
    const auto cell = [](const std::string& text) {
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(text.c_str());
    };
    for (std::size_t i = 0; i < bf.size(); ++i) {
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(scheme_colour(bf[i].name)), "%s%s", bf[i].name.c_str(),
                           bf[i].name == mm.own_scheme ? " *" : "");
        cell(bf[i].name == "MLA" ? "latent" : std::to_string(bf[i].kv_heads));
        cell(std::to_string(bf[i].elements_per_token_layer));
        cell(format_bytes_binary(double(bf[i].bytes_per_token)));
        cell(format_bytes_binary(double(f8[i].bytes_per_token)));
        cell(format_bytes_binary(double(bf[i].bytes_sequence)));
        cell(format_bytes_binary(double(f8[i].bytes_sequence)));
    }
    ImGui::EndTable();
}

// Bars of one value per row (the rows' names under them, their scheme's colour), in a group with a title.
void scheme_bars(const char* id, const char* title, const std::vector<KVCacheScheme>& rows,
                 const std::vector<float>& values, float top, ImVec2 size, const std::vector<const char*>& labels) {
    std::vector<ImU32> colours;
    for (const KVCacheScheme& r : rows) colours.push_back(scheme_colour(r.name));
    ImGui::BeginGroup();
    ImGui::TextUnformatted(title);
    draw::bars(id, values.data(), int(values.size()), top, size, labels.data(), colours.data());
    ImGui::EndGroup();
}

// Two bar charts (bf16, fp8) of the whole sequence's cache in GiB, on one scale so fp8's halving shows.
void memory_bars(const std::vector<KVCacheScheme>& bf, const std::vector<KVCacheScheme>& f8, float width, float height) {
    std::vector<float> gib[2];
    std::vector<const char*> labels;
    for (std::size_t i = 0; i < bf.size(); ++i) {
        gib[0].push_back(float(double(bf[i].bytes_sequence) / (1 << 30)));
        gib[1].push_back(float(double(f8[i].bytes_sequence) / (1 << 30)));
        labels.push_back(bf[i].name.c_str());
    }
    const float top = *std::max_element(gib[0].begin(), gib[0].end()), w = width * 0.5f - 6;
    scheme_bars("kv_bars_bf16", "sequence, GiB: bf16", bf, gib[0], top, ImVec2(w, height), labels);
    ImGui::SameLine();
    scheme_bars("kv_bars_fp8", "fp8", f8, gib[1], top, ImVec2(w, height), labels);
}

// Each model's own cache per token (its real scheme, bf16): V3, with 671B parameters, caches less per
// token than the 8B GQA model.
void own_scheme_bars(float width, float height) {
    std::vector<KVCacheScheme> own;
    std::vector<float> kib;
    std::vector<const char*> labels;
    for (const KVCacheModel& mm : kv_cache_models())
        for (const KVCacheScheme& row : mm.memory(1, CacheDType::bf16))
            if (row.name == mm.own_scheme) {
                own.push_back(row);
                kib.push_back(float(row.bytes_per_token) / 1024.0f);
                labels.push_back(mm.mla ? mm.label.c_str() : "Llama-3-8B");
            }
    scheme_bars("kv_bars_own", "own scheme, KiB/token bf16", own, kib, *std::max_element(kib.begin(), kib.end()),
                ImVec2(width, height), labels);
}

void memory_section(KvPanel& s) {
    const auto& models = kv_cache_models();
    std::vector<const char*> labels;
    for (const KVCacheModel& mm : models) labels.push_back(mm.label.c_str());
    radio_row(nullptr, s.preset, labels, {nullptr, nullptr, &s.preset_v2_rect});
    ImGui::SetNextItemWidth(320);
    ImGui::SliderInt("sequence length", &s.seq_len, 1, 131072, "%d tokens", ImGuiSliderFlags_Logarithmic);
    s.seq_len = std::clamp(s.seq_len, 1, 131072);  // ctrl-click typing can leave the range
    const KVCacheModel& mm = models[std::size_t(s.preset)];
    const auto bf = shown_rows(mm, s.seq_len, CacheDType::bf16), f8 = shown_rows(mm, s.seq_len, CacheDType::fp8);
    const ModelArgs& a = mm.args;
    ImGui::Text("%s: %lld layers, %lld query heads, key %lld + value %lld per head%s", mm.label.c_str(),
                (long long)a.n_layers, (long long)a.n_heads, (long long)a.qk_head_dim(), (long long)a.v_head_dim,
                mm.mla ? "" : " (no latent: MLA does not apply)");
    if (mm.mla)
        ImGui::Text("MLA caches c_KV (kv_lora_rank %lld) + k_pe (rope %lld) per token per layer, for all heads: "
                    "MHA needs %.1fx more.  * = the scheme this model uses",
                    (long long)a.kv_lora_rank, (long long)a.qk_rope_head_dim, bf[0].ratio_to_mla);
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
    memory_bars(bf, f8, chart_w, 110);
    ImGui::EndGroup();
    ImGui::SameLine(0, 12);
    own_scheme_bars(own_w, 110 + ImGui::GetTextLineHeightWithSpacing());
}

// ---------------------------------------------------------------------------------- live decoding

const char* const kSamples[] = {"Love is", "The meaning of life is", "Q: Why did the chicken cross the road?\nA:",
                                "It was a dark and stormy night"};

// Decoding work of one frame: at most one token (both caches) so the text grows at a readable pace, and
// the naive half deferred to the next frame when the measured cost of the absorbed half leaves no room
// in the budget, so the frame stays well under 16 ms on a slow machine.
constexpr double kDecodeBudgetMs = 7.0;

void advance(CacheLockstep& r, const SamplingConfig& sampling) {
    const auto t0 = Clock::now();
    if (!r.step(sampling) || !r.naive_behind()) return;
    if (ms_since(t0) + r.last_ms_naive <= kDecodeBudgetMs) r.step(sampling);
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
    if (ImGui::Combo("sample", &s.sample, kSamples, int(std::size(kSamples)))) {  // a choice restarts the run
        std::snprintf(s.prompt, sizeof s.prompt, "%s", kSamples[s.sample]);
        s.restart = true;
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

void cache_views(KvPanel& s, const CacheLockstep& r) {
    const ModelArgs& a = s.model->args;
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
    const std::vector<float> att = r.absorbed.attention_window(std::size_t(s.layer), first);
    const float att_max = *std::max_element(att.begin(), att.end());
    ImGui::Text("newest token's attention: %zu heads x positions %zu..%zu (max %.3f)", H, first, L - 1, att_max);
    ImGui::BeginChild("kv_att", ImVec2(plot_w, att_h), false, ImGuiWindowFlags_NoScrollbar);
    draw::heatmap("att", att.data(), int(H), int(shown), 0, att_max, ImVec2(cell * float(shown), att_h));
    ImGui::EndChild();
    // The latent rows c_KV that the absorbed cache holds, one column per position.
    const std::vector<float> lat = r.absorbed.latent_window(std::size_t(s.layer), first);
    const float lat_max = draw::max_abs(lat);
    ImGui::Text("c_KV, layer %d: the cached latent, %zu dims x positions", s.layer, R);
    ImGui::BeginChild("kv_latent", ImVec2(plot_w, lat_h), false, ImGuiWindowFlags_NoScrollbar);
    draw::heatmap("latent", lat.data(), int(R), int(shown), -lat_max, lat_max, ImVec2(cell * float(shown), lat_h), true);
    ImGui::EndChild();
    ImGui::EndGroup();
    same_line_if_fits(side);

    // Size of both caches (all layers, fp32 as decoded here), against the naive cache at max_seq_len
    // (kv_cache_memory's MLA and MHA rows).
    ImGui::BeginGroup();
    const auto rows = kv_cache_memory(a, std::int64_t(cap), CacheDType::fp32, 1);
    const float held[] = {float(r.absorbed.cache_floats()) * 4 / 1024, float(r.naive.cache_floats()) * 4 / 1024};
    const float full = float(rows[1].bytes_sequence) / 1024;
    const char* labels[] = {"absorbed", "naive"};
    const ImU32 colours[] = {scheme_colour("MLA"), scheme_colour("MHA")};
    ImGui::Text("cache held, KiB (fp32, %lld layers);", (long long)a.n_layers);
    ImGui::Text("full height: naive at %zu tokens", cap);
    draw::bars("kv_held", held, 2, full,
               ImVec2(side, att_h + lat_h - ImGui::GetTextLineHeightWithSpacing()), labels, colours);
    ImGui::Text("absorbed %s, naive %s", format_bytes_binary(double(held[0]) * 1024).c_str(),
                format_bytes_binary(double(held[1]) * 1024).c_str());
    ImGui::Text("per token per layer: %lld vs %lld floats", (long long)rows[0].elements_per_token_layer,
                (long long)rows[1].elements_per_token_layer);
    ImGui::EndGroup();
}

void decode_section(KvPanel& s, Pretrained& pretrained) {
    const Model<float>* m = pretrained.shown();
    if (!m) {
        ImGui::TextUnformatted("Live decoding starts when the pretrained mini checkpoint has loaded...");
        return;
    }
    if (s.restart || m != s.model) {  // each run its own, reproducible, sampling stream
        s.run = std::make_unique<CacheLockstep>(*m, encode_bytes(s.prompt), std::size_t(m->args.max_seq_len), 1 + s.runs++);
        s.model = m;
        s.restart = false;
    }
    CacheLockstep& r = *s.run;
    decode_controls(s, *m);
    // The frame's decoding work alternates between the lockstep caches and the speculative run while both
    // have work, so one frame does one of them (either alone fits the frame budget, both do not).
    const bool spec_turn = !s.paused && spec_busy(s.spec) && (r.finished() || (s.frame++ & 1));
    if (!s.paused && !spec_turn) advance(r, SamplingConfig{double(s.temperature), 0, 1.0});
    if (pretrained.fresh())
        ImGui::TextColored(ImVec4(1, 0.75f, 0.4f, 1), "%s - decoding a fresh mini model (eva init --seed 1): its text is "
                           "noise, the caches work the same.", pretrained.message.c_str());
    ImGui::BeginChild("kv_text", ImVec2(0, 2.6f * ImGui::GetTextLineHeightWithSpacing()), true);
    ImGui::TextWrapped("%s", printable(r.tokens).c_str());
    ImGui::EndChild();
    ImGui::Text("%zu / %lld tokens (prompt %zu)%s   naive vs absorbed max |logit diff|: this token %.2e, run %.2e",
                r.fed_naive, (long long)m->args.max_seq_len, r.prompt_len,
                r.finished() ? " - cache full (max_seq_len)" : "", r.last_diff, r.max_diff);
    ImGui::Text("time per token (whole model, mean over the run): absorbed %.2f ms, naive %.2f ms", r.ms_absorbed,
                r.ms_naive);
    ImGui::Separator();
    speculative_section(s.spec, m, s.prompt, s.temperature, spec_turn);
    ImGui::Separator();
    if (r.fed_absorbed > 0) cache_views(s, r);
}

}  // namespace

void kv_panel(KvPanel& s, Pretrained& pretrained) {
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
    const CacheLockstep* r = s.run.get();
    return {{"preset", kv_cache_models()[std::size_t(s.preset)].label}, {"seq_len", s.seq_len},
            {"tokens", r ? r->fed_naive : 0}, {"prompt_len", r ? r->prompt_len : 0}, {"runs", s.runs},
            {"decoding", r && !s.paused && !r->finished()}, {"layer", s.layer},
            {"max_diff", r ? r->max_diff : 0}, {"ms_absorbed", r ? r->ms_absorbed : 0}, {"ms_naive", r ? r->ms_naive : 0},
            {"speculative", spec_state(s.spec)},
            {"preset_v2_rect", s.preset_v2_rect.to_json()}, {"restart_rect", s.restart_rect.to_json()}};
}

namespace {
const char* const kPresetKeys[] = {"mini", "v2-lite", "v2", "v3", "llama3-8b"};  // kv_cache_models() order
}

void kv_from_query(KvPanel& s, const Query& q) {  // the ranges of the controls
    s.preset = query_choice(q, "model", kPresetKeys, s.preset);
    s.seq_len = query_int(q, "tokens", s.seq_len, 1, 131072);
    s.temperature = query_float(q, "temperature", s.temperature, 0.0f, 1.5f);
    s.spec.seed = query_int(q, "spec_seed", s.spec.seed, 0, INT_MAX);
    s.spec.max_new_tokens = query_int(q, "new_tokens", s.spec.max_new_tokens, 1, 240);
}

Query kv_to_query(const KvPanel& s) {
    return {{"model", kPresetKeys[s.preset]}, {"tokens", std::to_string(s.seq_len)},
            {"temperature", format("%g", double(s.temperature))}, {"spec_seed", std::to_string(s.spec.seed)},
            {"new_tokens", std::to_string(s.spec.max_new_tokens)}};
}

std::string kv_summary(const KvPanel& s) {
    const KVCacheModel& mm = kv_cache_models()[std::size_t(s.preset)];
    std::string out = std::string("KV cache of ") + mm.label + " for " + std::to_string(s.seq_len) + " tokens in bf16:";
    for (const auto& row : mm.memory(s.seq_len, CacheDType::bf16))
        out += " " + row.name + " " + format_bytes_binary(double(row.bytes_sequence)) + ";";
    return out + format(" decoding: %zu tokens, naive vs absorbed max logit difference %.1e.", s.run ? s.run->fed_naive : 0,
                        s.run ? s.run->max_diff : 0);
}

nlohmann::json kv_self_test() {
    nlohmann::json j;
    // Cache sizes at 4096 tokens, as `eva mla memory --config C --seq-len 4096 --dtype D --json` prints them
    // (the Llama shape has no latent, so no MLA row).
    for (const auto& [key, name] : {std::pair{"v3", "v3"}, std::pair{"llama", "llama3-8b"}})
        for (CacheDType d : {CacheDType::bf16, CacheDType::fp8}) {
            nlohmann::json per;
            for (const auto& row : find_kv_cache_model(name)->memory(4096, d)) per[row.name] = row.bytes_per_token;
            j[std::string("kv_") + key + "_bytes_per_token_" + dtype_name(d)] = per;
        }
    j["kv_llama_config"] = to_json(find_kv_cache_model("llama3-8b")->args);
    j["kv_v3_mla_bytes_per_token_bf16"] = j["kv_v3_bytes_per_token_bf16"]["MLA"];

    // Naive vs absorbed logits over a fixed 40-byte decode of the seeded mini model that `eva init
    // --config mini --seed 1` writes (deterministic: Philox stream, no sampling — the tokens are given).
    const Model<float> m = fresh_model(preset("mini"), 1);
    const std::vector<Token> tokens = encode_bytes("MLA caches one latent per token, not K+V.");
    CacheLockstep run(m, tokens, tokens.size() + 1, 0);
    while (run.fed_naive < tokens.size()) run.step({});
    j["kv_tokens"] = tokens;
    j["kv_mla_max_diff"] = run.max_diff;
    j["kv_logit_scale"] = run.logit_scale;
    j["kv_last_logits_absorbed"] = run.logits_absorbed;
    return j;
}

}  // namespace eva::web

