// eva — the assembled DeepSeek-V3-style model (inference/model.py `Transformer`, `Block`).
//
//   x  = embed[tokens]                                           [n, dim], n = B·T
//   for each layer i:   h = x + MLA(attn_norm(x))                pre-norm residual blocks
//                       x = h + FFN(ffn_norm(h))                 FFN = SwiGLU MLP for i < n_dense_layers,
//                                                                      DeepSeekMoE after
//   logits = head(norm(x))                                       [n, vocab]
//
// Training: `model_forward` keeps every layer's activations, `model_backward` walks them in reverse
// (each layer's hand-written backward, llm.c style) and returns the gradient of every parameter. The
// loss is the mean next-token cross-entropy plus, when enabled, the MoE layers' balance losses.
// Generation: `Generator` runs the same weights token by token with a KV cache per layer (absorbed
// MLA by default, or the naive per-head cache).
//
// Tensor names are exactly DeepSeek-V3's (`embed.weight`, `layers.{i}.attn.wkv_a.weight`,
// `layers.{i}.ffn.experts.{j}.w1.weight`, …), so checkpoints map one to one. With n_mtp_layers > 0 the
// model also holds DeepSeek-V3's multi-token-prediction modules (eva/mtp.hpp) as `layers.{n_layers+k}.*`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eva/config.hpp"
#include "eva/data.hpp"
#include "eva/mla.hpp"
#include "eva/mlp.hpp"
#include "eva/moe.hpp"
#include "eva/rng.hpp"
#include "eva/rope.hpp"
#include "eva/tensor.hpp"

namespace eva {

template <class T>
struct Block {
    Vector<T> attn_norm;  // [dim]
    MLAWeights<T> attn;
    Vector<T> ffn_norm;   // [dim]
    bool dense = true;    // layer index < n_dense_layers: SwiGLU MLP, else MoE
    Mlp<T> mlp;           // dense FFN (ffn.w1/w2/w3)
    Moe<T> moe;           // MoE FFN (ffn.gate, ffn.experts.{j}, ffn.shared_experts)
};

template <class T>
struct MtpModule;  // eva/mtp.hpp (included at the end of this header)
template <class T>
struct MtpActivations;

/// All parameters of the model; the same struct holds their gradients.
template <class T>
struct ModelWeights {
    Matrix<T> embed;  // [vocab, dim]
    std::vector<Block<T>> layers;
    Vector<T> norm;   // [dim]
    Matrix<T> head;   // [vocab, dim]
    std::vector<MtpModule<T>> mtp;  // n_mtp_layers modules; they share embed and head
};

/// One named tensor of the model: its data, shape, whether the optimizer trains it and whether
/// weight decay applies (matrices yes; norm gains no; the MoE selection bias is not trained at all:
/// the auxiliary-loss-free rule sets it).
template <class T>
struct NamedTensor {
    std::string name;
    T* data;
    std::vector<std::size_t> shape;
    bool trainable, decay;
    std::size_t size() const;
};

/// Every tensor of `w` under its official name, in a fixed order.
template <class T>
std::vector<NamedTensor<T>> named_tensors(ModelWeights<T>& w);

template <class T>
struct Model {
    ModelArgs args;
    MoeConfig moe;
    RopeTable rope;
    ModelWeights<T> w;
    /// Arithmetic of the Linear layers inside the blocks during training (fp32, or FP8 emulation);
    /// embedding, head, gate, norms and attention are always fp32, and so is generation.
    LinearPrecision precision = LinearPrecision::fp32;
    /// Weight λ of the multi-token-prediction loss, (λ/D)·Σ_k CE_k (V3: 0.3, later 0.1); a training
    /// setting (TrainConfig::mtp_lambda) that the trainer copies here. Unused without MTP modules.
    double mtp_lambda = 0.3;
    /// Node-limited routing of every MoE gate in training and evaluation (TrainConfig::nodes and
    /// max_nodes, copied by the trainer); generation routes without it. Default: unlimited.
    NodeLimit node_limit{};
    /// During a training step of an expert-parallel run: where the routed experts run (set by the
    /// trainer; nullptr: all here).
    ExpertParallel* expert_parallel = nullptr;
    /// During a training step: the Linear weights packed (fp32) or as FP8 images, prepared once for all
    /// the step's shards (set by the trainer; nullptr: each Linear call prepares its weight).
    WeightCache* weight_cache = nullptr;
    /// How the blocks' Linear layers multiply in training: `precision`, with the step's prepared weights.
    LinearMode linear() const { return {precision, weight_cache}; }
};

/// The model multiplies by `cache`'s prepared weights for one scope: a step's forwards and backwards,
/// over which the weights stay fixed (the trainer's step; eva_bench_train's bare step). The entries are
/// stale once the scope ends, before the optimizer changes the weights.
class WeightCacheScope {
public:
    WeightCacheScope(Model<float>& m, WeightCache& cache) : m_(m), cache_(cache) { m.weight_cache = &cache; }
    ~WeightCacheScope() {
        m_.weight_cache = nullptr;
        cache_.next_step();
    }
    WeightCacheScope(const WeightCacheScope&) = delete;
    WeightCacheScope& operator=(const WeightCacheScope&) = delete;

private:
    Model<float>& m_;
    WeightCache& cache_;
};

/// A model with every tensor allocated: Linear weights and biases 0, norm gains 1.
template <class T>
Model<T> model_alloc(const ModelArgs& args, const MoeConfig& moe);
/// A model with Linear weights ~ N(0, std²) (DeepSeek-V3: 0.006), norm gains 1, biases 0.
template <class T>
Model<T> model_init(const ModelArgs& args, const MoeConfig& moe, Rng& rng, double std = 0.006);
/// A freshly initialized float model as `eva train --config C --seed S` starts it (and the page's untrained
/// fallback, `eva init --config mini --seed 1`): model_init from Rng(seed), MoE settings moe_config(args,
/// balance, gamma, alpha).
Model<float> fresh_model(const ModelArgs& args, std::uint64_t seed, Balance balance = Balance::aux_free,
                         double gamma = 0.001, double alpha = 1e-4);
/// Sets the aux-free bias update speed γ of every MoE layer of `m` (its config and each block's copy, MTP
/// modules included), e.g. to continue a checkpoint at another speed. ConfigError for a γ out of range.
void set_gamma(Model<float>& m, double gamma);
/// Zero tensors with the shapes of `m`'s (a gradient accumulator).
template <class T>
ModelWeights<T> model_zeros(const Model<T>& m);
/// Number of parameters: all, and those a token activates (shared + top-k routed experts only).
/// ConfigError if any tensor or the total exceeds 2^48 (checked.hpp): the sizes come from untrusted configs.
std::uint64_t parameter_count(const ModelArgs& args, bool activated_only = false);
/// Bytes of every tensor model_alloc<T> makes (scalar_bytes = sizeof(T)), known before allocating; a
/// checkpoint's data buffer must hold exactly this many for T = float.
std::uint64_t model_bytes(const ModelArgs& args, const MoeConfig& moe, std::size_t scalar_bytes = sizeof(float));

/// Everything the forward keeps for the backward.
template <class T>
struct LayerActivations {
    Matrix<T> x, xn, h, hn;  // block input, attn_norm(x), after attention, ffn_norm(h)   [n, dim]
    std::vector<T> attn_rstd, ffn_rstd;
    MLAActivations<T> mla;
    MlpCache<T> mlp;
    MoeCache<T> moe;
};
template <class T>
struct ModelActivations {
    std::size_t batch = 0, seq_len = 0;
    std::vector<Token> tokens;
    std::vector<LayerActivations<T>> layers;
    Matrix<T> x, xn;  // final hidden state and norm(x)
    std::vector<T> rstd;
    Matrix<T> logits;  // [n, vocab]
    std::vector<MtpActivations<T>> mtp;  // filled by the losses, one per MTP module
};

/// Logits [B·T, vocab] for B sequences of T tokens (row-major in `tokens`); fills *acts if given.
template <class T>
Matrix<T> model_forward(const Model<T>& m, const std::vector<Token>& tokens, std::size_t batch, std::size_t seq_len,
                        ModelActivations<T>* acts = nullptr);

/// The embedding rows of `tokens` [n, dim] (ConfigError for a token outside the vocabulary).
template <class T>
Matrix<T> embed_tokens(const Model<T>& m, const std::vector<Token>& tokens);
/// Block `l` of model_forward alone: x [B·T, dim] in, the block's output out; L receives xn, h, hn
/// (hn = ffn_norm(h) is the FFN's input, e.g. what the MoE gate routes) and the FFN's cache, and the
/// attention's when `keep_attention`. Lets a caller stop at a layer or spread a forward over frames.
template <class T>
Matrix<T> block_forward(const Model<T>& m, std::size_t l, const Matrix<T>& x, std::size_t batch, std::size_t seq_len,
                        LayerActivations<T>& L, bool keep_attention = false);

/// Block `b` (a main layer or an MTP module's block) on x; `l`-less form of the above.
template <class T>
Matrix<T> block_forward(const Model<T>& m, const Block<T>& b, const Matrix<T>& x, std::size_t batch,
                        std::size_t seq_len, LayerActivations<T>& L, bool keep_attention = false);
/// Backward of block_forward (kept attention): dx holds ∂L/∂(block output) on entry and ∂L/∂(block
/// input) on return; the block's gradients accumulate into gb.
template <class T>
void block_backward(const Model<T>& m, const Block<T>& b, const LayerActivations<T>& L, Matrix<T>& dx, Block<T>& gb);
/// Block `b` on n new tokens of one sequence through its absorbed MLA cache (generation).
template <class T>
Matrix<T> block_decode(const Model<T>& m, const Block<T>& b, MLAAbsorbedCache<T>& cache, const Matrix<T>& x,
                       std::vector<T>* last_probs = nullptr);

/// The forward's losses: mean next-token cross-entropy (nats), the sum of MoE balance losses and,
/// with MTP modules, the weighted MTP loss (λ/D)·Σ_k CE_k with each module's own CE and accuracy.
struct Loss {
    double cross_entropy = 0, balance = 0, mtp = 0;
    std::vector<double> mtp_cross_entropy;  // CE_k of module k (predicting the token k+1 ahead)
    std::vector<double> mtp_accuracy;       // fraction of module k's positions whose argmax is the target
    double total() const { return cross_entropy + balance + mtp; }
};

/// Forward + backward: returns the losses and accumulates ∂(total loss)/∂θ into `grad`.
template <class T>
Loss model_loss_and_grad(const Model<T>& m, const std::vector<Token>& inputs, const std::vector<Token>& targets,
                         std::size_t batch, std::size_t seq_len, ModelWeights<T>& grad,
                         ModelActivations<T>* acts = nullptr);
/// Forward only: the losses (no gradients).
template <class T>
Loss model_loss(const Model<T>& m, const std::vector<Token>& inputs, const std::vector<Token>& targets,
                std::size_t batch, std::size_t seq_len);

/// Auxiliary-loss-free balancing after a step: each MoE layer's bias moves by ±γ against its load in
/// the step's forward (`acts`). No-op for layers without a bias.
template <class T>
void update_balance_bias(Model<T>& m, const ModelActivations<T>& acts);
/// The caches of the MoE blocks the forward ran, in the one order every per-block figure follows: the
/// main layers' first, then the MTP modules'.
template <class T>
std::vector<const MoeCache<T>*> moe_caches(const Model<T>& m, const ModelActivations<T>& acts);
/// The per-expert slot counts update_balance_bias reads: one vector per MoE block, in moe_caches' order.
/// Counts of several shards or ranks add up exactly.
template <class T>
std::vector<std::vector<std::size_t>> balance_counts(const Model<T>& m, const ModelActivations<T>& acts);
/// The update from counts (e.g. summed over the shards of a batch).
template <class T>
void update_balance_bias(Model<T>& m, const std::vector<std::vector<std::size_t>>& counts);

enum class AttentionCache { absorbed, naive };

/// Token-by-token inference with a KV cache per layer.
template <class T>
class Generator {
public:
    Generator(const Model<T>& m, AttentionCache kind, std::size_t capacity);
    /// Feeds `tokens` (a prompt chunk or one token) and returns the logits of the last one [vocab].
    std::vector<T> feed(const std::vector<Token>& tokens);
    /// The same, returning every fed token's logits [n, vocab] (one forward verifies n drafted tokens)
    /// and, if `hidden` is given, the last block's output of each [n, dim] (an MTP drafter's input).
    Matrix<T> feed_all(const std::vector<Token>& tokens, Matrix<T>* hidden = nullptr);
    /// Rolls every layer's cache back to its first `length` tokens (ShapeError if longer than length()).
    void truncate(std::size_t length);
    std::size_t length() const;
    /// Floats held by all layers' caches.
    std::size_t cache_floats() const;
    /// Read-only views for visualisation. The newest token's attention weights in `layer`, [H, length()]
    /// row-major (from the last feed); the absorbed cache of `layer` (c_KV rows, k_pe rows) — ConfigError
    /// if this generator keeps the naive cache.
    const std::vector<T>& attention(std::size_t layer) const { return attention_.at(layer); }
    const MLAAbsorbedCache<T>& absorbed_cache(std::size_t layer) const;
    /// The same views over the newest positions [first, length()) only, as heatmaps draw them: the
    /// attention weights [H, length() − first], and the absorbed cache's c_KV rows transposed to one
    /// column per position, [kv_lora_rank, length() − first]. first ≤ length(), else ShapeError.
    std::vector<T> attention_window(std::size_t layer, std::size_t first) const;
    std::vector<T> latent_window(std::size_t layer, std::size_t first) const;

private:
    Matrix<T> hidden_states(const std::vector<Token>& tokens);  // the blocks over new tokens: x [n, dim]
    const Model<T>& m_;
    AttentionCache kind_;
    std::vector<MLANaiveCache<T>> naive_;
    std::vector<MLAAbsorbedCache<T>> absorbed_;
    std::vector<std::vector<T>> attention_;  // per layer, [H, length]
};

struct SamplingConfig {
    double temperature = 1.0;  // 0: greedy
    int top_k = 0;             // 0: off
    double top_p = 1.0;        // 1: off
};
/// Draws the next token from logits with temperature, top-k and top-p (nucleus) filtering.
Token sample_token(const std::vector<float>& logits, const SamplingConfig& s, Rng& rng);
/// The distribution sample_token draws from, as probabilities over the whole vocabulary (0 for the
/// filtered-out tokens; one-hot on the lowest argmax when greedy). Speculative decoding's accept rule
/// compares the main model's and the drafter's.
std::vector<double> sampling_distribution(const std::vector<float>& logits, const SamplingConfig& s);
/// Draws a token from probabilities `p` (summing to 1) with one uniform draw.
Token sample_from(const std::vector<double>& p, Rng& rng);
/// The samples `eva train` prints and the browser's Train panel shows: up to `n` bytes after `prompt`,
/// each drawn at temperature 0.8 from the 40 most likely (Rng(seed, 7)), through the absorbed MLA
/// cache, within max_seq_len; returns the drawn bytes (not the prompt).
std::string sample_text(const Model<float>& m, const std::string& prompt, int n, std::uint64_t seed);

/// One model decoding through both caches in lockstep (the KV panel's live decoding and its selfTest):
/// each token goes through the absorbed generator, then the naive one, and their logits are compared.
/// They differ by float rounding only (the absorbed path computes q·(W_UK c) as (q W_UK)·c). The work
/// comes in halves, one generator's feed each and timed, so that a page can spread a token over frames.
/// The given tokens are fed first; after them each token is sampled from the absorbed logits.
class CacheLockstep {
public:
    /// `tokens` (empty: one newline) are cut to capacity − 1 so that at least one is sampled; the
    /// samples draw from Rng(seed). capacity ≤ the model's max_seq_len.
    CacheLockstep(const Model<float>& m, std::vector<Token> tokens, std::size_t capacity, std::uint64_t seed);
    /// The next half step: the absorbed generator's feed of the next token (drawn first once the given
    /// ones are used up), or the naive generator's feed of the same token. False (nothing done) when full.
    bool step(const SamplingConfig& s);
    bool finished() const { return tokens.size() >= capacity_ && fed_naive == tokens.size(); }
    bool naive_behind() const { return fed_naive < fed_absorbed; }

    Generator<float> absorbed, naive;
    std::vector<Token> tokens;                  // the given ones, then the sampled ones
    std::size_t prompt_len = 0;
    std::size_t fed_absorbed = 0, fed_naive = 0;
    std::vector<float> logits_absorbed, logits_naive;  // of each one's last fed token
    double last_diff = 0, max_diff = 0;  // max |naive − absorbed logit|: last token both fed, whole run
    double logit_scale = 0;              // max |absorbed logit| over the run (the scale max_diff is small against)
    double last_ms_absorbed = 0, last_ms_naive = 0;  // each one's last feed, milliseconds
    double ms_absorbed = 0, ms_naive = 0;            // their means per token

private:
    std::size_t capacity_;
    Rng rng_;
};

}  // namespace eva

#include "eva/mtp.hpp"
