// Small charts for the panels, drawn with ImGui's draw lists (Dear ImGui 1.86 has no plotting library):
// colour ramps, heatmaps, bars and line charts. Each chart occupies `size` at the cursor like a widget
// and shows the value under the mouse in a tooltip, so a learner can read exact numbers off any figure.
#pragma once

#include <vector>

#include <imgui.h>

namespace eva::web::draw {

/// ImGui::SetTooltip sized from this frame's text. ImGui sizes a tooltip from the previous frame's
/// content, so a text whose width changes as the mouse moves, or as a live chart grows, is clipped for a
/// frame; every tooltip of the page goes through this.
void tooltip(const char* fmt, ...) IM_FMTARGS(1);

/// t in [0,1] → a dark-to-bright ramp (blue → teal → yellow) whose brightness grows with t.
ImU32 sequential(float t);
/// t in [-1,1] → blue (negative) / dark neutral (0) / red (positive).
ImU32 diverging(float t);

/// The largest |v| of `values`, at least 1e-6 (an all-zero bias still gets a colour scale): the range
/// ±max_abs of a diverging heatmap.
float max_abs(const std::vector<float>& values);

/// rows×cols row-major values as cells coloured over [lo, hi] (diverging: over [-max|lo|,|hi|, +…]
/// around 0). Cells with mark[i] != 0 get a white box (e.g. the top-k experts a token was routed to).
void heatmap(const char* id, const float* values, int rows, int cols, float lo, float hi, ImVec2 size,
             bool diverging = false, const unsigned char* mark = nullptr);

/// n vertical bars scaled to [0, top], optional labels under them and per-bar colours.
void bars(const char* id, const float* values, int n, float top, ImVec2 size, const char* const* labels = nullptr,
          const ImU32* colours = nullptr);

/// One line of a line chart: y over x = 0..n-1, or over x[i] if given.
struct Series {
    const char* label;
    const float* y;
    int n;
    ImU32 colour;
    const float* x = nullptr;
};
/// Line chart of several series on shared axes, y linear or log10 (non-positive values are skipped),
/// with a legend and optional axis labels.
void lines(const char* id, const Series* series, int count, ImVec2 size, bool log_y = false,
           const char* x_label = nullptr, const char* y_label = nullptr);

}  // namespace eva::web::draw
