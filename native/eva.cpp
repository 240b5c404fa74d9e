// eva — the command line. `eva --help` lists the subcommands; every subcommand has its own --help.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "allocator.hpp"
#include "openmp_wait.hpp"
#include "cli.hpp"
#include "eva/dist.hpp"
#include "eva/error.hpp"

namespace eva::cli {

// Generated samples are raw bytes and can end inside a UTF-8 sequence: such bytes print as U+FFFD
// instead of aborting the whole output.
void print_json(const nlohmann::json& j) {
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

namespace {

// CLI11's range checks compare with < and >, which NaN passes: every floating-point option of every
// command (CLI11 types them FLOAT) also gets this check, so `--lr nan` or `--temperature inf` is an error.
const CLI::Validator kFinite(
    [](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || !std::isfinite(v)) return "must be a finite number, got " + s.substr(0, 40);
        return "";
    },
    "FINITE");

void require_finite_floats(CLI::App& app) {
    for (CLI::Option* o : app.get_options())
        if (o->get_type_name().rfind("FLOAT", 0) == 0) o->check(kFinite);  // "FLOAT:…" with a range check
    for (CLI::App* sub : app.get_subcommands({})) require_finite_floats(*sub);
}

}  // namespace
}  // namespace eva::cli

namespace {

// One line, exit status 2. In a distributed run the line names the rank, and the whole run ends with
// it: the other ranks may be waiting for this one in a collective and would otherwise hang.
int fail(const char* prefix, const std::string& msg) {
    if (eva::world_is_distributed()) {
        std::cerr << prefix << "rank " << eva::world().rank() << " of " << eva::world().size() << ": " << msg << std::endl;
        eva::world().abort(2);
    }
    std::cerr << prefix << msg << '\n';
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    eva::native::keep_freed_memory();
    eva::native::passive_openmp_wait(argv);
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
    eva::cli::require_finite_floats(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::Error& e) {
        return fail("eva: error: ", std::string(e.what()) + " (see --help)");
    } catch (const eva::Error& e) {
        return fail("eva: error: ", e.what());
    } catch (const std::exception& e) {
        return fail("eva: internal error: ", e.what());
    }
    return 0;
}
