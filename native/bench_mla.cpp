// MLA benchmark: one attention layer with DeepSeek-V2-Lite's dimensions (dim 2048, 16 heads,
// kv_lora_rank 512, nope 128 + rope 64, v 128, no query compression), fp32, one thread.
//   decode: the latency of one decoding step at context 512, 2048 and 8192 for
//     absorbed MLA (cache c_KV + k_pe: 576 floats per token),
//     naive MLA    (cache per-head K and V: 16·(192 + 128) floats per token),
//     plain MHA    (wq, wk, wv, wo with the same heads and head sizes, full K/V cache, no latent),
//   all in the same run, with the cache bytes beside each and the ratios to MHA.
//   prefill: tokens/s of the batched causal forward (training path) and of the absorbed path on one
//   512-token prompt chunk.
// Run: build/release/eva_bench_mla [--benchmark_min_time=0.5] [--json FILE]
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/config.hpp"
#include "eva/gemm.hpp"
#include "bench_common.hpp"
#include "eva/mla.hpp"
#include "eva/rng.hpp"
#include "eva/rope.hpp"

namespace {

using eva::Matrix;

const std::size_t kContexts[] = {512, 2048, 8192};

eva::ModelArgs v2_lite() { return eva::preset("v2-lite"); }  // max_seq_len 16384: room for 8192 + 1

const eva::MLAWeights<float>& weights() {
    static const auto w = [] {
        eva::Rng rng(1);
        return eva::mla_init<float>(v2_lite(), rng, 1.0 / std::sqrt(2048.0));
    }();
    return w;
}

Matrix<float> random_rows(std::size_t n, std::size_t d, std::uint64_t seed) {
    Matrix<float> m = Matrix<float>::from_shape({n, d});
    eva::Rng rng(seed);
    for (auto& v : m) v = rng.uniform() * 2 - 1;
    return m;
}

void fill(std::vector<float>& v, std::uint64_t seed) {
    eva::Rng rng(seed);
    for (auto& e : v) e = rng.uniform() * 2 - 1;
}

// The cache contents only matter as bytes to read: random values stand in for a prefill of L tokens.
template <class Cache>
void bm_mla_decode(benchmark::State& st, std::size_t L) {
    const auto a = v2_lite();
    const auto rope = eva::make_rope(a);
    Cache cache(a, L + 1);
    if constexpr (std::is_same_v<Cache, eva::MLAAbsorbedCache<float>>) {
        fill(cache.kv, 2), fill(cache.pe, 3);
    } else {
        fill(cache.k, 2), fill(cache.v, 3);
    }
    const auto x = random_rows(1, 2048, 4);
    const auto& w = weights();  // built once, outside the timed loop
    for (auto _ : st) {
        cache.length = L;  // every iteration is the step from L to L + 1
        auto y = eva::mla_decode(a, rope, w, cache, x);
        benchmark::DoNotOptimize(y.data());
    }
    st.counters["cache_MiB"] = double(cache.floats() - cache.floats() / (L + 1)) * 4 / (1 << 20);
}

// Plain multi-head attention with the same 16 heads, keys of 192 and values of 128: q, k, v come from
// full projections of the new token and the cache holds every head's key and value.
struct Mha {
    std::size_t H = 16, dk = 192, dv = 128, dim = 2048;
    Matrix<float> wq, wk, wv, wo;
    std::vector<float> K, V;
    explicit Mha(std::size_t capacity)
        : wq(random_rows(H * dk, dim, 5)), wk(random_rows(H * dk, dim, 6)), wv(random_rows(H * dv, dim, 7)),
          wo(random_rows(dim, H * dv, 8)), K(capacity * H * dk), V(capacity * H * dv) {
        fill(K, 9), fill(V, 10);
    }
    // One step at position L; no RoPE (its cost for one token is negligible next to the projections).
    void step(const float* x, std::size_t L, float* out) {
        using eva::Op;
        std::vector<float> q(H * dk), o(H * dv), s(L + 1);
        eva::gemm<float>(Op::N, Op::T, 1, H * dk, dim, x, dim, wq.data(), dim, q.data(), H * dk);
        eva::gemm<float>(Op::N, Op::T, 1, H * dk, dim, x, dim, wk.data(), dim, &K[L * H * dk], H * dk);
        eva::gemm<float>(Op::N, Op::T, 1, H * dv, dim, x, dim, wv.data(), dim, &V[L * H * dv], H * dv);
        const float scale = 1 / std::sqrt(float(dk));
        for (std::size_t h = 0; h < H; ++h) {
            eva::gemm<float>(Op::N, Op::T, 1, L + 1, dk, &q[h * dk], H * dk, &K[h * dk], H * dk, s.data(), L + 1);
            float mx = -INFINITY, sum = 0;
            for (auto& e : s) mx = std::max(mx, e * scale);
            for (auto& e : s) sum += (e = std::exp(e * scale - mx));
            for (auto& e : s) e /= sum;
            eva::gemm<float>(Op::N, Op::N, 1, dv, L + 1, s.data(), L + 1, &V[h * dv], H * dv, &o[h * dv], H * dv);
        }
        eva::gemm<float>(Op::N, Op::T, 1, dim, H * dv, o.data(), H * dv, wo.data(), H * dv, out, dim);
    }
};

void bm_mha_decode(benchmark::State& st, std::size_t L) {
    Mha m(L + 1);
    const auto x = random_rows(1, 2048, 4);
    std::vector<float> y(2048);
    for (auto _ : st) {
        m.step(x.data(), L, y.data());
        benchmark::DoNotOptimize(y.data());
    }
    st.counters["cache_MiB"] = double(L * m.H * (m.dk + m.dv)) * 4 / (1 << 20);
}

void bm_prefill_forward(benchmark::State& st, std::size_t T) {
    const auto a = v2_lite();
    const auto rope = eva::make_rope(a);
    const auto x = random_rows(T, 2048, 11);
    const auto& w = weights();
    for (auto _ : st) {
        auto y = eva::mla_forward(a, rope, w, x, 1, T);
        benchmark::DoNotOptimize(y.data());
    }
    st.counters["tokens/s"] = benchmark::Counter(double(T), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_prefill_absorbed(benchmark::State& st, std::size_t T) {
    const auto a = v2_lite();
    const auto rope = eva::make_rope(a);
    const auto x = random_rows(T, 2048, 11);
    eva::MLAAbsorbedCache<float> cache(a, T);
    const auto& w = weights();
    for (auto _ : st) {
        cache.length = 0;
        auto y = eva::mla_decode(a, rope, w, cache, x);
        benchmark::DoNotOptimize(y.data());
    }
    st.counters["tokens/s"] = benchmark::Counter(double(T), benchmark::Counter::kIsIterationInvariantRate);
}

// Keeps each benchmark's median (or only) time in ms and its counters.
class Keeper : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> ms, cache_mib, tokens_per_s;
    void ReportRuns(const std::vector<Run>& runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const auto& r : runs) {
            if (r.run_type != Run::RT_Iteration && r.aggregate_name != "median") continue;
            const auto name = r.run_name.function_name;
            // CPU time, in the benchmark's unit (ms): the machine is shared, and wall time then also
            // counts the periods this thread was not scheduled.
            ms[name] = r.GetAdjustedCPUTime();
            if (r.counters.count("cache_MiB")) cache_mib[name] = r.counters.at("cache_MiB").value;
            if (r.counters.count("tokens/s")) tokens_per_s[name] = r.counters.at("tokens/s").value;
        }
    }
};

}  // namespace

int main(int argc, char** argv) {
    const std::string json_path = eva::bench::take_json_option(argc, argv);
    std::printf("one MLA layer, DeepSeek-V2-Lite dims (dim 2048, 16 heads, kv_lora 512, nope 128/rope 64/v 128), "
                "fp32, 1 thread, GEMM %s; ratios use CPU time\n", eva::gemm_arch().c_str());
    for (std::size_t L : kContexts) {
        const auto s = std::to_string(L);
        benchmark::RegisterBenchmark(("decode/absorbed/" + s).c_str(), bm_mla_decode<eva::MLAAbsorbedCache<float>>, L)
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("decode/naive/" + s).c_str(), bm_mla_decode<eva::MLANaiveCache<float>>, L)
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("decode/mha/" + s).c_str(), bm_mha_decode, L)->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark("prefill/forward/512", bm_prefill_forward, 512)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("prefill/absorbed/512", bm_prefill_absorbed, 512)->Unit(benchmark::kMillisecond);
    benchmark::Initialize(&argc, argv);
    Keeper k;
    benchmark::RunSpecifiedBenchmarks(&k);

    nlohmann::json out = {{"simd", eva::gemm_arch()}, {"decode", nlohmann::json::array()}, {"prefill", nlohmann::json::object()}};
    std::printf("\n%-8s %13s %10s %13s %10s %13s %10s %12s %12s\n", "context", "absorbed ms", "cache MiB", "naive ms",
                "cache MiB", "MHA ms", "cache MiB", "absorbed/MHA", "naive/MHA");
    for (std::size_t L : kContexts) {
        const auto s = std::to_string(L);
        const std::string a = "decode/absorbed/" + s, nv = "decode/naive/" + s, m = "decode/mha/" + s;
        if (!k.ms.count(a) || !k.ms.count(nv) || !k.ms.count(m)) continue;
        std::printf("%-8zu %13.3f %10.1f %13.3f %10.1f %13.3f %10.1f %11.2fx %11.2fx\n", L, k.ms[a], k.cache_mib[a],
                    k.ms[nv], k.cache_mib[nv], k.ms[m], k.cache_mib[m], k.ms[a] / k.ms[m], k.ms[nv] / k.ms[m]);
        out["decode"].push_back({{"context", L}, {"absorbed_ms", k.ms[a]}, {"naive_ms", k.ms[nv]}, {"mha_ms", k.ms[m]},
                                 {"absorbed_cache_mib", k.cache_mib[a]}, {"naive_cache_mib", k.cache_mib[nv]},
                                 {"mha_cache_mib", k.cache_mib[m]}, {"absorbed_over_mha", k.ms[a] / k.ms[m]},
                                 {"naive_over_mha", k.ms[nv] / k.ms[m]}});
    }
    for (const char* p : {"prefill/forward/512", "prefill/absorbed/512"})
        if (k.tokens_per_s.count(p)) {
            std::printf("%-22s %10.0f tokens/s\n", p, k.tokens_per_s[p]);
            out["prefill"][p] = k.tokens_per_s[p];
        }
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << '\n';
    return 0;
}
