// eva in the browser — the application state and the panels. Each panel is a plain function of its
// own state (Dear ImGui's immediate mode: the UI is rebuilt every frame from the state), in its own
// file, with a short "explain" text that says what the learner is seeing.
#pragma once

#include <string>

namespace eva::web {

/// The GEMM panel: a random product, its speed and its error against the plain loop in double.
struct GemmPanel {
    int size = 128;
    double gflops = 0, max_rel_error = 0;
    bool done = false;
    void run();
};
void gemm_panel(GemmPanel& state);

/// Draws the panel's explanation in a wrapped, dimmed paragraph.
void explain(const char* text);

struct App {
    std::string panel = "all";  // from ?panel=…; "all" shows every panel as a tab
    bool embed = false;         // ?embed=1: just the panel, no chrome
    GemmPanel gemm;
    double frame_ms = 0;        // rolling mean of compute + render time per frame
    long frames = 0;
};

/// One frame of UI for the whole app.
void draw(App& app);

}  // namespace eva::web
