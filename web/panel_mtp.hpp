// Speculative decoding with the MTP head, shown live inside the KV-cache panel: the model's MTP module
// drafts the next token, one forward of the main model over [token, draft] through the absorbed MLA
// cache verifies it, and the page colours each token by who produced it (accepted draft, the main
// model's own token, a rejected draft struck through). It runs eva/mtp.hpp's SpeculativeRun, as
// `eva generate --speculative` does, so for the same settings both give the same text and counts.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "eva/model.hpp"
#include "eva/mtp.hpp"

namespace eva::web {

struct SpecDecode {
    // Settings, as `eva generate --speculative` takes them (the prompt and temperature are the KV panel's).
    int seed = 1;
    int max_new_tokens = 200;
    int top_k = 40;
    std::string key;                      // settings the run belongs to
    std::string error;                    // why there is no run (e.g. a model without MTP)
    std::string prompt;
    float temperature = 0;                // the run's (the KV panel's slider when it started)
    std::unique_ptr<SpeculativeRun> run;  // speculative and plain decoding side by side (eva/mtp.hpp)
};

/// One unit of work when `work` (a speculative round, or a plain token while plain decoding is behind)
/// and the coloured text with the running figures.
void speculative_section(SpecDecode& s, const Model<float>* m, const std::string& prompt, float temperature,
                         bool work);
/// Whether the run has work left (rounds to do, or plain decoding still behind).
bool spec_busy(const SpecDecode& s);
/// The run's figures as `eva generate --speculative --json` names them (text, drafted, accepted,
/// acceptance_rate, tokens_per_s, plain_tokens_per_s, speedup, identical_to_plain) and its settings.
nlohmann::json spec_state(const SpecDecode& s);

}  // namespace eva::web
