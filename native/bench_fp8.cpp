// FP8 codec benchmark: encoding a 64 MiB float32 tensor (16 Mi values) to E4M3, against memcpy of the
// same 64 MiB measured in the same run. Also the scalar codec (the reference loop), decoding, the
// per-tile (1×128) and per-block (128×128) quantization of a 4096×4096 tensor, and the one-pass
// quantize-dequantize an emulated FP8 Linear layer feeds its GEMM. Rates are GB/s of float32 data (64 MiB per pass);
// the table at the end gives each one's ratio to memcpy.
// Run: build/release/eva_bench_fp8 [--benchmark_repetitions=N] [--json FILE]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_common.hpp"
#include "eva/fp8.hpp"
#include "eva/rng.hpp"

namespace {

constexpr std::size_t kBytes = std::size_t(64) << 20;
constexpr std::size_t kValues = kBytes / sizeof(float);

// Normal values times 64: most land in E4M3's normal range, some in the subnormals, a few saturate.
const std::vector<float>& tensor() {
    static const std::vector<float> x = [] {
        std::vector<float> v(kValues);
        eva::Rng(3).fill_normal(v.data(), v.size(), 0, 64);
        return v;
    }();
    return x;
}

void set_rate(benchmark::State& st) {
    st.counters["GB/s"] = benchmark::Counter(double(kBytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_memcpy(benchmark::State& st) {
    const auto& x = tensor();
    std::vector<float> y(kValues, 1.0f);  // touched once so no page faults are timed
    for (auto _ : st) {
        std::memcpy(y.data(), x.data(), kBytes);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    set_rate(st);
}

void bm_encode(benchmark::State& st) {
    const auto& x = tensor();
    std::vector<std::uint8_t> q(kValues, 1);
    for (auto _ : st) {
        eva::fp8_encode(x.data(), q.data(), kValues, eva::Fp8Format::E4M3, /*saturate=*/true);
        benchmark::DoNotOptimize(q.data());
        benchmark::ClobberMemory();
    }
    set_rate(st);
}

void bm_encode_scalar(benchmark::State& st) {
    const auto& x = tensor();
    std::vector<std::uint8_t> q(kValues, 1);
    for (auto _ : st) {
        for (std::size_t i = 0; i < kValues; ++i) q[i] = eva::fp8_encode(x[i], eva::Fp8Format::E4M3, true);
        benchmark::DoNotOptimize(q.data());
        benchmark::ClobberMemory();
    }
    set_rate(st);
}

void bm_decode(benchmark::State& st) {
    std::vector<std::uint8_t> q(kValues);
    eva::fp8_encode(tensor().data(), q.data(), kValues, eva::Fp8Format::E4M3, true);
    std::vector<float> y(kValues, 1.0f);
    for (auto _ : st) {
        eva::fp8_decode(q.data(), y.data(), kValues, eva::Fp8Format::E4M3);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    set_rate(st);
}

template <eva::Fp8Matrix (*Quantize)(const float*, std::size_t, std::size_t, eva::Fp8Format)>
void bm_quantize(benchmark::State& st) {
    const auto& x = tensor();
    for (auto _ : st) {
        eva::Fp8Matrix q = Quantize(x.data(), 4096, 4096, eva::Fp8Format::E4M3);
        benchmark::DoNotOptimize(q.codes.data());
    }
    set_rate(st);
}

void bm_quantize_dequantize(benchmark::State& st) {
    const auto& x = tensor();
    std::vector<float> y(kValues);
    eva::Fp8QuantConfig tiles;  // E4M3, 1×128
    for (auto _ : st) {
        eva::quantize_dequantize(x.data(), 4096, 4096, 4096, tiles, y.data(), 4096);
        benchmark::DoNotOptimize(y.data());
    }
    set_rate(st);
}


}  // namespace

int main(int argc, char** argv) {
    const std::string json_path = eva::bench::take_json_option(argc, argv);
    const char* names[] = {"memcpy", "fp8_encode_e4m3", "fp8_encode_e4m3_scalar", "fp8_decode_e4m3",
                           "quantize_tiles_4096x4096", "quantize_blocks_4096x4096", "quantize_dequantize_tiles_4096x4096"};
    void (*fns[])(benchmark::State&) = {bm_memcpy, bm_encode, bm_encode_scalar, bm_decode, bm_quantize<eva::quantize_tiles>,
                                        bm_quantize<eva::quantize_blocks>, bm_quantize_dequantize};
    for (int i = 0; i < 7; ++i) benchmark::RegisterBenchmark(names[i], fns[i])->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::Initialize(&argc, argv);
    tensor();  // generate the data before any timing
    eva::bench::MedianReporter reporter("GB/s");
    benchmark::RunSpecifiedBenchmarks(&reporter);
    if (!reporter.value.count("memcpy")) return 0;
    const double base = reporter.value["memcpy"];
    std::printf("\n64 MiB of float32 per pass; ratio = rate / memcpy rate of the same 64 MiB (same run)\n");
    std::printf("%-36s %10s %8s\n", "benchmark", "GB/s", "ratio");
    nlohmann::json out = {{"bytes_per_pass", kBytes}, {"baseline", "memcpy"}, {"results", nlohmann::json::array()}};
    for (const char* n : names)
        if (reporter.value.count(n)) {
            std::printf("%-36s %10.2f %7.2fx\n", n, reporter.value[n], reporter.value[n] / base);
            out["results"].push_back({{"name", n}, {"gb_per_s", reporter.value[n]}, {"ratio", reporter.value[n] / base}});
        }
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << '\n';
    return 0;
}
