// eva — safetensors reading (validated) and writing (atomic).
#include "eva/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>

#include <nlohmann/json.hpp>

#include "eva/json.hpp"

namespace eva {
namespace {

using nlohmann::json;

// The reference implementation refuses headers over 100 MB; a real header is a few hundred kB at most.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

std::string show_shape(const std::vector<std::size_t>& s) {
    std::string r = "[";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

// x·y, or false if it would overflow.
bool checked_mul(std::size_t x, std::size_t y, std::size_t& out) {
    if (y != 0 && x > std::numeric_limits<std::size_t>::max() / y) return false;
    out = x * y;
    return true;
}

std::size_t get_size(const json& v, const std::string& what, const std::string& source) {
    if (!v.is_number_unsigned())
        throw FileError(source + ": " + what + " must be a non-negative integer, got " + json_preview(v));
    const std::uint64_t x = v.get<std::uint64_t>();
    if (x > std::numeric_limits<std::size_t>::max())  // 32-bit size_t in WebAssembly
        throw FileError(source + ": " + what + " " + std::to_string(x) + " overflows this platform's sizes");
    return std::size_t(x);
}

}  // namespace

std::size_t safetensors_dtype_size(const std::string& dtype) {
    static const std::map<std::string, std::size_t> sizes = {
        {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2},
        {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"I64", 8}, {"U64", 8},
        {"F64", 8}};
    const auto it = sizes.find(dtype);
    if (it == sizes.end())
        throw FileError("unknown dtype \"" + preview(dtype) + "\" (allowed: BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, "
                        "BF16, I32, U32, F32, I64, U64, F64)");
    return it->second;
}

SafetensorsFile SafetensorsFile::read(const std::string& path) {
    return parse(map_input_file(path, kMaxDataFileBytes, ""), path);
}

SafetensorsFile SafetensorsFile::parse(std::string bytes, const std::string& source) {
    return parse(hold_bytes(std::move(bytes)), source);
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const InputBytes> buffer, const std::string& source) {
    const std::string_view bytes(buffer->data(), buffer->size());
    auto fail = [&](const std::string& msg) { return FileError(source + ": " + msg); };
    if (bytes.size() < 8)
        throw fail("too short for a safetensors file (" + std::to_string(bytes.size()) + " bytes; the header length alone is 8)");
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t(std::uint8_t(bytes[i])) << (8 * i);
    if (n > bytes.size() - 8)
        throw fail("header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(bytes.size()) + " bytes): truncated or not a safetensors file");
    if (n > kMaxHeaderBytes) throw fail("header length " + std::to_string(n) + " exceeds the 100 MB limit");

    // Depth-limited and strict: a NUL-padded header or one nested 100,000 deep is an error.
    const json header = parse_json(std::string_view(bytes).substr(8, std::size_t(n)), source + ": header");
    if (!header.is_object()) throw fail("header is not a JSON object");

    SafetensorsFile f;
    f.source_ = source;
    f.data_start_ = 8 + std::size_t(n);
    const std::size_t data_size = bytes.size() - f.data_start_;
    for (const auto& [name, v] : header.items()) {
        if (name == "__metadata__") {
            if (!v.is_object()) throw fail("__metadata__ must be an object of strings");
            for (const auto& [k, s] : v.items()) {
                if (!s.is_string()) throw fail("__metadata__[\"" + preview(k) + "\"] must be a string, got " + json_preview(s));
                f.metadata_[k] = s.get<std::string>();
            }
            continue;
        }
        const std::string where = "tensor \"" + preview(name) + "\"";
        if (!v.is_object() || v.size() != 3 || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
            throw fail(where + " must be an object with exactly dtype, shape and data_offsets");
        if (!v["dtype"].is_string()) throw fail(where + ": dtype must be a string");
        SafetensorsEntry e;
        e.dtype = v["dtype"].get<std::string>();
        std::size_t bytes_needed = 0;
        try {
            bytes_needed = safetensors_dtype_size(e.dtype);
        } catch (const FileError& err) {
            throw fail(where + ": " + err.what());
        }
        if (!v["shape"].is_array()) throw fail(where + ": shape must be an array");
        for (const auto& d : v["shape"]) {
            e.shape.push_back(get_size(d, where + " shape entry", source));
            if (!checked_mul(bytes_needed, e.shape.back(), bytes_needed))
                throw fail(where + ": shape " + show_shape(e.shape) + "… overflows");
        }
        const json& off = v["data_offsets"];
        if (!off.is_array() || off.size() != 2) throw fail(where + ": data_offsets must be [begin, end]");
        e.begin = get_size(off[0], where + " data_offsets", source);
        e.end = get_size(off[1], where + " data_offsets", source);
        if (e.begin > e.end || e.end > data_size)
            throw fail(where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                       "] lie outside the data buffer of " + std::to_string(data_size) + " bytes");
        if (e.end - e.begin != bytes_needed)
            throw fail(where + ": " + e.dtype + " " + show_shape(e.shape) + " needs " + std::to_string(bytes_needed) +
                       " bytes but data_offsets give " + std::to_string(e.end - e.begin));
        f.entries_.emplace(name, std::move(e));
    }

    // The tensors must tile the data buffer exactly: no overlaps, no unclaimed bytes.
    std::vector<std::pair<const std::string*, const SafetensorsEntry*>> order;
    for (const auto& [name, e] : f.entries_) order.push_back({&name, &e});
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
        return std::tie(a.second->begin, a.second->end) < std::tie(b.second->begin, b.second->end);
    });
    std::size_t covered = 0;
    const std::string* previous = nullptr;
    for (const auto& [name, e] : order) {
        if (e->begin < covered)
            throw fail("tensors \"" + *previous + "\" and \"" + *name + "\" overlap in the data buffer");
        if (e->begin > covered)
            throw fail("bytes " + std::to_string(covered) + " to " + std::to_string(e->begin) +
                       " of the data buffer belong to no tensor");
        covered = e->end;
        previous = name;
    }
    if (covered != data_size)
        throw fail("the last " + std::to_string(data_size - covered) + " bytes of the data buffer belong to no tensor");
    f.bytes_ = std::move(buffer);
    return f;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
    const auto it = entries_.find(name);
    if (it == entries_.end()) throw FileError(source_ + ": missing tensor \"" + name + "\"");
    return it->second;
}

void SafetensorsFile::read_f32(const std::string& name, const std::vector<std::size_t>& shape, float* out) const {
    const SafetensorsEntry& e = entry(name);
    if (e.dtype != "F32") throw FileError(source_ + ": tensor \"" + name + "\" is " + e.dtype + ", expected F32");
    if (e.shape != shape)
        throw FileError(source_ + ": tensor \"" + name + "\" has shape " + show_shape(e.shape) + ", expected " +
                        show_shape(shape));
    // safetensors is little-endian, as are x86-64 and WebAssembly, eva's two targets.
    std::memcpy(out, tensor_bytes(e), e.end - e.begin);
}

void SafetensorsWriter::add(const std::string& name, const std::vector<std::size_t>& shape, const float* data) {
    if (name.empty() || name == "__metadata__") throw ConfigError("safetensors: invalid tensor name \"" + name + "\"");
    std::size_t n = 1;
    for (std::size_t d : shape)
        if (!checked_mul(n, d, n)) throw ShapeError("safetensors: shape of \"" + name + "\" overflows");
    tensors_[name] = Tensor{shape, std::vector<float>(data, data + n)};
}

std::string SafetensorsWriter::serialize() const {
    json header = json::object();
    std::size_t offset = 0;
    for (const auto& [name, t] : tensors_) {
        const std::size_t bytes = t.data.size() * sizeof(float);
        header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data buffer starts 8-byte aligned
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = char((std::uint64_t(text.size()) >> (8 * i)) & 0xff);
    out += text;
    out.reserve(out.size() + offset);
    for (const auto& [name, t] : tensors_)
        out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
    return out;
}

void SafetensorsWriter::write(const std::string& path) const { write_file_atomically(path, serialize()); }

}  // namespace eva
