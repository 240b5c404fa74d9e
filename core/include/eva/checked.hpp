// eva — checked sizes: arithmetic on untrusted dimensions, and memory asked for before it is allocated.
//
// A config or a file header is untrusted: a product such as n_heads·(nope + rope) or
// n_routed_experts·moe_inter_dim·dim can wrap around in 64-bit (or, in WebAssembly, 32-bit) arithmetic
// and silently give a tiny tensor that later code indexes as a huge one. Every derived size goes through
// these helpers instead: a product or sum above kMaxCount raises ConfigError naming what was computed,
// and a size is narrowed to size_t only when this platform can address it.
//
// kMaxCount = 2^48 (2.8e14) is far above any real model (DeepSeek-V3: 6.7e11 parameters, 2.7e12 bytes)
// and far below 2^64, so a product of two checked values never wraps before it is compared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace eva {

/// Upper bound of every derived count (elements, parameters, bytes).
constexpr std::uint64_t kMaxCount = std::uint64_t(1) << 48;

/// a·b, or ConfigError "`what` overflows" if it exceeds kMaxCount.
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& what);
/// a + b, the same way.
std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const std::string& what);
/// The product of `n` factors, the same way (1 for n = 0).
std::uint64_t checked_product(const std::uint64_t* factors, std::size_t n, const std::string& what);
/// `v` as a size_t, or ConfigError if this platform cannot address that many (WebAssembly: 32 bits).
std::size_t to_size(std::uint64_t v, const std::string& what);

/// "63.2 GB" (decimal units, three significant digits), for messages about memory and files.
std::string format_bytes(std::uint64_t bytes);
/// "1.50 MiB" (binary units, two decimals; whole bytes below 1 KiB): how `eva mla memory` and the KV
/// panel print cache sizes, which are products of powers of two.
std::string format_bytes_binary(double bytes);

/// Memory this process can still allocate without swapping or being killed: MemAvailable from
/// /proc/meminfo on Linux (0 if unknown: then no check is made); in WebAssembly the 4 GiB address space.
std::uint64_t available_memory_bytes();

/// ConfigError "`what` needs 63.2 GB, 22.8 GB available" unless `bytes` fit in the available memory.
void require_memory(std::uint64_t bytes, const std::string& what);

}  // namespace eva
