// eva — RoPE with YaRN. See rope.hpp for the math.
#include "eva/rope.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace eva {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The rotary dimension at which a frequency completes `rotations` turns over `seq_len` positions.
double correction_dim(double rotations, double dim, double base, double seq_len) {
    return dim * std::log(seq_len / (rotations * 2 * kPi)) / (2 * std::log(base));
}

// YaRN's frequency interpolation and attention scale (see rope.hpp).
void apply_yarn(const ModelArgs& a, RopeTable& t) {
    const double d = double(t.dim);
    const double orig = double(a.original_seq_len);
    const double low = std::max(std::floor(correction_dim(double(a.beta_fast), d, a.rope_theta, orig)), 0.0);
    double high = std::min(std::ceil(correction_dim(double(a.beta_slow), d, a.rope_theta, orig)), d - 1);
    if (low == high) high += 0.001;  // as the official code: avoid a zero-width ramp
    for (std::size_t i = 0; i < t.freqs.size(); ++i) {
        const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
        const double smooth = 1 - ramp;
        t.freqs[i] = t.freqs[i] / a.rope_factor * (1 - smooth) + t.freqs[i] * smooth;
    }
    const double m = 0.1 * a.mscale * std::log(a.rope_factor) + 1.0;
    t.attention_scale = m * m;
}

}  // namespace

RopeTable make_rope(const ModelArgs& a) {
    RopeTable t;
    t.dim = std::size_t(a.qk_rope_head_dim);
    const double d = double(t.dim);
    for (std::size_t i = 0; i < t.dim / 2; ++i) t.freqs.push_back(std::pow(a.rope_theta, -2.0 * double(i) / d));
    if (a.yarn()) apply_yarn(a, t);
    // The angle table: every position of the context, up to 2^16 angles (1 MB for both tables), so that a
    // config's sizes cannot make it large.
    const std::size_t pairs = t.freqs.size();
    const std::size_t context = std::size_t(std::max<std::int64_t>(a.max_seq_len, 0));
    const std::size_t positions = pairs ? std::min(context, (std::size_t(1) << 16) / pairs) : 0;
    t.cos_table.resize(positions * pairs);
    t.sin_table.resize(positions * pairs);
    for (std::size_t p = 0; p < positions; ++p)
        for (std::size_t i = 0; i < pairs; ++i) {
            const double th = double(p) * t.freqs[i];
            t.cos_table[p * pairs + i] = std::cos(th);
            t.sin_table[p * pairs + i] = std::sin(th);
        }
    return t;
}

template <class T>
void rope_apply(const RopeTable& rope, T* x, std::size_t rows, std::size_t ld, std::size_t n_vec,
                std::size_t vec_stride, std::size_t seq_len, std::size_t start_pos, bool inverse) {
    const std::size_t pairs = rope.freqs.size();
    std::vector<T> cs(pairs), sn(pairs);
    const std::size_t tabled = pairs ? rope.cos_table.size() / pairs : 0;
    for (std::size_t r = 0; r < rows; ++r) {
        const std::size_t pos = start_pos + r % seq_len;
        for (std::size_t i = 0; i < pairs; ++i) {  // one cos/sin per pair, shared by every vector of the row
            const double th = double(pos) * rope.freqs[i];
            const double c = pos < tabled ? rope.cos_table[pos * pairs + i] : std::cos(th);
            const double s = pos < tabled ? rope.sin_table[pos * pairs + i] : std::sin(th);
            cs[i] = T(c);
            sn[i] = T(inverse ? -s : s);
        }
        for (std::size_t v = 0; v < n_vec; ++v) {
            T* p = x + r * ld + v * vec_stride;
            for (std::size_t i = 0; i < pairs; ++i) {
                const T a = p[2 * i], b = p[2 * i + 1];
                p[2 * i] = a * cs[i] - b * sn[i];
                p[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        }
    }
}

template void rope_apply<float>(const RopeTable&, float*, std::size_t, std::size_t, std::size_t, std::size_t,
                                std::size_t, std::size_t, bool);
template void rope_apply<double>(const RopeTable&, double*, std::size_t, std::size_t, std::size_t, std::size_t,
                                 std::size_t, std::size_t, bool);

}  // namespace eva
