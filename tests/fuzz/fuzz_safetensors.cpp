// libFuzzer target for the safetensors loader: any byte string must either parse into a consistent
// file or raise eva::FileError — never crash, read out of bounds, or trip a sanitizer.
// Built by the `fuzz` preset (clang); scripts/test.sh runs it briefly from the seeds in corpus/.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eva/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto f = eva::SafetensorsFile::parse(std::string(reinterpret_cast<const char*>(data), size));
        for (const auto& [name, e] : f.entries()) {
            if (e.dtype != "F32") continue;
            if (e.shape.size() == 1) f.f32<1>(name, {e.shape[0]});
            if (e.shape.size() == 2) f.f32<2>(name, {e.shape[0], e.shape[1]});
        }
    } catch (const eva::FileError&) {
    }
    return 0;
}
