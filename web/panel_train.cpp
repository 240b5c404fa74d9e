// The Train panel: eva-mini learns to write like Debian's fortunes while you watch, once with fp32
// Linear layers and once with DeepSeek-V3's FP8 recipe, from the same initial weights and batches.
//
// A step (forward, hand-written backward, clipping, AdamW, the aux-free bias update) takes hundreds of
// milliseconds even at 4 × 64 tokens, far beyond a 16 ms frame, and a step cannot be cut into pieces
// between frames without rewriting the layers. So each trainer runs in a Web Worker: a second wasm
// module (web/train_worker.cpp) that owns an eva::Trainer. The page keeps one call in flight per
// worker; each answer (a step's statistics, a sample) lands in this panel's state and the next call
// goes out at once, so training continues whether or not the panel is on screen.
#include "panel_train.hpp"

#include <emscripten.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <stdexcept>

#include "app.hpp"
#include "draw.hpp"
#include "train_worker.hpp"

namespace eva::web {

namespace {

namespace tp = train_protocol;

constexpr int kEvalEvery = 25;            // validation loss every N steps
constexpr double kSampleEveryMs = 5000;  // a new sample every few seconds of training
constexpr int kHeatSteps = 200;          // the expert-load heatmap shows the latest steps
constexpr int kMaxPlotPoints = 500;      // longer curves are averaged into this many points

void pump(TrainRun& r);

// The worker's answer to a call on run `arg`: it frees the worker for the next call; an error answer (or
// one that cannot be read) ends the run with its message, any other is taken in by `use` and the next
// call goes out.
template <void (*use)(TrainRun&, const nlohmann::json&)>
void on_answer(char* data, int size, void* arg) {
    TrainRun& r = *static_cast<TrainRun*>(arg);
    r.busy = false;
    try {
        const nlohmann::json j = nlohmann::json::parse(std::string(data, std::size_t(size)));
        if (j.contains("error")) throw std::runtime_error(j["error"].get<std::string>());
        use(r, j);
    } catch (const std::exception& e) {
        r.state = TrainRun::State::failed;
        r.error = e.what();
        return;
    }
    pump(r);
}

void took_step(TrainRun& r, const nlohmann::json& j) {
    r.h.add(StepStats::from_json(j));
    if (j.contains("val_loss")) r.h.add_validation(j["val_loss"].get<double>());
}

void took_sample(TrainRun& r, const nlohmann::json& j) {
    r.sample = j["text"].get<std::string>();
    r.sample_step = j["step"].get<int>();
    r.next_sample_ms = emscripten_get_now() + kSampleEveryMs;
}

void started(TrainRun& r, const nlohmann::json&) {
    r.state = TrainRun::State::ready;
    r.next_sample_ms = emscripten_get_now() + kSampleEveryMs;
}

void call(TrainRun& r, const char* fn, const std::string& payload, em_worker_callback_func cb) {
    r.busy = true;
    emscripten_call_worker(r.worker, fn, const_cast<char*>(payload.data()), int(payload.size()), cb, &r);
}

// Sends the next call if the run is live and idle: a sample when one is due, else the next step.
void pump(TrainRun& r) {
    if (!r.panel->running || r.state != TrainRun::State::ready || r.busy) return;
    if (emscripten_get_now() >= r.next_sample_ms) {
        call(r, tp::kSample, nlohmann::json{{"prompt", "The "}, {"tokens", 100}, {"seed", r.h.steps.size() + 1}}.dump(),
             on_answer<took_sample>);
        return;
    }
    const bool eval = (r.h.steps.size() + 1) % kEvalEvery == 0;
    call(r, tp::kStep, nlohmann::json{{"eval", eval}}.dump(), on_answer<took_step>);
}

// A trainer whose worker died is reported as failed with the browser's message (else it would look
// busy forever).
void check_alive(TrainRun& r) {
    if (r.worker < 0 || r.state == TrainRun::State::failed) return;
    char message[256];
    const int dead = EM_ASM_INT({
        const m = (Module.evaDeadWorkers || {})[$0];
        if (m === undefined) return 0;
        stringToUTF8(String(m), $1, $2);
        return 1;
    }, r.worker, message, int(sizeof message));
    if (!dead) return;
    r.state = TrainRun::State::failed;
    r.busy = false;
    r.error = std::string("its worker died (") + message + "; out of memory?)";
}

// Starts a worker per enabled trainer, each from the corpus and, to continue it, the checkpoint's bytes.
void launch(TrainPanel& p, const std::string& corpus, const std::string& ckpt) {
    for (TrainRun& r : p.runs) {
        const bool on = (&r == &p.runs[0]) ? p.train_fp32 : p.train_fp8;
        if (!on) continue;
        TrainConfig c = p.cfg;
        c.precision = parse_linear_precision(r.precision);
        const nlohmann::json s = {{"train", c.to_json()}, {"gamma", double(p.gamma)}};
        r.worker = emscripten_create_worker(tp::kScript);
        // A worker that dies (out of memory, an abort in its wasm) never answers: its Worker object gets an
        // "error" event instead, which is noted here and turned into a failed run by check_alive.
        EM_ASM({
            const w = Browser.workers[$0].worker;
            w.addEventListener("error", (e) => { (Module.evaDeadWorkers = Module.evaDeadWorkers || {})[$0] =
                                                     e.message || "the worker stopped"; });
        }, r.worker);
        r.state = TrainRun::State::starting;
        call(r, tp::kStart, tp::pack_start(s, corpus, ckpt), on_answer<started>);
    }
    p.start_pending = false;
    p.running = true;
}

// A chart's curves (thinned to kMaxPlotPoints) and their names, which its draw::Series point into: a
// deque, so adding one moves none of the others.
struct Chart {
    std::deque<std::string> names;
    std::deque<Curve> curves;
    std::vector<draw::Series> series;
    void add(std::string name, const std::vector<float>& x, const std::vector<float>& y, ImU32 colour) {
        names.push_back(std::move(name));
        curves.push_back(thin_curve(x, y, kMaxPlotPoints));
        const Curve& c = curves.back();
        series.push_back({names.back().c_str(), c.y.data(), int(c.y.size()), colour, c.x.data()});
    }
};

ImU32 dimmed(ImU32 c) { return (c & 0x00FFFFFFu) | (0x60u << IM_COL32_A_SHIFT); }

void settings(TrainPanel& p) {
    const bool locked = p.runs[0].worker >= 0 || p.runs[1].worker >= 0;
    if (locked) ImGui::BeginDisabled();
    ImGui::Checkbox("fp32", &p.train_fp32);
    same_line_for("FP8 (E4M3, 1x128 / 128x128 scales)", kBox);
    ImGui::Checkbox("FP8 (E4M3, 1x128 / 128x128 scales)", &p.train_fp8);
    same_line_for("continue the pretrained checkpoint", kBox);
    ImGui::Checkbox("continue the pretrained checkpoint", &p.from_pretrained);
    ImGui::SetNextItemWidth(120);
    ImGui::SliderInt("batch", &p.cfg.batch, 1, 16);
    beside("sequence length", 120);
    ImGui::SliderInt("sequence length", &p.cfg.seq_len, 16, 256);
    beside("peak lr", 120);
    float lr = float(p.cfg.schedule.lr);
    if (ImGui::SliderFloat("peak lr", &lr, 1e-4f, 1e-2f, "%.4f", ImGuiSliderFlags_Logarithmic)) p.cfg.schedule.lr = lr;
    beside("warmup", 120);
    ImGui::SliderInt("warmup", &p.cfg.schedule.warmup_steps, 0, 200);
    beside("bias speed gamma", 120);
    ImGui::SliderFloat("bias speed gamma", &p.gamma, 1e-4f, 0.1f, "%.4f", ImGuiSliderFlags_Logarithmic);
    if (ImGui::IsItemHovered())
        draw::tooltip("Aux-free balancing moves each expert's bias by gamma per step. DeepSeek-V3 uses 0.001 over "
                      "~2e5 steps; a run of a few hundred steps needs a faster bias (default %.2f).",
                      kTrainPanelGamma);
    if (locked) ImGui::EndDisabled();
}

void controls(TrainPanel& p) {
    const bool started = p.runs[0].worker >= 0 || p.runs[1].worker >= 0;
    const char* label = !started ? (p.start_pending ? "Loading..." : "Start training") : p.running ? "Pause" : "Resume";
    if (ImGui::Button(label, ImVec2(140, 0))) {
        if (!started) p.start();
        else p.running = !p.running;
        if (p.running)
            for (TrainRun& r : p.runs)
                if (r.worker >= 0) pump(r);
    }
    p.button_rect.record();
    ImGui::SameLine();
    if (ImGui::Button("Reset")) p.reset();
    p.reset_rect.record();
    same_line_if_fits(200);
    if (!p.message.empty()) ImGui::TextUnformatted(p.message.c_str());
    else ImGui::TextDisabled("one step = %d sequences x %d bytes; lr warmup %d steps, cosine to %.0e at step %d",
                             p.cfg.batch, p.cfg.seq_len, p.cfg.schedule.warmup_steps,
                             p.cfg.schedule.lr * p.cfg.schedule.min_lr_ratio, p.cfg.steps);
}

void run_status(const TrainRun& r) {
    const TrainHistory& h = r.h;
    ImGui::TextColored(ImColor(r.colour), "%s", r.label);
    ImGui::SameLine(90);
    switch (r.state) {
    case TrainRun::State::off: ImGui::TextDisabled("off"); break;
    case TrainRun::State::starting: ImGui::TextUnformatted("starting its worker..."); break;
    case TrainRun::State::failed: ImGui::TextColored(ImVec4(1, 0.5f, 0.45f, 1), "failed: %s", r.error.c_str()); break;
    case TrainRun::State::ready:
        if (h.loss.empty()) {
            ImGui::TextUnformatted("first step running...");
            break;
        }
        ImGui::Text("step %d  loss %.3f (smoothed %.3f) nats/byte  grad norm %.2f  %.0f tokens/s  (%.2f s/step)",
                    int(h.steps.back()), double(h.loss.back()), double(h.loss_ema.back()), double(h.grad_norm.back()),
                    h.tokens_per_s(), double(h.seconds.back()));
        if (!h.val_loss.empty()) {
            ImGui::SameLine();
            ImGui::Text(" validation %.3f (%.2f bits/byte)", double(h.val_loss.back()),
                        double(h.val_loss.back()) / std::log(2.0));
        }
    }
}

void loss_chart(const TrainPanel& p, ImVec2 size) {
    Chart c;
    for (const TrainRun& r : p.runs) {
        if (r.h.loss.empty()) continue;
        c.add(std::string(r.label) + " batch", r.h.steps, r.h.loss, dimmed(r.colour));
        c.add(std::string(r.label) + " EMA", r.h.steps, r.h.loss_ema, r.colour);
        if (!r.h.val_loss.empty())
            c.add(std::string(r.label) + " validation", r.h.val_steps, r.h.val_loss, IM_COL32(240, 240, 240, 255));
    }
    ImGui::TextUnformatted("training loss per batch and its moving average (EMA 0.9), validation loss (white), nats/byte");
    draw::lines("loss", c.series.data(), int(c.series.size()), ImVec2(size.x, size.y - ImGui::GetTextLineHeightWithSpacing()),
                false, "step");
}

void balance_charts(TrainPanel& p, ImVec2 size) {
    const TrainRun* shown[2];
    int n = 0;
    for (const TrainRun& r : p.runs)
        if (!r.h.loss.empty()) shown[n++] = &r;
    if (n == 0) return;
    if (n == 2) {
        radio_row(nullptr, p.load_run, {"fp32##load", "FP8##load"});
        ImGui::SameLine();
    }
    const TrainRun& r = n == 2 ? p.runs[p.load_run] : *shown[0];
    const TrainHistory& h = r.h;
    const int E = int(h.experts()), steps = int(h.steps.size()), cols = std::min(steps, kHeatSteps);
    ImGui::Text("%s, last MoE layer: load / even share, %d experts x steps %d-%d", r.label, E, steps - cols + 1, steps);
    // Experts as rows and steps as columns, so time runs left to right as in the loss chart.
    const std::vector<float> load = h.expert_rows(h.load, kHeatSteps);
    draw::heatmap("load", load.data(), E, cols, 0.0f, 2.0f, ImVec2(size.x, size.y * 0.3f));
    // The bias that does the balancing: an overloaded expert's falls by gamma per step (blue), an
    // underloaded one's rises (red), until the load evens out.
    if (h.bias.size() == h.load.size() && steps > 0) {
        const std::vector<float> bias = h.expert_rows(h.bias, kHeatSteps);
        const float top = draw::max_abs(bias);
        ImGui::Text("its selection bias b_i (gamma %.4f per step): blue < 0 < red, |b| up to %.3f", double(p.gamma), double(top));
        draw::heatmap("bias", bias.data(), E, cols, -top, top, ImVec2(size.x, size.y * 0.2f), true);
    }
    static const ImU32 shades[] = {IM_COL32(120, 200, 255, 255), IM_COL32(255, 190, 90, 255),
                                   IM_COL32(170, 255, 150, 255), IM_COL32(255, 130, 200, 255)};
    const std::string window = std::to_string(TrainHistory::kVioWindow);
    Chart c;
    for (std::size_t l = 0; l < h.max_vio.size(); ++l)  // each step's batch, dimmed
        c.add("layer " + std::to_string(l + 1) + " batch", h.steps, h.max_vio[l], dimmed(shades[l % 4]));
    for (std::size_t l = 0; l < h.max_vio_window.size(); ++l)  // the last kVioWindow steps' load, bright
        c.add("layer " + std::to_string(l + 1) + " last " + window, h.steps, h.max_vio_window[l], shades[l % 4]);
    ImGui::TextWrapped("MaxVio = max load / mean load - 1 (0: perfectly even), of each 256-token batch (dim: its "
                       "few text windows favour some experts, whatever the bias) and of the load over the last %s "
                       "steps (bright: the balance the bias reaches)", window.c_str());
    draw::lines("maxvio", c.series.data(), int(c.series.size()),
                ImVec2(size.x, std::max(100.0f, size.y * 0.45f - 3 * ImGui::GetTextLineHeightWithSpacing())), false, "step");
}

// FP8 against fp32 at the latest step both have reached. DeepSeek-V3 reports FP8 training within
// 0.25% of the BF16 loss, but one pair of runs cannot resolve a gap that small: over 5 seeds of short
// runs (docs/fp8-gap.md) eva's paired gap varied from seed to seed about as much as two fp32 runs with
// different seeds, its mean indistinguishable from zero. With the same batches the only difference is
// the arithmetic; the moving averages are compared because a single batch's loss is noisy.
void compare(const TrainPanel& p) {
    const TrainRun &a = p.runs[0], &b = p.runs[1];
    const std::size_t n = std::min(a.h.loss_ema.size(), b.h.loss_ema.size());
    if (n == 0) return;
    const double d = double(b.h.loss_ema[n - 1]) - double(a.h.loss_ema[n - 1]);
    ImGui::Text("FP8 - fp32 at step %zu: %+.4f nats/byte (%+.2f%% of the fp32 moving average)", n, d,
                100.0 * d / double(a.h.loss_ema[n - 1]));
    ImGui::TextWrapped("%s", "One pair of runs cannot show a gap as small as DeepSeek-V3's 0.25 percent: over five "
                             "seeds eva's paired FP8 - fp32 gap varied about as much as two fp32 runs with different "
                             "seeds do, with a mean indistinguishable from zero (docs/fp8-gap.md), so a gap of a "
                             "percent or two here is seed noise.");
}

void samples(const TrainPanel& p) {
    for (const TrainRun& r : p.runs) {
        if (r.sample.empty()) continue;
        ImGui::TextColored(ImColor(r.colour), "%s sample after step %d (temperature 0.8, top-40):", r.label, r.sample_step);
        ImGui::PushStyleColor(ImGuiCol_Text, IM_COL32(225, 225, 210, 255));
        ImGui::TextWrapped("%s", r.sample.c_str());
        ImGui::PopStyleColor();
    }
}

// A fixed text for the self-test: words from a small list in an order drawn from a fixed Philox
// stream, so the bytes are identical on every platform and need no file beside the page.
std::string selftest_text() {
    static const char* const words[] = {"the", "latent", "cache", "holds", "keys", "and", "values", "experts",
                                        "share", "load", "eight", "bits", "scale", "every", "tile", "of", "a",
                                        "model", "learns", "to", "write"};
    const std::uint32_t n = sizeof words / sizeof words[0];
    Rng rng(11);
    std::string s;
    while (s.size() < 1500) s += std::string(words[rng.next_u32() % n]) + (rng.next_u32() % 9 == 0 ? ".\n" : " ");
    return s;
}

}  // namespace

void TrainRun::clear() {
    TrainRun fresh;
    fresh.label = label, fresh.precision = precision, fresh.colour = colour, fresh.panel = panel;
    *this = std::move(fresh);
}

TrainPanel::TrainPanel() {
    runs[0].label = "fp32", runs[0].precision = "fp32", runs[0].colour = IM_COL32(110, 180, 255, 255);
    runs[1].label = "FP8", runs[1].precision = "fp8", runs[1].colour = IM_COL32(255, 160, 70, 255);
    for (TrainRun& r : runs) r.panel = this;
    cfg = train_panel_config();
    gamma = float(kTrainPanelGamma);
}

void TrainPanel::start() {
    if (!train_fp32 && !train_fp8) {
        message = "choose fp32, FP8 or both";
        return;
    }
    message.clear();
    start_pending = true;
}

void TrainPanel::reset() {
    for (TrainRun& r : runs) {
        if (r.worker >= 0) emscripten_destroy_worker(r.worker);  // its pending answer is dropped with it
        r.clear();
    }
    running = start_pending = false;
    message.clear();
}

void train_panel(TrainPanel& p, Pretrained& pretrained) {
    explain("eva-mini (11.3 M parameters, 3 MoE layers of 16 experts) learns from a few hundred KB of Debian's "
            "fortunes, byte by byte, right here: fp32 and DeepSeek-V3's FP8 recipe (E4M3 GEMM inputs with 1x128 "
            "activation and 128x128 weight scales) start from the same weights and see the same batches, so their "
            "loss curves differ only by the arithmetic. Right, each expert's share of the routed tokens per step and "
            "the aux-free bias that moves it: an overloaded expert's bias falls by gamma per step, an idle one's "
            "rises, and MaxVio drops below 1 within the first 200 steps. V3 uses gamma = 0.001 over 14.3T tokens; "
            "a run this short needs a faster bias (0.02), or a few experts keep most tokens. Each trainer runs in "
            "its own worker thread, so the page stays smooth.");
    settings(p);
    if (p.start_pending) {  // waiting for the corpus (and the pretrained checkpoint the page loads) to arrive
        const bool ckpt_missing = p.from_pretrained && pretrained.fresh();
        const bool ckpt_ready = !p.from_pretrained || pretrained.state == Pretrained::State::ready;
        if (pretrained.corpus_state == Pretrained::State::missing || ckpt_missing) {
            p.start_pending = false;
            p.message = ckpt_missing ? "mini.safetensors is missing beside the page (scripts/web.sh writes it)"
                                     : "corpus.txt is missing beside the page (scripts/web.sh writes it)";
        } else if (pretrained.corpus_state == Pretrained::State::ready && ckpt_ready) {
            launch(p, pretrained.corpus, p.from_pretrained ? pretrained.file_bytes() : std::string());
        }
    }
    controls(p);
    for (TrainRun& r : p.runs) check_alive(r);
    for (const TrainRun& r : p.runs) run_status(r);
    compare(p);
    if (p.runs[0].h.loss.empty() && p.runs[1].h.loss.empty()) {
        ImGui::Spacing();
        ImGui::TextWrapped("Start training: each trainer loads the model (fresh from the seed, or the pretrained "
                           "checkpoint), then reports every optimizer step. An untrained byte model predicts all 256 "
                           "bytes alike, a loss of ln 256 = 5.55 nats/byte; watch it fall as the model learns spelling, "
                           "then words. A sample is drawn every few seconds, and the validation loss every %d steps.",
                           kEvalEvery);
        return;
    }
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const float h = std::max(220.0f, avail.y - 6 * ImGui::GetTextLineHeightWithSpacing());
    const float w = avail.x * 0.5f - 4;
    begin_block(w);  // each chart's text wraps within its half (the loss chart's title ran into the other)
    loss_chart(p, ImVec2(w, h));
    end_block();
    ImGui::SameLine();
    begin_block(w);
    balance_charts(p, ImVec2(w, h - ImGui::GetFrameHeightWithSpacing()));
    end_block();
    samples(p);
}

// Per trainer its steps, losses, speed and sample; and where the start/pause and reset buttons are.
nlohmann::json train_state(const TrainPanel& p) {
    nlohmann::json j = {{"running", p.running}, {"gamma", p.gamma},
                        {"button", p.button_rect.to_json()}, {"reset", p.reset_rect.to_json()},
                        {"runs", nlohmann::json::array()}};
    for (const auto& r : p.runs) {
        const TrainHistory& h = r.h;
        j["runs"].push_back({{"label", r.label},
                             {"state", int(r.state)},
                             {"error", r.error},
                             {"steps", h.loss.size()},
                             {"losses", h.loss},
                             {"val_loss", h.val_loss},
                             {"tokens_per_s", h.tokens_per_s()},
                             {"seconds_last", h.seconds.empty() ? 0.0f : h.seconds.back()},
                             {"max_vio_layers", h.max_vio.size()},
                             {"max_vio", h.max_vio},
                             {"max_vio_window", h.max_vio_window},
                             {"sample", r.sample}});
    }
    return j;
}

void train_from_query(TrainPanel& p, const Query& q) {  // the ranges of the settings' sliders
    p.cfg.batch = query_int(q, "batch", p.cfg.batch, 1, 16);
    p.cfg.seq_len = query_int(q, "seq_len", p.cfg.seq_len, 16, 256);
    p.cfg.schedule.lr = query_float(q, "lr", float(p.cfg.schedule.lr), 1e-4f, 1e-2f);
    p.cfg.schedule.warmup_steps = query_int(q, "warmup", p.cfg.schedule.warmup_steps, 0, 200);
    p.gamma = query_float(q, "gamma", p.gamma, 1e-4f, 0.1f);
    p.train_fp32 = query_int(q, "fp32", p.train_fp32, 0, 1) == 1;
    p.train_fp8 = query_int(q, "fp8", p.train_fp8, 0, 1) == 1;
}

Query train_to_query(const TrainPanel& p) {
    return {{"batch", std::to_string(p.cfg.batch)}, {"seq_len", std::to_string(p.cfg.seq_len)},
            {"lr", format("%g", p.cfg.schedule.lr)}, {"warmup", std::to_string(p.cfg.schedule.warmup_steps)},
            {"gamma", format("%g", double(p.gamma))}, {"fp32", p.train_fp32 ? "1" : "0"}, {"fp8", p.train_fp8 ? "1" : "0"}};
}

std::string train_summary(const TrainPanel& p) {
    std::string out = "Train:";
    for (const TrainRun& r : p.runs) {
        if (r.state == TrainRun::State::failed) {
            out += " " + std::string(r.label) + " failed: " + r.error + ".";
            continue;
        }
        const TrainHistory& h = r.h;
        if (h.loss.empty()) continue;
        out += format(" %s step %d, loss %.3f nats/byte (smoothed %.3f); MaxVio over the last %zu steps:", r.label,
                      int(h.steps.back()), double(h.loss.back()), double(h.loss_ema.back()), TrainHistory::kVioWindow);
        for (const auto& v : h.max_vio_window) out += format(" %.2f", double(v.back()));
        out += ".";
    }
    if (out == "Train:") out += " not started (bias speed gamma " + std::to_string(p.gamma).substr(0, 6) + ").";
    return out;
}

nlohmann::json train_self_test() {
    // Four steps of the `tiny` preset (mini's structure at 134 K parameters; mini itself takes seconds
    // per step in wasm) from seed 1 on the fixed text, 2 × 32 tokens per step, peak lr 3e-3 with one
    // warmup step: the exact run that
    //   eva train --config tiny --data TEXT --steps 4 --batch 2 --seq-len 32 --lr 0.003 --warmup 1
    //             --seed 1 --precision fp32|fp8
    // performs natively (tests/browser/train.test.mjs runs it and compares the losses).
    const ModelArgs args = preset("tiny");
    const std::string text = selftest_text();
    const Corpus corpus = corpus_from_text(text, "selftest");
    nlohmann::json j = {{"train_selftest_text", text}, {"train_selftest_params", parameter_count(args)}};
    for (const char* precision : {"fp32", "fp8"}) {
        const TrainConfig cfg = TrainConfig::from_json({{"batch", 2}, {"seq_len", 32}, {"steps", 4}, {"warmup_steps", 1},
                                                        {"shards", 0}, {"precision", precision}});  // lr 3e-3, seed 1
        Model<float> m = fresh_model(args, cfg.seed);
        Trainer tr(m, corpus, cfg);
        std::vector<double> losses;
        for (int i = 0; i < cfg.steps; ++i) losses.push_back(tr.step().loss);
        j[std::string("train_losses_") + precision] = losses;
    }
    return j;
}

}  // namespace eva::web
