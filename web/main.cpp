// eva in the browser: the platform glue and the panel layout (the panels live in panel_*.cpp).
// GLFW gives a window on the page's <canvas>, WebGL2 draws, and every number shown is computed by the
// eva core compiled to WebAssembly SIMD — the same code the native tests check. One frame = poll
// input, build the panels (plain functions of their state), draw.
#include <emscripten.h>
#include <emscripten/html5.h>
#include <GLFW/glfw3.h>
#include <GLES3/gl3.h>

#include <chrono>
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>
#include <nlohmann/json.hpp>

#include "app.hpp"
#include "eva/hf_checkpoint.hpp"

namespace eva::web {

// The panel table: one entry a panel — its ?panel= id, its tab title, how to draw it from the app's one
// context and its own state, its state as JSON (window.eva.state(id)), its plain-text summary, its
// figures for selfTest, and its controls from / to the query string (the contract of web/panel.hpp).
struct Panel {
    const char* id;
    const char* title;
    void (*draw)(App&);
    nlohmann::json (*state)(const App&);
    std::string (*summary)(const App&);
    nlohmann::json (*self_test)();
    void (*from_query)(App&, const Query&);
    Query (*to_query)(const App&);
};
// A panel's entry from its member of App and its contract's functions.
template <auto member, auto draw, auto state, auto summary, auto from_query, auto to_query>
Panel panel(const char* id, const char* title, nlohmann::json (*self_test)()) {
    return {id, title, [](App& a) { draw(a.*member, a.pretrained); }, [](const App& a) { return state(a.*member); },
            [](const App& a) { return summary(a.*member); }, self_test,
            [](App& a, const Query& q) { from_query(a.*member, q); }, [](const App& a) { return to_query(a.*member); }};
}
const Panel panels[] = {
    panel<&App::kv, kv_panel, kv_state, kv_summary, kv_from_query, kv_to_query>("kv", "KV cache", kv_self_test),
    panel<&App::routing, routing_panel, routing_state, routing_summary, routing_from_query, routing_to_query>(
        "routing", "Routing", routing_self_test),
    panel<&App::fp8, fp8_panel, fp8_state, fp8_summary, fp8_from_query, fp8_to_query>("fp8", "FP8 error", fp8_self_test),
    panel<&App::train, train_panel, train_state, train_summary, train_from_query, train_to_query>("train", "Train",
                                                                                                   train_self_test),
    panel<&App::gemm, gemm_panel, gemm_state, gemm_summary, gemm_from_query, gemm_to_query>("gemm", "GEMM", gemm_self_test),
};

// Draws one panel and remembers the frame it was drawn in (its exported state says whether it is on screen).
void draw_panel(App& app, const Panel& p) {
    const double t0 = emscripten_get_now();
    ImGui::PushTextWrapPos(0.0f);  // all of a panel's text wraps at the window's edge instead of running off it
    p.draw(app);
    ImGui::PopTextWrapPos();
    // The panel's own share of the frame (its computation and ImGui calls, apart from rendering), a rolling mean.
    const double ms = emscripten_get_now() - t0;
    double& mean = app.panel_ms[p.id];
    mean = mean == 0 ? ms : 0.9 * mean + 0.1 * ms;
    app.drawn_frame[p.id] = app.frames;
    // The shown panel's plain-text summary, mirrored into the page's aria-live region (#summary) twice a
    // second at most and only when it changed, so a screen reader is not flooded while figures update.
    if (app.frames % 30 == 0) {
        const std::string text = p.summary(app);
        if (text != app.summary) {
            app.summary = text;
            EM_ASM({ const e = document.getElementById("summary"); if (e) e.textContent = UTF8ToString($0); }, text.c_str());
        }
    }
}

// The panel on screen: the one drawn in the latest frame (?panel=ID, or the selected tab).
const Panel* shown_panel(const App& app) {
    const Panel* best = nullptr;
    long at = -1;
    for (const Panel& p : panels) {
        const auto it = app.drawn_frame.find(p.id);
        if (it != app.drawn_frame.end() && it->second > at) best = &p, at = it->second;
    }
    return best;
}

// The query string that reopens the shown panel alone in its current state (?panel=ID[&embed=1]&…).
std::string embed_query(const App& app, bool embed = true) {
    const Panel* p = shown_panel(app);
    if (!p) return "";
    std::string q = std::string("?panel=") + p->id + (embed ? "&embed=1" : "");
    for (const auto& [k, v] : p->to_query(app)) q += "&" + k + "=" + v;  // names and values are plain ASCII
    return q;
}

/// Tells the page which panel ids exist (window.eva.panels), for tests and benchmarks.
void publish_panels() {
    for (const Panel& p : panels) EM_ASM({ (window.eva.panels = window.eva.panels || []).push(UTF8ToString($0)); }, p.id);
}

void draw_app(App& app) {
    const ImGuiViewport* vp = ImGui::GetMainViewport();
    ImGui::SetNextWindowPos(vp->WorkPos);
    ImGui::SetNextWindowSize(vp->WorkSize);
    ImGui::Begin("eva", nullptr, ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove);
    bool shown = false;
    for (const Panel& p : panels)  // ?panel=ID shows that panel alone
        if (app.panel == p.id) {
            draw_panel(app, p);
            shown = true;
        }
    if (!shown && ImGui::BeginTabBar("panels")) {
        for (const Panel& p : panels)
            if (ImGui::BeginTabItem(p.title)) {
                draw_panel(app, p);
                ImGui::EndTabItem();
            }
        ImGui::EndTabBar();
    }
    if (!app.embed) {
        if (ImGui::Button("copy embed link"))  // the shown panel alone, in its current state
            EM_ASM({
                const link = location.origin + location.pathname + UTF8ToString($0);
                window.eva.copiedLink = link;
                if (navigator.clipboard) navigator.clipboard.writeText(link).catch(() => {});
            }, embed_query(app).c_str());
        app.copy_rect.record();
        ImGui::SameLine();
        ImGui::TextWrapped("frame: %.2f ms compute + ImGui, %.2f ms WebGL submission (rolling means) | %s", app.frame_ms,
                           app.submit_ms, app.pretrained.message.c_str());
    }
    // A single panel's address follows its controls (twice a second), so reloading or sharing the page's
    // URL keeps the state; the tabbed page keeps its plain address.
    if (app.panel != "all" && app.frames % 30 == 15) {
        const std::string q = embed_query(app, app.embed);
        if (!q.empty())
            EM_ASM({
                const q = UTF8ToString($0);
                if (q !== location.search) history.replaceState(null, "", q);
            }, q.c_str());
    }
    ImGui::End();
}

}  // namespace eva::web

namespace {

using eva::web::App;

GLFWwindow* window = nullptr;  // the one canvas of the page


// Keeps the canvas's drawing buffer at the size it is shown at times devicePixelRatio (it fills the page
// or the iframe and follows its resizing; crisp at 2x), and returns that ratio. Not through
// glfwSetWindowSize: Emscripten's GLFW takes a size equal to the screen's as a request for fullscreen,
// which a page may only make on a user gesture. Resizing the canvas through Emscripten's browser layer
// updates GLFW's window size the same way, without that rule (the CSS size stays the stylesheet's).
float fit_canvas(GLFWwindow* window) {
    double w = 0, h = 0;
    emscripten_get_element_css_size("#canvas", &w, &h);
    const double ratio = emscripten_get_device_pixel_ratio();
    const int bw = int(std::lround(w * ratio)), bh = int(std::lround(h * ratio));
    int cw = 0, ch = 0;
    glfwGetWindowSize(window, &cw, &ch);
    if (bw != cw || bh != ch) EM_ASM({ Browser.setCanvasSize($0, $1); }, bw, bh);
    return float(ratio);
}

// Emscripten 3.1.6's GLFW has no high-DPI support: its one window size is the canvas's backing store,
// and it reports the cursor in those pixels. ImGui lays out in CSS pixels and draws at
// DisplayFramebufferScale, so after the backend's NewFrame the glue converts its size and cursor.
void use_css_pixels(float ratio) {
    ImGuiIO& io = ImGui::GetIO();
    io.DisplaySize = ImVec2(io.DisplaySize.x / ratio, io.DisplaySize.y / ratio);
    io.DisplayFramebufferScale = ImVec2(ratio, ratio);
    if (io.MousePos.x != -FLT_MAX) io.MousePos = ImVec2(io.MousePos.x / ratio, io.MousePos.y / ratio);
}

// The font rasterised at the pixel ratio and scaled back by it, so text keeps its CSS size and layout but
// gets one texel per device pixel. Rebuilt when the ratio changes (a window moved to another screen, a
// zoom); the first build happens before the OpenGL backend creates its device objects.
void rasterise_font(float ratio) {
    static float built = 0;
    if (ratio == built) return;
    ImGuiIO& io = ImGui::GetIO();
    io.Fonts->Clear();
    ImFontConfig font;
    font.SizePixels = 13.0f * ratio;  // ImGui's default font at its design size, 13 CSS pixels
    io.Fonts->AddFontDefault(&font);
    io.FontGlobalScale = 1.0f / ratio;
    if (built != 0) {
        ImGui_ImplOpenGL3_DestroyFontsTexture();
        ImGui_ImplOpenGL3_CreateFontsTexture();
    }
    built = ratio;
}

void frame(void* arg) {
    App& app = *static_cast<App*>(arg);
    const auto t0 = eva::web::Clock::now();
    const float ratio = fit_canvas(window);
    glfwPollEvents();
    rasterise_font(ratio);
    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    use_css_pixels(ratio);
    ImGui::NewFrame();

    eva::web::draw_app(app);
    ImGui::Render();  // ImGui's vertices for the frame are built here
    // The frame's time on the page's thread: input, the panels' eva computations and ImGui's layout and
    // vertex building. Handing the vertices to WebGL is timed apart: its cost is the browser's GPU
    // process (in headless tests a software rasterizer sharing the CPU), not eva's.
    const auto t1 = eva::web::Clock::now();
    int w = 0, h = 0;
    glfwGetFramebufferSize(window, &w, &h);
    glViewport(0, 0, w, h);
    glClearColor(0.106f, 0.114f, 0.137f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

    const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count(), submit_ms = eva::web::ms_since(t1);
    app.frame_ms = app.frames == 0 ? ms : 0.9 * app.frame_ms + 0.1 * ms;
    app.submit_ms = app.frames == 0 ? submit_ms : 0.9 * app.submit_ms + 0.1 * submit_ms;
    ++app.frames;
    // Report to the page: ready after the first frame that produced vertices (and when, in ms since
    // navigation), the rolling means, and the last 600 raw frame times for medians and percentiles.
    EM_ASM({
        const eva = window.eva;
        eva.frameMs = $0;
        eva.submitMs = $4;
        eva.frames = $1;
        eva.vertices = $2;
        (eva.frameSamples = eva.frameSamples || []).push($3);
        if (eva.frameSamples.length > 600) eva.frameSamples.shift();
        if ($2 > 0 && !eva.ready) {
            eva.ready = true;
            eva.firstFrameMs = performance.now();
        }
    }, app.frame_ms, double(app.frames), ImGui::GetDrawData()->TotalVtxCount, ms, app.submit_ms);
}

}  // namespace

App* g_app = nullptr;  // the page's one App (main's), for the exported functions below

// An exported function's answer, kept until the next answer (the page copies the string at once). JSON
// replaces invalid UTF-8: a decoded sample may end inside a multi-byte character.
const char* answer(std::string text) {
    static std::string out;
    out = std::move(text);
    return out.c_str();
}
const char* answer(const nlohmann::json& j) { return answer(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)); }

// Figures computed by the wasm core, for the browser tests to compare with the native ones: each
// panel contributes its own (keys prefixed by the panel's id).
extern "C" EMSCRIPTEN_KEEPALIVE const char* eva_self_test() {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& p : eva::web::panels) j.update(p.self_test());
    return answer(j);
}

// The query string reopening the shown panel alone in its current state (window.eva.embedLink()).
extern "C" EMSCRIPTEN_KEEPALIVE const char* eva_embed_query() {
    return answer(g_app ? eva::web::embed_query(*g_app) : std::string());
}

// One panel's state as JSON (window.eva.state(id)): {"id", "drawn": false} until it is first drawn, then
// its settings and figures with "drawn": true while it is on screen, the model the panels show
// ("loading", "fresh": the untrained fallback, or "pretrained") and how the checkpoint was loaded (the
// message the page shows, inspect_checkpoint's figures of the file); {"error"} for an unknown id.
extern "C" EMSCRIPTEN_KEEPALIVE const char* eva_panel_state(const char* id) {
    nlohmann::json j = {{"error", std::string("no panel '") + id + "'"}};
    for (const auto& p : eva::web::panels)
        if (std::string(id) == p.id && g_app) {
            const auto at = g_app->drawn_frame.find(p.id);
            const bool ever = at != g_app->drawn_frame.end();
            j = ever ? p.state(*g_app) : nlohmann::json::object();
            j["id"] = p.id;
            j["summary"] = p.summary(*g_app);
            j["drawn"] = ever && at->second >= g_app->frames - 1;  // drawn in the latest frame
            j["panel_ms"] = ever ? g_app->panel_ms.at(p.id) : 0.0;
            const eva::web::Pretrained& ck = g_app->pretrained;
            j["model"] = ck.state == eva::web::Pretrained::State::loading ? "loading" : ck.fresh() ? "fresh" : "pretrained";
            j["checkpoint"] = {{"message", ck.message}, {"inspect", ck.inspect}};
        }
    return answer(j);
}

// What the last frame put on screen and what of it is cut (window.eva.layout(); web/panel.hpp).
extern "C" EMSCRIPTEN_KEEPALIVE const char* eva_layout() { return answer(eva::web::layout_report()); }

// The pretrained checkpoint arrives asynchronously, as a file of the page's in-memory file system; the
// core opens and validates it like any other checkpoint (headers, shapes, FP8 scale shapes), keeps the
// stored tensors for the FP8 panel, and loads the model by dequantizing each FP8 weight with its
// 128x128 scales (weight_dequant), exactly as `eva generate --weights mini.safetensors` does natively.
static void pretrained_loaded(unsigned, void* arg, const char* path) {
    auto& p = *static_cast<eva::web::Pretrained*>(arg);
    try {
        auto stored = std::make_unique<eva::Checkpoint>(eva::Checkpoint::open(path));
        p.model = std::make_unique<eva::Model<float>>(stored->load());
        p.inspect = eva::inspect_checkpoint(path);
        p.stored = std::move(stored);
        p.state = eva::web::Pretrained::State::ready;
        p.message = "pretrained mini model loaded; " + eva::storage_summary(p.inspect);
    } catch (const std::exception& e) {
        p.model.reset();
        p.state = eva::web::Pretrained::State::missing;
        p.message = std::string("mini.safetensors is invalid: ") + e.what();
    }
}
static void pretrained_failed(unsigned, void* arg, int) {
    auto& p = *static_cast<eva::web::Pretrained*>(arg);
    p.state = eva::web::Pretrained::State::missing;
    p.message = "no pretrained checkpoint beside the page (build it with scripts/web.sh); using a fresh model";
}

int main() {
    if (!glfwInit()) return 1;
    glfwWindowHint(GLFW_CLIENT_API, GLFW_OPENGL_ES_API);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    static App app;
    g_app = &app;
    {  // the page's query string: which panel, embedded or not, and every panel's controls (no names collide)
        char buf[2048];
        EM_ASM({ stringToUTF8(JSON.stringify(Object.fromEntries(new URLSearchParams(location.search))), $0, $1); },
               buf, int(sizeof buf));
        const nlohmann::json params = nlohmann::json::parse(buf);  // kept alive for the loop over its items
        eva::web::Query q;
        for (const auto& item : params.items())
            if (item.value().is_string()) q[item.key()] = item.value().get<std::string>();
        app.panel = q.count("panel") ? q["panel"] : "all";
        app.embed = q.count("embed") && q["embed"] == "1";
        for (const auto& p : eva::web::panels) p.from_query(app, q);
    }
    window = glfwCreateWindow(1280, 800, "eva", nullptr, nullptr);
    if (!window) return 1;
    glfwMakeContextCurrent(window);

    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGui::GetIO().IniFilename = nullptr;  // no imgui.ini in the browser
    ImGui::StyleColorsDark();
    // Lines drawn as geometry, not from baked textures: every textured quad is then a glyph, which is how
    // layout_report finds the text on screen. The cost is a few more vertices per line.
    ImGui::GetStyle().AntiAliasedLinesUseTex = false;
    ImGui::GetIO().Fonts->Flags |= ImFontAtlasFlags_NoBakedLines;
    ImGui_ImplGlfw_InitForOpenGL(window, true);
    ImGui_ImplOpenGL3_Init("#version 300 es");
    eva::web::publish_panels();
    emscripten_async_wget2("mini.safetensors", eva::web::Pretrained::kFile, "GET", "", &app.pretrained, pretrained_loaded,
                           pretrained_failed, nullptr);
    emscripten_async_wget_data("corpus.txt", &app.pretrained, [](void* arg, void* data, int size) {
        auto& p = *static_cast<eva::web::Pretrained*>(arg);
        p.corpus.assign(static_cast<const char*>(data), std::size_t(size));
        p.corpus_state = eva::web::Pretrained::State::ready;
    }, [](void* arg) { static_cast<eva::web::Pretrained*>(arg)->corpus_state = eva::web::Pretrained::State::missing; });
    emscripten_set_main_loop_arg(frame, &app, 0, true);
}
