// A plain timing harness for the GEMM that builds natively and to WebAssembly, so that the two figures
// compare the same code. Prints one JSON object: the median GFLOP/s per shape, per second of the
// process's CPU time (on a shared machine wall time also counts the periods it was not scheduled).
//   native: build/release/eva_speed      wasm: node --no-experimental-fetch build/wasm/eva_speed.js
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#ifdef __EMSCRIPTEN__
#include <emscripten.h>
#else
#include <ctime>
#endif

#include <nlohmann/json.hpp>

#include "eva/gemm.hpp"
#include "eva/rng.hpp"

namespace {

#ifdef __EMSCRIPTEN__
// Under node: user + system CPU time of the process (microseconds); in wasm, std::clock is wall time.
EM_JS(double, cpu_seconds, (), {
    const u = process.cpuUsage();
    return (u.user + u.system) * 1e-6;
});
#else
double cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}
#endif

double median_gflops(int m, int n, int k, int reps) {
    std::vector<float> a(std::size_t(m) * k), b(std::size_t(k) * n), c(std::size_t(m) * n);
    eva::Rng rng(7);
    rng.fill_normal(a.data(), a.size(), 0, 1);
    rng.fill_normal(b.data(), b.size(), 0, 1);
    std::vector<double> rates;
    for (int r = 0; r < reps + 1; ++r) {  // the first run warms caches and is not counted
        const double t0 = cpu_seconds();
        eva::gemm<float>(eva::Op::N, eva::Op::N, m, n, k, a.data(), k, b.data(), n, c.data(), n);
        const double s = cpu_seconds() - t0;
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
