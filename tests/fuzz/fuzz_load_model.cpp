// libFuzzer target for checkpoint loading: any byte string is parsed as a safetensors file, its
// __metadata__ config, MoE settings and training state are read and a model is built from them. Each
// step must either succeed or raise eva::Error — never crash, never allocate what the file does not
// pay for (a config's model size must equal the file's data bytes before anything is allocated).
#include <cstddef>
#include <cstdint>
#include <string>

#include "eva/checkpoint.hpp"
#include "eva/error.hpp"
#include "eva/trainer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto f = eva::SafetensorsFile::parse(std::string(reinterpret_cast<const char*>(data), size));
        nlohmann::json meta;
        const eva::Model<float> m = eva::load_model(f, &meta);
        if (meta.contains("training")) eva::TrainingState::from_json(meta["training"], m.args);
    } catch (const eva::Error&) {
    }
    return 0;
}
