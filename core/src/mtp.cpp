// eva — multi-token prediction: the modules' forward, losses and hand-written backward, and
// speculative decoding with the modules as drafter. See mtp.hpp.
#include "eva/mtp.hpp"

#include <algorithm>
#include <chrono>
#include <string>

#include <nlohmann/json.hpp>
#include <xtensor/xview.hpp>

#include "eva/data.hpp"
#include "eva/error.hpp"
#include "eva/gemm.hpp"
#include "eva/rmsnorm.hpp"
#include "eva/train.hpp"

namespace eva {
namespace {

// Rows (b, i), i < rows_out, of B sequences stored with rows_in rows each (rows_out ≤ rows_in).
template <class T>
Matrix<T> leading_rows(const Matrix<T>& x, std::size_t batch, std::size_t rows_in, std::size_t rows_out) {
    const std::size_t D = x.shape(1);
    Matrix<T> y = Matrix<T>::from_shape({batch * rows_out, D});
    for (std::size_t b = 0; b < batch; ++b)
        std::copy_n(x.data() + b * rows_in * D, rows_out * D, y.data() + b * rows_out * D);
    return y;
}

// The inverse scatter: dst rows (b, i) += src rows (b, i), i < rows_src.
template <class T>
void add_leading_rows(const Matrix<T>& src, std::size_t batch, std::size_t rows_src, Matrix<T>& dst,
                      std::size_t rows_dst) {
    const std::size_t D = src.shape(1);
    for (std::size_t b = 0; b < batch; ++b) {
        const T* s = src.data() + b * rows_src * D;
        T* d = dst.data() + b * rows_dst * D;
        for (std::size_t j = 0; j < rows_src * D; ++j) d[j] += s[j];
    }
}

// Module k reads token t_{i+k} and predicts t_{i+k+1} = targets[i+k]: the tokens of positions
// i + k, i < seq_len − k, of every sequence.
std::vector<Token> shifted(const std::vector<Token>& t, std::size_t batch, std::size_t seq_len, std::size_t k) {
    std::vector<Token> out;
    out.reserve(batch * (seq_len - k));
    for (std::size_t b = 0; b < batch; ++b)
        out.insert(out.end(), t.begin() + std::ptrdiff_t(b * seq_len + k), t.begin() + std::ptrdiff_t((b + 1) * seq_len));
    return out;
}

// h' = eh_proj · [enorm(e) ; hnorm(h)] for rows e, h [n, dim]; keeps the pieces in A when given.
template <class T>
Matrix<T> project(const MtpModule<T>& mod, const Matrix<T>& e, const Matrix<T>& h, MtpActivations<T>& A) {
    const std::size_t n = e.shape(0), D = e.shape(1);
    rmsnorm_rows(e, mod.enorm, A.en, A.e_rstd);
    rmsnorm_rows(h, mod.hnorm, A.hn, A.h_rstd);
    A.cat = Matrix<T>::from_shape({n, 2 * D});
    for (std::size_t i = 0; i < n; ++i) {
        std::copy_n(A.en.data() + i * D, D, A.cat.data() + i * 2 * D);
        std::copy_n(A.hn.data() + i * D, D, A.cat.data() + i * 2 * D + D);
    }
    Matrix<T> x = Matrix<T>::from_shape({n, D});
    gemm(Op::N, Op::T, n, D, 2 * D, A.cat.data(), 2 * D, mod.eh_proj.data(), 2 * D, x.data(), D);
    return x;
}

// logits = shared_head.norm(out) · headᵀ.
template <class T>
Matrix<T> head_logits(const Model<T>& m, const MtpModule<T>& mod, const Matrix<T>& out, Matrix<T>& out_n,
                      std::vector<T>& rstd) {
    const std::size_t n = out.shape(0), D = out.shape(1), V = std::size_t(m.args.vocab_size);
    rmsnorm_rows(out, mod.head_norm, out_n, rstd);
    Matrix<T> logits = Matrix<T>::from_shape({n, V});
    gemm(Op::N, Op::T, n, V, D, out_n.data(), D, m.w.head.data(), D, logits.data(), V);
    return logits;
}

}  // namespace

template <class T>
void mtp_forward(const Model<T>& m, const std::vector<Token>& inputs, ModelActivations<T>& A, bool keep_attention) {
    const std::size_t B = A.batch, T_ = A.seq_len, Dm = m.w.mtp.size();
    A.mtp.assign(Dm, {});
    for (std::size_t kk = 0; kk < Dm && kk + 1 < T_; ++kk) {
        const std::size_t k = kk + 1, rows = T_ - k;
        MtpActivations<T>& M = A.mtp[kk];
        const MtpModule<T>& mod = m.w.mtp[kk];
        M.batch = B;
        M.seq_len = rows;
        M.h = kk == 0 ? leading_rows(A.x, B, T_, rows) : leading_rows(A.mtp[kk - 1].out, B, rows + 1, rows);
        M.e = embed_tokens(m, shifted(inputs, B, T_, k));
        Matrix<T> x = project(mod, M.e, M.h, M);
        M.out = block_forward(m, mod.block, x, B, rows, M.block, keep_attention);
        M.block.x = std::move(x);
        M.logits = head_logits(m, mod, M.out, M.out_n, M.out_rstd);
    }
}

template <class T>
void mtp_loss(const Model<T>& m, const std::vector<Token>& targets, const ModelActivations<T>& A, Loss& loss,
              std::vector<Matrix<T>>* dlogits) {
    const std::size_t B = A.batch, T_ = A.seq_len, Dm = m.w.mtp.size(), V = std::size_t(m.args.vocab_size);
    const double weight = m.mtp_lambda / double(Dm);
    loss.mtp = 0;
    loss.mtp_cross_entropy.clear();
    loss.mtp_accuracy.clear();
    if (dlogits) dlogits->assign(Dm, {});
    for (std::size_t kk = 0; kk < Dm && kk < A.mtp.size() && A.mtp[kk].seq_len > 0; ++kk) {
        const MtpActivations<T>& M = A.mtp[kk];
        const std::vector<Token> tgt = shifted(targets, B, T_, kk + 1);
        const std::size_t n = tgt.size();
        T* d = nullptr;
        if (dlogits) {
            (*dlogits)[kk] = Matrix<T>::from_shape({n, V});
            d = (*dlogits)[kk].data();
        }
        const double ce = double(cross_entropy(M.logits.data(), tgt.data(), n, V, d));
        if (d)
            for (std::size_t j = 0; j < n * V; ++j) d[j] *= T(weight);
        std::size_t hits = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const T* row = M.logits.data() + i * V;
            hits += Token(std::max_element(row, row + V) - row) == tgt[i];
        }
        loss.mtp_cross_entropy.push_back(ce);
        loss.mtp_accuracy.push_back(double(hits) / double(n));
        loss.mtp += weight * ce;
        loss.balance += double(M.block.moe.balance_loss);
    }
}

template <class T>
void mtp_backward(const Model<T>& m, const std::vector<Token>& inputs, const ModelActivations<T>& A,
                  const std::vector<Matrix<T>>& dlogits, ModelWeights<T>& g, Matrix<T>& dx_main) {
    const std::size_t B = A.batch, T_ = A.seq_len, D = std::size_t(m.args.dim), V = std::size_t(m.args.vocab_size);
    std::size_t active = 0;  // modules that had positions
    while (active < dlogits.size() && dlogits[active].size() > 0) ++active;
    // carry[kk]: ∂L/∂hᵏ from module k+1 (and, below, from module k's own head).
    std::vector<Matrix<T>> carry(active);
    for (std::size_t kk = 0; kk < active; ++kk) carry[kk] = xt::zeros<T>({B * A.mtp[kk].seq_len, D});
    for (std::size_t kk = active; kk-- > 0;) {
        const MtpActivations<T>& M = A.mtp[kk];
        const MtpModule<T>& mod = m.w.mtp[kk];
        MtpModule<T>& gm = g.mtp[kk];
        const std::size_t n = B * M.seq_len;
        // Shared head: logits = out_n·headᵀ ⇒ dout_n = dlogits·head, dhead += dlogitsᵀ·out_n.
        Matrix<T> dout_n = Matrix<T>::from_shape({n, D});
        gemm(Op::N, Op::N, n, D, V, dlogits[kk].data(), V, m.w.head.data(), D, dout_n.data(), D);
        gemm(Op::T, Op::N, V, D, n, dlogits[kk].data(), V, M.out_n.data(), D, g.head.data(), D, true);
        Matrix<T>& dx = carry[kk];
        rmsnorm_rows_grad_add(dout_n, M.out, mod.head_norm, M.out_rstd, dx, gm.head_norm);
        block_backward(m, mod.block, M.block, dx, gm.block);  // dx: ∂L/∂h' (the block's input)
        // h' = cat·eh_projᵀ ⇒ dcat = dx·eh_proj, deh_proj += dxᵀ·cat.
        Matrix<T> dcat = Matrix<T>::from_shape({n, 2 * D});
        gemm(Op::N, Op::N, n, 2 * D, D, dx.data(), D, mod.eh_proj.data(), 2 * D, dcat.data(), 2 * D);
        gemm(Op::T, Op::N, D, 2 * D, n, dx.data(), D, M.cat.data(), 2 * D, gm.eh_proj.data(), 2 * D, true);
        Matrix<T> den = Matrix<T>::from_shape({n, D}), dhn = Matrix<T>::from_shape({n, D});
        for (std::size_t i = 0; i < n; ++i) {
            std::copy_n(dcat.data() + i * 2 * D, D, den.data() + i * D);
            std::copy_n(dcat.data() + i * 2 * D + D, D, dhn.data() + i * D);
        }
        Matrix<T> de = xt::zeros<T>({n, D}), dh = xt::zeros<T>({n, D});
        rmsnorm_rows_grad_add(den, M.e, mod.enorm, M.e_rstd, de, gm.enorm);
        rmsnorm_rows_grad_add(dhn, M.h, mod.hnorm, M.h_rstd, dh, gm.hnorm);
        // The shared embedding: row t_{i+k} receives de of position i.
        const std::vector<Token> tok = shifted(inputs, B, T_, kk + 1);
        for (std::size_t i = 0; i < n; ++i) {
            T* row = g.embed.data() + std::size_t(tok[i]) * D;
            for (std::size_t c = 0; c < D; ++c) row[c] += de(i, c);
        }
        // hᵏ⁻¹: the previous module's output, or the main model's last block for k = 1.
        if (kk == 0) add_leading_rows(dh, B, M.seq_len, dx_main, T_);
        else add_leading_rows(dh, B, M.seq_len, carry[kk - 1], M.seq_len + 1);
    }
}

// ------------------------------------------------------------------------------- speculative decoding

template <class T>
SpeculativeGenerator<T>::SpeculativeGenerator(const Model<T>& m, std::size_t capacity, std::size_t depth)
    : m_(m), capacity_(capacity), depth_(depth == 0 ? m.w.mtp.size() : depth),
      main_(m, AttentionCache::absorbed, capacity) {
    if (m.w.mtp.empty())
        throw ConfigError("speculative decoding needs MTP modules (n_mtp_layers > 0; train with --mtp)");
    if (depth_ > m.w.mtp.size())
        throw ConfigError("speculative depth " + std::to_string(depth_) + " exceeds the model's " +
                          std::to_string(m.w.mtp.size()) + " MTP modules");
    for (std::size_t k = 0; k < depth_; ++k) caches_.emplace_back(m.args, capacity);
    hidden_.assign(depth_ + 1, {});
}

template <class T>
Token SpeculativeGenerator<T>::start(const std::vector<Token>& prompt, const SamplingConfig& s, Rng& rng) {
    if (!tokens_.empty()) throw ConfigError("SpeculativeGenerator::start: already started");
    Matrix<T> h;
    const Matrix<T> logits = main_.feed_all(prompt, &h);
    hidden_[0].assign(h.begin(), h.end());
    tokens_ = prompt;
    const std::size_t V = logits.shape(1);
    const std::vector<float> last(logits.data() + (prompt.size() - 1) * V, logits.data() + prompt.size() * V);
    tokens_.push_back(sample_from(sampling_distribution(last, s), rng));
    return tokens_.back();
}

// Drafts `depth` tokens after the newest one and returns each draft's distribution q.
// With P tokens in the main cache and t_P the newest (not fed yet), module k's entry at position j
// needs hᵏ⁻¹_j and t_{j+k}: final for j ≤ P − k, drafted above. Each module first catches up on the
// positions it lacks, drafts from position P − 1, and is rolled back to its final entries afterwards.
template <class T>
std::vector<std::vector<double>> SpeculativeGenerator<T>::draft(const SamplingConfig& s, Rng& rng, std::size_t depth) {
    const std::size_t P = main_.length(), D = std::size_t(m_.args.dim);
    std::vector<Token> seq = tokens_;  // t_0 … t_P, then the drafts
    std::vector<std::vector<double>> q;
    drafts_.clear();
    for (std::size_t kk = 0; kk < depth; ++kk) {
        const std::size_t k = kk + 1, c = caches_[kk].length;  // c < P: every round adds a final position
        const std::size_t n = P - c;
        Matrix<T> h = Matrix<T>::from_shape({n, D});
        std::copy_n(hidden_[kk].data() + c * D, n * D, h.data());
        const std::vector<Token> next(seq.begin() + std::ptrdiff_t(c + k), seq.begin() + std::ptrdiff_t(P + k));
        const MtpModule<T>& mod = m_.w.mtp[kk];
        MtpActivations<T> A;
        const Matrix<T> x = project(mod, embed_tokens(m_, next), h, A);
        const Matrix<T> out = block_decode(m_, mod.block, caches_[kk], x);
        hidden_[kk + 1].insert(hidden_[kk + 1].end(), out.begin(), out.end());
        const Matrix<T> last = xt::view(out, xt::range(n - 1, n), xt::all());
        const Matrix<T> logits = head_logits(m_, mod, last, A.out_n, A.out_rstd);
        q.push_back(sampling_distribution(std::vector<float>(logits.begin(), logits.end()), s));
        drafts_.push_back(sample_from(q.back(), rng));
        seq.push_back(drafts_.back());
    }
    for (std::size_t kk = 0; kk < depth; ++kk) {  // keep only entries whose inputs are final
        const std::size_t keep = P > kk ? P - kk : 0;  // positions j ≤ P − (kk+1)
        caches_[kk].truncate(std::min(keep, caches_[kk].length));
        hidden_[kk + 1].resize(caches_[kk].length * D);
    }
    return q;
}

template <class T>
std::vector<Token> SpeculativeGenerator<T>::step(const SamplingConfig& s, Rng& rng) {
    if (tokens_.empty()) throw ConfigError("SpeculativeGenerator::step: call start first");
    const std::size_t P = main_.length(), D = std::size_t(m_.args.dim);
    if (P + 1 > capacity_) return {};
    const std::size_t depth = std::min(depth_, capacity_ - P - 1);  // the verify feed must fit the cache
    const std::vector<std::vector<double>> q = draft(s, rng, depth);

    std::vector<Token> feed{tokens_.back()};
    feed.insert(feed.end(), drafts_.begin(), drafts_.end());
    Matrix<T> h;
    const Matrix<T> logits = main_.feed_all(feed, &h);  // row j: the main model's p for the token after feed[j]
    const std::size_t V = logits.shape(1);
    auto p_at = [&](std::size_t j) {
        return sampling_distribution(std::vector<float>(logits.data() + j * V, logits.data() + (j + 1) * V), s);
    };
    std::vector<Token> out;
    std::size_t a = 0;
    Token next = 0;
    for (;; ++a) {
        const std::vector<double> p = p_at(a);
        if (a == depth) {  // every draft accepted: the last row gives one more token for free
            next = sample_from(p, rng);
            break;
        }
        const Token d = drafts_[a];
        const double ratio = p[std::size_t(d)] / q[a][std::size_t(d)];
        if (ratio >= 1 || double(rng.uniform()) < ratio) {
            out.push_back(d);
            continue;
        }
        // Rejected: draw from the residual max(0, p − q), renormalized (its mass is Σ max(0, q − p) > 0).
        std::vector<double> r(V);
        double sum = 0;
        for (std::size_t v = 0; v < V; ++v) sum += r[v] = std::max(0.0, p[v] - q[a][v]);
        if (sum <= 0) r = p;  // only through rounding (p ≈ q): p itself is then the right law
        else
            for (double& x : r) x /= sum;
        next = sample_from(r, rng);
        break;
    }
    main_.truncate(P + a + 1);  // x and the accepted drafts stay; the positions past them go
    hidden_[0].insert(hidden_[0].end(), h.data(), h.data() + (a + 1) * D);
    tokens_.insert(tokens_.end(), out.begin(), out.end());
    tokens_.push_back(next);
    out.push_back(next);
    stats_.drafted += depth;
    stats_.accepted += a;
    stats_.rounds += 1;
    last_accepted_ = a;
    return out;
}

// ----------------------------------------------------------------- speculative and plain side by side
namespace {
using Seconds = std::chrono::duration<double>;

std::size_t speculative_capacity(const Model<float>& m, const std::vector<Token>& prompt, std::size_t max_new_tokens) {
    const std::size_t max_len = std::size_t(m.args.max_seq_len);
    if (prompt.empty()) throw ConfigError("speculative decoding: the prompt is empty");
    if (prompt.size() >= max_len)
        throw ConfigError("speculative decoding: the prompt (" + std::to_string(prompt.size()) +
                          " tokens) fills the context (max_seq_len " + std::to_string(max_len) + ")");
    return std::min(max_len, prompt.size() + max_new_tokens);
}
}  // namespace

SpeculativeRun::SpeculativeRun(const Model<float>& m, const std::vector<Token>& prompt, std::size_t max_new_tokens,
                               const SamplingConfig& sampling, std::uint64_t seed)
    : sampling_(sampling), max_new_tokens_(max_new_tokens),
      capacity_(speculative_capacity(m, prompt, max_new_tokens)), gen_(m, capacity_),
      plain_(m, AttentionCache::absorbed, capacity_), rng_(seed), plain_rng_(seed) {
    auto t0 = std::chrono::steady_clock::now();
    tokens.push_back(gen_.start(prompt, sampling_, rng_));
    drafted.push_back(0);
    seconds += Seconds(std::chrono::steady_clock::now() - t0).count();
    t0 = std::chrono::steady_clock::now();
    plain_logits_ = plain_.feed(prompt);
    plain_seconds += Seconds(std::chrono::steady_clock::now() - t0).count();
    if (max_new_tokens_ <= 1) {  // start() drew every token asked for (or one more than 0)
        tokens.resize(max_new_tokens_);
        drafted.resize(max_new_tokens_);
        done_ = true;
    }
}

bool SpeculativeRun::step_speculative() {
    if (done_) return false;
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<Token> t = gen_.step(sampling_, rng_);
    seconds += Seconds(std::chrono::steady_clock::now() - t0).count();
    if (t.empty()) {  // the cache is full
        done_ = true;
        return false;
    }
    const std::size_t a = gen_.last_accepted();
    if (a < gen_.last_drafts().size()) rejected.emplace_back(tokens.size() + a, gen_.last_drafts()[a]);
    for (std::size_t i = 0; i < t.size(); ++i) {
        tokens.push_back(t[i]);
        drafted.push_back(i < a ? 1 : 0);
    }
    if (tokens.size() >= max_new_tokens_) {  // the round may overshoot: keep the first max_new_tokens
        tokens.resize(max_new_tokens_);
        drafted.resize(max_new_tokens_);
        done_ = true;
    }
    return true;
}

bool SpeculativeRun::plain_done() const {
    return plain_tokens.size() >= max_new_tokens_ || plain_.length() >= capacity_;
}

bool SpeculativeRun::step_plain() {
    if (plain_done()) return false;
    const auto t0 = std::chrono::steady_clock::now();
    plain_tokens.push_back(sample_token(plain_logits_, sampling_, plain_rng_));
    plain_logits_ = plain_.feed({plain_tokens.back()});
    plain_seconds += Seconds(std::chrono::steady_clock::now() - t0).count();
    return true;
}

nlohmann::json SpeculativeRun::to_json() const {
    const SpeculativeStats& st = stats();
    const double tps = double(tokens.size()) / seconds, plain_tps = double(plain_tokens.size()) / plain_seconds;
    return {{"text", decode_bytes(tokens)}, {"new_tokens", tokens.size()}, {"drafted", st.drafted},
            {"accepted", st.accepted}, {"acceptance_rate", st.acceptance_rate()}, {"verify_forwards", st.rounds},
            {"rejected", rejected.size()}, {"accepted_shown", std::count(drafted.begin(), drafted.end(), 1)},
            {"plain_tokens", plain_tokens.size()}, {"spec_ms", 1000 * seconds}, {"plain_ms", 1000 * plain_seconds},
            {"tokens_per_s", tps}, {"plain_tokens_per_s", plain_tps}, {"speedup", tps / plain_tps},
            {"identical_to_plain", plain_tokens == tokens}};
}

#define EVA_MTP_INSTANCES(T)                                                                                   \
    template void mtp_forward<T>(const Model<T>&, const std::vector<Token>&, ModelActivations<T>&, bool);       \
    template void mtp_loss<T>(const Model<T>&, const std::vector<Token>&, const ModelActivations<T>&, Loss&,    \
                              std::vector<Matrix<T>>*);                                                        \
    template void mtp_backward<T>(const Model<T>&, const std::vector<Token>&, const ModelActivations<T>&,       \
                                  const std::vector<Matrix<T>>&, ModelWeights<T>&, Matrix<T>&);                \
    template class SpeculativeGenerator<T>;
EVA_MTP_INSTANCES(float)
EVA_MTP_INSTANCES(double)
#undef EVA_MTP_INSTANCES

}  // namespace eva
