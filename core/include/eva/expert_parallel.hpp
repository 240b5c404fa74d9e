// eva — expert parallelism: the routed experts of every MoE layer spread over `ep` ranks, and each
// token's rows sent to the ranks that hold its experts and back (DeepSeek-V3 §3.2: dispatch and combine,
// all-to-all over the network).
//
// Layout. The ranks form groups of `ep` consecutive ranks; each group holds the routed experts once:
// the rank at place p of its group (p = rank mod ep) runs the experts [p·E/ep, (p+1)·E/ep). Attention,
// the gate, the shared expert and the dense layers stay data parallel: every rank computes them on
// its own shards of the batch. `ranks_per_node` consecutive places form a (virtual) node, so node j
// holds the experts [j·E/nodes, (j+1)·E/nodes): the blocks node-limited routing chooses among.
//
// One MoE layer on one shard (moe_forward groups the shard's (token, expert) pairs by expert into xg,
// so the rows for the experts of peer p are one contiguous block):
//   1. counts:   each rank tells each peer how many of its rows go to each of the peer's experts;
//   2. dispatch: one Alltoallv sends every block to the rank that holds those experts, which receives,
//                from each source rank in turn, its rows grouped by expert;
//   3. experts:  the holder runs each of its experts once PER SOURCE, over exactly that source's rows;
//   4. combine:  a second Alltoallv returns the outputs where the rows came from (yg), and moe_forward
//                adds w·y per token as in one process.
// The backward mirrors it: dyg is dispatched, the holder runs the experts' backward per source, and
// dxg is combined back.
//
// Why the result is bit-identical to one process. One process runs expert e of a shard as one GEMM
// over that shard's rows of e, in token order; the holder runs the same GEMM on the same rows in the
// same order (step 3 never mixes two shards), and the combine adds a token's k outputs in the same
// order. An expert's weight gradient is one sum per shard, then the shard tree (trainer.hpp): the
// holder keeps a gradient per source rank and per level of that rank's shard subtree (start_leaf /
// add_level follow the trainer's recursion), `reduce` adds the sources as the top of the tree over the
// group's ranks, and the gradient all-reduce among the ranks of the same place then adds the groups.
//
// What it costs and saves. A rank holds the weights, gradients and AdamW moments of its own experts only
// (release_experts; the Trainer updates them and all-reduces their gradients among the ranks of the
// same place in the other groups), so the routed experts' memory is divided by ep. Rank 0 gathers the
// other places' experts when it writes a checkpoint or samples text, so a checkpoint is complete and
// does not depend on ep or the rank count. What is paid is the traffic that expert_traffic counts, and
// one buffer of expert gradients per source place and level of the shard tree (grads_ below), which
// keeps the sum in the single process's order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/dist.hpp"
#include "eva/model.hpp"
#include "eva/moe.hpp"

namespace eva {

/// Where the routed experts are: groups of `ep` consecutive ranks, `ranks_per_node` places per node.
struct ExpertLayout {
    std::size_t experts = 1;  // routed experts per MoE layer
    int ep = 1;               // ranks sharing one copy of the experts
    int rank = 0;             // this rank (in the world)
    int ranks_per_node = 1;

    /// ConfigError unless ep ≥ 1 divides the experts and ranks_per_node divides ep.
    void validate() const;
    std::size_t per_rank() const { return experts / std::size_t(ep); }
    int first() const { return rank - rank % ep; }  // the world rank of place 0 of this rank's group
    int place() const { return rank % ep; }         // this rank's place in its group
    int node_of(std::size_t expert) const { return int(expert / per_rank()) / ranks_per_node; }
    int place_of(std::size_t expert) const { return int(expert / per_rank()); }  // the place that holds it
};

/// What expert parallelism saves in memory: every routed expert of w's MoE blocks that this rank does
/// not hold (with !keep_own: every routed expert) becomes empty (its three matrices 0 × 0; its
/// dimensions are kept), and restore_experts gives the others' back as zeros of their shape.
void release_experts(ModelWeights<float>& w, const ExpertLayout& l, bool keep_own = true);
void restore_experts(ModelWeights<float>& w, const ExpertLayout& l);

/// Bytes one rank moves for expert parallelism: dispatch = the counts and the token rows going to the
/// experts (x forward, ∂L/∂y backward); combine = the rows coming back (y forward, ∂L/∂x backward).
/// Rows a rank keeps for itself are a local copy and not counted. `node_sends`: (token, remote node)
/// pairs, the rows a dispatch would send over the network if each token crossed once per node it uses
/// (V3: once over InfiniBand, then NVLink inside the node).
struct ExpertTraffic {
    Traffic dispatch, combine;
    std::uint64_t node_sends = 0;
    ExpertTraffic& operator+=(const ExpertTraffic& o);
};

/// The traffic of one MoE layer's forward and backward on one shard, for a rank that sends
/// sent_rows[p] rows of `dim` floats to place p of its group and receives received_rows[p] from it.
ExpertTraffic expert_traffic(const ExpertLayout& l, const std::vector<std::size_t>& sent_rows,
                             const std::vector<std::size_t>& received_rows, std::size_t dim);
/// (token, node) pairs of `indices` [n, k] whose node is not this rank's: the count of node_sends.
std::uint64_t remote_node_sends(const ExpertLayout& l, const std::int32_t* indices, std::size_t n, std::size_t k);

/// The traffic of a step (or a run) for the `--json` lines and the summary: per rank, the bytes sent
/// and received in dispatch, combine and the all-reduce, the node_bytes of V3's once-per-node dispatch
/// (rows of `dim` floats), and the same per token of the `tokens` each rank trained on in that time;
/// mean_per_token averages per_token over the ranks.
nlohmann::json traffic_json(const ExpertLayout& l, const std::vector<ExpertTraffic>& experts,
                            const std::vector<Traffic>& allreduce, std::size_t dim, std::uint64_t tokens);
/// Every rank's figures, in rank order (collective: every rank calls it).
std::pair<std::vector<ExpertTraffic>, std::vector<Traffic>> gather_traffic(Comm& comm, const ExpertTraffic& mine,
                                                                            const Traffic& allreduce);

/// The traffic an expert-parallel run of `ep` ranks would have, accounted by one process that trains
/// the same shards (`--ep` without mpirun; the routing is the same bits, so are the figures). Shards
/// are fed in order; shard s belongs to rank s / (shards / ep), as in Trainer.
class TrafficEmulator {
public:
    TrafficEmulator(const ExpertLayout& layout, std::size_t dim, int shards);
    /// The MoE caches of the next shard's forward (moe_caches' order, model.hpp).
    void add_shard(const std::vector<const MoeCache<float>*>& blocks);
    /// Each emulated rank's traffic over the whole steps fed since the last call.
    std::vector<ExpertTraffic> take();

private:
    ExpertLayout layout_;
    std::size_t dim_;
    int shards_, next_ = 0;
    std::vector<std::vector<std::vector<std::size_t>>> rows_;  // [shard][block][place]: rows sent there
    std::vector<ExpertTraffic> traffic_;                      // per rank (node sends so far)
};

/// The MoE blocks of a model in moe_caches' order (model.hpp): the main layers', then the MTP modules'.
template <class T>
std::vector<Moe<T>*> moe_blocks(ModelWeights<T>& w);

class ExpertParallel {
public:
    /// For the MoE blocks of `m` (their addresses identify the layer a call is for), with the gradient
    /// buffers of a shard subtree `levels` deep. ConfigError for a layout the model does not fit.
    ExpertParallel(Comm& comm, const ExpertLayout& layout, Model<float>& m, std::size_t levels);
    const ExpertLayout& layout() const { return layout_; }

    /// Steps 1–4 above for c's grouped rows c.xg: fills c.yg (and c's received rows and caches).
    void forward(const Moe<float>& m, MoeCache<float>& c, LinearMode precision);
    /// The mirror: dyg [n·k, dim] out, dxg back; the weight gradients go to the current leaf's buffers.
    void backward(const Moe<float>& m, const MoeCache<float>& c, const float* dyg, float* dxg, LinearMode precision);

    /// The trainer's shard tree: a leaf at `level` starts (its buffers are zeroed and receive the
    /// backward's gradients), and an inner node adds level + 1 into level.
    void start_leaf(std::size_t level);
    void add_level(std::size_t level);
    /// Adds the sources' level-0 gradients as the tree over the group's places, into summed().
    void reduce();
    /// The gradient of this rank's expert `local` (0 ≤ local < per_rank()) of MoE block `block`, summed
    /// over the group's shards by reduce() (until the next step's first leaf). The trainer's optimizer
    /// reads the held experts' gradients from here.
    Mlp<float>& summed(std::size_t block, std::size_t local);

    /// Traffic since the last take_traffic().
    ExpertTraffic take_traffic();
    /// False while the trainer evaluates: a forward without its backward is not a training step's traffic.
    bool count_traffic = true;
    /// Bytes of the per-source gradient buffers (every level, source and expert).
    std::size_t gradient_bytes() const;

private:
    std::size_t block_of(const Moe<float>& m) const;
    // Rows of `dim` floats: to place p sent[p] rows from `send` (consecutive blocks), from place p
    // recv[p] rows into `recv` (resized).
    void exchange(const float* send, const std::vector<std::size_t>& sent, std::vector<float>& recv,
                  const std::vector<std::size_t>& received, std::size_t dim);
    void exchange_into(const float* send, const std::vector<std::size_t>& sent, float* recv,
                       const std::vector<std::size_t>& received, std::size_t dim);
    // Rows each place sends to / receives from this rank for the cache c.
    std::vector<std::size_t> rows_to(const MoeCache<float>& c) const;
    std::vector<std::size_t> rows_from(const MoeCache<float>& c) const;

    Comm& comm_;
    ExpertLayout layout_;
    std::vector<const Moe<float>*> blocks_;
    // grads_[level][source place][block][local expert]: the weight gradients of one shard subtree.
    std::vector<std::vector<std::vector<std::vector<Mlp<float>>>>> grads_;
    std::size_t level_ = 0;
    std::vector<float> y_recv_, dy_recv_, dx_recv_;
    ExpertTraffic traffic_;
};

}  // namespace eva
