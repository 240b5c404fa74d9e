// eva — multi-token prediction (DeepSeek-V3 technical report §2.2) and speculative decoding with it.
//
// Training. D sequential modules follow the main model. With h⁰ᵢ the main model's last block output
// at position i (before the final norm), module k = 1…D computes, for every position i whose target
// t_{i+k+1} is inside the window,
//   h'ᵏᵢ = Mₖ · [ RMSNorm_e(Emb(t_{i+k})) ; RMSNorm_h(hᵏ⁻¹ᵢ) ]        Mₖ = eh_proj [dim, 2·dim]
//   hᵏ   = Blockₖ(h'ᵏ)                                              causal over the module's positions
//   Pᵏᵢ  = softmax(head(shared_head.norm(hᵏᵢ)))                     predicts t_{i+k+1}
// and L_MTP = (λ/D)·Σ_k CE_k joins the main loss. The embedding and the output head are the main model's
// (shared, so their gradients add up); each module has its own two input norms, projection, block and
// final norm. Because module k consumes module k−1's output at the same position, the prediction of
// t_{i+k+1} is conditioned on everything up to t_{i+k}: the chain stays causal at every depth, unlike
// parallel heads that each guess a different future token from the same hᵢ.
//
// Conventions checked against DeepSeek-V3's release (README_WEIGHTS.md) and the inference engines
// that run it: the concatenation puts the normed EMBEDDING first, then the normed hidden state; the
// block is of the kind of its layer index (V3's module is layer 61 ≥ first_k_dense 3: a MoE block),
// and eva applies the same rule, so an MTP block is MoE whenever the main model has MoE layers. Tensor
// names continue the main layers' numbering: `layers.{n_layers+k}.enorm.weight`, `.hnorm.weight`,
// `.eh_proj.weight`, the block's usual `attn_norm`, `attn.*`, `ffn_norm`, `ffn.*`, and
// `.shared_head.norm.weight`. The release also stores copies of the shared tensors there
// (`layers.61.embed_tokens.weight`, `layers.61.shared_head.head.weight`); eva's own files do not
// duplicate them. Inference engines feed the module the main model's hidden state after its final
// norm; eva feeds it before (hnorm normalizes it anyway), a choice of the training recipe.
//
// Inference: module 1 drafts the token after the main model's next one, module k the k-th after it
// (SpeculativeGenerator). One forward of the main model over [next, d₁…d_D] scores every draft at
// once; the standard accept/resample rule keeps the output distribution exactly the main model's.
#pragma once

#include <cstddef>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "eva/model.hpp"

namespace eva {

/// One MTP module's own parameters (the embedding and head are the model's).
template <class T>
struct MtpModule {
    Vector<T> enorm, hnorm;  // [dim]: RMSNorm gains of the embedding and of the incoming hidden state
    Matrix<T> eh_proj;       // [dim, 2·dim]: Mₖ, applied to [enorm(e) ; hnorm(h)]
    Block<T> block;          // one transformer block (MLA + MoE)
    Vector<T> head_norm;     // [dim]: shared_head.norm, before the shared output head
};

/// What module k keeps for its backward. It covers B sequences of seq_len = T − k positions.
template <class T>
struct MtpActivations {
    std::size_t batch = 0, seq_len = 0;
    Matrix<T> h, e;                  // hᵏ⁻¹ of those positions and Emb(t_{i+k})        [n, dim]
    Matrix<T> hn, en;                // their RMSNorms
    std::vector<T> h_rstd, e_rstd;
    Matrix<T> cat;                   // [en | hn]                                       [n, 2·dim]
    LayerActivations<T> block;       // block.x = eh_proj(cat)
    Matrix<T> out, out_n;            // hᵏ and shared_head.norm(hᵏ)
    std::vector<T> out_rstd;
    Matrix<T> logits;                // [n, vocab]
};

/// Runs every MTP module on a forward's activations (A.x, A.batch, A.seq_len from model_forward over
/// `inputs`); fills A.mtp. Module k has no positions when T ≤ k (it is then skipped).
template <class T>
void mtp_forward(const Model<T>& m, const std::vector<Token>& inputs, ModelActivations<T>& A, bool keep_attention);

/// The MTP losses of A.mtp against the main targets (module k at position i predicts targets[i+k]):
/// fills loss.mtp = (λ/D)·Σ_k CE_k, mtp_cross_entropy, mtp_accuracy and adds the MTP blocks' balance
/// losses to loss.balance. With `dlogits`, each module's ∂loss.mtp/∂logits.
template <class T>
void mtp_loss(const Model<T>& m, const std::vector<Token>& targets, const ModelActivations<T>& A, Loss& loss,
              std::vector<Matrix<T>>* dlogits);

/// Backward through every module, from the deepest down: accumulates the modules' gradients and the
/// shared embedding's and head's into g, and adds ∂L_MTP/∂h⁰ into dx_main [B·T, dim].
template <class T>
void mtp_backward(const Model<T>& m, const std::vector<Token>& inputs, const ModelActivations<T>& A,
                  const std::vector<Matrix<T>>& dlogits, ModelWeights<T>& g, Matrix<T>& dx_main);

/// Speculative decoding's counters: drafts proposed and accepted, verifying forwards of the main model.
struct SpeculativeStats {
    std::size_t drafted = 0, accepted = 0, rounds = 0;
    double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
};

/// Token-by-token generation where the MTP modules draft and the main model verifies. Each round:
///   1. the next token x (already drawn from the main model) and the main model's hidden state at the
///      position before it feed module 1, whose output feeds module 2, …: drafts d₁…d_depth, each drawn
///      from its module's distribution q (same sampling settings as the main model);
///   2. ONE forward of the main model over [x, d₁…d_depth] through its absorbed MLA cache gives the
///      main distributions p₁…p_{depth+1} at those positions;
///   3. dⱼ is accepted with probability min(1, pⱼ(dⱼ)/qⱼ(dⱼ)); at the first rejection a token is drawn
///      from norm(max(0, pⱼ − qⱼ)) instead and the caches are rolled back past it; if every draft is
///      accepted, p_{depth+1} gives one more token. Each token is then distributed exactly as plain
///      sampling from the main model would draw it (Leviathan et al. 2023; Chen et al. 2023), and with
///      temperature 0 the output is plain greedy decoding's, token for token.
/// The drafter keeps its own absorbed cache per module, holding only positions whose inputs are final.
template <class T>
class SpeculativeGenerator {
public:
    /// `depth` drafts per round: 1…n_mtp_layers (0: all modules). ConfigError for a model without MTP.
    SpeculativeGenerator(const Model<T>& m, std::size_t capacity, std::size_t depth = 0);
    /// Feeds the prompt and draws the first new token from the main model; returns it.
    Token start(const std::vector<Token>& prompt, const SamplingConfig& s, Rng& rng);
    /// One draft-and-verify round: the new tokens (accepted drafts, then the main model's own next one;
    /// at least one), or none when the cache capacity is reached.
    std::vector<Token> step(const SamplingConfig& s, Rng& rng);
    const SpeculativeStats& stats() const { return stats_; }
    /// The last round's drafts and how many of them the main model accepted.
    const std::vector<Token>& last_drafts() const { return drafts_; }
    std::size_t last_accepted() const { return last_accepted_; }
    /// Tokens in the main model's cache (the newest drawn token is not fed yet).
    std::size_t length() const { return main_.length(); }
    const Generator<T>& main() const { return main_; }

private:
    std::vector<std::vector<double>> draft(const SamplingConfig& s, Rng& rng, std::size_t depth);
    const Model<T>& m_;
    std::size_t capacity_, depth_;
    Generator<T> main_;
    std::vector<MLAAbsorbedCache<T>> caches_;  // one per MTP module
    std::vector<std::vector<T>> hidden_;       // hidden_[k]: rows hᵏ_j of positions j (k = 0: main model)
    std::vector<Token> tokens_;                // every final token, the newest drawn one included
    std::vector<Token> drafts_;
    std::size_t last_accepted_ = 0;
    SpeculativeStats stats_;
};

/// `eva generate --speculative`'s run, a unit of work at a time so that a page can spread it over frames
/// (the KV panel's MTP view runs it too, so for the same settings both give the same text and counts):
/// speculative decoding of the prompt (the first token from start(), then rounds until max_new_tokens,
/// the first max_new_tokens kept) and, beside it, plain decoding of the same prompt with the same seed
/// through the absorbed cache, for the speed ratio. Each is timed around its own calls only, prompt
/// included. Both caches hold the prompt and the new tokens, within max_seq_len.
class SpeculativeRun {
public:
    /// ConfigError for an empty prompt, one that fills max_seq_len, or a model without MTP modules.
    SpeculativeRun(const Model<float>& m, const std::vector<Token>& prompt, std::size_t max_new_tokens,
                   const SamplingConfig& sampling, std::uint64_t seed);
    /// One draft-and-verify round; false (nothing done) once finished.
    bool step_speculative();
    /// Plain decoding's next token; false (nothing done) once it has max_new_tokens or its cache is full.
    bool step_plain();
    bool speculative_done() const { return done_; }
    bool plain_done() const;
    const SpeculativeStats& stats() const { return gen_.stats(); }
    std::size_t cache_floats() const { return gen_.main().cache_floats(); }  // the speculative main cache
    /// The run's figures so far, as `eva generate --speculative --json` prints them and the KV panel
    /// exports them: text and new_tokens (the speculative output), drafted, accepted, acceptance_rate,
    /// verify_forwards (one main-model forward per round), rejected and accepted_shown (the drafts replaced,
    /// and the tokens marked as accepted drafts), plain_tokens, spec_ms, plain_ms, tokens_per_s and
    /// plain_tokens_per_s over each one's wall time, speedup (their ratio), and identical_to_plain (always
    /// true under greedy decoding: the run shows it).
    nlohmann::json to_json() const;

    std::vector<Token> tokens, plain_tokens;              // generated after the prompt by each
    std::vector<unsigned char> drafted;                   // per token: 1 an accepted draft, 0 the main model's
    std::vector<std::pair<std::size_t, Token>> rejected;  // (position, draft): rejected just before that token
    double seconds = 0, plain_seconds = 0;                // wall time of each

private:
    SamplingConfig sampling_;
    std::size_t max_new_tokens_, capacity_;
    SpeculativeGenerator<float> gen_;
    Generator<float> plain_;
    Rng rng_, plain_rng_;
    std::vector<float> plain_logits_;
    bool done_ = false;
};

}  // namespace eva
