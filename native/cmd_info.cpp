// `eva info`: what this build is and what it runs on.
#include <iostream>
#include <memory>
#include <thread>

#include <xsimd/xsimd.hpp>
#include <xtensor/xtensor_config.hpp>

#include "cli.hpp"
#include "eva/gemm.hpp"
#include "eva/peak.hpp"

namespace eva::cli {

void add_info_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Print the build configuration and the SIMD kernel in use");
    auto json = std::make_shared<bool>(false), peak = std::make_shared<bool>(false);
    cmd->add_flag("--json", *json, "Print one JSON object instead of text");
    cmd->add_flag("--peak", *peak, "Also measure one core's fp32 multiply-add peak and clock (about a second)");
    cmd->callback([json, peak] {
        nlohmann::ordered_json j = {
            {"version", EVA_VERSION},
            {"compiler", __VERSION__},
            {"gemm_simd", gemm_arch()},
            {"xtensor", std::to_string(XTENSOR_VERSION_MAJOR) + "." + std::to_string(XTENSOR_VERSION_MINOR) +
                            "." + std::to_string(XTENSOR_VERSION_PATCH)},
            {"xsimd", std::to_string(XSIMD_VERSION_MAJOR) + "." + std::to_string(XSIMD_VERSION_MINOR) + "." +
                          std::to_string(XSIMD_VERSION_PATCH)},
            {"hardware_threads", std::thread::hardware_concurrency()},
        };
        if (*peak) {
            const FmaPeak p = measure_fma_peak();
            j["peak_simd"] = p.simd;
            j["peak_gflops_per_core"] = p.gflops;
            j["clock_ghz"] = p.ghz;
            j["flops_per_cycle"] = p.flops_per_cycle();
        }
        if (*json) return print_json(j);
        for (auto& [k, v] : j.items()) std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << '\n';
    });
}

}  // namespace eva::cli
