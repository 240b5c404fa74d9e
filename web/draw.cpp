#include "draw.hpp"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <string>

#include "panel.hpp"

namespace eva::web::draw {
namespace {

ImU32 mix(ImVec4 a, ImVec4 b, float t) {
    return ImGui::ColorConvertFloat4ToU32(
        ImVec4(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, a.z + (b.z - a.z) * t, 1.0f));
}

float clamp01(float t) { return std::isfinite(t) ? std::clamp(t, 0.0f, 1.0f) : 0.0f; }

// Reserves `size` at the cursor as one item (so hovering and layout work like any widget) and
// returns its top-left corner.
ImVec2 reserve(const char* id, ImVec2 size) {
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImGui::InvisibleButton(id, ImVec2(std::max(size.x, 1.0f), std::max(size.y, 1.0f)));
    return p;
}

const ImU32 axis_colour = IM_COL32(120, 125, 135, 255);
const ImU32 label_colour = IM_COL32(170, 175, 185, 255);

}  // namespace

void tooltip(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    const std::string text = vformat(fmt, args);
    va_end(args);
    const ImVec2 fit = ImGui::CalcTextSize(text.c_str()), pad = ImGui::GetStyle().WindowPadding;
    ImGui::SetNextWindowSize(ImVec2(fit.x + 2 * pad.x, fit.y + 2 * pad.y));  // overrides the late auto-fit
    ImGui::SetTooltip("%s", text.c_str());
}

float max_abs(const std::vector<float>& values) {
    float m = 1e-6f;
    for (float v : values) m = std::max(m, std::fabs(v));
    return m;
}

ImU32 sequential(float t) {
    // Three stops chosen so that perceived brightness rises monotonically.
    const ImVec4 stops[] = {{0.07f, 0.06f, 0.23f, 1}, {0.13f, 0.55f, 0.55f, 1}, {0.99f, 0.91f, 0.15f, 1}};
    t = clamp01(t) * 2.0f;
    const int i = std::min(int(t), 1);
    return mix(stops[i], stops[i + 1], t - float(i));
}

ImU32 diverging(float t) {
    t = std::isfinite(t) ? std::clamp(t, -1.0f, 1.0f) : 0.0f;
    const ImVec4 neutral{0.16f, 0.17f, 0.20f, 1}, blue{0.25f, 0.55f, 1.0f, 1}, red{1.0f, 0.35f, 0.30f, 1};
    return t < 0 ? mix(neutral, blue, -t) : mix(neutral, red, t);
}

void heatmap(const char* id, const float* values, int rows, int cols, float lo, float hi, ImVec2 size,
             bool diverging_scale, const unsigned char* mark) {
    const ImVec2 p = reserve(id, size);
    if (rows <= 0 || cols <= 0) return;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float cw = size.x / float(cols), ch = size.y / float(rows);
    const float span = diverging_scale ? std::max(std::abs(lo), std::abs(hi)) : hi - lo;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
            const float v = values[r * cols + c];
            const ImU32 colour = diverging_scale ? diverging(span > 0 ? v / span : 0.0f)
                                                 : sequential(span > 0 ? (v - lo) / span : 0.0f);
            const ImVec2 a(p.x + float(c) * cw, p.y + float(r) * ch), b(a.x + cw, a.y + ch);
            dl->AddRectFilled(a, b, colour);
            if (mark && mark[r * cols + c]) dl->AddRect(a, b, IM_COL32_WHITE, 0.0f, 0, std::max(1.0f, cw * 0.12f));
        }
    if (ImGui::IsItemHovered()) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        const int c = std::clamp(int((m.x - p.x) / cw), 0, cols - 1), r = std::clamp(int((m.y - p.y) / ch), 0, rows - 1);
        tooltip("row %d, col %d: %.5g", r, c, double(values[r * cols + c]));
    }
}

void bars(const char* id, const float* values, int n, float top, ImVec2 size, const char* const* labels,
          const ImU32* colours) {
    const float label_h = labels ? ImGui::GetTextLineHeight() : 0.0f;
    const ImVec2 p = reserve(id, size);
    if (n <= 0) return;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float plot_h = size.y - label_h, slot = size.x / float(n), gap = std::min(4.0f, slot * 0.2f);
    const ImU32 fill = ImGui::GetColorU32(ImGuiCol_PlotHistogram);
    for (int i = 0; i < n; ++i) {
        const float h = plot_h * clamp01(top > 0 ? values[i] / top : 0.0f);
        const float x0 = p.x + float(i) * slot + gap * 0.5f, x1 = p.x + float(i + 1) * slot - gap * 0.5f;
        dl->AddRectFilled(ImVec2(x0, p.y + plot_h - h), ImVec2(x1, p.y + plot_h), colours ? colours[i] : fill);
        if (labels && labels[i]) {
            const ImVec2 ts = ImGui::CalcTextSize(labels[i]);
            dl->AddText(ImVec2(x0 + (x1 - x0 - ts.x) * 0.5f, p.y + plot_h + 1.0f), label_colour, labels[i]);
        }
    }
    dl->AddLine(ImVec2(p.x, p.y + plot_h), ImVec2(p.x + size.x, p.y + plot_h), axis_colour);
    if (ImGui::IsItemHovered()) {
        const int i = std::clamp(int((ImGui::GetIO().MousePos.x - p.x) / slot), 0, n - 1);
        tooltip("%s%s%.5g", labels && labels[i] ? labels[i] : "", labels && labels[i] ? ": " : "",
                double(values[i]));
    }
}

void lines(const char* id, const Series* series, int count, ImVec2 size, bool log_y, const char* x_label,
           const char* y_label) {
    const ImVec2 p = reserve(id, size);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float text_h = ImGui::GetTextLineHeight();
    // Data range over every finite point (log axis: positive ones only).
    auto ty = [log_y](float y) { return log_y ? std::log10(y) : y; };
    auto usable = [log_y](float y) { return std::isfinite(y) && (!log_y || y > 0); };
    float x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
    for (int s = 0; s < count; ++s)
        for (int i = 0; i < series[s].n; ++i) {
            const float x = series[s].x ? series[s].x[i] : float(i), y = series[s].y[i];
            if (!usable(y) || !std::isfinite(x)) continue;
            x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
            y_lo = std::min(y_lo, ty(y)), y_hi = std::max(y_hi, ty(y));
        }
    // The plot area leaves room for the y tick labels on the left and x labels below.
    const float left = ImGui::CalcTextSize("-0.0000").x + 4, bottom = text_h * (x_label ? 2.0f : 1.0f) + 2;
    const ImVec2 a(p.x + left, p.y + text_h * 0.5f), b(p.x + size.x - 4, p.y + size.y - bottom);
    dl->AddRect(a, b, axis_colour);
    if (!(x_lo <= x_hi)) return;  // nothing to draw yet
    if (x_hi == x_lo) x_hi = x_lo + 1;
    if (y_hi == y_lo) y_lo -= 0.5f, y_hi += 0.5f;
    auto to_screen = [&](float x, float y) {
        return ImVec2(a.x + (x - x_lo) / (x_hi - x_lo) * (b.x - a.x), b.y - (ty(y) - y_lo) / (y_hi - y_lo) * (b.y - a.y));
    };
    for (int k = 0; k <= 4; ++k) {  // five y ticks; on a log axis they are labelled with 10^value
        const float v = y_lo + (y_hi - y_lo) * float(k) / 4.0f, sy = b.y - (b.y - a.y) * float(k) / 4.0f;
        const std::string tick = format("%.3g", log_y ? std::pow(10.0, double(v)) : double(v));
        dl->AddText(ImVec2(p.x, sy - text_h * 0.5f), label_colour, tick.c_str());
        dl->AddLine(ImVec2(a.x, sy), ImVec2(a.x + 4, sy), axis_colour);
    }
    const std::string lo_label = format("%.4g", double(x_lo)), hi_label = format("%.4g", double(x_hi));
    dl->AddText(ImVec2(a.x, b.y + 1), label_colour, lo_label.c_str());
    dl->AddText(ImVec2(b.x - ImGui::CalcTextSize(hi_label.c_str()).x, b.y + 1), label_colour, hi_label.c_str());
    if (x_label) dl->AddText(ImVec2((a.x + b.x - ImGui::CalcTextSize(x_label).x) * 0.5f, b.y + text_h + 1), label_colour, x_label);
    if (y_label) dl->AddText(ImVec2(a.x + 6, a.y + 2), label_colour, y_label);
    float legend_x = b.x - 6, legend_y = a.y + 2;
    for (int s = count - 1; s >= 0; --s) {  // legend, right-aligned along the top edge, in rows that fit the plot
        const Series& se = series[s];
        const float w = ImGui::CalcTextSize(se.label).x + 18;
        if (legend_x - w < a.x && legend_x < b.x - 6) legend_x = b.x - 6, legend_y += text_h;
        legend_x -= w;
        dl->AddLine(ImVec2(legend_x, legend_y + text_h * 0.5f), ImVec2(legend_x + 12, legend_y + text_h * 0.5f), se.colour, 2.0f);
        dl->AddText(ImVec2(legend_x + 15, legend_y), se.colour, se.label);
        bool have = false;
        ImVec2 last;
        for (int i = 0; i < se.n; ++i) {
            if (!usable(se.y[i])) { have = false; continue; }
            const ImVec2 q = to_screen(se.x ? se.x[i] : float(i), se.y[i]);
            if (have) dl->AddLine(last, q, se.colour, 1.5f);
            else if (se.n == 1) dl->AddCircleFilled(q, 2.5f, se.colour);
            last = q, have = true;
        }
    }
    if (ImGui::IsItemHovered() && count > 0) {  // the nearest point of each series under the mouse's x
        const float mx = x_lo + (ImGui::GetIO().MousePos.x - a.x) / (b.x - a.x) * (x_hi - x_lo);
        std::string tip;
        for (int s = 0; s < count; ++s) {
            const Series& se = series[s];
            int best = -1;
            for (int i = 0; i < se.n; ++i)
                if (usable(se.y[i]) && (best < 0 || std::abs((se.x ? se.x[i] : float(i)) - mx) <
                                                        std::abs((se.x ? se.x[best] : float(best)) - mx)))
                    best = i;
            if (best < 0) continue;
            tip += format("%s @ %.5g: %.5g\n", se.label, double(se.x ? se.x[best] : float(best)), double(se.y[best]));
        }
        if (!tip.empty()) tooltip("%s", tip.c_str());
    }
}

}  // namespace eva::web::draw
