// Byte tokenizer, corpus loading and splitting, batch sampling.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "eva/data.hpp"
#include "eva/error.hpp"

namespace fs = std::filesystem;

TEST_CASE("bytes round-trip through the tokenizer", "[data]") {
    const std::string s = "Grüße, MLA! \x01\xff";
    const auto t = eva::encode_bytes(s);
    CHECK(t.size() == s.size());  // UTF-8: ü and ß are two bytes each
    CHECK(t[2] == 0xC3);
    CHECK(t.back() == 255);
    CHECK(eva::decode_bytes(t) == s);
    CHECK_THROWS_AS(eva::decode_bytes({65, 256}), eva::ConfigError);
}

TEST_CASE("a text file splits 90/10 at the byte level", "[data]") {
    const std::string path = "eva_test_corpus.txt";
    std::string text;
    for (int i = 0; i < 200; ++i) text += "line " + std::to_string(i) + "\n";
    std::ofstream(path) << text;
    const auto c = eva::load_corpus(path);
    fs::remove(path);
    CHECK(c.train.size() == text.size() * 9 / 10);
    CHECK(c.train.size() + c.validation.size() == text.size());
    CHECK(eva::decode_bytes(c.train) + eva::decode_bytes(c.validation) == text);
}

TEST_CASE("text in memory splits like a file", "[data]") {
    std::string text;
    for (int i = 0; i < 200; ++i) text += "row " + std::to_string(i) + "\n";
    const auto c = eva::corpus_from_text(text, "fetched bytes");
    CHECK(c.source == "fetched bytes");
    CHECK(c.train.size() == text.size() * 9 / 10);
    CHECK(eva::decode_bytes(c.train) + eva::decode_bytes(c.validation) == text);
    CHECK_THROWS_WITH(eva::corpus_from_text("too short", "x"), Catch::Contains("at least 1000"));
}

TEST_CASE("a fortunes folder becomes plain text without separators or indexes", "[data]") {
    const fs::path dir = "eva_test_fortunes";
    fs::create_directories(dir);
    std::string body;
    for (int i = 0; i < 100; ++i) body += "A fortune number " + std::to_string(i) + ".\n%\n";
    std::ofstream(dir / "b") << body;
    std::ofstream(dir / "a") << "First.\n%\n" << body;
    std::ofstream(dir / "a.dat") << "binary index that must be skipped";
    const auto c = eva::load_corpus(dir.string());
    fs::remove_all(dir);
    const std::string all = eva::decode_bytes(c.train) + eva::decode_bytes(c.validation);
    CHECK(all.rfind("First.\n\nA fortune number 0.\n\n", 0) == 0);  // file "a" first, '%' lines blank
    CHECK(all.find('%') == std::string::npos);
    CHECK(all.find("binary index") == std::string::npos);
}

TEST_CASE("corpus errors name the problem", "[data]") {
    CHECK_THROWS_WITH(eva::load_corpus("no/such/corpus.txt"), Catch::Contains("no such file"));
    std::ofstream("eva_test_tiny.txt") << "too short";
    CHECK_THROWS_WITH(eva::load_corpus("eva_test_tiny.txt"), Catch::Contains("at least 1000"));
    fs::remove("eva_test_tiny.txt");
}

TEST_CASE("batches are next-token windows, deterministic per seed", "[data]") {
    std::vector<eva::Token> tokens(1000);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = eva::Token(i % 251);
    eva::Rng r1(9), r2(9);
    const auto a = eva::sample_batch(tokens, 4, 16, r1), b = eva::sample_batch(tokens, 4, 16, r2);
    CHECK(a.inputs == b.inputs);
    REQUIRE(a.inputs.size() == 64);
    for (std::size_t i = 0; i < 64; ++i) CHECK(a.targets[i] == (a.inputs[i] + 1) % 251);
    CHECK_THROWS_AS(eva::sample_batch(tokens, 1, 1000, r1), eva::ConfigError);
}

TEST_CASE("the default corpus (Debian's fortunes) loads when installed", "[data]") {
    if (!fs::exists(eva::kDefaultCorpus)) {
        WARN("skipped: " << eva::kDefaultCorpus << " is not installed (scripts/setup.sh installs it)");
        return;
    }
    const auto c = eva::load_corpus();
    CHECK(c.train.size() > 1'000'000);  // about 2.5 MB of text in the bookworm package
    CHECK(c.validation.size() * 9 == Approx(c.train.size()).epsilon(0.001));
}
