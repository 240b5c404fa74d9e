// The FP8 error panel: what E4M3/E5M2 scaled quantization does to a tensor (a trained weight of the
// pretrained mini model, an activation of it on a sample text, or synthetic normal data with outliers),
// and the GEMM accumulation experiment of DeepSeek-V3 §3.3.2 (error vs K with and without promotion).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/fp8.hpp"

#include "panel.hpp"

namespace eva::web {

/// The accumulation experiment of eva/fp8.hpp (fp8_gemm_operands, fp8_gemm_errors — what `eva fp8
/// gemm-error` runs): C = A·Bᵀ with A [M, K], B [N, K] standard normal in E4M3 (one scale each), for
/// K = 128 … 8192, summed in a limited-precision accumulator either over all of K or promoted to fp32
/// every N_C = 128. It runs a bounded number of rows of C per frame; `errors_*[i]` is valid for i < done_k.
struct AccumExperiment {
    static constexpr int kCount = 7;           // K = 128·2^i, i < kCount (128 … 8192)
    static constexpr std::size_t M = 16, N = 16;
    static constexpr std::uint64_t kSeed = 2024;  // operands of K = 128·2^i: Rng(kSeed, stream i)
    int accum_bits = 14;                       // mantissa bits of the tensor-core accumulator
    int done_k = 0;                            // K values finished
    std::size_t next_row = 0;                  // next row of C of the current K
    Fp8GemmErrors sums[2];                     // the current K's error sums: (never, every 128)
    float k_values[kCount] = {} /* log2 K */, errors_never[kCount] = {}, errors_promoted[kCount] = {};
    Fp8GemmOperands ops;                       // the current K's operands (empty between values of K)

    void restart();
    bool finished() const { return done_k == kCount; }
    /// Work until about `budget` products (per accumulator variant) are done or the experiment ends.
    void step(std::size_t budget);
};

/// Delayed scaling over a run of steps: step t quantizes the chosen tensor times a gain g_t (slowly
/// growing, with an optional ×4 spike) using the scale from the amax history of the previous steps.
struct DelayedRun {
    static constexpr int kSteps = 24, kSpikeStep = 16;
    int history_length = 4;
    bool spike = true;
    int done = 0;                                 // steps computed (one per frame)
    std::unique_ptr<AmaxHistory> history;         // the amaxes of the last history_length steps
    int built_step = -1;                          // the step whose views are built (-1: none)
    float amax[kSteps] = {}, used_amax[kSteps] = {}, snr_db[kSteps] = {}, saturated[kSteps] = {};
    static float gain(int step, bool spike);
};

struct Fp8Panel {
    enum Source { Weight, Activation, Synthetic };
    enum Granularity { Tensor, Tile, Block, Delayed };
    enum Point { ResidualX, AttnNormX, FfnNormH };

    // Controls.
    int source = Weight;
    std::string weight = "layers.0.ffn.w1.weight";  // a name from named_tensors
    int layer = 1, point = ResidualX;                 // activation: layer index and where in the block
    std::string text = "The model reads this sentence one byte at a time; its hidden states carry outliers in a "
                       "few channels, and FP8 has to represent them.";
    float outlier_fraction = 0.001f, outlier_magnitude = 1000.0f;  // synthetic: share of elements, times sigma
    int format = 0;                                  // 0 E4M3, 1 E5M2
    int granularity = Tile;
    bool pow2 = false;
    bool relative_heatmap = true;
    int shown_step = DelayedRun::kSteps - 1;         // delayed scaling: the step whose tensor is shown

    // The chosen tensor (row-major) and what quantization made of it.
    std::string tensor_name, tensor_error;
    std::size_t rows = 0, cols = 0;
    std::vector<float> x, xq;                        // original and dequantized (the shown step's, if delayed)
    Fp8Matrix q;
    Fp8ErrorMetrics metrics;
    bool dirty = true, tensor_dirty = true;
    std::string key, tensor_key;                     // settings the current results belong to

    // Views computed from (x, xq, q): histogram of |x|/s and the downsampled error grid.
    static constexpr int kBinsPerOctave = 4;
    float hist_lo = 0;                               // log2 of the first bin's left edge
    std::vector<float> hist;                         // counts per bin
    std::size_t hist_zero = 0;                       // x = 0 exactly (no magnitude to place)
    int cell_rows = 1, cell_cols = 1, grid_rows = 0, grid_cols = 0;
    std::vector<float> grid;                         // log10 of the mean error per cell
    std::vector<unsigned char> grid_mark;            // cell holds a saturated or flushed element
    float grid_lo = 0, grid_hi = 0;

    // The chosen trained weight as the checkpoint file stores it, when it is stored in FP8 (the V3
    // release's format): the codes and 128×128 scales themselves, not a re-quantization.
    struct Stored {
        std::string name;                  // weight the view belongs to ("": none built)
        Fp8Matrix q;                       // stored_fp8_weight: codes and weight_scale_inv as in the file
        std::vector<std::size_t> counts;   // fp8_code_counts of the codes (256)
        Fp8ErrorMetrics check;             // dequantize(q) against the loaded weight: exact, or a bug
        int block = 0;                     // the block whose first codes are listed (row-major index)
    } stored;

    DelayedRun delayed;
    AccumExperiment accum;
    double accum_ms = 0;                             // time of the last frame's slice of the experiment
    long accum_frames = 0;                           // frames that did a slice of the experiment
    double panel_ms = 0;                             // rolling mean of the time spent in fp8_panel per frame
    Rect e5m2_rect, block_rect, delayed_rect;        // radio buttons the browser tests click
};

/// Draws the panel; the tensors come from the context's shown model (pretrained, or the untrained
/// fallback, which the panel then names), and it waits while the checkpoint is loading.
void fp8_panel(Fp8Panel& p, Pretrained& ck);
nlohmann::json fp8_state(const Fp8Panel& p);
/// The quantization controls from / to the query string: source=weight|activation|synthetic,
/// format=e4m3|e5m2, granularity=tensor|tile|block|delayed, pow2=0|1, accum_bits=8..23.
void fp8_from_query(Fp8Panel& p, const Query& q);
Query fp8_to_query(const Fp8Panel& p);
std::string fp8_summary(const Fp8Panel& p);
/// Figures for window.eva.selfTest(): the 256-code round trips, the decode tables, and seeded FP8 GEMM
/// errors that `eva fp8 gemm-error` reproduces natively.
nlohmann::json fp8_self_test();

}  // namespace eva::web
