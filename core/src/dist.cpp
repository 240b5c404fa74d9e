// eva — collectives over a Comm, and the one-process Comm.
#include "eva/dist.hpp"

#include <cstdlib>
#include <cstring>

#include "eva/error.hpp"

namespace eva {

void LocalComm::sendrecv(const void*, void*, std::size_t, int peer) {
    throw ConfigError("sendrecv to rank " + std::to_string(peer) + " in a one-process run");
}

void LocalComm::allgather(const void* send, void* recv, std::size_t bytes) {
    if (bytes) std::memcpy(recv, send, bytes);
}

void LocalComm::alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_at, void* recv,
                          const std::size_t* recv_bytes, const std::size_t* recv_at) {
    // One rank sends to itself: a copy.
    if (send_bytes[0] != recv_bytes[0])
        throw ShapeError("alltoallv: " + std::to_string(send_bytes[0]) + " bytes sent to itself, " +
                         std::to_string(recv_bytes[0]) + " expected");
    if (send_bytes[0])
        std::memcpy(static_cast<char*>(recv) + recv_at[0], static_cast<const char*>(send) + send_at[0], send_bytes[0]);
}

void LocalComm::abort(int code) { std::exit(code); }

#if !defined(EVA_MPI)
Comm& world() {
    static LocalComm local;
    return local;
}
bool world_is_distributed() { return false; }
bool mpi_built() { return false; }
#endif

void tree_allreduce(Comm& c, float* data, std::size_t n, std::vector<float>& scratch, int stride) {
    const int N = c.size(), r = c.rank();
    if (N & (N - 1)) throw ConfigError("the gradient all-reduce needs a power-of-two number of ranks, got " + std::to_string(N));
    if (stride < 1 || (stride & (stride - 1)) || N % stride)
        throw ConfigError("the all-reduce stride must be a power of two dividing the " + std::to_string(N) + " ranks");
    scratch.resize(n);
    // Round j joins the subtrees of ranks r and r^(stride·2^j). Both compute lower + upper with the
    // same operands, so both hold the same bits afterwards.
    for (int bit = stride; bit < N; bit <<= 1) {
        const int peer = r ^ bit;
        c.sendrecv(data, scratch.data(), n * sizeof(float), peer);
        c.allreduce_traffic.sent += n * sizeof(float);
        c.allreduce_traffic.received += n * sizeof(float);
        if (r < peer)
            for (std::size_t i = 0; i < n; ++i) data[i] = data[i] + scratch[i];
        else
            for (std::size_t i = 0; i < n; ++i) data[i] = scratch[i] + data[i];
    }
}

namespace {
template <class T>
std::vector<T> allgather_vector(Comm& c, const std::vector<T>& mine) {
    std::vector<T> out(mine.size() * std::size_t(c.size()));
    c.allgather(mine.data(), out.data(), mine.size() * sizeof(T));
    return out;
}
}  // namespace

std::vector<double> allgather(Comm& c, const std::vector<double>& mine) { return allgather_vector(c, mine); }
std::vector<std::uint64_t> allgather(Comm& c, const std::vector<std::uint64_t>& mine) { return allgather_vector(c, mine); }

}  // namespace eva
