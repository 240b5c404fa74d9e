// eva — the assembled model: forward, hand-written backward, balancing, token-by-token generation.
#include "eva/model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <xtensor/xview.hpp>

#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/gemm.hpp"
#include "eva/rmsnorm.hpp"
#include "eva/train.hpp"

namespace eva {

template <class T>
std::size_t NamedTensor<T>::size() const {
    return std::accumulate(shape.begin(), shape.end(), std::size_t(1), std::multiplies<>());
}

namespace {

template <class T, class E>
NamedTensor<T> named(const std::string& name, E& t, bool trainable = true) {
    std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
    return {name, t.data(), shape, trainable, shape.size() == 2};
}

template <class T>
void add_mlp(std::vector<NamedTensor<T>>& out, const std::string& prefix, Mlp<T>& m) {
    out.push_back(named<T>(prefix + "w1.weight", m.w1));
    out.push_back(named<T>(prefix + "w2.weight", m.w2));
    out.push_back(named<T>(prefix + "w3.weight", m.w3));
}

// One block's tensors under `p` ("layers.{i}."): the official names of attention, norms and FFN.
template <class T>
void add_block(std::vector<NamedTensor<T>>& out, const std::string& p, Block<T>& b) {
    out.push_back(named<T>(p + "attn_norm.weight", b.attn_norm));
    b.attn.visit([&](const std::string& name, auto& t) { out.push_back(named<T>(p + "attn." + name + ".weight", t)); });
    out.push_back(named<T>(p + "ffn_norm.weight", b.ffn_norm));
    if (b.dense) {
        add_mlp(out, p + "ffn.", b.mlp);
        return;
    }
    out.push_back(named<T>(p + "ffn.gate.weight", b.moe.gate));
    if (!b.moe.bias.empty())  // the selection bias: set by the balancing rule, never by gradients
        out.push_back({p + "ffn.gate.bias", b.moe.bias.data(), {b.moe.bias.size()}, false, false});
    for (std::size_t j = 0; j < b.moe.experts.size(); ++j)
        add_mlp(out, p + "ffn.experts." + std::to_string(j) + ".", b.moe.experts[j]);
    if (b.moe.cfg.n_shared_experts > 0) add_mlp(out, p + "ffn.shared_experts.", b.moe.shared);
}

// A freshly allocated block of layer index `l`: norm gains 1, every other tensor 0. Index l <
// n_dense_layers is dense; every later one (MTP modules included, as layer 61 of V3) is MoE.
template <class T>
Block<T> block_alloc(const ModelArgs& args, const MoeConfig& moe, std::int64_t l) {
    const std::size_t D = std::size_t(args.dim);
    Block<T> b;
    b.attn_norm = xt::ones<T>({D});
    b.ffn_norm = xt::ones<T>({D});
    b.attn = mla_zeros<T>(args);
    b.dense = l < args.n_dense_layers;
    if (b.dense) b.mlp = Mlp<T>::zeros(D, std::size_t(args.inter_dim));
    else b.moe = Moe<T>::zeros(moe);
    return b;
}

template <class T>
void block_init(const ModelArgs& args, const MoeConfig& moe, Block<T>& b, Rng& rng, double std) {
    b.attn = mla_init<T>(args, rng, std);
    if (b.dense) b.mlp = Mlp<T>::random(std::size_t(args.dim), std::size_t(args.inter_dim), rng, float(std));
    else b.moe = Moe<T>::random(moe, rng, float(std));
}

}  // namespace

template <class T>
std::vector<NamedTensor<T>> named_tensors(ModelWeights<T>& w) {
    std::vector<NamedTensor<T>> out;
    out.push_back(named<T>("embed.weight", w.embed));
    for (std::size_t i = 0; i < w.layers.size(); ++i) add_block(out, "layers." + std::to_string(i) + ".", w.layers[i]);
    out.push_back(named<T>("norm.weight", w.norm));
    out.push_back(named<T>("head.weight", w.head));
    // MTP module k continues the layer numbering, as in DeepSeek-V3's release (its module is layers.61).
    for (std::size_t k = 0; k < w.mtp.size(); ++k) {
        MtpModule<T>& mod = w.mtp[k];
        const std::string p = "layers." + std::to_string(w.layers.size() + k) + ".";
        out.push_back(named<T>(p + "enorm.weight", mod.enorm));
        out.push_back(named<T>(p + "hnorm.weight", mod.hnorm));
        out.push_back(named<T>(p + "eh_proj.weight", mod.eh_proj));
        add_block(out, p, mod.block);
        out.push_back(named<T>(p + "shared_head.norm.weight", mod.head_norm));
    }
    return out;
}

template <class T>
Model<T> model_alloc(const ModelArgs& args, const MoeConfig& moe) {
    args.validate();
    moe.validate();
    // Asked before a byte is allocated: a V2-Lite model in fp32 is 63 GB, and Linux would grant it
    // lazily and kill the process while the zeros are written.
    require_memory(model_bytes(args, moe, sizeof(T)), "the model");
    Model<T> m{args, moe, make_rope(args), {}};
    const std::size_t V = std::size_t(args.vocab_size), D = std::size_t(args.dim);
    m.w.embed = Matrix<T>::from_shape({V, D});
    m.w.head = Matrix<T>::from_shape({V, D});
    m.w.norm = xt::ones<T>({D});
    for (std::int64_t i = 0; i < args.n_layers; ++i) m.w.layers.push_back(block_alloc<T>(args, moe, i));
    for (std::int64_t k = 0; k < args.n_mtp_layers; ++k) {
        MtpModule<T> mod;
        mod.enorm = xt::ones<T>({D});
        mod.hnorm = xt::ones<T>({D});
        mod.eh_proj = xt::zeros<T>({D, 2 * D});
        mod.block = block_alloc<T>(args, moe, args.n_layers + k);
        mod.head_norm = xt::ones<T>({D});
        m.w.mtp.push_back(std::move(mod));
    }
    return m;
}

template <class T>
Model<T> model_init(const ModelArgs& args, const MoeConfig& moe, Rng& rng, double std) {
    Model<T> m = model_alloc<T>(args, moe);
    for (T& v : m.w.embed) v = T(rng.normal() * std);
    for (T& v : m.w.head) v = T(rng.normal() * std);
    for (Block<T>& b : m.w.layers) block_init(args, moe, b, rng, std);
    // Drawn after the main model, so a model with MTP starts from the same main weights as one without.
    for (MtpModule<T>& mod : m.w.mtp) {
        for (T& v : mod.eh_proj) v = T(rng.normal() * std);
        block_init(args, moe, mod.block, rng, std);
    }
    return m;
}

Model<float> fresh_model(const ModelArgs& args, std::uint64_t seed, Balance balance, double gamma, double alpha) {
    Rng rng(seed);
    return model_init<float>(args, moe_config(args, balance, gamma, alpha), rng);
}

void set_gamma(Model<float>& m, double gamma) {
    MoeConfig c = m.moe;
    c.gamma = gamma;
    c.validate();
    m.moe = c;
    for (auto& b : m.w.layers)
        if (!b.dense) b.moe.cfg.gamma = gamma;
    for (auto& k : m.w.mtp)
        if (!k.block.dense) k.block.moe.cfg.gamma = gamma;
}

template <class T>
ModelWeights<T> model_zeros(const Model<T>& m) {
    ModelWeights<T> g = model_alloc<T>(m.args, m.moe).w;
    for (auto& t : named_tensors(g)) std::fill(t.data, t.data + t.size(), T(0));
    return g;
}

std::uint64_t parameter_count(const ModelArgs& a, bool activated_only) {
    // Checked arithmetic throughout (checked.hpp): the fields come from untrusted configs, and V3 has
    // 6.7e11 parameters, beyond a 32-bit size_t (WebAssembly) — so u64, and ConfigError above 2^48.
    using u64 = std::uint64_t;
    auto mul = [](u64 x, u64 y, const char* what) { return checked_mul(x, y, what); };
    auto add = [](u64 x, u64 y, const char* what) { return checked_add(x, y, what); };
    const u64 D = u64(a.dim), H = u64(a.n_heads), qk = u64(a.qk_head_dim()), kv = u64(a.kv_lora_rank),
              rope = u64(a.qk_rope_head_dim), qr = u64(a.q_lora_rank);
    const u64 q_out = mul(H, qk, "n_heads x qk_head_dim");
    const u64 q = qr == 0 ? mul(q_out, D, "wq") : add(add(mul(qr, D, "wq_a"), qr, "q_norm"), mul(q_out, qr, "wq_b"), "attention");
    const u64 wkv_b = mul(mul(H, u64(a.qk_nope_head_dim + a.v_head_dim), "n_heads x (qk_nope_head_dim + v_head_dim)"), kv, "wkv_b");
    const u64 wo = mul(D, mul(H, u64(a.v_head_dim), "n_heads x v_head_dim"), "wo");
    const u64 attn = add(add(add(q, mul(kv + rope, D, "wkv_a"), "attention"), add(kv, wkv_b, "attention"), "attention"), wo, "attention");
    const u64 expert = mul(3, mul(D, u64(a.moe_inter_dim), "dim x moe_inter_dim"), "an expert");
    const u64 routed = u64(activated_only ? a.n_activated_experts : a.n_routed_experts);
    const u64 moe = add(add(mul(u64(a.n_routed_experts), D, "the gate"), mul(routed, expert, "the routed experts"), "a MoE layer"),
                        mul(u64(a.n_shared_experts), expert, "the shared experts"), "a MoE layer");
    const u64 dense = mul(3, mul(D, u64(a.inter_dim), "dim x inter_dim"), "a dense MLP");
    const u64 embed_head = mul(2, mul(u64(a.vocab_size), D, "vocab_size x dim"), "embed + head");
    const u64 blocks = add(mul(u64(a.n_layers), add(attn, 2 * D, "a block"), "the attention layers"),
                           add(mul(u64(a.n_dense_layers), dense, "the dense layers"),
                               mul(u64(a.n_layers - a.n_dense_layers), moe, "the MoE layers"), "the FFN layers"),
                           "the layers");
    // An MTP module: enorm, hnorm, shared_head.norm, eh_proj [D, 2D] and one MoE block; the embedding
    // and the head are shared with the main model, so they are not counted again.
    const u64 mtp = add(add(3 * D, mul(2 * D, D, "eh_proj"), "an MTP module"), add(add(attn, 2 * D, "a block"), moe, "a block"),
                        "an MTP module");
    return add(add(add(embed_head, D, "the parameter count"), blocks, "the parameter count"),
               mul(u64(a.n_mtp_layers), mtp, "the MTP modules"), "the parameter count");
}

std::uint64_t model_bytes(const ModelArgs& a, const MoeConfig& moe, std::size_t scalar_bytes) {
    // Every tensor model_alloc makes: the parameters plus, with aux-free balancing, each MoE layer's
    // selection bias (a buffer, not a parameter).
    const std::uint64_t bias = moe.balance == Balance::aux_free ? std::uint64_t(a.n_routed_experts) : 0;
    const std::uint64_t n = checked_add(parameter_count(a), checked_mul(std::uint64_t(a.n_layers - a.n_dense_layers + a.n_mtp_layers), bias,
                                                                        "the selection biases"), "the model");
    return checked_mul(n, scalar_bytes, "the model's bytes");
}

namespace {

// FFN of one block on n rows: the dense SwiGLU or the MoE (seq_len groups rows for the seq-wise loss).
template <class T>
Matrix<T> ffn_forward(const Block<T>& b, const Matrix<T>& hn, std::size_t seq_len, LayerActivations<T>& L,
                      LinearMode precision, const NodeLimit& limit, ExpertParallel* ep) {
    const std::size_t n = hn.shape(0), D = hn.shape(1);
    Matrix<T> f = Matrix<T>::from_shape({n, D});
    if (b.dense) mlp_forward(b.mlp, hn.data(), n, f.data(), L.mlp, false, precision);
    else moe_forward(b.moe, hn.data(), n, seq_len, f.data(), L.moe, precision, limit, ep);
    return f;
}

}  // namespace

template <class T>
Matrix<T> embed_tokens(const Model<T>& m, const std::vector<Token>& tokens) {
    const std::size_t D = std::size_t(m.args.dim), V = std::size_t(m.args.vocab_size);
    Matrix<T> x = Matrix<T>::from_shape({tokens.size(), D});
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] < 0 || std::size_t(tokens[i]) >= V)
            throw ConfigError("token " + std::to_string(tokens[i]) + " outside the vocabulary (0.." + std::to_string(V - 1) + ")");
        std::copy_n(m.w.embed.data() + std::size_t(tokens[i]) * D, D, x.data() + i * D);
    }
    return x;
}

namespace {
// The one pre-norm block of DeepSeek-V3, around any attention (the full causal forward, or decoding through
// either cache): h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h)). L receives xn, h, hn and the FFN's
// cache. Every block of training, of the MTP modules and of generation goes through here.
template <class T, class Attention>
Matrix<T> pre_norm_block(const Block<T>& b, const Matrix<T>& x, std::size_t seq_len, LayerActivations<T>& L,
                         LinearMode precision, const NodeLimit& limit, ExpertParallel* ep, Attention&& attention) {
    rmsnorm_rows(x, b.attn_norm, L.xn, L.attn_rstd);
    L.h = x + attention(L.xn);
    rmsnorm_rows(L.h, b.ffn_norm, L.hn, L.ffn_rstd);
    return L.h + ffn_forward(b, L.hn, seq_len, L, precision, limit, ep);
}
}  // namespace

template <class T>
Matrix<T> block_forward(const Model<T>& m, std::size_t l, const Matrix<T>& x, std::size_t batch, std::size_t seq_len,
                        LayerActivations<T>& L, bool keep_attention) {
    return block_forward(m, m.w.layers.at(l), x, batch, seq_len, L, keep_attention);
}

template <class T>
Matrix<T> block_forward(const Model<T>& m, const Block<T>& b, const Matrix<T>& x, std::size_t batch,
                        std::size_t seq_len, LayerActivations<T>& L, bool keep_attention) {
    return pre_norm_block(b, x, seq_len, L, m.linear(), m.node_limit, m.expert_parallel, [&](const Matrix<T>& xn) {
        return mla_forward(m.args, m.rope, b.attn, xn, batch, seq_len, keep_attention ? &L.mla : nullptr, m.linear());
    });
}

template <class T>
Matrix<T> model_forward(const Model<T>& m, const std::vector<Token>& tokens, std::size_t batch, std::size_t seq_len,
                        ModelActivations<T>* acts) {
    if (batch * seq_len != tokens.size() || batch == 0 || seq_len == 0)
        throw ShapeError("model_forward: " + std::to_string(tokens.size()) + " tokens are not " + std::to_string(batch) +
                         " sequences of " + std::to_string(seq_len));
    if (seq_len > std::size_t(m.args.max_seq_len))
        throw ConfigError("seq_len " + std::to_string(seq_len) + " exceeds max_seq_len " + std::to_string(m.args.max_seq_len));
    ModelActivations<T> local;
    ModelActivations<T>& A = acts ? *acts : local;
    A.batch = batch;
    A.seq_len = seq_len;
    A.tokens = tokens;
    A.layers.resize(m.w.layers.size());
    Matrix<T> x = embed_tokens(m, tokens);
    for (std::size_t l = 0; l < m.w.layers.size(); ++l) {
        Matrix<T> next = block_forward(m, l, x, batch, seq_len, A.layers[l], acts != nullptr);
        if (acts) A.layers[l].x = std::move(x);
        x = std::move(next);
    }
    rmsnorm_rows(x, m.w.norm, A.xn, A.rstd);
    A.x = std::move(x);
    const std::size_t n = tokens.size(), V = std::size_t(m.args.vocab_size), D = std::size_t(m.args.dim);
    Matrix<T> logits = Matrix<T>::from_shape({n, V});
    gemm(Op::N, Op::T, n, V, D, A.xn.data(), D, m.w.head.data(), D, logits.data(), V);  // logits = norm(x)·headᵀ
    return logits;
}

template <class T>
void block_backward(const Model<T>& m, const Block<T>& b, const LayerActivations<T>& L, Matrix<T>& dx, Block<T>& gb) {
    const std::size_t n = dx.shape(0), D = dx.shape(1);
    // x_out = h + FFN(ffn_norm(h)): the residual passes dx to h unchanged.
    Matrix<T> dhn = Matrix<T>::from_shape({n, D});
    if (b.dense) mlp_backward(b.mlp, L.hn.data(), n, L.mlp, dx.data(), dhn.data(), gb.mlp, false, m.linear());
    else moe_backward(b.moe, L.hn.data(), L.moe, dx.data(), dhn.data(), gb.moe, m.linear(), m.expert_parallel);
    rmsnorm_rows_grad_add(dhn, L.h, b.ffn_norm, L.ffn_rstd, dx, gb.ffn_norm);  // dx now holds dL/dh
    // h = x + MLA(attn_norm(x)).
    const Matrix<T> dxn_attn = mla_backward(m.args, m.rope, b.attn, L.mla, dx, gb.attn, m.linear());
    rmsnorm_rows_grad_add(dxn_attn, L.x, b.attn_norm, L.attn_rstd, dx, gb.attn_norm);  // dx: dL/d(block input)
}

template <class T>
Loss model_loss(const Model<T>& m, const std::vector<Token>& inputs, const std::vector<Token>& targets,
                std::size_t batch, std::size_t seq_len) {
    ModelActivations<T> A;
    const Matrix<T> logits = model_forward(m, inputs, batch, seq_len, &A);
    if (targets.size() != inputs.size()) throw ShapeError("model_loss: inputs and targets differ in length");
    Loss loss;
    loss.cross_entropy = double(cross_entropy(logits.data(), targets.data(), inputs.size(), logits.shape(1)));
    for (const auto& L : A.layers) loss.balance += double(L.moe.balance_loss);
    if (!m.w.mtp.empty()) {
        mtp_forward(m, inputs, A, false);
        mtp_loss<T>(m, targets, A, loss, nullptr);
    }
    return loss;
}

template <class T>
Loss model_loss_and_grad(const Model<T>& m, const std::vector<Token>& inputs, const std::vector<Token>& targets,
                         std::size_t batch, std::size_t seq_len, ModelWeights<T>& g, ModelActivations<T>* acts) {
    if (targets.size() != inputs.size()) throw ShapeError("model_loss_and_grad: inputs and targets differ in length");
    ModelActivations<T> local;
    ModelActivations<T>& A = acts ? *acts : local;
    const Matrix<T> logits = model_forward(m, inputs, batch, seq_len, &A);
    const std::size_t n = inputs.size(), V = logits.shape(1), D = std::size_t(m.args.dim);

    Loss loss;
    Matrix<T> dlogits = Matrix<T>::from_shape({n, V});
    loss.cross_entropy = double(cross_entropy(logits.data(), targets.data(), n, V, dlogits.data()));
    for (const auto& L : A.layers) loss.balance += double(L.moe.balance_loss);

    // Output head and final norm: logits = xn·headᵀ ⇒ dxn = dlogits·head, dhead += dlogitsᵀ·xn.
    Matrix<T> dxn = Matrix<T>::from_shape({n, D});
    gemm(Op::N, Op::N, n, D, V, dlogits.data(), V, m.w.head.data(), D, dxn.data(), D);
    gemm(Op::T, Op::N, V, D, n, dlogits.data(), V, A.xn.data(), D, g.head.data(), D, true);
    Matrix<T> dx = xt::zeros<T>({n, D});
    rmsnorm_rows_grad_add(dxn, A.x, m.w.norm, A.rstd, dx, g.norm);

    // The MTP modules read the last block's output x: their gradient joins the main head's in dx.
    if (!m.w.mtp.empty()) {
        mtp_forward(m, inputs, A, true);
        std::vector<Matrix<T>> dlogits_mtp;
        mtp_loss(m, targets, A, loss, &dlogits_mtp);
        mtp_backward(m, inputs, A, dlogits_mtp, g, dx);
    }
    for (std::size_t l = m.w.layers.size(); l-- > 0;) block_backward(m, m.w.layers[l], A.layers[l], dx, g.layers[l]);
    for (std::size_t i = 0; i < n; ++i) {  // embedding rows receive their tokens' gradients
        T* row = g.embed.data() + std::size_t(inputs[i]) * D;
        for (std::size_t d = 0; d < D; ++d) row[d] += dx(i, d);
    }
    return loss;
}

template <class T>
std::vector<const MoeCache<T>*> moe_caches(const Model<T>& m, const ModelActivations<T>& acts) {
    std::vector<const MoeCache<T>*> out;
    for (std::size_t l = 0; l < m.w.layers.size(); ++l)
        if (!m.w.layers[l].dense) out.push_back(&acts.layers[l].moe);
    for (std::size_t k = 0; k < m.w.mtp.size() && k < acts.mtp.size(); ++k)  // the MTP blocks balance too
        if (!m.w.mtp[k].block.dense) out.push_back(&acts.mtp[k].block.moe);
    return out;
}

template <class T>
std::vector<std::vector<std::size_t>> balance_counts(const Model<T>& m, const ModelActivations<T>& acts) {
    std::vector<std::vector<std::size_t>> out;
    for (const MoeCache<T>* c : moe_caches(m, acts)) out.push_back(expert_counts(c->routing));
    return out;
}

template <class T>
void update_balance_bias(Model<T>& m, const std::vector<std::vector<std::size_t>>& counts) {
    std::size_t i = 0;
    auto update = [&](Block<T>& b) {
        if (b.dense) return;
        if (i >= counts.size()) throw ShapeError("update_balance_bias: fewer expert counts than MoE blocks");
        if (!b.moe.bias.empty()) update_bias(b.moe.bias, counts[i], b.moe.cfg.gamma);
        ++i;
    };
    for (auto& b : m.w.layers) update(b);
    // Only the MTP modules the forward ran (counts has their blocks after the main layers).
    for (std::size_t k = 0; k < m.w.mtp.size() && i < counts.size(); ++k) update(m.w.mtp[k].block);
}

template <class T>
void update_balance_bias(Model<T>& m, const ModelActivations<T>& acts) {
    update_balance_bias(m, balance_counts(m, acts));
}

template <class T>
Generator<T>::Generator(const Model<T>& m, AttentionCache kind, std::size_t capacity) : m_(m), kind_(kind) {
    for (std::size_t l = 0; l < m.w.layers.size(); ++l) {
        if (kind == AttentionCache::naive) naive_.emplace_back(m.args, capacity);
        else absorbed_.emplace_back(m.args, capacity);
    }
    attention_.resize(m.w.layers.size());
}

template <class T>
const MLAAbsorbedCache<T>& Generator<T>::absorbed_cache(std::size_t layer) const {
    if (kind_ != AttentionCache::absorbed)
        throw ConfigError("Generator::absorbed_cache: this generator keeps the naive cache");
    return absorbed_.at(layer);
}

template <class T>
std::vector<T> Generator<T>::attention_window(std::size_t layer, std::size_t first) const {
    const std::size_t L = length();
    if (first > L) throw ShapeError("Generator::attention_window: first position beyond the cache");
    const std::vector<T>& p = attention_.at(layer);  // [H, L]
    const std::size_t H = p.size() / std::max<std::size_t>(L, 1), n = L - first;
    std::vector<T> w(H * n);
    for (std::size_t h = 0; h < H; ++h)
        std::copy(p.begin() + std::ptrdiff_t(h * L + first), p.begin() + std::ptrdiff_t(h * L + L), w.begin() + std::ptrdiff_t(h * n));
    return w;
}

template <class T>
std::vector<T> Generator<T>::latent_window(std::size_t layer, std::size_t first) const {
    const MLAAbsorbedCache<T>& c = absorbed_cache(layer);
    if (first > c.length) throw ShapeError("Generator::latent_window: first position beyond the cache");
    const std::size_t R = c.kv_lora_rank, n = c.length - first;
    std::vector<T> w(R * n);
    for (std::size_t t = 0; t < n; ++t)
        for (std::size_t j = 0; j < R; ++j) w[j * n + t] = c.kv[(first + t) * R + j];
    return w;
}

template <class T>
std::size_t Generator<T>::length() const {
    return kind_ == AttentionCache::naive ? naive_.front().length : absorbed_.front().length;
}

template <class T>
std::size_t Generator<T>::cache_floats() const {
    std::size_t f = 0;
    for (const auto& c : naive_) f += c.floats();
    for (const auto& c : absorbed_) f += c.floats();
    return f;
}

template <class T>
Matrix<T> block_decode(const Model<T>& m, const Block<T>& b, MLAAbsorbedCache<T>& cache, const Matrix<T>& x,
                       std::vector<T>* last_probs) {
    LayerActivations<T> L;  // generation is always fp32 (Model::precision is a training setting)
    return pre_norm_block(b, x, x.shape(0), L, LinearPrecision::fp32, NodeLimit{}, nullptr, [&](const Matrix<T>& xn) {
        return mla_decode(m.args, m.rope, b.attn, cache, xn, last_probs);
    });
}

template <class T>
Matrix<T> Generator<T>::hidden_states(const std::vector<Token>& tokens) {
    if (tokens.empty()) throw ShapeError("Generator::feed: no tokens");
    Matrix<T> x = embed_tokens(m_, tokens);
    for (std::size_t l = 0; l < m_.w.layers.size(); ++l) {
        const Block<T>& b = m_.w.layers[l];
        if (kind_ == AttentionCache::absorbed) {
            x = block_decode(m_, b, absorbed_[l], x, &attention_[l]);
        } else {  // the same block through the naive per-head cache
            LayerActivations<T> L;
            x = pre_norm_block(b, x, x.shape(0), L, LinearPrecision::fp32, NodeLimit{}, nullptr, [&](const Matrix<T>& xn) {
                return mla_decode(m_.args, m_.rope, b.attn, naive_[l], xn, &attention_[l]);
            });
        }
    }
    return x;
}

template <class T>
std::vector<T> Generator<T>::feed(const std::vector<Token>& tokens) {
    const Matrix<T> x = hidden_states(tokens);
    const std::size_t n = tokens.size(), D = std::size_t(m_.args.dim), V = std::size_t(m_.args.vocab_size);
    Matrix<T> last = xt::view(x, xt::range(n - 1, n), xt::all());
    Matrix<T> xn;
    std::vector<T> rstd;
    rmsnorm_rows(last, m_.w.norm, xn, rstd);
    std::vector<T> logits(V);
    gemm(Op::N, Op::T, 1, V, D, xn.data(), D, m_.w.head.data(), D, logits.data(), V);
    return logits;
}

template <class T>
Matrix<T> Generator<T>::feed_all(const std::vector<Token>& tokens, Matrix<T>* hidden) {
    Matrix<T> x = hidden_states(tokens);
    const std::size_t n = tokens.size(), D = std::size_t(m_.args.dim), V = std::size_t(m_.args.vocab_size);
    Matrix<T> xn;
    std::vector<T> rstd;
    rmsnorm_rows(x, m_.w.norm, xn, rstd);
    Matrix<T> logits = Matrix<T>::from_shape({n, V});
    // Row by row, as feed() computes its single row: every verified token's logits are then bit for bit
    // those of plain decoding, whatever the GEMM's blocking over rows.
    for (std::size_t i = 0; i < n; ++i)
        gemm(Op::N, Op::T, 1, V, D, xn.data() + i * D, D, m_.w.head.data(), D, logits.data() + i * V, V);
    if (hidden) *hidden = std::move(x);
    return logits;
}

template <class T>
void Generator<T>::truncate(std::size_t length) {
    for (auto& c : naive_) c.truncate(length);
    for (auto& c : absorbed_) c.truncate(length);
}

namespace {

// The candidates sample_token draws from: token ids by decreasing logit, their unnormalized
// probabilities exp((z − z_max)/temperature) and how many survive top-k and top-p; `sum` is theirs.
struct Candidates {
    std::vector<std::size_t> order;
    std::vector<double> p;
    std::size_t keep = 0;
    double sum = 0;
};

Candidates candidates(const std::vector<float>& logits, const SamplingConfig& s) {
    Candidates c;
    c.order.resize(logits.size());
    std::iota(c.order.begin(), c.order.end(), 0);
    std::stable_sort(c.order.begin(), c.order.end(), [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
    c.keep = s.top_k > 0 ? std::min<std::size_t>(std::size_t(s.top_k), c.order.size()) : c.order.size();
    c.p.resize(c.keep);
    for (std::size_t i = 0; i < c.keep; ++i)
        c.sum += c.p[i] = std::exp((logits[c.order[i]] - logits[c.order[0]]) / s.temperature);
    if (s.top_p < 1) {  // nucleus: the smallest prefix whose probability reaches top_p
        double cum = 0;
        std::size_t i = 0;
        while (i < c.keep && cum < s.top_p * c.sum) cum += c.p[i++];
        c.keep = std::max<std::size_t>(1, i);
        c.sum = cum;
    }
    return c;
}

void check_sampling(const std::vector<float>& logits, const SamplingConfig& s) {
    if (logits.empty()) throw ShapeError("sample_token: empty logits");
    if (s.temperature < 0 || s.top_k < 0 || !(s.top_p > 0 && s.top_p <= 1))
        throw ConfigError("sampling: temperature >= 0, top_k >= 0 and 0 < top_p <= 1 are required");
}

}  // namespace

Token sample_token(const std::vector<float>& logits, const SamplingConfig& s, Rng& rng) {
    check_sampling(logits, s);
    if (s.temperature == 0)  // greedy; ties go to the lowest token
        return Token(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const Candidates c = candidates(logits, s);
    double u = double(rng.uniform()) * c.sum;
    for (std::size_t i = 0; i < c.keep; ++i)
        if ((u -= c.p[i]) < 0) return Token(c.order[i]);
    return Token(c.order[c.keep - 1]);
}

std::vector<double> sampling_distribution(const std::vector<float>& logits, const SamplingConfig& s) {
    check_sampling(logits, s);
    std::vector<double> p(logits.size(), 0.0);
    if (s.temperature == 0) {
        p[std::size_t(std::max_element(logits.begin(), logits.end()) - logits.begin())] = 1;
        return p;
    }
    const Candidates c = candidates(logits, s);
    for (std::size_t i = 0; i < c.keep; ++i) p[c.order[i]] = c.p[i] / c.sum;
    return p;
}

Token sample_from(const std::vector<double>& p, Rng& rng) {
    if (p.empty()) throw ShapeError("sample_from: empty distribution");
    double u = double(rng.uniform());
    std::size_t last = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        if (p[i] <= 0) continue;
        last = i;
        if ((u -= p[i]) < 0) return Token(i);
    }
    return Token(last);  // u landed in the rounding slack above the total: the last possible token
}

std::string sample_text(const Model<float>& m, const std::string& prompt, int n, std::uint64_t seed) {
    const std::size_t capacity = std::min(std::size_t(m.args.max_seq_len), prompt.size() + std::size_t(n));
    Generator<float> gen(m, AttentionCache::absorbed, capacity);
    Rng rng(seed, 7);
    auto logits = gen.feed(encode_bytes(prompt));
    std::vector<Token> out;
    for (int i = 0; i < n && gen.length() < std::size_t(m.args.max_seq_len); ++i) {
        out.push_back(sample_token(logits, {0.8, 40, 1.0}, rng));
        logits = gen.feed({out.back()});
    }
    return decode_bytes(out);
}

// ------------------------------------------------------------------------------- caches in lockstep
CacheLockstep::CacheLockstep(const Model<float>& m, std::vector<Token> given, std::size_t capacity, std::uint64_t seed)
    : absorbed(m, AttentionCache::absorbed, capacity), naive(m, AttentionCache::naive, capacity),
      tokens(std::move(given)), capacity_(capacity), rng_(seed) {
    if (capacity == 0) throw ConfigError("lockstep decoding: capacity must be at least 1");
    if (tokens.empty()) tokens = encode_bytes("\n");
    if (tokens.size() > capacity - 1) tokens.resize(std::max<std::size_t>(capacity - 1, 1));
    prompt_len = tokens.size();
}

bool CacheLockstep::step(const SamplingConfig& s) {
    using ms = std::chrono::duration<double, std::milli>;
    const auto t0 = std::chrono::steady_clock::now();
    if (!naive_behind()) {
        if (fed_absorbed == tokens.size()) {
            if (finished()) return false;
            tokens.push_back(sample_token(logits_absorbed, s, rng_));
        }
        logits_absorbed = absorbed.feed({tokens[fed_absorbed]});
        last_ms_absorbed = ms(std::chrono::steady_clock::now() - t0).count();
        ++fed_absorbed;
        ms_absorbed += (last_ms_absorbed - ms_absorbed) / double(fed_absorbed);  // running mean
        for (float v : logits_absorbed) logit_scale = std::max(logit_scale, double(std::abs(v)));
        return true;
    }
    logits_naive = naive.feed({tokens[fed_naive]});
    last_ms_naive = ms(std::chrono::steady_clock::now() - t0).count();
    ++fed_naive;
    ms_naive += (last_ms_naive - ms_naive) / double(fed_naive);
    last_diff = 0;
    for (std::size_t v = 0; v < logits_naive.size(); ++v)
        last_diff = std::max(last_diff, double(std::abs(logits_naive[v] - logits_absorbed[v])));
    max_diff = std::max(max_diff, last_diff);
    return true;
}

#define EVA_MODEL_INSTANCES(T)                                                                                    \
    template struct NamedTensor<T>;                                                                               \
    template std::vector<NamedTensor<T>> named_tensors<T>(ModelWeights<T>&);                                      \
    template Model<T> model_alloc<T>(const ModelArgs&, const MoeConfig&);                                         \
    template Model<T> model_init<T>(const ModelArgs&, const MoeConfig&, Rng&, double);                            \
    template ModelWeights<T> model_zeros<T>(const Model<T>&);                                                     \
    template Matrix<T> model_forward<T>(const Model<T>&, const std::vector<Token>&, std::size_t, std::size_t,     \
                                        ModelActivations<T>*);                                                    \
    template Matrix<T> embed_tokens<T>(const Model<T>&, const std::vector<Token>&);                                \
    template Matrix<T> block_forward<T>(const Model<T>&, std::size_t, const Matrix<T>&, std::size_t, std::size_t,  \
                                        LayerActivations<T>&, bool);                                              \
    template Matrix<T> block_forward<T>(const Model<T>&, const Block<T>&, const Matrix<T>&, std::size_t,           \
                                        std::size_t, LayerActivations<T>&, bool);                                 \
    template void block_backward<T>(const Model<T>&, const Block<T>&, const LayerActivations<T>&, Matrix<T>&,      \
                                    Block<T>&);                                                                   \
    template Matrix<T> block_decode<T>(const Model<T>&, const Block<T>&, MLAAbsorbedCache<T>&, const Matrix<T>&,   \
                                       std::vector<T>*);                                                          \
    template Loss model_loss<T>(const Model<T>&, const std::vector<Token>&, const std::vector<Token>&,            \
                                std::size_t, std::size_t);                                                        \
    template Loss model_loss_and_grad<T>(const Model<T>&, const std::vector<Token>&, const std::vector<Token>&,   \
                                         std::size_t, std::size_t, ModelWeights<T>&, ModelActivations<T>*);       \
    template void update_balance_bias<T>(Model<T>&, const ModelActivations<T>&);                                  \
    template void update_balance_bias<T>(Model<T>&, const std::vector<std::vector<std::size_t>>&);               \
    template std::vector<const MoeCache<T>*> moe_caches<T>(const Model<T>&, const ModelActivations<T>&);        \
    template std::vector<std::vector<std::size_t>> balance_counts<T>(const Model<T>&, const ModelActivations<T>&); \
    template class Generator<T>;
EVA_MODEL_INSTANCES(float)
EVA_MODEL_INSTANCES(double)
#undef EVA_MODEL_INSTANCES

}  // namespace eva
