// MoE benchmark: one DeepSeekMoE layer's forward+backward (gate, grouped dispatch, shared expert) in
// tokens/s, against, in the same run,
//   (a) a dense SwiGLU with the same activated parameters: width (n_shared + top-k)·moe_inter_dim, and
//   (b) the naive per-token loop over the selected experts (moe_forward_naive + moe_backward_naive).
// The per-token loop's cost is linear in the token count, so it runs on fewer tokens; its rate is
// tokens/s all the same. Prints Google Benchmark's table, then the ratios.
// Run: build/release/eva_bench_moe [--benchmark_min_time=…] [--json FILE]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/gemm.hpp"
#include "bench_common.hpp"
#include "eva/moe.hpp"
#include "eva/rng.hpp"

namespace {

struct Case {
    std::string name;
    eva::MoeConfig cfg;
    std::size_t tokens, naive_tokens;
};

std::vector<Case> cases() {
    eva::MoeConfig mini = eva::MoeConfig::preset("mini");  // dim 256, 16 routed, top-2, 1 shared
    // A V2-Lite-shaped slice: V2-Lite's dim, moe_inter_dim, 2 shared experts and top-6 softmax routing, with
    // 16 of its 64 routed experts. 512 tokens over 16 experts put 192 tokens on an average expert, as
    // 2048 tokens do over all 64 experts of a real V2-Lite layer.
    eva::MoeConfig lite = eva::MoeConfig::preset("v2-lite");
    lite.n_routed_experts = 16;
    return {{"mini", mini, 2048, 256}, {"v2-lite-slice", lite, 512, 16}};
}

struct Data {
    std::vector<float> x, dy, y, dx;
    Data(std::size_t n, std::size_t dim) : x(n * dim), dy(n * dim), y(n * dim), dx(n * dim) {
        eva::Rng rng(3);
        rng.fill_normal(x.data(), x.size(), 0, 1);
        rng.fill_normal(dy.data(), dy.size(), 0, 1);
    }
};

void set_rate(benchmark::State& st, std::size_t tokens) {
    st.counters["tokens/s"] = benchmark::Counter(double(tokens), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_moe(benchmark::State& st, const Case& c) {
    eva::Rng rng(1);
    const auto m = eva::Moe<float>::random(c.cfg, rng, 0.006f);
    auto g = eva::Moe<float>::zeros(c.cfg);
    Data d(c.tokens, c.cfg.dim);
    eva::MoeCache<float> cache;
    for (auto _ : st) {
        eva::moe_forward(m, d.x.data(), c.tokens, c.tokens, d.y.data(), cache);
        eva::moe_backward(m, d.x.data(), cache, d.dy.data(), d.dx.data(), g);
        benchmark::DoNotOptimize(d.dx.data());
    }
    set_rate(st, c.tokens);
}

void bm_dense(benchmark::State& st, const Case& c) {
    eva::Rng rng(1);
    const std::size_t width = (c.cfg.n_shared_experts + c.cfg.n_activated_experts) * c.cfg.moe_inter_dim;
    const auto m = eva::Mlp<float>::random(c.cfg.dim, width, rng, 0.006f);
    auto g = eva::Mlp<float>::zeros(c.cfg.dim, width);
    Data d(c.tokens, c.cfg.dim);
    eva::MlpCache<float> cache;
    for (auto _ : st) {
        eva::mlp_forward(m, d.x.data(), c.tokens, d.y.data(), cache);
        eva::mlp_backward(m, d.x.data(), c.tokens, cache, d.dy.data(), d.dx.data(), g);
        benchmark::DoNotOptimize(d.dx.data());
    }
    set_rate(st, c.tokens);
}

void bm_naive(benchmark::State& st, const Case& c) {
    eva::Rng rng(1);
    const auto m = eva::Moe<float>::random(c.cfg, rng, 0.006f);
    auto g = eva::Moe<float>::zeros(c.cfg);
    Data d(c.naive_tokens, c.cfg.dim);
    for (auto _ : st) {
        eva::moe_forward_naive(m, d.x.data(), c.naive_tokens, d.y.data());
        eva::moe_backward_naive(m, d.x.data(), c.naive_tokens, d.dy.data(), d.dx.data(), g);
        benchmark::DoNotOptimize(d.dx.data());
    }
    set_rate(st, c.naive_tokens);
}


}  // namespace

int main(int argc, char** argv) {
    const std::string json_path = eva::bench::take_json_option(argc, argv);
    const auto all = cases();
    for (const Case& c : all) {
        benchmark::RegisterBenchmark(("moe/" + c.name).c_str(), bm_moe, c)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("dense/" + c.name).c_str(), bm_dense, c)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("naive/" + c.name).c_str(), bm_naive, c)->Unit(benchmark::kMillisecond);
    }
    benchmark::Initialize(&argc, argv);
    std::printf("MoE layer forward+backward, 1 thread, GEMM kernel: %s\n", eva::gemm_arch().c_str());
    eva::bench::MedianReporter reporter("tokens/s");
    benchmark::RunSpecifiedBenchmarks(&reporter);

    nlohmann::json out = {{"simd", eva::gemm_arch()}, {"cases", nlohmann::json::array()}};
    std::printf("\n%-14s %12s %12s %12s %14s %14s\n", "case", "MoE tok/s", "dense tok/s", "naive tok/s",
                "MoE/dense time", "naive/MoE time");
    for (const Case& c : all) {
        auto& r = reporter.value;
        if (!r.count("moe/" + c.name) || !r.count("dense/" + c.name) || !r.count("naive/" + c.name)) continue;
        const double moe = r["moe/" + c.name], dense = r["dense/" + c.name], naive = r["naive/" + c.name];
        std::printf("%-14s %12.0f %12.0f %12.0f %13.2fx %13.1fx\n", c.name.c_str(), moe, dense, naive, dense / moe,
                    moe / naive);
        out["cases"].push_back({{"case", c.name}, {"config", c.cfg.to_json()}, {"tokens", c.tokens},
                                {"naive_tokens", c.naive_tokens}, {"moe_tokens_per_s", moe},
                                {"dense_tokens_per_s", dense}, {"naive_tokens_per_s", naive},
                                {"moe_over_dense_time", dense / moe}, {"naive_over_moe_time", moe / naive}});
    }
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << '\n';
    return 0;
}
