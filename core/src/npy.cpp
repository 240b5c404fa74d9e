// eva — strict .npy reading and NumPy-identical writing. See npy.hpp.
#include "eva/npy.hpp"

#include <cstdint>
#include <cstring>

#include "eva/checked.hpp"
#include "eva/error.hpp"
#include "eva/io.hpp"
#include "eva/json.hpp"

namespace eva {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

// The header dict, consumed left to right. Python's literal syntax is richer than this; NumPy writes
// only quoted strings, True/False and tuples of non-negative integers, and anything else is refused.
class HeaderParser {
public:
    HeaderParser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

    [[noreturn]] void fail(const std::string& why) const {
        throw FileError(source_ + ": not a valid .npy header (" + why + " at character " + std::to_string(pos_) +
                        " of \"" + preview(s_) + "\")");
    }
    void skip_spaces() {
        while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
    }
    bool accept(char c) {
        skip_spaces();
        if (pos_ < s_.size() && s_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!accept(c)) fail(std::string("expected '") + c + "'");
    }
    std::string quoted() {
        skip_spaces();
        if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) fail("expected a quoted string");
        const char q = s_[pos_++];
        const std::size_t b = pos_;
        while (pos_ < s_.size() && s_[pos_] != q) {
            if (s_[pos_] == '\\' || std::uint8_t(s_[pos_]) < 0x20) fail("unsupported character in a string");
            ++pos_;
        }
        if (pos_ >= s_.size()) fail("unterminated string");
        return std::string(s_.substr(b, pos_++ - b));
    }
    bool boolean() {
        skip_spaces();
        for (const auto& [word, value] : {std::pair{"True", true}, {"False", false}})
            if (s_.substr(pos_, std::strlen(word)) == word) {
                pos_ += std::strlen(word);
                return value;
            }
        fail("expected True or False");
    }
    std::uint64_t integer() {
        skip_spaces();
        std::uint64_t v = 0;
        const std::size_t b = pos_;
        while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
            if (pos_ - b >= 15) fail("a dimension with more than 15 digits");
            v = v * 10 + std::uint64_t(s_[pos_++] - '0');
        }
        if (pos_ == b) fail("expected a dimension");
        return v;
    }
    // "()", "(3,)", "(3, 4)" or "(3, 4,)".
    std::vector<std::uint64_t> tuple() {
        expect('(');
        std::vector<std::uint64_t> dims;
        if (accept(')')) return dims;
        bool trailing_comma = false;
        for (;;) {
            dims.push_back(integer());
            if (dims.size() > 32) fail("more than 32 dimensions");
            if (accept(')')) break;
            expect(',');
            if ((trailing_comma = accept(')'))) break;
        }
        // In Python "(3)" is the integer 3, not a tuple.
        if (dims.size() == 1 && !trailing_comma) fail("a one-element tuple needs a trailing comma");
        return dims;
    }
    // After '}': only the space padding and one final newline.
    void end() {
        skip_spaces();
        if (pos_ < s_.size() && s_[pos_] == '\n') ++pos_;
        if (pos_ != s_.size()) fail("unexpected content after the dict");
    }
    std::string_view s_;
    std::size_t pos_ = 0;
    const std::string& source_;
};

struct Header {
    std::string descr;
    bool fortran_order = false;
    std::vector<std::uint64_t> shape;
};

Header parse_header(std::string_view text, const std::string& source) {
    HeaderParser p(text, source);
    Header h;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    p.expect('{');
    while (!p.accept('}')) {
        const std::string key = p.quoted();
        p.expect(':');
        auto once = [&](bool& seen) {
            if (seen) p.fail("key '" + key + "' appears twice");
            seen = true;
        };
        if (key == "descr") once(seen_descr), h.descr = p.quoted();
        else if (key == "fortran_order") once(seen_order), h.fortran_order = p.boolean();
        else if (key == "shape") once(seen_shape), h.shape = p.tuple();
        else p.fail("unknown key '" + preview(key) + "' (allowed: descr, fortran_order, shape)");
        if (!p.accept(',')) {
            p.expect('}');
            break;
        }
    }
    p.end();
    if (!seen_descr || !seen_order || !seen_shape) p.fail("the header must give descr, fortran_order and shape");
    return h;
}

std::string shape_text(const std::vector<std::size_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

NpyArray parse_npy(std::string_view bytes, const std::string& source, std::size_t min_rank, std::size_t max_rank) {
    auto bad = [&](const std::string& why) { return FileError(source + ": not a valid .npy file (" + why + ")"); };
    if (bytes.size() < 10 || bytes.substr(0, 6) != kMagic) throw bad("no \\x93NUMPY magic");
    const unsigned major = std::uint8_t(bytes[6]), minor = std::uint8_t(bytes[7]);
    if (major < 1 || major > 3 || minor != 0)
        throw bad("unsupported format version " + std::to_string(major) + "." + std::to_string(minor) +
                  " (allowed: 1.0, 2.0, 3.0)");
    const std::size_t len_bytes = major == 1 ? 2 : 4;
    if (bytes.size() < 8 + len_bytes) throw bad("truncated header length");
    std::uint64_t header_len = 0;
    for (std::size_t i = 0; i < len_bytes; ++i) header_len |= std::uint64_t(std::uint8_t(bytes[8 + i])) << (8 * i);
    if (header_len > bytes.size() - 8 - len_bytes)
        throw bad("header length " + std::to_string(header_len) + " runs past the end of the file");
    const std::size_t data_offset = 8 + len_bytes + std::size_t(header_len);
    const Header h = parse_header(bytes.substr(8 + len_bytes, std::size_t(header_len)), source);

    std::size_t item = 0;
    if (h.descr == "<f4") item = 4;
    else if (h.descr == "<f8") item = 8;
    else throw bad("dtype '" + preview(h.descr) + "'; allowed: little-endian float32 '<f4' or float64 '<f8'");
    if (h.fortran_order) throw bad("Fortran order; save the array in C order");
    // The product first (in 64 bits, checked), then whether this platform can address it (wasm: 32 bits).
    const std::uint64_t count = checked_product(h.shape.data(), h.shape.size(), source + " shape");
    const std::uint64_t need = checked_mul(count, item, source + " data size");
    std::vector<std::size_t> shape(h.shape.size());
    for (std::size_t i = 0; i < shape.size(); ++i) shape[i] = to_size(h.shape[i], source + " shape");
    if (shape.size() < min_rank || shape.size() > max_rank)
        throw ShapeError(source + ": the array has rank " + std::to_string(shape.size()) + " " + shape_text(shape) +
                         "; allowed: " + (min_rank == max_rank ? std::to_string(min_rank)
                                                               : std::to_string(min_rank) + " to " + std::to_string(max_rank)));
    const std::size_t have = bytes.size() - data_offset;
    if (need != have)
        throw bad("shape " + shape_text(shape) + " of " + h.descr + " needs " + std::to_string(need) +
                  " data bytes, the file holds " + std::to_string(have));
    // Only now, with the size paid for by bytes actually present, allocate.
    NpyArray a;
    a.shape = std::move(shape);
    a.data.resize(std::size_t(count));
    const char* p = bytes.data() + data_offset;  // little-endian, like both of eva's targets
    if (item == 4) {
        if (need > 0) std::memcpy(a.data.data(), p, std::size_t(need));  // (a null data() when empty)
    } else {
        for (std::size_t i = 0; i < a.data.size(); ++i) {
            double d;
            std::memcpy(&d, p + 8 * i, 8);
            a.data[i] = float(d);
        }
    }
    return a;
}

NpyArray read_npy(const std::string& path, const std::string& what, std::size_t min_rank, std::size_t max_rank) {
    const std::string source = what.empty() ? path : what + " " + path;
    return parse_npy(read_input_file(path, kMaxDataFileBytes, what), source, min_rank, max_rank);
}

std::string npy_bytes(const std::vector<std::size_t>& shape, const float* data) {
    std::uint64_t count = 1;
    for (std::size_t d : shape) count = checked_mul(count, d, "npy shape");
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
    // numpy.save leaves room for the first dimension to grow to 21 digits, then pads with spaces so the
    // data starts 64-byte aligned, and ends the header with '\n'.
    if (!shape.empty()) header.append(21 - std::to_string(shape[0]).size(), ' ');
    const bool v2 = header.size() + 1 + 10 > 65535;
    const std::size_t prefix = v2 ? 12 : 10;
    header.append(64 - (header.size() + 1 + prefix) % 64, ' ');
    header += '\n';
    std::string out(kMagic);
    out += char(v2 ? 2 : 1);
    out += '\0';
    for (std::size_t i = 0; i < (v2 ? 4u : 2u); ++i) out += char((header.size() >> (8 * i)) & 0xff);
    out += header;
    out.append(reinterpret_cast<const char*>(data), std::size_t(count) * sizeof(float));
    return out;
}

void write_npy(const std::string& path, const std::vector<std::size_t>& shape, const float* data) {
    write_file_atomically(path, npy_bytes(shape, data));
}

}  // namespace eva
