// eva — checked sizes. See checked.hpp.
#include "eva/checked.hpp"

#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

#include "eva/error.hpp"

namespace eva {

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& what) {
    // Division, not the product, decides: the product itself could already have wrapped.
    if (a != 0 && b > kMaxCount / a)
        throw ConfigError(what + " overflows: " + std::to_string(a) + " x " + std::to_string(b) +
                          " exceeds eva's limit of 2^48");
    return a * b;
}

std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const std::string& what) {
    if (a > kMaxCount || b > kMaxCount - a)
        throw ConfigError(what + " overflows: " + std::to_string(a) + " + " + std::to_string(b) +
                          " exceeds eva's limit of 2^48");
    return a + b;
}

std::uint64_t checked_product(const std::uint64_t* factors, std::size_t n, const std::string& what) {
    std::uint64_t p = 1;
    for (std::size_t i = 0; i < n; ++i) p = checked_mul(p, factors[i], what);
    return p;
}

std::size_t to_size(std::uint64_t v, const std::string& what) {
    if (v > std::numeric_limits<std::size_t>::max())
        throw ConfigError(what + " = " + std::to_string(v) + " is more than this platform can address");
    return std::size_t(v);
}

std::string format_bytes(std::uint64_t bytes) {
    const char* units[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    double v = double(bytes);
    int u = 0;
    while (v >= 1000 && u < 5) {
        v /= 1000;
        ++u;
    }
    char buf[32];
    if (u == 0) std::snprintf(buf, sizeof buf, "%llu bytes", (unsigned long long)bytes);
    else std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

std::string format_bytes_binary(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, ++u;
    char s[32];
    std::snprintf(s, sizeof s, u ? "%.2f %s" : "%.0f %s", b, units[u]);
    return s;
}

std::uint64_t available_memory_bytes() {
#ifdef __EMSCRIPTEN__
    return std::uint64_t(1) << 32;  // wasm32: the whole linear memory can grow to 4 GiB at most
#else
    std::ifstream in("/proc/meminfo");
    std::string line;
    while (std::getline(in, line)) {
        unsigned long long kb = 0;
        if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kb) == 1) return std::uint64_t(kb) * 1024;
    }
    return 0;
#endif
}

void require_memory(std::uint64_t bytes, const std::string& what) {
    const std::uint64_t avail = available_memory_bytes();
    if (avail != 0 && bytes > avail)
        throw ConfigError(what + " needs " + format_bytes(bytes) + ", " + format_bytes(avail) + " available");
    // Whatever the machine has, one buffer must also be addressable here (32-bit size_t in WebAssembly).
    to_size(bytes, what + " (bytes)");
}

}  // namespace eva
