// eva — DeepSeekMoE: a gate, shared experts and routed experts (DeepSeek-V3 inference/model.py `Gate`,
// `Expert`, `MoE`; technical report arXiv 2412.19437 §2.1.2 and §2.1.2's balancing).
//
// For a token x (a row of `[n, dim]`):
//   s      = score_func(x·gateᵀ)            softmax over the routed experts, or element-wise sigmoid
//   s_sel  = s + b                          the bias b is used ONLY to choose experts
//   groups (n_expert_groups > 1): group score = sum of the top-2 s_sel in the group (max of s without
//          bias); keep the n_limited_groups best groups, set the others' s_sel to −inf
//   I      = top-k(s_sel), k = n_activated_experts (ties: the lower expert index wins)
//   w_i    = s_i for i ∈ I (the ORIGINAL scores); sigmoid: w ← w / Σ w; then w ← w · route_scale
//   y      = Σ_{i∈I} w_i · expert_i(x) + shared(x)       (every token is processed: nothing is dropped)
//
// Dispatch groups the (token, expert) pairs by expert, so each expert runs ONE gemm-backed SwiGLU over
// exactly its tokens; `moe_forward_naive` is the per-token loop kept beside it as the reference.
//
// Training-side balancing (switchable by MoeConfig::balance):
//   aux-free  after each step b_i ← b_i + γ·sign(mean load − load_i) over the batch; b gets no gradient
//   seq-loss  L = α·mean_seq Σ_i f_i·P_i, f_i = N_r/(K_r·T)·Σ_t 1[i ∈ I_t], P_i = (1/T)·Σ_t s'_{i,t},
//             s'_t = s_t / Σ_j s_{j,t} (scores normalized over all routed experts); f is a constant
//   aux-loss  the same product over the whole batch at once: the GShard/Switch auxiliary loss baseline
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/config.hpp"
#include "eva/mlp.hpp"
#include "eva/rng.hpp"
#include "eva/tensor.hpp"

namespace eva {

class ExpertParallel;  // eva/expert_parallel.hpp

enum class ScoreFunc { softmax, sigmoid };
enum class Balance { none, aux_free, seq_loss, aux_loss };

std::string to_string(ScoreFunc f);
std::string to_string(Balance b);
/// "softmax" | "sigmoid"; anything else raises ConfigError naming `score_func`.
ScoreFunc parse_score_func(const std::string& s);
/// "none" | "aux-free" | "seq-loss" | "aux-loss"; anything else raises ConfigError naming `balance`.
Balance parse_balance(const std::string& s);

/// The MoE fields of DeepSeek-V3's ModelArgs (official names) plus the training knobs of the report.
struct MoeConfig {
    std::size_t dim = 256;
    std::size_t moe_inter_dim = 128;
    std::size_t n_routed_experts = 16;
    std::size_t n_shared_experts = 1;
    std::size_t n_activated_experts = 2;
    std::size_t n_expert_groups = 1;
    std::size_t n_limited_groups = 1;
    ScoreFunc score_func = ScoreFunc::softmax;
    double route_scale = 1.0;
    // Training knobs (not in ModelArgs): balancing mode, bias update speed γ, balance-loss weight α.
    Balance balance = Balance::none;
    double gamma = 0.001;
    double alpha = 1e-4;

    /// Raises ConfigError naming the first invalid field and its allowed values.
    void validate() const;
    /// The MoE part of a ModelArgs preset ("mini", "v2-lite", "v2", "v3"), without balancing.
    static MoeConfig preset(const std::string& name);
    /// From an official config JSON, as DeepSeek's Gate(args): every field but the training knobs (balance,
    /// gamma, alpha) is parsed and validated by model_args_from_json (official defaults, unknown names
    /// refused), then moe_config derives the layer's settings — so a config is valid for `eva moe` exactly
    /// when it is valid for the model. Balance defaults to none here.
    static MoeConfig from_json(const nlohmann::json& j);
    nlohmann::json to_json() const;
};

/// The MoE layer settings of a model config, with the training-side balancing knobs.
MoeConfig moe_config(const ModelArgs& args, Balance balance = Balance::aux_free, double gamma = 0.001,
                     double alpha = 1e-4);

/// The gate's decision for n tokens.
template <class T>
struct Routing {
    std::size_t n_tokens = 0, n_experts = 0, top_k = 0;
    std::vector<T> scores;             // [n, E] original scores (after softmax / sigmoid)
    std::vector<std::int32_t> indices;  // [n, k] chosen experts, best (biased) first
    std::vector<T> weights;            // [n, k] combine weights
};

/// Selection and weights from the scores `s` [n, E] (already in routing.scores). `bias` is [E] or
/// nullptr (no bias: group score = group max).
template <class T>
void route(const MoeConfig& cfg, const T* bias, Routing<T>& r);

/// Node-limited routing (DeepSeek-V3 §2.1.2). With expert parallelism the routed experts sit on
/// `nodes` nodes in equal contiguous blocks, and a token's dispatch crosses the network once per node it
/// uses; so each token first picks the `max_nodes` = M nodes whose K/M highest selection scores (s + b)
/// sum highest, then its top-k among those nodes' experts. max_nodes 0 (or ≥ nodes): unlimited. With
/// one group per node and K/M = 2 it is the group-limited routing above (which sums the top 2).
struct NodeLimit {
    std::size_t nodes = 1, max_nodes = 0;
    /// ConfigError unless nodes divides the experts, M divides K, M ≤ nodes and M nodes hold ≥ K experts.
    void validate(const MoeConfig& cfg) const;
};
template <class T>
void route(const MoeConfig& cfg, const T* bias, Routing<T>& r, const NodeLimit& limit);

/// s = score_func(x·gateᵀ) for x [n, dim], gate [E, dim], then `route` (node-limited by `limit`).
template <class T>
void gate_forward(const MoeConfig& cfg, const Matrix<T>& gate, const T* bias, const T* x, std::size_t n,
                  Routing<T>& r, const NodeLimit& limit = {});

/// Gate backward. `dweights` [n, k] (or nullptr) is the gradient w.r.t. the combine weights; `dscores`
/// [n, E] enters holding any gradient w.r.t. the scores (a balance loss's) and is consumed. Adds
/// dL/dgate into `dgate` and, if `dx` is non-null, dL/dx into dx. The bias has no gradient.
template <class T>
void gate_backward(const MoeConfig& cfg, const Matrix<T>& gate, const T* x, const Routing<T>& r,
                   const T* dweights, std::vector<T>& dscores, Matrix<T>& dgate, T* dx);

/// α·mean over sequences of Σ_i f_i·P_i, sequences being consecutive runs of `seq_len` tokens (the
/// complementary sequence-wise loss; seq_len = n gives the batch-wide auxiliary loss). Adds its gradient
/// w.r.t. the scores into `dscores` [n, E] when non-null.
template <class T>
T balance_loss(const MoeConfig& cfg, const Routing<T>& r, std::size_t seq_len, T* dscores);

/// Tokens routed to each expert.
template <class T>
std::vector<std::size_t> expert_counts(const Routing<T>& r);

/// The auxiliary-loss-free update over one batch: b_i += γ·sign(mean count − count_i).
template <class T>
void update_bias(std::vector<T>& bias, const std::vector<std::size_t>& counts, double gamma);

/// Per-layer, per-step routing statistics.
struct RoutingStats {
    std::vector<std::size_t> tokens_per_expert;
    std::vector<double> load_fraction;  // tokens_per_expert / (n·k), sums to 1
    double max_vio = 0;                 // max_i load_i / mean load − 1
    double cv = 0;                      // std / mean of the loads
    double entropy = 0;                 // −Σ p ln p / ln E over load_fraction: 1 = perfectly even
    double shared_fraction = 0;         // 1 / (1 + mean_t Σ_k w_tk): the shared MLP's coefficient is 1
    std::vector<double> bias;
    double balance_loss = 0;
    nlohmann::json to_json() const;
};

/// The load figures (tokens_per_expert … entropy) of per-expert slot counts, e.g. summed over ranks.
RoutingStats load_statistics(const std::vector<std::size_t>& counts);

template <class T>
RoutingStats routing_stats(const MoeConfig& cfg, const Routing<T>& r, const std::vector<T>& bias);

/// One step of a gate-only balancing loop (`eva moe route --steps`, the browser's routing panel): route
/// x [n, dim], measure, then balance as cfg.balance says — aux-free: update_bias over this batch;
/// seq-loss / aux-loss: one plain SGD step of rate `lr` on the gate with the balance loss as the only
/// loss (sequences of `seq_len` tokens; aux-loss: the whole batch); none: nothing. `bias` empty = no
/// bias. Returns the statistics measured BEFORE the update (with the balance loss for the loss modes).
template <class T>
RoutingStats balancing_step(const MoeConfig& cfg, Matrix<T>& gate, std::vector<T>& bias, const T* x, std::size_t n,
                            std::size_t seq_len, double lr, Routing<T>& r);

/// The synthetic router: a gate with rows N(0, 1/dim) whose first n_activated_experts rows also point
/// along feature 0 with weight `skew`, so every token starts out favouring those experts (the imbalance
/// balancing must undo). Drawn from `rng`.
Matrix<float> skewed_gate(const MoeConfig& cfg, double skew, Rng& rng);
/// Its hidden states for one step: N(0, 1) plus 1 on feature 0, a fresh batch per step (stream step+1).
std::vector<float> skewed_hidden_states(const MoeConfig& cfg, std::size_t n, std::uint64_t seed, std::uint64_t step);

/// A balancing run step by step: a router — `gate` [E, dim] and, when cfg balances aux-free, a bias
/// starting at 0 — balanced by balancing_step on each batch it is given, every step's statistics kept
/// (measured before its update). synthetic_balancing_run is one on the synthetic router; the browser's
/// Routing panel steps one a few times a frame, on a model's hidden states or on the synthetic router.
struct BalancingRun {
    MoeConfig cfg;
    Matrix<float> gate;
    std::vector<float> bias;
    std::vector<RoutingStats> stats;  // per step
    Routing<float> routing;           // the latest step's

    BalancingRun(const MoeConfig& cfg, Matrix<float> gate);
    /// One balancing_step on x [n, dim] (sequences of seq_len tokens and SGD rate lr for the loss modes).
    const RoutingStats& step(const float* x, std::size_t n, std::size_t seq_len, double lr);
};

/// `eva moe route`'s run (the page's selfTest repeats it): the synthetic router skewed_gate(cfg, skew,
/// Rng(seed)) and a bias of zeros when cfg balances aux-free, then steps + 1 balancing_steps, step t on
/// `tokens` fresh skewed_hidden_states(cfg, tokens, seed, t) — or on `given` [tokens, dim], the same batch
/// every step, if it is not empty. Returns each step's statistics (measured before its update);
/// `first`, if given, receives step 0's routing.
std::vector<RoutingStats> synthetic_balancing_run(const MoeConfig& cfg, double skew, std::uint64_t seed,
                                                  std::size_t tokens, std::size_t steps, std::size_t seq_len, double lr,
                                                  const std::vector<float>& given = {}, Routing<float>* first = nullptr);

/// The whole layer's parameters (also the container of its gradients, where `bias` stays unused).
template <class T>
struct Moe {
    MoeConfig cfg;
    Matrix<T> gate;           // gate.weight [n_routed_experts, dim]
    std::vector<T> bias;      // gate.bias [n_routed_experts], empty = no bias (created for aux-free)
    std::vector<Mlp<T>> experts;  // experts.{j}: dim → moe_inter_dim → dim
    Mlp<T> shared;            // shared_experts: ONE MLP of width n_shared_experts·moe_inter_dim

    static Moe random(const MoeConfig& cfg, Rng& rng, float std);
    static Moe zeros(const MoeConfig& cfg);
};

/// What moe_forward keeps for moe_backward.
template <class T>
struct MoeCache {
    std::size_t n_tokens = 0, seq_len = 0;
    Routing<T> routing;
    std::vector<std::size_t> offsets;  // [E+1]: expert e owns grouped rows offsets[e] .. offsets[e+1]
    std::vector<std::size_t> row_of;   // [n·k]: grouped row of (token t, choice j) at t·k + j
    std::vector<T> xg, yg;             // grouped expert inputs and (unweighted) outputs [n·k, dim]
    std::vector<MlpCache<T>> expert_cache;
    MlpCache<T> shared_cache;
    T balance_loss = 0;                // α·L for seq-loss / aux-loss, else 0
    // Expert parallelism (eva/expert_parallel.hpp): the rows other ranks sent to this rank's experts,
    // source by source, each grouped by local expert (recv_offsets [ep·experts per rank + 1]), and the
    // caches of those expert runs.
    std::vector<T> x_recv;
    std::vector<std::size_t> recv_offsets;
    std::vector<MlpCache<T>> recv_cache;
};

/// y [n, dim] = MoE(x [n, dim]). n must be a multiple of seq_len (used only by the seq-loss). `limit`:
/// node-limited routing; `ep`: run the routed experts across the ranks of an expert-parallel group
/// (float only; nullptr: every expert here).
template <class T>
void moe_forward(const Moe<T>& m, const T* x, std::size_t n, std::size_t seq_len, T* y, MoeCache<T>& c,
                 LinearMode precision = {}, const NodeLimit& limit = {},
                 ExpertParallel* ep = nullptr);

/// Gradients for dy (plus the balance loss's own gradient, whose weight is 1 in the total loss):
/// adds into g (gate, experts, shared) and writes dx [n, dim].
/// With `ep` (the forward's), the routed experts' weight gradients go to ep's per-shard buffers
/// instead of g.experts (see ExpertParallel).
template <class T>
void moe_backward(const Moe<T>& m, const T* x, const MoeCache<T>& c, const T* dy, T* dx, Moe<T>& g,
                  LinearMode precision = {}, ExpertParallel* ep = nullptr);

/// Reference: the same layer as a loop over tokens and their chosen experts (one row at a time).
template <class T>
void moe_forward_naive(const Moe<T>& m, const T* x, std::size_t n, T* y);

/// Reference backward, token by token (recomputes each token's expert forward). No balance loss.
template <class T>
void moe_backward_naive(const Moe<T>& m, const T* x, std::size_t n, const T* dy, T* dx, Moe<T>& g);

}  // namespace eva
