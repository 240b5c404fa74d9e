// libFuzzer target for the Hugging Face config.json mapping: any text goes through the one JSON entry
// point, then hf_config_from_json, whose checks must stop every field eva cannot honour with a
// ConfigError before any size is derived; what it accepts must map back and forth unchanged and give
// the figures `eva inspect` prints.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eva/error.hpp"
#include "eva/hf_checkpoint.hpp"
#include "eva/hf_config.hpp"
#include "eva/json.hpp"
#include "eva/mla.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    nlohmann::json j;
    try {
        j = eva::parse_json(std::string(reinterpret_cast<const char*>(data), size), "config.json");
    } catch (const eva::Error&) {
        return 0;
    }
    eva::HfConfig c;
    try {
        c = eva::hf_config_from_json(j);
    } catch (const eva::ConfigError&) {
        return 0;
    }
    try {
        eva::parameter_count(c.args, true);
        eva::mtp_parameter_count(c.args);
        eva::fp8_scale_count(c.args);
        eva::kv_cache_memory(c.args, 1, eva::CacheDType::bf16, 1);
        const eva::HfConfig back = eva::hf_config_from_json(eva::hf_config_to_json(c));
        if (eva::to_json(back.args) != eva::to_json(c.args)) __builtin_trap();  // the mapping must round-trip
    } catch (const eva::ConfigError&) {
        // a valid config whose derived counts overflow checked arithmetic: refused, not wrapped
    }
    return 0;
}
