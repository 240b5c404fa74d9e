// eva — JSON from untrusted text: configs, safetensors headers and their __metadata__, training state.
//
// nlohmann::json parses iteratively, but much else about a parsed value recurses (dump(), comparisons),
// so a value nested 100,000 deep would overflow the stack later. parse_json is the one entry point eva
// uses: it refuses nesting deeper than kMaxJsonDepth, any content after the value (`{} garbage`), raw NUL
// bytes, and reports a parse error as one short line. json_preview quotes an untrusted value in an error
// message without recursing and without echoing a 10 MB string: at most kPreviewChars characters.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace eva {

/// Deepest nesting of arrays and objects accepted (eva's own files use 3; Hugging Face configs 4).
constexpr int kMaxJsonDepth = 64;
/// Characters of an untrusted value (or of the parser's context) quoted in an error message.
constexpr std::size_t kPreviewChars = 60;

/// Parses all of `text` as one JSON value; FileError "`source`: not valid JSON (…)" otherwise.
nlohmann::json parse_json(std::string_view text, const std::string& source);

/// A short, flat rendering of `v` for an error message: scalars as JSON cut to kPreviewChars,
/// arrays and objects as "an array of N entries" / "an object of N entries".
std::string json_preview(const nlohmann::json& v);

/// `s` cut to kPreviewChars characters (with "…" and the full length when cut).
std::string preview(std::string_view s);

}  // namespace eva
