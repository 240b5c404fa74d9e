// eva — text data: the byte-level tokenizer and a deterministic train/validation corpus.
//
// Tokens are bytes (vocab 256), so any text — English, code, UTF-8 in any script — is valid input and
// losses are directly in nats (or bits) per byte. The default corpus is the `fortunes` collection that
// scripts/setup.sh installs from Debian (2.56 MB of English quotations, jokes and definitions).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eva/rng.hpp"

namespace eva {

using Token = std::int32_t;
constexpr int kByteVocab = 256;

std::vector<Token> encode_bytes(const std::string& text);
/// Bytes back to text; every token must be in [0, 256), else ConfigError.
std::string decode_bytes(const std::vector<Token>& tokens);
/// Token ids written as text, separated by blanks ("72 101 108"): each a decimal integer in
/// 0..vocab−1. ConfigError naming `option` and the bad word (cut short), or if there are none.
std::vector<Token> parse_token_ids(const std::string& text, std::int64_t vocab, const std::string& option);

/// Where the default corpus lives once scripts/setup.sh has installed Debian's `fortunes` package.
constexpr const char* kDefaultCorpus = "/usr/share/games/fortunes";

struct Corpus {
    std::string source;                     // the path it came from
    std::vector<Token> train, validation;   // first 90% of the bytes, last 10% (nanoGPT's split)
};

/// Loads a text file, or every fortune file of a `fortunes` folder (sorted by name; the `%` separator
/// lines become blank lines; `.dat` indexes and `.u8` links skipped), and splits it 90/10.
/// FileError if it cannot be read or holds too little text to train on.
Corpus load_corpus(const std::string& path = kDefaultCorpus);
/// The same 90/10 split of text already in memory (the browser page gets its corpus as fetched bytes);
/// `source` names it in messages. FileError if it holds fewer than 1000 bytes.
Corpus corpus_from_text(const std::string& text, const std::string& source);

/// `batch` random windows of `seq_len + 1` tokens from `tokens`, as inputs [batch·seq_len] and
/// next-token targets [batch·seq_len]. Window starts are uniform draws from `rng`.
struct Batch {
    std::vector<Token> inputs, targets;
};
Batch sample_batch(const std::vector<Token>& tokens, int batch, int seq_len, Rng& rng);

}  // namespace eva
