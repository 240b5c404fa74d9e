// A plain timing harness for the GEMM that builds natively and to WebAssembly, so that the two figures
// compare the same code. Prints one JSON object: the median GFLOP/s per shape.
//   native: build/release/eva_speed      wasm: node --no-experimental-fetch build/wasm/eva_speed.js
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/gemm.hpp"
#include "eva/rng.hpp"

namespace {

double median_gflops(int m, int n, int k, int reps) {
    std::vector<float> a(std::size_t(m) * k), b(std::size_t(k) * n), c(std::size_t(m) * n);
    eva::Rng rng(7);
    rng.fill_normal(a.data(), a.size(), 0, 1);
    rng.fill_normal(b.data(), b.size(), 0, 1);
    std::vector<double> rates;
    for (int r = 0; r < reps + 1; ++r) {  // the first run warms caches and is not counted
        const auto t0 = std::chrono::steady_clock::now();
        eva::gemm<float>(eva::Op::N, eva::Op::N, m, n, k, a.data(), k, b.data(), n, c.data(), n);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) rates.push_back(2.0 * m * n * k / s * 1e-9);
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
}

}  // namespace

int main() {
#ifdef __EMSCRIPTEN__
    const char* target = "wasm";
#else
    const char* target = "native";
#endif
    nlohmann::json out = {{"target", target}, {"simd", eva::gemm_arch()}, {"gemm", nlohmann::json::array()}};
    const int shapes[][3] = {{256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {4096, 256, 256}};
    for (auto [m, n, k] : shapes)
        out["gemm"].push_back({{"shape", std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k)},
                               {"gflops", median_gflops(m, n, k, m >= 1024 ? 5 : 11)}});
    std::printf("%s\n", out.dump().c_str());
}
