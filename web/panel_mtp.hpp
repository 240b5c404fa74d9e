// Speculative decoding with the MTP head, shown live inside the KV-cache panel: the model's MTP module
// drafts the next token, one forward of the main model over [token, draft] through the absorbed MLA
// cache verifies it, and the page colours each token by who produced it (accepted draft, the main
// model's own token, a rejected draft struck through). It runs eva/mtp.hpp's SpeculativeGenerator — the
// one `eva generate --speculative` runs — with the CLI's seed, sampling and stopping rule, so for the
// same settings the page and the CLI give the same text and the same acceptance counts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eva/model.hpp"
#include "eva/mtp.hpp"
#include "eva/rng.hpp"

namespace eva::web {

struct SpecDecode {
    // Settings, as `eva generate --speculative` takes them (the prompt and temperature are the KV panel's).
    int seed = 1;
    int max_new_tokens = 200;
    int top_k = 40;
    // The run: the speculative generator and, beside it, plain decoding of the same settings (timed the
    // same way) for the speed ratio.
    const Model<float>* model = nullptr;
    std::string key;                                   // settings the run belongs to
    std::string error;                                 // why there is no run (a model without MTP)
    std::unique_ptr<SpeculativeGenerator<float>> gen;
    std::unique_ptr<Generator<float>> plain;
    Rng rng{1}, plain_rng{1};
    std::string prompt;
    float temperature = 0;                             // the run's (the KV panel's slider when it started)
    std::vector<Token> tokens, plain_tokens;           // generated after the prompt
    std::vector<unsigned char> drafted;                // per token: 1 an accepted draft, 0 the main model's
    std::vector<std::pair<std::size_t, Token>> rejected;  // (position, draft) rejected before that token
    std::vector<float> plain_logits;
    std::size_t capacity = 0;
    double spec_ms = 0, plain_ms = 0;                  // wall time of each, prompt included (as the CLI)
    bool done = false;
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
