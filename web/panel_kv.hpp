// The KV-cache panel: how much memory attention's cache takes per scheme (MHA, GQA, MQA, MLA) for
// DeepSeek's configs and a Llama-3-8B-shaped GQA model, and the mini model decoding live with MLA's
// absorbed cache (the latent c_KV) and the naive per-head cache side by side.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/model.hpp"
#include "eva/rng.hpp"
#include "panel_mtp.hpp"

#include "panel.hpp"

namespace eva::web {

/// Live decoding of the mini model with both caches in lockstep: each token goes through the absorbed
/// generator and the naive one, and their logits are compared.
struct KvDecode {
    const Model<float>* model = nullptr;       // the context's shown model (Pretrained::shown)
    bool fresh = false;                        // it is the untrained fallback (no checkpoint beside the page)
    std::unique_ptr<Generator<float>> absorbed, naive;
    std::vector<Token> tokens;                 // prompt, then sampled tokens
    std::size_t prompt_len = 0;
    std::size_t fed_absorbed = 0, fed_naive = 0;  // tokens each generator has consumed
    std::vector<float> logits_absorbed, logits_naive;  // of the last token both consumed
    double max_diff = 0, last_diff = 0;        // max |logit_naive − logit_absorbed|: over the run, last token
    double ms_absorbed = 0, ms_naive = 0;      // mean time per token of each cache's feed
    double last_ms_absorbed = 0, last_ms_naive = 0;
    Rng rng{1};
    unsigned runs = 0;                         // restarts, seeds each run's sampling
};

struct KvPanel {
    // Memory comparison.
    int preset = 3;               // index into the panel's presets (mini, V2-Lite, V2, V3, Llama-3-8B-shaped)
    int seq_len = 32768;          // tokens in the sequence (log slider, 1 … 128K)
    // Live decoding.
    char prompt[256] = "Love is";
    int sample = 0;               // index of the sample prompt last chosen
    float temperature = 0.8f;     // 0: greedy
    int layer = 0;                // layer whose cache and attention are shown
    bool paused = false;
    bool restart = true;          // (re)start decoding on the next frame
    KvDecode run;
    SpecDecode spec;              // the same prompt and temperature decoded speculatively (MTP drafts)
    unsigned long frame = 0;      // frames decoded: odd ones go to the speculative run while it has work
    // Screen rectangles of two controls, for the browser test to click (x0, y0, x1, y1).
    Rect preset_v2_rect, restart_rect;  // controls the browser tests click
};

void kv_panel(KvPanel& state, Pretrained& pretrained);
/// Figures for window.eva.selfTest(): V3's and the Llama-shaped model's cache sizes (compared with
/// `eva mla memory --json`) and the naive-vs-absorbed logit difference of a seeded mini model.
nlohmann::json kv_self_test();
nlohmann::json kv_state(const KvPanel& state);
/// The memory comparison's controls from / to the query string: model=mini|v2-lite|v2|v3|llama3-8b, tokens=N.
void kv_from_query(KvPanel& state, const Query& q);
Query kv_to_query(const KvPanel& state);
std::string kv_summary(const KvPanel& state);

}  // namespace eva::web
