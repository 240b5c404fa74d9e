// eva — rotary position embedding (RoPE, Su et al. 2021) exactly as DeepSeek-V3's inference code
// applies it, with YaRN context extension (Peng et al. 2023).
//
// A rotary vector of size d is read as d/2 INTERLEAVED ADJACENT pairs (x[2i], x[2i+1]) — a complex
// number x[2i] + i·x[2i+1] — and pair i at position p is rotated by the angle p·freq_i:
//   y[2i]   = x[2i]·cos θ − x[2i+1]·sin θ
//   y[2i+1] = x[2i]·sin θ + x[2i+1]·cos θ,        θ = p·freq_i,  freq_i = rope_theta^(−2i/d)
// (Hugging Face's "rotate half" layout pairs x[i] with x[i+d/2] instead: the two are not interchangeable.)
//
// YaRN, only when max_seq_len > original_seq_len: the dimensions whose wavelength is long compared with
// the original context are interpolated (freq/rope_factor), the short ones kept, with a linear ramp
// between the correction dimensions found from beta_fast and beta_slow rotations:
//   corr(n) = d·ln(original_seq_len / (2π n)) / (2 ln rope_theta)
//   low = max(floor(corr(beta_fast)), 0),  high = min(ceil(corr(beta_slow)), d−1)
//   smooth_i = 1 − clamp((i − low)/(high − low), 0, 1)
//   freq_i ← freq_i/rope_factor·(1 − smooth_i) + freq_i·smooth_i
// and the attention softmax scale is multiplied by mscale² with mscale = 0.1·mscale_arg·ln(rope_factor) + 1.
//
// A rotation is orthogonal, so the backward of y = R(θ)x is dx = R(−θ)dy: the same routine, inverted.
// Frequencies and angles are computed in double (the official code uses float32 for the table).
#pragma once
#include <cstddef>
#include <vector>

#include "eva/config.hpp"

namespace eva {

struct RopeTable {
    std::size_t dim = 0;          // qk_rope_head_dim
    std::vector<double> freqs;    // dim/2 angular frequencies, YaRN-corrected when active
    double attention_scale = 1;   // mscale² with YaRN, else 1: the factor on the softmax scale
    // cos θ and sin θ of every pair at the first positions (row p: p·dim/2 … (p+1)·dim/2 − 1), computed
    // once by make_rope so that a training step does not call cos and sin for every row of every layer
    // again; later positions compute them as they go, with the same double arithmetic (the same bits).
    std::vector<double> cos_table, sin_table;
};

/// Frequencies for `args` (qk_rope_head_dim, rope_theta, and YaRN fields when args.yarn()).
RopeTable make_rope(const ModelArgs& args);

/// Rotates, in place, `n_vec` rotary vectors of each of `rows` rows: vector v of row r starts at
/// x + r·ld + v·vec_stride. Row r is at position start_pos + r % seq_len (B sequences of seq_len rows).
/// inverse = true rotates by −θ: the backward pass.
template <class T>
void rope_apply(const RopeTable& rope, T* x, std::size_t rows, std::size_t ld, std::size_t n_vec,
                std::size_t vec_stride, std::size_t seq_len, std::size_t start_pos, bool inverse = false);

}  // namespace eva
