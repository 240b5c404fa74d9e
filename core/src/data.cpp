// eva — byte tokenizer and corpus loading.
#include "eva/data.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <sstream>

#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/io.hpp"
#include "eva/json.hpp"

namespace eva {
namespace fs = std::filesystem;

std::vector<Token> encode_bytes(const std::string& text) {
    std::vector<Token> t(text.size());
    std::transform(text.begin(), text.end(), t.begin(), [](char c) { return Token(std::uint8_t(c)); });
    return t;
}

std::string decode_bytes(const std::vector<Token>& tokens) {
    std::string s(tokens.size(), '\0');
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] < 0 || tokens[i] >= kByteVocab)
            throw ConfigError("token " + std::to_string(tokens[i]) + " is not a byte (allowed: 0..255)");
        s[i] = char(tokens[i]);
    }
    return s;
}

std::vector<Token> parse_token_ids(const std::string& text, std::int64_t vocab, const std::string& option) {
    std::vector<Token> t;
    std::size_t pos = 0;
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    for (;;) {
        while (pos < text.size() && blank(text[pos])) ++pos;
        if (pos == text.size()) break;
        const std::size_t b = pos;
        while (pos < text.size() && !blank(text[pos])) ++pos;
        // Digits only (no sign, no "0x"); from_chars also reports a value too large for int64.
        std::int64_t v = -1;
        const auto r = std::from_chars(text.data() + b, text.data() + pos, v);
        if (r.ec != std::errc() || r.ptr != text.data() + pos || text[b] == '-' || v >= vocab)
            throw ConfigError(option + ": \"" + preview(std::string_view(text).substr(b, pos - b)) +
                              "\" is not a token id in 0.." + std::to_string(vocab - 1));
        t.push_back(Token(v));
    }
    if (t.empty()) throw ConfigError(option + ": no tokens given");
    return t;
}

namespace {

std::string read_text(const fs::path& p) { return read_input_file(p.string(), kMaxTextFileBytes, ""); }

// A fortune file separates entries with lines holding a single '%'.
std::string fortunes_as_text(const std::string& raw) {
    std::istringstream in(raw);
    std::string line, out;
    while (std::getline(in, line)) out += (line == "%" ? "" : line) + "\n";
    return out;
}

}  // namespace

Corpus load_corpus(const std::string& path) {
    std::error_code ec;
    std::string text;
    if (fs::is_directory(path, ec)) {
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(path, ec))
            if (e.is_regular_file() && !e.is_symlink() && e.path().extension() != ".dat") files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            text += fortunes_as_text(read_text(f));
            if (text.size() > kMaxTextFileBytes)
                throw FileError(path + ": the folder holds more than " + format_bytes(kMaxTextFileBytes) + " of text");
        }
    } else if (fs::exists(path, ec)) {
        text = read_text(path);
    } else {
        throw FileError(path + ": no such file or folder" +
                        (path == kDefaultCorpus ? " (the default corpus: run scripts/setup.sh, or pass --data FILE)" : ""));
    }
    return corpus_from_text(text, path);
}

Corpus corpus_from_text(const std::string& text, const std::string& source) {
    if (text.size() < 1000)
        throw FileError(source + ": only " + std::to_string(text.size()) + " bytes of text; at least 1000 are needed");
    Corpus c;
    c.source = source;
    const std::size_t split = text.size() * 9 / 10;
    c.train = encode_bytes(text.substr(0, split));
    c.validation = encode_bytes(text.substr(split));
    return c;
}

Batch sample_batch(const std::vector<Token>& tokens, int batch, int seq_len, Rng& rng) {
    if (batch <= 0 || seq_len <= 0) throw ConfigError("batch and seq_len must be positive");
    if (tokens.size() < std::size_t(seq_len) + 1)
        throw ConfigError("seq_len " + std::to_string(seq_len) + " is longer than the data (" +
                          std::to_string(tokens.size()) + " tokens)");
    if (tokens.size() > 0xFFFFFFFFull) throw ConfigError("corpus larger than 4 GiB tokens is not supported");
    Batch b;
    const std::uint32_t starts = std::uint32_t(tokens.size() - std::size_t(seq_len));  // valid window starts
    for (int i = 0; i < batch; ++i) {
        // Multiply-shift maps a 32-bit draw to [0, starts) with bias below starts/2^32.
        const std::size_t s = std::size_t((std::uint64_t(rng.next_u32()) * starts) >> 32);
        b.inputs.insert(b.inputs.end(), tokens.begin() + s, tokens.begin() + s + seq_len);
        b.targets.insert(b.targets.end(), tokens.begin() + s + 1, tokens.begin() + s + seq_len + 1);
    }
    return b;
}

}  // namespace eva
