// The speculative-decoding view of the KV panel (see panel_mtp.hpp): it drives eva::SpeculativeRun, the
// run `eva generate --speculative` makes (native/cmd_model.cpp), a unit per frame, and draws what it returns.
#include "panel_mtp.hpp"

#include <algorithm>
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
    return {std::strtod(format("%.6g", double(temperature)).c_str(), nullptr), s.top_k, 1.0};
}

void restart(SpecDecode& s, const Model<float>& m, const std::string& prompt, float temperature) {
    s.run.reset();
    s.error.clear();
    s.prompt = prompt;
    s.temperature = temperature;
    try {
        s.run = std::make_unique<SpeculativeRun>(m, encode_bytes(prompt), std::size_t(s.max_new_tokens),
                                                 sampling(s, temperature), std::uint64_t(s.seed));
    } catch (const ConfigError& e) {
        s.error = e.what();
    }
}

// One unit of work per frame (and only on the frames the KV panel gives it), which keeps the frame in
// budget: plain decoding's next token while it is behind the speculative run, else one round.
void advance(SpeculativeRun& r) {
    if (r.plain_tokens.size() < r.tokens.size() && r.step_plain()) return;
    r.step_speculative();
}

// The prompt (dim), accepted drafts (green), the main model's own tokens (white) and each rejected draft
// (red, struck through) just before the token the main model put in its place, wrapped to the width.
void coloured_text(const SpecDecode& s, const SpeculativeRun& r, float width, float height) {
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
    std::size_t k = 0;
    for (std::size_t i = 0; i < r.tokens.size(); ++i) {
        for (; k < r.rejected.size() && r.rejected[k].first == i; ++k) put(r.rejected[k].second, rejected_c, true);
        put(r.tokens[i], r.drafted[i] ? draft_c : own_c, false);
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
    const std::string key = format("%p|%d|%d|%d|%.6g|", static_cast<const void*>(m), s.seed, s.max_new_tokens, s.top_k,
                                   double(temperature)) + prompt;
    if (again || s.key != key) {
        s.key = key;
        restart(s, *m, prompt, temperature);
    }
    if (!s.error.empty()) {
        ImGui::TextDisabled("%s", s.error.c_str());
        return;
    }
    SpeculativeRun& r = *s.run;
    if (work) advance(r);
    const SpeculativeStats& st = r.stats();
    const double tps = double(r.tokens.size()) / r.seconds, plain_tps = double(r.plain_tokens.size()) / r.plain_seconds;
    ImGui::TextColored(ImVec4(0.35f, 0.86f, 0.47f, 1), "accepted draft");
    ImGui::SameLine();
    ImGui::TextUnformatted("main model's token");
    ImGui::SameLine();
    ImGui::TextColored(ImVec4(0.94f, 0.35f, 0.31f, 1), "rejected draft");
    same_line_if_fits(300);
    ImGui::Text("| %zu rounds: %zu drafted, %zu accepted = %.1f%% | %.0f tokens/s vs %.0f plain (%.2fx)%s",
                st.rounds, st.drafted, st.accepted, 100 * st.acceptance_rate(), tps, plain_tps, tps / plain_tps,
                temperature == 0 && r.plain_tokens.size() == r.tokens.size()
                    ? (r.plain_tokens == r.tokens ? " | = plain greedy" : " | DIFFERS from plain greedy")
                    : "");
    coloured_text(s, r, ImGui::GetContentRegionAvail().x, 2.6f * ImGui::GetTextLineHeightWithSpacing());
    ImGui::TextDisabled("same as: eva generate --weights mini.safetensors --speculative --prompt \"...\" --temperature %.2f "
                        "--top-k %d --seed %d --max-new-tokens %d",
                        double(temperature), s.top_k, s.seed, s.max_new_tokens);
}

bool spec_busy(const SpecDecode& s) {
    return s.run && (!s.run->speculative_done() ||
                     (s.run->plain_tokens.size() < s.run->tokens.size() && !s.run->plain_done()));
}

nlohmann::json spec_state(const SpecDecode& s) {
    nlohmann::json j = s.run ? s.run->to_json() : nlohmann::json::object();  // the run's figures, as the CLI's
    j.update({{"seed", s.seed}, {"max_new_tokens", s.max_new_tokens}, {"top_k", s.top_k}, {"temperature", s.temperature},
              {"prompt", s.prompt}, {"error", s.error}, {"done", s.run && !spec_busy(s)}});
    return j;
}

}  // namespace eva::web
