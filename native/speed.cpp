// A plain timing harness for the GEMM and a training step that builds natively and to WebAssembly, so
// that the two figures compare the same code. Prints one JSON object: the median GFLOP/s per shape and
// the median tokens/s of eva-mini training steps at the browser's Train panel settings (one thread), per
// second of the process's CPU time (on a shared machine wall time also counts the periods it was not
// scheduled). Both are also given as fractions of the fp32 multiply-add peak of the target measured in
// the same run (eva/peak.hpp: SIMD128 multiply + add in wasm, the widest x86 FMA natively), the GEMM's
// as `peak_fraction` and the training step's model FLOPs utilisation (eva/flops.hpp) as `mfu`.
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

#include "allocator.hpp"
#include "eva/flops.hpp"
#include "eva/gemm.hpp"
#include "eva/peak.hpp"
#include "eva/rng.hpp"
#include "eva/train_history.hpp"
#include "eva/trainer.hpp"

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

// Median CPU seconds of an eva-mini optimizer step (Trainer::step: batch, forward, backward, clipping,
// AdamW, bias update) from the seed-1 initialization, after one untimed warm-up step.
double median_step_seconds(const eva::Corpus& corpus, int batch, int seq_len, eva::LinearPrecision precision, int reps) {
    const eva::ModelArgs args = eva::preset("mini");
    eva::Rng rng(1);
    auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
    eva::TrainConfig cfg;
    cfg.batch = batch, cfg.seq_len = seq_len, cfg.precision = precision;
    eva::Trainer tr(m, corpus, cfg);
    tr.step();
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
        const double t0 = cpu_seconds();
        tr.step();
        times.push_back(cpu_seconds() - t0);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

// Debian's fortunes when installed (under node the harness sees the real file system), else a
// repetitive stand-in: the text changes which experts tokens pick, not how much arithmetic a step does.
eva::Corpus training_corpus() {
    try {
        return eva::load_corpus();
    } catch (const std::exception&) {
        std::string text;
        for (int i = 0; i < 4000; ++i) text += "A fortune " + std::to_string(i) + " is a short text.\n";
        return eva::corpus_from_text(text, "stand-in");
    }
}

}  // namespace

int main() {
    eva::native::keep_freed_memory();
#ifdef __EMSCRIPTEN__
    const char* target = "wasm";
#else
    const char* target = "native";
#endif
    const eva::FmaPeak peak = eva::measure_fma_peak();
    nlohmann::json out = {{"target", target}, {"simd", eva::gemm_arch()}, {"gemm", nlohmann::json::array()},
                          {"peak_gflops", peak.gflops}, {"peak_simd", peak.simd}, {"peak_fused", peak.fused}};
    const int shapes[][3] = {{256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {4096, 256, 256}};
    for (auto [m, n, k] : shapes) {
        const double g = median_gflops(m, n, k, m >= 1024 ? 5 : 11);
        out["gemm"].push_back({{"shape", std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k)},
                               {"gflops", g}, {"peak_fraction", g / peak.gflops}});
    }
    const eva::Corpus corpus = training_corpus();
    out["train"] = nlohmann::json::array();
    for (auto precision : {eva::LinearPrecision::fp32, eva::LinearPrecision::fp8}) {
        const int batch = eva::train_panel_config().batch, seq_len = eva::train_panel_config().seq_len;
        const double s = median_step_seconds(corpus, batch, seq_len, precision, 5);
        out["train"].push_back({{"config", "mini " + std::to_string(batch) + "x" + std::to_string(seq_len)},
                                {"precision", eva::to_string(precision)},
                                {"step_seconds", s},
                                {"tokens_per_s", batch * seq_len / s},
                                {"mfu", eva::training_step_flops(eva::preset("mini"), batch, seq_len).total() * 1e-9 / s / peak.gflops}});
    }
    std::printf("%s\n", out.dump().c_str());
}
