// eva — Multi-head Latent Attention (DeepSeek-V2 §2.1, DeepSeek-V3 §2.1), exactly as DeepSeek-V3's
// official inference code (inference/model.py, class MLA) computes it.
//
// For n tokens x [n, dim], H heads, nope = qk_nope_head_dim, rope = qk_rope_head_dim, v = v_head_dim:
//   q      = wq(x)  or  wq_b(q_norm(wq_a(x)))              [n, H, nope+rope] → q_nope | q_pe, RoPE(q_pe)
//   kv_a   = wkv_a(x)                                       [n, kv_lora_rank + rope] → kv | k_pe
//   c_KV   = kv_norm(kv)                                    [n, kv_lora_rank]  the compressed latent
//   k_pe   = RoPE(k_pe)                                     [n, rope]  ONE rotary key shared by all heads
//   k_nope | v = wkv_b(c_KV)                                [n, H, nope + v]
//   score_h(s,t) = (q_nope_h(s)·k_nope_h(t) + q_pe_h(s)·k_pe(t)) · scale,  t ≤ s (causal)
//   scale = (nope+rope)^−½ · mscale² (YaRN)   o_h = softmax(score_h) · v_h   out = wo([o_1 … o_H])
//
// Two ways to decode token by token, giving the same output:
//   naive    caches per-head K [T, H, nope+rope] and V [T, H, v]   (what plain MHA would cache)
//   absorbed caches c_KV [T, kv_lora_rank] and k_pe [T, rope] only. With wkv_b viewed as
//            [H, nope+v, kv_lora_rank] = (W_UK_h ; W_UV_h), q_nope_h·k_nope_h(t) = (q_nope_h W_UK_h)·c_KV(t),
//            so the key up-projection is absorbed into the query, and o_h = (Σ_t p_t c_KV(t)) W_UV_hᵀ moves
//            the value up-projection after attention. The cache is (kv_lora_rank + rope) per token per
//            layer, for all heads together: 576 elements in V2/V3, against 2·128·128 = 32768 for a
//            128-head MHA of head size 128.
//
// The batched forward (training / prefill, causal) keeps its activations for the hand-written backward,
// which produces the gradient of every weight and of the input.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "eva/config.hpp"
#include "eva/linear.hpp"
#include "eva/rng.hpp"
#include "eva/rope.hpp"
#include "eva/tensor.hpp"

namespace eva {

/// MLA weights with the official names; Linear weights are [out, in]. Only one query path is present:
/// wq when q_lora_rank == 0, else wq_a, q_norm, wq_b (the other tensors are empty).
template <class T>
struct MLAWeights {
    Matrix<T> wq;       // [H·(nope+rope), dim]
    Matrix<T> wq_a;     // [q_lora_rank, dim]
    Vector<T> q_norm;   // [q_lora_rank]
    Matrix<T> wq_b;     // [H·(nope+rope), q_lora_rank]
    Matrix<T> wkv_a;    // [kv_lora_rank + rope, dim]
    Vector<T> kv_norm;  // [kv_lora_rank]
    Matrix<T> wkv_b;    // [H·(nope+v), kv_lora_rank]
    Matrix<T> wo;       // [dim, H·v]

    /// Calls f(name, tensor) for every present tensor, in the official order ("wq", "wq_a", …).
    template <class F>
    void visit(F&& f) {
        visit_all(*this, f);
    }
    template <class F>
    void visit(F&& f) const {
        visit_all(*this, f);
    }

private:
    template <class Self, class F>
    static void visit_all(Self& s, F& f) {
        if (s.wq.size()) f("wq", s.wq);
        if (s.wq_a.size()) f("wq_a", s.wq_a);
        if (s.q_norm.size()) f("q_norm", s.q_norm);
        if (s.wq_b.size()) f("wq_b", s.wq_b);
        f("wkv_a", s.wkv_a);
        f("kv_norm", s.kv_norm);
        f("wkv_b", s.wkv_b);
        f("wo", s.wo);
    }
};

/// Zero weights of the right shapes (a gradient accumulator).
template <class T>
MLAWeights<T> mla_zeros(const ModelArgs& args);
/// Linear weights ~ N(0, std²), norm weights 1 (V3's init uses std 0.006).
template <class T>
MLAWeights<T> mla_init(const ModelArgs& args, Rng& rng, double std);

/// What the forward keeps for the backward (B sequences of seq_len tokens, rows n = B·seq_len).
template <class T>
struct MLAActivations {
    std::size_t batch = 0, seq_len = 0;
    Matrix<T> x;                 // [n, dim]
    Matrix<T> q_a, q_a_n;        // [n, q_lora_rank]: before / after q_norm (q_lora_rank > 0)
    Vector<T> q_rstd;            // [n]
    Matrix<T> q;                 // [n, H·(nope+rope)], q_pe rotated
    Matrix<T> kv_a;              // [n, kv_lora_rank + rope]: raw kv | k_pe rotated
    Matrix<T> kv_n;              // [n, kv_lora_rank] = c_KV
    Vector<T> kv_rstd;           // [n]
    Matrix<T> kv_b;              // [n, H·(nope+v)]: per-head k_nope | v
    std::vector<T> probs;        // [B, H, seq_len, seq_len] softmax probabilities (0 above the diagonal)
    Matrix<T> o;                 // [n, H·v]: attention output before wo
};

/// Softmax scale: (nope+rope)^−½, × mscale² when YaRN is on.
double mla_softmax_scale(const ModelArgs& args, const RopeTable& rope);

/// Causal MLA over B sequences of seq_len tokens at positions 0…seq_len−1; x is [B·seq_len, dim].
/// Returns [B·seq_len, dim]; fills *acts for mla_backward when given. `precision` selects fp32 or
/// FP8 for the five projections (wq/wq_a/wq_b, wkv_a, wkv_b, wo); attention itself stays fp32.
template <class T>
Matrix<T> mla_forward(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w, const Matrix<T>& x,
                      std::size_t batch, std::size_t seq_len, MLAActivations<T>* acts = nullptr,
                      LinearMode precision = {});

/// Backward of mla_forward: accumulates every weight's gradient into `grad` and returns dL/dx.
template <class T>
Matrix<T> mla_backward(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w,
                       const MLAActivations<T>& acts, const Matrix<T>& dout, MLAWeights<T>& grad,
                       LinearMode precision = {});

/// Naive KV cache of one sequence: per-head keys [capacity, H, nope+rope] and values [capacity, H, v].
template <class T>
struct MLANaiveCache {
    MLANaiveCache(const ModelArgs& args, std::size_t capacity);
    std::size_t length = 0, capacity = 0, heads, k_dim, v_dim, max_seq_len;
    std::vector<T> k, v;
    /// Grows the capacity (never beyond max_seq_len: ConfigError).
    void reserve(std::size_t new_capacity);
    /// Floats held for the `length` cached tokens: length·H·(k_dim + v_dim).
    std::size_t floats() const { return length * heads * (k_dim + v_dim); }
    /// Forgets every token from position `new_length` on (speculative decoding's rollback past a
    /// rejected draft). Only the length moves: the rows beyond it are overwritten by the next decode.
    void truncate(std::size_t new_length);
};

/// Absorbed KV cache of one sequence: c_KV [capacity, kv_lora_rank] and k_pe [capacity, rope].
template <class T>
struct MLAAbsorbedCache {
    MLAAbsorbedCache(const ModelArgs& args, std::size_t capacity);
    std::size_t length = 0, capacity = 0, kv_lora_rank, rope_dim, max_seq_len;
    std::vector<T> kv, pe;
    void reserve(std::size_t new_capacity);
    /// Floats held for the `length` cached tokens: length·(kv_lora_rank + rope).
    std::size_t floats() const { return length * (kv_lora_rank + rope_dim); }
    /// Forgets every token from position `new_length` on (see MLANaiveCache::truncate).
    void truncate(std::size_t new_length);
};

/// Runs n new tokens x [n, dim] of one sequence at positions cache.length … cache.length+n−1 (a prompt
/// chunk, or n = 1 for one decoding step), appends them to the cache and returns their outputs [n, dim].
/// Exceeding max_seq_len raises ConfigError; exceeding the cache's capacity raises ShapeError (call
/// reserve first: growth is explicit). `last_probs`, when given, receives the attention weights of the
/// last of the n tokens over every cached position, [H, cache.length] row-major (each row sums to 1).
template <class T>
Matrix<T> mla_decode(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w, MLANaiveCache<T>& cache,
                     const Matrix<T>& x, std::vector<T>* last_probs = nullptr);
template <class T>
Matrix<T> mla_decode(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w,
                     MLAAbsorbedCache<T>& cache, const Matrix<T>& x, std::vector<T>* last_probs = nullptr);

// ------------------------------------------------------------------------------ memory accounting

enum class CacheDType { fp32, bf16, fp8 };
std::size_t dtype_bytes(CacheDType d);
std::string dtype_name(CacheDType d);
/// "fp32" | "bf16" | "fp8", else ConfigError naming `field`.
CacheDType parse_cache_dtype(const std::string& s, const std::string& field = "dtype");

/// KV-cache footprint of one attention scheme with the config's heads and head sizes.
struct KVCacheScheme {
    std::string name;              // "MLA", "MHA", "GQA-g", "MQA"
    std::int64_t kv_heads;         // K/V heads cached (MLA: 1 latent shared by all heads)
    std::int64_t elements_per_token_layer;
    std::int64_t bytes_per_token_layer;
    std::int64_t bytes_per_token;  // all n_layers
    std::int64_t bytes_sequence;   // all layers, seq_len tokens
    double ratio_to_mla;           // elements / MLA's elements
};

/// MLA (kv_lora_rank + rope), MHA (H·(nope+rope) keys + H·v values: what the naive cache holds),
/// GQA with `gqa_groups` K/V heads (must divide n_heads), and MQA (one K/V head).
std::vector<KVCacheScheme> kv_cache_memory(const ModelArgs& args, std::int64_t seq_len, CacheDType dtype,
                                           std::int64_t gqa_groups);
/// The GQA comparison `eva mla memory` and the KV panel draw by default: the largest divisor of n_heads
/// up to 8 (GQA-8 is a common production choice, e.g. Llama-3's). n_heads ≥ 1, else ConfigError.
std::int64_t default_gqa_groups(const ModelArgs& args);

/// A model whose KV cache `eva mla memory --config NAME` and the KV panel compare by name: DeepSeek's
/// presets (mini, v2-lite, v2, v3), which cache MLA's latent, and llama3-8b, Meta-Llama-3-8B's attention
/// shape (its config.json: 32 layers, 32 query heads, 8 K/V heads, head_dim 4096 / 32 = 128), a GQA
/// model without a latent. Only the cache's shape is Llama's: the key of 128 per K/V head is written as
/// nope 64 + rope 64 because ModelArgs splits the key (Llama rotates all of it; the size is the same).
struct KVCacheModel {
    std::string key, label;   // "v3", "V3"; "llama3-8b", "Llama-3-8B shape"
    ModelArgs args;
    std::int64_t gqa_groups;  // K/V heads of its GQA row (default_gqa_groups)
    bool mla;                 // it has an MLA latent (else its MLA row describes no real cache)
    std::string own_scheme;   // the scheme the real model uses: "MLA" or "GQA-8"
    /// kv_cache_memory with gqa_groups, without the MLA row when the model has no latent.
    std::vector<KVCacheScheme> memory(std::int64_t seq_len, CacheDType dtype) const;
};
/// mini, v2-lite, v2, v3, llama3-8b, in that order.
const std::vector<KVCacheModel>& kv_cache_models();
/// The model named `key`, or nullptr.
const KVCacheModel* find_kv_cache_model(const std::string& key);

}  // namespace eva
