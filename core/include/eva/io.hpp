// eva — reading untrusted input files and writing outputs atomically.
//
// An input path may name anything: a directory, a FIFO that never ends, /dev/zero, a file that grows
// while it is read. read_input_file accepts only a regular file (after symlinks) whose size is known
// before a byte is read and is within both the caller's bound and the memory available, so nothing is
// allocated that the file cannot pay for. Outputs go to a temporary file in the same folder that is
// renamed over the target, so a crash or a full disk never leaves half a file (and never a stray
// temporary); require_writable checks an output path before any work starts.
#pragma once

#include <cstdint>
#include <string>

namespace eva {

/// Bounds on input files (the memory check comes on top of these).
constexpr std::uint64_t kMaxConfigFileBytes = std::uint64_t(16) << 20;  // JSON configs: real ones are < 2 kB
constexpr std::uint64_t kMaxTextFileBytes = std::uint64_t(1) << 30;     // training text (4 bytes per token held)
constexpr std::uint64_t kMaxDataFileBytes = std::uint64_t(1) << 40;     // safetensors / .npy (memory decides first)

/// The whole content of the regular file `path`. `what` names it in errors ("--config", "checkpoint"):
/// FileError if it is missing, unreadable, a directory, a FIFO or device, larger than `max_bytes` or than
/// the available memory, or if it changes size while being read.
std::string read_input_file(const std::string& path, std::uint64_t max_bytes, const std::string& what);

/// True if `path` names an existing directory (for inputs that may be a folder, like a fortunes corpus).
bool is_directory(const std::string& path);

/// FileError unless `path` can be written as an output: not empty, not a directory or special file,
/// in an existing folder this process may write to. Checked before work starts, it touches nothing.
void require_writable(const std::string& path, const std::string& what);

/// Writes `content` to `path` through a temporary file in the same folder (flushed to disk) and a
/// rename; on any failure the temporary is removed and `path` is untouched.
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace eva
