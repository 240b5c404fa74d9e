// DeepSeekMoE: config, gate (forward/backward), balance losses and bias update, grouped dispatch.
#include "eva/moe.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include "eva/checked.hpp"
#include "eva/config.hpp"
#include "eva/error.hpp"
#include "eva/expert_parallel.hpp"
#include "eva/gemm.hpp"
#include "eva/json.hpp"
#include "parallel.hpp"
#include "scratch.hpp"
#include "sum.hpp"

namespace eva {

// ------------------------------------------------------------------------------------------- config

std::string to_string(ScoreFunc f) { return f == ScoreFunc::softmax ? "softmax" : "sigmoid"; }

std::string to_string(Balance b) {
    switch (b) {
        case Balance::none: return "none";
        case Balance::aux_free: return "aux-free";
        case Balance::seq_loss: return "seq-loss";
        case Balance::aux_loss: return "aux-loss";
    }
    return "none";
}

ScoreFunc parse_score_func(const std::string& s) {
    if (s == "softmax") return ScoreFunc::softmax;
    if (s == "sigmoid") return ScoreFunc::sigmoid;
    throw ConfigError("score_func = \"" + preview(s) + "\"; allowed: softmax, sigmoid");
}

Balance parse_balance(const std::string& s) {
    for (Balance b : {Balance::none, Balance::aux_free, Balance::seq_loss, Balance::aux_loss})
        if (s == to_string(b)) return b;
    throw ConfigError("balance = \"" + preview(s) + "\"; allowed: none, aux-free, seq-loss, aux-loss");
}

namespace {

void require(bool ok, const std::string& message) {
    if (!ok) throw ConfigError(message);
}

}  // namespace

void MoeConfig::validate() const {
    // Sizes bounded first (as in ModelArgs), then the layer's tensors in checked arithmetic, so a
    // config cannot make a product wrap into a tiny gate that is then indexed as a huge one.
    const std::pair<const char*, std::size_t> sizes[] = {
        {"dim", dim}, {"moe_inter_dim", moe_inter_dim}, {"n_routed_experts", n_routed_experts},
        {"n_shared_experts", n_shared_experts}, {"n_activated_experts", n_activated_experts},
        {"n_expert_groups", n_expert_groups}, {"n_limited_groups", n_limited_groups}};
    for (const auto& [name, v] : sizes)
        require(v <= std::size_t(kMaxConfigSize), std::string(name) + " = " + std::to_string(v) + "; allowed: at most " +
                                                       std::to_string(kMaxConfigSize));
    require(dim > 0, "dim must be > 0");
    require(moe_inter_dim > 0, "moe_inter_dim must be > 0");
    // The same layout rule as the model's (eva/config.hpp), whatever the balancing mode.
    validate_expert_groups(std::int64_t(n_routed_experts), std::int64_t(n_activated_experts),
                           std::int64_t(n_expert_groups), std::int64_t(n_limited_groups));
    require(std::isfinite(route_scale) && route_scale > 0, "route_scale must be finite and > 0");
    require(std::isfinite(gamma) && gamma >= 0, "gamma must be finite and >= 0");
    require(std::isfinite(alpha) && alpha >= 0, "alpha must be finite and >= 0");
    const std::uint64_t expert = checked_mul(3, checked_mul(dim, moe_inter_dim, "dim x moe_inter_dim"), "an expert");
    checked_add(checked_mul(n_routed_experts + n_shared_experts, expert, "the experts of a MoE layer"),
                checked_mul(n_routed_experts, dim, "the gate"), "a MoE layer");
}

MoeConfig MoeConfig::preset(const std::string& name) { return moe_config(eva::preset(name), Balance::none); }

MoeConfig moe_config(const ModelArgs& a, Balance balance, double gamma, double alpha) {
    MoeConfig c;
    c.dim = std::size_t(a.dim);
    c.moe_inter_dim = std::size_t(a.moe_inter_dim);
    c.n_routed_experts = std::size_t(a.n_routed_experts);
    c.n_shared_experts = std::size_t(a.n_shared_experts);
    c.n_activated_experts = std::size_t(a.n_activated_experts);
    c.n_expert_groups = std::size_t(a.n_expert_groups);
    c.n_limited_groups = std::size_t(a.n_limited_groups);
    c.score_func = parse_score_func(a.score_func);
    c.route_scale = a.route_scale;
    c.balance = balance;
    c.gamma = gamma;
    c.alpha = alpha;
    c.validate();
    return c;
}

MoeConfig MoeConfig::from_json(const nlohmann::json& j) {
    if (!j.is_object()) throw ConfigError("MoE config JSON must be an object");
    // As DeepSeek's Gate(args): the layer's settings are the model's ModelArgs (one parser, one validation,
    // the official defaults), plus the training-side balancing knobs, which ModelArgs does not have.
    nlohmann::json args = nlohmann::json::object();
    Balance balance = Balance::none;
    double gamma = 0.001, alpha = 1e-4;
    for (const auto& item : j.items()) {
        const std::string& key = item.key();
        const nlohmann::json& value = item.value();
        if (key == "balance") {
            require(value.is_string(), "balance must be a string");
            balance = parse_balance(value.get<std::string>());
        } else if (key == "gamma" || key == "alpha") {
            require(value.is_number(), key + " must be a number");
            (key == "gamma" ? gamma : alpha) = value.get<double>();
        } else {
            args[key] = value;  // unknown names are refused by model_args_from_json, naming them
        }
    }
    return moe_config(model_args_from_json(args), balance, gamma, alpha);
}

nlohmann::json MoeConfig::to_json() const {
    return {{"dim", dim}, {"moe_inter_dim", moe_inter_dim}, {"n_routed_experts", n_routed_experts},
            {"n_shared_experts", n_shared_experts}, {"n_activated_experts", n_activated_experts},
            {"n_expert_groups", n_expert_groups}, {"n_limited_groups", n_limited_groups},
            {"score_func", to_string(score_func)}, {"route_scale", route_scale}, {"balance", to_string(balance)},
            {"gamma", gamma}, {"alpha", alpha}};
}

// --------------------------------------------------------------------------------------------- gate

namespace {

/// Indices of the k largest values of v[0..n), largest first; equal values: the lower index first.
template <class T>
void top_k(const T* v, std::size_t n, std::size_t k, std::vector<std::int32_t>& out) {
    out.resize(n);
    std::iota(out.begin(), out.end(), 0);
    std::partial_sort(out.begin(), out.begin() + k, out.end(),
                      [v](std::int32_t a, std::int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
    out.resize(k);
}

/// Sets the selection scores of every expert outside the `keep` best of G equal, contiguous blocks of
/// experts to −inf. A block's score: the sum of its `top` largest selection scores, or (top = 0) its
/// maximum. Blocks are V3's expert groups (top 2 with a bias, as in DeepSeek's code) or its nodes
/// (top K/M: the report's node-limited routing).
template <class T>
void mask_blocks(std::size_t E, std::size_t G, std::size_t keep, std::size_t top, T* sel, std::vector<T>& block_score,
                 std::vector<std::int32_t>& scratch) {
    const std::size_t per = E / G;
    block_score.resize(G);
    for (std::size_t g = 0; g < G; ++g) {
        const T* s = sel + g * per;
        if (top > 0) {
            top_k(s, per, top, scratch);
            T sum = 0;
            for (std::size_t j = 0; j < top; ++j) sum += s[scratch[j]];
            block_score[g] = sum;
        } else {
            block_score[g] = *std::max_element(s, s + per);
        }
    }
    top_k(block_score.data(), G, keep, scratch);
    std::vector<bool> kept(G, false);
    for (auto g : scratch) kept[std::size_t(g)] = true;
    for (std::size_t g = 0; g < G; ++g)
        if (!kept[g]) std::fill(sel + g * per, sel + (g + 1) * per, -std::numeric_limits<T>::infinity());
}

}  // namespace

void NodeLimit::validate(const MoeConfig& cfg) const {
    const std::size_t E = cfg.n_routed_experts, K = cfg.n_activated_experts;
    if (nodes == 0 || E % nodes != 0)
        throw ConfigError("nodes = " + std::to_string(nodes) + " must divide the " + std::to_string(E) + " routed experts");
    if (max_nodes == 0) return;
    if (max_nodes > nodes || max_nodes > K || K % max_nodes != 0)
        throw ConfigError("max_nodes = " + std::to_string(max_nodes) + " must divide n_activated_experts (" +
                          std::to_string(K) + ") and be at most the " + std::to_string(nodes) + " nodes");
    if (max_nodes * (E / nodes) < K)
        throw ConfigError("max_nodes = " + std::to_string(max_nodes) + " nodes of " + std::to_string(E / nodes) +
                          " experts cannot hold the " + std::to_string(K) + " experts a token needs");
}

template <class T>
void route(const MoeConfig& cfg, const T* bias, Routing<T>& r) {
    route(cfg, bias, r, NodeLimit{});
}

template <class T>
void route(const MoeConfig& cfg, const T* bias, Routing<T>& r, const NodeLimit& limit) {
    const std::size_t n = r.n_tokens, E = cfg.n_routed_experts, k = cfg.n_activated_experts;
    // A hand-built config may not have been validated: the group rule is the config's (one function).
    if (cfg.n_expert_groups > 1)
        validate_expert_groups(std::int64_t(E), std::int64_t(k), std::int64_t(cfg.n_expert_groups),
                               std::int64_t(cfg.n_limited_groups));
    const bool node_limited = limit.max_nodes > 0 && limit.max_nodes < limit.nodes;
    if (node_limited) limit.validate(cfg);
    r.n_experts = E;
    r.top_k = k;
    r.indices.resize(n * k);
    r.weights.resize(n * k);
    std::vector<T> sel(E), group_score;
    std::vector<std::int32_t> chosen, scratch;
    for (std::size_t t = 0; t < n; ++t) {
        const T* s = r.scores.data() + t * E;
        for (std::size_t e = 0; e < E; ++e) sel[e] = s[e] + (bias ? bias[e] : T(0));
        if (cfg.n_expert_groups > 1)
            mask_blocks(E, cfg.n_expert_groups, cfg.n_limited_groups, bias ? 2 : 0, sel.data(), group_score, scratch);
        // V3 §2.1.2: at most M nodes per token, ranked by the sum of their K/M highest affinity scores.
        if (node_limited) mask_blocks(E, limit.nodes, limit.max_nodes, k / limit.max_nodes, sel.data(), group_score, scratch);
        top_k(sel.data(), E, k, chosen);
        T sum = 0;
        for (std::size_t j = 0; j < k; ++j) {
            r.indices[t * k + j] = chosen[j];
            r.weights[t * k + j] = s[chosen[j]];  // the ORIGINAL score: the bias never enters a weight
            sum += s[chosen[j]];
        }
        for (std::size_t j = 0; j < k; ++j) {
            T& w = r.weights[t * k + j];
            if (cfg.score_func == ScoreFunc::sigmoid) w /= sum;
            w *= T(cfg.route_scale);
        }
    }
}

template <class T>
void gate_forward(const MoeConfig& cfg, const Matrix<T>& gate, const T* bias, const T* x, std::size_t n,
                  Routing<T>& r, const NodeLimit& limit) {
    const std::size_t E = cfg.n_routed_experts, D = cfg.dim;
    require_shape(gate, std::array<std::size_t, 2>{E, D}, "gate.weight");
    r.n_tokens = n;
    r.scores.resize(n * E);
    if (n > 0) gemm<T>(Op::N, Op::T, n, E, D, x, D, gate.data(), D, r.scores.data(), E);  // logits = x·gateᵀ
    for (std::size_t t = 0; t < n; ++t) {
        T* s = r.scores.data() + t * E;
        if (cfg.score_func == ScoreFunc::softmax) {  // max-subtracted for range safety
            const T mx = *std::max_element(s, s + E);
            T sum = 0;
            for (std::size_t e = 0; e < E; ++e) sum += (s[e] = std::exp(s[e] - mx));
            for (std::size_t e = 0; e < E; ++e) s[e] /= sum;
        } else {
            for (std::size_t e = 0; e < E; ++e) s[e] = T(1) / (T(1) + std::exp(-s[e]));
        }
    }
    route(cfg, bias, r, limit);
}

template <class T>
void gate_backward(const MoeConfig& cfg, const Matrix<T>& gate, const T* x, const Routing<T>& r,
                   const T* dweights, std::vector<T>& dscores, Matrix<T>& dgate, T* dx) {
    const std::size_t n = r.n_tokens, E = r.n_experts, k = r.top_k, D = cfg.dim;
    const T scale = T(cfg.route_scale);
    if (dscores.size() != n * E)
        throw ShapeError("gate_backward: dscores has " + std::to_string(dscores.size()) + " entries, expected n·E = " +
                         std::to_string(n * E));
    for (std::size_t t = 0; t < n; ++t) {
        T* ds = dscores.data() + t * E;
        const T* s = r.scores.data() + t * E;
        const std::int32_t* idx = r.indices.data() + t * k;
        if (dweights) {
            const T* dw = dweights + t * k;
            if (cfg.score_func == ScoreFunc::softmax) {  // w_j = scale·s_{i_j}
                for (std::size_t j = 0; j < k; ++j) ds[idx[j]] += scale * dw[j];
            } else {  // w_j = scale·s_{i_j}/S, S = Σ_chosen s: ds_m = scale/S·(dw_m − Σ_j dw_j·s_{i_j}/S)
                T S = 0, dot = 0;
                for (std::size_t j = 0; j < k; ++j) S += s[idx[j]];
                for (std::size_t j = 0; j < k; ++j) dot += dw[j] * s[idx[j]];
                for (std::size_t j = 0; j < k; ++j) ds[idx[j]] += scale / S * (dw[j] - dot / S);
            }
        }
        // Through the score function, in place: ds becomes the gradient w.r.t. the logits.
        if (cfg.score_func == ScoreFunc::softmax) {  // dl = s ⊙ (ds − ⟨ds, s⟩)
            T dot = 0;
            for (std::size_t e = 0; e < E; ++e) dot += ds[e] * s[e];
            for (std::size_t e = 0; e < E; ++e) ds[e] = s[e] * (ds[e] - dot);
        } else {  // dl = ds ⊙ s(1 − s)
            for (std::size_t e = 0; e < E; ++e) ds[e] *= s[e] * (T(1) - s[e]);
        }
    }
    if (n == 0) return;
    gemm<T>(Op::T, Op::N, E, D, n, dscores.data(), E, x, D, dgate.data(), D, true);  // dgate += dlᵀ·x
    if (dx) gemm<T>(Op::N, Op::N, n, D, E, dscores.data(), E, gate.data(), D, dx, D, true);  // dx += dl·gate
}

// ---------------------------------------------------------------------------------------- balancing

template <class T>
std::vector<std::size_t> expert_counts(const Routing<T>& r) {
    std::vector<std::size_t> counts(r.n_experts, 0);
    for (auto e : r.indices) ++counts[std::size_t(e)];
    return counts;
}

template <class T>
T balance_loss(const MoeConfig& cfg, const Routing<T>& r, std::size_t seq_len, T* dscores) {
    const std::size_t n = r.n_tokens, E = r.n_experts, k = r.top_k;
    if (seq_len == 0 || n % seq_len != 0)
        throw ShapeError("seq_len = " + std::to_string(seq_len) + " must divide the token count " + std::to_string(n));
    const std::size_t n_seq = n / seq_len;
    const T alpha = T(cfg.alpha);
    std::vector<T> f(E), P(E);
    T loss = 0;
    for (std::size_t q = 0; q < n_seq; ++q) {
        const std::size_t t0 = q * seq_len;
        std::fill(f.begin(), f.end(), T(0));
        std::fill(P.begin(), P.end(), T(0));
        for (std::size_t t = t0; t < t0 + seq_len; ++t) {
            for (std::size_t j = 0; j < k; ++j) f[std::size_t(r.indices[t * k + j])] += T(E) / T(k * seq_len);
            const T* s = r.scores.data() + t * E;
            const T S = std::accumulate(s, s + E, T(0));
            for (std::size_t e = 0; e < E; ++e) P[e] += s[e] / S / T(seq_len);
        }
        for (std::size_t e = 0; e < E; ++e) loss += alpha * f[e] * P[e] / T(n_seq);
        if (!dscores) continue;
        // ∂L/∂s'_{e,t} = α·f_e/(T·n_seq) =: g_e; through s' = s/S: ∂L/∂s_e = (g_e − Σ_i g_i·s'_i)/S.
        for (std::size_t t = t0; t < t0 + seq_len; ++t) {
            const T* s = r.scores.data() + t * E;
            const T S = std::accumulate(s, s + E, T(0));
            T gs = 0;
            for (std::size_t e = 0; e < E; ++e) gs += alpha * f[e] / T(seq_len * n_seq) * s[e] / S;
            for (std::size_t e = 0; e < E; ++e)
                dscores[t * E + e] += (alpha * f[e] / T(seq_len * n_seq) - gs) / S;
        }
    }
    return loss;
}

template <class T>
void update_bias(std::vector<T>& bias, const std::vector<std::size_t>& counts, double gamma) {
    if (bias.size() != counts.size())
        throw ShapeError("gate.bias has " + std::to_string(bias.size()) + " entries, counts " + std::to_string(counts.size()));
    const double mean = double(std::accumulate(counts.begin(), counts.end(), std::size_t(0))) / double(counts.size());
    for (std::size_t i = 0; i < bias.size(); ++i) {
        if (double(counts[i]) > mean) bias[i] -= T(gamma);       // overloaded: make it less attractive
        else if (double(counts[i]) < mean) bias[i] += T(gamma);  // underloaded: more attractive
    }
}

RoutingStats load_statistics(const std::vector<std::size_t>& counts) {
    RoutingStats st;
    const std::size_t E = counts.size();
    st.tokens_per_expert = counts;
    const double total = double(std::accumulate(counts.begin(), counts.end(), std::size_t(0))), mean = total / double(E);
    double var = 0, ent = 0, mx = 0;
    for (std::size_t c : st.tokens_per_expert) {
        const double p = total > 0 ? double(c) / total : 0;
        st.load_fraction.push_back(p);
        var += (double(c) - mean) * (double(c) - mean) / double(E);
        if (p > 0) ent -= p * std::log(p);
        mx = std::max(mx, double(c));
    }
    if (total > 0) {
        st.max_vio = mx / mean - 1;
        st.cv = std::sqrt(var) / mean;
        st.entropy = E > 1 ? ent / std::log(double(E)) : 1.0;
    }
    return st;
}

template <class T>
RoutingStats routing_stats(const MoeConfig& cfg, const Routing<T>& r, const std::vector<T>& bias) {
    RoutingStats st = load_statistics(expert_counts(r));
    if (cfg.n_shared_experts > 0 && r.n_tokens > 0) {
        const double routed = double(std::accumulate(r.weights.begin(), r.weights.end(), T(0))) / double(r.n_tokens);
        st.shared_fraction = 1.0 / (1.0 + routed);
    }
    st.bias.assign(bias.begin(), bias.end());
    return st;
}

nlohmann::json RoutingStats::to_json() const {
    return {{"tokens_per_expert", tokens_per_expert}, {"load_fraction", load_fraction}, {"max_vio", max_vio},
            {"cv", cv}, {"entropy", entropy}, {"shared_fraction", shared_fraction}, {"bias", bias},
            {"balance_loss", balance_loss}};
}

template <class T>
RoutingStats balancing_step(const MoeConfig& cfg, Matrix<T>& gate, std::vector<T>& bias, const T* x, std::size_t n,
                            std::size_t seq_len, double lr, Routing<T>& r) {
    gate_forward(cfg, gate, bias.empty() ? nullptr : bias.data(), x, n, r);
    RoutingStats st = routing_stats(cfg, r, bias);
    // Balancing acts after the step is measured, so the first step shows the untouched router.
    if (cfg.balance == Balance::aux_free && !bias.empty()) {
        update_bias(bias, st.tokens_per_expert, cfg.gamma);
    } else if (cfg.balance == Balance::seq_loss || cfg.balance == Balance::aux_loss) {
        std::vector<T> dscores(n * cfg.n_routed_experts, T(0));
        st.balance_loss = double(balance_loss<T>(cfg, r, cfg.balance == Balance::seq_loss ? seq_len : n, dscores.data()));
        auto dgate = Matrix<T>::from_shape(gate.shape());
        dgate.fill(T(0));
        gate_backward<T>(cfg, gate, x, r, nullptr, dscores, dgate, nullptr);
        gate -= T(lr) * dgate;
    }
    return st;
}

Matrix<float> skewed_gate(const MoeConfig& cfg, double skew, Rng& rng) {
    auto gate = Matrix<float>::from_shape({cfg.n_routed_experts, cfg.dim});
    rng.fill_normal(gate.data(), gate.size(), 0.0f, 1.0f / std::sqrt(float(cfg.dim)));
    for (std::size_t e = 0; e < cfg.n_activated_experts; ++e) gate(e, 0) += float(skew);
    return gate;
}

std::vector<float> skewed_hidden_states(const MoeConfig& cfg, std::size_t n, std::uint64_t seed, std::uint64_t step) {
    Rng rng(seed, step + 1);  // one stream per step: a fresh batch from the same distribution
    std::vector<float> x(n * cfg.dim);
    rng.fill_normal(x.data(), x.size(), 0.0f, 1.0f);
    for (std::size_t t = 0; t < n; ++t) x[t * cfg.dim] += 1.0f;  // the common offset the skewed rows see
    return x;
}

BalancingRun::BalancingRun(const MoeConfig& c, Matrix<float> g)
    : cfg(c), gate(std::move(g)), bias(c.balance == Balance::aux_free ? c.n_routed_experts : 0, 0.0f) {
    if (gate.shape(0) != cfg.n_routed_experts || gate.shape(1) != cfg.dim)
        throw ShapeError("BalancingRun: the gate is not [n_routed_experts, dim]");
}

const RoutingStats& BalancingRun::step(const float* x, std::size_t n, std::size_t seq_len, double lr) {
    stats.push_back(balancing_step(cfg, gate, bias, x, n, seq_len, lr, routing));
    return stats.back();
}

std::vector<RoutingStats> synthetic_balancing_run(const MoeConfig& cfg, double skew, std::uint64_t seed,
                                                  std::size_t tokens, std::size_t steps, std::size_t seq_len, double lr,
                                                  const std::vector<float>& given, Routing<float>* first) {
    Rng rng(seed);
    BalancingRun run(cfg, skewed_gate(cfg, skew, rng));
    for (std::size_t step = 0; step <= steps; ++step) {
        const auto x = given.empty() ? skewed_hidden_states(cfg, tokens, seed, step) : given;
        run.step(x.data(), tokens, seq_len, lr);
        if (step == 0 && first) *first = run.routing;
    }
    return std::move(run.stats);
}

// ------------------------------------------------------------------------------------------ the layer

template <class T>
Moe<T> Moe<T>::zeros(const MoeConfig& cfg) {
    cfg.validate();
    Moe m;
    m.cfg = cfg;
    m.gate = Matrix<T>::from_shape({cfg.n_routed_experts, cfg.dim});
    m.gate.fill(T(0));
    if (cfg.balance == Balance::aux_free) m.bias.assign(cfg.n_routed_experts, T(0));
    for (std::size_t e = 0; e < cfg.n_routed_experts; ++e) m.experts.push_back(Mlp<T>::zeros(cfg.dim, cfg.moe_inter_dim));
    if (cfg.n_shared_experts > 0) m.shared = Mlp<T>::zeros(cfg.dim, cfg.n_shared_experts * cfg.moe_inter_dim);
    return m;
}

template <class T>
Moe<T> Moe<T>::random(const MoeConfig& cfg, Rng& rng, float std) {
    Moe m = zeros(cfg);
    for (T& v : m.gate) v = T(rng.normal() * std);
    for (auto& e : m.experts) e = Mlp<T>::random(cfg.dim, cfg.moe_inter_dim, rng, std);
    if (cfg.n_shared_experts > 0) m.shared = Mlp<T>::random(cfg.dim, cfg.n_shared_experts * cfg.moe_inter_dim, rng, std);
    return m;
}

namespace {

// Expert parallelism is implemented for float, the training type (Comm moves bytes of float rows).
template <class T>
ExpertParallel* float_only(ExpertParallel* ep) {
    if (ep && !std::is_same_v<T, float>) throw ConfigError("expert parallelism runs in float only");
    return ep;
}

}  // namespace

template <class T>
void moe_forward(const Moe<T>& m, const T* x, std::size_t n, std::size_t seq_len, T* y, MoeCache<T>& c,
                 LinearMode precision, const NodeLimit& limit, ExpertParallel* ep) {
    const MoeConfig& cfg = m.cfg;
    const std::size_t E = cfg.n_routed_experts, k = cfg.n_activated_experts, D = cfg.dim;
    c.n_tokens = n;
    c.seq_len = seq_len;
    gate_forward(cfg, m.gate, m.bias.empty() ? nullptr : m.bias.data(), x, n, c.routing, limit);
    c.balance_loss = 0;
    if (cfg.balance == Balance::seq_loss) c.balance_loss = balance_loss<T>(cfg, c.routing, seq_len, nullptr);
    if (cfg.balance == Balance::aux_loss) c.balance_loss = balance_loss<T>(cfg, c.routing, n, nullptr);

    // Group the n·k (token, expert) pairs by expert: a counting sort, stable in token order.
    const auto counts = expert_counts(c.routing);
    c.offsets.assign(E + 1, 0);
    for (std::size_t e = 0; e < E; ++e) c.offsets[e + 1] = c.offsets[e] + counts[e];
    std::vector<std::size_t> next(c.offsets.begin(), c.offsets.end() - 1);
    c.row_of.resize(n * k);
    c.xg.resize(n * k * D);
    c.yg.resize(n * k * D);
    for (std::size_t p = 0; p < n * k; ++p) {
        const std::size_t row = next[std::size_t(c.routing.indices[p])]++;
        c.row_of[p] = row;
        std::copy(x + p / k * D, x + (p / k + 1) * D, c.xg.begin() + row * D);
    }
    // One SwiGLU (three GEMMs) per expert over exactly its tokens.
    // Experts are independent (own weights, own rows of xg/yg, own cache): one thread per expert.
    if (float_only<T>(ep)) {  // or on the ranks that hold them: dispatch, run, combine back into yg
        if constexpr (std::is_same_v<T, float>) ep->forward(m, c, precision);
    } else {
        c.expert_cache.resize(E);
        detail::parallel_for(E, [&](std::size_t e) {
            mlp_forward(m.experts[e], c.xg.data() + c.offsets[e] * D, counts[e], c.yg.data() + c.offsets[e] * D,
                        c.expert_cache[e], false, precision);
        });
    }
    // Combine: y = shared(x) + Σ_j w_j·expert_j(x), summed in the same order as the naive loop.
    if (cfg.n_shared_experts > 0) mlp_forward(m.shared, x, n, y, c.shared_cache, false, precision);
    else std::fill(y, y + n * D, T(0));
    for (std::size_t p = 0; p < n * k; ++p) {
        const T w = c.routing.weights[p];
        const T* ye = c.yg.data() + c.row_of[p] * D;
        T* yt = y + p / k * D;
        for (std::size_t d = 0; d < D; ++d) yt[d] += w * ye[d];
    }
}

template <class T>
void moe_backward(const Moe<T>& m, const T* x, const MoeCache<T>& c, const T* dy, T* dx, Moe<T>& g,
                  LinearMode precision, ExpertParallel* ep) {
    const MoeConfig& cfg = m.cfg;
    const std::size_t n = c.n_tokens, E = cfg.n_routed_experts, k = cfg.n_activated_experts, D = cfg.dim;
    const Routing<T>& r = c.routing;
    // Shared expert: it sees every token with coefficient 1.
    if (cfg.n_shared_experts > 0) mlp_backward(m.shared, x, n, c.shared_cache, dy, dx, g.shared, false, precision);
    else std::fill(dx, dx + n * D, T(0));
    // Combine backward: the expert's output gradient is w·dy, the weight's gradient ⟨dy, expert(x)⟩.
    // Every row of dyg and dxg (one per token and chosen expert) and every dweights is written below.
    const auto dyg = detail::scratch<T>(n * k * D), dxg = detail::scratch<T>(n * k * D), dweights = detail::scratch<T>(n * k);
    for (std::size_t p = 0; p < n * k; ++p) {
        const T* dyt = dy + p / k * D;
        const T* ye = c.yg.data() + c.row_of[p] * D;
        T* d = dyg.get() + c.row_of[p] * D;
        for (std::size_t i = 0; i < D; ++i) d[i] = r.weights[p] * dyt[i];
        dweights[p] = detail::sum8<T>(D, [&](std::size_t i) { return dyt[i] * ye[i]; });
    }
    if (float_only<T>(ep)) {  // the experts' ranks: dyg out, dxg back
        if constexpr (std::is_same_v<T, float>) ep->backward(m, c, dyg.get(), dxg.get(), precision);
    } else {
        detail::parallel_for(E, [&](std::size_t e) {  // independent experts, as in the forward pass
            const std::size_t o = c.offsets[e], cnt = c.offsets[e + 1] - o;
            mlp_backward(m.experts[e], c.xg.data() + o * D, cnt, c.expert_cache[e], dyg.get() + o * D,
                         dxg.get() + o * D, g.experts[e], false, precision);
        });
    }
    for (std::size_t p = 0; p < n * k; ++p) {
        const T* d = dxg.get() + c.row_of[p] * D;
        T* dxt = dx + p / k * D;
        for (std::size_t i = 0; i < D; ++i) dxt[i] += d[i];
    }
    // Gate: the combine weights' gradient plus the balance loss's own gradient w.r.t. the scores.
    std::vector<T> dscores(n * E, T(0));
    if (cfg.balance == Balance::seq_loss) balance_loss<T>(cfg, r, c.seq_len, dscores.data());
    if (cfg.balance == Balance::aux_loss) balance_loss<T>(cfg, r, n, dscores.data());
    gate_backward(cfg, m.gate, x, r, dweights.get(), dscores, g.gate, dx);
}

template <class T>
void moe_forward_naive(const Moe<T>& m, const T* x, std::size_t n, T* y) {
    const MoeConfig& cfg = m.cfg;
    const std::size_t k = cfg.n_activated_experts, D = cfg.dim;
    Routing<T> r;
    gate_forward(cfg, m.gate, m.bias.empty() ? nullptr : m.bias.data(), x, n, r);
    MlpCache<T> cache;
    std::vector<T> out(D);
    for (std::size_t t = 0; t < n; ++t) {
        T* yt = y + t * D;
        if (cfg.n_shared_experts > 0) mlp_forward(m.shared, x + t * D, 1, yt, cache);
        else std::fill(yt, yt + D, T(0));
        for (std::size_t j = 0; j < k; ++j) {
            mlp_forward(m.experts[std::size_t(r.indices[t * k + j])], x + t * D, 1, out.data(), cache);
            for (std::size_t d = 0; d < D; ++d) yt[d] += r.weights[t * k + j] * out[d];
        }
    }
}

template <class T>
void moe_backward_naive(const Moe<T>& m, const T* x, std::size_t n, const T* dy, T* dx, Moe<T>& g) {
    const MoeConfig& cfg = m.cfg;
    const std::size_t E = cfg.n_routed_experts, k = cfg.n_activated_experts, D = cfg.dim;
    Routing<T> r;
    gate_forward(cfg, m.gate, m.bias.empty() ? nullptr : m.bias.data(), x, n, r);
    MlpCache<T> cache;
    std::vector<T> out(D), dyw(D), dweights(n * k);
    for (std::size_t t = 0; t < n; ++t) {
        const T* xt = x + t * D;
        const T* dyt = dy + t * D;
        if (cfg.n_shared_experts > 0) {
            mlp_forward(m.shared, xt, 1, out.data(), cache);
            mlp_backward(m.shared, xt, 1, cache, dyt, dx + t * D, g.shared);
        } else {
            std::fill(dx + t * D, dx + (t + 1) * D, T(0));
        }
        for (std::size_t j = 0; j < k; ++j) {
            const std::size_t e = std::size_t(r.indices[t * k + j]);
            mlp_forward(m.experts[e], xt, 1, out.data(), cache);
            for (std::size_t d = 0; d < D; ++d) dyw[d] = r.weights[t * k + j] * dyt[d];
            dweights[t * k + j] = detail::sum8<T>(D, [&](std::size_t d) { return dyt[d] * out[d]; });
            mlp_backward(m.experts[e], xt, 1, cache, dyw.data(), dx + t * D, g.experts[e], true);
        }
    }
    std::vector<T> dscores(n * E, T(0));
    gate_backward(cfg, m.gate, x, r, dweights.data(), dscores, g.gate, dx);
}

#define EVA_MOE_INSTANTIATE(T)                                                                                 \
    template struct Moe<T>;                                                                                    \
    template void route<T>(const MoeConfig&, const T*, Routing<T>&);                                           \
    template void route<T>(const MoeConfig&, const T*, Routing<T>&, const NodeLimit&);                         \
    template void gate_forward<T>(const MoeConfig&, const Matrix<T>&, const T*, const T*, std::size_t, Routing<T>&, \
                                  const NodeLimit&);                                                            \
    template void gate_backward<T>(const MoeConfig&, const Matrix<T>&, const T*, const Routing<T>&, const T*,    \
                                   std::vector<T>&, Matrix<T>&, T*);                                           \
    template T balance_loss<T>(const MoeConfig&, const Routing<T>&, std::size_t, T*);                          \
    template std::vector<std::size_t> expert_counts<T>(const Routing<T>&);                                     \
    template void update_bias<T>(std::vector<T>&, const std::vector<std::size_t>&, double);                    \
    template RoutingStats routing_stats<T>(const MoeConfig&, const Routing<T>&, const std::vector<T>&);        \
    template RoutingStats balancing_step<T>(const MoeConfig&, Matrix<T>&, std::vector<T>&, const T*, std::size_t, \
                                            std::size_t, double, Routing<T>&);                                \
    template void moe_forward<T>(const Moe<T>&, const T*, std::size_t, std::size_t, T*, MoeCache<T>&,          \
                                 LinearMode, const NodeLimit&, ExpertParallel*);                          \
    template void moe_backward<T>(const Moe<T>&, const T*, const MoeCache<T>&, const T*, T*, Moe<T>&,          \
                                  LinearMode, ExpertParallel*);                                           \
    template void moe_forward_naive<T>(const Moe<T>&, const T*, std::size_t, T*);                              \
    template void moe_backward_naive<T>(const Moe<T>&, const T*, std::size_t, const T*, T*, Moe<T>&);
EVA_MOE_INSTANTIATE(float)
EVA_MOE_INSTANTIATE(double)
#undef EVA_MOE_INSTANTIATE

}  // namespace eva
