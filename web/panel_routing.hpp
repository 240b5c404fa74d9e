// The routing panel: DeepSeekMoE's gate on real hidden states of the mini model — which experts each
// token picks, how the load spreads, and how the auxiliary-loss-free bias (or the sequence-wise loss)
// evens it out over batches.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/model.hpp"
#include "eva/moe.hpp"
#include "eva/rng.hpp"
#include "eva/staged_forward.hpp"

#include "panel.hpp"

namespace eva::web {

/// "Run balancing": an eva::BalancingRun (the steps of `eva moe route --steps`) on successive batches,
/// a few steps a frame, MaxVio recorded per step.
struct RunSection {
    enum class Source { text, synthetic } source = Source::text;
    bool running = false;
    int max_steps = 300;
    // Text source: hidden states of random 64-byte windows of corpus.txt (Pretrained::corpus), forwarded
    // a block a frame into a pool; each step routes 8 windows drawn from it.
    std::optional<WindowPool> pool;  // made on the first text run
    // The router being balanced: for text, a copy of the layer's trained gate, its bias from 0; for
    // synthetic, eva moe route's skewed gate (eva::skewed_gate) on its hidden states.
    std::optional<BalancingRun> router;
    int layer = -1;
    std::vector<float> max_vio;  // per step, for the chart
    bool active() const { return !max_vio.empty() || running; }
};

struct RoutingPanel {
    char text[97] = {};  // up to 96 bytes = tokens
    int sample = 0;
    int layer = 0;       // which MoE layer (0 = the first block after the dense ones)
    MoeConfig cfg;       // the routing settings in use; starts as the trained model's
    bool configured = false;
    Query query;         // the page's query string, applied once the model's settings are known
    // Hidden states (the MoE layers' inputs ffn_norm(h)) of `text`, recomputed on change, a block a frame.
    std::string hidden_text;
    const Model<float>* hidden_model = nullptr;
    StagedForward forward;
    double forward_ms = 0;  // its compute time so far
    std::size_t n_tokens = 0;
    // The current routing of the text.
    Routing<float> routing;
    RoutingStats stats;
    double text_balance_loss = 0;
    std::string error;
    RunSection run;
    // Where two controls were last drawn (screen px: x0, y0, x1, y1), so browser tests can click them.
    Rect softmax_rect, run_rect;  // controls the browser tests click
};

void routing_panel(RoutingPanel& state, Pretrained& pretrained);
/// The controls from / to the query string: text_sample=0..2, moe_layer, score=softmax|sigmoid, groups,
/// kept, topk, balance=none|aux-free|seq-loss, route_gamma. A layout the model's rule refuses
/// (validate_expert_groups) keeps the trained one.
void routing_from_query(RoutingPanel& state, const Query& q);
Query routing_to_query(const RoutingPanel& state);
/// Figures for window.eva.selfTest(), computed exactly as `eva moe route … --json` computes them natively.
nlohmann::json routing_self_test();
nlohmann::json routing_state(const RoutingPanel& state);
std::string routing_summary(const RoutingPanel& state);

}  // namespace eva::web
