// The GEMM panel: a random product, its speed and its error against the plain loop in double.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "eva/gemm.hpp"
#include "panel.hpp"

namespace eva::web {

struct GemmPanel {
    int size = 128;
    GemmExperiment last;  // the last product, as `eva gemm --m n --n n --k n --repeat 1` runs it
    bool done = false;
};
void gemm_panel(GemmPanel& state, Pretrained&);
/// The panel's state (window.eva.state("gemm")): the size and the last product's figures.
nlohmann::json gemm_state(const GemmPanel& state);
/// The size from / to the query string: n=16…512.
void gemm_from_query(GemmPanel& state, const Query& q);
Query gemm_to_query(const GemmPanel& state);
std::string gemm_summary(const GemmPanel& state);
/// Figures for window.eva.selfTest(): the GEMM's SIMD path and error, the first Philox draws.
nlohmann::json gemm_self_test();

}  // namespace eva::web
