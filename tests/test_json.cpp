// The one JSON entry point for untrusted text: depth limit, strictness (no trailing content, no NUL),
// and short error messages that never echo a huge value.
#include <catch2/catch.hpp>

#include <string>

#include "eva/error.hpp"
#include "eva/json.hpp"

using namespace eva;

namespace {

std::string error_of(const std::string& text) {
    try {
        parse_json(text, "f.json");
    } catch (const FileError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("parse_json: depth limit, on arrays and objects alike", "[json]") {
    const auto nested = [](int depth, const char* open, const char* close) {
        std::string s;
        for (int i = 0; i < depth; ++i) s += open;
        for (int i = 0; i < depth; ++i) s += close;
        return s;
    };
    CHECK(parse_json(nested(kMaxJsonDepth, "[", "]"), "x").is_array());  // exactly the limit: accepted
    CHECK(error_of(nested(kMaxJsonDepth + 1, "[", "]")).find("nested deeper than 64") != std::string::npos);
    std::string objects;
    for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
    objects += "1" + std::string(100000, '}');
    CHECK(error_of(objects).find("nested deeper than 64") != std::string::npos);  // 100,000 deep: no stack overflow
}

TEST_CASE("parse_json: strict — trailing content, NUL bytes and a broken value are errors", "[json]") {
    CHECK(parse_json(" {\"a\": 1} \n", "x")["a"] == 1);  // surrounding whitespace is fine
    CHECK(error_of("{\"a\": 1} garbage").find("f.json: not valid JSON") == 0);
    CHECK(error_of("{\"a\": 1}{}") != "");
    CHECK(error_of(std::string("{\"a\": 1}\0\0\0", 11)).find("NUL byte at offset 8") != std::string::npos);
    CHECK(error_of("").find("not valid JSON") != std::string::npos);
    CHECK(error_of("{\"a\": }").find("[json.exception") == std::string::npos);  // the id is dropped
    // A number beyond double is nlohmann's out_of_range, not a parse_error (found by fuzz_config).
    CHECK(error_of("[102e982]").find("number overflow parsing '102e982'") != std::string::npos);
}

TEST_CASE("error messages quote at most a short prefix of a value", "[json]") {
    const std::string huge(10'000'000, 'x');
    const std::string parse_error = error_of("\"" + huge);  // unterminated 10 MB string
    CHECK(parse_error.size() < 400);
    CHECK(parse_error.find("xxxx") != std::string::npos);
    const std::string p = json_preview(nlohmann::json(huge));
    CHECK(p.size() < 2 * kPreviewChars);
    CHECK(p.find("(10000000 characters)") != std::string::npos);
    CHECK(json_preview(nlohmann::json::array({1, 2, 3})) == "an array of 3 entries");
    CHECK(json_preview(nlohmann::json{{"a", {{"b", 1}}}}) == "an object of 1 entries");
    CHECK(json_preview(nlohmann::json(2.5)) == "2.5");
    CHECK(preview("short") == "short");
}
