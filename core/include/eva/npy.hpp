// eva — NumPy .npy arrays (format versions 1.0, 2.0 and 3.0), read strictly and written as NumPy does.
//
// Layout: the magic "\x93NUMPY", a major and minor version byte, the header length (u16 little-endian
// in version 1, u32 in 2 and 3), then a header that is a Python dict literal padded with spaces and
// ended by '\n' — {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } — then the raw data.
// Reading parses that dict token by token (never by searching for substrings): exactly the three keys,
// a little-endian float32 or float64 dtype, C order, a rank within the caller's range, and a data length
// equal to what the shape needs — all checked against the bytes in hand before anything is allocated.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace eva {

struct NpyArray {
    std::vector<std::size_t> shape;  // C order; () is a scalar
    std::vector<float> data;         // float64 files are converted (rounded to nearest)
};

/// Parses a whole .npy file's bytes; `source` names it in FileError messages. The rank must lie in
/// [min_rank, max_rank] (ShapeError otherwise).
NpyArray parse_npy(std::string_view bytes, const std::string& source, std::size_t min_rank = 0,
                   std::size_t max_rank = 8);
/// Reads `path` (a regular file, bounded; see io.hpp) and parses it. `what` names the option.
NpyArray read_npy(const std::string& path, const std::string& what, std::size_t min_rank = 0,
                  std::size_t max_rank = 8);

/// A float32 C-order .npy file (version 1.0, or 2.0 for a huge header), byte for byte as numpy.save writes.
std::string npy_bytes(const std::vector<std::size_t>& shape, const float* data);
/// Writes npy_bytes atomically (see write_file_atomically).
void write_npy(const std::string& path, const std::vector<std::size_t>& shape, const float* data);

}  // namespace eva
