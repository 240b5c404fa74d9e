// eva command line — shared plumbing for the subcommands.
//
// Each subcommand lives in its own cmd_<name>.cpp and exposes one `add_<name>_command(CLI::App&)`
// that registers its options and its callback. Callbacks throw eva::Error (or CLI::Error) on bad
// input; main() turns any error into one line on stderr and exit status 2.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace eva::cli {

void add_info_command(CLI::App& app);
void add_gemm_command(CLI::App& app);
void add_mla_command(CLI::App& app);
void add_moe_command(CLI::App& app);
void add_model_commands(CLI::App& app);
void add_fp8_command(CLI::App& app);
void add_checkpoint_commands(CLI::App& app);

/// Prints `j` as one line of JSON on stdout.
void print_json(const nlohmann::json& j);

}  // namespace eva::cli
