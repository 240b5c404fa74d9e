// The shared panel pieces of web/panel.hpp.
#include "panel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include <imgui.h>
#include <imgui_internal.h>

#include "eva/data.hpp"

namespace eva::web {

Model<float>* Pretrained::shown() {
    if (state == State::ready) return model.get();
    if (state == State::loading) return nullptr;
    if (!fallback_)  // the same construction `eva init` and `eva train` use (eva::fresh_model)
        fallback_ = std::make_unique<Model<float>>(fresh_model(preset("mini"), 1));
    return fallback_.get();
}

std::string Pretrained::file_bytes() const {
    std::ifstream in(kFile, std::ios::binary);
    return state == State::ready ? std::string(std::istreambuf_iterator<char>(in), {}) : std::string();
}

const char* Pretrained::shown_name() const {
    return fresh() ? "untrained mini model (no checkpoint beside the page)" : "pretrained mini model";
}

const ModelActivations<float>* Pretrained::activations(const std::string& text) {
    const Model<float>* m = shown();
    if (!m) return nullptr;
    if (m != acts_model_ || text != acts_text_) {
        std::vector<Token> tokens = encode_bytes(text);
        tokens.resize(std::min<std::size_t>(tokens.size(), std::min<std::size_t>(128, std::size_t(m->args.max_seq_len))));
        acts_model_ = nullptr;
        if (tokens.empty()) return nullptr;
        model_forward(*m, tokens, 1, tokens.size(), &acts_);
        acts_model_ = m;
        acts_text_ = text;
    }
    return &acts_;
}

int query_int(const Query& q, const char* key, int fallback, int lo, int hi) {
    const auto it = q.find(key);
    if (it == q.end()) return fallback;
    char* end = nullptr;
    const long v = std::strtol(it->second.c_str(), &end, 10);
    return end && *end == 0 && !it->second.empty() && v >= lo && v <= hi ? int(v) : fallback;
}

float query_float(const Query& q, const char* key, float fallback, float lo, float hi) {
    const auto it = q.find(key);
    if (it == q.end()) return fallback;
    char* end = nullptr;
    const float v = std::strtof(it->second.c_str(), &end);
    return end && *end == 0 && !it->second.empty() && std::isfinite(v) && v >= lo && v <= hi ? v : fallback;
}

std::string vformat(const char* fmt, va_list args) {
    va_list again;
    va_copy(again, args);  // the first pass measures, the second writes
    const int n = std::vsnprintf(nullptr, 0, fmt, args);
    std::string out(std::size_t(std::max(n, 0)), '\0');
    std::vsnprintf(out.data(), out.size() + 1, fmt, again);
    va_end(again);
    return out;
}

std::string format(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string out = vformat(fmt, args);
    va_end(args);
    return out;
}

void Rect::record() {
    const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
    r[0] = a.x, r[1] = a.y, r[2] = b.x, r[3] = b.y;
}

void dim_text(const std::string& text) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
    ImGui::TextWrapped("%s", text.c_str());
    ImGui::PopStyleColor();
}

void explain(const char* text) {
    dim_text(text);
    ImGui::Separator();
}

namespace {

nlohmann::json rect_json(ImVec2 a, ImVec2 b) { return {a.x, a.y, b.x, b.y}; }

using UvCorners = std::map<std::pair<float, float>, std::pair<float, float>>;

// The cut glyphs of one window's draw list. A glyph is the quad ImFont::RenderText writes (indices
// v, v+1, v+2, v, v+2, v+3) with texture coordinates off the atlas's white pixel (shapes use only that pixel
// once baked lines are off, as main.cpp sets). It is cut sideways when its clip rectangle or the display's
// edge crosses it, or when ImGui shrank it to fit a frame (its texture corners are then no longer one
// glyph's: `top_left` maps each glyph's (U0, V0) to its (U1, V1), `bottom_right` the reverse). Cut
// vertically (by either), it is only hidden for good in a window that cannot scroll: a scrolling one shows
// the rest of the line when scrolled. ImGui sets a window's scroll range from the previous frame's
// content, so in the frame where the content first outgrows the window (text that grows live, such as
// the KV panel's decoded tokens, just wrapped to a new line) the range is still 0: this frame's content
// reaching past the window (and its bottom padding, as ImGui measures it) counts too.
void cut_glyphs(const ImGuiWindow& w, const UvCorners& top_left, const UvCorners& bottom_right, ImVec2 display,
                long& glyphs, nlohmann::json& cut) {
    const ImDrawList& dl = *w.DrawList;
    const ImVec2 white = ImGui::GetIO().Fonts->TexUvWhitePixel;
    const bool scrolls = w.ScrollMax.y > 0 || w.DC.CursorMaxPos.y + w.WindowPadding.y > w.InnerRect.Max.y;
    for (const ImDrawCmd& cmd : dl.CmdBuffer) {
        const ImDrawIdx* idx = dl.IdxBuffer.Data + cmd.IdxOffset;
        const ImDrawVert* vtx = dl.VtxBuffer.Data + cmd.VtxOffset;
        const ImVec4 c = cmd.ClipRect;
        for (unsigned i = 0; i + 6 <= cmd.ElemCount; i += 3) {
            const ImDrawIdx v = idx[i];
            if (idx[i + 1] != v + 1 || idx[i + 2] != v + 2 || idx[i + 3] != v || idx[i + 4] != v + 2 || idx[i + 5] != v + 3 ||
                (vtx[v].uv.x == white.x && vtx[v].uv.y == white.y))
                continue;
            const ImDrawVert &a = vtx[v], &b = vtx[v + 2];  // top-left and bottom-right corners
            const auto tl = top_left.find({a.uv.x, a.uv.y});
            const auto br = bottom_right.find({b.uv.x, b.uv.y});
            const bool whole = tl != top_left.end() && tl->second == std::make_pair(b.uv.x, b.uv.y);
            const bool whole_width = whole || (tl != top_left.end() && tl->second.first == b.uv.x) ||
                                     (br != bottom_right.end() && br->second.first == a.uv.x);
            const bool cut_height = !whole || a.pos.y < std::max(c.y, 0.0f) || b.pos.y > std::min(c.w, display.y);
            const char* why = !whole_width                                                           ? "cut to fit its frame"
                              : a.pos.x < c.x || b.pos.x > c.z || a.pos.x < 0 || b.pos.x > display.x ? "clipped sideways"
                              : cut_height && !scrolls ? "clipped in a window that cannot scroll"
                                                       : nullptr;
            ++glyphs;
            if (why && cut.size() < 20) cut.push_back({{"window", w.Name}, {"why", why}, {"rect", rect_json(a.pos, b.pos)}});
            i += 3;  // the quad's second triangle
        }
    }
}

}  // namespace

nlohmann::json layout_report() {
    ImGuiContext& g = *ImGui::GetCurrentContext();
    const ImGuiIO& io = g.IO;
    UvCorners top_left, bottom_right;  // each glyph's texture corners, both ways
    for (const ImFont* f : io.Fonts->Fonts)
        for (const ImFontGlyph& gl : f->Glyphs) {
            top_left[{gl.U0, gl.V0}] = {gl.U1, gl.V1};
            bottom_right[{gl.U1, gl.V1}] = {gl.U0, gl.V0};
        }
    nlohmann::json windows = nlohmann::json::array(), cut = nlohmann::json::array();
    long glyphs = 0;
    for (ImGuiWindow* w : g.Windows) {
        if (!w->Active || w->Hidden) continue;
        windows.push_back({{"name", w->Name}, {"rect", rect_json(w->Pos, {w->Pos.x + w->Size.x, w->Pos.y + w->Size.y})},
                           {"overflow_x", w->ScrollMax.x}, {"scroll_y", w->ScrollMax.y}});
        cut_glyphs(*w, top_left, bottom_right, io.DisplaySize, glyphs, cut);
    }
    // Labels ImGui shortens with "..." (their glyphs may all be whole): tabs and table headers too narrow
    // for them, and table cells whose content runs past the column.
    for (int n = 0; n < g.TabBars.GetMapSize(); ++n)
        if (ImGuiTabBar* bar = g.TabBars.TryGetMapData(n); bar && bar->PrevFrameVisible >= g.FrameCount - 1)
            for (const ImGuiTabItem& t : bar->Tabs)
                if (t.Width + 0.5f < t.ContentWidth) cut.push_back({{"why", "tab shortened"}, {"text", bar->GetTabName(&t)}});
    for (int n = 0; n < g.Tables.GetMapSize(); ++n)
        if (ImGuiTable* t = g.Tables.TryGetMapData(n); t && t->LastFrameActive == g.FrameCount)
            for (int c = 0; c < t->ColumnsCount; ++c) {
                const ImGuiTableColumn& col = t->Columns[c];
                const float used = std::max({col.ContentMaxXHeadersIdeal, col.ContentMaxXFrozen, col.ContentMaxXUnfrozen});
                if (col.IsVisibleX && used > col.WorkMaxX + 0.5f)
                    cut.push_back({{"why", "table column too narrow"}, {"text", ImGui::TableGetColumnName(t, c)},
                                   {"over", used - col.WorkMaxX}});
            }
    return {{"display", {io.DisplaySize.x, io.DisplaySize.y}}, {"pixel_ratio", io.DisplayFramebufferScale.x},
            {"windows", windows}, {"glyphs", glyphs}, {"cut", cut}};
}

void begin_block(float width) {
    ImGui::BeginGroup();
    ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + width);
}

void end_block() {
    ImGui::PopTextWrapPos();
    ImGui::EndGroup();
}

void same_line_if_fits(float width) {
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    if (ImGui::GetItemRectMax().x + ImGui::GetStyle().ItemSpacing.x + width <= right) ImGui::SameLine();
}

float control_width(const char* label, float item) {
    const ImGuiStyle& st = ImGui::GetStyle();
    const float text = ImGui::CalcTextSize(label, nullptr, true).x;  // up to "##"
    if (item == 0) return text + 2 * st.FramePadding.x;
    if (item == kBox) item = ImGui::GetFrameHeight();
    return item + (text > 0 ? st.ItemInnerSpacing.x + text : 0);
}

void same_line_for(const char* label, float item) { same_line_if_fits(control_width(label, item)); }

void radio_row(const char* title, int& value, const std::vector<const char*>& names, const std::vector<Rect*>& rects) {
    if (title) {
        ImGui::TextUnformatted(title);
        ImGui::SameLine();
    }
    int i = 0;
    for (const char* name : names) {
        if (i > 0) same_line_for(name, kBox);
        ImGui::RadioButton(name, &value, i);
        if (std::size_t(i) < rects.size() && rects[std::size_t(i)]) rects[std::size_t(i)]->record();
        ++i;
    }
}

void beside(const char* label, float item) {
    same_line_for(label, item);
    ImGui::SetNextItemWidth(item);
}

}  // namespace eva::web
