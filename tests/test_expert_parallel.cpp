// Expert parallelism's figures (eva/expert_parallel.hpp) against references written out here: the
// traffic of a layer from the definition, node sends by brute force over random routings, the one-
// process all-to-all, and the training config's node layout. The bit-for-bit runs are in test_dist.cpp
// (threads as ranks) and tests/cli_mpi.sh (mpirun).
#include <catch2/catch.hpp>

#include <set>

#include "eva/error.hpp"
#include "eva/expert_parallel.hpp"
#include "eva/rng.hpp"
#include "eva/trainer.hpp"

TEST_CASE("expert_traffic: the bytes of one layer, forward and backward, worked out by hand", "[ep]") {
    // 8 experts on 4 places (2 each); this rank is place 1 and keeps its own 5 rows (not counted).
    const eva::ExpertLayout l{8, 4, /*rank*/ 5, 1};  // rank 5 = place 1 of the group of ranks 4..7
    REQUIRE(l.first() == 4);
    REQUIRE(l.place() == 1);
    const auto t = eva::expert_traffic(l, {3, 5, 0, 2}, {1, 4, 6, 0}, 8);
    // Rows out: 3 + 0 + 2 = 5, in: 1 + 6 + 0 = 7, a row 8 floats = 32 B; counts: 3 peers × 2 × 8 B = 48 B.
    // Dispatch moves x forward and ∂L/∂y backward (2 rows each way per pair), combine y and ∂L/∂x.
    CHECK(t.dispatch.sent == 48 + 2 * 5 * 32);
    CHECK(t.dispatch.received == 48 + 2 * 7 * 32);
    CHECK(t.combine.sent == 2 * 7 * 32);
    CHECK(t.combine.received == 2 * 5 * 32);
    // One place alone sends nothing.
    const auto alone = eva::expert_traffic(eva::ExpertLayout{8, 1, 0, 1}, {9}, {9}, 8);
    CHECK(alone.dispatch.sent + alone.dispatch.received + alone.combine.sent + alone.combine.received == 0);
}

TEST_CASE("remote_node_sends: each token once per node it uses other than its own, by brute force", "[ep]") {
    eva::Rng rng(11);
    for (int trial = 0; trial < 50; ++trial) {
        const std::size_t E = 16, k = 1 + rng.next_u32() % 4, n = 1 + rng.next_u32() % 30;
        const int log_ep = int(rng.next_u32() % 5), ep = 1 << log_ep;     // 1..16 places
        const int rpn = 1 << int(rng.next_u32() % std::uint32_t(log_ep + 1));  // a power of two dividing ep
        const eva::ExpertLayout l{E, ep, int(rng.next_u32() % 64), rpn};
        std::vector<std::int32_t> idx(n * k);
        for (auto& e : idx) e = std::int32_t(rng.next_u32() % E);
        // Reference: node = expert / (experts per node), experts per node = E / (ep / rpn).
        const std::size_t per_node_experts = E / std::size_t(ep / rpn);
        const std::size_t home = std::size_t(l.rank % ep) / std::size_t(rpn);
        std::uint64_t want = 0;
        for (std::size_t t = 0; t < n; ++t) {
            std::set<std::size_t> nodes;
            for (std::size_t j = 0; j < k; ++j) nodes.insert(std::size_t(idx[t * k + j]) / per_node_experts);
            want += nodes.size() - nodes.count(home);
        }
        INFO("trial " << trial << ": ep " << ep << ", ranks per node " << rpn);
        CHECK(eva::remote_node_sends(l, idx.data(), n, k) == want);
    }
}

TEST_CASE("traffic_json: per rank and per token; gather_traffic on one process", "[ep]") {
    eva::ExpertTraffic a, b;
    a.dispatch = {640, 320};
    a.combine = {320, 640};
    a.node_sends = 6;
    b.dispatch = {320, 640};
    b.combine = {640, 320};
    const auto j = eva::traffic_json(eva::ExpertLayout{8, 2, 0, 1}, {a, b}, {{96, 96}, {64, 64}}, 4, 32);
    CHECK(j["per_rank"]["dispatch_sent"] == nlohmann::json::array({640.0, 320.0}));
    CHECK(j["per_token"]["dispatch_sent"][0].get<double>() == 20.0);  // 640 B / 32 tokens
    CHECK(j["per_token"]["combine_received"][1].get<double>() == 10.0);
    CHECK(j["per_token"]["allreduce_sent"][1].get<double>() == 2.0);
    CHECK(j["per_token"]["remote_nodes"][0].get<double>() == 6.0 / 32);
    // 6 sends of a 4-float row, 4 times (x, y, ∂L/∂y, ∂L/∂x): 384 B.
    CHECK(j["per_rank"]["node_bytes"][0].get<double>() == 384.0);
    CHECK(j["mean_per_token"]["dispatch_sent"].get<double>() == 15.0);  // (20 + 10) / 2
    CHECK(j["allreduce_sent"] == 96);  // rank 0's
    eva::LocalComm one;
    const auto [experts, allreduce] = eva::gather_traffic(one, a, {96, 48});
    REQUIRE(experts.size() == 1);
    CHECK(experts[0].dispatch.sent == 640);
    CHECK(experts[0].node_sends == 6);
    CHECK(allreduce[0].received == 48);
}

TEST_CASE("the one-process all-to-all is a copy, and refuses a mismatch", "[ep][dist]") {
    eva::LocalComm one;
    const float send[4] = {1, 2, 3, 4};
    float recv[4] = {};
    const std::size_t bytes = 3 * sizeof(float), at_send = sizeof(float), at_recv = 0;
    one.alltoallv(send, &bytes, &at_send, recv, &bytes, &at_recv);
    CHECK(recv[0] == 2);
    CHECK(recv[2] == 4);
    CHECK(recv[3] == 0);
    const std::size_t other = 2 * sizeof(float);
    CHECK_THROWS_AS(one.alltoallv(send, &bytes, &at_send, recv, &other, &at_recv), eva::ShapeError);
}

TEST_CASE("the node layout is part of the training config: saved, restored, validated", "[ep][trainer]") {
    const auto args = eva::preset("mini");
    eva::TrainConfig c;
    c.nodes = 4;
    c.max_nodes = 2;
    const auto back = eva::TrainConfig::from_json(c.to_json());
    CHECK(back.nodes == 4);
    CHECK(back.max_nodes == 2);
    nlohmann::json old = c.to_json();  // a state written before node-limited routing: unlimited
    old.erase("nodes");
    old.erase("max_nodes");
    CHECK(eva::TrainConfig::from_json(old).nodes == 1);
    CHECK(eva::TrainConfig::from_json(old).max_nodes == 0);
    c.validate(args);
    c.nodes = 0;
    CHECK_THROWS_AS(c.validate(args), eva::ConfigError);
    c.nodes = int(args.n_routed_experts) + 1;  // does not divide the experts
    CHECK_THROWS_WITH(c.validate(args), Catch::Contains("must divide"));
}
