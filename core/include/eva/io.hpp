// eva — reading untrusted input files and writing outputs atomically.
//
// An input path may name anything: a directory, a FIFO that never ends, /dev/zero, a file that grows
// while it is read. read_input_file accepts only a regular file (after symlinks) whose size is known
// before a byte is read and is within both the caller's bound and the memory available, so nothing is
// allocated that the file cannot pay for. Outputs go to a temporary file in the same folder that is
// renamed over the target, so a crash or a full disk never leaves half a file (and never a stray
// temporary); require_writable checks an output path before any work starts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "eva/error.hpp"

namespace eva {

/// Bounds on input files (the memory check comes on top of these).
constexpr std::uint64_t kMaxConfigFileBytes = std::uint64_t(16) << 20;  // JSON configs: real ones are < 2 kB
constexpr std::uint64_t kMaxTextFileBytes = std::uint64_t(1) << 30;     // training text (4 bytes per token held)
constexpr std::uint64_t kMaxDataFileBytes = std::uint64_t(1) << 40;     // safetensors / .npy (memory decides first)

/// The whole content of the regular file `path`. `what` names it in errors ("--config", "checkpoint"):
/// FileError if it is missing, unreadable, a directory, a FIFO or device, larger than `max_bytes` or than
/// the available memory, or if it changes size while being read.
std::string read_input_file(const std::string& path, std::uint64_t max_bytes, const std::string& what);

/// The read-only bytes of a whole input file, held for as long as someone needs them.
class InputBytes {
public:
    virtual ~InputBytes() = default;
    virtual const char* data() const = 0;
    virtual std::size_t size() const = 0;
};

/// `bytes` as InputBytes (a file's content already in memory).
std::shared_ptr<const InputBytes> hold_bytes(std::string bytes);

/// The regular file `path` (checked as read_input_file does, up to `max_bytes`) without copying it:
/// natively the file is mapped (mmap), so a 4 GB shard costs no memory until its pages are touched and
/// then only page cache the kernel can drop; in WebAssembly (no mmap) it is read into memory, under the
/// memory check. A mapped file must not be truncated by another process while it is in use.
std::shared_ptr<const InputBytes> map_input_file(const std::string& path, std::uint64_t max_bytes, const std::string& what);

/// The size of the regular file `path`, or FileError (as read_input_file) if it is not one.
std::uint64_t input_file_size(const std::string& path, const std::string& what);

/// True if `path` names an existing directory (for inputs that may be a folder, like a fortunes corpus).
bool is_directory(const std::string& path);

/// FileError unless `path` can be written as an output: not empty, not a directory or special file,
/// in an existing folder this process may write to. Checked before work starts, it touches nothing.
void require_writable(const std::string& path, const std::string& what);

/// An output written piece by piece (a checkpoint converted tensor by tensor) into a temporary file in
/// the same folder, renamed over `path` by commit(); destroyed without commit, it removes the temporary.
class AtomicWriter {
public:
    explicit AtomicWriter(const std::string& path);
    ~AtomicWriter();
    AtomicWriter(const AtomicWriter&) = delete;
    AtomicWriter& operator=(const AtomicWriter&) = delete;
    void write(const char* data, std::size_t n);
    /// Flushes to disk and renames over the target.
    void commit();

private:
    FileError fail(const std::string& msg);
    std::string path_, tmp_;
    int fd_ = -1;
    bool committed_ = false;
};

/// Writes `content` to `path` through a temporary file in the same folder (flushed to disk) and a
/// rename; on any failure the temporary is removed and `path` is untouched.
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace eva
