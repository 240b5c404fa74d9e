// libFuzzer target for token lists (`eva forward --tokens/--targets`): any text parses into ids inside
// the vocabulary or raises eva::Error; the first byte picks the vocabulary size.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eva/data.hpp"
#include "eva/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::int64_t vocab = std::int64_t(1) << (data[0] % 25);  // 1 .. 2^24
    try {
        for (const eva::Token t : eva::parse_token_ids(std::string(reinterpret_cast<const char*>(data + 1), size - 1), vocab, "--tokens"))
            if (t < 0 || t >= vocab) __builtin_trap();
    } catch (const eva::Error&) {
    }
    return 0;
}
