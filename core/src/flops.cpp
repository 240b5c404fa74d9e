// eva — model FLOPs of a training step (eva/flops.hpp). Doubles throughout: V3's counts pass 2^53 only
// far beyond any step size, and a FLOP count is a measure, not an index.
#include "eva/flops.hpp"

namespace eva {

StepFlops training_step_flops(const ModelArgs& a, std::int64_t batch, std::int64_t seq_len) {
    const double D = double(a.dim), H = double(a.n_heads), qk = double(a.qk_head_dim()),
                 nope = double(a.qk_nope_head_dim), v = double(a.v_head_dim), kv = double(a.kv_lora_rank),
                 rope = double(a.qk_rope_head_dim), qr = double(a.q_lora_rank);
    const double q = a.q_lora_rank == 0 ? D * H * qk : D * qr + qr * H * qk;
    const double attn = q + D * (kv + rope) + kv * H * (nope + v) + H * v * D;
    const double expert = 3 * D * double(a.moe_inter_dim);
    const double moe = double(a.n_routed_experts) * D + double(a.n_activated_experts + a.n_shared_experts) * expert;
    const double dense = 3 * D * double(a.inter_dim);
    const double layers = double(a.n_layers), dense_layers = double(a.n_dense_layers);

    const double head = double(a.vocab_size) * D;
    // Forward and backward of the causal QKᵀ and PV products of one layer over one sequence of n tokens:
    // query t sees keys 0..t, n(n+1)/2 pairs, 2·(qk + v) FLOPs each, times 3.
    const auto causal_attention = [&](double n) { return 3 * H * (n * (n + 1) / 2) * 2 * (qk + v); };

    StepFlops f;
    f.matmul_weights = layers * attn + dense_layers * dense + (layers - dense_layers) * moe + head;
    const double B = double(batch), T = double(seq_len);
    f.linear = 6 * f.matmul_weights * B * T;
    f.attention = layers * B * causal_attention(T);
    // Each MTP module is a MoE block (its layer index is past the dense ones) behind eh_proj, before the
    // shared head; module k covers the T − k positions whose target t_{i+k+1} is inside the window.
    const double module = 2 * D * D + attn + moe + head;
    for (std::int64_t k = 1; k <= a.n_mtp_layers && k < seq_len; ++k) {
        const double n = double(seq_len - k);
        f.mtp += 6 * module * B * n + B * causal_attention(n);
    }
    return f;
}

}  // namespace eva
