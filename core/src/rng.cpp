// eva — Philox4x32-10. Constants from Salmon et al. (2011): the two multipliers come from their search
// for good avalanche; the key increments are the golden ratio and √3 − 1 in 32-bit fixed point.
#include "eva/rng.hpp"

#include <cmath>

namespace eva {
namespace {

constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

// hi and lo halves of the 64-bit product a·b.
inline void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
    const std::uint64_t p = std::uint64_t(a) * b;
    hi = std::uint32_t(p >> 32);
    lo = std::uint32_t(p);
}

}  // namespace

Rng::Block Rng::philox(Block c, std::array<std::uint32_t, 2> k) {
    for (int round = 0; round < 10; ++round) {
        std::uint32_t hi0, lo0, hi1, lo1;
        mulhilo(kMul0, c[0], hi0, lo0);
        mulhilo(kMul1, c[2], hi1, lo1);
        c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
        k[0] += kWeyl0;
        k[1] += kWeyl1;
    }
    return c;
}

std::uint32_t Rng::next_u32() {
    const std::uint64_t block = position_ / 4;
    const Block r = philox({std::uint32_t(block), std::uint32_t(block >> 32), std::uint32_t(stream_),
                            std::uint32_t(stream_ >> 32)},
                           {std::uint32_t(seed_), std::uint32_t(seed_ >> 32)});
    return r[position_++ % 4];
}

float Rng::uniform() { return float(next_u32() >> 8) * 0x1p-24f; }

float Rng::normal() {
    // u1 in (0, 1] so the logarithm is finite; u2 in [0, 1).
    const double u1 = (double(next_u32()) + 1.0) * 0x1p-32;
    const double u2 = double(next_u32()) * 0x1p-32;
    const double two_pi = 6.283185307179586476925286766559;
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2));
}

void Rng::fill_normal(float* out, std::size_t n, float mean, float std) {
    for (std::size_t i = 0; i < n; ++i) out[i] = mean + std * normal();
}

}  // namespace eva
