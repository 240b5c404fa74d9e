// eva — sums of many terms, kept in 8 partial sums (private header).
//
// A loop `s += term(i)` is one chain of dependent additions: each waits for the previous one's latency
// (3–4 cycles), so a 256-term sum (an RMSNorm row of eva-mini, a softmax row of its vocabulary) takes
// ~1000 cycles where the adders could retire several terms a cycle. Term i goes instead into partial
// sum i mod 8: eight independent chains, which the compiler keeps in SIMD registers, added at the end
// in a fixed tree. The order of the additions is written here, not chosen by the machine, so every
// build (SSE2, AVX-512, WebAssembly) adds the same terms in the same order.
#pragma once

#include <cstddef>

namespace eva::detail {

/// Σ_{i<n} term(i) as ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), s_j = Σ_{i ≡ j mod 8} term(i)
/// in increasing i.
template <class T, class Term>
T sum8(std::size_t n, Term&& term) {
    T s[8] = {};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (std::size_t j = 0; j < 8; ++j) s[j] += term(i + j);
    for (std::size_t j = 0; i + j < n; ++j) s[j] += term(i + j);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace eva::detail
