// The GEMM panel: the matrix product every eva layer is built on, run live in WebAssembly SIMD.
#include "panel_gemm.hpp"

#include <vector>

#include <imgui.h>

#include "app.hpp"
#include "eva/rng.hpp"

namespace eva::web {

constexpr int kMinSize = 16, kMaxSize = 512;

void gemm_panel(GemmPanel& g, Pretrained&) {
    explain("Every layer of the model - attention projections, experts, the output head - is a matrix "
            "product. eva computes them all with one kernel: packed panels, cache blocking and a SIMD "
            "register tile. Here it runs in your browser and is checked against a plain triple loop in "
            "double precision.");
    ImGui::Text("SIMD kernel: %s", gemm_arch().c_str());
    ImGui::SliderInt("matrix size n", &g.size, kMinSize, kMaxSize);
    if (ImGui::Button("Multiply and check") || !g.done) {
        const std::size_t n = std::size_t(g.size);
        g.last = gemm_random_run(Op::N, Op::N, n, n, n, 1, 1, true);
        g.done = true;
    }
    ImGui::Text("C = A.B with n = %d: %.2f GFLOP/s", g.size, g.last.gflops);
    ImGui::Text("max |error| / max |C| against the double-precision loop: %.2e", g.last.error.max_rel);
}

nlohmann::json gemm_state(const GemmPanel& g) {
    return {{"size", g.size}, {"gflops", g.last.gflops}, {"max_rel_error", g.last.error.max_rel}, {"done", g.done}};
}

void gemm_from_query(GemmPanel& g, const Query& q) { g.size = query_int(q, "n", g.size, kMinSize, kMaxSize); }

Query gemm_to_query(const GemmPanel& g) { return {{"n", std::to_string(g.size)}}; }

std::string gemm_summary(const GemmPanel& g) {
    return format("GEMM n = %d: %.2f GFLOP/s, max error / max |C| against the double loop %.1e.", g.size, g.last.gflops,
                  g.last.error.max_rel);
}

nlohmann::json gemm_self_test() {
    const GemmExperiment g = gemm_random_run(Op::N, Op::N, 96, 96, 96, 1, 1, true);
    Rng rng(42);
    std::vector<std::uint32_t> first;
    for (int i = 0; i < 4; ++i) first.push_back(rng.next_u32());
    return {{"gemm_simd", gemm_arch()}, {"gemm_max_rel_error", g.error.max_rel}, {"rng_seed42_first", first}};
}

}  // namespace eva::web
