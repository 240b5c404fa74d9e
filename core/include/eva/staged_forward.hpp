// eva — a forward spread over calls, for a front end with a time budget per call (the browser's 16 ms
// frame): StagedForward runs model_forward's blocks one per advance() and keeps each MoE layer's input;
// WindowPool forwards random windows of a text that way and serves batches of their hidden states to
// balancing_step (the Routing panel's "run balancing" on real hidden states, as `eva moe route --steps`
// balances its synthetic router).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "eva/model.hpp"
#include "eva/rng.hpp"

namespace eva {

/// One sequence through the model's blocks (block_forward), one block per advance(). The inputs
/// ffn_norm(h) of the MoE layers are kept layer after layer, [tokens, dim] each: what their gates route.
struct StagedForward {
    std::vector<Token> tokens;
    Matrix<float> x;       // the residual stream after `next` blocks
    std::size_t next = 0;  // the next block to run
    std::vector<float> moe_inputs;

    /// Starts over on `t` (an empty sequence is never done).
    void start(const Model<float>& m, std::vector<Token> t);
    bool done(const Model<float>& m) const { return !tokens.empty() && next == m.w.layers.size(); }
    /// Runs the next block; nothing once done.
    void advance(const Model<float>& m);
    /// The inputs of MoE layer `layer` (0 = the first after the dense blocks), [tokens, dim]; ShapeError
    /// before that layer has run.
    const float* moe_input(const Model<float>& m, std::size_t layer) const;
};

/// `size` windows of `window` tokens, each drawn from `text` by sample_batch with Rng(seed) in turn and
/// forwarded a block per advance() until full(); then batch() assembles a balancing step's hidden states.
class WindowPool {
public:
    WindowPool(std::vector<Token> text, std::size_t window, std::size_t size, std::uint64_t seed = 11);
    bool full() const { return pool_.size() == size_; }
    std::size_t windows() const { return pool_.size(); }
    /// One block of the next window's forward (nothing once full).
    void advance(const Model<float>& m);
    /// The hidden states of MoE layer `layer` for balancing step `step`: `count` windows of the full pool
    /// drawn with Rng(7, step), concatenated, [count · window, dim]. ShapeError before full().
    std::vector<float> batch(const Model<float>& m, std::size_t layer, std::size_t count, std::uint64_t step) const;

private:
    std::vector<Token> text_;
    std::size_t window_, size_;
    Rng rng_;
    StagedForward next_;
    std::vector<StagedForward> pool_;
};

}  // namespace eva
