// eva — the training loop: batches from a corpus, forward + hand-written backward, gradient clipping,
// AdamW on a warmup + cosine schedule, and the MoE balancing rule after every step. Deterministic: the
// same seed, data and config give the same losses bit for bit, and a run saved with `save` and
// continued with `resume` matches an uninterrupted run exactly: the schedule (its total steps), the data
// order and the optimizer all continue from the checkpoint.
//
// Shards and ranks. Every step's batch is cut into `shards` equal pieces of whole sequences; each
// shard's gradient is computed alone (from a zeroed buffer) and the shard gradients are summed as the
// balanced binary tree that splits [0, shards) at its midpoint, then scaled by 1/shards (the losses are
// means, so the step's gradient is the mean of the shards'). The shard count is part of the run's
// config, not of the machine: a distributed run of N ranks (N a power of two dividing shards) gives
// rank r the shards [r·shards/N, (r+1)·shards/N) — a subtree of that same tree — and tree_allreduce
// (dist.hpp) adds the subtrees at the top exactly as one process would. Losses, weights and checkpoints
// are therefore the same bits on 1, 2 or 4 ranks, and a run saved on 4 ranks resumes on 1.
//
// Expert parallelism (`ep` ranks share one copy of the routed experts: expert_parallel.hpp) changes
// where the experts run and live, not the result: the same bits again, and `ep` is not part of the
// checkpoint. On several ranks each rank keeps only its own experts' weights, gradients and AdamW
// moments; the gradient norm is assembled from every rank's pieces in the single process's order, and
// rank 0 gathers the experts for a checkpoint or a sample (with_full_model).
//
// A checkpoint is a pair of files written one after the other — X.safetensors (the model and the
// training state) and X.optim.safetensors (AdamW's moments) — and a kill or a full disk can land between
// the two renames. Both files therefore carry the run's id and step, and resume refuses a pair that
// does not match, instead of silently continuing from a model and an optimizer of different steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <deque>
#include <functional>
#include <memory>

#include "eva/data.hpp"
#include "eva/dist.hpp"
#include "eva/expert_parallel.hpp"
#include "eva/model.hpp"
#include "eva/train.hpp"

namespace eva {

struct TrainConfig {
    int batch = 16, seq_len = 128, steps = 1000;
    ScheduleConfig schedule{3e-3, 100, 1000, 0.1};
    AdamWConfig adamw{0.9, 0.95, 1e-8, 0.1};
    double grad_clip = 1.0;
    std::uint64_t seed = 1;
    int eval_batches = 8;  // validation windows per evaluation, batch·eval_batches in total
    LinearPrecision precision = LinearPrecision::fp32;  // the blocks' Linear GEMMs: fp32 or FP8 emulation
    double mtp_lambda = 0.3;  // weight λ of the MTP loss (λ/D)·Σ_k CE_k (DeepSeek-V3: 0.3, then 0.1)
    int shards = 0;  // gradient shards per step (0: default_shards(batch), alone or on several ranks); older checkpoints: 1
    // Node-limited routing (moe.hpp NodeLimit): the routed experts in `nodes` equal blocks (virtual nodes;
    // under --ep, ep / ranks-per-node), each token's experts on at most `max_nodes` of them (0: unlimited).
    int nodes = 1, max_nodes = 0;

    /// ConfigError naming the first value outside its range (betas in [0, 1), eps > 0, …).
    void validate(const ModelArgs& args) const;
    /// Every field by name (one table drives both directions, so a new field is one line).
    nlohmann::json to_json() const;
    /// The inverse of to_json. FileError for a non-object, an unknown name or a value of the wrong type
    /// (a fractional batch, a string lr); a name left out keeps its default (older checkpoints).
    static TrainConfig from_json(const nlohmann::json& j);
};

/// The default shard count: the largest of 4, 2, 1 that divides the batch (so 1, 2 and 4 ranks can share
/// a default run).
int default_shards(int batch);

/// Bounds of a training run (ConfigError beyond): steps, and tokens per step (batch × seq_len).
constexpr int kMaxTrainSteps = 100'000'000;
constexpr std::int64_t kMaxTokensPerStep = std::int64_t(1) << 20;

/// Where a run stands: saved in the model file's __metadata__["training"].
struct TrainingState {
    int step = 0;                     // optimizer steps done
    long adamw_steps = 0;             // AdamW's bias-correction counter (= step)
    std::uint64_t data_position = 0;  // draws of the data stream (= step · batch)
    std::uint64_t corpus_tokens = 0;  // train + validation tokens of the corpus the run trains on
    std::string run_id;               // 16 hex digits, the same in both files of a checkpoint
    TrainConfig config;

    nlohmann::json to_json() const;
    /// Parses and validates a saved state against the model it belongs to: FileError naming the field
    /// (a step outside 0..steps, counters that disagree with it, a config out of range, …).
    static TrainingState from_json(const nlohmann::json& j, const ModelArgs& args);
};

struct StepStats {
    int step = 0;                 // 1-based, after this step
    double loss = 0, balance_loss = 0, lr = 0, grad_norm = 0, seconds = 0;
    std::vector<double> mtp_loss;  // per MTP module: its cross-entropy CE_k on this step's batch
    std::vector<double> max_vio;  // per MoE layer, this step's batch
    std::vector<std::vector<double>> expert_load;  // per MoE layer: each routed expert's share of the top-k slots
    std::vector<std::vector<float>> bias;  // per MoE layer: its selection bias after this step's update (aux-free)
    std::size_t tokens = 0;                // tokens in the step's batch (batch × seq_len)

    /// Every field by name (what the browser's training worker sends the page after each step).
    nlohmann::json to_json() const;
    /// The inverse of to_json; nlohmann::json's exception for a missing field or a wrong type.
    static StepStats from_json(const nlohmann::json& j);
};

/// MaxVio of a MoE layer's load summed over `steps` steps: max_i Σ_t load_{t,i} / mean_i Σ_t load_{t,i} − 1,
/// for row-major [steps, experts] loads (StepStats::expert_load rows, or token counts). Over a window of
/// steps it measures the balance the bias has reached; one small batch's MaxVio also carries the batch's
/// own content (a few text windows favour a few experts), which no bias can remove. 0 when all are zero.
double max_vio(const double* loads, std::size_t steps, std::size_t experts);

/// The trainable tensors of a model as the optimizer sees them: each value paired with its gradient in
/// `grads` (same shapes), weight decay on matrices only; the MoE selection bias is not trained.
std::vector<Param> trainable_params(ModelWeights<float>& values, ModelWeights<float>& grads);

class Trainer {
public:
    /// `comm`: the ranks of a distributed run (nullptr: this process alone); `ep`: ranks per expert-parallel
    /// group (1: none). ConfigError if the shards cannot be split over the ranks, if ep does not fit the
    /// ranks, the experts and cfg.nodes, or if another rank's config, corpus or model differ from this one's.
    Trainer(Model<float>& m, const Corpus& corpus, const TrainConfig& cfg, Comm* comm = nullptr, int ep = 1);
    Trainer(const Trainer&) = delete;  // params_ points into this trainer's own gradient buffers
    Trainer& operator=(const Trainer&) = delete;
    /// One optimizer step on a fresh batch.
    StepStats step();
    /// Mean cross-entropy (nats/byte) over fixed, evenly spaced windows of the validation (or train) split.
    double evaluate(bool validation = true) { return evaluation(validation).loss; }
    /// The same windows' main loss and, per MTP module, its cross-entropy and its accuracy (argmax
    /// = target: module 1's is next-next-token accuracy), each the mean over the evaluation batches.
    struct Evaluation {
        double loss = 0;
        std::vector<double> mtp_loss, mtp_accuracy;
    };
    Evaluation evaluation(bool validation = true);
    int steps_done() const { return step_; }
    const TrainConfig& config() const { return cfg_; }

    const std::string& run_id() const { return run_id_; }
    TrainingState state() const;

    /// Writes the optimizer state to `optimizer_path(path)`, then the model (with state()) to `path`,
    /// each atomically; both carry the run id and step. Collective; only rank 0 writes.
    void save(const std::string& path);
    /// Runs `use` on rank 0 with every routed expert in the model (collective: every rank calls it, and
    /// the others do nothing). Under expert parallelism the other places' experts are gathered for the
    /// call and released after it. Evaluation is collective too: every rank calls evaluation().
    void with_full_model(const std::function<void(const Model<float>&)>& use);
    /// Restores a run saved by `save` (the model is loaded by the caller with load_model, and this trainer
    /// built with `state.config`, possibly with a new total of steps). FileError if the optimizer file is
    /// not the partner of the model file (another run or step: a torn save), ConfigError if the config or
    /// the corpus differ from the checkpoint's.
    void resume(const std::string& path, const TrainingState& state);
    static std::string optimizer_path(const std::string& path);

    /// What this rank holds of the training state, in bytes: the trainable weights, the gradient
    /// buffers (the step's, the shard tree's partial sums, expert parallelism's per-source sums) and
    /// AdamW's two moments (counted as allocated by the first step).
    struct StateBytes {
        std::size_t weights = 0, gradients = 0, moments = 0;
    };
    StateBytes state_bytes() const;

    Comm& comm() { return *comm_; }
    /// Where the routed experts run (ep 1: all on every rank); with ep > 1 in one process, the layout
    /// whose traffic the process emulates.
    const ExpertLayout& expert_layout() const { return layout_; }
    /// The traffic since the last call, per rank (collective under mpirun: every rank calls it): measured
    /// on several ranks, emulated by one process given ep > 1 (no all-reduce then), empty otherwise.
    std::pair<std::vector<ExpertTraffic>, std::vector<Traffic>> take_traffic();

private:
    // Gradients of the shards [lo, hi) into levels_[level] (the midpoint tree; see the top of the file),
    // multiplied by `scale` in the same pass as the last addition (1: none).
    void shard_gradients(const Batch& b, int lo, int hi, std::size_t level, float scale, std::vector<double>& losses,
                         std::vector<std::uint64_t>& counts);
    // One leaf of that tree: shard `shard`'s gradient into levels_[level], its activations in `acts`;
    // returns its losses.
    Loss shard_leaf(const Batch& b, int shard, std::size_t level, ModelActivations<float>& acts);
    // What the step keeps of a leaf, in shard order: its losses and balancing counts appended to `losses`
    // and `counts`, its MoE blocks to the traffic emulator.
    void record_leaf(const Loss& l, const ModelActivations<float>& acts, std::vector<double>& losses,
                     std::vector<std::uint64_t>& counts);
    // Expert sharding (ep_ only): keep this rank's experts, and the parameter lists that point into them.
    void shard_experts();
    void bind_params();
    int place_of(std::size_t param) const { return place_of_.empty() ? -1 : place_of_[param]; }
    // Sums the gradients of the parameters `pick` selects over the ranks `stride` apart (tree_allreduce).
    void allreduce(const std::function<bool(std::size_t)>& pick, int stride);
    // The global gradient norm of the whole model's gradients (grad_norm's bits), with the experts' spread
    // over the ranks.
    double sharded_grad_norm();
    // with_full_model, with AdamW's moments gathered too (for save).
    void with_all_experts(bool moments, const std::function<void()>& use);

    LocalComm local_;
    Comm* comm_;
    Model<float>& m_;
    const Corpus& corpus_;
    TrainConfig cfg_;
    AdamW opt_;
    Rng data_;
    int step_ = 0;
    std::string run_id_;
    ModelWeights<float> grad_;
    std::vector<Param> params_;  // m_'s trainable tensors with their gradients in grad_
    // Partial sums of the shard tree below the root, one per depth (a deque: references stay valid).
    std::deque<ModelWeights<float>> partial_;
    std::vector<std::vector<Param>> levels_;  // levels_[0] = params_, levels_[d]: gradients in partial_[d-1]
    bool sums_zero_ = true;                   // every buffer of the shard tree is zero (between steps)
    std::vector<float> flat_, scratch_;       // the gradients packed for the all-reduce
    ModelActivations<float> acts_;
    ModelActivations<float> sibling_acts_;  // the right leaf's, when two sibling leaves run side by side
    WeightCache weight_cache_;              // the step's packed weights (fp32) or FP8 images, shared by its shards
    ExpertLayout layout_;
    std::unique_ptr<ExpertParallel> ep_;          // several ranks with ep > 1
    std::unique_ptr<TrafficEmulator> emulator_;  // one process with ep > 1
    std::vector<int> place_of_;             // per parameter under ep_: the place that holds it (-1: every rank)
    std::vector<std::size_t> full_size_;    // per parameter: its size in the whole model
};

}  // namespace eva
