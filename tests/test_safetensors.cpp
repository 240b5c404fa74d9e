// safetensors: files built by hand from the format's definition, round trips, and every malformed
// input the loader must reject with a clear message.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "eva/rng.hpp"
#include "eva/safetensors.hpp"
#include "eva/tensor.hpp"

namespace {

// A file from its parts, exactly as the format defines it: u64 little-endian header length, header, data.
std::string file_of(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = char((header.size() >> (8 * i)) & 0xff);
    return out + header + data;
}

std::string floats(std::initializer_list<float> v) {
    std::string s(v.size() * 4, '\0');
    std::memcpy(s.data(), v.begin(), s.size());
    return s;
}

std::string error_of(const std::string& bytes) {
    try {
        eva::SafetensorsFile::parse(bytes, "t.safetensors");
    } catch (const eva::FileError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("a file built by hand from the format definition reads back", "[safetensors]") {
    const std::string h = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
                          R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}})";
    const auto f = eva::SafetensorsFile::parse(file_of(h, floats({1.5f, -2.0f, 3.25f})));
    const auto a = f.f32<1>("a", {2});
    CHECK(a(0) == 1.5f);
    CHECK(a(1) == -2.0f);
    CHECK(f.f32<1>("b", {1})(0) == 3.25f);
    CHECK(f.metadata().at("k") == "v");
    CHECK(f.entries().size() == 2);
}

TEST_CASE("writer and reader round-trip tensors and metadata, atomically", "[safetensors]") {
    eva::Rng rng(5);
    eva::Matrix<float> w = eva::Matrix<float>::from_shape({3, 7});
    rng.fill_normal(w.data(), w.size(), 0, 1);
    eva::Vector<float> g = eva::Vector<float>::from_shape({7});
    rng.fill_normal(g.data(), g.size(), 0, 1);
    eva::SafetensorsWriter out;
    out.add("layers.0.attn.wq.weight", w);
    out.add("layers.0.attn_norm.weight", g);
    out.set_metadata("config", R"({"dim": 7})");
    const std::string bytes = out.serialize();
    CHECK((bytes.size() - 8 - (3 * 7 + 7) * 4) % 8 == 0);  // header padded to 8 bytes

    const std::string path = "eva_test_roundtrip.safetensors";
    out.write(path);
    std::ifstream tmp(path + ".tmp");
    CHECK_FALSE(tmp.good());  // the temporary was renamed away
    const auto f = eva::SafetensorsFile::read(path);
    std::remove(path.c_str());
    const bool same_w = f.f32<2>("layers.0.attn.wq.weight", {3, 7}) == w;
    CHECK(same_w);
    const bool same_g = f.f32<1>("layers.0.attn_norm.weight", {7}) == g;
    CHECK(same_g);
    CHECK(f.metadata().at("config") == R"({"dim": 7})");
}

TEST_CASE("malformed files are rejected with a message naming the problem", "[safetensors]") {
    const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    const std::string data = floats({1, 2});
    REQUIRE(error_of(file_of(ok, data)) == "no error");

    CHECK_THAT(error_of("abc"), Catch::Contains("too short"));
    std::string lying = file_of(ok, data);
    lying[0] = char(200);  // header length 200 > file
    CHECK_THAT(error_of(lying), Catch::Contains("runs past the end"));
    std::string huge = file_of(ok, data);
    huge[7] = char(0x7f);
    CHECK_THAT(error_of(huge), Catch::Contains("runs past the end"));
    CHECK_THAT(error_of(file_of(ok, data.substr(0, 6))), Catch::Contains("outside the data buffer"));
    CHECK_THAT(error_of(file_of(ok, data + "xx")), Catch::Contains("belong to no tensor"));
    CHECK_THAT(error_of(file_of("{\"a\":", data)), Catch::Contains("not valid JSON"));
    CHECK_THAT(error_of(file_of("[1,2]", data)), Catch::Contains("not a JSON object"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", data)),
               Catch::Contains("unknown dtype \"F31\""));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data)),
               Catch::Contains("needs 12 bytes"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data)),
               Catch::Contains("non-negative integer"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data)),
               Catch::Contains("outside the data buffer"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data)),
               Catch::Contains("overflows"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data)),
               Catch::Contains("overlap"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data)),
               Catch::Contains("bytes 0 to 4"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"x":1}})", data)),
               Catch::Contains("must be a string"));
    CHECK_THAT(error_of(file_of(R"({"a":{"dtype":"F32","shape":[2]}})", data)), Catch::Contains("exactly dtype"));
}

TEST_CASE("typed access checks name, dtype and shape", "[safetensors]") {
    const std::string h = R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
    const auto f = eva::SafetensorsFile::parse(file_of(h, floats({1, 2})), "m.safetensors");
    CHECK_THROWS_WITH(f.f32<1>("a", {2}), Catch::Contains("is BF16, expected F32"));
    CHECK_THROWS_WITH(f.f32<1>("b", {2}), Catch::Contains("has shape [1], expected [2]"));
    CHECK_THROWS_WITH(f.f32<1>("c", {1}), Catch::Contains("missing tensor \"c\""));
    CHECK_THROWS_AS(eva::SafetensorsFile::read("no/such/file.safetensors"), eva::FileError);
}
