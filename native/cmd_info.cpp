// `eva info`: what this build is and what it runs on.
#include <iostream>
#include <memory>
#include <thread>

#include <xsimd/xsimd.hpp>
#include <xtensor/xtensor_config.hpp>

#include "cli.hpp"
#include "eva/gemm.hpp"

namespace eva::cli {

void add_info_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Print the build configuration and the SIMD kernel in use");
    auto json = std::make_shared<bool>(false);
    cmd->add_flag("--json", *json, "Print one JSON object instead of text");
    cmd->callback([json] {
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
        if (*json) return print_json(j);
        for (auto& [k, v] : j.items()) std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << '\n';
    });
}

}  // namespace eva::cli
