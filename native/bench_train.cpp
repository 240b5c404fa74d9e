// Training throughput: one step of eva-mini (forward, hand-written backward, clipping, AdamW, bias
// update) against the same model trained by PyTorch (native/bench_train.py, Debian's python3-torch,
// float32, autograd) with the same batch and the same thread count, measured in the same run.
// For each thread count, eva and PyTorch alternate for --rounds rounds (each a median over --steps
// steps), so both see the same machine load; the report gives the median and the minimum over rounds
// and the median of the per-round ratios.
// PyTorch's thread settings are pinned (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, torch.set_num_threads,
// OMP_WAIT_POLICY=PASSIVE): with default settings its OpenMP and OpenBLAS threads spin against each
// other and it looks slower than it is. Debian's OpenBLAS (under PyTorch's matrix products) does not
// recognise recent Xeons behind a hypervisor and falls back to its Prescott kernels, 3x slower here;
// the baseline gets its best kernel (OPENBLAS_CORETYPE=SkylakeX on AVX-512 CPUs, as in eva_bench_gemm).
// eva's thread count is set with eva::set_num_threads, and its OpenMP threads get the same passive
// wait policy (the program re-executes itself once to set it: libgomp reads it when it loads).
// Each time is also given as model FLOPs utilisation: MFU = the step's model FLOPs (eva/flops.hpp,
// counted from the config) ÷ time ÷ (threads × one core's fp32 FMA peak, eva/peak.hpp, measured in the
// same run; the two vCPUs here are independent cores).
// The same step with FP8 Linear layers (--precision fp8: E4M3 operands in 1×128 tiles and 128×128
// blocks, emulated in fp32) is timed in each round right after the fp32 one; its ratio to the fp32 step
// is the median of the per-round ratios.
// Per thread count it also times `eva train`'s own step (eva::Trainer) with the whole batch and with the
// default gradient shards, alternated step by step, and reports their ratio (the shard tree's cost) and
// the sharded step's minor page faults (target 0: no memory is mapped anew after the first steps).
// Usage: build/release/eva_bench_train [--config mini] [--batch 16] [--seq-len 128] [--steps 10]
//        [--threads 1,2] [--rounds 3] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "allocator.hpp"
#include "openmp_wait.hpp"
#include "eva/checkpoint.hpp"
#include "eva/flops.hpp"
#include "eva/peak.hpp"
#include "eva/threads.hpp"
#include "eva/trainer.hpp"

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

long minor_faults() {
    rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

struct EvaSteps {
    double median_seconds;
    double faults_per_step;  // minor page faults per timed step (the kernel mapping fresh pages)
};

EvaSteps eva_median_step(eva::Model<float>& m, int batch, int seq_len, int steps, int threads,
                         eva::LinearPrecision precision) {
    eva::set_num_threads(threads);
    m.precision = precision;
    auto grad = eva::model_zeros(m);
    eva::ModelActivations<float> acts;
    eva::AdamW opt;
    const auto ps = eva::trainable_params(m.w, grad);
    eva::WeightCache prepared;  // each weight packed (or quantized) once per step, as eva::Trainer does
    eva::Rng rng(5);
    std::vector<double> times;
    long faults = 0;
    for (int s = 0; s < steps + 2; ++s) {  // two warm-up steps
        std::vector<eva::Token> in(std::size_t(batch) * seq_len), out(in.size());
        for (auto& t : in) t = eva::Token(rng.next_u32() % std::uint32_t(m.args.vocab_size));
        for (auto& t : out) t = eva::Token(rng.next_u32() % std::uint32_t(m.args.vocab_size));
        const auto t0 = std::chrono::steady_clock::now();
        const long f0 = minor_faults();
        {
            const eva::WeightCacheScope scope(m, prepared);
            eva::model_loss_and_grad(m, in, out, std::size_t(batch), std::size_t(seq_len), grad, &acts);
        }
        // Clipped as AdamW reads the gradients, then set to zero for the next step, as eva::Trainer does.
        opt.step(ps, 1e-3, true, eva::clip_scale(eva::grad_norm(ps), 1.0));
        eva::update_balance_bias(m, acts);
        if (s < 2) continue;
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        faults += minor_faults() - f0;
    }
    return {median(times), double(faults) / steps};
}

// `eva train`'s own step (eva::Trainer, with its batch sampling and gradient shards) with the whole
// batch at once (--shards 1) and cut into the default shards, alternated step by step so that both see
// the same machine load: the price of the fixed summation order that lets a run print the same losses
// on any rank count (docs/5-model.md), and the sharded step's minor page faults.
struct ShardCost {
    int shards;
    double whole_seconds, sharded_seconds;  // medians over the timed steps, wall time
    double whole_cpu, sharded_cpu;          // the same in CPU time of the process (all threads): a busy
                                            // machine delays a thread, but does not add to its CPU time
    double faults_per_step;                 // of the sharded trainer's timed steps
};

double cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

ShardCost shard_cost(const eva::Model<float>& init, int batch, int seq_len, int steps, int threads) {
    eva::set_num_threads(threads);
    eva::Corpus corpus;  // random bytes: the cost of a step does not depend on the text
    eva::Rng rng(7);
    for (auto* part : {&corpus.train, &corpus.validation})
        for (std::size_t i = 0; i < std::size_t(batch) * std::size_t(seq_len) * 4; ++i)
            part->push_back(eva::Token(rng.next_u32() % std::uint32_t(init.args.vocab_size)));
    eva::TrainConfig whole;
    whole.batch = batch;
    whole.seq_len = seq_len;
    whole.steps = steps + 2;
    whole.shards = 1;
    eva::TrainConfig sharded = whole;
    sharded.shards = eva::default_shards(batch);
    auto m1 = init, m2 = init;
    eva::Trainer a(m1, corpus, whole), b(m2, corpus, sharded);
    std::vector<double> ta, tb, ca, cb;
    long faults = 0;
    for (int s = 0; s < steps + 2; ++s) {  // two warm-up steps
        const double c0 = cpu_seconds();
        const double sa = a.step().seconds;
        const double c1 = cpu_seconds();
        const long f0 = minor_faults();
        const double sb = b.step().seconds;
        const double c2 = cpu_seconds();
        if (s < 2) continue;
        faults += minor_faults() - f0;
        ta.push_back(sa);
        tb.push_back(sb);
        ca.push_back(c1 - c0);
        cb.push_back(c2 - c1);
    }
    return {sharded.shards, median(ta), median(tb), median(ca), median(cb), double(faults) / steps};
}

double torch_median_step(const std::string& model, int batch, int seq_len, int steps, int threads) {
    const std::string here = __FILE__, script = here.substr(0, here.find_last_of('/')) + "/bench_train.py";
    const std::string t = std::to_string(threads);
    const bool skylake = !std::getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512bw");
    const std::string cmd = std::string(skylake ? "OPENBLAS_CORETYPE=SkylakeX " : "") + "OMP_NUM_THREADS=" + t + " OPENBLAS_NUM_THREADS=" + t + " MKL_NUM_THREADS=" + t +
                            " OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 " + script + " " + model + " --batch " +
                            std::to_string(batch) + " --seq-len " + std::to_string(seq_len) + " --steps " +
                            std::to_string(steps) + " --threads " + t;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    std::string out;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    if (pclose(p) != 0 || out.empty()) return -1;
    return nlohmann::json::parse(out).at("median_seconds").get<double>();
}

}  // namespace

int main(int argc, char** argv) {
    eva::native::keep_freed_memory();
    eva::native::passive_openmp_wait(argv);
    CLI::App app{"Training tokens/s: eva vs PyTorch on the same model, batch and threads"};
    std::string config = "mini", json_path;
    int batch = 16, seq_len = 128, steps = 10, rounds = 3;
    std::vector<int> thread_counts{1, 2};
    app.add_option("--config", config, "Preset or ModelArgs JSON")->capture_default_str();
    app.add_option("--batch", batch, "Sequences per step")->capture_default_str();
    app.add_option("--seq-len", seq_len, "Tokens per sequence")->capture_default_str();
    app.add_option("--steps", steps, "Timed steps per measurement (after 2 warm-up steps)")->capture_default_str();
    app.add_option("--threads", thread_counts, "Thread counts to compare at (both trainers use the same)")
        ->delimiter(',')->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--rounds", rounds, "Alternating eva/PyTorch measurements per thread count")
        ->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--json", json_path, "Also write the figures as JSON here");
    CLI11_PARSE(app, argc, argv);

    const auto args = eva::preset_or_file(config);
    eva::Rng rng(1);
    auto init = eva::model_init<float>(args, eva::moe_config(args), rng);
    char dir[] = "/tmp/eva_bench_train_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    const std::string model = std::string(dir) + "/model.safetensors";
    eva::save_model(init, model);

    const double tokens = double(batch) * seq_len;
    const eva::StepFlops flops = eva::training_step_flops(args, batch, seq_len);
    const eva::FmaPeak peak = eva::measure_fma_peak();
    auto mfu = [&](double seconds, int threads) { return flops.total() * 1e-9 / seconds / (threads * peak.gflops); };
    nlohmann::json j = {{"config", config}, {"batch", batch}, {"seq_len", seq_len}, {"steps", steps},
                        {"rounds", rounds}, {"eva_threads_available", eva::threads_available()},
                        {"step_gflop", flops.total() * 1e-9}, {"step_gflop_linear", flops.linear * 1e-9},
                        {"step_gflop_attention", flops.attention * 1e-9}, {"matmul_weights", flops.matmul_weights},
                        {"peak_gflops", peak.gflops}, {"peak_simd", peak.simd}, {"clock_ghz", peak.ghz}};
    std::printf("%s, batch %d x %d, %d rounds of %d steps per thread count\n", config.c_str(), batch, seq_len, rounds, steps);
    std::printf("model FLOPs per step: %.2f GFLOP = 6 x %.3f M matmul weights x %.0f tokens (%.2f) + causal "
                "attention (%.2f)\n", flops.total() * 1e-9, flops.matmul_weights * 1e-6, tokens, flops.linear * 1e-9,
                flops.attention * 1e-9);
    std::printf("fp32 FMA peak of one core: %.1f GFLOP/s (%s, %.2f GHz), measured now\n", peak.gflops, peak.simd.c_str(), peak.ghz);
    std::printf("%-8s %-9s %12s %12s %12s %8s %14s\n", "threads", "trainer", "median ms", "min ms", "tokens/s", "MFU",
                "eva speedup");
    // A fresh process's heap grows to the steps' working set over their first few dozen steps: thousands
    // of page faults per step (the first round then ran ~10% slower than the next), which a training run
    // pays once at its start. Untimed passes first, so that the rounds time the steady state: each step
    // twice, in the rounds' order. Even so the heap may still grow in the first fp32 round (3 to ~110
    // page faults per step in single-round runs here, against ~100 after one pass of each); the rounds
    // after it take none, and the reported figure is the median over the rounds (3 by default).
    for (int pass = 0; pass < 2; ++pass)
        for (auto precision : {eva::LinearPrecision::fp32, eva::LinearPrecision::fp8}) {
            auto m = init;
            eva_median_step(m, batch, seq_len, steps, thread_counts.front(), precision);
        }
    for (int threads : thread_counts) {
        std::vector<double> eva_s, fp8_s, fp8_ratio, torch_s, ratio, faults;
        for (int r = 0; r < rounds; ++r) {
            auto m = init;  // every round trains the same initial weights
            const EvaSteps e = eva_median_step(m, batch, seq_len, steps, threads, eva::LinearPrecision::fp32);
            eva_s.push_back(e.median_seconds);
            faults.push_back(e.faults_per_step);
            m = init;  // the same step with FP8 Linear layers (DeepSeek-V3's recipe, emulated)
            fp8_s.push_back(eva_median_step(m, batch, seq_len, steps, threads, eva::LinearPrecision::fp8).median_seconds);
            fp8_ratio.push_back(fp8_s.back() / eva_s.back());
            const double t = torch_median_step(model, batch, seq_len, steps, threads);
            if (t > 0) {
                torch_s.push_back(t);
                ratio.push_back(t / eva_s.back());
            }
        }
        const double e = median(eva_s);
        const std::string key = std::to_string(threads) + "t";
        std::printf("%-8d %-9s %12.1f %12.1f %12.0f %7.1f%% %14s\n", threads, "eva", e * 1e3,
                    *std::min_element(eva_s.begin(), eva_s.end()) * 1e3, tokens / e, 100 * mfu(e, threads), "");
        j["eva_" + key + "_seconds"] = eva_s;
        j["eva_" + key + "_page_faults_per_step"] = median(faults);
        std::printf("%-8d %-9s %.0f minor page faults per step\n", threads, "eva", median(faults));
        j["eva_" + key + "_mfu"] = mfu(e, threads);
        const double f = median(fp8_s);
        std::printf("%-8d %-9s %12.1f %12.1f %12.0f %7.1f%% %13.2fx the fp32 step\n", threads, "eva fp8", f * 1e3,
                    *std::min_element(fp8_s.begin(), fp8_s.end()) * 1e3, tokens / f, 100 * mfu(f, threads),
                    median(fp8_ratio));
        j["eva_fp8_" + key + "_seconds"] = fp8_s;
        j["eva_fp8_" + key + "_mfu"] = mfu(f, threads);
        j["fp8_vs_fp32_" + key] = median(fp8_ratio);
        const ShardCost c = shard_cost(init, batch, seq_len, steps, threads);
        std::printf("%-8d %-9s whole batch %.1f ms (CPU %.1f ms), %d shards %.1f ms (CPU %.1f ms): %.2fx (CPU %.2fx), "
                    "%.0f minor page faults per step\n", threads, "Trainer", c.whole_seconds * 1e3, c.whole_cpu * 1e3,
                    c.shards, c.sharded_seconds * 1e3, c.sharded_cpu * 1e3, c.sharded_seconds / c.whole_seconds,
                    c.sharded_cpu / c.whole_cpu, c.faults_per_step);
        j["trainer_" + key + "_whole_seconds"] = c.whole_seconds;
        j["trainer_" + key + "_sharded_seconds"] = c.sharded_seconds;
        j["trainer_" + key + "_shards"] = c.shards;
        j["trainer_" + key + "_shard_cost"] = c.sharded_seconds / c.whole_seconds;
        j["trainer_" + key + "_whole_cpu_seconds"] = c.whole_cpu;
        j["trainer_" + key + "_sharded_cpu_seconds"] = c.sharded_cpu;
        j["trainer_" + key + "_shard_cpu_cost"] = c.sharded_cpu / c.whole_cpu;
        j["trainer_" + key + "_page_faults_per_step"] = c.faults_per_step;
        if (torch_s.empty()) {
            std::printf("%-8d PyTorch not available (/usr/bin/python3 with torch needed)\n", threads);
            continue;
        }
        const double t = median(torch_s);
        std::printf("%-8d %-9s %12.1f %12.1f %12.0f %7.1f%% %13.2fx\n", threads, "PyTorch", t * 1e3,
                    *std::min_element(torch_s.begin(), torch_s.end()) * 1e3, tokens / t, 100 * mfu(t, threads), median(ratio));
        j["torch_" + key + "_seconds"] = torch_s;
        j["torch_" + key + "_mfu"] = mfu(t, threads);
        j["speedup_vs_torch_" + key] = median(ratio);
    }
    std::system(("rm -rf " + std::string(dir)).c_str());
    if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << '\n';
    return 0;
}
