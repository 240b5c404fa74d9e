// eva — safetensors checkpoints (the format of Hugging Face's `safetensors` library and of DeepSeek-V3's
// released weights).
//
// Layout: 8 bytes little-endian u64 N, then N bytes of JSON header, then the data buffer. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
// buffer), plus an optional "__metadata__" object of string → string. Reading validates everything a
// hostile or truncated file could get wrong — header length, JSON, dtypes, shapes, offsets inside the
// buffer, sizes matching shapes, no overlaps, no gaps — and raises eva::FileError naming the problem.
// Writing goes to a temporary file that is renamed over the target, so a crash never leaves half a file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "eva/error.hpp"
#include "eva/io.hpp"  // write_file_atomically

namespace eva {

struct SafetensorsEntry {
    std::string dtype;                // "F32", "BF16", "F8_E4M3", …
    std::vector<std::size_t> shape;
    std::size_t begin = 0, end = 0;   // byte range in the data buffer
};

class SafetensorsFile {
public:
    /// Validates a whole file, mapped rather than read (io.hpp map_input_file): the tensors' bytes are
    /// only touched when a tensor is read.
    static SafetensorsFile read(const std::string& path);
    /// Validates `bytes` (a whole file's content); `source` names it in error messages.
    static SafetensorsFile parse(std::string bytes, const std::string& source = "<memory>");
    /// Validates the bytes of a whole file held by `bytes` (kept alive as long as the result).
    static SafetensorsFile parse(std::shared_ptr<const InputBytes> bytes, const std::string& source);

    const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    bool contains(const std::string& name) const { return entries_.count(name) != 0; }
    /// Bytes of the data buffer (all tensors together).
    std::size_t data_size() const { return bytes_->size() - data_start_; }
    /// The raw little-endian bytes of a tensor (entry(name).end − begin of them).
    const char* tensor_bytes(const SafetensorsEntry& e) const { return bytes_->data() + data_start_ + e.begin; }
    /// The file (or "<memory>") in error messages.
    const std::string& source() const { return source_; }
    /// The entry for `name`, or FileError naming the missing tensor.
    const SafetensorsEntry& entry(const std::string& name) const;

    /// A float32 tensor of rank N with the given shape; FileError if it is missing, not F32, or
    /// shaped differently.
    template <std::size_t N>
    xt::xtensor<float, N> f32(const std::string& name, const std::array<std::size_t, N>& shape) const {
        xt::xtensor<float, N> t = xt::xtensor<float, N>::from_shape(shape);
        read_f32(name, std::vector<std::size_t>(shape.begin(), shape.end()), t.data());
        return t;
    }
    /// Copies a float32 tensor of exactly `shape` into `out`; FileError as for f32.
    void read_f32(const std::string& name, const std::vector<std::size_t>& shape, float* out) const;

private:

    std::string source_;
    std::shared_ptr<const InputBytes> bytes_;
    std::size_t data_start_ = 0;
    std::map<std::string, SafetensorsEntry> entries_;
    std::map<std::string, std::string> metadata_;
};

/// Collects float32 tensors and metadata, then writes them atomically (temp file + rename).
class SafetensorsWriter {
public:
    void add(const std::string& name, const std::vector<std::size_t>& shape, const float* data);
    template <class E>
    void add(const std::string& name, const E& tensor) {
        const auto& s = tensor.shape();
        add(name, std::vector<std::size_t>(s.begin(), s.end()), tensor.data());
    }
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
    /// The complete file content.
    std::string serialize() const;
    /// Writes `path` atomically; FileError if it cannot be written.
    void write(const std::string& path) const;

private:
    struct Tensor {
        std::vector<std::size_t> shape;
        std::vector<float> data;
    };
    std::map<std::string, Tensor> tensors_;
    std::map<std::string, std::string> metadata_;
};

/// Size in bytes of one element of a safetensors dtype name; FileError for an unknown name.
std::size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace eva
