// What the browser's Train panel draws and its worker sends (eva/train_history.hpp, StepStats' JSON,
// fresh_model, set_gamma, sample_text), against hand-worked figures and the functions they replace.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "eva/data.hpp"
#include "eva/error.hpp"
#include "eva/train_history.hpp"
#include "eva/trainer.hpp"

namespace {

// One MoE layer of two experts: a step with the given loss, shares, bias and time.
eva::StepStats step(int n, double loss, double share0, double seconds) {
    eva::StepStats s;
    s.step = n;
    s.loss = loss;
    s.grad_norm = 0.5;
    s.seconds = seconds;
    s.tokens = 256;
    s.max_vio = {std::max(share0, 1 - share0) / 0.5 - 1};
    s.expert_load = {{share0, 1 - share0}};
    s.bias = {{-0.125f * float(n), 0.125f * float(n)}};  // exact in float
    return s;
}

eva::ModelArgs tiny_args(int mtp) {
    return eva::model_args_from_json({{"vocab_size", 256}, {"dim", 32}, {"inter_dim", 64}, {"moe_inter_dim", 16},
                                      {"n_layers", 2}, {"n_dense_layers", 1}, {"n_heads", 2},
                                      {"n_routed_experts", 4}, {"n_shared_experts", 1}, {"n_activated_experts", 2},
                                      {"n_expert_groups", 2}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
                                      {"q_lora_rank", 16}, {"kv_lora_rank", 16}, {"qk_nope_head_dim", 8},
                                      {"qk_rope_head_dim", 4}, {"v_head_dim", 8}, {"max_seq_len", 64},
                                      {"n_mtp_layers", mtp}});
}

}  // namespace

TEST_CASE("TrainHistory: moving average, windowed MaxVio, load, bias and speed by hand", "[train][history]") {
    eva::TrainHistory h;
    CHECK(h.tokens_per_s() == 0);
    CHECK_THROWS_AS(h.add_validation(1.0), eva::ShapeError);  // no step yet
    // Steps 1-2 send every slot to expert 0, steps 3-22 split evenly; losses 2, 1, then 1.
    for (int n = 1; n <= 22; ++n) h.add(step(n, n == 1 ? 2.0 : 1.0, n <= 2 ? 1.0 : 0.5, n == 3 ? 4.0 : 0.5));
    REQUIRE(h.steps.size() == 22);
    CHECK(h.steps[21] == 22.0f);
    // EMA 0.9: 2, then 0.9·2 + 0.1·1 = 1.9, then 0.9·1.9 + 0.1 = 1.81 (float arithmetic, as computed).
    CHECK(h.loss_ema[0] == 2.0f);
    CHECK(h.loss_ema[1] == 0.9f * 2.0f + 0.1f * 1.0f);
    CHECK(h.loss_ema[2] == Approx(1.81).epsilon(1e-6));
    CHECK(h.max_vio[0][0] == 1.0f);   // all on one of two experts: 1 / 0.5 − 1
    CHECK(h.max_vio[0][21] == 0.0f);
    // The window: after step 2 the sum is {2, 0} → 1; after step 21 (steps 2-21) {1 + 9.5, 9.5} → 10.5/10 − 1
    // = 0.05; after step 22 (steps 3-22) {10, 10} → 0: the first steps have left the 20-step window.
    CHECK(h.max_vio_window[0][1] == 1.0f);
    CHECK(h.max_vio_window[0][20] == Approx(0.05).epsilon(1e-6));
    CHECK(h.max_vio_window[0][21] == 0.0f);
    // Load as share / even share: {2, 0} at step 1, {1, 1} at step 22; the bias as sent.
    REQUIRE(h.experts() == 2);
    CHECK(h.load[0] == 2.0f);
    CHECK(h.load[1] == 0.0f);
    CHECK(h.load[43] == 1.0f);
    CHECK(h.bias[43] == 2.75f);
    // The last 3 steps as expert rows: expert 0's bias −2.5, −2.625, −2.75, then expert 1's.
    const std::vector<float> rows = h.expert_rows(h.bias, 3);
    CHECK(rows == std::vector<float>{-2.5f, -2.625f, -2.75f, 2.5f, 2.625f, 2.75f});
    CHECK(h.expert_rows(h.bias, 100).size() == 44);  // at most every step
    CHECK_THROWS_AS(h.expert_rows(h.loss, 3), eva::ShapeError);
    // Speed: the median of the last 20 step times (one slow 4 s step among 0.5 s ones does not move it).
    CHECK(h.tokens_per_s() == 256 / 0.5);
    h.add_validation(1.25);
    CHECK(h.val_steps == std::vector<float>{22});
    CHECK(h.val_loss == std::vector<float>{1.25f});
    eva::StepStats bad = step(23, 1, 0.5, 0.5);
    bad.expert_load.push_back({0.5, 0.5});  // two layers of loads, one of MaxVio
    CHECK_THROWS_AS(h.add(bad), eva::ShapeError);
}

TEST_CASE("thin_curve averages consecutive points into at most max_points", "[train][history]") {
    const std::vector<float> x = {0, 1, 2, 3, 4}, y = {1, 2, 3, 4, 6};
    // 5 points into 2: buckets of ceil(5/2) = 3, {0,1,2} and {3,4}: x 1 and 3.5, y 2 and 5.
    const eva::Curve c = eva::thin_curve(x, y, 2);
    CHECK(c.x == std::vector<float>{1, 3.5f});
    CHECK(c.y == std::vector<float>{2, 5});
    const eva::Curve same = eva::thin_curve(x, y, 5);  // fits: unchanged
    CHECK(same.x == x);
    CHECK(same.y == y);
    CHECK_THROWS_AS(eva::thin_curve(x, {1}, 2), eva::ShapeError);
}

TEST_CASE("a trainer's StepStats carry the bias and the tokens, and survive JSON", "[train][history]") {
    const eva::ModelArgs args = tiny_args(0);
    std::string text;
    for (int i = 0; i < 100; ++i) text += "Experts share the load. Eight bits are enough.\n";
    const eva::Corpus corpus = eva::corpus_from_text(text, "test");
    eva::Model<float> m = eva::fresh_model(args, 3, eva::Balance::aux_free, 0.02);
    eva::TrainConfig cfg;
    cfg.batch = 2;
    cfg.seq_len = 16;
    cfg.steps = cfg.schedule.total_steps = 2;
    eva::Trainer tr(m, corpus, cfg);
    const eva::StepStats s = tr.step();
    CHECK(s.tokens == 32);
    REQUIRE(s.bias.size() == 1);                // one MoE layer
    CHECK(s.bias[0] == m.w.layers[1].moe.bias);  // after the step's update
    float top = 0;  // from b = 0, one aux-free update moves each bias by ±γ (0 for an expert exactly at the mean)
    for (float b : s.bias[0]) top = std::max(top, std::abs(b));
    CHECK(top == Approx(0.02).epsilon(1e-6));
    const eva::StepStats back = eva::StepStats::from_json(nlohmann::json::parse(s.to_json().dump()));
    CHECK(back.to_json() == s.to_json());
    CHECK(back.loss == s.loss);  // JSON writes doubles exactly (shortest round trip)
    CHECK(back.bias == s.bias);
    CHECK_THROWS(eva::StepStats::from_json({{"step", 1}}));
}

TEST_CASE("fresh_model is eva train's construction; set_gamma reaches every MoE layer", "[train][history]") {
    const eva::ModelArgs args = tiny_args(1);
    eva::Rng rng(5);
    const eva::Model<float> ref = eva::model_init<float>(args, eva::moe_config(args, eva::Balance::aux_free, 0.01), rng);
    eva::Model<float> m = eva::fresh_model(args, 5, eva::Balance::aux_free, 0.01);
    CHECK((m.w.embed == ref.w.embed));
    CHECK((m.w.layers[1].moe.gate == ref.w.layers[1].moe.gate));
    CHECK((m.w.mtp[0].eh_proj == ref.w.mtp[0].eh_proj));
    CHECK(m.moe.gamma == 0.01);
    eva::set_gamma(m, 0.02);
    CHECK(m.moe.gamma == 0.02);
    CHECK(m.w.layers[1].moe.cfg.gamma == 0.02);
    CHECK(m.w.mtp[0].block.moe.cfg.gamma == 0.02);
    CHECK_THROWS_AS(eva::set_gamma(m, -1.0), eva::ConfigError);
    CHECK(m.moe.gamma == 0.02);  // refused: unchanged
}

TEST_CASE("sample_text draws n bytes after the prompt, within max_seq_len, reproducibly", "[train][history]") {
    const eva::Model<float> m = eva::fresh_model(tiny_args(0), 1);
    const std::string a = eva::sample_text(m, "The ", 20, 9);
    CHECK(a.size() == 20);
    CHECK(eva::sample_text(m, "The ", 20, 9) == a);  // the same seed, the same bytes
    CHECK(eva::sample_text(m, "The ", 20, 10) != a);
    CHECK(eva::sample_text(m, "The ", 100, 9).size() == 60);  // 4 + 60 = max_seq_len 64
    CHECK(eva::sample_text(m, "The ", 100, 9).substr(0, 20) == a);  // the same stream, cut later
}
