// `eva gemm`: runs the GEMM kernel on random matrices, checks it against the plain triple loop in
// double precision, and reports its speed. A learner's first look at the kernel every layer uses.
#include <iostream>
#include <memory>
#include <string>
#include <tuple>

#include "cli.hpp"
#include "eva/checked.hpp"
#include "eva/gemm.hpp"

namespace eva::cli {
namespace {

struct GemmOptions {
    std::size_t m = 512, n = 512, k = 512;
    bool trans_a = false, trans_b = false, check = true, json = false;
    int repeat = 5;
    std::uint64_t seed = 1;
};

constexpr std::size_t kMaxElements = std::size_t(1) << 28;  // 1 GiB of float32 per operand

void run(const GemmOptions& o) {
    for (auto [name, a, b] : {std::tuple{"--m × --k", o.m, o.k}, {"--k × --n", o.k, o.n}, {"--m × --n", o.m, o.n}}) {
        const std::uint64_t n = checked_mul(a, b, name);  // 2^62 × 4 must not wrap to 0
        if (n > kMaxElements)
            throw ConfigError(std::string(name) + " = " + std::to_string(n) + " elements; at most " +
                              std::to_string(kMaxElements) + " are allowed");
    }
    const GemmExperiment r = gemm_random_run(o.trans_a ? Op::T : Op::N, o.trans_b ? Op::T : Op::N, o.m, o.n, o.k, o.seed,
                                      o.repeat, o.check);
    const double median = r.median_seconds, gflops = r.gflops;

    nlohmann::json j = {{"m", o.m}, {"n", o.n}, {"k", o.k}, {"op_a", o.trans_a ? "T" : "N"},
                        {"op_b", o.trans_b ? "T" : "N"}, {"simd", gemm_arch()}, {"repeat", o.repeat},
                        {"median_seconds", median}, {"gflops", gflops}};
    if (o.check) {
        j["max_abs_error"] = r.error.max_abs;
        j["max_rel_error"] = r.error.max_rel;
    }
    if (o.json) return print_json(j);
    std::cout << "C[" << o.m << "×" << o.n << "] = " << (o.trans_a ? "Aᵀ" : "A") << "·" << (o.trans_b ? "Bᵀ" : "B")
              << ", K = " << o.k << ", kernel: " << gemm_arch() << '\n'
              << "  median of " << o.repeat << ": " << median * 1e3 << " ms = " << gflops << " GFLOP/s\n";
    if (o.check)
        std::cout << "  max |error| vs double triple loop: " << j["max_abs_error"].get<double>()
                  << " (relative to max |C|: " << j["max_rel_error"].get<double>() << ")\n";
}

}  // namespace

void add_gemm_command(CLI::App& app) {
    auto o = std::make_shared<GemmOptions>();
    auto* cmd = app.add_subcommand("gemm", "Multiply random matrices with eva's GEMM: speed and error vs a plain loop");
    cmd->add_option("--m", o->m, "Rows of C")->capture_default_str()->check(kPositive);
    cmd->add_option("--n", o->n, "Columns of C")->capture_default_str()->check(kPositive);
    cmd->add_option("--k", o->k, "Inner dimension")->capture_default_str()->check(kPositive);
    cmd->add_flag("--trans-a", o->trans_a, "Use Aᵀ (A stored K×M)");
    cmd->add_flag("--trans-b", o->trans_b, "Use Bᵀ (B stored N×K), as a Linear layer's forward does");
    cmd->add_option("--repeat", o->repeat, "Timed repetitions (the median is reported)")
        ->capture_default_str()->check(CLI::Range(1, 1000));
    cmd->add_option("--seed", o->seed, "Seed of the random operands")->capture_default_str();
    cmd->add_flag("!--no-check", o->check, "Skip the double-precision reference check");
    cmd->add_flag("--json", o->json, "Print one JSON object instead of text");
    cmd->callback([o] { run(*o); });
}

}  // namespace eva::cli
