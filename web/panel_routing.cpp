// The routing panel: DeepSeekMoE's gate (eva/moe.hpp) on the hidden states of the mini model.
//
// A text's bytes run through the model's blocks (eva::StagedForward, one block a frame so no frame
// stalls) to a chosen MoE layer; that layer's input ffn_norm(h) goes through the trained gate: s = score_func(h·gateᵀ), groups limited, top-k on s + b.
// The learner may change the routing settings (score function, groups, top-k, balancing): the same hidden
// states are then re-routed with the trained gate weights under the changed MoeConfig — a "what if", the
// model was not trained that way, and the panel says so.
//
// "Run balancing" repeats eva::balancing_step (the step `eva moe route --steps` runs natively) over
// batches and plots MaxVio per step. Batches come from one of two sources, the learner's choice:
//   text       random 64-byte windows of corpus.txt (the fortunes the model learned from, fetched by
//              the page at start), through the model to the chosen layer: the trained gate on real
//              hidden states, its selection bias started at 0 (aux-free must find it again) or, for the
//              sequence-wise loss, SGD on a copy of the gate.
//              A forward of a window is the costly part, so the windows are computed a block a frame
//              into a pool of kPoolWindows (eva::WindowPool), and each step routes kBatchWindows of them
//              drawn at random.
//   synthetic  `eva moe route`'s skewed router (eva::skewed_gate / skewed_hidden_states): the first
//              top-k experts start favoured by every token, a strong imbalance to undo (kSyntheticTokens
//              fresh tokens a step).
// The gate weights and bias the panel shows above are copies: the run never changes the loaded model.
#include "panel_routing.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include <imgui.h>

#include "app.hpp"
#include "draw.hpp"
#include "eva/config.hpp"
#include "eva/data.hpp"
#include "eva/error.hpp"

namespace eva::web {
namespace {

constexpr std::size_t kWindow = 64;      // bytes per text window in the balancing run
constexpr std::size_t kPoolWindows = 24;  // windows forwarded once, then reused across steps
constexpr std::size_t kBatchWindows = 8;  // windows per balancing step: 512 tokens
// Balancing work per frame: another unit (a balancing step, or one block of a window's forward — each
// a few ms at most in wasm) starts only while the frame's work is below this; the frame budget is 16 ms.
constexpr double kStepBudgetMs = 2.0;
constexpr double kSeqLossLr = 1000.0;     // SGD rate on the gate for the seq-loss, as `eva moe route --lr`
constexpr std::uint64_t kSyntheticSeed = 1;  // as `eva moe route --seed`
// Synthetic steps draw fresh N(0,1) hidden states each step (Box-Muller, ~33k normals for 128 tokens of
// dim 256); 512 tokens took ~10 ms of a frame in wasm, 128 keep a step to a few ms.
constexpr std::size_t kSyntheticTokens = 128;

const char* const kSamples[] = {
    "The quick brown fox jumps over the lazy dog.",
    "To be, or not to be, that is the question.",
    "int main() { return 0; } // a line of C",
};

std::size_t n_moe_layers(const Model<float>& m) {
    return m.w.layers.size() - std::size_t(m.args.n_dense_layers);
}
const Block<float>& moe_block(const Model<float>& m, int layer) {
    return m.w.layers[std::size_t(m.args.n_dense_layers) + std::size_t(layer)];
}

// The selection bias the routing uses under cfg: aux-free has one (the trained one, or the run's),
// the other modes route without.
const float* selection_bias(const MoeConfig& cfg, const std::vector<float>& bias) {
    return cfg.balance == Balance::aux_free && !bias.empty() ? bias.data() : nullptr;
}

// Which routing settings differ from the model's trained ones, in words ("" if none).
std::string config_changes(const MoeConfig& now, const MoeConfig& trained) {
    std::string s;
    auto add = [&s](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
    if (now.score_func != trained.score_func) add(to_string(now.score_func) + " scores");
    if (now.n_expert_groups != trained.n_expert_groups || now.n_limited_groups != trained.n_limited_groups)
        add(std::to_string(now.n_expert_groups) + " groups keep " + std::to_string(now.n_limited_groups));
    if (now.n_activated_experts != trained.n_activated_experts) add("top-" + std::to_string(now.n_activated_experts));
    if (now.balance != trained.balance) add("balance " + to_string(now.balance));
    return s;
}

// A token's byte as a short printable label for the heatmap's rows.
std::string byte_label(Token t) {
    if (t == ' ') return "\xC2\xB7";  // middle dot: spaces stay visible
    if (t >= 33 && t < 127) return std::string(1, char(t));
    return format("%02x", unsigned(t));
}

// ------------------------------------------------------------------------------------ the controls

// The page's query string over the trained settings (once, when they are first known).
void apply_query(RoutingPanel& s, const Model<float>& m) {
    const Query& q = s.query;
    s.sample = query_int(q, "text_sample", s.sample, 0, int(IM_ARRAYSIZE(kSamples)) - 1);
    std::snprintf(s.text, sizeof s.text, "%s", kSamples[s.sample]);
    s.layer = query_int(q, "moe_layer", s.layer, 0, int(n_moe_layers(m)) - 1);
    MoeConfig c = s.cfg;
    static const char* const kScores[] = {"softmax", "sigmoid"};             // ScoreFunc's order
    static const char* const kBalances[] = {"none", "aux-free", "seq-loss"};  // Balance's order (the panel's choices)
    c.score_func = ScoreFunc(query_choice(q, "score", kScores, int(c.score_func)));
    c.n_expert_groups = std::size_t(query_int(q, "groups", int(c.n_expert_groups), 1, int(c.n_routed_experts)));
    c.n_limited_groups = std::size_t(query_int(q, "kept", int(c.n_limited_groups), 1, int(c.n_expert_groups)));
    c.n_activated_experts = std::size_t(query_int(q, "topk", int(c.n_activated_experts), 1, 8));
    c.balance = Balance(query_choice(q, "balance", kBalances, int(c.balance)));
    c.gamma = query_float(q, "route_gamma", float(c.gamma), 1e-4f, 0.05f);
    try {  // the one layout rule of the model and the layer (eva/config.hpp)
        validate_expert_groups(std::int64_t(c.n_routed_experts), std::int64_t(c.n_activated_experts),
                               std::int64_t(c.n_expert_groups), std::int64_t(c.n_limited_groups));
        s.cfg = c;
    } catch (const ConfigError&) {  // keep the trained layout; the other settings still apply
        s.cfg.score_func = c.score_func, s.cfg.balance = c.balance, s.cfg.gamma = c.gamma;
    }
}

void draw_controls(RoutingPanel& s, const Model<float>& m) {
    float sample_w = 0;  // the combo shows its longest sample whole
    for (const char* t : kSamples) sample_w = std::max(sample_w, ImGui::CalcTextSize(t).x);
    ImGui::PushItemWidth(sample_w + ImGui::GetFrameHeight() + 2 * ImGui::GetStyle().FramePadding.x);
    if (ImGui::Combo("sample", &s.sample, kSamples, int(IM_ARRAYSIZE(kSamples))))
        std::snprintf(s.text, sizeof s.text, "%s", kSamples[s.sample]);
    beside("text (bytes = tokens)", 420);
    ImGui::InputText("text (bytes = tokens)", s.text, sizeof s.text);
    const int n_layers = int(n_moe_layers(m));
    const std::string layer_fmt = format("model layer %d", int(m.args.n_dense_layers) + s.layer);
    ImGui::SliderInt("MoE layer", &s.layer, 0, n_layers - 1, layer_fmt.c_str());

    // Routing settings: each kept valid by construction (the sliders' ranges follow each other).
    MoeConfig& c = s.cfg;
    const int E = int(c.n_routed_experts);
    int score = int(c.score_func);  // the buttons in ScoreFunc's order
    radio_row("scores:", score, {"softmax", "sigmoid"}, {&s.softmax_rect});
    c.score_func = ScoreFunc(score);
    static const int kGroupChoices[] = {1, 2, 4, 8};  // divisors of 16 with >= 2 experts a group
    int groups = int(c.n_expert_groups), gi = 0;
    for (int i = 0; i < 4; ++i)
        if (kGroupChoices[i] == groups) gi = i;
    beside("groups", 90);
    if (ImGui::Combo("groups", &gi, "1\0" "2\0" "4\0" "8\0")) {
        c.n_expert_groups = std::size_t(kGroupChoices[gi]);
        c.n_limited_groups = std::min(c.n_limited_groups, c.n_expert_groups);
    }
    beside("kept groups", 90);
    int kept = int(c.n_limited_groups);
    ImGui::SliderInt("kept groups", &kept, 1, int(c.n_expert_groups));
    c.n_limited_groups = std::size_t(std::clamp(kept, 1, int(c.n_expert_groups)));
    beside("top-k", 90);
    const int reachable = int(c.n_limited_groups) * (E / int(c.n_expert_groups));
    int k = std::min(int(c.n_activated_experts), reachable);
    ImGui::SliderInt("top-k", &k, 1, std::min(8, reachable));
    c.n_activated_experts = std::size_t(std::clamp(k, 1, reachable));

    int balance = c.balance == Balance::aux_loss ? 0 : int(c.balance);  // Balance's first three, in its order
    radio_row("balancing:", balance, {"none", "aux-free bias", "sequence-wise loss"});
    c.balance = Balance(balance);
    if (c.balance != Balance::none) same_line_for("bias speed gamma", 140);
    float gamma = float(c.gamma), alpha = float(c.alpha);
    ImGui::PushItemWidth(140);
    if (c.balance == Balance::aux_free && ImGui::SliderFloat("bias speed gamma", &gamma, 1e-4f, 0.05f, "%.4f",
                                                            ImGuiSliderFlags_Logarithmic))
        c.gamma = gamma;
    if (c.balance == Balance::seq_loss &&
        ImGui::SliderFloat("loss weight alpha", &alpha, 1e-5f, 1e-1f, "%.5f", ImGuiSliderFlags_Logarithmic))
        c.alpha = alpha;
    ImGui::PopItemWidth();
    same_line_for("trained settings");
    if (ImGui::Button("trained settings")) {
        const double g = c.gamma, a = c.alpha;
        c = m.moe;
        c.gamma = g, c.alpha = a;
    }
    ImGui::PopItemWidth();
}

// ------------------------------------------------------------------------------ routing the text

// Restarts the text's forward when the text (or the model) changed, then runs one block of it.
void update_hidden(RoutingPanel& s, const Model<float>& m) {
    const std::string text(s.text);
    if (text != s.hidden_text || s.hidden_model != &m) {
        s.hidden_text = text, s.hidden_model = &m;
        s.forward.start(m, encode_bytes(text));
        s.forward_ms = 0;
    }
    const auto t0 = Clock::now();
    s.forward.advance(m);
    s.forward_ms += ms_since(t0);
    s.n_tokens = s.forward.done(m) ? text.size() : 0;
}

// The gate and bias that route the text: the balancing run's when one exists on text of this layer
// (so the learner sees what the run did), else the trained ones.
void route_text(RoutingPanel& s, const Model<float>& m) {
    s.error.clear();
    if (s.n_tokens == 0) return;
    const Moe<float>& moe = moe_block(m, s.layer).moe;
    const bool use_run = s.run.active() && s.run.source == RunSection::Source::text && s.run.layer == s.layer;
    const Matrix<float>& gate = use_run ? s.run.router->gate : moe.gate;
    std::vector<float> bias = use_run ? s.run.router->bias : moe.bias;
    if (bias.empty()) bias.assign(s.cfg.n_routed_experts, 0.0f);  // a model trained without a bias
    try {
        s.cfg.validate();
        const float* x = s.forward.moe_input(m, std::size_t(s.layer));
        gate_forward(s.cfg, gate, selection_bias(s.cfg, bias), x, s.n_tokens, s.routing);
        s.stats = routing_stats(s.cfg, s.routing, s.cfg.balance == Balance::aux_free ? bias : std::vector<float>{});
        s.text_balance_loss = double(balance_loss<float>(s.cfg, s.routing, s.n_tokens, nullptr));
    } catch (const Error& e) {
        s.error = e.what();
    }
}

void draw_routing(const RoutingPanel& s, const Model<float>& m) {
    if (!s.error.empty()) {
        ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", s.error.c_str());
        return;
    }
    if (s.n_tokens == 0) {
        if (s.forward.tokens.empty()) ImGui::Text("Type some text to route.");
        else ImGui::Text("computing the hidden states: block %zu of %zu", s.forward.next, m.w.layers.size());
        return;
    }
    const int n = int(s.n_tokens), E = int(s.routing.n_experts), k = int(s.routing.top_k);
    std::vector<unsigned char> mark(std::size_t(n * E), 0);
    for (int t = 0; t < n; ++t)
        for (int j = 0; j < k; ++j) mark[std::size_t(t * E + s.routing.indices[std::size_t(t * k + j)])] = 1;
    // Colour over the scores' own range: sigmoid scores of an untrained gate all sit near 0.5.
    const auto [lo_it, hi_it] = std::minmax_element(s.routing.scores.begin(), s.routing.scores.end());
    const float lo = *lo_it, top = *hi_it;

    // Left: tokens × experts heatmap with the byte of each row beside it.
    // The heatmap takes the height left after the run section (~250 px), so a 560 px iframe still shows it.
    const float room = std::clamp(ImGui::GetContentRegionAvail().y - 250.0f, 120.0f, 400.0f);
    const float label_w = 22, cell_h = std::clamp(room / float(n), 2.0f, 14.0f);
    begin_block(label_w + float(E) * 22.0f);
    ImGui::Text("gate scores s (tokens x experts), boxes = chosen top-%d", k);
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    ImGui::SetCursorScreenPos(ImVec2(origin.x + label_w, origin.y));
    draw::heatmap("scores", s.routing.scores.data(), n, E, lo, top, ImVec2(float(E) * 22.0f, cell_h * float(n)),
                  false, mark.data());
    if (cell_h >= 9.0f) {  // each row's byte, in a font no taller than the row (smaller is unreadable)
        ImDrawList* dl = ImGui::GetWindowDrawList();
        const float size = std::min(cell_h, ImGui::GetFontSize());
        for (int t = 0; t < n; ++t)
            dl->AddText(ImGui::GetFont(), size, ImVec2(origin.x, origin.y + cell_h * float(t)), IM_COL32(200, 200, 210, 255),
                        byte_label(Token(static_cast<unsigned char>(s.hidden_text[std::size_t(t)]))).c_str());
    }
    ImGui::Text("expert 0 .. %d left to right; colour %.3g .. %.3g", E - 1, double(lo), double(top));
    end_block();
    ImGui::SameLine(0, 30);

    // Right: load, bias, figures.
    const float right_w = std::clamp(ImGui::GetContentRegionAvail().x, 200.0f, 360.0f);
    ImGui::BeginGroup();
    std::vector<float> load(s.stats.tokens_per_expert.begin(), s.stats.tokens_per_expert.end());
    static const char* const kExpert[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"};
    ImGui::Text("tokens per expert (mean %.2f)", double(n * k) / double(E));
    draw::bars("load", load.data(), E, *std::max_element(load.begin(), load.end()), ImVec2(right_w, 110),
               E == 16 ? kExpert : nullptr);
    ImGui::Text("MaxVio %.3f   CV %.3f   load entropy %.3f (1 = even)", s.stats.max_vio, s.stats.cv, s.stats.entropy);
    if (s.cfg.balance == Balance::aux_free) {
        std::vector<float> b(s.stats.bias.begin(), s.stats.bias.end());
        const float mx = draw::max_abs(b);
        ImGui::Text("selection bias b (blue < 0 < red, |b| up to %.4f)", double(mx));
        draw::heatmap("bias", b.data(), 1, E, -mx, mx, ImVec2(right_w, 20), true);
        ImGui::TextWrapped("b only chooses experts (top-k of s + b); the weights use s.");
    } else if (s.cfg.balance == Balance::seq_loss) {
        ImGui::Text("sequence-wise loss alpha.sum f_i P_i = %.4g", s.text_balance_loss);
        ImGui::TextWrapped("No selection bias: this mode balances by a gradient on the gate during training.");
    } else {
        ImGui::TextWrapped("No selection bias, no balance loss: top-k of the raw scores.");
    }
    ImGui::Text("shared-expert weight fraction %.3f", s.stats.shared_fraction);
    const std::string changes = config_changes(s.cfg, m.moe);
    if (!changes.empty())
        ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "Re-routed with %s:\nthe trained gate weights under settings\nthe model was not trained with.",
                           changes.c_str());
    ImGui::TextDisabled("the text's forward: %.1f ms over %zu frames", s.forward_ms, m.w.layers.size());
    ImGui::EndGroup();
}

// --------------------------------------------------------------------------------- balancing run

void start_run(RoutingPanel& s, const Model<float>& m) {
    RunSection& r = s.run;
    r.max_vio.clear();
    r.layer = s.layer;
    Rng rng(kSyntheticSeed);  // the synthetic router of `eva moe route --seed 1` (skew 1)
    // Text: a copy of the gate (SGD for the seq-loss moves it, the model keeps its own), and aux-free starts
    // from b = 0 so the learner watches the bias find balance.
    const bool text = r.source == RunSection::Source::text;
    r.router.emplace(s.cfg, text ? moe_block(m, s.layer).moe.gate : skewed_gate(s.cfg, 1.0, rng));
    r.running = true;
}

// One unit of the run's work: while the text pool lacks windows, one block of a window's forward; then
// one balancing step on the next batch.
void run_unit(RunSection& r, const Model<float>& m, const std::string& corpus) {
    std::size_t n = kBatchWindows * kWindow;
    std::vector<float> x;
    if (r.source == RunSection::Source::text) {
        if (!r.pool) r.pool.emplace(encode_bytes(corpus), kWindow, kPoolWindows);
        if (!r.pool->full()) {  // one block of the forward of a window of the corpus
            r.pool->advance(m);
            return;
        }
        x = r.pool->batch(m, std::size_t(r.layer), kBatchWindows, r.max_vio.size());
    } else {
        n = kSyntheticTokens;
        x = skewed_hidden_states(r.router->cfg, n, kSyntheticSeed, r.max_vio.size());
    }
    r.max_vio.push_back(float(r.router->step(x.data(), n, kWindow, kSeqLossLr).max_vio));
    if (int(r.max_vio.size()) >= r.max_steps) r.running = false;
}

void advance_run(RunSection& r, const Model<float>& m, const Pretrained& p) {
    // Text windows wait for corpus.txt.
    if (!r.running || (r.source == RunSection::Source::text && p.corpus_state != Pretrained::State::ready)) return;
    const auto t0 = Clock::now();
    do {  // at least one unit, then more while the frame's share lasts
        run_unit(r, m, p.corpus);
    } while (r.running && ms_since(t0) < kStepBudgetMs);
}

void draw_run(RoutingPanel& s, const Model<float>& m, const Pretrained& p) {
    RunSection& r = s.run;
    ImGui::Separator();
    int source = int(r.source);  // the buttons in Source's order
    radio_row("Run balancing on:", source, {"text windows (this layer's trained gate)", "synthetic skewed router"});
    if (!r.running) r.source = RunSection::Source(source);
    beside("steps", 120);
    ImGui::SliderInt("steps", &r.max_steps, 20, 2000);
    same_line_for(r.running ? "stop" : "run balancing");
    if (ImGui::Button(r.running ? "stop" : "run balancing")) {
        if (r.running) r.running = false;
        else start_run(s, m);
    }
    s.run_rect.record();
    same_line_for("reset");
    if (ImGui::Button("reset")) {
        r.max_vio.clear();
        r.running = false;
    }
    advance_run(r, m, p);
    if (r.running && r.max_vio.empty() && p.corpus_state == Pretrained::State::missing)
        ImGui::TextUnformatted("corpus.txt is missing beside the page (scripts/web.sh writes it): try the synthetic router");
    else if (r.running && r.max_vio.empty())
        ImGui::Text("computing hidden states of corpus windows: %zu / %zu", r.pool ? r.pool->windows() : 0, kPoolWindows);
    if (r.max_vio.empty()) {
        dim_text(format("Each step routes a batch of %zu tokens with the settings above, then balances: aux-free moves b "
                        "by gamma against each expert's load (starting from b = 0); the sequence-wise loss takes one SGD "
                        "step (rate %g) on a copy of the gate; none only measures.",
                        r.source == RunSection::Source::text ? kBatchWindows * kWindow : kSyntheticTokens, kSeqLossLr));
        return;
    }
    const draw::Series series{"MaxVio", r.max_vio.data(), int(r.max_vio.size()), IM_COL32(250, 200, 80, 255)};
    const float chart_h = std::clamp(ImGui::GetContentRegionAvail().y - 8.0f, 120.0f, 180.0f);
    draw::lines("maxvio", &series, 1, ImVec2(520, chart_h), false, "step", "MaxVio = max load / mean load - 1");
    ImGui::SameLine(0, 20);
    ImGui::BeginGroup();
    const BalancingRun& b = *r.router;
    ImGui::Text("%s, %s: step %zu, MaxVio %.3f -> %.3f", r.source == RunSection::Source::text ? "text" : "synthetic",
                to_string(b.cfg.balance).c_str(), r.max_vio.size(), double(r.max_vio.front()), double(r.max_vio.back()));
    if (b.cfg.balance == Balance::seq_loss)
        ImGui::Text("balance loss %.4g -> %.4g", b.stats.front().balance_loss, b.stats.back().balance_loss);
    std::vector<float> load(b.stats.back().tokens_per_expert.begin(), b.stats.back().tokens_per_expert.end());
    draw::bars("runload", load.data(), int(load.size()), *std::max_element(load.begin(), load.end()), ImVec2(300, 70));
    if (!b.bias.empty()) {
        const float mx = draw::max_abs(b.bias);
        ImGui::Text("bias (|b| up to %.4f)", double(mx));
        draw::heatmap("runbias", b.bias.data(), 1, int(b.bias.size()), -mx, mx, ImVec2(300, 16), true);
    }
    ImGui::EndGroup();
}

}  // namespace

void routing_panel(RoutingPanel& s, Pretrained& p) {
    explain("Each token (here: each byte of the text) is sent to only a few of the 16 routed experts of a MoE "
            "layer: the gate scores every expert, adds a per-expert bias, and keeps the top-k. Left, the gate's "
            "scores for every token with its chosen experts boxed; right, how many tokens each expert received. "
            "Run balancing to watch the auxiliary-loss-free bias (or the sequence-wise loss) even out that load.");
    const Model<float>* m = p.shown();
    if (!m) {
        ImGui::Text("%s", p.message.c_str());
        return;
    }
    if (!s.configured) {
        s.cfg = m->moe;
        if (s.cfg.gamma < 0.005) s.cfg.gamma = 0.005;  // a visible bias speed for the run (V3: 0.001)
        s.configured = true;
        apply_query(s, *m);  // also sets the text from the chosen sample
    }
    if (p.state != Pretrained::State::ready)
        ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "%s: a fresh seeded model (untrained gate)", p.message.c_str());
    draw_controls(s, *m);
    update_hidden(s, *m);
    route_text(s, *m);
    draw_routing(s, *m);
    draw_run(s, *m, p);
}

nlohmann::json routing_state(const RoutingPanel& s) {
    const RunSection& r = s.run;
    return {{"config", s.cfg.to_json()},
            {"layer", s.layer},
            {"tokens", s.n_tokens},
            {"indices", s.routing.indices},
            {"tokens_per_expert", s.stats.tokens_per_expert},
            {"max_vio", s.stats.max_vio},
            {"error", s.error},
            {"softmax_rect", s.softmax_rect.to_json()},
            {"run_rect", s.run_rect.to_json()},
            {"forward_ms", s.forward_ms},
            {"run", {{"running", r.running},
                     {"source", r.source == RunSection::Source::text ? "text" : "synthetic"},
                     {"pool", r.pool ? r.pool->windows() : 0},
                     {"steps", r.max_vio.size()},
                     {"max_vio", r.max_vio}}}};
}

void routing_from_query(RoutingPanel& s, const Query& q) { s.query = q; }

Query routing_to_query(const RoutingPanel& s) {
    const MoeConfig& c = s.cfg;
    return {{"text_sample", std::to_string(s.sample)}, {"moe_layer", std::to_string(s.layer)},
            {"score", to_string(c.score_func)}, {"groups", std::to_string(c.n_expert_groups)},
            {"kept", std::to_string(c.n_limited_groups)}, {"topk", std::to_string(c.n_activated_experts)},
            {"balance", to_string(c.balance)}, {"route_gamma", format("%g", c.gamma)}};
}

std::string routing_summary(const RoutingPanel& s) {
    std::string out = format("Routing, MoE layer %d, %zu tokens, top-%zu of %zu experts; tokens per expert:", s.layer + 1,
                             s.n_tokens, s.cfg.n_activated_experts, s.cfg.n_routed_experts);
    for (std::size_t c : s.stats.tokens_per_expert) out += " " + std::to_string(c);
    out += format("; MaxVio %.2f.", s.stats.max_vio);
    if (!s.run.max_vio.empty())
        out += format(" Balancing run: %zu steps, MaxVio %.2f.", s.run.max_vio.size(), double(s.run.max_vio.back()));
    return out;
}

nlohmann::json routing_self_test() {
    // Exactly `eva moe route --config mini --tokens 512 --seed 3 --json` with --balance aux-free
    // --steps 100, --balance seq-loss --steps 10 --seq-len 128, and a softmax variant of mini (config
    // file) --balance none: the synthetic router routed and balanced by the wasm core.
    auto route = [](const MoeConfig& c, std::size_t steps) {
        Routing<float> r;
        const std::vector<RoutingStats> run = synthetic_balancing_run(c, 1.0, 3, 512, steps, 128, 1000.0, {}, &r);
        std::vector<double> max_vio, loss;
        for (const RoutingStats& st : run) max_vio.push_back(st.max_vio), loss.push_back(st.balance_loss);
        // The chosen experts of the first 4 tokens at step 0.
        const std::vector<std::int32_t> first_indices(r.indices.begin(), r.indices.begin() + 4 * std::ptrdiff_t(c.n_activated_experts));
        return nlohmann::json{{"first", run.front().to_json()}, {"last", run.back().to_json()}, {"max_vio", max_vio},
                              {"balance_loss", loss}, {"first_indices", first_indices}};
    };
    MoeConfig aux = MoeConfig::preset("mini"), seq = aux, soft = aux;
    aux.balance = Balance::aux_free;
    seq.balance = Balance::seq_loss;
    soft.score_func = ScoreFunc::softmax;
    return {{"routing_aux_free", route(aux, 100)}, {"routing_seq_loss", route(seq, 10)},
            {"routing_softmax", route(soft, 0)}};
}

}  // namespace eva::web

