// eva — the processes of a distributed run and the few collective operations training needs.
//
// The core never calls MPI itself: it talks to a `Comm`, and a build without MPI only has the local,
// one-process Comm (every operation is then a copy or a no-op). The MPI build (CMake option EVA_MPI)
// adds the Open MPI implementation in dist_mpi.cpp, chosen by world() when the process was started by
// mpirun.
//
// Determinism across rank counts. Floating-point addition is commutative but not associative, so a sum
// is only reproducible if its bracketing is fixed. tree_allreduce fixes it: with a power-of-two number
// of ranks N, round j pairs rank r with rank r XOR 2^j and both replace their buffer by left + right
// (the lower rank's buffer on the left). After log2 N rounds every rank holds the same sum, bracketed as
// the balanced binary tree over the ranks — the top of the same midpoint-split tree a single process
// evaluates over its pieces of work (see Trainer: shards of the batch), so 1, 2 or 4 ranks produce the
// same bits. (An MPI_Allreduce would not do: MPI leaves the order of its reduction unspecified.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace eva {

/// Byte counters of one kind of traffic (what this rank sent and received).
struct Traffic {
    std::uint64_t sent = 0, received = 0;
};

class Comm {
public:
    virtual ~Comm() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    /// Sends `bytes` from `send` to `peer` and receives as many from it into `recv` (one exchange).
    virtual void sendrecv(const void* send, void* recv, std::size_t bytes, int peer) = 0;
    /// Every rank's `bytes` from `send`, in rank order, into `recv` (size() · bytes).
    virtual void allgather(const void* send, void* recv, std::size_t bytes) = 0;
    /// The personalised all-to-all (MPI_Alltoallv, in bytes): to every rank p, send_bytes[p] bytes from
    /// send + send_at[p]; from every rank p, recv_bytes[p] bytes into recv + recv_at[p]. The arrays have
    /// size() entries; a pair of ranks must agree on what one sends the other.
    virtual void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_at, void* recv,
                           const std::size_t* recv_bytes, const std::size_t* recv_at) = 0;
    /// Ends every process of the run with exit status `code` (after this rank printed why).
    [[noreturn]] virtual void abort(int code) = 0;
    /// Bytes this rank moved in tree_allreduce (the gradient all-reduce), for the traffic figures.
    Traffic allreduce_traffic;
};

/// The single process: rank 0 of 1.
class LocalComm final : public Comm {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void sendrecv(const void* send, void* recv, std::size_t bytes, int peer) override;
    void allgather(const void* send, void* recv, std::size_t bytes) override;
    void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_at, void* recv,
                   const std::size_t* recv_bytes, const std::size_t* recv_at) override;
    [[noreturn]] void abort(int code) override;
};

/// The run this process belongs to: with the MPI build and a process started by mpirun, MPI's world
/// (MPI is initialised on the first call); otherwise a LocalComm. The same object on every call.
Comm& world();
/// Whether world() was called and is a run of more than one process (then an error must end every
/// rank: abort). Never starts MPI itself.
bool world_is_distributed();
/// True for builds with EVA_MPI.
bool mpi_built();

/// Sum of `data` [n] over all ranks, in place, bracketed as the binary tree over the ranks (above).
/// With `stride` s (a power of two dividing size()), over the ranks r, r ± s, r ± 2s, … only: the upper
/// rounds of the same tree, for data that the ranks within each block of s hold apart (expert
/// parallelism: each place of a group its own experts). ConfigError unless size() is a power of two.
/// `scratch` is resized to n.
void tree_allreduce(Comm& c, float* data, std::size_t n, std::vector<float>& scratch, int stride = 1);

/// Every rank's vector (all of length n) in rank order: out[r·n + i].
std::vector<double> allgather(Comm& c, const std::vector<double>& mine);
std::vector<std::uint64_t> allgather(Comm& c, const std::vector<std::uint64_t>& mine);

}  // namespace eva
