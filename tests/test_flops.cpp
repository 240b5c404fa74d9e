// The training step's FLOP count against two independent references: the parameter count (the Linear
// weights a token goes through are the activated parameters minus the embedding and the norm gains)
// and a brute-force count of the attention's query–key pairs; and the peak probe's description of
// itself (its speed is the machine's and is never asserted here: timing belongs to the benchmarks).
#include <catch2/catch.hpp>

#include "eva/config.hpp"
#include "eva/flops.hpp"
#include "eva/gemm.hpp"
#include "eva/model.hpp"
#include "eva/peak.hpp"

namespace {

// Norm gains per model: the final norm, and per layer attn_norm, ffn_norm, kv_norm and (with query
// compression) q_norm. The only activated parameters that are not in a matrix product but the embedding.
double norm_gains(const eva::ModelArgs& a) {
    return double(a.dim) + double(a.n_layers) * (2.0 * double(a.dim) + double(a.kv_lora_rank) + double(a.q_lora_rank));
}

}  // namespace

TEST_CASE("flops: the Linear weights a token uses are the activated parameters minus embedding and norms", "[flops]") {
    for (const std::string name : {"mini", "v2-lite", "v2", "v3"}) {
        const auto a = eva::preset(name);
        const double embedding = double(a.vocab_size) * double(a.dim);
        const double expected = double(eva::parameter_count(a, true)) - embedding - norm_gains(a);
        const auto f = eva::training_step_flops(a, 1, 1);
        INFO(name);
        CHECK(f.matmul_weights == expected);  // exact: both are sums of integers below 2^53
        CHECK(f.linear == 6 * expected);
    }
}

TEST_CASE("flops: eva-mini's step at 16 x 128 is 37.2 GFLOP", "[flops]") {
    // The figure derived by hand for ../shared/BASELINES.md: 2.945 M matmul weights, and attention
    // 3 · 4 layers · 16 · 4 heads · (128·129/2 pairs) · 2 · (48 + 32) FLOPs.
    const auto f = eva::training_step_flops(eva::preset("mini"), 16, 128);
    CHECK(f.matmul_weights == Approx(2.945e6).epsilon(5e-4));
    CHECK(f.attention == 3.0 * 4 * 16 * 4 * (128 * 129 / 2) * 2 * (48 + 32));
    CHECK(f.total() == Approx(37.2e9).epsilon(2e-3));
}

TEST_CASE("flops: attention counts the causal query-key pairs", "[flops]") {
    auto a = eva::preset("mini");
    for (std::int64_t T : {1, 2, 7, 128}) {
        double pairs = 0;  // brute force: query t attends to keys 0..t
        for (std::int64_t t = 0; t < T; ++t) pairs += double(t + 1);
        const double per_pair = 2.0 * double(a.qk_head_dim() + a.v_head_dim);  // one QKᵀ and one PV term
        const auto f = eva::training_step_flops(a, 3, T);
        INFO("T = " << T);
        CHECK(f.attention == 3 * double(a.n_layers) * 3 * double(a.n_heads) * pairs * per_pair);
        CHECK(f.linear == 6 * f.matmul_weights * 3 * double(T));
    }
}

TEST_CASE("flops: each MTP module counts its block, eh_proj and the shared head over T - k positions", "[flops][mtp]") {
    // Reference: the module's activated parameters from parameter_count (with minus without MTP), less
    // its norm gains (enorm, hnorm, shared_head.norm, the block's attn_norm, ffn_norm, kv_norm, q_norm),
    // plus the shared head it runs through (counted once, with the main model); attention by brute force.
    for (const std::string name : {"mini", "v3"}) {
        auto a = eva::preset(name);
        a.n_mtp_layers = 0;
        const double without = double(eva::parameter_count(a, true));
        const auto base = eva::training_step_flops(a, 2, 9);
        a.n_mtp_layers = 2;
        const double per_module = (double(eva::parameter_count(a, true)) - without) / 2;
        const double weights = per_module - (5.0 * double(a.dim) + double(a.kv_lora_rank) + double(a.q_lora_rank)) +
                               double(a.vocab_size) * double(a.dim);
        const auto f = eva::training_step_flops(a, 2, 9);
        double expected = 0;
        for (int k = 1; k <= 2; ++k) {
            double pairs = 0;  // the module's 9 − k positions, each attending to itself and those before
            for (int t = 0; t < 9 - k; ++t) pairs += t + 1;
            expected += 6 * weights * 2 * (9 - k) + 3 * 2 * double(a.n_heads) * pairs * 2 * double(a.qk_head_dim() + a.v_head_dim);
        }
        INFO(name);
        CHECK(f.mtp == Approx(expected).epsilon(1e-12));  // the same integers summed in another order
        CHECK(f.linear == base.linear);                   // the main model's count is unchanged
        CHECK(f.attention == base.attention);
        CHECK(f.total() == base.total() + f.mtp);
    }
    // A module whose offset reaches the window has no positions.
    auto a = eva::preset("mini");
    a.n_mtp_layers = 3;
    const auto short_window = eva::training_step_flops(a, 1, 2);  // only module 1 has a position (T − 1 = 1)
    a.n_mtp_layers = 1;
    CHECK(short_window.mtp == eva::training_step_flops(a, 1, 2).mtp);
}

TEST_CASE("peak: the loop runs in the GEMM's instruction set and says so", "[flops]") {
    const auto p = eva::measure_fma_peak(0.002, 1);
    CHECK(p.simd == eva::gemm_arch());
    CHECK(p.gflops > 0);
    // Lanes per register follow from the instruction set: 512-bit 16, 256-bit 8, 128-bit 4 floats.
    CHECK(p.lanes == (p.simd == "avx512bw" ? 16 : p.simd == "fma3<avx2>" ? 8 : 4));
    CHECK(p.fused == (p.simd == "avx512bw" || p.simd == "fma3<avx2>"));
}
