// libFuzzer target for model.safetensors.index.json: any text either gives a weight_map of plain
// `*.safetensors` names inside the checkpoint folder or raises eva::FileError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eva/error.hpp"
#include "eva/hf_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto map = eva::parse_safetensors_index(std::string(reinterpret_cast<const char*>(data), size), "index");
        for (const auto& [name, file] : map) {
            if (file.find('/') != std::string::npos || file.empty() || file[0] == '.') __builtin_trap();
            try {
                eva::eva_tensor_name(name);  // the names are untrusted too
            } catch (const eva::FileError&) {
            }
        }
    } catch (const eva::FileError&) {
    }
    return 0;
}
