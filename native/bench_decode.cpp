// Decoding throughput of eva-mini, batch 1, greedy, one thread, all measured in the same run:
//   plain        eva's Generator: one forward per new token through the absorbed MLA cache;
//   speculative  eva's SpeculativeGenerator: the MTP module drafts a token, one forward of the main model
//                over two positions verifies it (eva/mtp.hpp); the output is checked equal to plain's;
//   PyTorch      the same weights decoded by native/bench_decode.py (Debian's python3-torch, float32, the
//                naive per-head K/V cache a plain implementation keeps, the official per-expert loop).
// Beside them, the cost that decides whether speculation can pay: the verifying forward of 2 tokens
// against one ordinary step of 1 token, at the same context. Each round alternates the decoders so all
// see the same machine load; the report gives medians over rounds.
// Without --weights the model is a freshly initialised mini with one MTP module (seed 1): its speeds are
// real but its acceptance rate is that of random weights; pass a trained checkpoint (`eva train --mtp 1`)
// for a meaningful one.
// Usage: build/release/eva_bench_decode [--weights FILE] [--prompt TEXT] [--new 128] [--rounds 3] [--json FILE]
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

#include "allocator.hpp"
#include "eva/checkpoint.hpp"
#include "eva/data.hpp"
#include "eva/hf_checkpoint.hpp"
#include "eva/mtp.hpp"
#include "eva/threads.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using eva::Token;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const eva::SamplingConfig kGreedy{0.0, 0, 1.0};

struct Run {
    std::vector<Token> tokens;  // the generated tokens
    double seconds_per_token = 0;
    eva::SpeculativeStats stats;
};

// Plain greedy decoding: the prompt's forward, then `n` timed steps of one token each.
Run plain(const eva::Model<float>& m, const std::vector<Token>& prompt, std::size_t n) {
    eva::Generator<float> gen(m, eva::AttentionCache::absorbed, prompt.size() + n);
    eva::Rng rng(1);
    Run r;
    auto logits = gen.feed(prompt);
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
        r.tokens.push_back(eva::sample_token(logits, kGreedy, rng));
        logits = gen.feed({r.tokens.back()});
    }
    r.seconds_per_token = seconds_since(t0) / double(n);
    return r;
}

// Speculative greedy decoding of the same prompt: rounds until `n` tokens exist (the first comes with
// the prompt's forward, as plain's first does), timed the same way.
Run speculative(const eva::Model<float>& m, const std::vector<Token>& prompt, std::size_t n) {
    eva::SpeculativeGenerator<float> gen(m, prompt.size() + n + m.w.mtp.size() + 1);
    eva::Rng rng(1);
    Run r;
    r.tokens.push_back(gen.start(prompt, kGreedy, rng));
    const auto t0 = Clock::now();
    while (r.tokens.size() < n) {
        const auto t = gen.step(kGreedy, rng);
        r.tokens.insert(r.tokens.end(), t.begin(), t.end());
    }
    r.seconds_per_token = seconds_since(t0) / double(n);
    r.tokens.resize(n);
    r.stats = gen.stats();
    return r;
}

// The seconds of one forward over `k` new tokens after `context`, median of `reps`. Repetition i feeds
// the k tokens of `stream` from position i (the cache is rolled back after each, so every repetition
// sees the same context length): like real decoding, each forward routes its own tokens to their own
// experts, instead of finding one token's expert weights already in the caches.
double forward_seconds(const eva::Model<float>& m, const std::vector<Token>& context, const std::vector<Token>& stream,
                       std::size_t k, int reps) {
    eva::Generator<float> gen(m, eva::AttentionCache::absorbed, context.size() + k);
    gen.feed(context);
    std::vector<double> t;
    for (int i = 0; i < reps + 2; ++i) {  // two warm-up forwards
        const auto from = stream.begin() + std::ptrdiff_t(std::size_t(i) % (stream.size() - k + 1));
        const std::vector<Token> fresh(from, from + std::ptrdiff_t(k));
        const auto t0 = Clock::now();
        gen.feed_all(fresh);
        if (i >= 2) t.push_back(seconds_since(t0));
        gen.truncate(context.size());
    }
    return median(t);
}

struct Torch {
    bool ok = false;
    std::vector<Token> tokens;
    double seconds_per_token = 0;
};

Torch torch_decode(const std::string& model, const std::vector<Token>& prompt, std::size_t n) {
    const std::string here = __FILE__, script = here.substr(0, here.find_last_of('/')) + "/bench_decode.py";
    std::string ids;
    for (Token t : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(t);
    const bool skylake = !std::getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512bw");
    const std::string cmd = std::string(skylake ? "OPENBLAS_CORETYPE=SkylakeX " : "") +
                            "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 /usr/bin/python3 " + script + " " +
                            model + " --prompt " + ids + " --new " + std::to_string(n) + " --rounds 1";
    Torch t;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return t;
    std::string out;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    if (pclose(p) != 0 || out.empty()) return t;
    const auto j = nlohmann::json::parse(out);
    t.ok = true;
    t.tokens = j.at("tokens").get<std::vector<Token>>();
    t.seconds_per_token = j.at("seconds_per_token").get<double>();
    return t;
}

}  // namespace

int main(int argc, char** argv) {
    eva::native::keep_freed_memory();
    CLI::App app{"Decoding tokens/s of eva-mini: plain vs speculative (MTP) vs PyTorch, batch 1, greedy, one thread"};
    std::string weights, prompt_text = "The ", json_path;
    std::size_t n = 128;
    int rounds = 3;
    app.add_option("--weights", weights, "A checkpoint with MTP modules (default: a fresh mini with one, seed 1)");
    app.add_option("--prompt", prompt_text, "Prompt text (bytes)")->capture_default_str();
    app.add_option("--new", n, "Tokens to generate per measurement")->capture_default_str()->check(CLI::Range(2, 4096));
    app.add_option("--rounds", rounds, "Alternating measurements of every decoder")->capture_default_str()->check(CLI::Range(1, 100));
    app.add_option("--json", json_path, "Also write the figures as JSON here");
    CLI11_PARSE(app, argc, argv);
    try {
        eva::set_num_threads(1);  // batch-1 decoding: the one-thread figure, as the baseline
        eva::Model<float> m = [&] {
            if (!weights.empty()) return eva::load_checkpoint(weights);
            eva::ModelArgs a = eva::preset("mini");
            a.n_mtp_layers = 1;
            eva::Rng rng(1);
            return eva::model_init<float>(a, eva::moe_config(a), rng);
        }();
        if (m.w.mtp.empty()) throw eva::ConfigError("--weights has no MTP modules (train one with --mtp 1)");
        const std::vector<Token> prompt = eva::encode_bytes(prompt_text);
        if (prompt.empty() || prompt.size() + n + m.w.mtp.size() + 1 > std::size_t(m.args.max_seq_len))
            throw eva::ConfigError("--prompt plus --new must fit in max_seq_len " + std::to_string(m.args.max_seq_len));

        char dir[] = "/tmp/eva_bench_decode_XXXXXX";
        if (!mkdtemp(dir)) throw eva::ConfigError("cannot create a temporary folder");
        const std::string model = std::string(dir) + "/model.safetensors";
        eva::save_model(m, model);  // float32, eva's layout: what the PyTorch script reads

        std::vector<double> plain_s, spec_s, torch_s, step1_s, verify2_s;
        Run p, s;
        Torch t;
        std::vector<Token> context = prompt;
        for (int r = 0; r < rounds; ++r) {
            p = plain(m, prompt, n);
            s = speculative(m, prompt, n);
            t = torch_decode(model, prompt, n);
            plain_s.push_back(p.seconds_per_token);
            spec_s.push_back(s.seconds_per_token);
            if (t.ok) torch_s.push_back(t.seconds_per_token);
            if (r == 0) context.insert(context.end(), p.tokens.begin(), p.tokens.begin() + std::ptrdiff_t(n / 2));
            step1_s.push_back(forward_seconds(m, context, p.tokens, 1, 40));
            verify2_s.push_back(forward_seconds(m, context, p.tokens, 2, 40));
        }
        std::system(("rm -rf " + std::string(dir)).c_str());

        const double pl = median(plain_s), sp = median(spec_s), one = median(step1_s), two = median(verify2_s);
        const bool same = s.tokens == p.tokens;
        std::printf("eva-mini decode, batch 1, greedy, 1 thread: %zu new tokens after a %zu-token prompt, %d rounds (%s)\n",
                    n, prompt.size(), rounds, weights.empty() ? "fresh weights, seed 1" : weights.c_str());
        std::printf("%-28s %12s %12s\n", "decoder", "ms/token", "tokens/s");
        std::printf("%-28s %12.3f %12.0f\n", "eva plain (absorbed cache)", pl * 1e3, 1 / pl);
        std::printf("%-28s %12.3f %12.0f   %.2fx plain; acceptance %.1f%% (%zu of %zu drafts); %s\n", "eva speculative (MTP 1)",
                    sp * 1e3, 1 / sp, pl / sp, 100 * s.stats.acceptance_rate(), s.stats.accepted, s.stats.drafted,
                    same ? "output identical to plain" : "OUTPUT DIFFERS FROM PLAIN");
        nlohmann::json j = {{"new_tokens", n}, {"prompt_tokens", prompt.size()}, {"rounds", rounds},
                            {"weights", weights.empty() ? "fresh mini + 1 MTP module, seed 1" : weights},
                            {"plain_seconds_per_token", plain_s}, {"speculative_seconds_per_token", spec_s},
                            {"speculative_speedup", pl / sp}, {"acceptance_rate", s.stats.acceptance_rate()},
                            {"drafted", s.stats.drafted}, {"accepted", s.stats.accepted}, {"speculative_identical", same},
                            {"step1_seconds", one}, {"verify2_seconds", two}, {"verify2_over_step1", two / one},
                            {"context", context.size()}};
        std::printf("%-28s %12.3f %12s   one forward over 1 new token at context %zu\n", "eva step (1 token)", one * 1e3, "", context.size());
        std::printf("%-28s %12.3f %12s   %.2fx the 1-token step (speculation pays only well below 2x)\n",
                    "eva verify (2 tokens)", two * 1e3, "", two / one);
        if (!torch_s.empty()) {
            const double tt = median(torch_s);
            std::size_t agree = 0;
            while (agree < std::min(t.tokens.size(), p.tokens.size()) && t.tokens[agree] == p.tokens[agree]) ++agree;
            std::printf("%-28s %12.3f %12.0f   eva plain %.2fx faster; greedy tokens equal to eva's for the first %zu of %zu\n",
                        "PyTorch (naive cache)", tt * 1e3, 1 / tt, tt / pl, agree, n);
            j["torch_seconds_per_token"] = torch_s;
            j["speedup_vs_torch"] = tt / pl;
            j["torch_agreeing_prefix"] = agree;
        } else {
            std::printf("PyTorch not available (/usr/bin/python3 with torch needed)\n");
        }
        if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << '\n';
        return same ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "eva_bench_decode: error: %s\n", e.what());
        return 2;
    }
}
