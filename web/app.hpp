// eva in the browser — the application state and the panels. Each panel is a plain function of its
// own state (Dear ImGui's immediate mode: the UI is rebuilt every frame from the state), in its own
// file pair web/panel_<id>.{hpp,cpp}, with a short "explain" text that says what the learner is seeing.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/hf_checkpoint.hpp"
#include "eva/model.hpp"
#include "panel_gemm.hpp"
#include "panel_fp8.hpp"
#include "panel_routing.hpp"
#include "panel_train.hpp"
#include "panel_kv.hpp"

namespace eva::web {

/// The pretrained mini checkpoint shipped beside the page (mini.safetensors: scripts/web.sh trains it
/// with the native `eva train --mtp 1` and stores it with `eva convert --dtype fp8`, as DeepSeek-V3's
/// release stores its weights), fetched once at start into the page's in-memory file system and read by
/// the core's checkpoint loader (load_checkpoint's Checkpoint, which dequantizes FP8 tensor by tensor).
/// Panels that show a trained model read it from here; until it arrives (or if it is absent) they say
/// so and use a fresh model.
struct Pretrained {
    enum class State { loading, ready, missing } state = State::loading;
    std::string message = "loading mini.safetensors…";
    std::unique_ptr<Model<float>> model;      // set when state == ready
    std::unique_ptr<eva::Checkpoint> stored;  // the file as stored (its FP8 codes and scales), when ready
    nlohmann::json inspect;                   // inspect_checkpoint of the file: dtypes, bytes, scales
};

/// Draws the panel's explanation in a wrapped, dimmed paragraph.
void explain(const char* text);

struct App {
    std::string panel = "all";  // from ?panel=…; "all" shows every panel as a tab
    bool embed = false;         // ?embed=1: just the panel, no chrome
    Pretrained pretrained;
    GemmPanel gemm;
    Fp8Panel fp8;
    RoutingPanel routing;
    TrainPanel train;
    KvPanel kv;
    double frame_ms = 0;        // rolling mean per frame: input, panels' computations, ImGui's vertices
    double submit_ms = 0;       // rolling mean per frame: handing the vertices to WebGL
    long frames = 0;
};

/// One frame of UI for the whole app.
void draw_app(App& app);

}  // namespace eva::web
