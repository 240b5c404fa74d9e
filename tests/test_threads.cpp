// Threads change nothing but speed: the GEMM's row/column split and the per-sequence, per-expert and
// per-chunk loops give bit-identical results for 1 and 2 threads (and the split products are still
// correct products). Without OpenMP (WebAssembly) both runs are single-threaded and the checks hold
// trivially; the GEMM check against the reference still runs.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "eva/gemm.hpp"
#include "eva/rng.hpp"
#include "eva/threads.hpp"
#include "eva/trainer.hpp"

using eva::Op;

namespace {

struct ThreadGuard {  // restores the thread count whatever happens in the test
    int saved = eva::num_threads();
    ~ThreadGuard() { eva::set_num_threads(saved); }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("GEMM results are bit-identical for 1 and 2 threads", "[threads][gemm]") {
    ThreadGuard guard;
    struct Shape {
        std::size_t M, N, K;
    };
    // Row splits (tall C), column splits (short C: weight gradients, dot-product and in-place-B paths),
    // and K past one KC block (384), where every block's partial sums must still add in the same order.
    const Shape shapes[] = {{512, 96, 64}, {300, 257, 130}, {40, 700, 300}, {20, 900, 200}, {4, 2000, 300}, {200, 64, 1000}};
    eva::Rng rng(11);
    for (const auto& s : shapes)
        for (Op op_a : {Op::N, Op::T})
            for (Op op_b : {Op::N, Op::T})
                for (bool acc : {false, true}) {
                    std::vector<float> A(s.M * s.K), B(s.K * s.N), C0(s.M * s.N);
                    for (auto& x : A) x = float(rng.normal());
                    for (auto& x : B) x = float(rng.normal());
                    for (auto& x : C0) x = float(rng.normal());
                    const std::size_t lda = op_a == Op::N ? s.K : s.M, ldb = op_b == Op::N ? s.N : s.K;
                    std::vector<float> C1 = C0, C2 = C0;
                    eva::set_num_threads(1);
                    eva::gemm<float>(op_a, op_b, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, C1.data(), s.N, acc);
                    eva::set_num_threads(2);
                    eva::gemm<float>(op_a, op_b, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, C2.data(), s.N, acc);
                    INFO("M " << s.M << " N " << s.N << " K " << s.K << " op_a " << int(op_a) << " op_b " << int(op_b)
                              << " accumulate " << acc);
                    CHECK(same_bits(C1, C2));
                    // And the split product is the product: within the classic dot-product bound
                    // |ĉ − c| ≤ γ_K·Σ|a||b| (γ_K ≈ K·u, u = 2⁻²⁴; Higham §3.1), allowed twice over, plus
                    // one rounding of the accumulated C.
                    double worst = 0;
                    for (std::size_t i = 0; i < s.M; ++i)
                        for (std::size_t j = 0; j < s.N; ++j) {
                            double c = acc ? C0[i * s.N + j] : 0, mag = std::abs(c);
                            for (std::size_t k = 0; k < s.K; ++k) {
                                const double a = op_a == Op::N ? A[i * lda + k] : A[k * lda + i];
                                const double b = op_b == Op::N ? B[k * ldb + j] : B[j * ldb + k];
                                c += a * b;
                                mag += std::abs(a * b);
                            }
                            const double bound = 2.0 * double(s.K + 1) * 0x1p-24 * mag;
                            worst = std::max(worst, std::abs(C2[i * s.N + j] - c) / bound);
                        }
                    CHECK(worst <= 1.0);
                }
}

TEST_CASE("training and evaluation are bit-identical for 1 and 2 threads", "[threads][trainer]") {
    ThreadGuard guard;
    // Large enough that the GEMMs split (n = 8·64 = 512 tokens, dim 64), with MoE experts and groups;
    // once without and once with a multi-token-prediction module (its loss is part of what must match).
    const int mtp = GENERATE(0, 1);
    const auto args = eva::model_args_from_json(
        {{"vocab_size", 256}, {"dim", 64}, {"inter_dim", 128}, {"moe_inter_dim", 32}, {"n_layers", 2},
         {"n_dense_layers", 1}, {"n_heads", 2}, {"n_routed_experts", 8}, {"n_shared_experts", 1},
         {"n_activated_experts", 2}, {"n_expert_groups", 2}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
         {"q_lora_rank", 32}, {"kv_lora_rank", 32}, {"qk_nope_head_dim", 16}, {"qk_rope_head_dim", 8},
         {"v_head_dim", 16}, {"max_seq_len", 64}, {"n_mtp_layers", mtp}});
    std::string text;
    for (int i = 0; i < 200; ++i) text += "Routed experts share the load; the latent cache stays small.\n";
    const std::string path = "eva_test_threads_corpus.txt";
    { std::ofstream(path) << text; }
    const auto corpus = eva::load_corpus(path);
    std::remove(path.c_str());
    eva::TrainConfig t;
    t.batch = 8;
    t.seq_len = 64;
    t.steps = 3;
    t.schedule = {1e-2, 1, 3, 0.1};
    t.eval_batches = 3;  // with 2 threads, evaluation's batches run side by side
    auto run = [&](int threads, std::vector<double>& losses) {
        eva::set_num_threads(threads);
        eva::Rng rng(4);
        auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
        eva::Trainer tr(m, corpus, t);
        for (int i = 0; i < t.steps; ++i) {
            const auto st = tr.step();
            losses.push_back(st.loss);
            losses.insert(losses.end(), st.mtp_loss.begin(), st.mtp_loss.end());
        }
        const auto ev = tr.evaluation();
        losses.push_back(ev.loss);
        losses.insert(losses.end(), ev.mtp_loss.begin(), ev.mtp_loss.end());
        losses.insert(losses.end(), ev.mtp_accuracy.begin(), ev.mtp_accuracy.end());
        std::vector<float> weights;
        for (const auto& w : eva::named_tensors(m.w)) weights.insert(weights.end(), w.data, w.data + w.size());
        return weights;
    };
    std::vector<double> loss1, loss2;
    const auto w1 = run(1, loss1), w2 = run(2, loss2);
    CHECK(loss1 == loss2);  // exact: every sum is taken in the same order
    CHECK(same_bits(w1, w2));
    INFO("n_mtp_layers " << mtp);
    CHECK(loss1.size() == std::size_t((t.steps + 1) * (1 + mtp) + mtp));
    CHECK(loss1[std::size_t((t.steps - 1) * (1 + mtp))] < loss1.front());  // and it did train
}
