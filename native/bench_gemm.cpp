// GEMM benchmark: eva's kernel against OpenBLAS cblas_sgemm (1 thread), measured in the same run.
// Prints Google Benchmark's table, then one line per shape with the median GFLOP/s of both, their
// ratio, and each as a fraction of the core's fp32 FMA peak (eva/peak.hpp), measured in the same run. Run: build/release/eva_bench [--benchmark_repetitions=N] [--json FILE]
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_common.hpp"
#include "eva/gemm.hpp"
#include "eva/peak.hpp"
#include "eva/rng.hpp"

namespace {

struct Shape {
    int m, n, k;
    bool trans_b;
};
const Shape kShapes[] = {{256, 256, 256, false},  {512, 512, 512, false}, {1024, 1024, 1024, false},
                         {4096, 256, 256, false}, {512, 512, 512, true},  {4096, 256, 256, true}};

std::string label(const Shape& s) {
    return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) + (s.trans_b ? "/NT" : "/NN");
}

struct Operands {
    std::vector<float> a, b, c;
    explicit Operands(const Shape& s) : a(std::size_t(s.m) * s.k), b(std::size_t(s.k) * s.n), c(std::size_t(s.m) * s.n) {
        eva::Rng rng(7);
        rng.fill_normal(a.data(), a.size(), 0, 1);
        rng.fill_normal(b.data(), b.size(), 0, 1);
    }
};

void set_rate(benchmark::State& st, const Shape& s) {
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.m * s.n * s.k * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_eva(benchmark::State& st, Shape s) {
    Operands o(s);
    const std::size_t ldb = s.trans_b ? s.k : s.n;
    for (auto _ : st) {
        eva::gemm<float>(eva::Op::N, s.trans_b ? eva::Op::T : eva::Op::N, s.m, s.n, s.k, o.a.data(), s.k,
                         o.b.data(), ldb, o.c.data(), s.n);
        benchmark::DoNotOptimize(o.c.data());
    }
    set_rate(st, s);
}

void bm_openblas(benchmark::State& st, Shape s) {
    Operands o(s);
    const int ldb = s.trans_b ? s.k : s.n;
    for (auto _ : st) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.0f,
                    o.a.data(), s.k, o.b.data(), ldb, 0.0f, o.c.data(), s.n);
        benchmark::DoNotOptimize(o.c.data());
    }
    set_rate(st, s);
}


}  // namespace

extern "C" char* openblas_get_corename(void);

int main(int argc, char** argv) {
    // OpenBLAS 0.3.21 does not recognise recent CPUs behind a hypervisor: on Xeons it falls back to
    // its Prescott (SSE3) kernels, about 5x slower than its best, and on an AMD EPYC with AVX-512
    // (family 26) to its Haswell (AVX2) kernels, half the speed of its SkylakeX ones there (measured:
    // 107 vs 207 GFLOP/s at 512³). A fair baseline is its best kernel for this CPU, so on any AVX-512
    // CPU not already given an AVX-512 kernel, re-run once with OPENBLAS_CORETYPE set (it is read
    // when the library loads).
    const std::string core = openblas_get_corename();
    if (!std::getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f") && core != "SkylakeX" &&
        core != "Cooperlake" && core != "SapphireRapids") {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
        execv("/proc/self/exe", argv);
    }
    openblas_set_num_threads(1);
    std::printf("baseline: OpenBLAS %s kernel, 1 thread; eva kernel: %s\n", openblas_get_corename(),
                eva::gemm_arch().c_str());
    const std::string json_path = eva::bench::take_json_option(argc, argv);
    for (const Shape& s : kShapes) {
        benchmark::RegisterBenchmark(("eva/" + label(s)).c_str(), bm_eva, s)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("openblas/" + label(s)).c_str(), bm_openblas, s)->Unit(benchmark::kMillisecond);
    }
    benchmark::Initialize(&argc, argv);
    eva::bench::MedianReporter reporter("GFLOP/s");
    benchmark::RunSpecifiedBenchmarks(&reporter);
    const eva::FmaPeak peak = eva::measure_fma_peak();  // after the benchmarks: the core is warm

    nlohmann::json out = {{"simd", eva::gemm_arch()},
                          {"baseline", std::string("OpenBLAS cblas_sgemm, 1 thread, ") + openblas_get_corename() + " kernel"}, {"shapes", nlohmann::json::array()},
                          {"peak_gflops", peak.gflops}, {"peak_simd", peak.simd}, {"clock_ghz", peak.ghz}};
    std::printf("\nfp32 FMA peak of one core: %.1f GFLOP/s (%s, %.2f GHz, %.0f FLOP/cycle)\n", peak.gflops,
                peak.simd.c_str(), peak.ghz, peak.flops_per_cycle());
    std::printf("%-20s %12s %16s %10s %12s %12s\n", "shape (MxNxK/ops)", "eva GFLOP/s", "OpenBLAS GFLOP/s", "ratio",
                "eva % peak", "OpenBLAS %");
    for (const Shape& s : kShapes) {
        const std::string l = label(s);
        if (!reporter.value.count("eva/" + l) || !reporter.value.count("openblas/" + l)) continue;
        const double e = reporter.value["eva/" + l], b = reporter.value["openblas/" + l];
        std::printf("%-20s %12.1f %16.1f %9.2fx %11.1f%% %11.1f%%\n", l.c_str(), e, b, e / b, 100 * e / peak.gflops,
                    100 * b / peak.gflops);
        out["shapes"].push_back({{"shape", l}, {"eva_gflops", e}, {"openblas_gflops", b}, {"ratio", e / b},
                                 {"eva_peak_fraction", e / peak.gflops}, {"openblas_peak_fraction", b / peak.gflops}});
    }
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << '\n';
    return 0;
}
