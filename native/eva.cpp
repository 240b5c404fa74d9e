// eva — the command line. `eva --help` lists the subcommands; every subcommand has its own --help.
#include <cstdio>
#include <exception>
#include <iostream>

#include "cli.hpp"
#include "eva/error.hpp"

namespace eva::cli {

// Generated samples are raw bytes and can end inside a UTF-8 sequence: such bytes print as U+FFFD
// instead of aborting the whole output.
void print_json(const nlohmann::json& j) {
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

}  // namespace eva::cli

int main(int argc, char** argv) {
    CLI::App app{"eva — DeepSeek-V3's core ideas (MLA, DeepSeekMoE, FP8), runnable and measurable"};
    app.set_version_flag("--version", std::string("eva ") + EVA_VERSION);
    app.require_subcommand(1);
    // A repeated option keeps its last value, so wrappers can pass defaults that users override.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    eva::cli::add_info_command(app);
    eva::cli::add_gemm_command(app);
    eva::cli::add_mla_command(app);
    eva::cli::add_moe_command(app);
    eva::cli::add_model_commands(app);
    eva::cli::add_fp8_command(app);
    eva::cli::add_checkpoint_commands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::Error& e) {
        std::cerr << "eva: error: " << e.what() << " (see --help)\n";
        return 2;
    } catch (const eva::Error& e) {
        std::cerr << "eva: error: " << e.what() << '\n';
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "eva: internal error: " << e.what() << '\n';
        return 2;
    }
    return 0;
}
