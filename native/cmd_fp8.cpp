// `eva fp8`: the FP8 formats at the command line — the code table, a stream encoder/decoder, scaled
// quantization of .npy tensors with its error metrics, and the accumulation-precision experiment of the
// DeepSeek-V3 report. Output is buffered and written only once the whole input was valid.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.hpp"
#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/io.hpp"
#include "eva/npy.hpp"
#include "eva/fp8.hpp"
#include "eva/rng.hpp"

namespace eva::cli {
namespace {

// --------------------------------------------------------------------------------- text in and out
std::string hex_byte(unsigned c) {
    static const char* digits = "0123456789ABCDEF";
    return std::string{'0', 'x', digits[c >> 4], digits[c & 15]};
}

// All of stdin, at most kMaxStdinBytes. A device that is not a terminal (`< /dev/zero`) is refused up
// front instead of read until memory runs out.
constexpr std::size_t kMaxStdinBytes = std::size_t(64) << 20;

std::string read_stdin() {
    struct stat st {};
    if (::fstat(STDIN_FILENO, &st) == 0 && (S_ISDIR(st.st_mode) || (S_ISCHR(st.st_mode) && !::isatty(STDIN_FILENO))))
        throw FileError("stdin: is a device or directory, not text");
    std::string all;
    std::vector<char> buf(1 << 20);
    std::size_t got;
    while ((got = std::fread(buf.data(), 1, buf.size(), stdin)) > 0) {
        all.append(buf.data(), got);
        if (all.size() > kMaxStdinBytes) throw FileError("stdin: more than " + format_bytes(kMaxStdinBytes) + " of input");
    }
    if (std::ferror(stdin)) throw FileError("stdin: read error");
    return all;
}

void write_stdout(const std::string& s) {
    if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size() || std::fflush(stdout) != 0)
        throw FileError("stdout: write error");
}


// ------------------------------------------------------------------------------------ subcommands
void run_table(const std::string& format, bool json) {
    const Fp8Format f = parse_fp8_format(format, "--format");
    std::string out;
    nlohmann::json j = nlohmann::json::array();
    for (unsigned c = 0; c < 256; ++c) {
        const std::string v = fp8_value_text(fp8_decode(std::uint8_t(c), f));
        if (json) j.push_back({{"code", hex_byte(c)}, {"value", v}});
        else out += hex_byte(c) + ' ' + v + '\n';
    }
    if (json) return print_json(j);
    write_stdout(out);
}

void run_encode(const std::string& format, bool saturate) {
    const Fp8Format f = parse_fp8_format(format, "--format");
    const std::string input = read_stdin();
    const std::vector<float> x = parse_fp8_values(input);
    std::vector<std::uint8_t> codes(x.size());
    fp8_encode(x.data(), codes.data(), x.size(), f, saturate);
    std::string out;
    out.reserve(codes.size() * 5);
    for (std::uint8_t c : codes) (out += hex_byte(c)) += '\n';
    write_stdout(out);
}

void run_decode(const std::string& format) {
    const Fp8Format f = parse_fp8_format(format, "--format");
    std::string text[256];
    for (unsigned c = 0; c < 256; ++c) text[c] = fp8_value_text(fp8_decode(std::uint8_t(c), f)) + '\n';
    const std::string input = read_stdin();
    std::string out;
    for (std::uint8_t c : parse_fp8_codes(input)) out += text[c];
    write_stdout(out);
}

struct QuantizeOptions {
    std::string format = "e4m3", granularity = "tile", input, output;
    bool pow2 = false, json = false;
    std::size_t group = 128;
};

void run_quantize(const QuantizeOptions& o) {
    Fp8QuantConfig cfg;
    cfg.format = parse_fp8_format(o.format, "--format");
    cfg.granularity = parse_fp8_granularity(o.granularity, "--granularity");
    cfg.pow2_scales = o.pow2;
    cfg.group = o.group;
    if (!o.output.empty()) require_writable(o.output, "--output");
    const NpyArray x = read_npy(o.input, "--input", 1, 2);  // rank 1 is one row
    const std::size_t rows = x.shape.size() == 2 ? x.shape[0] : 1, cols = x.shape.back();
    const Fp8Matrix q = quantize(x.data.data(), rows, cols, cols, cfg);
    std::vector<float> y(x.data.size());
    dequantize(q, y.data(), cols);
    const Fp8ErrorMetrics m = quantization_metrics(x.data.data(), cols, q);
    if (!o.output.empty()) write_npy(o.output, x.shape, y.data());
    nlohmann::json j = {{"input", o.input}, {"rows", rows}, {"cols", cols}, {"format", fp8_format_name(cfg.format)},
                        {"granularity", fp8_granularity_name(cfg.granularity)}, {"group", cfg.group},
                        {"pow2_scales", cfg.pow2_scales}, {"scales", q.scales.size()}, {"metrics", m.to_json()}};
    if (!o.output.empty()) j["output"] = o.output;
    if (o.json) return print_json(j);
    std::cout << "quantize-dequantize " << rows << "×" << cols << " float32 as " << fp8_format_name(cfg.format) << ", "
              << fp8_granularity_name(cfg.granularity) << " scales (" << q.scales.size() << (cfg.pow2_scales ? ", powers of two" : "")
              << ")\n  MSE " << m.mse << "   SNR " << m.snr_db << " dB   cosine " << m.cosine << "\n  relative error: max "
              << m.max_rel_error << ", mean " << m.mean_rel_error << "\n  underflow to 0: " << m.underflow
              << "   saturated: " << m.saturated << "   NaN: " << m.nan << '\n';
    if (!o.output.empty()) std::cout << "  wrote " << o.output << '\n';
}

struct GemmErrorOptions {
    std::size_t m = 64, n = 64, k = 4096, promote_every = 128, fused_width = 4;
    int accum_bits = 14;
    std::string format = "e4m3", granularity = "tensor";
    std::uint64_t seed = 1;
    bool json = false;
};

// The accumulation experiment of eva/fp8.hpp (fp8_gemm_operands, fp8_gemm_errors), the same one the
// page's FP8 panel and selfTest run: ‖C − R‖_F / ‖R‖_F and max|C − R| / max|R| against R in double.
void run_gemm_error(const GemmErrorOptions& o) {
    // Checked products: --m 4611686018427387904 must not wrap into a small, valid-looking size.
    constexpr std::uint64_t kMax = std::uint64_t(1) << 26;
    if (checked_mul(o.m, o.k, "--m × --k") > kMax || checked_mul(o.n, o.k, "--n × --k") > kMax ||
        checked_mul(o.m, o.n, "--m × --n") > kMax)
        throw ConfigError("--m × --k, --n × --k and --m × --n must each be at most 2^26 elements");
    const Fp8Format format = parse_fp8_format(o.format, "--format");
    Fp8GemmConfig cfg;
    cfg.promote_every = o.promote_every;
    cfg.accum_bits = o.accum_bits;
    cfg.fused_width = o.fused_width;
    const Fp8GemmErrors e = fp8_gemm_error_experiment(o.m, o.n, o.k, o.seed, o.granularity, format, cfg, "--granularity");
    const double acc_fro = e.accumulation.relative(), acc_max = e.accumulation.max_relative(),
                 tot_fro = e.total.relative(), tot_max = e.total.max_relative();
    nlohmann::json j = {{"m", o.m}, {"n", o.n}, {"k", o.k}, {"format", fp8_format_name(format)},
                        {"granularity", o.granularity}, {"accum_bits", o.accum_bits},
                        {"promote_every", o.promote_every}, {"fused_width", o.fused_width}, {"seed", o.seed},
                        {"accumulation_rel_error", acc_fro}, {"accumulation_max_rel_error", acc_max},
                        {"total_rel_error", tot_fro}, {"total_max_rel_error", tot_max}};
    if (o.json) return print_json(j);
    std::cout << "C[" << o.m << "×" << o.n << "] = A·Bᵀ, K = " << o.k << ", " << fp8_format_name(format) << " inputs ("
              << o.granularity << " scales), accumulator: "
              << (o.accum_bits == 0 ? std::string("exact fp32") : std::to_string(o.accum_bits) + " mantissa bits, truncating")
              << ", fused width " << o.fused_width << ", promotion "
              << (o.promote_every == 0 ? std::string("never") : "every " + std::to_string(o.promote_every)) << '\n'
              << "  accumulation error vs double product of the FP8 inputs: " << acc_fro * 100
              << "% (Frobenius), max |error| / max |C|: " << acc_max * 100 << "%\n"
              << "  total error vs double product of the unquantized inputs: " << tot_fro * 100 << "% (Frobenius)\n";
}

}  // namespace

void add_fp8_command(CLI::App& app) {
    auto* fp8 = app.add_subcommand("fp8", "FP8 (E4M3/E5M2): code table, encode/decode, scaled quantization, GEMM accumulation error");
    fp8->require_subcommand(1);
    auto add_format = [](CLI::App* cmd, std::shared_ptr<std::string> f) {
        cmd->add_option("--format", *f, "FP8 format: e4m3 or e5m2")->capture_default_str();
    };

    {
        auto format = std::make_shared<std::string>("e4m3");
        auto json = std::make_shared<bool>(false);
        auto* cmd = fp8->add_subcommand("table", "Print all 256 codes and their exact values (0xHH value)");
        add_format(cmd, format);
        cmd->add_flag("--json", *json, "Print a JSON array instead of text");
        cmd->callback([format, json] { run_table(*format, *json); });
    }
    {
        auto format = std::make_shared<std::string>("e4m3");
        auto saturate = std::make_shared<bool>(false);
        auto* cmd = fp8->add_subcommand("encode", "Encode stdin (one decimal float or 0x + 8 hex float32 bits per line) to 0xHH codes");
        add_format(cmd, format);
        cmd->add_flag("--saturate", *saturate, "Clip overflows and ±inf to ±max instead of NaN (E4M3) / ±inf (E5M2)");
        cmd->callback([format, saturate] { run_encode(*format, *saturate); });
    }
    {
        auto format = std::make_shared<std::string>("e4m3");
        auto* cmd = fp8->add_subcommand("decode", "Decode stdin (one 0xHH code per line) to exact values");
        add_format(cmd, format);
        cmd->callback([format] { run_decode(*format); });
    }
    {
        auto o = std::make_shared<QuantizeOptions>();
        auto* cmd = fp8->add_subcommand("quantize", "Quantize-dequantize a float32 .npy tensor with scales; print the error metrics");
        cmd->add_option("--format", o->format, "FP8 format: e4m3 or e5m2")->capture_default_str();
        cmd->add_option("--granularity", o->granularity, "Scale groups: tensor, tile (1×G) or block (G×G)")->capture_default_str();
        cmd->add_option("--group", o->group, "G, the tile length / block side")->capture_default_str()->check(kPositive);
        cmd->add_flag("--pow2-scales", o->pow2, "Round every scale up to a power of two");
        cmd->add_option("--input", o->input, "float32 (or float64) .npy file of rank 1 or 2")->required();
        cmd->add_option("--output", o->output, "Where to write the dequantized tensor (.npy)");
        cmd->add_flag("--json", o->json, "Print one JSON object instead of text");
        cmd->callback([o] { run_quantize(*o); });
    }
    {
        auto o = std::make_shared<GemmErrorOptions>();
        auto* cmd = fp8->add_subcommand("gemm-error", "Accumulation error of an FP8 GEMM: limited-precision accumulator, promotion to fp32 every N_C or never");
        cmd->add_option("--m", o->m, "Rows of C")->capture_default_str()->check(kPositive);
        cmd->add_option("--n", o->n, "Columns of C")->capture_default_str()->check(kPositive);
        cmd->add_option("--k", o->k, "Inner dimension")->capture_default_str()->check(kPositive);
        cmd->add_option("--accum-bits", o->accum_bits, "Mantissa bits of the tensor-core accumulator (0 = exact fp32)")
            ->capture_default_str()->check(CLI::Range(0, 23));
        cmd->add_option("--promote-every", o->promote_every, "N_C: promote to fp32 every this many elements of K (0 = never)")
            ->capture_default_str();
        cmd->add_option("--fused-width", o->fused_width, "Products summed exactly before each accumulator update")
            ->capture_default_str()->check(CLI::Range(1, 1024));
        cmd->add_option("--format", o->format, "FP8 format of both inputs: e4m3 or e5m2")->capture_default_str();
        cmd->add_option("--granularity", o->granularity, "tensor (one scale each) or deepseek (1×128 tiles × 128×128 blocks)")
            ->capture_default_str();
        cmd->add_option("--seed", o->seed, "Seed of the random normal operands")->capture_default_str();
        cmd->add_flag("--json", o->json, "Print one JSON object instead of text");
        cmd->callback([o] { run_gemm_error(*o); });
    }
}

}  // namespace eva::cli
