// Data-parallel training without MPI: threads stand in for ranks (a Comm over shared memory), so the
// property the MPI build relies on — losses and weights do not depend on the rank count — is checked in
// every native build. tests/cli_mpi.sh checks the same under mpirun.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <unistd.h>

#include "eva/dist.hpp"
#include "eva/error.hpp"
#include "eva/threads.hpp"
#include "eva/trainer.hpp"

namespace {

// Mailboxes between threads: sendrecv deposits its message, then waits for the peer's.
struct Hub {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::pair<int, int>, std::deque<std::vector<char>>> box;  // (from, to) → messages in order
};

class ThreadComm final : public eva::Comm {
public:
    ThreadComm(Hub& h, int rank, int size) : h_(h), rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void sendrecv(const void* send, void* recv, std::size_t bytes, int peer) override {
        std::unique_lock<std::mutex> lock(h_.mu);
        h_.box[{rank_, peer}].emplace_back(static_cast<const char*>(send), static_cast<const char*>(send) + bytes);
        h_.cv.notify_all();
        auto& in = h_.box[{peer, rank_}];
        h_.cv.wait(lock, [&] { return !in.empty(); });
        REQUIRE(in.front().size() == bytes);
        std::memcpy(recv, in.front().data(), bytes);
        in.pop_front();
    }
    void allgather(const void* send, void* recv, std::size_t bytes) override {
        auto* out = static_cast<char*>(recv);
        std::memcpy(out + std::size_t(rank_) * bytes, send, bytes);
        for (int p = 0; p < size_; ++p)
            if (p != rank_) sendrecv(send, out + std::size_t(p) * bytes, bytes, p);
    }
    // Every rank deposits its message to each rank (itself included), then takes one from each.
    void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_at, void* recv,
                   const std::size_t* recv_bytes, const std::size_t* recv_at) override {
        std::unique_lock<std::mutex> lock(h_.mu);
        const char* s = static_cast<const char*>(send);
        for (int p = 0; p < size_; ++p) h_.box[{rank_, p}].emplace_back(s + send_at[p], s + send_at[p] + send_bytes[p]);
        h_.cv.notify_all();
        for (int p = 0; p < size_; ++p) {
            auto& in = h_.box[{p, rank_}];
            h_.cv.wait(lock, [&] { return !in.empty(); });
            REQUIRE(in.front().size() == recv_bytes[p]);
            if (recv_bytes[p]) std::memcpy(static_cast<char*>(recv) + recv_at[p], in.front().data(), recv_bytes[p]);
            in.pop_front();
        }
    }
    [[noreturn]] void abort(int code) override { throw eva::ConfigError("abort " + std::to_string(code)); }

private:
    Hub& h_;
    int rank_, size_;
};

eva::ModelArgs dist_args(int mtp) {
    return eva::model_args_from_json(
        {{"vocab_size", 256}, {"dim", 32}, {"inter_dim", 64}, {"moe_inter_dim", 16}, {"n_layers", 3},
         {"n_dense_layers", 1}, {"n_heads", 2}, {"n_routed_experts", 8}, {"n_shared_experts", 1},
         {"n_activated_experts", 2}, {"n_expert_groups", 2}, {"n_limited_groups", 1}, {"score_func", "sigmoid"},
         {"q_lora_rank", 16}, {"kv_lora_rank", 16}, {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4},
         {"v_head_dim", 8}, {"max_seq_len", 32}, {"n_mtp_layers", mtp}});
}

eva::Corpus dist_corpus() {
    std::string text;
    for (int i = 0; i < 150; ++i) text += i % 2 ? "Shards add up as a tree.\n" : "Ranks hold the same weights.\n";
    // A name of this call's own: ctest runs test cases as parallel processes, and each case's ranks are
    // threads; a shared name let one remove the file while another was reading it.
    static std::atomic<int> calls{0};
    const std::string path = "eva_test_dist_corpus_" + std::to_string(getpid()) + "_" + std::to_string(calls++) + ".txt";
    { std::ofstream(path) << text; }
    auto c = eva::load_corpus(path);
    std::remove(path.c_str());
    return c;
}

struct Run {
    std::vector<double> losses;  // per step: loss, balance loss, grad norm, MTP losses, max_vio; then the val loss
    std::vector<float> weights;  // every tensor, the selection biases included (under --ep: rank 0's, gathered)
    std::size_t expert_floats = 0;  // the routed experts' weights this rank holds after training
    std::vector<std::uint64_t> traffic;  // per step and rank: dispatch and combine bytes, node sends
};

// `ranks` trainers in threads (0: the plain single-process trainer), `steps` steps each; `ep` ranks per
// expert-parallel group, the experts on `nodes` nodes with each token's on at most `max_nodes`.
std::vector<Run> train(int ranks, int shards, int mtp, int steps, int ep = 1, int nodes = 1, int max_nodes = 0) {
    const auto args = dist_args(mtp);
    const auto corpus = dist_corpus();
    eva::TrainConfig t;
    t.batch = 8;
    t.seq_len = 16;
    t.steps = steps;
    t.schedule = {1e-2, 2, steps, 0.1};
    t.shards = shards;
    t.nodes = nodes;
    t.max_nodes = max_nodes;
    Hub hub;
    std::vector<Run> out(std::size_t(std::max(ranks, 1)));
    auto rank_main = [&](int r) {
        eva::Rng rng(5);
        auto m = eva::model_init<float>(args, eva::moe_config(args), rng);
        ThreadComm comm(hub, r, ranks);
        eva::Trainer tr(m, corpus, t, ranks > 0 ? &comm : nullptr, ep);
        Run& run = out[std::size_t(r)];
        for (int i = 0; i < steps; ++i) {
            const auto s = tr.step();
            run.losses.insert(run.losses.end(), {s.loss, s.balance_loss, s.grad_norm});
            run.losses.insert(run.losses.end(), s.mtp_loss.begin(), s.mtp_loss.end());
            run.losses.insert(run.losses.end(), s.max_vio.begin(), s.max_vio.end());
            for (const auto& t : tr.take_traffic().first)
                run.traffic.insert(run.traffic.end(), {t.dispatch.sent, t.dispatch.received, t.combine.sent,
                                                       t.combine.received, t.node_sends});
        }
        run.losses.push_back(tr.evaluate());  // collective: under --ep the experts' rows are dispatched
        for (const eva::Moe<float>* b : eva::moe_blocks(m.w))
            for (const auto& e : b->experts) run.expert_floats += e.w1.size() + e.w2.size() + e.w3.size();
        auto record = [&] {
            for (const auto& w : eva::named_tensors(m.w)) run.weights.insert(run.weights.end(), w.data, w.data + w.size());
        };
        if (ep == 1) record();                                                // every rank holds every weight
        else tr.with_full_model([&](const eva::Model<float>&) { record(); });  // rank 0 gathers the experts
    };
    if (ranks == 0) {
        rank_main(0);
    } else {
        std::vector<std::thread> threads;
        for (int r = 0; r < ranks; ++r) threads.emplace_back(rank_main, r);
        for (auto& th : threads) th.join();
    }
    return out;
}

#if !defined(__EMSCRIPTEN__)  // (the cases that compare trained weights need threads)
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
#endif

}  // namespace

#if !defined(__EMSCRIPTEN__)  // (no threads there)
TEST_CASE("data parallel: 2 and 4 ranks train bit for bit as one process", "[dist][trainer]") {
    eva::set_num_threads(1);
    const int mtp = GENERATE(0, 1);
    const int shards = GENERATE(4, 8);
    INFO("MTP modules " << mtp << ", shards " << shards);
    const auto one = train(0, shards, mtp, 5);
    REQUIRE(one[0].losses.size() == std::size_t(5 * (3 + mtp + 2) + 1));
    CHECK(one[0].losses[0 * (5 + mtp)] > one[0].losses[4 * (5 + mtp)]);  // it trains
    for (int ranks : {2, 4}) {
        INFO(ranks << " ranks");
        const auto many = train(ranks, shards, mtp, 5);
        for (const Run& r : many) {
            CHECK(r.losses == one[0].losses);  // exact: the same additions in the same brackets
            CHECK(same_bits(r.weights, one[0].weights));
        }
    }
}
#endif

#if !defined(__EMSCRIPTEN__)  // (threads as ranks)
TEST_CASE("expert parallel: experts on 2 or 4 ranks, also beside data parallel, train bit for bit as one process",
          "[dist][trainer][ep]") {
    eva::set_num_threads(1);
    const int mtp = GENERATE(0, 1);
    const auto one = train(0, 8, mtp, 5);
    // ranks × ep: one group of 2, one of 4, two groups of 2 (each holding the experts once).
    for (auto [ranks, ep] : {std::pair{2, 2}, std::pair{4, 4}, std::pair{4, 2}}) {
        INFO(ranks << " ranks, --ep " << ep << ", MTP modules " << mtp);
        // One process given --ep trains as always and accounts the traffic of ep ranks.
        const auto emulated = train(0, 8, mtp, 5, ep);
        CHECK(emulated[0].losses == one[0].losses);
        const auto runs = train(ranks, 8, mtp, 5, ep);
        for (const Run& r : runs) {
            CHECK(r.losses == one[0].losses);  // exact: the same GEMMs on the same rows, the same brackets
            // Each rank holds 1/ep of the routed experts; rank 0 gathers the rest to hand out the model.
            CHECK(r.expert_floats * std::size_t(ep) == one[0].expert_floats);
            if (&r == &runs[0]) CHECK(same_bits(r.weights, one[0].weights));
            else CHECK(r.weights.empty());
            // The bytes the ranks measured, group by group (ranks ≠ ep: the emulation covers one group
            // of the batch's shards, the run two groups of half as many each, so only ep = ranks compares).
            if (ranks == ep) CHECK(r.traffic == emulated[0].traffic);
        }
    }
}

TEST_CASE("node-limited routing: a single process emulating the layout trains as the expert-parallel ranks",
          "[dist][trainer][ep]") {
    eva::set_num_threads(1);
    // 4 nodes of 2 experts, each token's 2 experts on 1 node: the routing differs from the unlimited one
    // (else this test could not tell), and the 4 ranks (one node each) match the emulation bit for bit.
    const auto limited = train(0, 4, 0, 4, 1, 4, 1), free = train(0, 4, 0, 4);
    CHECK(limited[0].losses != free[0].losses);
    const auto runs = train(4, 4, 0, 4, 4, 4, 1);
    for (const Run& r : runs) CHECK(r.losses == limited[0].losses);
    CHECK(same_bits(runs[0].weights, limited[0].weights));
}

#endif

// A model and a two-step run of 8 sequences in `shards` shards, for the refused configurations.
struct Setup {
    eva::ModelArgs args = dist_args(0);
    eva::Corpus corpus = dist_corpus();
    eva::Rng rng{5};
    eva::Model<float> m = eva::model_init<float>(args, eva::moe_config(args), rng);
    eva::TrainConfig t;
    explicit Setup(int shards) {
        t.batch = 8;
        t.seq_len = 16;
        t.steps = 2;
        t.shards = shards;
    }
};

TEST_CASE("expert-parallel layouts that do not fit are refused", "[dist][trainer][ep]") {
    Setup f(4);
    auto& m = f.m;
    const auto& corpus = f.corpus;
    auto& t = f.t;
    Hub hub;
    ThreadComm two(hub, 0, 2);
    CHECK(eva::Trainer(m, corpus, t, nullptr, 2).expert_layout().ep == 2);  // alone: emulated
    CHECK_THROWS_WITH(eva::Trainer(m, corpus, t, &two, 3), Catch::Contains("must divide the 8 routed experts"));
    t.nodes = 4;  // 4 nodes cannot be made of 2 ranks
    CHECK_THROWS_WITH(eva::Trainer(m, corpus, t, &two, 2), Catch::Contains("cannot form 4 nodes"));
    t.nodes = 3;
    CHECK_THROWS_WITH(eva::Trainer(m, corpus, t), Catch::Contains("must divide the 8 routed experts"));
    t.nodes = 2;
    t.max_nodes = 3;
    CHECK_THROWS_WITH(eva::Trainer(m, corpus, t), Catch::Contains("max_nodes = 3"));
}

TEST_CASE("shards change only the rounding: the first step's losses and gradient norm agree", "[dist][trainer]") {
    // The same weights see the same sequences, so the per-token losses are the same math; the mean is
    // taken as a mean of per-shard means, each rounded to float by cross_entropy (2^-24 ≈ 6e-8 relative
    // per shard). The gradient is summed over shards in another bracketing (float roundings of ~1e-7
    // per addition): its norm agrees to well within 1e-5.
    const auto whole = train(0, 1, 1, 1)[0].losses, split = train(0, 4, 1, 1)[0].losses;
    REQUIRE(whole.size() == split.size());
    CHECK(split[0] == Approx(whole[0]).epsilon(1e-6));  // cross-entropy
    CHECK(split[1] == Approx(whole[1]).epsilon(1e-6));   // balance loss: float sums per sequence
    CHECK(split[2] == Approx(whole[2]).epsilon(1e-5));   // gradient norm
    CHECK(split[3] == Approx(whole[3]).epsilon(1e-6));  // MTP module's cross-entropy
}

TEST_CASE("ranks must be a power of two dividing the shards", "[dist][trainer]") {
    Setup f(2);
    auto& m = f.m;
    const auto& corpus = f.corpus;
    auto& t = f.t;
    Hub hub;
    ThreadComm four(hub, 0, 4), three(hub, 0, 3);
    CHECK_THROWS_WITH(eva::Trainer(m, corpus, t, &four), Catch::Contains("4 ranks cannot share 2 gradient shards"));
    t.shards = 0;  // the default for batch 8, on several ranks and alone alike: 4 shards
    CHECK_THROWS_WITH(eva::Trainer(m, corpus, t, &three), Catch::Contains("3 ranks cannot share 4"));
    CHECK(eva::Trainer(m, corpus, t).config().shards == 4);  // alone too: the same losses as the ranks
    t.shards = 3;
    CHECK_THROWS_WITH(eva::Trainer(m, corpus, t), Catch::Contains("shards must divide the batch (8), got 3"));
    CHECK(eva::default_shards(16) == 4);
    CHECK(eva::default_shards(6) == 2);
    CHECK(eva::default_shards(3) == 1);
}

#if !defined(__EMSCRIPTEN__)  // (threads as ranks)
TEST_CASE("tree_allreduce: the balanced tree over the ranks, or its upper rounds with a stride", "[dist]") {
    // Values whose sum depends on the bracketing in float: (a + b) + (c + d) ≠ ((a + b) + c) + d.
    const std::vector<float> x = {1e8f, 3.0f, -1e8f, 5.0f};
    for (int stride : {1, 2, 4}) {
        INFO("stride " << stride);
        Hub hub;
        std::vector<float> out(4);
        std::vector<std::uint64_t> sent(4);
        std::vector<std::thread> threads;
        for (int r = 0; r < 4; ++r)
            threads.emplace_back([&, r] {
                ThreadComm c(hub, r, 4);
                std::vector<float> v = {x[std::size_t(r)]}, scratch;
                eva::tree_allreduce(c, v.data(), 1, scratch, stride);
                out[std::size_t(r)] = v[0];
                sent[std::size_t(r)] = c.allreduce_traffic.sent;
            });
        for (auto& t : threads) t.join();
        for (int r = 0; r < 4; ++r) {
            const std::size_t i = std::size_t(r);
            // stride 1: both rounds; stride 2: ranks r and r ^ 2 only; stride 4: no partner.
            const float want = stride == 1 ? (x[0] + x[1]) + (x[2] + x[3]) : stride == 2 ? x[i % 2] + x[i % 2 + 2] : x[i];
            CHECK(out[i] == want);
            CHECK(sent[i] == (stride == 1 ? 2u : stride == 2 ? 1u : 0u) * sizeof(float));  // one float per round
        }
    }
    Hub hub;
    ThreadComm c(hub, 0, 4);
    std::vector<float> v(1), scratch;
    CHECK_THROWS_WITH(eva::tree_allreduce(c, v.data(), 1, scratch, 3), Catch::Contains("stride must be a power of two"));
}
#endif
