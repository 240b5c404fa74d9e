// The FP8 error panel. Every figure comes from eva's fp8 module (core/include/eva/fp8.hpp) compiled to
// WebAssembly: the codecs, scaled quantization (per tensor, 1×128 tiles, 128×128 blocks, delayed scaling
// with an amax history), the error metrics and the FP8 GEMM with its limited-precision accumulator.
#include "panel_fp8.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <imgui.h>

#include "draw.hpp"
#include "panel.hpp"
#include "eva/hf_checkpoint.hpp"
#include "eva/model.hpp"

namespace eva::web {

namespace {

Fp8Format format_of(const Fp8Panel& p) { return p.format == 0 ? Fp8Format::E4M3 : Fp8Format::E5M2; }
const char* granularity_label(int g) {
    static const char* names[] = {"per tensor", "1x128 tiles", "128x128 blocks", "delayed (amax history)"};
    return names[g];
}
// Smallest positive (subnormal) magnitude of the format: code 0x01.
float fp8_min_subnormal(Fp8Format f) { return fp8_decode(0x01, f); }

// ------------------------------------------------------------------------------ choosing the tensor
std::vector<std::string> matrix_names(Model<float>& m) {
    std::vector<std::string> names;
    for (const auto& t : named_tensors(m.w))
        if (t.shape.size() == 2) names.push_back(t.name);
    return names;
}

// Standard normal data (seeded) with a share of outliers at ±magnitude·σ, as activations of large models have.
void synthetic(Fp8Panel& p) {
    p.rows = 256;
    p.cols = 512;
    std::size_t outliers = 0;
    p.x = fp8_outlier_tensor(p.rows * p.cols, p.outlier_fraction, p.outlier_magnitude, 7, &outliers);
    p.tensor_name = format("synthetic N(0,1) 256x512, %zu outliers at +-%.0f", outliers, p.outlier_magnitude);
}

std::string tensor_key(const Fp8Panel& p, Pretrained& ck) {
    return format("%d|%d|%d|%d|%g|%g|", p.source, int(ck.state), p.layer, p.point, p.outlier_fraction,
                  p.outlier_magnitude) + p.weight + "|" + p.text;
}

void load_tensor(Fp8Panel& p, Pretrained& ck) {
    p.tensor_error.clear();
    p.stored = {};
    p.x.clear();
    p.rows = p.cols = 0;
    if (p.source == Fp8Panel::Synthetic) return synthetic(p);
    const std::string note = ck.shown_name();
    Model<float>* m = ck.shown();
    if (!m) {
        p.tensor_error = "waiting for the pretrained checkpoint (mini.safetensors)...";
        return;
    }
    if (p.source == Fp8Panel::Weight) {
        for (const auto& t : named_tensors(m->w))
            if (t.name == p.weight && t.shape.size() == 2) {
                p.rows = t.shape[0];
                p.cols = t.shape[1];
                p.x.assign(t.data, t.data + t.size());
                p.tensor_name = t.name + " [" + std::to_string(p.rows) + "x" + std::to_string(p.cols) + "] of the " + note;
                if (ck.stored && ck.model && ck.state == Pretrained::State::ready)  // as stored, if in FP8
                    p.stored = stored_fp8_view(*ck.stored, t.name, p.x.data());
                return;
            }
        p.tensor_error = "no matrix named " + p.weight;
        return;
    }
    const ModelActivations<float>* acts = ck.activations(p.text);
    if (!acts) {
        p.tensor_error = "type some text: the activations are those of the model reading it";
        return;
    }
    p.layer = std::clamp(p.layer, 0, int(acts->layers.size()) - 1);
    const LayerActivations<float>& L = acts->layers[std::size_t(p.layer)];
    const Matrix<float>& a = p.point == Fp8Panel::ResidualX ? L.x : p.point == Fp8Panel::AttnNormX ? L.xn : L.hn;
    p.rows = a.shape(0);
    p.cols = a.shape(1);
    p.x.assign(a.data(), a.data() + a.size());
    static const char* points[] = {"x (block input, residual stream)", "attn_norm(x) (input of the attention GEMMs)",
                                   "ffn_norm(h) (input of the FFN GEMMs)"};
    p.tensor_name = "layer " + std::to_string(p.layer) + " " + points[p.point] + " [" + std::to_string(p.rows) +
                    " tokens x " + std::to_string(p.cols) + "] of the " + note;
}

// ---------------------------------------------------------------------------------- quantization
Fp8QuantConfig quant_config(const Fp8Panel& p) {
    Fp8QuantConfig cfg;
    cfg.format = format_of(p);
    cfg.pow2_scales = p.pow2;
    cfg.granularity = p.granularity == Fp8Panel::Tile    ? Fp8Granularity::Tile
                      : p.granularity == Fp8Panel::Block ? Fp8Granularity::Block
                                                         : Fp8Granularity::Tensor;
    return cfg;
}

// Quantizes `shown` (the tensor, or one delayed-scaling step of it) and derives the metrics and views:
// the histogram of |x|/s under the format's grid and the error per cell (both eva/fp8.hpp).
void finish_quantization(Fp8Panel& p, const std::vector<float>& shown) {
    p.metrics = quantization_metrics(shown.data(), p.cols, p.q);
    p.hist = fp8_scaled_histogram(shown.data(), p.cols, p.q, Fp8Panel::kBinsPerOctave);
    p.grid = fp8_error_grid(shown.data(), p.cols, p.q, p.relative_heatmap);
    if (p.grid.hi - p.grid.lo < 0.1f) p.grid.hi = p.grid.lo + 0.1f;  // a colour ramp at least 0.1 decades wide
}

void update(Fp8Panel& p, Pretrained& ck) {
    const std::string tk = tensor_key(p, ck);
    if (tk != p.tensor_key) {
        p.tensor_key = tk;
        load_tensor(p, ck);
        p.key.clear();
    }
    if (p.x.empty()) return;
    const std::string k = tk + format("%d|%d|%d|%d|%d|%d", p.format, p.granularity, int(p.pow2),
                                      int(p.relative_heatmap), p.history_length, int(p.spike));
    const bool changed = k != p.key;
    p.key = k;
    if (p.granularity != Fp8Panel::Delayed) {
        if (changed) {
            p.q = quantize(p.x.data(), p.rows, p.cols, p.cols, quant_config(p));
            finish_quantization(p, p.x);
        }
        return;
    }
    if (changed) {
        p.delayed.emplace(std::size_t(p.history_length), p.spike, quant_config(p));
        p.built_step = -1;
    }
    p.delayed->advance(p.x, p.rows, p.cols);  // one step per frame: each is a full quantization
    // The shown step's views are built once that step exists (not every frame while the run advances).
    if (p.shown_step >= p.delayed->done()) {  // nothing to show yet: the panel says which step it computes
        p.hist = {};
        p.built_step = -1;
    } else if (p.shown_step != p.built_step) {
        p.q = p.delayed->replay(p.x, p.rows, p.cols, p.shown_step);
        finish_quantization(p, p.delayed->step_tensor(p.x, p.shown_step));
        p.built_step = p.shown_step;
    }
}

// ------------------------------------------------------------------------------------------ drawing
// Histogram of log2(|x|/s) with the format's representable magnitudes as a comb underneath; the flush-to-zero
// and saturation regions are tinted. Bar heights are log10(1 + count) so single outliers stay visible.
void draw_histogram(const Fp8Panel& p, ImVec2 size) {
    const Fp8Format f = format_of(p);
    const Fp8ScaledHistogram& H = p.hist;
    const int bins = int(H.counts.size());
    const float octaves = float(bins) / float(H.bins_per_octave), comb = 14, axis = 16;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    ImGui::InvisibleButton("hist", size);
    const float plot_h = size.y - comb - axis;
    auto x_of = [&](float log2v) { return o.x + (log2v - H.lo) / octaves * size.x; };
    dl->AddRectFilled(o, ImVec2(o.x + size.x, o.y + plot_h), IM_COL32(30, 32, 40, 255));
    const float flush = std::log2(fp8_min_subnormal(f) / 2), top = std::log2(fp8_max(f));
    dl->AddRectFilled(o, ImVec2(x_of(flush), o.y + plot_h), IM_COL32(120, 40, 40, 90));
    dl->AddRectFilled(ImVec2(x_of(top), o.y), ImVec2(o.x + size.x, o.y + plot_h), IM_COL32(120, 40, 40, 90));
    float peak = 1;
    for (float c : H.counts) peak = std::max(peak, std::log10(1 + c));
    const float bw = size.x / float(bins);
    for (int b = 0; b < bins; ++b) {
        if (H.counts[std::size_t(b)] == 0) continue;
        const float h = std::log10(1 + H.counts[std::size_t(b)]) / peak * (plot_h - 4);
        dl->AddRectFilled(ImVec2(o.x + float(b) * bw, o.y + plot_h - h), ImVec2(o.x + float(b + 1) * bw - 1, o.y + plot_h),
                          IM_COL32(110, 170, 240, 255));
    }
    // The comb: one tick per positive finite code (127 for E4M3, 123 for E5M2).
    for (int c = 1; c < 0x80; ++c) {
        const float v = fp8_decode(std::uint8_t(c), f);
        if (!std::isfinite(v)) continue;
        const float x = x_of(std::log2(v));
        dl->AddLine(ImVec2(x, o.y + plot_h + 1), ImVec2(x, o.y + plot_h + comb - 2), IM_COL32(240, 200, 90, 200));
    }
    for (int e = int(std::ceil(H.lo)); e <= int(H.lo + octaves); e += 4) {
        const float x = x_of(float(e));
        if (x < o.x + 4 || x > o.x + size.x - 30) continue;  // keep the labels inside the chart
        dl->AddLine(ImVec2(x, o.y + plot_h + comb), ImVec2(x, o.y + plot_h + comb + 3), IM_COL32(200, 200, 200, 255));
        dl->AddText(ImVec2(x - 8, o.y + plot_h + comb + 2), IM_COL32(200, 200, 200, 255), format("2^%d", e).c_str());
    }
    if (ImGui::IsItemHovered()) {
        const int b = int((ImGui::GetIO().MousePos.x - o.x) / bw);
        if (b >= 0 && b < bins) {
            const float l = H.lo + float(b) / float(H.bins_per_octave);
            draw::tooltip("|x|/s in [%.3g, %.3g): %.0f values", std::exp2(l), std::exp2(l + 1.0f / float(H.bins_per_octave)),
                          H.counts[std::size_t(b)]);
        }
    }
}

void draw_controls(Fp8Panel& p, Pretrained& ck) {
    radio_row(nullptr, p.source, {"trained weight", "activation", "synthetic"});  // Fp8Panel's Source order
    same_line_for("E4M3", kBox);
    radio_row(nullptr, p.format, {"E4M3", "E5M2"}, {nullptr, &p.e5m2_rect});
    same_line_for("power-of-two scales", kBox);
    ImGui::Checkbox("power-of-two scales", &p.pow2);

    radio_row(nullptr, p.granularity, {granularity_label(0), granularity_label(1), granularity_label(2), granularity_label(3)},
              {nullptr, nullptr, &p.block_rect, &p.delayed_rect});
    ImGui::SetNextItemWidth(320);
    if (p.source == Fp8Panel::Weight) {
        Model<float>* m = ck.shown();
        if (m && ImGui::BeginCombo("weight", p.weight.c_str())) {
            for (const std::string& n : matrix_names(*m))
                if (ImGui::Selectable(n.c_str(), n == p.weight)) p.weight = n;
            ImGui::EndCombo();
        }
    } else if (p.source == Fp8Panel::Activation) {
        Model<float>* m = ck.shown();
        ImGui::SliderInt("layer", &p.layer, 0, m ? int(m->args.n_layers) - 1 : 0);
        beside("point", 300);
        ImGui::Combo("point", &p.point, "block input x\0attn_norm(x)\0ffn_norm(h)\0");
        char buf[512];
        std::snprintf(buf, sizeof buf, "%s", p.text.c_str());
        ImGui::SetNextItemWidth(-1);
        if (ImGui::InputText("##text", buf, sizeof buf, ImGuiInputTextFlags_EnterReturnsTrue)) p.text = buf;
    } else {
        ImGui::SliderFloat("outlier share", &p.outlier_fraction, 0.0f, 0.01f, "%.4f");
        beside("outlier magnitude (sigma)", 240);
        ImGui::SliderFloat("outlier magnitude (sigma)", &p.outlier_magnitude, 2.0f, 10000.0f, "%.0f",
                           ImGuiSliderFlags_Logarithmic);
    }
    if (p.granularity == Fp8Panel::Delayed) {
        ImGui::SetNextItemWidth(160);
        ImGui::SliderInt("history length", &p.history_length, 1, 16);
        same_line_for("x4 spike at step 16", kBox);
        ImGui::Checkbox("x4 spike at step 16", &p.spike);
        beside("shown step", 200);
        ImGui::SliderInt("shown step", &p.shown_step, 0, Fp8DelayedRun::kSteps - 1);
    }
}

// The stored weight: the scales grid (one weight_scale_inv per 128x128 block, click one to list its
// codes), the first codes of that block in hex with their values, and how often each code occurs.
void draw_stored(Fp8Panel& p, float width) {
    const StoredFp8View& st = p.stored;
    const Fp8Matrix& q = st.q;
    const std::size_t sr = q.scale_rows(), sc = q.scale_cols();
    ImGui::Text("As stored in mini.safetensors: %s codes [%zu x %zu], 1 byte per weight, and weight_scale_inv "
                "[%zu x %zu] float32, one per 128x128 block (weight = code value x its block's scale).",
                q.format == Fp8Format::E4M3 ? "F8_E4M3" : "F8_E5M2", q.rows, q.cols, sr, sc);
    ImGui::Text("Dequantized, these codes are the weight the page loaded: max relative difference %.3g over %zu "
                "elements (0: the model runs on exactly these numbers).",
                st.check.max_rel_error, st.check.count);
    p.stored_block = std::clamp(p.stored_block, 0, int(sr * sc) - 1);
    const float left = std::min(width * 0.34f, 90.0f * float(sc) + 40);
    ImGui::BeginGroup();
    ImGui::TextUnformatted("weight_scale_inv (click a block):");
    if (ImGui::BeginTable("fp8_scales", int(sc), ImGuiTableFlags_Borders | ImGuiTableFlags_SizingFixedFit)) {
        for (std::size_t r = 0; r < sr; ++r)
            for (std::size_t c = 0; c < sc; ++c) {
                ImGui::TableNextColumn();
                const int b = int(r * sc + c);
                if (ImGui::Selectable(format("%.4e##s%d", double(q.scales[std::size_t(b)]), b).c_str(), p.stored_block == b))
                    p.stored_block = b;
            }
        ImGui::EndTable();
    }
    ImGui::EndGroup();
    ImGui::SameLine(left + 20);
    ImGui::BeginGroup();
    const std::size_t br = std::size_t(p.stored_block) / sc, bc = std::size_t(p.stored_block) % sc;
    const std::size_t r0 = br * 128, c0 = bc * 128, nr = std::min<std::size_t>(8, q.rows - r0),
                      nc = std::min<std::size_t>(16, q.cols - c0);
    const float s = q.scales[std::size_t(p.stored_block)];
    ImGui::Text("codes of block (%zu, %zu), rows %zu.., columns %zu.. (hover: value):", br, bc, r0, c0);
    for (std::size_t r = r0; r < r0 + nr; ++r) {
        for (std::size_t c = c0; c < c0 + nc; ++c) {
            if (c > c0) ImGui::SameLine(0, 4);
            const std::uint8_t code = q.codes[r * q.cols + c];
            ImGui::Text("%02X", code);
            if (ImGui::IsItemHovered())
                draw::tooltip("code 0x%02X = %g, x scale %.4e = %.6g", code, double(fp8_decode(code, q.format)),
                              double(s), double(fp8_decode(code, q.format) * s));
        }
    }
    ImGui::EndGroup();
    // Code frequencies, codes in order of their value (negative to positive), bar height log10(1 + count).
    const std::vector<std::uint8_t> order = fp8_codes_by_value(q.format);
    std::vector<float> h;
    float top = 0;
    for (std::uint8_t c : order) top = std::max(top, h.emplace_back(std::log10(1.0f + float(st.counts[c]))));
    ImGui::Text("how often each of the %zu codes occurs (by value, -max .. +max; log10(1 + count)): the weights use "
                "%zu of them", order.size(),
                std::size_t(std::count_if(st.counts.begin(), st.counts.end(), [](std::size_t n) { return n > 0; })));
    draw::bars("fp8_code_counts", h.data(), int(h.size()), top, ImVec2(width, 70));
}

void draw_metrics(const Fp8Panel& p) {
    const Fp8ErrorMetrics& m = p.metrics;
    ImGui::Text("%s", p.tensor_name.c_str());
    ImGui::Text("%s, %s%s: %zu scale(s) | SNR %.2f dB | relative error mean %.3f%%, max %.2f%% | "
                "flushed to zero: %zu | saturated: %zu of %zu",
                fp8_format_name(format_of(p)), granularity_label(p.granularity), p.pow2 ? ", 2^k scales" : "",
                p.q.scales.size(), m.snr_db, 100 * m.mean_rel_error, 100 * m.max_rel_error, m.underflow, m.saturated,
                m.count);
    if (p.source == Fp8Panel::Synthetic && p.outlier_fraction > 0)
        ImGui::TextDisabled("SNR weighs energy, so the few outliers dominate it; the mean relative error and the "
                            "flushed count show what their scale does to the other values.");
}

void draw_delayed(const Fp8Panel& p, float width) {
    const Fp8DelayedRun& d = *p.delayed;
    ImGui::TextWrapped("Delayed scaling: step t's scale comes from the largest amax of the previous %d step(s), "
                       "recorded after quantizing, so no extra pass over the data is needed; a sudden jump (the "
                       "x4 spike) is clipped at 448*s (or 57344*s) for as long as the history has not seen it.",
                       p.history_length);
    const int n = d.done();
    if (n == 0) return;
    float steps[Fp8DelayedRun::kSteps], sat[Fp8DelayedRun::kSteps], ratio[Fp8DelayedRun::kSteps];
    for (int t = 0; t < n; ++t) {
        steps[t] = float(t);
        sat[t] = std::max(d.saturated[std::size_t(t)], 0.5f);  // log axis: 0.5 stands for "none"
        ratio[t] = d.amax[std::size_t(t)] / d.used_amax[std::size_t(t)];
    }
    const draw::Series s1[] = {{"SNR (dB)", d.snr_db.data(), n, IM_COL32(110, 170, 240, 255), steps}};
    const draw::Series s2[] = {{"saturated values (0.5 = none)", sat, n, IM_COL32(240, 110, 90, 255), steps},
                               {"amax / history amax", ratio, n, IM_COL32(240, 200, 90, 255), steps}};
    draw::lines("delayed_snr", s1, 1, ImVec2(width * 0.5f - 8, 120), false, "step", "SNR dB");
    ImGui::SameLine();
    draw::lines("delayed_sat", s2, 2, ImVec2(width * 0.5f - 8, 120), true, "step", nullptr);
}

void draw_accumulation(Fp8AccumulationSweep& e, float width) {
    ImGui::Text("GEMM accumulation (DeepSeek-V3 sec. 3.3.2): C = A.B^T, A %zux K, B %zux K ~ N(0,1) in E4M3, error "
                "||C - R|| / ||R|| against R = the double product of the same FP8 inputs", e.m, e.n);
    ImGui::SetNextItemWidth(160);
    const int bits = e.accum_bits;
    ImGui::SliderInt("accumulator mantissa bits", &e.accum_bits, 8, 23);
    if (bits != e.accum_bits) e.restart();
    ImGui::SameLine();
    const int done = int(e.never.size());
    if (e.finished()) ImGui::Text("done: %d values of K", done);
    else ImGui::Text("computing K = %zu ... (a slice per frame)", e.k(done));
    std::vector<float> log2_k, never(e.never.begin(), e.never.end()), promoted(e.promoted.begin(), e.promoted.end());
    for (int i = 0; i < done; ++i) log2_k.push_back(std::log2(float(e.k(i))));
    const draw::Series s[] = {
        {"accumulator over all of K (no promotion)", never.data(), done, IM_COL32(240, 110, 90, 255), log2_k.data()},
        {"promoted to fp32 every N_C = 128", promoted.data(), done, IM_COL32(110, 200, 140, 255), log2_k.data()}};
    const float h = std::max(130.0f, ImGui::GetContentRegionAvail().y - 4);  // the rest of the frame
    draw::lines("accum", s, 2, ImVec2(width, h), true, "log2 K", "relative error");
}

}  // namespace

// ------------------------------------------------------------------------------------------ the panel
void fp8_panel(Fp8Panel& p, Pretrained& ck) {
    explain("FP8 keeps 8 bits per number: E4M3 has 3 mantissa bits (neighbours 7-12.5% apart) up to 448, E5M2 only 2 but "
            "reaches 57344. Each group of values is divided by a scale s = amax/max before rounding, so the "
            "histogram shows |x|/s against the format's grid (the yellow comb): values in the left red region "
            "flush to zero, and an outlier in a group pushes the rest down into the sparse subnormal end of the "
            "grid - which is why DeepSeek-V3 scales per 1x128 tile and 128x128 block.");
    if (ck.state == Pretrained::State::ready) dim_text(ck.message);  // how the file stores the model, and its size
    draw_controls(p, ck);
    update(p, ck);
    if (!p.accum.finished()) {  // bounded work per frame: 65536 products per accumulator variant
        const auto t0 = Clock::now();
        p.accum.step(65536);
        ++p.accum_frames;
        p.accum_ms = ms_since(t0);
    }
    const float width = ImGui::GetContentRegionAvail().x;
    if (!p.tensor_error.empty()) {
        ImGui::TextUnformatted(p.tensor_error.c_str());
    } else if (p.granularity == Fp8Panel::Delayed && p.hist.counts.empty()) {
        ImGui::Text("delayed scaling: computing step %d of %d (one per frame) ...", p.delayed ? p.delayed->done() : 0,
                    Fp8DelayedRun::kSteps);
    } else if (!p.x.empty() && !p.hist.counts.empty()) {
        draw_metrics(p);
        const float left = width * 0.58f;
        const float hw = width - left - 10;
        begin_block(left);
        ImGui::Text("histogram of log2(|x|/s), bar height log10(1 + count); %zu exact zeros", p.hist.zeros);
        draw_histogram(p, ImVec2(left, 190));
        end_block();
        ImGui::SameLine();
        begin_block(hw);
        ImGui::Checkbox("relative error |x-q|/|x|", &p.relative_heatmap);
        const Fp8ErrorGrid& g = p.grid;
        ImGui::Text("log10 of the mean error per cell of %zux%zu elements:", g.cell_rows, g.cell_cols);
        ImGui::Text("%.2f dark .. %.2f bright; box: saturated/flushed", g.lo, g.hi);
        const float hh = std::min(170.0f, hw * float(g.rows) / float(std::max<std::size_t>(g.cols, 1)));
        draw::heatmap("fp8_err", g.log10_mean.data(), int(g.rows), int(g.cols), g.lo, g.hi, ImVec2(hw, hh), false,
                      g.marked.data());
        end_block();
        if (p.granularity == Fp8Panel::Delayed) draw_delayed(p, width);
        if (p.source == Fp8Panel::Weight && !p.stored.name.empty()) {
            ImGui::Separator();
            draw_stored(p, width);
        }
    }
    ImGui::Separator();
    draw_accumulation(p.accum, width);
}

namespace {
// The names of the source, format and granularity choices in the state and the query string.
const char* const kSources[] = {"weight", "activation", "synthetic"};
const char* const kFormats[] = {"e4m3", "e5m2"};
const char* const kGranularities[] = {"tensor", "tile", "block", "delayed"};
}  // namespace

nlohmann::json fp8_state(const Fp8Panel& p) {
    nlohmann::json accum = nlohmann::json::array();
    for (std::size_t i = 0; i < p.accum.never.size(); ++i)
        accum.push_back({{"k", p.accum.k(int(i))}, {"never", p.accum.never[i]}, {"promoted", p.accum.promoted[i]}});
    nlohmann::json stored = nullptr;
    if (!p.stored.name.empty()) {
        stored = p.stored.to_json();
        stored["block"] = p.stored_block;
    }
    nlohmann::json j = {{"source", kSources[p.source]}, {"tensor", p.tensor_name}, {"error", p.tensor_error}, {"stored", stored},
            {"rows", p.rows}, {"cols", p.cols},
            {"format", fp8_format_name(format_of(p))}, {"granularity", kGranularities[p.granularity]}, {"pow2", p.pow2},
            {"scales", p.q.scales.size()},
            {"grid", {p.grid.rows, p.grid.cols}}, {"cell", {p.grid.cell_rows, p.grid.cell_cols}},
            {"accum_bits", p.accum.accum_bits}, {"accum", accum}, {"accum_ms", p.accum_ms}, {"accum_frames", p.accum_frames},
            {"ui", {{"e5m2", p.e5m2_rect.to_json()}, {"block", p.block_rect.to_json()},
                    {"delayed", p.delayed_rect.to_json()}}},
            {"delayed", {{"done", p.delayed ? p.delayed->done() : 0}, {"history_length", p.history_length},
                         {"saturated", p.delayed ? p.delayed->saturated : std::vector<float>{}},
                         {"snr_db", p.delayed ? p.delayed->snr_db : std::vector<float>{}}}}};
    j.update(p.metrics.to_json());  // snr_db, mean_rel_error, ..., count: the figures `eva fp8 quantize` prints
    return j;
}

void fp8_from_query(Fp8Panel& p, const Query& q) {
    p.source = query_choice(q, "source", kSources, p.source);
    p.format = query_choice(q, "format", kFormats, p.format);
    p.granularity = query_choice(q, "granularity", kGranularities, p.granularity);
    p.pow2 = query_int(q, "pow2", p.pow2, 0, 1) == 1;
    p.accum.accum_bits = query_int(q, "accum_bits", p.accum.accum_bits, 8, 23);
}

Query fp8_to_query(const Fp8Panel& p) {
    return {{"source", kSources[p.source]}, {"format", kFormats[p.format]},
            {"granularity", kGranularities[p.granularity]}, {"pow2", p.pow2 ? "1" : "0"},
            {"accum_bits", std::to_string(p.accum.accum_bits)}};
}

std::string fp8_summary(const Fp8Panel& p) {
    std::string out = format("FP8 %s, %s scales, %s: SNR %.1f dB, mean relative error %.2e, %zu saturated, %zu "
                             "flushed to zero of %zu.", fp8_format_name(format_of(p)), granularity_label(p.granularity),
                             p.tensor_name.c_str(), p.metrics.snr_db, p.metrics.mean_rel_error, p.metrics.saturated,
                             p.metrics.underflow, p.metrics.count);
    for (std::size_t i = 0; i < p.accum.never.size(); ++i)
        if (p.accum.k(int(i)) == 4096)
            out += format(" GEMM accumulation at K = 4096 with a %d-bit accumulator: %.2f%% without promotion, %.3f%% "
                          "promoted every 128.", p.accum.accum_bits, 100.0 * p.accum.never[i], 100.0 * p.accum.promoted[i]);
    return out;
}

// ------------------------------------------------------------------------------------------ self-test
namespace {

// All 256 codes decoded and encoded back, under the names the browser test compares with `eva fp8 table`.
nlohmann::json round_trip(Fp8Format f, const std::string& p) {
    const Fp8CodeRoundTrip r = fp8_code_round_trip(f);
    return {{p + "_roundtrip_mismatches", r.mismatches}, {p + "_nan_codes", r.nans}, {p + "_values", r.values},
            {p + "_reencoded", r.reencoded}, {p + "_simd_scalar_mismatches", r.simd_scalar_mismatches}};
}

// What `eva fp8 gemm-error --m 16 --n 16 --k 4096 --seed 1 --granularity G --promote-every P --json` prints
// (accumulation and total error): the same core function, compiled to WebAssembly.
Fp8GemmErrors gemm_errors(const char* granularity, std::size_t promote_every) {
    Fp8GemmConfig cfg;
    cfg.promote_every = promote_every;
    return fp8_gemm_error_experiment(16, 16, 4096, 1, granularity, Fp8Format::E4M3, cfg);
}

}  // namespace

nlohmann::json fp8_self_test() {
    nlohmann::json j = round_trip(Fp8Format::E4M3, "fp8_e4m3");
    j.update(round_trip(Fp8Format::E5M2, "fp8_e5m2"));
    const Fp8GemmErrors ds = gemm_errors("deepseek", 128), never = gemm_errors("tensor", 0);
    j["fp8_gemm_deepseek_accumulation_rel_error"] = ds.accumulation.relative();
    j["fp8_gemm_deepseek_total_rel_error"] = ds.total.relative();
    j["fp8_gemm_never_accumulation_rel_error"] = never.accumulation.relative();
    j["fp8_gemm_never_total_rel_error"] = never.total.relative();
    return j;
}

}  // namespace eva::web
