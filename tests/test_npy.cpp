// .npy: byte-for-byte what numpy.save writes (bytes below produced by NumPy 1.24's np.save), and a
// strict reader: the header dict parsed token by token; wrong dtype, Fortran order, rank, a data length
// that does not match the shape, or trailing header content are errors raised before allocating.
#include <catch2/catch.hpp>

#include <string>

#include "eva/error.hpp"
#include "eva/npy.hpp"

using namespace eva;

namespace {

// np.save(f, np.array([[1.5, -2], [0, 3]], dtype='<f4'))
const std::string kNumpy2x2 = std::string("\x93NUMPY\x01\x00v\x00", 10) +
                              "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }" + std::string(58, ' ') + "\n" +
                              std::string("\x00\x00\xc0?\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00@@", 16);
// np.save(f, np.array([0.25], dtype='<f8'))
const std::string kNumpyF8 = std::string("\x93NUMPY\x01\x00v\x00", 10) +
                             "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }" + std::string(60, ' ') + "\n" +
                             std::string("\x00\x00\x00\x00\x00\x00\xd0?", 8);
// np.save(f, np.array(7, dtype='<f4')): a scalar, shape ()
const std::string kNumpyScalar = std::string("\x93NUMPY\x01\x00v\x00", 10) +
                                 "{'descr': '<f4', 'fortran_order': False, 'shape': (), }" + std::string(62, ' ') + "\n" +
                                 std::string("\x00\x00\xe0@", 4);

// A version-1 file around `header` (no padding rules enforced by the reader beyond the dict grammar).
std::string npy_with_header(const std::string& header, const std::string& data) {
    std::string s = std::string("\x93NUMPY\x01\x00", 8);
    s += char(header.size() & 0xff);
    s += char(header.size() >> 8);
    return s + header + data;
}

std::string error_of(const std::string& bytes, std::size_t min_rank = 0, std::size_t max_rank = 8) {
    try {
        parse_npy(bytes, "x.npy", min_rank, max_rank);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("npy: writes exactly what numpy.save writes, and reads NumPy's files", "[npy]") {
    const float m[] = {1.5f, -2.0f, 0.0f, 3.0f};
    CHECK(npy_bytes({2, 2}, m) == kNumpy2x2);
    const float s[] = {7.0f};
    CHECK(npy_bytes({}, s) == kNumpyScalar);
    const NpyArray a = parse_npy(kNumpy2x2, "x");
    CHECK(a.shape == std::vector<std::size_t>{2, 2});
    CHECK(a.data == std::vector<float>{1.5f, -2.0f, 0.0f, 3.0f});
    const NpyArray d = parse_npy(kNumpyF8, "x");
    CHECK(d.shape == std::vector<std::size_t>{1});
    CHECK(d.data == std::vector<float>{0.25f});
    CHECK(parse_npy(kNumpyScalar, "x").data == std::vector<float>{7.0f});
    // Every shape round-trips, including a zero-sized one.
    for (const std::vector<std::size_t>& shape : {std::vector<std::size_t>{0}, {3}, {2, 0, 5}, {1, 1, 1, 2}}) {
        std::size_t n = 1;
        for (auto x : shape) n *= x;
        std::vector<float> v(n, 0.5f);
        const NpyArray r = parse_npy(npy_bytes(shape, v.data()), "x");
        CHECK(r.shape == shape);
        CHECK(r.data == v);
    }
}

TEST_CASE("npy: the header dict is parsed, not searched", "[npy]") {
    const std::string four(4, '\0');
    auto with = [&](const std::string& dict) { return npy_with_header(dict + "\n", four); };
    CHECK(error_of(with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }")) == "");
    CHECK(error_of(with("{\"shape\": (1,), \"descr\": \"<f4\", \"fortran_order\": False}")) == "");  // any order, "
    CHECK(error_of(with("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }")).find("dtype '<i4'") != std::string::npos);
    CHECK(error_of(with("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }")).find("dtype '>f4'") != std::string::npos);
    CHECK(error_of(with("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }")).find("Fortran order") != std::string::npos);
    // The old substring search accepted these: '<f4' mentioned elsewhere, or a second dict after the first.
    CHECK(error_of(with("{'descr': '<i4', 'note': '<f4', 'fortran_order': False, 'shape': (1,), }")).find("unknown key 'note'") != std::string::npos);
    CHECK(error_of(with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } {'x': 1}")).find("after the dict") != std::string::npos);
    CHECK(error_of(with("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }")).find("twice") != std::string::npos);
    CHECK(error_of(with("{'descr': '<f4', 'shape': (1,), }")).find("must give descr, fortran_order and shape") != std::string::npos);
    CHECK(error_of(with("{'descr': '<f4', 'fortran_order': False, 'shape': (1), }")).find("trailing comma") != std::string::npos);
    CHECK(error_of(with("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")).find("expected a dimension") != std::string::npos);
    CHECK(error_of(npy_with_header(std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\0\0\n", 60), four)).find("after the dict") != std::string::npos);  // NUL padding
}

TEST_CASE("npy: rank, data length and size overflow are checked before allocating", "[npy]") {
    const float v[6] = {};
    const std::string r3 = npy_bytes({1, 2, 3}, v);
    CHECK(error_of(r3, 1, 2).find("rank 3 (1, 2, 3); allowed: 1 to 2") != std::string::npos);
    CHECK(error_of(r3.substr(0, r3.size() - 1)).find("needs 24 data bytes, the file holds 23") != std::string::npos);
    CHECK(error_of(r3 + "x").find("needs 24 data bytes, the file holds 25") != std::string::npos);
    // The 144-byte file of issue 12 that allocated 1 GiB: 2^28 floats claimed, 16 bytes present.
    CHECK(error_of(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }\n", std::string(16, '\0')))
              .find("needs 1073741824 data bytes, the file holds 16") != std::string::npos);
    // A shape whose product wraps in 64 bits.
    CHECK(error_of(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296,), }\n", ""))
              .find("overflows") != std::string::npos);
    CHECK(error_of("\x93NUMPY").find("no \\x93NUMPY magic") != std::string::npos);
    CHECK(error_of(std::string("\x93NUMPY\x01\x00\xff\xff", 10)).find("runs past the end") != std::string::npos);
    CHECK(error_of(std::string("\x93NUMPY\x04\x00\x00\x00", 10)).find("version 4.0") != std::string::npos);
}
