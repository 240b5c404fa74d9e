// eva in the browser: the ImGui application. GLFW gives a window on the page's <canvas>, WebGL2 draws,
// and every number shown is computed by the eva core compiled to WebAssembly SIMD — the same code the
// native tests check. One frame = poll input, build the panels (plain functions of their state), draw.
#include <emscripten.h>
#include <emscripten/html5.h>
#include <GLFW/glfw3.h>
#include <GLES3/gl3.h>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>
#include <nlohmann/json.hpp>

#include "eva/gemm.hpp"
#include "eva/rng.hpp"

namespace {

// The GEMM self-check shown on the first page: a random product against the plain loop in double.
struct GemmCheck {
    int size = 128;
    double gflops = 0, max_rel_error = 0;
    bool done = false;

    void run() {
        const std::size_t n = std::size_t(size);
        std::vector<float> a(n * n), b(n * n), c(n * n);
        eva::Rng rng(1);
        rng.fill_normal(a.data(), a.size(), 0, 1);
        rng.fill_normal(b.data(), b.size(), 0, 1);
        const auto t0 = std::chrono::steady_clock::now();
        eva::gemm<float>(eva::Op::N, eva::Op::N, n, n, n, a.data(), n, b.data(), n, c.data(), n);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        gflops = 2.0 * double(n) * n * n / std::max(s, 1e-9) * 1e-9;
        std::vector<double> ad(a.begin(), a.end()), bd(b.begin(), b.end()), cd(n * n);
        eva::gemm_reference<double>(eva::Op::N, eva::Op::N, n, n, n, ad.data(), n, bd.data(), n, cd.data(), n);
        double err = 0, mag = 0;
        for (std::size_t i = 0; i < c.size(); ++i) {
            err = std::max(err, std::abs(c[i] - cd[i]));
            mag = std::max(mag, std::abs(cd[i]));
        }
        max_rel_error = err / mag;
        done = true;
    }
};

struct App {
    GLFWwindow* window = nullptr;
    GemmCheck gemm;
    double frame_ms = 0;  // rolling mean of compute + render time per frame
    long frames = 0;
};

void foundation_panel(App& app) {
    ImGui::TextWrapped("eva runs DeepSeek-V3's mechanisms in this page with WebAssembly SIMD. "
                       "Panels for the KV cache, expert routing, FP8 error and training arrive as their "
                       "components land; this first one checks the matrix product they all share.");
    ImGui::Separator();
    ImGui::Text("GEMM kernel: %s", eva::gemm_arch().c_str());
    ImGui::SliderInt("matrix size", &app.gemm.size, 16, 512);
    if (ImGui::Button("Multiply and check") || !app.gemm.done) app.gemm.run();
    ImGui::Text("%d x %d x %d: %.2f GFLOP/s, max relative error vs double loop %.2e", app.gemm.size,
                app.gemm.size, app.gemm.size, app.gemm.gflops, app.gemm.max_rel_error);
    ImGui::Text("frame: %.2f ms (compute + draw, rolling mean)", app.frame_ms);
}

void fit_canvas(GLFWwindow* window) {
    double w = 0, h = 0;
    emscripten_get_element_css_size("#canvas", &w, &h);
    int cw = 0, ch = 0;
    glfwGetWindowSize(window, &cw, &ch);
    if (int(w) != cw || int(h) != ch) glfwSetWindowSize(window, int(w), int(h));
}

void frame(void* arg) {
    App& app = *static_cast<App*>(arg);
    const auto t0 = std::chrono::steady_clock::now();
    fit_canvas(app.window);
    glfwPollEvents();
    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    ImGui::NewFrame();

    const ImGuiViewport* vp = ImGui::GetMainViewport();
    ImGui::SetNextWindowPos(vp->WorkPos);
    ImGui::SetNextWindowSize(vp->WorkSize);
    ImGui::Begin("eva", nullptr, ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove);
    foundation_panel(app);
    ImGui::End();

    ImGui::Render();
    int w = 0, h = 0;
    glfwGetFramebufferSize(app.window, &w, &h);
    glViewport(0, 0, w, h);
    glClearColor(0.106f, 0.114f, 0.137f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    app.frame_ms = app.frames == 0 ? ms : 0.9 * app.frame_ms + 0.1 * ms;
    ++app.frames;
    // Report to the page: ready after the first frame that produced vertices.
    EM_ASM({
        const eva = window.eva;
        eva.frameMs = $0;
        eva.frames = $1;
        eva.vertices = $2;
        if ($2 > 0) eva.ready = true;
    }, app.frame_ms, double(app.frames), ImGui::GetDrawData()->TotalVtxCount);
}

}  // namespace

// Figures computed by the wasm core, for the browser tests to compare with the native ones.
extern "C" EMSCRIPTEN_KEEPALIVE const char* eva_self_test() {
    static std::string out;
    GemmCheck g;
    g.size = 96;
    g.run();
    eva::Rng rng(42);
    std::vector<std::uint32_t> first;
    for (int i = 0; i < 4; ++i) first.push_back(rng.next_u32());
    out = nlohmann::json{{"gemm_simd", eva::gemm_arch()}, {"gemm_max_rel_error", g.max_rel_error},
                         {"rng_seed42_first", first}}
              .dump();
    return out.c_str();
}

int main() {
    if (!glfwInit()) return 1;
    glfwWindowHint(GLFW_CLIENT_API, GLFW_OPENGL_ES_API);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    static App app;
    app.window = glfwCreateWindow(1280, 800, "eva", nullptr, nullptr);
    if (!app.window) return 1;
    glfwMakeContextCurrent(app.window);

    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGui::GetIO().IniFilename = nullptr;  // no imgui.ini in the browser
    ImGui::StyleColorsDark();
    ImGui_ImplGlfw_InitForOpenGL(app.window, true);
    ImGui_ImplOpenGL3_Init("#version 300 es");
    emscripten_set_main_loop_arg(frame, &app, 0, true);
}
