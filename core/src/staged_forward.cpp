// eva — a forward spread over calls (staged_forward.hpp).
#include "eva/staged_forward.hpp"

#include "eva/data.hpp"
#include "eva/error.hpp"

namespace eva {

void StagedForward::start(const Model<float>& m, std::vector<Token> t) {
    tokens = std::move(t);
    next = 0;
    moe_inputs.clear();
    if (!tokens.empty()) x = embed_tokens(m, tokens);
}

void StagedForward::advance(const Model<float>& m) {
    if (tokens.empty() || done(m)) return;
    LayerActivations<float> L;
    x = block_forward(m, next, x, 1, tokens.size(), L);
    if (!m.w.layers[next].dense) moe_inputs.insert(moe_inputs.end(), L.hn.begin(), L.hn.end());
    ++next;
}

const float* StagedForward::moe_input(const Model<float>& m, std::size_t layer) const {
    const std::size_t per_layer = tokens.size() * std::size_t(m.args.dim);
    if (per_layer * (layer + 1) > moe_inputs.size()) throw ShapeError("StagedForward: that MoE layer has not run yet");
    return moe_inputs.data() + per_layer * layer;
}

WindowPool::WindowPool(std::vector<Token> text, std::size_t window, std::size_t size, std::uint64_t seed)
    : text_(std::move(text)), window_(window), size_(size), rng_(seed) {}

void WindowPool::advance(const Model<float>& m) {
    if (full()) return;
    if (next_.tokens.empty()) next_.start(m, sample_batch(text_, 1, int(window_), rng_).inputs);
    next_.advance(m);
    if (next_.done(m)) {
        pool_.push_back(std::move(next_));
        next_ = StagedForward{};
    }
}

std::vector<float> WindowPool::batch(const Model<float>& m, std::size_t layer, std::size_t count, std::uint64_t step) const {
    if (!full() || size_ == 0) throw ShapeError("WindowPool::batch before the pool is full");
    const std::size_t n = window_ * std::size_t(m.args.dim);
    Rng pick(7, step);
    std::vector<float> x;
    x.reserve(count * n);
    for (std::size_t w = 0; w < count; ++w) {
        const float* win = pool_[pick.next_u32() % size_].moe_input(m, layer);
        x.insert(x.end(), win, win + n);
    }
    return x;
}

}  // namespace eva
