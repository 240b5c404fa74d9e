// Training end to end on a small model: the loss falls, a resumed run continues bit-identically, and
// checkpoints round-trip and reject what does not fit.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "eva/checkpoint.hpp"
#include "eva/trainer.hpp"

namespace {

eva::ModelArgs small_args() {
    return eva::model_args_from_json({{"vocab_size", 256}, {"dim", 32}, {"inter_dim", 64}, {"moe_inter_dim", 16},
                                      {"n_layers", 2}, {"n_dense_layers", 1}, {"n_heads", 2},
                                      {"n_routed_experts", 4}, {"n_shared_experts", 1}, {"n_activated_experts", 2},
                                      {"n_expert_groups", 2}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
                                      {"q_lora_rank", 16}, {"kv_lora_rank", 16}, {"qk_nope_head_dim", 8},
                                      {"qk_rope_head_dim", 4}, {"v_head_dim", 8}, {"max_seq_len", 64}});
}

eva::Corpus small_corpus() {
    const std::string lines[] = {"The cache holds the latent, not the keys.\n", "Experts share the load.\n",
                                 "Eight bits are enough if the scale is right.\n"};
    std::string text;
    for (int i = 0; i < 120; ++i) text += lines[i % 3];
    const std::string path = "eva_test_train_corpus.txt";
    std::ofstream(path) << text;
    auto c = eva::load_corpus(path);
    std::remove(path.c_str());
    return c;
}

eva::TrainConfig small_train(int steps) {
    eva::TrainConfig t;
    t.batch = 8;
    t.seq_len = 32;
    t.steps = steps;
    t.schedule = {1e-2, 5, steps, 0.1};
    t.eval_batches = 2;
    return t;
}

}  // namespace

TEST_CASE("training lowers the loss on a small repetitive corpus", "[trainer]") {
    const auto args = small_args();
    const auto corpus = small_corpus();
    eva::Rng rng(1);
    auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
    eva::Trainer tr(m, corpus, small_train(80));
    const double before = tr.evaluate();
    // An untrained byte model predicts ~uniformly: ln 256 = 5.545 nats.
    CHECK(before == Approx(std::log(256.0)).margin(0.05));
    eva::StepStats s;
    for (int i = 0; i < 80; ++i) s = tr.step();
    CHECK(s.step == 80);
    CHECK(s.max_vio.size() == 1);
    // The last batch's expert loads: one share per routed expert, together all top-k slots.
    REQUIRE(s.expert_load.size() == 1);
    REQUIRE(s.expert_load[0].size() == 4);
    double total = 0;
    for (double f : s.expert_load[0]) total += f;
    CHECK(total == Approx(1.0));
    const double after = tr.evaluate();
    // Three sentences repeated: after 80 steps the model has learned most of their bytes. 2.0 nats is a
    // loose bound (typical: ~1.0) that an untrained or broken backward pass cannot reach.
    CHECK(after < 2.0);
}

namespace {

// Losses of a `total`-step run, stopped after `first` steps, saved, reloaded and resumed to the end.
std::vector<double> run_with_resume(const eva::TrainConfig& cfg, int first, const std::string& path) {
    const auto args = small_args();
    const auto corpus = small_corpus();
    std::vector<double> losses;
    {
        eva::Rng rng(2);
        auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
        eva::Trainer tr(m, corpus, cfg);
        for (int i = 0; i < first; ++i) losses.push_back(tr.step().loss);
        tr.save(path);
    }
    nlohmann::json meta;
    auto m = eva::load_model(eva::SafetensorsFile::read(path), &meta);
    const auto st = eva::TrainingState::from_json(meta.at("training"), m.args);
    eva::Trainer tr(m, corpus, st.config);  // the schedule's total comes from the checkpoint
    tr.resume(path, st);
    CHECK(tr.steps_done() == first);
    while (tr.steps_done() < st.config.steps) losses.push_back(tr.step().loss);
    return losses;
}

std::vector<double> run_straight(const eva::TrainConfig& cfg) {
    const auto args = small_args();
    const auto corpus = small_corpus();
    eva::Rng rng(2);
    auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
    eva::Trainer tr(m, corpus, cfg);
    std::vector<double> losses;
    for (int i = 0; i < cfg.steps; ++i) losses.push_back(tr.step().loss);
    return losses;
}

void remove_pair(const std::string& path) {
    std::remove(path.c_str());
    std::remove(eva::Trainer::optimizer_path(path).c_str());
}

}  // namespace

TEST_CASE("20 + 20 steps equal 40 straight, bit for bit, for any warmup", "[trainer]") {
    // Warmup 0 and 5 end inside the first half (the cosine decay then depends on the total, 40, which
    // the resumed half must take from the checkpoint); 20 ends at the save; 60 outlasts the run.
    const int warmup = GENERATE(0, 5, 20, 60);
    INFO("warmup " << warmup);
    eva::TrainConfig cfg = small_train(40);
    cfg.schedule.warmup_steps = warmup;
    const std::string path = "eva_test_resume.safetensors";
    const auto resumed = run_with_resume(cfg, 20, path);
    remove_pair(path);
    CHECK(resumed == run_straight(cfg));  // exact equality: every bit of the state was restored
}

TEST_CASE("a checkpoint's training state is validated, and a torn pair is refused", "[trainer]") {
    const auto args = small_args();
    const auto corpus = small_corpus();
    const std::string path = "eva_test_torn.safetensors", other = "eva_test_torn2.safetensors";
    eva::Rng rng(2);
    auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
    eva::Trainer tr(m, corpus, small_train(10));
    tr.step();
    tr.save(path);
    const eva::TrainingState st = tr.state();
    CHECK(st.run_id.size() == 16);
    const nlohmann::json good = st.to_json();
    CHECK(eva::TrainingState::from_json(good, args).to_json() == good);

    // Each corruption of issue 12 (finding 5), refused with the field named.
    const std::pair<nlohmann::json, std::string> bad[] = {
        {nlohmann::json::array(), "must be an object"},
        {[&] { auto j = good; j["step"] = 1e12; return j; }(), "'step'"},
        {[&] { auto j = good; j["step"] = -1; return j; }(), "'step'"},
        {[&] { auto j = good; j["step"] = 11; return j; }(), "'step' must be an integer in 0..10"},
        {[&] { auto j = good; j["adamw_steps"] = 2; return j; }(), "'adamw_steps'"},
        {[&] { auto j = good; j["data_position"] = 7; return j; }(), "'data_position'"},
        {[&] { auto j = good; j["run_id"] = "zz"; return j; }(), "'run_id'"},
        {[&] { auto j = good; j["config"]["beta1"] = 1.0; return j; }(), "beta1 must be in [0, 1)"},
        {[&] { auto j = good; j["config"]["beta2"] = -0.1; return j; }(), "beta2 must be in [0, 1)"},
        {[&] { auto j = good; j["config"]["eps"] = -1; return j; }(), "eps must be a finite number > 0"},
        {[&] { auto j = good; j["config"]["batch"] = 2.5; return j; }(), "'batch' must be an integer"},
        {[&] { auto j = good; j["config"]["steps"] = 1e12; return j; }(), "'steps' must be an integer"},
        {[&] { auto j = good; j["config"]["lr"] = "fast"; return j; }(), "'lr' must be a finite number"},
        {[&] { auto j = good; j["config"]["surprise"] = 1; return j; }(), "unknown config field 'surprise'"},
        {[&] { auto j = good; j["config"] = 3; return j; }(), "config must be an object"},
    };
    for (const auto& [j, needle] : bad) {
        INFO(needle);
        CHECK_THROWS_WITH(eva::TrainingState::from_json(j, args), Catch::Contains(needle));
    }

    // A torn pair: the optimizer file of a later step (a kill between the two renames of a save).
    tr.step();
    tr.save(other);
    std::rename(eva::Trainer::optimizer_path(other).c_str(), eva::Trainer::optimizer_path(path).c_str());
    {
        eva::Rng r2(2);
        auto m2 = eva::model_init<float>(args, eva::moe_config(args), r2);
        eva::Trainer resumed(m2, corpus, st.config);
        CHECK_THROWS_WITH(resumed.resume(path, st), Catch::Contains("the pair is torn"));
        CHECK(resumed.steps_done() == 0);  // nothing was restored
    }
    remove_pair(path);
    remove_pair(other);
}

TEST_CASE("checkpoints keep the official names and reject what does not fit", "[trainer]") {
    const auto args = small_args();
    eva::Rng rng(3);
    auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
    const std::string path = "eva_test_ckpt.safetensors";
    eva::save_model(m, path);
    const auto f = eva::SafetensorsFile::read(path);
    std::remove(path.c_str());
    for (const char* name : {"embed.weight", "layers.0.attn.wq_a.weight", "layers.0.attn.q_norm.weight",
                             "layers.0.attn.wkv_b.weight", "layers.0.ffn.w2.weight", "layers.1.ffn.gate.weight",
                             "layers.1.ffn.gate.bias", "layers.1.ffn.experts.3.w3.weight",
                             "layers.1.ffn.shared_experts.w1.weight", "norm.weight", "head.weight"})
        CHECK(f.contains(name));
    CHECK(f.entry("layers.0.attn.wkv_a.weight").shape == std::vector<std::size_t>{16 + 4, 32});
    auto back = eva::load_model(f);
    const bool same = back.w.layers[1].moe.experts[2].w1 == m.w.layers[1].moe.experts[2].w1;
    CHECK(same);

    // A file missing a tensor, or with a config that does not match its tensors, is refused: first by
    // the byte count (before the model is allocated), then tensor by tensor.
    eva::SafetensorsWriter w;
    for (const auto& t : eva::named_tensors(m.w))
        if (t.name != "layers.1.ffn.experts.0.w1.weight") w.add(t.name, t.shape, t.data);
    w.set_metadata("config", eva::to_json(args).dump());
    w.set_metadata("moe", R"({"balance": "aux-free", "gamma": 0.001, "alpha": 0.0001})");
    const std::uint64_t need = eva::model_bytes(args, eva::moe_config(args));
    CHECK_THROWS_WITH(eva::load_model(eva::SafetensorsFile::parse(w.serialize())),
                      Catch::Contains("its config needs " + std::to_string(need) + " bytes") &&
                          Catch::Contains("the file holds " + std::to_string(need - 32 * 16 * 4)));
    const auto& w1 = m.w.layers[1].moe.experts[0].w1;
    w.add("layers.1.ffn.experts.0.w1.renamed", w1);
    CHECK_THROWS_WITH(eva::load_model(eva::SafetensorsFile::parse(w.serialize())),
                      Catch::Contains("missing tensor \"layers.1.ffn.experts.0.w1.weight\""));
    auto other = eva::to_json(args);
    other["dim"] = 48;
    w.set_metadata("config", other.dump());
    CHECK_THROWS_AS(eva::load_model(eva::SafetensorsFile::parse(w.serialize())), eva::FileError);
}

TEST_CASE("FP8 training follows FP32 training from the same seeds", "[trainer]") {
    // DeepSeek-V3 reports a relative loss gap below 0.25% at scale. On this small model and a 60-step run
    // one seed says little: over seeds 1–8 the gap of one seed ran from −8.0% to +4.8%, and fp32's own
    // loss from 0.946 to 1.066. A single seed's gap (4.7% at seed 1 natively, 4.9% and 5.1% in
    // WebAssembly with 4- and 5-row GEMM tiles: the summation order alone moves it) made a 5% bound flip
    // with any change of the order. So the test bounds the mean relative gap over 8 seeds (measured
    // +1.4%, standard error ≈ 1.6%) at 5%, one-sided: FP8 trains as well as fp32 within what 8 short
    // runs can tell. docs/fp8-gap.md measures the gap itself on the real corpus, with its statistics.
    const auto args = small_args();
    const auto corpus = small_corpus();
    auto final_loss = [&](eva::LinearPrecision p, std::uint64_t seed) {
        eva::Rng rng(seed);
        auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
        auto cfg = small_train(60);
        cfg.precision = p;
        eva::Trainer tr(m, corpus, cfg);
        for (int i = 0; i < 60; ++i) tr.step();
        return tr.evaluate();
    };
    constexpr int kSeeds = 8;
    double mean_gap = 0;
    for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
        const double fp32 = final_loss(eva::LinearPrecision::fp32, seed), fp8 = final_loss(eva::LinearPrecision::fp8, seed);
        INFO("seed " << seed << ": validation loss fp32 " << fp32 << ", fp8 " << fp8);
        CHECK(fp8 < 3.0);  // it trains at all (the initial loss is ln 256 ≈ 5.5)
        mean_gap += (fp8 - fp32) / fp32 / kSeeds;
    }
    INFO("mean relative gap over " << kSeeds << " seeds: " << mean_gap);
    CHECK(mean_gap < 0.05);  // it may be negative: noise
}
