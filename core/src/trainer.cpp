// eva — the training loop.
#include "eva/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <type_traits>

#include "eva/checkpoint.hpp"
#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/json.hpp"
#include "eva/safetensors.hpp"
#include "parallel.hpp"

namespace eva {

double max_vio(const double* loads, std::size_t steps, std::size_t experts) {
    if (experts == 0) throw ShapeError("max_vio: no experts");
    std::vector<double> sum(experts, 0.0);
    for (std::size_t t = 0; t < steps; ++t)
        for (std::size_t e = 0; e < experts; ++e) sum[e] += loads[t * experts + e];
    double total = 0, top = 0;
    for (double v : sum) total += v, top = std::max(top, v);
    return total > 0 ? top / (total / double(experts)) - 1 : 0.0;
}

nlohmann::json StepStats::to_json() const {
    return {{"step", step},         {"loss", loss},         {"balance_loss", balance_loss}, {"lr", lr},
            {"grad_norm", grad_norm}, {"seconds", seconds}, {"mtp_loss", mtp_loss},         {"max_vio", max_vio},
            {"expert_load", expert_load}, {"bias", bias}, {"tokens", tokens}};
}

StepStats StepStats::from_json(const nlohmann::json& j) {
    StepStats s;
    j.at("step").get_to(s.step);
    j.at("loss").get_to(s.loss);
    j.at("balance_loss").get_to(s.balance_loss);
    j.at("lr").get_to(s.lr);
    j.at("grad_norm").get_to(s.grad_norm);
    j.at("seconds").get_to(s.seconds);
    j.at("mtp_loss").get_to(s.mtp_loss);
    j.at("max_vio").get_to(s.max_vio);
    j.at("expert_load").get_to(s.expert_load);
    j.at("bias").get_to(s.bias);
    j.at("tokens").get_to(s.tokens);
    return s;
}

void TrainConfig::validate(const ModelArgs& args) const {
    auto require = [](bool ok, const std::string& msg) {
        if (!ok) throw ConfigError(msg);
    };
    auto in_unit = [](double x) { return x >= 0 && x < 1; };  // false for NaN
    require(batch > 0 && batch <= 4096, "batch must be in 1..4096, got " + std::to_string(batch));
    require(seq_len > 0 && seq_len <= args.max_seq_len,
            "seq_len must be in 1..max_seq_len (" + std::to_string(args.max_seq_len) + "), got " + std::to_string(seq_len));
    require(std::int64_t(batch) * seq_len <= kMaxTokensPerStep,
            "batch x seq_len must be at most " + std::to_string(kMaxTokensPerStep) + " tokens per step");
    require(steps > 0 && steps <= kMaxTrainSteps,
            "steps must be in 1.." + std::to_string(kMaxTrainSteps) + ", got " + std::to_string(steps));
    require(schedule.lr > 0 && schedule.lr < 1, "lr must be in (0, 1)");
    require(schedule.warmup_steps >= 0 && schedule.warmup_steps <= kMaxTrainSteps,
            "warmup must be in 0.." + std::to_string(kMaxTrainSteps));
    require(schedule.min_lr_ratio >= 0 && schedule.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]");
    // β = 1 would freeze a moment at 0 and divide by 1 − β^t = 0; ε ≤ 0 can divide by zero.
    require(in_unit(adamw.beta1), "beta1 must be in [0, 1)");
    require(in_unit(adamw.beta2), "beta2 must be in [0, 1)");
    require(std::isfinite(adamw.eps) && adamw.eps > 0, "eps must be a finite number > 0");
    require(std::isfinite(adamw.weight_decay) && adamw.weight_decay >= 0, "weight_decay must be finite and >= 0");
    require(std::isfinite(grad_clip) && grad_clip >= 0, "grad_clip must be finite and >= 0 (0: off)");
    require(eval_batches > 0 && eval_batches <= 4096, "eval_batches must be in 1..4096");
    require(std::isfinite(mtp_lambda) && mtp_lambda >= 0 && mtp_lambda <= 10, "mtp_lambda must be in 0..10");
    require(shards >= 0 && shards <= batch && (shards == 0 || batch % shards == 0),
            "shards must divide the batch (" + std::to_string(batch) + "), got " + std::to_string(shards));
    require(nodes >= 1 && max_nodes >= 0, "nodes must be >= 1 and max_nodes >= 0");
    if (nodes > 1 || max_nodes > 0) {
        if (args.n_layers == args.n_dense_layers && args.n_mtp_layers == 0) throw ConfigError("--max-nodes needs a model with MoE layers");
        NodeLimit{std::size_t(nodes), std::size_t(max_nodes)}.validate(moe_config(args));
    }
    require(args.n_mtp_layers < seq_len, "seq_len must exceed n_mtp_layers (" + std::to_string(args.n_mtp_layers) +
                                             "): MTP module k trains on seq_len - k positions");
}

namespace {

using nlohmann::json;

// One row per TrainConfig field: its JSON name, how to write it, how to read it back (type-checked).
struct TrainField {
    const char* name;
    std::function<json(const TrainConfig&)> write;
    std::function<void(TrainConfig&, const json&)> read;
};

[[noreturn]] void bad_field(const std::string& name, const std::string& want, const json& v) {
    throw FileError("training state: config field '" + name + "' must be " + want + ", got " + json_preview(v));
}

// `get` returns a reference to the member (for a const or a mutable config alike).
template <class Get>
TrainField field(const char* name, Get get) {
    return {name, [get](const TrainConfig& c) { return json(get(c)); },
            [get, name](TrainConfig& c, const json& v) {
                using V = std::decay_t<decltype(get(c))>;
                if constexpr (std::is_same_v<V, double>) {
                    if (!v.is_number() || !std::isfinite(v.get<double>())) bad_field(name, "a finite number", v);
                    get(c) = v.get<double>();
                } else {
                    // Integers: an integral JSON number within the member's range (16.5 or 1e12 are refused).
                    const bool ok = v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<V>::max())
                                    : v.is_number_integer() ? v.get<std::int64_t>() >= std::int64_t(std::numeric_limits<V>::min()) &&
                                                                  (std::is_unsigned_v<V> || v.get<std::int64_t>() <= std::int64_t(std::numeric_limits<V>::max()))
                                                            : false;
                    if (!ok) bad_field(name, "an integer in range", v);
                    get(c) = v.get<V>();
                }
            }};
}

const std::vector<TrainField>& train_fields() {
    static const std::vector<TrainField> f = {
        field("batch", [](auto& c) -> auto& { return c.batch; }),
        field("seq_len", [](auto& c) -> auto& { return c.seq_len; }),
        field("steps", [](auto& c) -> auto& { return c.steps; }),
        field("lr", [](auto& c) -> auto& { return c.schedule.lr; }),
        field("warmup_steps", [](auto& c) -> auto& { return c.schedule.warmup_steps; }),
        field("min_lr_ratio", [](auto& c) -> auto& { return c.schedule.min_lr_ratio; }),
        field("beta1", [](auto& c) -> auto& { return c.adamw.beta1; }),
        field("beta2", [](auto& c) -> auto& { return c.adamw.beta2; }),
        field("eps", [](auto& c) -> auto& { return c.adamw.eps; }),
        field("weight_decay", [](auto& c) -> auto& { return c.adamw.weight_decay; }),
        field("grad_clip", [](auto& c) -> auto& { return c.grad_clip; }),
        field("seed", [](auto& c) -> auto& { return c.seed; }),
        field("eval_batches", [](auto& c) -> auto& { return c.eval_batches; }),
        field("mtp_lambda", [](auto& c) -> auto& { return c.mtp_lambda; }),  // absent in states written before MTP
        field("shards", [](auto& c) -> auto& { return c.shards; }),          // absent before sharded steps
        field("nodes", [](auto& c) -> auto& { return c.nodes; }),            // absent before node-limited routing
        field("max_nodes", [](auto& c) -> auto& { return c.max_nodes; }),
        {"precision", [](const TrainConfig& c) { return json(to_string(c.precision)); },
         [](TrainConfig& c, const json& v) {
             if (!v.is_string()) bad_field("precision", "a string", v);
             try {
                 c.precision = parse_linear_precision(v.get<std::string>());
             } catch (const ConfigError& e) {
                 throw FileError(std::string("training state: ") + e.what());
             }
         }},
    };
    return f;
}

// A fresh run's id: 64 random bits as 16 hex digits. Only identity, never an input to the math.
std::string new_run_id() {
    std::random_device rd;
    const std::uint64_t x = (std::uint64_t(rd()) << 32) ^ rd() ^
                            std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)x);
    return buf;
}

// An integral JSON value within [lo, hi], or FileError naming `name`.
std::uint64_t state_integer(const json& t, const char* name, std::uint64_t lo, std::uint64_t hi) {
    if (!t.contains(name)) throw FileError(std::string("training state: no '") + name + "'");
    const json& v = t[name];
    const bool non_negative = v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
    if (!non_negative || v.get<std::uint64_t>() < lo || v.get<std::uint64_t>() > hi)
        throw FileError(std::string("training state: '") + name + "' must be an integer in " + std::to_string(lo) + ".." +
                        std::to_string(hi) + ", got " + json_preview(v));
    return v.get<std::uint64_t>();
}

}  // namespace

nlohmann::json TrainConfig::to_json() const {
    json j = json::object();
    for (const auto& f : train_fields()) j[f.name] = f.write(*this);
    return j;
}

TrainConfig TrainConfig::from_json(const nlohmann::json& j) {
    if (!j.is_object()) throw FileError("training state: config must be an object, got " + json_preview(j));
    TrainConfig c;
    c.shards = 1;  // a state without the field was trained on whole batches: continue it exactly so
    for (const auto& item : j.items()) {
        const std::string name = item.key();  // (not a structured binding: lambdas cannot capture those in C++17)
        const auto& fs = train_fields();
        const auto it = std::find_if(fs.begin(), fs.end(), [&](const TrainField& f) { return name == f.name; });
        if (it == fs.end()) throw FileError("training state: unknown config field '" + preview(name) + "'");
        it->read(c, item.value());
    }
    c.schedule.total_steps = c.steps;
    return c;
}

nlohmann::json TrainingState::to_json() const {
    return {{"step", step}, {"adamw_steps", adamw_steps}, {"data_position", data_position},
            {"corpus_tokens", corpus_tokens}, {"run_id", run_id}, {"config", config.to_json()}};
}

TrainingState TrainingState::from_json(const nlohmann::json& t, const ModelArgs& args) {
    if (!t.is_object()) throw FileError("training state must be an object, got " + json_preview(t));
    TrainingState s;
    if (!t.contains("config")) throw FileError("training state: no 'config'");
    s.config = TrainConfig::from_json(t["config"]);
    try {
        s.config.validate(args);
    } catch (const ConfigError& e) {
        throw FileError(std::string("training state: ") + e.what());
    }
    s.step = int(state_integer(t, "step", 0, std::uint64_t(s.config.steps)));
    // The counters follow from the step: one AdamW update and `batch` data draws per step.
    s.adamw_steps = long(state_integer(t, "adamw_steps", std::uint64_t(s.step), std::uint64_t(s.step)));
    const std::uint64_t draws = std::uint64_t(s.step) * std::uint64_t(s.config.batch);
    s.data_position = state_integer(t, "data_position", draws, draws);
    s.corpus_tokens = state_integer(t, "corpus_tokens", 0, kMaxCount);
    const json& id = t.contains("run_id") ? t["run_id"] : json();
    if (!id.is_string() || id.get<std::string>().size() != 16 ||
        id.get<std::string>().find_first_not_of("0123456789abcdef") != std::string::npos)
        throw FileError("training state: 'run_id' must be 16 hex digits, got " + json_preview(id));
    s.run_id = id.get<std::string>();
    return s;
}

std::vector<Param> trainable_params(ModelWeights<float>& values, ModelWeights<float>& grads) {
    std::vector<Param> out;
    auto v = named_tensors(values);
    auto g = named_tensors(grads);
    for (std::size_t i = 0; i < v.size(); ++i)
        if (v[i].trainable) out.push_back({v[i].name, v[i].data, g[i].data, v[i].size(), v[i].decay});
    return out;
}

int default_shards(int batch) { return batch % 4 == 0 ? 4 : batch % 2 == 0 ? 2 : 1; }

namespace {

// The model's MoE blocks run their routed experts through `ep` (nullptr: all of them here) for one
// scope; `count_traffic`: whether the exchanges are a training step's (a forward without its backward
// is not).
class ExpertParallelScope {
public:
    ExpertParallelScope(Model<float>& m, ExpertParallel* ep, bool count_traffic) : m_(m), ep_(ep) {
        m.expert_parallel = ep;
        if (ep) ep->count_traffic = count_traffic;
    }
    ~ExpertParallelScope() {
        m_.expert_parallel = nullptr;
        if (ep_) ep_->count_traffic = true;
    }
    ExpertParallelScope(const ExpertParallelScope&) = delete;
    ExpertParallelScope& operator=(const ExpertParallelScope&) = delete;

private:
    Model<float>& m_;
    ExpertParallel* ep_;
};

// FNV-1a over bytes: a fingerprint that tells whether two ranks start from the same run.
std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ull) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

}  // namespace

Trainer::Trainer(Model<float>& m, const Corpus& corpus, const TrainConfig& cfg, Comm* comm, int ep)
    : comm_(comm ? comm : &local_), m_(m), corpus_(corpus), cfg_(cfg), opt_(cfg.adamw), data_(cfg.seed, 1),
      run_id_(new_run_id()), grad_(model_zeros(m)), params_(trainable_params(m.w, grad_)) {
    cfg_.schedule.total_steps = cfg_.steps;
    cfg_.validate(m.args);
    // 0: default_shards, in one process as under mpirun, so that a run prints the same losses on any
    // rank count. (A sharded step of eva-mini costs about 1.1x a whole-batch one at 16 x 128, more for
    // shards of a single short sequence: docs/5-model.md.)
    if (cfg_.shards == 0) cfg_.shards = default_shards(cfg_.batch);
    m_.precision = cfg_.precision;
    m_.mtp_lambda = cfg_.mtp_lambda;
    m_.node_limit = NodeLimit{std::size_t(cfg_.nodes), std::size_t(cfg_.max_nodes)};
    if (corpus.train.size() <= std::size_t(cfg.seq_len) || corpus.validation.size() <= std::size_t(cfg.seq_len))
        throw ConfigError("the corpus is too small for seq_len " + std::to_string(cfg.seq_len));
    const int N = comm_->size();
    if ((N & (N - 1)) != 0 || cfg_.shards % N != 0)
        throw ConfigError(std::to_string(N) + " ranks cannot share " + std::to_string(cfg_.shards) +
                          " gradient shards: the rank count must be a power of two dividing --shards");
    // One buffer per depth of the rank's subtree below its root (the root is grad_).
    levels_.push_back(params_);
    for (int width = cfg_.shards / N; width > 1; width = (width + 1) / 2) {
        partial_.push_back(model_zeros(m));
        levels_.push_back(trainable_params(m_.w, partial_.back()));
    }
    layout_ = ExpertLayout{m.moe.n_routed_experts, 1, comm_->rank(), 1};
    if (ep != 1) {
        // Each node holds ep / nodes places of a group: the node blocks of the routing are the ranks'.
        if (ep < 1 || ep % cfg_.nodes != 0)
            throw ConfigError("--ep " + std::to_string(ep) + " ranks cannot form " + std::to_string(cfg_.nodes) +
                              " nodes (--ranks-per-node must divide --ep)");
        layout_ = ExpertLayout{m.moe.n_routed_experts, ep, comm_->rank(), ep / cfg_.nodes};
        if (N > 1) ep_ = std::make_unique<ExpertParallel>(*comm_, layout_, m_, levels_.size());
        else emulator_ = std::make_unique<TrafficEmulator>(layout_, m.moe.dim, cfg_.shards);
    }
    if (N > 1) {
        // Every rank must start from the same run; else its steps would silently diverge. Compare a
        // fingerprint of the config, the expert layout, the corpus and the weights (a run id is per process:
        // not hashed).
        const std::string c = cfg_.to_json().dump() + to_json(m.args).dump() + m.moe.to_json().dump() + " ep " + std::to_string(ep);
        std::uint64_t h = fnv1a(c.data(), c.size());
        h = fnv1a(corpus.train.data(), corpus.train.size() * sizeof(Token), h);
        h = fnv1a(corpus.validation.data(), corpus.validation.size() * sizeof(Token), h);
        for (const Param& p : params_) h = fnv1a(p.value, p.size * sizeof(float), h);
        const auto all = allgather(*comm_, std::vector<std::uint64_t>{h});
        for (int r = 0; r < N; ++r)
            if (all[std::size_t(r)] != all[0])
                throw ConfigError("rank " + std::to_string(r) + " of " + std::to_string(N) +
                                  " starts from another config, corpus or model than rank 0 (every rank needs the same arguments and files)");
        // The ranks share rank 0's run id, so that any rank's checkpoint state names the run.
        std::vector<std::uint64_t> id(1, std::stoull(run_id_, nullptr, 16));
        run_id_ = [&] {
            char buf[17];
            std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)allgather(*comm_, id)[0]);
            return std::string(buf);
        }();
    }
    if (ep_) shard_experts();
}

void Trainer::shard_experts() {
    // Which parameters are routed experts, and where each lives (found by address, before the release).
    std::map<const float*, int> place;
    for (Moe<float>* b : moe_blocks(m_.w))
        for (std::size_t e = 0; e < b->experts.size(); ++e)
            for (const Matrix<float>* x : {&b->experts[e].w1, &b->experts[e].w2, &b->experts[e].w3})
                place[x->data()] = layout_.place_of(e);
    for (const Param& p : params_) {
        const auto it = place.find(p.value);
        place_of_.push_back(it == place.end() ? -1 : it->second);
        full_size_.push_back(p.size);
    }
    release_experts(m_.w, layout_);
    for (auto& w : partial_) release_experts(w, layout_, false);  // (not even its own: see bind_params)
    release_experts(grad_, layout_, false);
    bind_params();
}

void Trainer::bind_params() {
    params_ = trainable_params(m_.w, grad_);
    if (ep_) {  // this rank's experts: their gradients are ExpertParallel's sums (grad_ has none)
        std::map<const float*, float*> sum;
        const auto blocks = moe_blocks(m_.w);
        const std::size_t El = layout_.per_rank(), first = std::size_t(layout_.place()) * El;
        for (std::size_t b = 0; b < blocks.size(); ++b)
            for (std::size_t e = 0; e < El; ++e) {
                Mlp<float>& w = blocks[b]->experts[first + e];
                Mlp<float>& g = ep_->summed(b, e);
                sum[w.w1.data()] = g.w1.data(), sum[w.w2.data()] = g.w2.data(), sum[w.w3.data()] = g.w3.data();
            }
        for (std::size_t i = 0; i < params_.size(); ++i)
            if (place_of(i) == layout_.place()) params_[i].grad = sum.at(params_[i].value);
    }
    // Under expert parallelism the experts' gradients take ExpertParallel's tree: the shard tree
    // leaves them out.
    auto tree = [&](std::vector<Param> ps) {
        for (std::size_t i = 0; i < ps.size(); ++i)
            if (place_of(i) >= 0) ps[i].size = 0;
        return ps;
    };
    levels_.at(0) = tree(params_);
    for (std::size_t d = 0; d < partial_.size(); ++d) levels_.at(d + 1) = tree(trainable_params(m_.w, partial_[d]));
}

void Trainer::allreduce(const std::function<bool(std::size_t)>& pick, int stride) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < params_.size(); ++i) n += pick(i) ? params_[i].size : 0;
    flat_.resize(n);
    float* at = flat_.data();
    for (std::size_t i = 0; i < params_.size(); ++i)
        if (pick(i)) at = std::copy(params_[i].grad, params_[i].grad + params_[i].size, at);
    tree_allreduce(*comm_, flat_.data(), n, scratch_, stride);
    at = flat_.data();
    for (std::size_t i = 0; i < params_.size(); ++i)
        if (pick(i)) {
            std::copy(at, at + params_[i].size, params_[i].grad);
            at += params_[i].size;
        }
}

double Trainer::sharded_grad_norm() {
    // grad_norm adds the pieces' Σ g² in parameter order. Every rank computes its own pieces and
    // gathers the other places' expert pieces (each place holds as many of the same shapes, so every
    // rank sends as many), then adds them all in that order: the same bits as one process.
    const auto sums = grad_square_sums(params_);
    std::vector<double> mine;
    for (std::size_t i = 0; i < params_.size(); ++i)
        if (place_of(i) == layout_.place()) mine.insert(mine.end(), sums[i].begin(), sums[i].end());
    const std::vector<double> all = allgather(*comm_, mine);
    std::vector<std::size_t> read(std::size_t(layout_.ep), 0);  // how far each place's pieces are consumed
    double sq = 0;
    for (std::size_t i = 0; i < params_.size(); ++i) {
        if (place_of(i) < 0) {
            for (double x : sums[i]) sq += x;
            continue;
        }
        const std::size_t q = std::size_t(place_of(i)), pieces = (full_size_[i] + kGradPiece - 1) / kGradPiece;
        const double* from = all.data() + (std::size_t(layout_.first()) + q) * mine.size() + read[q];
        for (std::size_t k = 0; k < pieces; ++k) sq += from[k];
        read[q] += pieces;
    }
    return std::sqrt(sq);
}

void Trainer::shard_gradients(const Batch& b, int lo, int hi, std::size_t level, float scale,
                              std::vector<double>& losses, std::vector<std::uint64_t>& counts) {
    const std::vector<Param>& g = levels_.at(level);
    if (hi - lo == 1) {
        const ExpertParallelScope use(m_, ep_.get(), true);  // for this forward and backward only
        return record_leaf(shard_leaf(b, lo, level, acts_), acts_, losses, counts);
    }
    const int mid = lo + (hi - lo) / 2;
    if (hi - lo == 2 && !ep_ && detail::available_threads() > 1) {
        // Two sibling leaves fill two different buffers (levels `level` and `level + 1`), so they can run
        // side by side, each shard's forward and backward whole on one thread: for a small model that
        // beats splitting each GEMM and loop of one shard over the threads. A shard's gradient has the
        // same bits on any number of threads, and the leaves' losses and counts are recorded in shard
        // order, so the step is the sequential one bit for bit. (Under expert parallelism a shard's
        // forward is collective: the leaves go one after the other.)
        Loss leaf[2];
        ModelActivations<float>* acts[2] = {&acts_, &sibling_acts_};
        detail::parallel_for(2, [&](std::size_t i) { leaf[i] = shard_leaf(b, lo + int(i), level + i, *acts[i]); });
        for (std::size_t i = 0; i < 2; ++i) record_leaf(leaf[i], *acts[i], losses, counts);
    } else {
        shard_gradients(b, lo, mid, level, 1.0f, losses, counts);
        shard_gradients(b, mid, hi, level + 1, 1.0f, losses, counts);
    }
    // g = (g + right)·scale, and right back to zero for the next leaf that fills it: one pass over
    // both buffers while they stream through the cache, instead of a memset of `right` later. The
    // rounding is that of an addition followed by a multiplication, as in separate passes.
    const std::vector<Param>& right = levels_.at(level + 1);
    detail::parallel_for(g.size(), [&](std::size_t k) {
        float* x = g[k].grad;
        float* r = right[k].grad;
        if (scale == 1.0f)
            for (std::size_t i = 0; i < g[k].size; ++i) x[i] = x[i] + r[i], r[i] = 0.0f;
        else
            for (std::size_t i = 0; i < g[k].size; ++i) x[i] = (x[i] + r[i]) * scale, r[i] = 0.0f;
    });
    if (ep_) ep_->add_level(level);  // the held experts' gradients, per source, follow the same tree
}

Loss Trainer::shard_leaf(const Batch& b, int shard, std::size_t level, ModelActivations<float>& acts) {
    // Shard `shard`'s sequences alone, from zero: every buffer of the tree is zero between uses (the
    // partial sums are cleared as they are added, the root by AdamW's pass at the end of the step).
    if (ep_) ep_->start_leaf(level);
    const std::size_t per = std::size_t(cfg_.batch / cfg_.shards), T = std::size_t(cfg_.seq_len);
    const auto first = b.inputs.begin() + std::ptrdiff_t(std::size_t(shard) * per * T);
    const auto first_t = b.targets.begin() + std::ptrdiff_t(std::size_t(shard) * per * T);
    const std::vector<Token> in(first, first + std::ptrdiff_t(per * T)), out(first_t, first_t + std::ptrdiff_t(per * T));
    ModelWeights<float>& target = level == 0 ? grad_ : partial_[level - 1];
    return model_loss_and_grad(m_, in, out, per, T, target, &acts);
}

void Trainer::record_leaf(const Loss& l, const ModelActivations<float>& acts, std::vector<double>& losses,
                          std::vector<std::uint64_t>& counts) {
    if (emulator_) emulator_->add_shard(moe_caches(m_, acts));  // this shard's MoE blocks
    losses.push_back(l.cross_entropy);
    losses.push_back(l.balance);
    for (double x : l.mtp_cross_entropy) losses.push_back(x);
    std::size_t i = 0;
    for (const auto& c : balance_counts(m_, acts))
        for (std::size_t x : c) {
            if (counts.size() <= i) counts.push_back(0);
            counts[i++] += x;
        }
}

StepStats Trainer::step() {
    const auto t0 = std::chrono::steady_clock::now();
    // Every rank draws the whole batch (cheap), so the data stream is the same on every rank.
    const Batch b = sample_batch(corpus_.train, cfg_.batch, cfg_.seq_len, data_);
    const int N = comm_->size(), per_rank = cfg_.shards / N, lo = comm_->rank() * per_rank;
    std::vector<double> losses;          // per shard: cross-entropy, balance, each MTP module's CE
    std::vector<std::uint64_t> counts;   // per MoE block and expert, over this rank's shards
    if (!sums_zero_)  // a step that threw left a partial sum behind
        for (const auto& level : levels_)
            for (const Param& p : level) std::fill(p.grad, p.grad + p.size, 0.0f);
    sums_zero_ = false;
    // Alone, the mean over the shards (1/S, exact for a power of two) joins the root's addition.
    const bool scale_at_root = N == 1 && cfg_.shards > 1;
    {
        const WeightCacheScope prepared(m_, weight_cache_);  // the weights change only at opt_.step below
        shard_gradients(b, lo, lo + per_rank, 0, scale_at_root ? 1.0f / float(cfg_.shards) : 1.0f, losses, counts);
    }
    if (ep_) ep_->reduce();  // this rank's experts: the tree over its group's shards
    const auto& ps = params_;
    if (N > 1) {
        // The replicated parameters over every rank; this rank's experts over the groups (the same
        // place in each), which adds the groups as the top of the same tree.
        allreduce([&](std::size_t i) { return place_of(i) < 0; }, 1);
        if (ep_ && N > layout_.ep) allreduce([&](std::size_t i) { return place_of(i) == layout_.place(); }, layout_.ep);
        losses = allgather(*comm_, losses);  // every shard's losses, in shard order
        const auto all = allgather(*comm_, counts);
        std::fill(counts.begin(), counts.end(), 0);
        for (std::size_t i = 0; i < all.size(); ++i) counts[i % counts.size()] += all[i];
    }
    if (cfg_.shards > 1 && !scale_at_root) {  // the mean of the shards' mean-loss gradients
        const float inv = 1.0f / float(cfg_.shards);
        detail::parallel_for(ps.size(), [&](std::size_t k) {
            for (std::size_t i = 0; i < ps[k].size; ++i) ps[k].grad[i] *= inv;
        });
    }
    StepStats s;
    s.grad_norm = ep_ ? sharded_grad_norm() : grad_norm(ps);
    s.lr = learning_rate(cfg_.schedule, step_);
    // Clipped as AdamW reads each gradient, which it then sets to zero for the next step's first leaf.
    opt_.step(ps, s.lr, true, clip_scale(s.grad_norm, cfg_.grad_clip));
    sums_zero_ = true;
    // The balancing counts of the whole batch, as one vector per MoE block (balance_counts' layout).
    std::vector<std::vector<std::size_t>> block_counts;
    std::size_t at = 0;
    for (const auto& c : balance_counts(m_, acts_)) {
        block_counts.emplace_back(counts.begin() + std::ptrdiff_t(at), counts.begin() + std::ptrdiff_t(at + c.size()));
        at += c.size();
    }
    update_balance_bias(m_, block_counts);
    for (std::size_t l = 0, blk = 0; l < m_.w.layers.size(); ++l)
        if (!m_.w.layers[l].dense) {
            const RoutingStats r = load_statistics(block_counts[blk++]);
            s.max_vio.push_back(r.max_vio);
            s.expert_load.push_back(r.load_fraction);
            s.bias.push_back(m_.w.layers[l].moe.bias);
        }
    s.tokens = std::size_t(cfg_.batch) * std::size_t(cfg_.seq_len);
    // Means over the shards, added in shard order.
    const std::size_t width = 2 + m_.w.mtp.size();
    s.mtp_loss.assign(m_.w.mtp.size(), 0.0);
    for (int sh = 0; sh < cfg_.shards; ++sh) {
        s.loss += losses[std::size_t(sh) * width];
        s.balance_loss += losses[std::size_t(sh) * width + 1];
        for (std::size_t k = 0; k < s.mtp_loss.size(); ++k) s.mtp_loss[k] += losses[std::size_t(sh) * width + 2 + k];
    }
    s.loss /= cfg_.shards;
    s.balance_loss /= cfg_.shards;
    for (double& x : s.mtp_loss) x /= cfg_.shards;
    s.step = ++step_;
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

std::pair<std::vector<ExpertTraffic>, std::vector<Traffic>> Trainer::take_traffic() {
    if (emulator_) {
        auto experts = emulator_->take();
        return {experts, std::vector<Traffic>(experts.size())};
    }
    if (comm_->size() == 1) return {};
    const Traffic allreduce = comm_->allreduce_traffic;
    comm_->allreduce_traffic = {};
    return gather_traffic(*comm_, ep_ ? ep_->take_traffic() : ExpertTraffic{}, allreduce);
}

Trainer::Evaluation Trainer::evaluation(bool validation) {
    const std::vector<Token>& tokens = validation ? corpus_.validation : corpus_.train;
    const std::size_t batches = std::size_t(cfg_.eval_batches), windows = std::size_t(cfg_.batch) * batches;
    const std::size_t T = std::size_t(cfg_.seq_len), span = tokens.size() - T - 1;
    // A rank's experts are the only ones it has: the forward passes dispatch as in training.
    const ExpertParallelScope use(m_, ep_.get(), false);
    // The batches are independent forward passes of a model that does not change, so they run side by
    // side, one per thread (a forward alone uses the threads only inside its GEMMs). Each batch's loss
    // has the same bits whichever thread computes it, and the sum below is in batch order, so the result
    // does not depend on the thread count. Under expert parallelism a forward is collective (every rank
    // exchanges tokens batch after batch), so the batches go one at a time.
    std::vector<Loss> losses(batches);
    auto evaluate_batch = [&](std::size_t e) {
        std::vector<Token> in, out;
        for (std::size_t w = 0; w < std::size_t(cfg_.batch); ++w) {
            const std::size_t start = (e * cfg_.batch + w) * span / std::max<std::size_t>(1, windows - 1);
            in.insert(in.end(), tokens.begin() + start, tokens.begin() + start + T);
            out.insert(out.end(), tokens.begin() + start + 1, tokens.begin() + start + T + 1);
        }
        losses[e] = model_loss(m_, in, out, cfg_.batch, cfg_.seq_len);  // (every rank the same windows)
    };
    if (ep_) {
        for (std::size_t e = 0; e < batches; ++e) evaluate_batch(e);
    } else {
        detail::parallel_for(batches, evaluate_batch);
    }
    Evaluation r;
    r.mtp_loss.assign(m_.w.mtp.size(), 0.0);
    r.mtp_accuracy.assign(m_.w.mtp.size(), 0.0);
    for (const Loss& l : losses) {
        r.loss += l.cross_entropy;
        for (std::size_t k = 0; k < l.mtp_cross_entropy.size(); ++k) {
            r.mtp_loss[k] += l.mtp_cross_entropy[k];
            r.mtp_accuracy[k] += l.mtp_accuracy[k];
        }
    }
    r.loss /= cfg_.eval_batches;
    for (std::size_t k = 0; k < r.mtp_loss.size(); ++k) {
        r.mtp_loss[k] /= cfg_.eval_batches;
        r.mtp_accuracy[k] /= cfg_.eval_batches;
    }
    return r;
}

std::string Trainer::optimizer_path(const std::string& path) {
    const std::string ext = ".safetensors";
    if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
        return path.substr(0, path.size() - ext.size()) + ".optim" + ext;
    return path + ".optim";
}

TrainingState Trainer::state() const {
    TrainingState s;
    s.step = step_;
    s.adamw_steps = opt_.steps();
    s.data_position = data_.position();
    s.corpus_tokens = corpus_.train.size() + corpus_.validation.size();
    s.run_id = run_id_;
    s.config = cfg_;
    return s;
}

Trainer::StateBytes Trainer::state_bytes() const {
    StateBytes b;
    for (const Param& p : params_) b.weights += p.size * sizeof(float);
    b.gradients = ep_ ? ep_->gradient_bytes() : 0;  // the experts' sums, then grad_ and the partial sums
    for (const auto& level : levels_)
        for (const Param& p : level) b.gradients += p.size * sizeof(float);
    b.moments = 2 * b.weights;
    return b;
}

void Trainer::save(const std::string& path) {
    auto& m = opt_.first_moments();
    auto& v = opt_.second_moments();
    if (m.empty()) {  // saved before the first step: AdamW's moments start at zero
        for (const Param& p : params_) {
            m.emplace_back(p.size, 0.0f);
            v.emplace_back(p.size, 0.0f);
        }
    }
    with_all_experts(true, [&] {
        SafetensorsWriter opt;
        for (std::size_t i = 0; i < params_.size(); ++i) {
            opt.add(params_[i].name + ".exp_avg", {m[i].size()}, m[i].data());
            opt.add(params_[i].name + ".exp_avg_sq", {v[i].size()}, v[i].data());
        }
        // The partner check resume makes: this file and the model file name the same run and step.
        opt.set_metadata("training", json{{"run_id", run_id_}, {"step", step_}}.dump());
        opt.write(optimizer_path(path));
        save_model(m_, path, {{"training", state().to_json()}});
    });
}

void Trainer::with_full_model(const std::function<void(const Model<float>&)>& use) {
    with_all_experts(false, [&] { use(m_); });
}

void Trainer::with_all_experts(bool moments, const std::function<void()>& use) {
    const int rank = comm_->rank();
    if (!ep_) {  // every rank holds everything
        if (rank == 0) use();
        return;
    }
    // Rank 0 needs the experts of the other places of its group (world ranks 1..ep-1): their weights
    // and, with `moments`, AdamW's m and v, parameter by parameter. Every place sends as many floats.
    auto& m = opt_.first_moments();
    auto& v = opt_.second_moments();
    std::size_t held = 0;
    for (std::size_t i = 0; i < params_.size(); ++i) held += place_of(i) == layout_.place() ? full_size_[i] : 0;
    const std::size_t bytes = held * (moments ? 3 : 1) * sizeof(float), N = std::size_t(comm_->size());
    std::vector<float> mine;
    if (rank > 0 && rank < layout_.ep)
        for (std::size_t i = 0; i < params_.size(); ++i)
            if (place_of(i) == layout_.place()) {
                mine.insert(mine.end(), params_[i].value, params_[i].value + params_[i].size);
                if (moments) mine.insert(mine.end(), m[i].begin(), m[i].end()), mine.insert(mine.end(), v[i].begin(), v[i].end());
            }
    std::vector<std::size_t> sb(N, 0), sa(N, 0), rb(N, 0), ra(N, 0);
    if (!mine.empty()) sb[0] = bytes;
    std::vector<float> got;
    if (rank == 0) {
        got.resize(held * (moments ? 3 : 1) * std::size_t(layout_.ep - 1));
        for (int p = 1; p < layout_.ep; ++p) rb[std::size_t(p)] = bytes, ra[std::size_t(p)] = std::size_t(p - 1) * bytes;
    }
    comm_->alltoallv(mine.data(), sb.data(), sa.data(), got.data(), rb.data(), ra.data());
    if (rank == 0) {
        restore_experts(m_.w, layout_);
        bind_params();  // (only values are read below: the gradients of the others' experts stay empty)
        std::vector<const float*> from(std::size_t(layout_.ep));
        for (int p = 1; p < layout_.ep; ++p) from[std::size_t(p)] = got.data() + std::size_t(p - 1) * (bytes / sizeof(float));
        for (std::size_t i = 0; i < params_.size(); ++i) {
            if (place_of(i) <= 0) continue;
            const float*& f = from[std::size_t(place_of(i))];
            const std::size_t n = full_size_[i];
            std::copy(f, f + n, params_[i].value);
            f += n;
            if (moments) {
                m[i].assign(f, f + n);
                v[i].assign(f + n, f + 2 * n);
                f += 2 * n;
            }
        }
    }
    if (rank == 0) use();
    if (rank == 0) {
        release_experts(m_.w, layout_);
        for (std::size_t i = 0; i < params_.size(); ++i)
            if (place_of(i) > 0 && moments) m[i] = {}, v[i] = {};
        bind_params();
    }
}

void Trainer::resume(const std::string& path, const TrainingState& st) {
    auto same_except_steps = [](TrainConfig a, TrainConfig b) {
        a.steps = b.steps = 0;
        return a.to_json() == b.to_json();
    };
    if (!same_except_steps(st.config, cfg_))
        throw ConfigError(path + ": the trainer's config differs from the checkpoint's (only the total steps may change)");
    if (st.step > cfg_.steps)
        throw ConfigError(path + ": the checkpoint is at step " + std::to_string(st.step) + ", beyond the total of " +
                          std::to_string(cfg_.steps) + " steps");
    const std::uint64_t tokens = corpus_.train.size() + corpus_.validation.size();
    if (st.corpus_tokens != tokens)
        throw ConfigError(path + ": the run trained on a corpus of " + std::to_string(st.corpus_tokens) +
                          " bytes; this one has " + std::to_string(tokens));
    const std::string opt_path = optimizer_path(path);
    const auto f = SafetensorsFile::read(opt_path);
    json partner;
    if (f.metadata().count("training")) partner = parse_json(f.metadata().at("training"), opt_path + ": __metadata__[\"training\"]");
    const bool matches = partner.is_object() && partner.contains("run_id") && partner["run_id"] == st.run_id &&
                         partner.contains("step") && partner["step"] == st.step;
    if (!matches)
        throw FileError(opt_path + " is not the optimizer state of " + path + " (run " + st.run_id + ", step " +
                        std::to_string(st.step) + "; it holds " + json_preview(partner.is_object() && partner.contains("run_id") ? partner["run_id"] : json()) +
                        ", step " + json_preview(partner.is_object() && partner.contains("step") ? partner["step"] : json()) +
                        "): the pair is torn, e.g. by a save that was interrupted");
    const auto& ps = params_;
    auto& m = opt_.first_moments();
    auto& v = opt_.second_moments();
    std::vector<std::vector<float>> m2(ps.size()), v2(ps.size());
    for (std::size_t i = 0; i < ps.size(); ++i) {
        if (place_of(i) >= 0 && place_of(i) != layout_.place()) continue;  // another rank's expert
        m2[i].resize(ps[i].size);
        v2[i].resize(ps[i].size);
        f.read_f32(ps[i].name + ".exp_avg", {ps[i].size}, m2[i].data());
        f.read_f32(ps[i].name + ".exp_avg_sq", {ps[i].size}, v2[i].data());
    }
    // Only once everything has been read and checked does the trainer's state change.
    m = std::move(m2);
    v = std::move(v2);
    step_ = st.step;
    opt_.set_steps(st.adamw_steps);
    data_.seek(st.data_position);
    run_id_ = st.run_id;
}

}  // namespace eva
