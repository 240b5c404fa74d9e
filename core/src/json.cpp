// eva — strict, bounded JSON parsing. See json.hpp.
#include "eva/json.hpp"

#include "eva/error.hpp"

namespace eva {

std::string preview(std::string_view s) {
    if (s.size() <= kPreviewChars) return std::string(s);
    return std::string(s.substr(0, kPreviewChars)) + "… (" + std::to_string(s.size()) + " characters)";
}

std::string json_preview(const nlohmann::json& v) {
    if (v.is_array()) return "an array of " + std::to_string(v.size()) + " entries";
    if (v.is_object()) return "an object of " + std::to_string(v.size()) + " entries";
    if (v.is_string()) {
        // Cut before dumping, so a huge string is never copied whole; dump() escapes the rest.
        const auto& s = v.get_ref<const std::string&>();
        const std::string head = nlohmann::json(s.substr(0, kPreviewChars)).dump(-1, ' ', false,
                                                                                 nlohmann::json::error_handler_t::replace);
        return s.size() <= kPreviewChars ? head : head + "… (" + std::to_string(s.size()) + " characters)";
    }
    return v.dump();  // numbers, booleans and null are short
}

namespace {

// nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error while
// parsing value - invalid literal; last read: '<token>'". The token can be a whole 10 MB string: cut it,
// and drop the bracketed exception id, which means nothing to a user.
std::string short_parse_message(std::string m) {
    if (const auto id = m.find("] "); m.rfind("[json.exception.", 0) == 0 && id != std::string::npos) m.erase(0, id + 2);
    const std::string mark = "last read: '";
    if (const auto at = m.find(mark); at != std::string::npos) {
        const std::size_t b = at + mark.size(), close = m.rfind('\'');
        const std::size_t e = close != std::string::npos && close >= b ? close : m.size();
        m = m.substr(0, b) + preview(std::string_view(m).substr(b, e - b)) + (e < m.size() ? m.substr(e) : "'");
    }
    return m.size() <= 4 * kPreviewChars ? m : m.substr(0, 4 * kPreviewChars) + "…";
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& source) {
    // A raw NUL is never valid JSON (inside a string it must be escaped as \u0000); refusing it up front
    // also refuses a NUL-padded header whatever the parser would make of it.
    if (const auto nul = text.find('\0'); nul != std::string_view::npos)
        throw FileError(source + ": not valid JSON (a NUL byte at offset " + std::to_string(nul) + ")");
    using json = nlohmann::json;
    const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t event, json&) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= kMaxJsonDepth)
            throw FileError(source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        return true;
    };
    try {
        // parse() over the whole range is strict: anything but whitespace after the value is an error.
        return json::parse(text.begin(), text.end(), limit_depth);
    } catch (const json::exception& e) {
        // parse_error, and out_of_range for a number beyond double ("1e999", found by fuzz_config).
        throw FileError(source + ": not valid JSON (" + short_parse_message(e.what()) + ")");
    }
}

}  // namespace eva
