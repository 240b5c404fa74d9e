// eva — Multi-head Latent Attention: batched causal forward/backward, naive and absorbed decoding,
// KV-cache memory accounting. See mla.hpp for the math.
#include "eva/mla.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/exp.hpp"
#include "eva/gemm.hpp"
#include "eva/json.hpp"
#include "parallel.hpp"
#include "eva/rmsnorm.hpp"
#include "sum.hpp"

namespace eva {
namespace {

using std::size_t;

// Sizes of one MLA layer, read once from the config.
struct Dims {
    size_t dim, H, qr, kvr, nope, rope, qk, v;
    explicit Dims(const ModelArgs& a)
        : dim(size_t(a.dim)), H(size_t(a.n_heads)), qr(size_t(a.q_lora_rank)), kvr(size_t(a.kv_lora_rank)),
          nope(size_t(a.qk_nope_head_dim)), rope(size_t(a.qk_rope_head_dim)), qk(nope + rope),
          v(size_t(a.v_head_dim)) {}
};

template <class T>
Matrix<T> zeros(size_t r, size_t c) {
    Matrix<T> m = Matrix<T>::from_shape({r, c});
    m.fill(T(0));
    return m;
}

template <class T>
Vector<T> zeros(size_t n) {
    Vector<T> m = Vector<T>::from_shape({n});
    m.fill(T(0));
    return m;
}

// Row-wise softmax of scores [rows, cols] after scaling, each row r seeing only columns <= last(r)
// (causal mask; masked entries become exactly 0). Max-subtracted, in the storage precision.
template <class T, class Last>
void masked_softmax(T* s, size_t rows, size_t cols, T scale, Last last) {
    for (size_t r = 0; r < rows; ++r) {
        T* p = s + r * cols;
        const size_t end = last(r) + 1;
        T mx = -std::numeric_limits<T>::infinity();
        for (size_t c = 0; c < end; ++c) mx = std::max(mx, p[c] * scale);
        for (size_t c = 0; c < end; ++c) p[c] = p[c] * scale - mx;
        exp_each(p, p, end);
        const T sum = detail::sum8<T>(end, [&](size_t c) { return p[c]; });
        for (size_t c = 0; c < end; ++c) p[c] /= sum;
        for (size_t c = end; c < cols; ++c) p[c] = 0;
    }
}

// The causal products cut into row blocks: f(r0, r1) for [r0, r1) = [0, B), [B, 2B), … covering [0, T).
// Rows [r0, r1) attend to keys [0, r1), so a product restricted to a block skips the masked triangle
// above it; at block 32 and T = 128 it computes 10/16 of the square. The skipped entries are exact zeros
// of P and dS, and on the GEMM's packed path (blocks of 32 rows) each output is summed over k in order,
// so leaving them out changes no value: eva-mini's losses at T = 128 are the same bit for bit as with
// the full products. A short last block (T not a multiple of 32) may take the GEMM's few-row path,
// whose summation order differs in the last bits. tests/test_mla.cpp checks both passes across a block
// boundary against double-precision references and finite differences.
template <class F>
void for_causal_blocks(size_t T_, F&& f) {
    constexpr size_t block = 32;
    for (size_t r0 = 0; r0 < T_; r0 += block) f(r0, std::min(T_, r0 + block));
}

// The projections shared by every path: q (RoPE'd), kv_a (k_pe RoPE'd) and c_KV = kv_norm(kv), for the
// rows of a.x; rows are B sequences of seq_len tokens starting at position start_pos.
template <class T>
void project(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w, MLAActivations<T>& a,
             size_t start_pos, LinearMode p) {
    const Dims d(args);
    const size_t n = a.x.shape(0);
    a.q = Matrix<T>::from_shape({n, d.H * d.qk});
    if (d.qr == 0) {
        linear_forward(p, a.x.data(), d.dim, w.wq, a.q.data(), d.H * d.qk, n);
    } else {
        a.q_a = Matrix<T>::from_shape({n, d.qr});
        a.q_a_n = Matrix<T>::from_shape({n, d.qr});
        a.q_rstd = Vector<T>::from_shape({n});
        linear_forward(p, a.x.data(), d.dim, w.wq_a, a.q_a.data(), d.qr, n);
        rmsnorm_forward(a.q_a.data(), d.qr, w.q_norm.data(), a.q_a_n.data(), d.qr, a.q_rstd.data(), n, d.qr);
        linear_forward(p, a.q_a_n.data(), d.qr, w.wq_b, a.q.data(), d.H * d.qk, n);
    }
    rope_apply(rope, a.q.data() + d.nope, n, d.H * d.qk, d.H, d.qk, a.seq_len, start_pos);

    const size_t lda = d.kvr + d.rope;
    a.kv_a = Matrix<T>::from_shape({n, lda});
    linear_forward(p, a.x.data(), d.dim, w.wkv_a, a.kv_a.data(), lda, n);
    rope_apply(rope, a.kv_a.data() + d.kvr, n, lda, 1, d.rope, a.seq_len, start_pos);
    a.kv_n = Matrix<T>::from_shape({n, d.kvr});
    a.kv_rstd = Vector<T>::from_shape({n});
    rmsnorm_forward(a.kv_a.data(), lda, w.kv_norm.data(), a.kv_n.data(), d.kvr, a.kv_rstd.data(), n, d.kvr);
}

void check_position(const ModelArgs& args, size_t length, size_t n, size_t capacity) {
    if (length + n > size_t(args.max_seq_len))
        throw ConfigError("MLA decode: positions " + std::to_string(length) + ".." + std::to_string(length + n - 1) +
                          " exceed max_seq_len = " + std::to_string(args.max_seq_len) +
                          " (RoPE/YaRN are defined up to max_seq_len)");
    if (length + n > capacity)
        throw ShapeError("MLA decode: cache capacity " + std::to_string(capacity) + " is too small for " +
                         std::to_string(length + n) + " tokens; reserve() it first");
}

// Rolling a cache back is only ever a shortening: growing it would expose rows nobody wrote.
void require_truncation(size_t new_length, size_t length) {
    if (new_length > length)
        throw ShapeError("KV cache truncate: new length " + std::to_string(new_length) + " exceeds the cached " +
                         std::to_string(length) + " tokens");
}

// A cache never holds more than max_seq_len tokens: positions beyond it have no RoPE/YaRN meaning.
void require_capacity(size_t capacity, size_t max_seq_len) {
    if (capacity > max_seq_len)
        throw ConfigError("KV cache capacity " + std::to_string(capacity) + " exceeds max_seq_len = " +
                          std::to_string(max_seq_len));
}

}  // namespace

double mla_softmax_scale(const ModelArgs& args, const RopeTable& rope) {
    return 1.0 / std::sqrt(double(args.qk_head_dim())) * rope.attention_scale;
}

template <class T>
MLAWeights<T> mla_zeros(const ModelArgs& args) {
    args.validate();  // every product below is then below 2^48 (checked in parameter_count)
    const Dims d(args);
    using u64 = std::uint64_t;  // 64-bit even where size_t is 32 (WebAssembly)
    const u64 dim = d.dim, H = d.H, qk = d.qk, qr = d.qr, kvr = d.kvr;
    const u64 q = qr == 0 ? H * qk * dim : qr * dim + qr + H * qk * qr;
    const u64 floats = q + (kvr + d.rope) * dim + kvr + H * u64(d.nope + d.v) * kvr + dim * H * d.v;
    require_memory(floats * sizeof(T), "the attention weights");
    MLAWeights<T> w;
    if (d.qr == 0) {
        w.wq = zeros<T>(d.H * d.qk, d.dim);
    } else {
        w.wq_a = zeros<T>(d.qr, d.dim);
        w.q_norm = zeros<T>(d.qr);
        w.wq_b = zeros<T>(d.H * d.qk, d.qr);
    }
    w.wkv_a = zeros<T>(d.kvr + d.rope, d.dim);
    w.kv_norm = zeros<T>(d.kvr);
    w.wkv_b = zeros<T>(d.H * (d.nope + d.v), d.kvr);
    w.wo = zeros<T>(d.dim, d.H * d.v);
    return w;
}

template <class T>
MLAWeights<T> mla_init(const ModelArgs& args, Rng& rng, double std) {
    MLAWeights<T> w = mla_zeros<T>(args);
    w.visit([&](const std::string& name, auto& t) {
        if (name == "q_norm" || name == "kv_norm") t.fill(T(1));
        else
            for (auto& e : t) e = T(std * double(rng.normal()));
    });
    return w;
}

template <class T>
Matrix<T> mla_forward(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w, const Matrix<T>& x,
                      size_t batch, size_t seq_len, MLAActivations<T>* acts, LinearMode precision) {
    const Dims d(args);
    require_shape(x, std::array<size_t, 2>{batch * seq_len, d.dim}, "mla_forward: x");
    if (seq_len > size_t(args.max_seq_len))
        throw ConfigError("mla_forward: seq_len " + std::to_string(seq_len) + " exceeds max_seq_len = " +
                          std::to_string(args.max_seq_len));
    MLAActivations<T> local;
    MLAActivations<T>& a = acts ? *acts : local;
    a.batch = batch;
    a.seq_len = seq_len;
    a.x = x;
    const size_t n = batch * seq_len, T_ = seq_len, ldq = d.H * d.qk, ldkv = d.H * (d.nope + d.v),
                 ldpe = d.kvr + d.rope;
    project(args, rope, w, a, 0, precision);
    a.kv_b = Matrix<T>::from_shape({n, ldkv});
    linear_forward(precision, a.kv_n.data(), d.kvr, w.wkv_b, a.kv_b.data(), ldkv, n);

    a.probs.resize(batch * d.H * T_ * T_);  // every entry written below: the products, then masked_softmax
    a.o = Matrix<T>::from_shape({n, d.H * d.v});
    const T scale = T(mla_softmax_scale(args, rope));
    // Sequences are independent (each writes its own rows of P and o): one thread per sequence.
    detail::parallel_for(batch, [&](size_t b) {
        for (size_t h = 0; h < d.H; ++h) {
            const T* q = a.q.data() + b * T_ * ldq + h * d.qk;           // [T, qk], ld ldq
            const T* kv = a.kv_b.data() + b * T_ * ldkv + h * (d.nope + d.v);  // k_nope | v of head h
            const T* pe = a.kv_a.data() + b * T_ * ldpe + d.kvr;          // shared k_pe [T, rope]
            T* P = a.probs.data() + (b * d.H + h) * T_ * T_;
            T* o = a.o.data() + b * T_ * d.H * d.v + h * d.v;
            // Query rows [r0, r1) see keys [0, r1) only: the products skip the masked upper triangle.
            for_causal_blocks(T_, [&](size_t r0, size_t r1) {
                gemm<T>(Op::N, Op::T, r1 - r0, r1, d.nope, q + r0 * ldq, ldq, kv, ldkv, P + r0 * T_, T_);
                gemm<T>(Op::N, Op::T, r1 - r0, r1, d.rope, q + r0 * ldq + d.nope, ldq, pe, ldpe, P + r0 * T_, T_, true);
            });
            masked_softmax(P, T_, T_, scale, [](size_t r) { return r; });
            for_causal_blocks(T_, [&](size_t r0, size_t r1) {
                gemm<T>(Op::N, Op::N, r1 - r0, d.v, r1, P + r0 * T_, T_, kv + d.nope, ldkv, o + r0 * d.H * d.v, d.H * d.v);
            });
        }
    });
    Matrix<T> out = Matrix<T>::from_shape({n, d.dim});
    linear_forward(precision, a.o.data(), d.H * d.v, w.wo, out.data(), d.dim, n);
    return out;
}

template <class T>
Matrix<T> mla_backward(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w,
                       const MLAActivations<T>& a, const Matrix<T>& dout, MLAWeights<T>& g,
                       LinearMode precision) {
    const Dims d(args);
    const size_t n = a.batch * a.seq_len, T_ = a.seq_len, ldq = d.H * d.qk, ldkv = d.H * (d.nope + d.v),
                 ldpe = d.kvr + d.rope, ldo = d.H * d.v;
    require_shape(dout, std::array<size_t, 2>{n, d.dim}, "mla_backward: dout");
    const T scale = T(mla_softmax_scale(args, rope));

    // out = o·woᵀ
    Matrix<T> d_o = Matrix<T>::from_shape({n, ldo});
    linear_backward(precision, dout.data(), d.dim, a.o.data(), ldo, w.wo, g.wo, d_o.data(), ldo, n, false);

    // Attention, per sequence and head. dP = dO·Vᵀ; dS = P∘(dP − rowsum(P∘dP))·scale.
    Matrix<T> dq = zeros<T>(n, ldq), dkv_b = zeros<T>(n, ldkv), dkv_a = zeros<T>(n, ldpe);
    // One thread per sequence: its rows of dq, dkv_b and dk_pe are its own, and its heads add into the
    // shared dk_pe in the same order whatever the thread count.
    detail::parallel_for(a.batch, [&](size_t b) {
        std::vector<T> dS(T_ * T_);
        for (size_t h = 0; h < d.H; ++h) {
            const size_t row0 = b * T_;
            const T* q = a.q.data() + row0 * ldq + h * d.qk;
            const T* kv = a.kv_b.data() + row0 * ldkv + h * (d.nope + d.v);
            const T* pe = a.kv_a.data() + row0 * ldpe + d.kvr;
            const T* P = a.probs.data() + (b * d.H + h) * T_ * T_;
            const T* dO = d_o.data() + row0 * ldo + h * d.v;
            T* dqh = dq.data() + row0 * ldq + h * d.qk;
            T* dkvh = dkv_b.data() + row0 * ldkv + h * (d.nope + d.v);
            T* dpe = dkv_a.data() + row0 * ldpe + d.kvr;
            // P and dS vanish above the diagonal, so every product runs over the causal block only:
            // query rows [r0, r1) over keys [0, r1), and key rows [r0, r1) over queries [r0, T).
            for_causal_blocks(T_, [&](size_t r0, size_t r1) {
                const size_t m = r1 - r0, later = T_ - r0;
                gemm<T>(Op::T, Op::N, m, d.v, later, P + r0 * T_ + r0, T_, dO + r0 * ldo, ldo, dkvh + r0 * ldkv + d.nope,
                        ldkv);                                                                           // dV = Pᵀ·dO
                gemm<T>(Op::N, Op::T, m, r1, d.v, dO + r0 * ldo, ldo, kv + d.nope, ldkv, dS.data() + r0 * T_, T_);  // dP
            });
            for (size_t s = 0; s < T_; ++s) {  // dS = P∘(dP − rowsum(P∘dP))·scale over the causal part
                const T dot = detail::sum8<T>(s + 1, [&](size_t t) { return P[s * T_ + t] * dS[s * T_ + t]; });
                for (size_t t = 0; t <= s; ++t) dS[s * T_ + t] = P[s * T_ + t] * (dS[s * T_ + t] - dot) * scale;
                std::fill(dS.begin() + std::ptrdiff_t(s * T_ + s + 1), dS.begin() + std::ptrdiff_t((s + 1) * T_), T(0));
            }
            for_causal_blocks(T_, [&](size_t r0, size_t r1) {
                const size_t m = r1 - r0, later = T_ - r0;
                const T* dSq = dS.data() + r0 * T_;      // query rows r0.. over keys 0..r1
                const T* dSk = dS.data() + r0 * T_ + r0; // key columns r0..r1 over query rows r0..T
                gemm<T>(Op::N, Op::N, m, d.nope, r1, dSq, T_, kv, ldkv, dqh + r0 * ldq, ldq);                  // dq_nope
                gemm<T>(Op::N, Op::N, m, d.rope, r1, dSq, T_, pe, ldpe, dqh + r0 * ldq + d.nope, ldq);         // dq_pe
                gemm<T>(Op::T, Op::N, m, d.nope, later, dSk, T_, q + r0 * ldq, ldq, dkvh + r0 * ldkv, ldkv);  // dk_nope
                gemm<T>(Op::T, Op::N, m, d.rope, later, dSk, T_, q + r0 * ldq + d.nope, ldq, dpe + r0 * ldpe, ldpe,
                        true);                                                                     // dk_pe, Σ heads
            });
        }
    });

    // k_nope | v = wkv_b(c_KV); c_KV = kv_norm(kv); k_pe was rotated: rotate its gradient back.
    Matrix<T> dkv_n = Matrix<T>::from_shape({n, d.kvr});
    linear_backward(precision, dkv_b.data(), ldkv, a.kv_n.data(), d.kvr, w.wkv_b, g.wkv_b, dkv_n.data(), d.kvr, n, false);
    rmsnorm_backward(dkv_n.data(), d.kvr, a.kv_a.data(), ldpe, w.kv_norm.data(), a.kv_rstd.data(), dkv_a.data(),
                     ldpe, g.kv_norm.data(), n, d.kvr);
    rope_apply(rope, dkv_a.data() + d.kvr, n, ldpe, 1, d.rope, T_, 0, true);
    Matrix<T> dx = Matrix<T>::from_shape({n, d.dim});
    linear_backward(precision, dkv_a.data(), ldpe, a.x.data(), d.dim, w.wkv_a, g.wkv_a, dx.data(), d.dim, n, false);

    // Query path.
    rope_apply(rope, dq.data() + d.nope, n, ldq, d.H, d.qk, T_, 0, true);
    if (d.qr == 0) {
        linear_backward(precision, dq.data(), ldq, a.x.data(), d.dim, w.wq, g.wq, dx.data(), d.dim, n, true);
    } else {
        Matrix<T> dq_a_n = Matrix<T>::from_shape({n, d.qr}), dq_a = Matrix<T>::from_shape({n, d.qr});
        linear_backward(precision, dq.data(), ldq, a.q_a_n.data(), d.qr, w.wq_b, g.wq_b, dq_a_n.data(), d.qr, n, false);
        rmsnorm_backward(dq_a_n.data(), d.qr, a.q_a.data(), d.qr, w.q_norm.data(), a.q_rstd.data(), dq_a.data(), d.qr,
                         g.q_norm.data(), n, d.qr);
        linear_backward(precision, dq_a.data(), d.qr, a.x.data(), d.dim, w.wq_a, g.wq_a, dx.data(), d.dim, n, true);
    }
    return dx;
}

// ------------------------------------------------------------------------------------- caches

template <class T>
MLANaiveCache<T>::MLANaiveCache(const ModelArgs& args, size_t cap)
    : heads(size_t(args.n_heads)), k_dim(size_t(args.qk_head_dim())), v_dim(size_t(args.v_head_dim)),
      max_seq_len(size_t(args.max_seq_len)) {
    reserve(cap);
}

template <class T>
void MLANaiveCache<T>::reserve(size_t new_capacity) {
    require_capacity(new_capacity, max_seq_len);
    if (new_capacity <= capacity) return;
    capacity = new_capacity;
    k.resize(capacity * heads * k_dim);
    v.resize(capacity * heads * v_dim);
}

template <class T>
void MLANaiveCache<T>::truncate(size_t new_length) {
    require_truncation(new_length, length);
    length = new_length;
}

template <class T>
MLAAbsorbedCache<T>::MLAAbsorbedCache(const ModelArgs& args, size_t cap)
    : kv_lora_rank(size_t(args.kv_lora_rank)), rope_dim(size_t(args.qk_rope_head_dim)),
      max_seq_len(size_t(args.max_seq_len)) {
    reserve(cap);
}

template <class T>
void MLAAbsorbedCache<T>::reserve(size_t new_capacity) {
    require_capacity(new_capacity, max_seq_len);
    if (new_capacity <= capacity) return;
    capacity = new_capacity;
    kv.resize(capacity * kv_lora_rank);
    pe.resize(capacity * rope_dim);
}

template <class T>
void MLAAbsorbedCache<T>::truncate(size_t new_length) {
    require_truncation(new_length, length);
    length = new_length;
}

// ----------------------------------------------------------------------------------- decoding

template <class T>
Matrix<T> mla_decode(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w, MLANaiveCache<T>& c,
                     const Matrix<T>& x, std::vector<T>* last_probs) {
    const Dims d(args);
    const size_t n = x.shape(0), L = c.length, ldq = d.H * d.qk, ldkv = d.H * (d.nope + d.v),
                 ldpe = d.kvr + d.rope, end = L + n;
    require_shape(x, std::array<size_t, 2>{n, d.dim}, "mla_decode: x");
    check_position(args, L, n, c.capacity);
    MLAActivations<T> a;
    a.batch = 1;
    a.seq_len = n;
    a.x = x;
    project(args, rope, w, a, L, LinearPrecision::fp32);
    Matrix<T> kvb = Matrix<T>::from_shape({n, ldkv});
    linear_forward(LinearPrecision::fp32, a.kv_n.data(), d.kvr, w.wkv_b, kvb.data(), ldkv, n);
    for (size_t i = 0; i < n; ++i)  // K_h = k_nope_h | k_pe (shared),  V_h = v_h
        for (size_t h = 0; h < d.H; ++h) {
            const T* src = kvb.data() + i * ldkv + h * (d.nope + d.v);
            T* k = c.k.data() + ((L + i) * d.H + h) * d.qk;
            std::copy(src, src + d.nope, k);
            std::copy(a.kv_a.data() + i * ldpe + d.kvr, a.kv_a.data() + (i + 1) * ldpe, k + d.nope);
            std::copy(src + d.nope, src + d.nope + d.v, c.v.data() + ((L + i) * d.H + h) * d.v);
        }
    c.length = end;

    const T scale = T(mla_softmax_scale(args, rope));
    Matrix<T> o = Matrix<T>::from_shape({n, d.H * d.v});
    std::vector<T> S(n * end);
    for (size_t h = 0; h < d.H; ++h) {
        gemm<T>(Op::N, Op::T, n, end, d.qk, a.q.data() + h * d.qk, ldq, c.k.data() + h * d.qk, ldq, S.data(), end);
        masked_softmax(S.data(), n, end, scale, [L](size_t i) { return L + i; });
        if (last_probs) {  // the newest token's row of head h
            last_probs->resize(d.H * end);
            std::copy(S.data() + (n - 1) * end, S.data() + n * end, last_probs->data() + h * end);
        }
        gemm<T>(Op::N, Op::N, n, d.v, end, S.data(), end, c.v.data() + h * d.v, d.H * d.v, o.data() + h * d.v,
                d.H * d.v);
    }
    Matrix<T> out = Matrix<T>::from_shape({n, d.dim});
    linear_forward(LinearPrecision::fp32, o.data(), d.H * d.v, w.wo, out.data(), d.dim, n);
    return out;
}

template <class T>
Matrix<T> mla_decode(const ModelArgs& args, const RopeTable& rope, const MLAWeights<T>& w, MLAAbsorbedCache<T>& c,
                     const Matrix<T>& x, std::vector<T>* last_probs) {
    const Dims d(args);
    const size_t n = x.shape(0), L = c.length, ldq = d.H * d.qk, ldpe = d.kvr + d.rope, end = L + n,
                 nh = n * d.H;
    require_shape(x, std::array<size_t, 2>{n, d.dim}, "mla_decode: x");
    check_position(args, L, n, c.capacity);
    MLAActivations<T> a;
    a.batch = 1;
    a.seq_len = n;
    a.x = x;
    project(args, rope, w, a, L, LinearPrecision::fp32);
    for (size_t i = 0; i < n; ++i) {
        std::copy(a.kv_n.data() + i * d.kvr, a.kv_n.data() + (i + 1) * d.kvr, c.kv.data() + (L + i) * d.kvr);
        std::copy(a.kv_a.data() + i * ldpe + d.kvr, a.kv_a.data() + (i + 1) * ldpe, c.pe.data() + (L + i) * d.rope);
    }
    c.length = end;

    // Absorb W_UK into the query: q_abs[i, h] = q_nope[i, h] · wkv_b[h, :nope]   ([n·H, kv_lora_rank])
    std::vector<T> q_abs(nh * d.kvr);
    for (size_t h = 0; h < d.H; ++h)
        gemm<T>(Op::N, Op::N, n, d.kvr, d.nope, a.q.data() + h * d.qk, ldq,
                w.wkv_b.data() + h * (d.nope + d.v) * d.kvr, d.kvr, q_abs.data() + h * d.kvr, d.H * d.kvr);
    // Scores of all heads at once against the shared latent: one pass over the cache serves every
    // (token i, head h) query row. Computed transposed, Sᵀ[t, (i,h)] = c_KV(t)·q_abs(i,h) + k_pe(t)·q_pe(i,h),
    // so the long cache is GEMM's A operand: eva's GEMM then streams it row by row, where as B
    // (S = q_abs·c_KVᵀ) it would be transposed element by element while packing — measured ~2× slower
    // at context 8192 (see docs/2-mla.md).
    std::vector<T> St(end * nh), S(nh * end);
    gemm<T>(Op::N, Op::T, end, nh, d.kvr, c.kv.data(), d.kvr, q_abs.data(), d.kvr, St.data(), nh);
    gemm<T>(Op::N, Op::T, end, nh, d.rope, c.pe.data(), d.rope, a.q.data() + d.nope, d.qk, St.data(), nh, true);
    for (size_t t = 0; t < end; ++t)
        for (size_t r = 0; r < nh; ++r) S[r * end + t] = St[t * nh + r];
    const T scale = T(mla_softmax_scale(args, rope));
    masked_softmax(S.data(), nh, end, scale, [L, H = d.H](size_t r) { return L + r / H; });
    if (last_probs)  // rows (n−1, h) for h = 0…H−1: the newest token's heads, contiguous
        last_probs->assign(S.data() + (nh - d.H) * end, S.data() + nh * end);
    std::vector<T> o_lat(nh * d.kvr);  // Σ_t p_t c_KV(t), per (token, head)
    gemm<T>(Op::N, Op::N, nh, d.kvr, end, S.data(), end, c.kv.data(), d.kvr, o_lat.data(), d.kvr);
    // Apply W_UV after attention: o_h = o_lat_h · wkv_b[h, nope:]ᵀ
    Matrix<T> o = Matrix<T>::from_shape({n, d.H * d.v});
    for (size_t h = 0; h < d.H; ++h)
        gemm<T>(Op::N, Op::T, n, d.v, d.kvr, o_lat.data() + h * d.kvr, d.H * d.kvr,
                w.wkv_b.data() + (h * (d.nope + d.v) + d.nope) * d.kvr, d.kvr, o.data() + h * d.v, d.H * d.v);
    Matrix<T> out = Matrix<T>::from_shape({n, d.dim});
    linear_forward(LinearPrecision::fp32, o.data(), d.H * d.v, w.wo, out.data(), d.dim, n);
    return out;
}

// --------------------------------------------------------------------------- memory accounting

std::size_t dtype_bytes(CacheDType t) { return t == CacheDType::fp32 ? 4 : t == CacheDType::bf16 ? 2 : 1; }
std::string dtype_name(CacheDType t) { return t == CacheDType::fp32 ? "fp32" : t == CacheDType::bf16 ? "bf16" : "fp8"; }

CacheDType parse_cache_dtype(const std::string& s, const std::string& field) {
    if (s == "fp32") return CacheDType::fp32;
    if (s == "bf16") return CacheDType::bf16;
    if (s == "fp8") return CacheDType::fp8;
    throw ConfigError(field + " must be fp32, bf16 or fp8, got '" + preview(s) + "'");
}

std::int64_t default_gqa_groups(const ModelArgs& args) {
    if (args.n_heads < 1) throw ConfigError("n_heads must be at least 1, got " + std::to_string(args.n_heads));
    for (std::int64_t g = std::min<std::int64_t>(8, args.n_heads);; --g)  // ends at g = 1 at the latest
        if (args.n_heads % g == 0) return g;
}

std::vector<KVCacheScheme> KVCacheModel::memory(std::int64_t seq_len, CacheDType dtype) const {
    std::vector<KVCacheScheme> rows = kv_cache_memory(args, seq_len, dtype, gqa_groups);
    if (!mla) rows.erase(std::remove_if(rows.begin(), rows.end(), [](const KVCacheScheme& r) { return r.name == "MLA"; }),
                         rows.end());
    return rows;
}

const std::vector<KVCacheModel>& kv_cache_models() {
    static const std::vector<KVCacheModel> models = [] {
        std::vector<KVCacheModel> m;
        const char* const names[][2] = {{"mini", "mini"}, {"v2-lite", "V2-Lite"}, {"v2", "V2"}, {"v3", "V3"}};
        for (const auto& n : names) {
            const ModelArgs a = preset(n[0]);
            m.push_back({n[0], n[1], a, default_gqa_groups(a), true, "MLA"});
        }
        const ModelArgs llama = model_args_from_json({{"dim", 4096}, {"n_layers", 32}, {"n_heads", 32},
                                                      {"qk_nope_head_dim", 64}, {"qk_rope_head_dim", 64},
                                                      {"v_head_dim", 128}, {"vocab_size", 128256}, {"max_seq_len", 8192}});
        m.push_back({"llama3-8b", "Llama-3-8B shape", llama, 8, false, "GQA-8"});
        return m;
    }();
    return models;
}

const KVCacheModel* find_kv_cache_model(const std::string& key) {
    for (const KVCacheModel& m : kv_cache_models())
        if (m.key == key) return &m;
    return nullptr;
}

std::vector<KVCacheScheme> kv_cache_memory(const ModelArgs& args, std::int64_t seq_len, CacheDType dtype,
                                           std::int64_t gqa_groups) {
    args.validate();
    if (seq_len <= 0) throw ConfigError("seq_len must be a positive integer, got " + std::to_string(seq_len));
    if (gqa_groups <= 0 || args.n_heads % gqa_groups != 0)
        throw ConfigError("GQA groups must be a positive divisor of n_heads (" + std::to_string(args.n_heads) +
                          "), got " + std::to_string(gqa_groups));
    const std::int64_t kv_per_head = args.qk_head_dim() + args.v_head_dim;  // one key + one value
    const std::int64_t mla = args.kv_lora_rank + args.qk_rope_head_dim;
    const std::int64_t bytes = std::int64_t(dtype_bytes(dtype));
    // A figure for a whole sequence is a product of untrusted sizes: checked (ConfigError above 2^48 bytes)
    // rather than printed as a wrapped, negative count.
    auto row = [&](std::string name, std::int64_t heads, std::int64_t elements) {
        const std::uint64_t per_layer = checked_mul(std::uint64_t(elements), std::uint64_t(bytes), "the KV cache per token");
        const std::uint64_t per_token = checked_mul(per_layer, std::uint64_t(args.n_layers), "the KV cache per token");
        const std::uint64_t total = checked_mul(per_token, std::uint64_t(seq_len), "the KV cache of --seq-len tokens");
        return KVCacheScheme{std::move(name), heads, elements, std::int64_t(per_layer), std::int64_t(per_token),
                             std::int64_t(total), double(elements) / double(mla)};
    };
    return {row("MLA", 1, mla), row("MHA", args.n_heads, args.n_heads * kv_per_head),
            row("GQA-" + std::to_string(gqa_groups), gqa_groups, gqa_groups * kv_per_head),
            row("MQA", 1, kv_per_head)};
}

#define EVA_MLA_INSTANTIATE(T)                                                                                   \
    template MLAWeights<T> mla_zeros<T>(const ModelArgs&);                                                       \
    template MLAWeights<T> mla_init<T>(const ModelArgs&, Rng&, double);                                          \
    template Matrix<T> mla_forward<T>(const ModelArgs&, const RopeTable&, const MLAWeights<T>&, const Matrix<T>&, \
                                      size_t, size_t, MLAActivations<T>*, LinearMode);                     \
    template Matrix<T> mla_backward<T>(const ModelArgs&, const RopeTable&, const MLAWeights<T>&,                 \
                                       const MLAActivations<T>&, const Matrix<T>&, MLAWeights<T>&, LinearMode); \
    template struct MLANaiveCache<T>;                                                                            \
    template struct MLAAbsorbedCache<T>;                                                                         \
    template Matrix<T> mla_decode<T>(const ModelArgs&, const RopeTable&, const MLAWeights<T>&, MLANaiveCache<T>&, \
                                     const Matrix<T>&, std::vector<T>*);                                         \
    template Matrix<T> mla_decode<T>(const ModelArgs&, const RopeTable&, const MLAWeights<T>&,                   \
                                     MLAAbsorbedCache<T>&, const Matrix<T>&, std::vector<T>*);
EVA_MLA_INSTANTIATE(float)
EVA_MLA_INSTANTIATE(double)
#undef EVA_MLA_INSTANTIATE

}  // namespace eva
