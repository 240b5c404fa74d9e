// eva command line — shared plumbing for the subcommands.
//
// Each subcommand lives in its own cmd_<name>.cpp and exposes one `add_<name>_command(CLI::App&)`
// that registers its options and its callback. Callbacks throw eva::Error (or CLI::Error) on bad
// input; main() turns any error into one line on stderr and exit status 2.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace eva::cli {

/// A number option's lower bound, with a message that names it ("must be at least 1, got 0"): CLI11's
/// own PositiveNumber says "Value 0 not in range 0.000000 to 1797…(309 digits)…". NaN fails too.
inline CLI::Validator at_least(long long bound, const std::string& name) {
    return CLI::Validator(
        [bound](std::string& s) -> std::string {
            double v = 0;
            if (!CLI::detail::lexical_cast(s, v)) return "must be a number, got '" + s + "'";
            if (!(v >= double(bound))) return "must be at least " + std::to_string(bound) + ", got " + s;
            return {};
        },
        name);
}
inline const CLI::Validator kPositive = at_least(1, "POSITIVE");
inline const CLI::Validator kNonNegative = at_least(0, "NONNEGATIVE");

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
