// eva — the three products of a Linear layer y = x·Wᵀ (W [out, in]), in fp32 or through DeepSeek-V3's
// FP8 training recipe (technical report §3.3).
//
//   forward          y  = x · Wᵀ      K = in
//   input gradient   dx = dy · W      K = out
//   weight gradient  dW += dyᵀ · x    K = tokens
//
// In FP8 every one of the three GEMMs takes FP8 inputs: activations and gradients quantized per 1×128
// tile along K, weights per 128×128 block, each group's scale amax/448 computed online; the inner
// dimension runs in intervals of 128 whose partial products are rescaled and added into an fp32
// accumulator (promotion every N_C = 128). Master weights, their gradients and everything outside the
// Linear layers (embedding, head, gate, norms, attention) stay fp32. The variants `fp8-tensor` (one
// scale per tensor) and `fp8-e5m2` (E5M2 everywhere) show what the recipe's choices buy.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "eva/gemm.hpp"
#include "eva/tensor.hpp"

namespace eva {

enum class LinearPrecision { fp32, fp8, fp8_tensor, fp8_e5m2 };

/// "fp32" | "fp8" | "fp8-tensor" | "fp8-e5m2", else ConfigError naming `field`.
LinearPrecision parse_linear_precision(const std::string& s, const std::string& field = "precision");
std::string to_string(LinearPrecision p);

/// What a training step prepares once per Linear weight for all its gradient shards. The weights only
/// change at the optimizer step, but a step multiplies by each of them twice per shard (y = x·Wᵀ
/// forward, dx = dy·W backward). In fp32 the GEMM packs the weight into panels for each of those
/// products (eva/gemm.hpp, PackedB); in FP8 it first rounds the weight to FP8 in its 128×128 blocks and
/// multiplies back by the blocks' scales (the values the FP8 GEMM sees). A step of 4 shards did each of
/// these 4 times where once suffices. The trainer keeps one cache, hands it to the model for a step's
/// forwards and backwards (Model::weight_cache, WeightCacheScope), and calls next_step() before the
/// weights change. An entry is computed on first use; shards running side by side may ask for the same
/// one, so each entry is filled under its own lock. Everything has the same bits as what the layer
/// computes without a cache (packing only moves values).
class WeightCache {
public:
    /// The FP8 image of W [out, in] in precision p's weight groups; valid until next_step().
    const float* image(LinearPrecision p, const Matrix<float>& W);
    /// W [out, in] packed as op(B) of the forward x·Wᵀ (Op::T) or of the backward dy·W (Op::N); valid
    /// until next_step().
    const PackedB& packed(const Matrix<float>& W, Op op);
    /// The weights are about to change: every entry is recomputed on its next use (its memory is kept).
    void next_step() { ++generation_; }

private:
    struct Entry {
        std::mutex lock;
        unsigned long generation = 0;  // generation_ when the entry was filled (0: never)
    };
    struct Image : Entry {
        std::size_t size = 0;  // floats in `data`
        std::unique_ptr<float[]> data;
    };
    struct Packed : Entry {
        PackedB panels;
    };
    std::mutex lock_;  // guards the maps, not the entries
    std::map<std::pair<const float*, LinearPrecision>, Image> images_;
    std::map<std::pair<const float*, Op>, Packed> packed_;
    unsigned long generation_ = 1;

    // map[key], filled by fill(entry) under the entry's own lock unless it was filled in this generation.
    template <class Key, class E, class Fill>
    E& current(std::map<Key, E>& map, const Key& key, Fill&& fill) {
        E* e;
        {
            const std::lock_guard<std::mutex> hold(lock_);
            e = &map[key];  // a map's entries stay where they are
        }
        const std::lock_guard<std::mutex> hold(e->lock);
        if (e->generation != generation_) {
            fill(*e);
            e->generation = generation_;
        }
        return *e;
    }
};

/// How the Linear layers of a forward or backward multiply: their precision and, during a training
/// step, the cache of the step's packed weights or FP8 images (nullptr: each call prepares its weight).
struct LinearMode {
    LinearPrecision precision = LinearPrecision::fp32;
    WeightCache* weights = nullptr;
    LinearMode(LinearPrecision p = LinearPrecision::fp32, WeightCache* w = nullptr) : precision(p), weights(w) {}
};

/// y[n, out] (+)= x[n, in]·Wᵀ; rows of x and y have strides ldx and ldy.
template <class T>
void linear_forward(LinearMode p, const T* x, std::size_t ldx, const Matrix<T>& W, T* y, std::size_t ldy,
                    std::size_t n, bool accumulate = false);

/// dW += dyᵀ·x and dx (+)= dy·W for the forward above.
template <class T>
void linear_backward(LinearMode p, const T* dy, std::size_t lddy, const T* x, std::size_t ldx, const Matrix<T>& W,
                     Matrix<T>& dW, T* dx, std::size_t lddx, std::size_t n, bool accumulate_dx = false);

}  // namespace eva
