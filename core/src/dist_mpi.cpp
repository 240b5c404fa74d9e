// eva — the Open MPI implementation of Comm (built only with EVA_MPI).
//
// MPI is initialised lazily, and only for a process that mpirun started (its environment names the
// job), so `eva info` or a plain `eva train` never pays MPI's start-up. Errors: MPI's default handler
// on MPI_COMM_WORLD already aborts the whole job when a peer dies; a rank that fails by itself
// (bad input) prints its one line and calls abort(2), which ends every rank with status 2.
#include <mpi.h>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "eva/dist.hpp"
#include "eva/error.hpp"

namespace eva {
namespace {

// mpirun ends the surviving ranks with SIGTERM when one rank dies (killed, crashed, or exited with an
// error): each says so in one line and exits with status 2 instead of vanishing silently. The line is
// formatted in advance: a signal handler may only call async-signal-safe functions (write, _exit).
char g_stopped[160];
std::size_t g_stopped_len = 0;
extern "C" void on_sigterm(int) {
    if (g_stopped_len) (void)!::write(STDERR_FILENO, g_stopped, g_stopped_len);
    ::_exit(2);
}

// Open MPI (OMPI_COMM_WORLD_SIZE) and PMIx-based launchers (PMIX_RANK) both set these for their ranks.
bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK"); }

int count_of(std::size_t bytes) {
    if (bytes > std::size_t(std::numeric_limits<int>::max()))
        throw ConfigError("an MPI message of " + std::to_string(bytes) + " bytes exceeds MPI's int count");
    return int(bytes);
}

class MpiComm final : public Comm {
public:
    MpiComm() {
        int ready = 0;
        MPI_Initialized(&ready);
        if (!ready) MPI_Init(nullptr, nullptr);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
        const int n = std::snprintf(g_stopped, sizeof g_stopped,
                                    "eva: error: rank %d of %d: stopped by mpirun (another rank failed, or the run was interrupted)\n",
                                    rank_, size_);
        g_stopped_len = n > 0 ? std::min(std::size_t(n), sizeof g_stopped - 1) : 0;
        std::signal(SIGTERM, on_sigterm);
        std::atexit([] {
            int done = 0;
            MPI_Finalized(&done);
            if (!done) MPI_Finalize();
        });
    }
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void sendrecv(const void* send, void* recv, std::size_t bytes, int peer) override {
        MPI_Sendrecv(send, count_of(bytes), MPI_BYTE, peer, 0, recv, count_of(bytes), MPI_BYTE, peer, 0, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
    }
    void allgather(const void* send, void* recv, std::size_t bytes) override {
        MPI_Allgather(send, count_of(bytes), MPI_BYTE, recv, count_of(bytes), MPI_BYTE, MPI_COMM_WORLD);
    }
    void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_at, void* recv,
                   const std::size_t* recv_bytes, const std::size_t* recv_at) override {
        const std::size_t n = std::size_t(size_);
        std::vector<int> sc(n), sd(n), rc(n), rd(n);
        for (std::size_t p = 0; p < n; ++p) {
            sc[p] = count_of(send_bytes[p]);
            sd[p] = count_of(send_at[p]);
            rc[p] = count_of(recv_bytes[p]);
            rd[p] = count_of(recv_at[p]);
        }
        MPI_Alltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv, rc.data(), rd.data(), MPI_BYTE, MPI_COMM_WORLD);
    }
    [[noreturn]] void abort(int code) override {
        MPI_Abort(MPI_COMM_WORLD, code);
        std::_Exit(code);  // (MPI_Abort does not return)
    }

private:
    int rank_ = 0, size_ = 1;
};

Comm* g_world = nullptr;  // set by the first world()

}  // namespace

Comm& world() {
    static std::unique_ptr<Comm> c = launched_by_mpirun() ? std::unique_ptr<Comm>(new MpiComm) : std::unique_ptr<Comm>(new LocalComm);
    g_world = c.get();
    return *c;
}

bool world_is_distributed() { return g_world && g_world->size() > 1; }
bool mpi_built() { return true; }

}  // namespace eva
