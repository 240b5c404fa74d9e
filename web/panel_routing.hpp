// The routing panel: DeepSeekMoE's gate on real hidden states of the mini model — which experts each
// token picks, how the load spreads, and how the auxiliary-loss-free bias (or the sequence-wise loss)
// evens it out over batches.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/model.hpp"
#include "eva/moe.hpp"
#include "eva/rng.hpp"

#include "panel.hpp"

namespace eva::web {

/// A forward of one sequence through the model spread over frames, one block per advance(): the
/// inputs ffn_norm(h) of every MoE layer are kept (layer-major, [tokens, dim] each).
struct StagedForward {
    std::vector<Token> tokens;
    Matrix<float> x;         // the residual stream after `next` blocks
    std::size_t next = 0;    // the next block to run
    std::vector<float> moe_inputs;
    double ms = 0;           // compute time so far
    void start(const Model<float>& m, std::vector<Token> t);
    bool done(const Model<float>& m) const { return !tokens.empty() && next == m.w.layers.size(); }
    void advance(const Model<float>& m);
};

/// "Run balancing": successive batches routed by a copy of the gate, balanced after each step by
/// eva::balancing_step (the same function as `eva moe route --steps`), MaxVio recorded per step.
struct BalancingRun {
    enum class Source { text, synthetic } source = Source::text;
    bool running = false;
    int max_steps = 300;
    // Text source: hidden states of random 64-byte windows of the built-in sample text at the chosen
    // layer, computed one window per frame into a pool; each step routes 8 windows drawn from it.
    std::vector<std::vector<float>> pool;  // per window: [kWindow, dim] for every MoE layer, layer-major
    StagedForward window;                  // the window being forwarded into the pool
    Rng window_rng{11};                    // which windows of the sample text enter the pool
    // The router being balanced: for text, the trained gate with the bias started at 0; for synthetic,
    // eva moe route's skewed gate (eva::skewed_gate) and its hidden states.
    Matrix<float> gate;
    std::vector<float> bias;
    MoeConfig cfg;
    int layer = -1;
    std::vector<float> max_vio, balance_loss;  // per step
    RoutingStats last;                         // the latest batch
    bool active() const { return !max_vio.empty() || running; }
};

struct RoutingPanel {
    char text[97] = {};  // up to 96 bytes = tokens
    int sample = 0;
    int layer = 0;       // which MoE layer (0 = the first block after the dense ones)
    MoeConfig cfg;       // the routing settings in use; starts as the trained model's
    bool configured = false;
    Query query;         // the page's query string, applied once the model's settings are known
    bool fresh = false;  // the model is the context's untrained fallback (no checkpoint beside the page)
    const Model<float>* model = nullptr;
    // Hidden states (the MoE layers' inputs ffn_norm(h)) of `text`, recomputed on change, a block a frame.
    std::string hidden_text;
    const Model<float>* hidden_model = nullptr;
    StagedForward forward;
    std::size_t n_tokens = 0;
    // The current routing of the text.
    Routing<float> routing;
    RoutingStats stats;
    double text_balance_loss = 0;
    std::string error;
    BalancingRun run;
    // Where two controls were last drawn (screen px: x0, y0, x1, y1), so browser tests can click them.
    Rect softmax_rect, run_rect;  // controls the browser tests click
};

void routing_panel(RoutingPanel& state, Pretrained& pretrained);
/// The controls from / to the query string: text_sample=0..3, moe_layer, score=softmax|sigmoid, groups,
/// kept, topk, balance=none|aux-free|seq-loss, route_gamma. A layout the model's rule refuses
/// (validate_expert_groups) keeps the trained one.
void routing_from_query(RoutingPanel& state, const Query& q);
Query routing_to_query(const RoutingPanel& state);
/// Figures for window.eva.selfTest(), computed exactly as `eva moe route … --json` computes them natively.
nlohmann::json routing_self_test();
nlohmann::json routing_state(const RoutingPanel& state);
std::string routing_summary(const RoutingPanel& state);

}  // namespace eva::web
