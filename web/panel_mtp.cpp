// The speculative-decoding view of the KV panel (see panel_mtp.hpp). The page only drives the core's
// SpeculativeGenerator and Generator the way `eva generate --speculative` does (native/cmd_model.cpp:
// same capacity, first token from start(), rounds until max_new_tokens, the same Rng stream per seed)
// and draws what they return.
#include "panel_mtp.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include <imgui.h>

#include "eva/data.hpp"
#include "eva/error.hpp"
#include "panel.hpp"

namespace eva::web {

namespace {

// The slider's float as the decimal the CLI would be given (0.8f is 0.800000011920929 as a double; the
// command line's --temperature 0.8 is 0.8), so both sample with the same temperature.
SamplingConfig sampling(const SpecDecode& s, float temperature) {
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", double(temperature));
    return {std::strtod(text, nullptr), s.top_k, 1.0};
}

void restart(SpecDecode& s, const Model<float>& m, const std::string& prompt, float temperature) {
    s.model = &m;
    s.error.clear();
    s.gen.reset();
    s.plain.reset();
    s.tokens.clear();
    s.plain_tokens.clear();
    s.drafted.clear();
    s.rejected.clear();
    s.spec_ms = s.plain_ms = 0;
    s.done = false;
    s.prompt = prompt;
    s.temperature = temperature;
    if (prompt.empty()) {
        s.error = "type a prompt";
        return;
    }
    const std::size_t max_len = std::size_t(m.args.max_seq_len);
    if (prompt.size() >= max_len) {
        s.error = "the prompt fills the context (max_seq_len " + std::to_string(max_len) + ")";
        return;
    }
    // As the CLI: the cache holds the prompt and the new tokens, within max_seq_len.
    s.capacity = std::min(max_len, prompt.size() + std::size_t(s.max_new_tokens));
    try {
        s.gen = std::make_unique<SpeculativeGenerator<float>>(m, s.capacity);
    } catch (const ConfigError& e) {
        s.error = std::string("no speculative decoding: ") + e.what();
        return;
    }
    const SamplingConfig cfg = sampling(s, temperature);
    s.rng = Rng(std::uint64_t(s.seed));
    s.plain_rng = Rng(std::uint64_t(s.seed));
    auto t0 = Clock::now();
    s.tokens.push_back(s.gen->start(encode_bytes(prompt), cfg, s.rng));
    s.drafted.push_back(0);
    s.spec_ms += ms_since(t0);
    t0 = Clock::now();
    s.plain = std::make_unique<Generator<float>>(m, AttentionCache::absorbed, s.capacity);
    s.plain_logits = s.plain->feed(encode_bytes(prompt));
    s.plain_ms += ms_since(t0);
}

// One unit of work: plain decoding's next token while it is behind the speculative run, else one
// draft-and-verify round. One unit per frame (and only on the frames the KV panel gives it) keeps the
// frame within budget; each side's time is measured around its own calls only.
void advance(SpecDecode& s, float temperature) {
    const SamplingConfig cfg = sampling(s, temperature);
    const std::size_t N = std::size_t(s.max_new_tokens);
    const auto t0 = Clock::now();
    if (s.plain_tokens.size() < s.tokens.size() && s.plain->length() < s.capacity) {
        s.plain_tokens.push_back(sample_token(s.plain_logits, cfg, s.plain_rng));
        s.plain_logits = s.plain->feed({s.plain_tokens.back()});
        s.plain_ms += ms_since(t0);
        return;
    }
    if (s.done) return;
    const std::vector<Token> t = s.tokens.size() < N ? s.gen->step(cfg, s.rng) : std::vector<Token>{};
    s.spec_ms += ms_since(t0);
    if (t.empty()) {
        s.done = true;
        return;
    }
    const std::size_t a = s.gen->last_accepted();
    const auto& drafts = s.gen->last_drafts();
    if (a < drafts.size()) s.rejected.emplace_back(s.tokens.size() + a, drafts[a]);
    for (std::size_t i = 0; i < t.size(); ++i) {
        s.tokens.push_back(t[i]);
        s.drafted.push_back(i < a ? 1 : 0);
    }
    if (s.tokens.size() >= N) {  // the CLI keeps the first max_new_tokens
        s.tokens.resize(N);
        s.drafted.resize(N);
        s.done = true;
    }
}

// The prompt (dim), accepted drafts (green), the main model's own tokens (white) and each rejected draft
// (red, struck through) just before the token the main model put in its place, wrapped to the width.
void coloured_text(const SpecDecode& s, float width, float height) {
    const ImU32 prompt_c = IM_COL32(150, 150, 160, 255), own_c = IM_COL32(235, 235, 235, 255),
                draft_c = IM_COL32(90, 220, 120, 255), rejected_c = IM_COL32(240, 90, 80, 255);
    ImGui::BeginChild("mtp_text", ImVec2(width, height), true);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float w = ImGui::GetContentRegionAvail().x, lh = ImGui::GetTextLineHeight();
    float x = 0, y = 0;
    auto put = [&](Token t, ImU32 c, bool strike) {
        if (t == '\n') {
            x = 0;
            y += lh;
            return;
        }
        const char ch[2] = {char(t >= 32 && t < 127 ? t : '.'), 0};
        const float cw = ImGui::CalcTextSize(ch).x;
        if (x + cw > w) {
            x = 0;
            y += lh;
        }
        dl->AddText(ImVec2(o.x + x, o.y + y), c, ch);
        if (strike) dl->AddLine(ImVec2(o.x + x, o.y + y + lh * 0.55f), ImVec2(o.x + x + cw, o.y + y + lh * 0.55f), c, 1.5f);
        x += cw;
    };
    for (unsigned char ch : s.prompt) put(Token(ch), prompt_c, false);
    std::size_t r = 0;
    for (std::size_t i = 0; i < s.tokens.size(); ++i) {
        for (; r < s.rejected.size() && s.rejected[r].first == i; ++r) put(s.rejected[r].second, rejected_c, true);
        put(s.tokens[i], s.drafted[i] ? draft_c : own_c, false);
    }
    ImGui::Dummy(ImVec2(w, y + lh));
    ImGui::EndChild();
}

}  // namespace

void speculative_section(SpecDecode& s, const Model<float>* m, const std::string& prompt, float temperature,
                         bool work) {
    ImGui::TextUnformatted("Speculative decoding with the MTP head:");
    beside("seed", 90);
    ImGui::InputInt("seed", &s.seed);
    beside("new tokens", 150);
    ImGui::SliderInt("new tokens", &s.max_new_tokens, 8, 240);
    s.max_new_tokens = std::clamp(s.max_new_tokens, 1, 240);
    same_line_for("Restart##mtp");
    const bool again = ImGui::Button("Restart##mtp");
    if (!m) return;
    char key[96];
    std::snprintf(key, sizeof key, "%p|%d|%d|%d|%.6g|", static_cast<const void*>(m), s.seed, s.max_new_tokens, s.top_k,
                  double(temperature));
    if (again || s.key != key + prompt) {
        s.key = key + prompt;
        restart(s, *m, prompt, temperature);
    }
    if (!s.error.empty()) {
        ImGui::TextDisabled("%s", s.error.c_str());
        return;
    }
    if (work) advance(s, temperature);
    const SpeculativeStats& st = s.gen->stats();
    const double tps = 1000.0 * double(s.tokens.size()) / s.spec_ms,
                 plain_tps = 1000.0 * double(s.plain_tokens.size()) / s.plain_ms;
    ImGui::TextColored(ImVec4(0.35f, 0.86f, 0.47f, 1), "accepted draft");
    ImGui::SameLine();
    ImGui::TextUnformatted("main model's token");
    ImGui::SameLine();
    ImGui::TextColored(ImVec4(0.94f, 0.35f, 0.31f, 1), "rejected draft");
    same_line_if_fits(300);
    ImGui::Text("| %zu rounds: %zu drafted, %zu accepted = %.1f%% | %.0f tokens/s vs %.0f plain (%.2fx)%s",
                st.rounds, st.drafted, st.accepted, 100 * st.acceptance_rate(), tps, plain_tps, tps / plain_tps,
                temperature == 0 && s.plain_tokens.size() == s.tokens.size()
                    ? (s.plain_tokens == s.tokens ? " | = plain greedy" : " | DIFFERS from plain greedy")
                    : "");
    coloured_text(s, ImGui::GetContentRegionAvail().x, 2.6f * ImGui::GetTextLineHeightWithSpacing());
    ImGui::TextDisabled("same as: eva generate --weights mini.safetensors --speculative --prompt \"...\" --temperature %.2f "
                        "--top-k %d --seed %d --max-new-tokens %d",
                        double(temperature), s.top_k, s.seed, s.max_new_tokens);
}

bool spec_busy(const SpecDecode& s) {
    return s.gen && s.error.empty() && (!s.done || s.plain_tokens.size() < s.tokens.size());
}

nlohmann::json spec_state(const SpecDecode& s) {
    nlohmann::json j = {{"seed", s.seed}, {"max_new_tokens", s.max_new_tokens}, {"top_k", s.top_k}, {"temperature", s.temperature},
                        {"prompt", s.prompt}, {"error", s.error},
                        {"done", s.done && s.plain_tokens.size() == s.tokens.size()}};
    if (!s.gen) return j;
    const SpeculativeStats& st = s.gen->stats();
    const double tps = 1000.0 * double(s.tokens.size()) / s.spec_ms,
                 plain_tps = 1000.0 * double(s.plain_tokens.size()) / s.plain_ms;
    j.update({{"text", decode_bytes(s.tokens)}, {"new_tokens", s.tokens.size()}, {"drafted", st.drafted},
              {"accepted", st.accepted}, {"acceptance_rate", st.acceptance_rate()}, {"verify_forwards", st.rounds},
              {"rejected", s.rejected.size()}, {"accepted_shown", std::count(s.drafted.begin(), s.drafted.end(), 1)},
              {"spec_ms", s.spec_ms}, {"plain_ms", s.plain_ms}, {"plain_tokens", s.plain_tokens.size()},
              {"tokens_per_s", tps}, {"plain_tokens_per_s", plain_tps}, {"speedup", tps / plain_tps},
              {"identical_to_plain", s.plain_tokens == s.tokens}});
    return j;
}

}  // namespace eva::web
