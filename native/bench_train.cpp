// Training throughput: one step of eva-mini (forward, hand-written backward, clipping, AdamW, bias
// update) against the same model trained by PyTorch (native/bench_train.py, Debian's python3-torch,
// float32, autograd) with the same batch and the same thread count, measured in the same run.
// PyTorch's thread settings are pinned (OMP/OpenBLAS threads, OMP_WAIT_POLICY=PASSIVE): with default
// settings its OpenMP and OpenBLAS threads spin against each other and it looks slower than it is.
// Usage: build/release/eva_bench_train [--config mini] [--batch 16] [--seq-len 128] [--steps 10] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "eva/checkpoint.hpp"
#include "eva/trainer.hpp"

namespace {

double eva_median_step(eva::Model<float>& m, int batch, int seq_len, int steps) {
    auto grad = eva::model_zeros(m);
    eva::ModelActivations<float> acts;
    eva::AdamW opt;
    const auto ps = eva::trainable_params(m.w, grad);
    eva::Rng rng(5);
    std::vector<double> times;
    for (int s = 0; s < steps + 2; ++s) {  // two warm-up steps
        std::vector<eva::Token> in(std::size_t(batch) * seq_len), out(in.size());
        for (auto& t : in) t = eva::Token(rng.next_u32() % std::uint32_t(m.args.vocab_size));
        for (auto& t : out) t = eva::Token(rng.next_u32() % std::uint32_t(m.args.vocab_size));
        const auto t0 = std::chrono::steady_clock::now();
        for (const auto& p : ps) std::fill(p.grad, p.grad + p.size, 0.0f);
        eva::model_loss_and_grad(m, in, out, std::size_t(batch), std::size_t(seq_len), grad, &acts);
        eva::clip_grad_norm(ps, 1.0);
        opt.step(ps, 1e-3);
        eva::update_balance_bias(m, acts);
        if (s >= 2) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

double torch_median_step(const std::string& model, int batch, int seq_len, int steps, int threads) {
    const std::string here = __FILE__, script = here.substr(0, here.find_last_of('/')) + "/bench_train.py";
    const std::string t = std::to_string(threads);
    const std::string cmd = "OMP_NUM_THREADS=" + t + " OPENBLAS_NUM_THREADS=" + t + " MKL_NUM_THREADS=" + t +
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
    CLI::App app{"Training tokens/s: eva vs PyTorch on the same model, batch and threads"};
    std::string config = "mini", json_path;
    int batch = 16, seq_len = 128, steps = 10;
    app.add_option("--config", config, "Preset or ModelArgs JSON")->capture_default_str();
    app.add_option("--batch", batch, "Sequences per step")->capture_default_str();
    app.add_option("--seq-len", seq_len, "Tokens per sequence")->capture_default_str();
    app.add_option("--steps", steps, "Timed steps (after 2 warm-up steps)")->capture_default_str();
    app.add_option("--json", json_path, "Also write the figures as JSON here");
    CLI11_PARSE(app, argc, argv);

    const auto args = eva::preset_or_file(config);
    eva::Rng rng(1);
    auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
    char dir[] = "/tmp/eva_bench_train_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    const std::string model = std::string(dir) + "/model.safetensors";
    eva::save_model(m, model);

    const double tokens = double(batch) * seq_len;
    const double eva_s = eva_median_step(m, batch, seq_len, steps);
    std::printf("%-36s %10s %12s %10s\n", "trainer (1 thread unless noted)", "ms/step", "tokens/s", "eva speedup");
    std::printf("%-36s %10.1f %12.0f %10s\n", ("eva, " + config).c_str(), eva_s * 1e3, tokens / eva_s, "");
    nlohmann::json j = {{"config", config}, {"batch", batch}, {"seq_len", seq_len}, {"eva_seconds", eva_s},
                        {"eva_tokens_per_s", tokens / eva_s}};
    for (int threads : {1, 2}) {
        const double t = torch_median_step(model, batch, seq_len, steps, threads);
        if (t < 0) {
            std::printf("PyTorch (%d threads): not available (/usr/bin/python3 with torch needed)\n", threads);
            continue;
        }
        const std::string name = "PyTorch fp32, " + std::to_string(threads) + " thread" + (threads > 1 ? "s" : "");
        std::printf("%-36s %10.1f %12.0f %9.2fx\n", name.c_str(), t * 1e3, tokens / t, t / eva_s);
        j["torch_" + std::to_string(threads) + "t_seconds"] = t;
        j["speedup_vs_torch_" + std::to_string(threads) + "t"] = t / eva_s;
    }
    std::system(("rm -rf " + std::string(dir)).c_str());
    if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << '\n';
    return 0;
}
