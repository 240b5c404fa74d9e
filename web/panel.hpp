// What every panel of the page shares (Dear ImGui's imgui_demo pattern: one owner, panels as plain
// functions). The App (app.hpp) owns one Pretrained context — the model the panels show and what it was
// loaded from — and each panel is drawn from that context and its own state. The contract of a panel
// NAME, in web/panel_NAME.{hpp,cpp} (main.cpp's table lists them): `void NAME_panel(NamePanel&,
// Pretrained&)` draws it; `nlohmann::json NAME_state(const NamePanel&)` is its settings and key figures
// (window.eva.state("NAME"), to which the app adds the id, the summary, whether it is drawn, its own
// time per frame, panel_ms, and the model shown); `std::string NAME_summary(const NamePanel&)` says those
// figures in one plain sentence (mirrored into the page's aria-live region); `NAME_from_query` /
// `NAME_to_query` map its controls to the query string; `nlohmann::json NAME_self_test()` gives figures
// the browser tests compare with the native CLI. A panel records the screen rectangles of the controls
// the browser tests click (`Rect`), and says what it is showing in `explain`.
#pragma once

#include <chrono>
#include <cstdarg>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/hf_checkpoint.hpp"
#include "eva/model.hpp"

namespace eva::web {

/// The app's one context: the pretrained mini checkpoint shipped beside the page (mini.safetensors:
/// scripts/web.sh trains it with the native `eva train --mtp 1` and stores it with `eva convert --dtype
/// fp8`, as DeepSeek-V3's release stores its weights), fetched once at start into the page's in-memory
/// file system and read by the core's checkpoint loader (eva::Checkpoint, which dequantizes FP8 tensor by
/// tensor), and what the panels derive from the model shown. Nothing here is a function static: the app
/// can reset or inspect all of it.
struct Pretrained {
    enum class State { loading, ready, missing } state = State::loading;
    std::string message = "loading mini.safetensors…";
    std::unique_ptr<Model<float>> model;      // set when state == ready
    std::unique_ptr<eva::Checkpoint> stored;  // the file as stored (its FP8 codes and scales), when ready
    nlohmann::json inspect;                   // inspect_checkpoint of the file: dtypes, bytes, scales
    /// corpus.txt beside the page, fetched once at start: six of Debian's fortunes files, the text the
    /// checkpoint learned from. The Train panel trains on it; the Routing panel balances on its windows.
    State corpus_state = State::loading;
    std::string corpus;

    /// The model the panels show: the checkpoint once loaded, nullptr while it is loading, and without one
    /// the untrained mini model that `eva init --config mini --seed 1` writes, built once here.
    Model<float>* shown();
    /// The checkpoint file as the page's in-memory file system holds it (kFile), for the Train panel's
    /// workers to continue from; empty unless loaded.
    std::string file_bytes() const;
    /// Where main.cpp has the page's file system keep mini.safetensors.
    static constexpr const char* kFile = "/mini.safetensors";
    /// shown() is the untrained fallback (the panels say so).
    bool fresh() const { return state == State::missing; }
    /// "pretrained mini model" or "untrained mini model (no checkpoint beside the page)".
    const char* shown_name() const;
    /// The forward's activations of shown() reading `text` (its first ≤ 128 bytes, within max_seq_len),
    /// recomputed only when the text or the model changes; nullptr for an empty text or no model yet.
    const ModelActivations<float>* activations(const std::string& text);

private:
    std::unique_ptr<Model<float>> fallback_;
    const Model<float>* acts_model_ = nullptr;
    std::string acts_text_;
    ModelActivations<float> acts_;
};

/// A control's screen rectangle [x0, y0, x1, y1] in CSS pixels, recorded from the last ImGui item so the
/// browser tests can click it (exported in the panel's state as an array of four numbers).
struct Rect {
    float r[4] = {0, 0, 0, 0};
    void record();  // from ImGui::GetItemRectMin/Max of the last item
    nlohmann::json to_json() const { return {r[0], r[1], r[2], r[3]}; }
};

/// A page's query-string parameters (?panel=kv&model=v3&tokens=32768): each panel reads its controls from
/// them at start (NAME_from_query) and writes them back (NAME_to_query), so a teacher can link or embed a
/// panel in exactly the state a lesson discusses ("copy embed link"). Unknown or invalid values are ignored.
using Query = std::map<std::string, std::string>;
/// query[key] as an integer within [lo, hi], else `fallback`.
int query_int(const Query& q, const char* key, int fallback, int lo, int hi);
/// query[key] as a finite float within [lo, hi], else `fallback`.
float query_float(const Query& q, const char* key, float fallback, float lo, float hi);
/// The index of query[key] in `names` (a choice among named options), else `fallback`.
template <std::size_t N>
int query_choice(const Query& q, const char* key, const char* const (&names)[N], int fallback) {
    const auto it = q.find(key);
    for (std::size_t i = 0; it != q.end() && i < N; ++i)
        if (it->second == names[i]) return int(i);
    return fallback;
}

/// The clock the panels time their work with, and the milliseconds since `t0` on it.
using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

/// printf into a std::string of the length the text needs: the panels' labels, cache keys, query values
/// and summaries (vformat: the same from a va_list, for variadic helpers such as draw::tooltip).
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vformat(const char* fmt, va_list args);

/// Draws `text` as a wrapped, dimmed paragraph (a note beside the figures).
void dim_text(const std::string& text);
/// Draws the panel's explanation: a dimmed paragraph (dim_text) and a separator under it.
void explain(const char* text);

/// A block of the panel `width` pixels wide (an ImGui group) whose text wraps at its right edge, so two
/// blocks side by side each keep to their own width.
void begin_block(float width);
void end_block();

/// What the last frame put on screen, for the browser tests to prove that nothing is clipped
/// (window.eva.layout()): the display in CSS pixels and its pixel ratio, each window's rectangle and how
/// far its content overflows it, and every text item that is cut — a glyph that its clip rectangle crosses
/// sideways (a table column or window too narrow), a glyph ImGui cut to fit a frame, a glyph off the
/// display, a tab or table header shortened to "...". Read from ImGui's own windows and draw lists.
nlohmann::json layout_report();

/// Places the next item on the same line when `width` more pixels fit in the window, else on the next
/// line, so controls wrap in a narrow embed instead of running off the edge.
void same_line_if_fits(float width);
/// The width of a control for same_line_if_fits: `item` pixels (a slider's or combo's item width; 0 for a
/// button, which sizes itself to its label; kBox for a checkbox or radio button) and its label beside it.
constexpr float kBox = -1;
float control_width(const char* label, float item = 0);
/// same_line_if_fits(control_width(label, item)).
void same_line_for(const char* label, float item = 0);
/// A choice among `names` as radio buttons (`value` is the chosen index), after `title` on the same line
/// if one is given, each further button beside the previous when it fits (same_line_for). rects[i], where
/// given and not null, records button i for the browser tests.
void radio_row(const char* title, int& value, const std::vector<const char*>& names, const std::vector<Rect*>& rects = {});
/// A slider, combo or input `item` pixels wide next: beside the previous control when it fits
/// (same_line_for), with that width.
void beside(const char* label, float item);

}  // namespace eva::web
