// The KV-cache panel: how much memory attention's cache takes per scheme (MHA, GQA, MQA, MLA) for
// DeepSeek's configs and a Llama-3-8B-shaped GQA model, and the mini model decoding live with MLA's
// absorbed cache (the latent c_KV) and the naive per-head cache side by side.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/model.hpp"
#include "panel_mtp.hpp"

#include "panel.hpp"

namespace eva::web {

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
    // The run: the mini model through both caches in lockstep (eva/model.hpp), on the shown model.
    std::unique_ptr<CacheLockstep> run;
    const Model<float>* model = nullptr;  // the context's shown model it decodes (Pretrained::shown)
    unsigned runs = 0;                    // restarts; each run samples from Rng(runs)
    SpecDecode spec;              // the same prompt and temperature decoded speculatively (MTP drafts)
    unsigned long frame = 0;      // frames decoded: odd ones go to the speculative run while it has work
    Rect preset_v2_rect, restart_rect;  // controls the browser tests click
};

void kv_panel(KvPanel& state, Pretrained& pretrained);
/// Figures for window.eva.selfTest(): V3's and the Llama-shaped model's cache sizes (compared with
/// `eva mla memory --json`) and the naive-vs-absorbed logit difference of a seeded mini model.
nlohmann::json kv_self_test();
nlohmann::json kv_state(const KvPanel& state);
/// The controls from / to the query string: the memory comparison's model=mini|v2-lite|v2|v3|llama3-8b and
/// tokens=N, the decoding's temperature=0…1.5 and the speculative run's spec_seed and new_tokens=1…240.
void kv_from_query(KvPanel& state, const Query& q);
Query kv_to_query(const KvPanel& state);
std::string kv_summary(const KvPanel& state);

}  // namespace eva::web
