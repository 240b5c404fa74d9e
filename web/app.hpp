// eva in the browser — the application state and the panels. Each panel is a plain function of its
// own state (Dear ImGui's immediate mode: the UI is rebuilt every frame from the state), in its own
// file pair web/panel_<id>.{hpp,cpp}, with a short "explain" text that says what the learner is seeing.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "eva/model.hpp"
#include "panel.hpp"
#include "panel_gemm.hpp"
#include "panel_fp8.hpp"
#include "panel_routing.hpp"
#include "panel_train.hpp"
#include "panel_kv.hpp"

namespace eva::web {

struct App {
    std::string panel = "all";  // from ?panel=…; "all" shows every panel as a tab
    bool embed = false;         // ?embed=1: just the panel, no chrome
    Pretrained pretrained;
    GemmPanel gemm;
    Fp8Panel fp8;
    RoutingPanel routing;
    TrainPanel train;
    KvPanel kv;
    std::map<std::string, long> drawn_frame;  // panel id → the last frame (App::frames) it was drawn in
    std::map<std::string, double> panel_ms;   // panel id → rolling mean of its own work per frame (draw_panel)
    std::string summary;                      // the text last put in the page's aria-live region
    Rect copy_rect;                           // the "copy embed link" button
    double frame_ms = 0;        // rolling mean per frame: input, panels' computations, ImGui's vertices
    double submit_ms = 0;       // rolling mean per frame: handing the vertices to WebGL
    long frames = 0;
};

/// One frame of UI for the whole app.
void draw_app(App& app);

}  // namespace eva::web
