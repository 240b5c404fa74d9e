// eva — a counter-based random number generator (Philox4x32-10, Salmon et al., SC'11, "Parallel random
// numbers: as easy as 1, 2, 3").
//
// Draw number i of stream s under seed k is a pure function Philox(counter = (i/4, s), key = k): ten
// rounds of 32×32→64-bit multiplies and xors. There is no hidden state beyond (seed, stream, position),
// so the same seed gives bit-identical draws natively and in WebAssembly, a run can be resumed exactly by
// restoring its position, and independent streams (one per layer, per data loader, …) never overlap.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace eva {

class Rng {
public:
    using Block = std::array<std::uint32_t, 4>;

    /// The Philox4x32-10 bijection: 4 counter words and a 2-word key → 4 random words.
    static Block philox(Block counter, std::array<std::uint32_t, 2> key);

    explicit Rng(std::uint64_t seed, std::uint64_t stream = 0) : seed_(seed), stream_(stream) {}

    /// The next 32 random bits.
    std::uint32_t next_u32();
    /// Uniform in [0, 1): the top 24 bits of one draw, so every value is an exact float.
    float uniform();
    /// Standard normal by Box–Muller from two draws, evaluated in double and rounded once to float.
    float normal();
    /// out[i] = mean + std·normal() for i < n.
    void fill_normal(float* out, std::size_t n, float mean, float std);

    std::uint64_t seed() const { return seed_; }
    std::uint64_t stream() const { return stream_; }
    /// Number of 32-bit draws consumed so far; `seek` restores it exactly.
    std::uint64_t position() const { return position_; }
    void seek(std::uint64_t position) { position_ = position; }

private:
    std::uint64_t seed_, stream_, position_ = 0;
};

}  // namespace eva
