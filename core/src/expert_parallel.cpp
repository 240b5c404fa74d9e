// eva — expert parallelism: dispatch, per-source expert runs, combine, and the gradient tree per source.
#include "eva/expert_parallel.hpp"

#include <algorithm>
#include <string>

#include "eva/error.hpp"
#include "parallel.hpp"

namespace eva {

void ExpertLayout::validate() const {
    if (ep < 1 || experts % std::size_t(ep) != 0)
        throw ConfigError("--ep " + std::to_string(ep) + " must divide the " + std::to_string(experts) + " routed experts");
    if (ranks_per_node < 1 || ep % ranks_per_node != 0)
        throw ConfigError("--ranks-per-node " + std::to_string(ranks_per_node) + " must divide --ep " + std::to_string(ep));
}

ExpertTraffic& ExpertTraffic::operator+=(const ExpertTraffic& o) {
    dispatch.sent += o.dispatch.sent;
    dispatch.received += o.dispatch.received;
    combine.sent += o.combine.sent;
    combine.received += o.combine.received;
    node_sends += o.node_sends;
    return *this;
}

ExpertTraffic expert_traffic(const ExpertLayout& l, const std::vector<std::size_t>& sent_rows,
                             const std::vector<std::size_t>& received_rows, std::size_t dim) {
    std::uint64_t out = 0, in = 0;  // rows to and from the other places of the group
    for (int p = 0; p < l.ep; ++p)
        if (p != l.place()) {
            out += sent_rows.at(std::size_t(p));
            in += received_rows.at(std::size_t(p));
        }
    const std::uint64_t row = dim * sizeof(float);
    // The counts message: one 8-byte count per expert of the peer, to and from each other place.
    const std::uint64_t counts = std::uint64_t(l.ep - 1) * l.per_rank() * sizeof(std::uint64_t);
    ExpertTraffic t;
    // Forward and backward each move the rows once out (x, then ∂L/∂y) and once back (y, then ∂L/∂x).
    t.dispatch = {counts + 2 * out * row, counts + 2 * in * row};
    t.combine = {2 * in * row, 2 * out * row};
    return t;
}

std::uint64_t remote_node_sends(const ExpertLayout& l, const std::int32_t* indices, std::size_t n, std::size_t k) {
    const int home = l.place() / l.ranks_per_node;
    std::uint64_t sends = 0;
    std::vector<int> nodes;
    for (std::size_t t = 0; t < n; ++t) {
        nodes.clear();
        for (std::size_t j = 0; j < k; ++j) nodes.push_back(l.node_of(std::size_t(indices[t * k + j])));
        std::sort(nodes.begin(), nodes.end());
        nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
        for (int node : nodes) sends += node != home;
    }
    return sends;
}

std::pair<std::vector<ExpertTraffic>, std::vector<Traffic>> gather_traffic(Comm& comm, const ExpertTraffic& mine,
                                                                            const Traffic& allreduce) {
    const std::vector<std::uint64_t> own = {mine.dispatch.sent, mine.dispatch.received, mine.combine.sent,
                                            mine.combine.received, mine.node_sends, allreduce.sent, allreduce.received};
    const auto all = allgather(comm, own);
    std::pair<std::vector<ExpertTraffic>, std::vector<Traffic>> out;
    for (std::size_t r = 0; r < std::size_t(comm.size()); ++r) {
        const std::uint64_t* v = all.data() + r * own.size();
        ExpertTraffic t;
        t.dispatch = {v[0], v[1]};
        t.combine = {v[2], v[3]};
        t.node_sends = v[4];
        out.first.push_back(t);
        out.second.push_back({v[5], v[6]});
    }
    return out;
}

nlohmann::json traffic_json(const ExpertLayout& l, const std::vector<ExpertTraffic>& experts,
                            const std::vector<Traffic>& allreduce, std::size_t dim, std::uint64_t tokens) {
    nlohmann::json per_rank = nlohmann::json::object(), per_token = nlohmann::json::object();
    auto put = [&](const char* name, double bytes) {
        per_rank[name].push_back(bytes);
        per_token[name].push_back(tokens ? bytes / double(tokens) : 0.0);
    };
    for (std::size_t r = 0; r < experts.size(); ++r) {
        const ExpertTraffic& t = experts[r];
        put("dispatch_sent", double(t.dispatch.sent));
        put("dispatch_received", double(t.dispatch.received));
        put("combine_sent", double(t.combine.sent));
        put("combine_received", double(t.combine.received));
        // A token crossing to a node carries its row out and back, forward and backward: 4 rows.
        put("node_bytes", double(t.node_sends) * double(dim * sizeof(float)) * 4);
        per_token["remote_nodes"].push_back(tokens ? double(t.node_sends) / double(tokens) : 0.0);
        put("allreduce_sent", double(allreduce.at(r).sent));
        put("allreduce_received", double(allreduce.at(r).received));
    }
    nlohmann::json mean = nlohmann::json::object();
    for (const auto& [key, values] : per_token.items()) {
        double sum = 0;
        for (const auto& v : values) sum += v.get<double>();
        mean[key] = values.empty() ? 0.0 : sum / double(values.size());
    }
    return {{"ranks", experts.size()}, {"ep", l.ep}, {"ranks_per_node", l.ranks_per_node}, {"tokens_per_rank", tokens},
            {"allreduce_sent", allreduce.at(0).sent}, {"allreduce_received", allreduce.at(0).received},  // rank 0's
            {"per_rank", per_rank}, {"per_token", per_token}, {"mean_per_token", mean}};
}

TrafficEmulator::TrafficEmulator(const ExpertLayout& layout, std::size_t dim, int shards)
    : layout_(layout), dim_(dim), shards_(shards), traffic_(std::size_t(layout.ep)) {
    layout_.validate();
    if (shards % layout.ep != 0)
        throw ConfigError("--ep " + std::to_string(layout.ep) + " ranks cannot share " + std::to_string(shards) + " gradient shards");
}

void TrafficEmulator::add_shard(const std::vector<const MoeCache<float>*>& blocks) {
    const int rank = next_ / (shards_ / layout_.ep);  // the emulated rank of this shard
    ExpertLayout here = layout_;
    here.rank = rank;
    const std::size_t El = layout_.per_rank();
    std::vector<std::vector<std::size_t>> rows;
    for (const MoeCache<float>* c : blocks) {
        std::vector<std::size_t> to(std::size_t(layout_.ep));
        for (std::size_t p = 0; p < to.size(); ++p) to[p] = c->offsets[(p + 1) * El] - c->offsets[p * El];
        rows.push_back(to);
        traffic_[std::size_t(rank)].node_sends += remote_node_sends(here, c->routing.indices.data(), c->n_tokens, c->routing.top_k);
    }
    rows_.push_back(rows);
    next_ = (next_ + 1) % shards_;
}

std::vector<ExpertTraffic> TrafficEmulator::take() {
    // Leaf i of rank r exchanges with leaf i of every other rank of the group, layer by layer.
    const std::size_t per = std::size_t(shards_ / layout_.ep), ep = std::size_t(layout_.ep);
    for (std::size_t base = 0; base + std::size_t(shards_) <= rows_.size(); base += std::size_t(shards_))
        for (std::size_t r = 0; r < ep; ++r) {
            ExpertLayout here = layout_;
            here.rank = int(r);
            for (std::size_t i = 0; i < per; ++i) {
                const auto& mine = rows_[base + r * per + i];
                for (std::size_t b = 0; b < mine.size(); ++b) {
                    std::vector<std::size_t> received(ep);
                    for (std::size_t q = 0; q < ep; ++q) received[q] = rows_[base + q * per + i].at(b)[r];
                    traffic_[r] += expert_traffic(here, mine[b], received, dim_);
                }
            }
        }
    rows_.clear();
    std::vector<ExpertTraffic> out(ep);
    std::swap(out, traffic_);
    return out;
}

template <class T>
std::vector<Moe<T>*> moe_blocks(ModelWeights<T>& w) {
    std::vector<Moe<T>*> out;
    for (auto& b : w.layers)
        if (!b.dense) out.push_back(&b.moe);
    for (auto& mod : w.mtp)
        if (!mod.block.dense) out.push_back(&mod.block.moe);
    return out;
}
template std::vector<Moe<float>*> moe_blocks<float>(ModelWeights<float>&);

void release_experts(ModelWeights<float>& w, const ExpertLayout& l, bool keep_own) {
    for (Moe<float>* b : moe_blocks(w))
        for (std::size_t e = 0; e < b->experts.size(); ++e)
            if (!keep_own || l.place_of(e) != l.place())
                for (Matrix<float>* x : {&b->experts[e].w1, &b->experts[e].w2, &b->experts[e].w3}) *x = Matrix<float>();
}

void restore_experts(ModelWeights<float>& w, const ExpertLayout& l) {
    for (Moe<float>* b : moe_blocks(w))
        for (std::size_t e = 0; e < b->experts.size(); ++e)
            if (l.place_of(e) != l.place()) b->experts[e] = Mlp<float>::zeros(b->experts[e].dim, b->experts[e].inter_dim);
}
template std::vector<Moe<double>*> moe_blocks<double>(ModelWeights<double>&);

namespace {

void add_into(Mlp<float>& a, const Mlp<float>& b) {  // a = a + b, the left operand first as everywhere
    for (auto [x, y] : {std::pair{&a.w1, &b.w1}, std::pair{&a.w2, &b.w2}, std::pair{&a.w3, &b.w3}})
        for (std::size_t i = 0; i < x->size(); ++i) x->data()[i] = x->data()[i] + y->data()[i];
}

}  // namespace

ExpertParallel::ExpertParallel(Comm& comm, const ExpertLayout& layout, Model<float>& m, std::size_t levels)
    : comm_(comm), layout_(layout) {
    layout_.validate();
    if (comm.size() % layout_.ep != 0)
        throw ConfigError("--ep " + std::to_string(layout_.ep) + " must divide the " + std::to_string(comm.size()) + " ranks");
    for (Moe<float>* b : moe_blocks(m.w)) blocks_.push_back(b);
    if (blocks_.empty()) throw ConfigError("--ep needs a model with MoE layers");
    if (layout_.experts != m.moe.n_routed_experts)
        throw ConfigError("the expert layout is for " + std::to_string(layout_.experts) + " experts, the model has " +
                          std::to_string(m.moe.n_routed_experts));
    const Mlp<float> zero = Mlp<float>::zeros(m.moe.dim, m.moe.moe_inter_dim);
    grads_.assign(levels, std::vector<std::vector<std::vector<Mlp<float>>>>(
                              std::size_t(layout_.ep),
                              std::vector<std::vector<Mlp<float>>>(blocks_.size(), std::vector<Mlp<float>>(layout_.per_rank(), zero))));
}

std::size_t ExpertParallel::block_of(const Moe<float>& m) const {
    const auto it = std::find(blocks_.begin(), blocks_.end(), &m);
    if (it == blocks_.end()) throw ConfigError("expert parallelism: a MoE block of another model");
    return std::size_t(it - blocks_.begin());
}

void ExpertParallel::exchange_into(const float* send, const std::vector<std::size_t>& sent, float* recv,
                                   const std::vector<std::size_t>& received, std::size_t dim) {
    // World-sized arrays: the ranks outside this group exchange nothing with it.
    const std::size_t N = std::size_t(comm_.size()), row = dim * sizeof(float);
    std::vector<std::size_t> sb(N, 0), sa(N, 0), rb(N, 0), ra(N, 0);
    std::size_t s_at = 0, r_at = 0;
    for (int p = 0; p < layout_.ep; ++p) {
        const std::size_t w = std::size_t(layout_.first() + p);
        sb[w] = sent[std::size_t(p)] * row;
        sa[w] = s_at;
        rb[w] = received[std::size_t(p)] * row;
        ra[w] = r_at;
        s_at += sb[w];
        r_at += rb[w];
    }
    comm_.alltoallv(send, sb.data(), sa.data(), recv, rb.data(), ra.data());
}

void ExpertParallel::exchange(const float* send, const std::vector<std::size_t>& sent, std::vector<float>& recv,
                              const std::vector<std::size_t>& received, std::size_t dim) {
    std::size_t rows = 0;
    for (std::size_t r : received) rows += r;
    recv.resize(rows * dim);
    exchange_into(send, sent, recv.data(), received, dim);
}

std::vector<std::size_t> ExpertParallel::rows_to(const MoeCache<float>& c) const {
    const std::size_t El = layout_.per_rank();
    std::vector<std::size_t> rows(std::size_t(layout_.ep));
    for (std::size_t p = 0; p < rows.size(); ++p) rows[p] = c.offsets[(p + 1) * El] - c.offsets[p * El];
    return rows;
}

std::vector<std::size_t> ExpertParallel::rows_from(const MoeCache<float>& c) const {
    const std::size_t El = layout_.per_rank();
    std::vector<std::size_t> rows(std::size_t(layout_.ep));
    for (std::size_t q = 0; q < rows.size(); ++q) rows[q] = c.recv_offsets[(q + 1) * El] - c.recv_offsets[q * El];
    return rows;
}

void ExpertParallel::forward(const Moe<float>& m, MoeCache<float>& c, LinearMode precision) {
    const std::size_t El = layout_.per_rank(), ep = std::size_t(layout_.ep), D = m.cfg.dim, k = c.routing.top_k;
    // 1. counts: to place p, how many rows go to each of its experts (c.offsets differences, as 64-bit words).
    std::vector<std::uint64_t> mine(ep * El), theirs(ep * El);
    for (std::size_t e = 0; e < ep * El; ++e) mine[e] = c.offsets[e + 1] - c.offsets[e];
    {
        const std::size_t N = std::size_t(comm_.size()), bytes = El * sizeof(std::uint64_t);
        std::vector<std::size_t> sb(N, 0), sa(N, 0), rb(N, 0), ra(N, 0);
        for (std::size_t p = 0; p < ep; ++p) {
            const std::size_t w = std::size_t(layout_.first()) + p;
            sb[w] = rb[w] = bytes;
            sa[w] = ra[w] = p * bytes;
        }
        comm_.alltoallv(mine.data(), sb.data(), sa.data(), theirs.data(), rb.data(), ra.data());
    }
    c.recv_offsets.assign(ep * El + 1, 0);
    for (std::size_t i = 0; i < ep * El; ++i) c.recv_offsets[i + 1] = c.recv_offsets[i] + std::size_t(theirs[i]);
    const std::vector<std::size_t> out = rows_to(c), in = rows_from(c);
    // 2. dispatch: each block of xg to the rank that holds its experts.
    exchange(c.xg.data(), out, c.x_recv, in, D);
    // 3. this rank's experts, once per (source, expert): the same GEMMs as the source's own process.
    y_recv_.resize(c.x_recv.size());
    c.recv_cache.resize(ep * El);
    const std::size_t first_expert = std::size_t(layout_.place()) * El;
    detail::parallel_for(ep * El, [&](std::size_t i) {
        const std::size_t o = c.recv_offsets[i], rows = c.recv_offsets[i + 1] - o;
        mlp_forward(m.experts[first_expert + i % El], c.x_recv.data() + o * D, rows, y_recv_.data() + o * D,
                    c.recv_cache[i], false, precision);
    });
    // 4. combine: the outputs back into yg, where the rows came from.
    exchange_into(y_recv_.data(), in, c.yg.data(), out, D);
    // The layer's traffic, forward and backward (training runs both; counted once, here).
    ExpertTraffic t = expert_traffic(layout_, out, in, D);
    t.node_sends = remote_node_sends(layout_, c.routing.indices.data(), c.n_tokens, k);
    if (count_traffic) traffic_ += t;
}

void ExpertParallel::backward(const Moe<float>& m, const MoeCache<float>& c, const float* dyg, float* dxg,
                              LinearMode precision) {
    const std::size_t El = layout_.per_rank(), ep = std::size_t(layout_.ep), D = m.cfg.dim;
    const std::vector<std::size_t> out = rows_to(c), in = rows_from(c);
    exchange(dyg, out, dy_recv_, in, D);
    dx_recv_.resize(dy_recv_.size());
    auto& grads = grads_.at(level_);
    const std::size_t block = block_of(m), first_expert = std::size_t(layout_.place()) * El;
    // Each (source, expert) writes its own gradient buffer: independent pieces.
    detail::parallel_for(ep * El, [&](std::size_t i) {
        const std::size_t o = c.recv_offsets[i], rows = c.recv_offsets[i + 1] - o;
        mlp_backward(m.experts[first_expert + i % El], c.x_recv.data() + o * D, rows, c.recv_cache[i],
                     dy_recv_.data() + o * D, dx_recv_.data() + o * D, grads[i / El][block][i % El], false, precision);
    });
    exchange_into(dx_recv_.data(), in, dxg, out, D);
}

void ExpertParallel::start_leaf(std::size_t level) {
    level_ = level;
    for (auto& source : grads_.at(level))
        for (auto& block : source)
            for (auto& g : block)
                for (Matrix<float>* w : {&g.w1, &g.w2, &g.w3}) w->fill(0.0f);
}

void ExpertParallel::add_level(std::size_t level) {
    for (std::size_t q = 0; q < grads_.at(level).size(); ++q)
        for (std::size_t b = 0; b < blocks_.size(); ++b)
            for (std::size_t e = 0; e < layout_.per_rank(); ++e) add_into(grads_[level][q][b][e], grads_.at(level + 1)[q][b][e]);
}

void ExpertParallel::reduce() {
    auto& g = grads_.at(0);
    const std::size_t ep = std::size_t(layout_.ep), El = layout_.per_rank();
    // The tree over the places: round `bit` adds place q + bit into place q (the lower on the left),
    // the bracketing tree_allreduce gives the ranks of a group. The sum ends in place 0's buffers.
    for (std::size_t bit = 1; bit < ep; bit <<= 1)
        for (std::size_t q = 0; q < ep; q += 2 * bit)
            for (std::size_t b = 0; b < blocks_.size(); ++b)
                for (std::size_t e = 0; e < El; ++e) add_into(g[q][b][e], g[q + bit][b][e]);
}

Mlp<float>& ExpertParallel::summed(std::size_t block, std::size_t local) { return grads_.at(0).at(0).at(block).at(local); }

std::size_t ExpertParallel::gradient_bytes() const {
    std::size_t n = 0;
    for (const auto& level : grads_)
        for (const auto& source : level)
            for (const auto& block : source)
                for (const Mlp<float>& g : block) n += g.w1.size() + g.w2.size() + g.w3.size();
    return n * sizeof(float);
}

ExpertTraffic ExpertParallel::take_traffic() {
    const ExpertTraffic t = traffic_;
    traffic_ = {};
    return t;
}

}  // namespace eva
