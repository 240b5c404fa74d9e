// The shared panel pieces of web/panel.hpp.
#include "panel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <imgui.h>

#include "eva/data.hpp"
#include "train_worker.hpp"

namespace eva::web {

Model<float>* Pretrained::shown() {
    if (state == State::ready) return model.get();
    if (state == State::loading) return nullptr;
    if (!fallback_)  // the same construction `eva init` and `eva train` use (train_protocol::fresh_model)
        fallback_ = std::make_unique<Model<float>>(train_protocol::fresh_model(preset("mini"), 1));
    return fallback_.get();
}

const char* Pretrained::shown_name() const {
    return fresh() ? "untrained mini model (no checkpoint beside the page)" : "pretrained mini model";
}

const ModelActivations<float>* Pretrained::activations(const std::string& text) {
    const Model<float>* m = shown();
    if (!m) return nullptr;
    if (m != acts_model_ || text != acts_text_) {
        std::vector<Token> tokens = encode_bytes(text);
        tokens.resize(std::min<std::size_t>(tokens.size(), std::min<std::size_t>(128, std::size_t(m->args.max_seq_len))));
        acts_model_ = nullptr;
        if (tokens.empty()) return nullptr;
        model_forward(*m, tokens, 1, tokens.size(), &acts_);
        acts_model_ = m;
        acts_text_ = text;
    }
    return &acts_;
}

int query_int(const Query& q, const char* key, int fallback, int lo, int hi) {
    const auto it = q.find(key);
    if (it == q.end()) return fallback;
    char* end = nullptr;
    const long v = std::strtol(it->second.c_str(), &end, 10);
    return end && *end == 0 && !it->second.empty() && v >= lo && v <= hi ? int(v) : fallback;
}

float query_float(const Query& q, const char* key, float fallback, float lo, float hi) {
    const auto it = q.find(key);
    if (it == q.end()) return fallback;
    char* end = nullptr;
    const float v = std::strtof(it->second.c_str(), &end);
    return end && *end == 0 && !it->second.empty() && std::isfinite(v) && v >= lo && v <= hi ? v : fallback;
}

void Rect::record() {
    const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
    r[0] = a.x, r[1] = a.y, r[2] = b.x, r[3] = b.y;
}

void explain(const char* text) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
    ImGui::TextWrapped("%s", text);
    ImGui::PopStyleColor();
    ImGui::Separator();
}

void same_line_if_fits(float width) {
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    if (ImGui::GetItemRectMax().x + ImGui::GetStyle().ItemSpacing.x + width <= right) ImGui::SameLine();
}

}  // namespace eva::web
