// libFuzzer target for the .npy reader: any byte string must parse into an array whose data length
// matches its shape, or raise eva::Error — the header dict is parsed strictly and the size checked
// against the bytes present before anything is allocated.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eva/error.hpp"
#include "eva/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const eva::NpyArray a = eva::parse_npy(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
        std::size_t n = 1;
        for (std::size_t d : a.shape) n *= d;
        if (n != a.data.size()) __builtin_trap();  // the reader's own invariant
        // What it read, written back, must read back identically (float32 round trip).
        if (eva::parse_npy(eva::npy_bytes(a.shape, a.data.data()), "again").data.size() != n) __builtin_trap();
    } catch (const eva::Error&) {
    }
    return 0;
}
