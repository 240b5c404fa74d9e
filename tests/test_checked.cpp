// Checked sizes: products and sums that would wrap raise ConfigError; the model's byte count from its
// config equals the bytes model_alloc actually allocates; configs whose derived sizes overflow (the
// cases of issue 12) are refused by validate before anything is built.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/checked.hpp"
#include "eva/config.hpp"
#include "eva/error.hpp"
#include "eva/model.hpp"

using namespace eva;

TEST_CASE("checked arithmetic: exact below the bound, ConfigError above, never wraps", "[checked]") {
    CHECK(checked_mul(0, ~std::uint64_t(0), "x") == 0);
    CHECK(checked_mul(std::uint64_t(1) << 24, std::uint64_t(1) << 24, "x") == std::uint64_t(1) << 48);
    CHECK_THROWS_AS(checked_mul((std::uint64_t(1) << 24) + 1, std::uint64_t(1) << 24, "x"), ConfigError);
    // 2^62 · 4 wraps to 0 in u64: the check must not be fooled by the wrapped product.
    CHECK_THROWS_AS(checked_mul(std::uint64_t(1) << 62, 4, "x"), ConfigError);
    CHECK(checked_add(kMaxCount - 1, 1, "x") == kMaxCount);
    CHECK_THROWS_AS(checked_add(kMaxCount, 1, "x"), ConfigError);
    CHECK_THROWS_AS(checked_add(~std::uint64_t(0), 2, "x"), ConfigError);  // would wrap to 1
    const std::uint64_t f[] = {1000, 1000, 1000};
    CHECK(checked_product(f, 3, "x") == 1000000000);
    try {
        checked_mul(std::uint64_t(1) << 40, std::uint64_t(1) << 40, "n_heads x qk_head_dim");
        FAIL("no error");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).find("n_heads x qk_head_dim overflows") != std::string::npos);
    }
    CHECK(format_bytes(999) == "999 bytes");
    CHECK(format_bytes(63'200'000'000ull) == "63.2 GB");
    CHECK(format_bytes(1'500'000) == "1.50 MB");
    // Binary units (the KV-cache figures): V3's MLA cache of 4096 bf16 tokens is 1152·61·4096 bytes
    // = 274.5 MiB exactly (287,834,112 / 2^20).
    CHECK(format_bytes_binary(1023) == "1023 B");
    CHECK(format_bytes_binary(1536) == "1.50 KiB");
    CHECK(format_bytes_binary(1152.0 * 61 * 4096) == "274.50 MiB");
    CHECK(format_bytes_binary(3.0 * 1024 * 1024 * 1024 * 1024 * 1024) == "3072.00 TiB");  // TiB is the largest unit
}

TEST_CASE("require_memory: refuses more than the machine has, with both figures", "[checked]") {
    const std::uint64_t avail = available_memory_bytes();
    REQUIRE(avail > 0);  // Linux reports MemAvailable; wasm32 has 4 GiB
    CHECK_NOTHROW(require_memory(1 << 20, "a buffer"));
    try {
        require_memory(std::uint64_t(1) << 47, "the model");
        FAIL("no error");
    } catch (const ConfigError& e) {
        const std::string m = e.what();
        CHECK(m.find("the model needs 141 TB, ") != std::string::npos);  // 2^47 bytes = 1.407e14
        CHECK(m.find(" available") != std::string::npos);
    }
}

TEST_CASE("model_bytes: the bytes model_alloc allocates, known from the config alone", "[checked]") {
    for (const Balance b : {Balance::aux_free, Balance::none}) {
        for (const char* name : {"mini"}) {
            ModelArgs a = preset(name);
            a.n_layers = 2;
            a.q_lora_rank = GENERATE(0, 128);
            const MoeConfig mc = moe_config(a, b);
            Model<float> m = model_alloc<float>(a, mc);
            std::uint64_t allocated = 0;
            for (const auto& t : named_tensors(m.w)) allocated += t.size() * sizeof(float);
            CHECK(model_bytes(a, mc) == allocated);
            CHECK(model_bytes(a, mc, sizeof(double)) == 2 * allocated);
        }
    }
    // The figure docs/architecture.md quotes for `eva init --config v2-lite` (fp32, aux-free balancing).
    const ModelArgs lite = preset("v2-lite");
    CHECK(format_bytes(model_bytes(lite, moe_config(lite))) == "62.8 GB");
    // V3 (6.7e11 parameters, 2.7 TB in fp32) is counted without overflow, and refused by memory, not by wrap.
    const ModelArgs v3 = preset("v3");
    CHECK(model_bytes(v3, moe_config(v3, Balance::none)) == 4 * parameter_count(v3));
    CHECK_THROWS_AS(model_alloc<float>(v3, moe_config(v3, Balance::none)), ConfigError);
}

TEST_CASE("validate: fields above 2^24 and derived sizes above 2^48 are refused (issue 12, finding 1)", "[checked]") {
    auto refuses = [](nlohmann::json j, const std::string& needle) {
        try {
            model_args_from_json(j);
            FAIL("accepted " << j.dump());
        } catch (const ConfigError& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    refuses({{"n_heads", 2305843009213693952}}, "n_heads");        // n_heads·(nope+rope) wrapped to 0
    refuses({{"dim", 4611686018427387904}}, "dim");                // n_routed·moe_inter·dim wrapped
    refuses({{"vocab_size", (1 << 24) + 1}}, "vocab_size");
    // Every field within its bound, but their products beyond 2^48: vocab 2^24 × dim 2^24 × 2.
    refuses({{"vocab_size", 1 << 24}, {"dim", 1 << 24}}, "overflows");
    refuses({{"n_routed_experts", 1 << 20}, {"moe_inter_dim", 1 << 16}, {"dim", 1 << 14}, {"n_activated_experts", 1}},
            "overflows");
    // A large but representable config is valid: it is refused later, by memory, not by validate.
    CHECK_NOTHROW(model_args_from_json({{"moe_inter_dim", 1 << 20}}));
}
