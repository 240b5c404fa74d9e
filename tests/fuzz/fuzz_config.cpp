// libFuzzer target for config files: any text goes through the one JSON entry point (depth limit,
// strictness) and then the ModelArgs, MoE and training-config readers, whose validation must catch
// every overflowing derived size before anything is computed from it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eva/config.hpp"
#include "eva/error.hpp"
#include "eva/json.hpp"
#include "eva/mla.hpp"
#include "eva/model.hpp"
#include "eva/moe.hpp"
#include "eva/trainer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    nlohmann::json j;
    try {
        j = eva::parse_json(text, "fuzz.json");
    } catch (const eva::Error&) {
        return 0;
    }
    try {
        const eva::ModelArgs a = eva::model_args_from_json(j);
        eva::parameter_count(a, true);
        eva::model_bytes(a, eva::moe_config(a));
        eva::kv_cache_memory(a, a.max_seq_len, eva::CacheDType::bf16, 1);
        eva::TrainConfig().validate(a);
    } catch (const eva::Error&) {
    }
    try {
        eva::MoeConfig::from_json(j);
    } catch (const eva::Error&) {
    }
    try {
        eva::TrainConfig::from_json(j).validate(eva::preset("mini"));
    } catch (const eva::Error&) {
    }
    return 0;
}
