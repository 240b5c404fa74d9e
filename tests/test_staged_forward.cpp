// A forward spread over calls (eva/staged_forward.hpp) against model_forward's activations, bit for bit,
// and the window pool's batches against windows drawn and forwarded independently.
#include <catch2/catch.hpp>

#include <vector>

#include "eva/data.hpp"
#include "eva/error.hpp"
#include "eva/staged_forward.hpp"

namespace {

// Three blocks: one dense, then two MoE layers.
eva::Model<float> tiny_model() {
    const eva::ModelArgs args = eva::model_args_from_json(
        {{"vocab_size", 256}, {"dim", 32}, {"inter_dim", 64}, {"moe_inter_dim", 16}, {"n_layers", 3},
         {"n_dense_layers", 1}, {"n_heads", 2}, {"n_routed_experts", 4}, {"n_shared_experts", 1},
         {"n_activated_experts", 2}, {"n_expert_groups", 2}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
         {"q_lora_rank", 16}, {"kv_lora_rank", 16}, {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4},
         {"v_head_dim", 8}, {"max_seq_len", 64}});
    return eva::fresh_model(args, 4);
}

std::vector<float> flat(const eva::Matrix<float>& m) { return std::vector<float>(m.begin(), m.end()); }

}  // namespace

TEST_CASE("StagedForward gives model_forward's MoE inputs and residual stream, a block per call", "[model][staged]") {
    const eva::Model<float> m = tiny_model();
    const std::vector<eva::Token> tokens = eva::encode_bytes("Experts share the load.");
    eva::ModelActivations<float> acts;
    eva::model_forward(m, tokens, 1, tokens.size(), &acts);
    eva::StagedForward f;
    f.start(m, tokens);
    CHECK_THROWS_AS(f.moe_input(m, 0), eva::ShapeError);  // no MoE layer has run yet
    for (std::size_t l = 0; l < 3; ++l) {
        CHECK_FALSE(f.done(m));
        f.advance(m);
        CHECK(f.next == l + 1);
    }
    REQUIRE(f.done(m));
    f.advance(m);  // nothing more to run
    CHECK(f.next == 3);
    // The same computation in the same order: identical bits.
    CHECK(flat(f.x) == flat(acts.x));
    const std::size_t n = tokens.size() * 32;
    for (std::size_t k = 0; k < 2; ++k) {
        const float* hn = f.moe_input(m, k);
        CHECK(std::vector<float>(hn, hn + n) == flat(acts.layers[1 + k].hn));
    }
    CHECK_THROWS_AS(f.moe_input(m, 2), eva::ShapeError);
    eva::StagedForward empty;
    empty.start(m, {});
    CHECK_FALSE(empty.done(m));  // an empty sequence never finishes (nothing to route)
}

TEST_CASE("WindowPool serves batches of independently forwarded windows", "[model][staged]") {
    const eva::Model<float> m = tiny_model();
    const std::vector<eva::Token> text = eva::encode_bytes(
        "The river does not argue with the stone. It goes around, and in a thousand years the stone is sand.");
    eva::WindowPool pool(text, 16, 3, 11);
    CHECK_THROWS_AS(pool.batch(m, 0, 2, 0), eva::ShapeError);  // not full yet
    int calls = 0;
    while (!pool.full()) {
        pool.advance(m);
        ++calls;
    }
    CHECK(calls == 3 * 3);  // three windows of three blocks
    CHECK(pool.windows() == 3);
    // The reference: the same three windows (sample_batch with Rng(11) in turn), each through model_forward.
    eva::Rng rng(11);
    std::vector<std::vector<float>> hn;  // MoE layer 1's inputs of each window
    for (int w = 0; w < 3; ++w) {
        const std::vector<eva::Token> win = eva::sample_batch(text, 1, 16, rng).inputs;
        eva::ModelActivations<float> acts;
        eva::model_forward(m, win, 1, win.size(), &acts);
        hn.push_back(flat(acts.layers[2].hn));
    }
    // Step 5's batch of 4 windows: drawn with Rng(7, 5), as the Routing panel's run always drew them.
    eva::Rng pick(7, 5);
    std::vector<float> expect;
    for (int w = 0; w < 4; ++w) {
        const auto& h = hn[pick.next_u32() % 3];
        expect.insert(expect.end(), h.begin(), h.end());
    }
    CHECK(pool.batch(m, 1, 4, 5) == expect);
    CHECK_THROWS_AS(pool.batch(m, 2, 1, 0), eva::ShapeError);  // only two MoE layers
}
