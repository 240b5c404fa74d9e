// libFuzzer target for the text `eva fp8 encode` and `eva fp8 decode` read on stdin: every input
// either parses (then encodes, and the codes decode) or raises eva::Error naming the line.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "eva/error.hpp"
#include "eva/fp8.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const std::vector<float> x = eva::parse_fp8_values(text);
        std::vector<std::uint8_t> codes(x.size());
        eva::fp8_encode(x.data(), codes.data(), x.size(), eva::Fp8Format::E4M3, false);
        eva::fp8_encode(x.data(), codes.data(), x.size(), eva::Fp8Format::E5M2, true);
    } catch (const eva::Error&) {
    }
    try {
        const std::vector<std::uint8_t> codes = eva::parse_fp8_codes(text);
        std::vector<float> y(codes.size());
        eva::fp8_decode(codes.data(), y.data(), codes.size(), eva::Fp8Format::E4M3);
    } catch (const eva::Error&) {
    }
    return 0;
}
