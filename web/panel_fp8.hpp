// The FP8 error panel: what E4M3/E5M2 scaled quantization does to a tensor (a trained weight of the
// pretrained mini model, an activation of it on a sample text, or synthetic normal data with outliers),
// and the GEMM accumulation experiment of DeepSeek-V3 §3.3.2 (error vs K with and without promotion).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/fp8.hpp"
#include "eva/hf_checkpoint.hpp"

#include "panel.hpp"

namespace eva::web {

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
    int history_length = 4;                          // delayed scaling: steps in the amax history
    bool spike = true;                               // delayed scaling: a x4 outlier step
    int shown_step = Fp8DelayedRun::kSteps - 1;      // delayed scaling: the step whose tensor is shown

    // The chosen tensor (row-major) and what quantization made of it.
    std::string tensor_name, tensor_error;
    std::size_t rows = 0, cols = 0;
    std::vector<float> x;                            // the tensor (row-major)
    Fp8Matrix q;
    Fp8ErrorMetrics metrics;
    std::string key, tensor_key;                     // settings the current results belong to

    // Views of (x, q) from eva/fp8.hpp: the histogram of |x|/s and the error per cell (empty histogram: none
    // built yet).
    static constexpr int kBinsPerOctave = 4;
    Fp8ScaledHistogram hist;
    Fp8ErrorGrid grid;

    // The chosen trained weight as the checkpoint file stores it, when it is stored in FP8 (the V3
    // release's format): the codes and 128×128 scales themselves, not a re-quantization.
    StoredFp8View stored;
    int stored_block = 0;                            // the block whose first codes are listed (row-major index)

    std::optional<Fp8DelayedRun> delayed;            // the run of the current settings, a step per frame
    int built_step = -1;                             // the step whose views are built (-1: none)
    Fp8AccumulationSweep accum;                      // eva/fp8.hpp's error-vs-K experiment, a slice per frame
    double accum_ms = 0;                             // time of the last frame's slice of the experiment
    long accum_frames = 0;                           // frames that did a slice of the experiment
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
