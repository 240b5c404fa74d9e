// The GEMM panel: the matrix product every eva layer is built on, run live in WebAssembly SIMD.
#include "panel_gemm.hpp"

#include <vector>

#include <imgui.h>

#include "app.hpp"
#include "eva/gemm.hpp"
#include "eva/rng.hpp"

namespace eva::web {

void GemmPanel::run() {
    const std::size_t n = std::size_t(size);
    const GemmExperiment r = gemm_random_run(Op::N, Op::N, n, n, n, 1, 1, true);  // `eva gemm --m n --n n --k n --repeat 1`
    gflops = r.gflops;
    max_rel_error = r.error.max_rel;
    done = true;
}

constexpr int kMinSize = 16, kMaxSize = 512;

void gemm_panel(GemmPanel& g, Pretrained&) {
    explain("Every layer of the model - attention projections, experts, the output head - is a matrix "
            "product. eva computes them all with one kernel: packed panels, cache blocking and a SIMD "
            "register tile. Here it runs in your browser and is checked against a plain triple loop in "
            "double precision.");
    ImGui::Text("SIMD kernel: %s", gemm_arch().c_str());
    ImGui::SliderInt("matrix size n", &g.size, kMinSize, kMaxSize);
    if (ImGui::Button("Multiply and check") || !g.done) g.run();
    ImGui::Text("C = A.B with n = %d: %.2f GFLOP/s", g.size, g.gflops);
    ImGui::Text("max |error| / max |C| against the double-precision loop: %.2e", g.max_rel_error);
}

nlohmann::json gemm_state(const GemmPanel& g) {
    return {{"size", g.size}, {"gflops", g.gflops}, {"max_rel_error", g.max_rel_error}, {"done", g.done}};
}

void gemm_from_query(GemmPanel& g, const Query& q) { g.size = query_int(q, "n", g.size, kMinSize, kMaxSize); }

Query gemm_to_query(const GemmPanel& g) { return {{"n", std::to_string(g.size)}}; }

std::string gemm_summary(const GemmPanel& g) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "GEMM n = %d: %.2f GFLOP/s, max error / max |C| against the double loop %.1e.", g.size,
                  g.gflops, g.max_rel_error);
    return buf;
}

nlohmann::json gemm_self_test() {
    GemmPanel g;
    g.size = 96;
    g.run();
    Rng rng(42);
    std::vector<std::uint32_t> first;
    for (int i = 0; i < 4; ++i) first.push_back(rng.next_u32());
    return {{"gemm_simd", gemm_arch()}, {"gemm_max_rel_error", g.max_rel_error}, {"rng_seed42_first", first}};
}

}  // namespace eva::web
