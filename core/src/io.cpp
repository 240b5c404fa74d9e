// eva — bounded input files and atomic outputs. See io.hpp.
#include "eva/io.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef __EMSCRIPTEN__
#include <sys/mman.h>
#endif

#include "eva/checked.hpp"
#include "eva/error.hpp"

namespace eva {
namespace {

std::string why() { return std::strerror(errno); }

const char* kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

// Closes the descriptor on every path out of a function.
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

std::string parent_dir(const std::string& path) {
    const auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

// Opens `path` into f and returns its size: a regular file of at most max_bytes, else a FileError naming
// `name`. O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then tells what was opened, so the
// check and the read (or the mapping) concern the same file.
std::uint64_t open_regular_input(Fd& f, const std::string& path, std::uint64_t max_bytes, const std::string& name) {
    f.fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f.fd < 0) throw FileError(name + ": cannot open (" + why() + ")");
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw FileError(name + ": cannot stat (" + why() + ")");
    if (!S_ISREG(st.st_mode)) throw FileError(name + ": is " + kind(st.st_mode) + ", not a regular file");
    const auto size = std::uint64_t(st.st_size);
    if (size > max_bytes)
        throw FileError(name + ": is " + format_bytes(size) + "; at most " + format_bytes(max_bytes) + " are allowed here");
    return size;
}

}  // namespace

std::string read_input_file(const std::string& path, std::uint64_t max_bytes, const std::string& what) {
    const std::string name = what.empty() ? path : what + " " + path;
    Fd f{-1};
    const std::uint64_t size = open_regular_input(f, path, max_bytes, name);
    require_memory(size, "reading " + name);
    std::string bytes(std::size_t(size), '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
        const ssize_t n = ::read(f.fd, bytes.data() + got, bytes.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw FileError(name + ": read error (" + why() + ")");
        if (n == 0) throw FileError(name + ": shrank while being read");
        got += std::size_t(n);
    }
    char extra;
    if (::read(f.fd, &extra, 1) > 0) throw FileError(name + ": grew while being read");
    return bytes;
}

namespace {

// An input read into memory (WebAssembly, and empty files, which cannot be mapped).
struct StringBytes final : InputBytes {
    std::string bytes;
    explicit StringBytes(std::string b) : bytes(std::move(b)) {}
    const char* data() const override { return bytes.data(); }
    std::size_t size() const override { return bytes.size(); }
};

#ifndef __EMSCRIPTEN__
struct MappedBytes final : InputBytes {
    void* base = nullptr;
    std::size_t length = 0;
    ~MappedBytes() override {
        if (base) ::munmap(base, length);
    }
    const char* data() const override { return static_cast<const char*>(base); }
    std::size_t size() const override { return length; }
};
#endif

}  // namespace

std::shared_ptr<const InputBytes> hold_bytes(std::string bytes) { return std::make_shared<StringBytes>(std::move(bytes)); }

std::uint64_t input_file_size(const std::string& path, const std::string& what) {
    const std::string name = what.empty() ? path : what + " " + path;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw FileError(name + ": cannot open (" + why() + ")");
    if (!S_ISREG(st.st_mode)) throw FileError(name + ": is " + kind(st.st_mode) + ", not a regular file");
    return std::uint64_t(st.st_size);
}

std::shared_ptr<const InputBytes> map_input_file(const std::string& path, std::uint64_t max_bytes, const std::string& what) {
#ifdef __EMSCRIPTEN__
    return std::make_shared<StringBytes>(read_input_file(path, max_bytes, what));
#else
    const std::string name = what.empty() ? path : what + " " + path;
    Fd f{-1};
    const std::uint64_t size = open_regular_input(f, path, max_bytes, name);
    if (size == 0) return std::make_shared<StringBytes>(std::string());
    auto m = std::make_shared<MappedBytes>();
    m->length = to_size(size, name);
    m->base = ::mmap(nullptr, m->length, PROT_READ, MAP_PRIVATE, f.fd, 0);
    if (m->base == MAP_FAILED) {
        m->base = nullptr;
        throw FileError(name + ": cannot map (" + why() + ")");
    }
    return m;
#endif
}

bool is_directory(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void require_writable(const std::string& path, const std::string& what) {
    const std::string name = what.empty() ? path : what + " " + path;
    if (path.empty()) throw FileError(what + ": empty output path");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        throw FileError(name + ": is " + kind(st.st_mode) + "; an output must be a regular file");
    const std::string dir = parent_dir(path);
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw FileError(name + ": the folder " + dir + " does not exist");
    if (::access(dir.c_str(), W_OK | X_OK) != 0) throw FileError(name + ": cannot write in " + dir + " (" + why() + ")");
}

// The temporary is named after this process, so two writers of the same target never share one.
AtomicWriter::AtomicWriter(const std::string& path) : path_(path), tmp_(path + ".tmp" + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw FileError(path_ + ": cannot write (" + why() + ")");
}

AtomicWriter::~AtomicWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) std::remove(tmp_.c_str());
}

FileError AtomicWriter::fail(const std::string& msg) {
    const std::string reason = why();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    std::remove(tmp_.c_str());
    return FileError(path_ + ": " + msg + " (" + reason + ")");
}

void AtomicWriter::write(const char* data, std::size_t n) {
    if (fd_ < 0) throw FileError(path_ + ": write after commit or failure");
    std::size_t done = 0;
    while (done < n) {
        const ssize_t k = ::write(fd_, data + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) throw fail("write failed (disk full?)");
        done += std::size_t(k);
    }
}

void AtomicWriter::commit() {
    if (fd_ < 0) throw FileError(path_ + ": commit after failure");
    // On disk before the rename: a crash then leaves either the old file or the whole new one.
    // (A file system without fsync — EINVAL, ENOSYS in some sandboxes — is not an error; a disk error is.)
    if (::fsync(fd_) != 0 && (errno == EIO || errno == ENOSPC || errno == EDQUOT)) throw fail("write failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw fail("write failed");
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) throw fail("cannot replace");
    committed_ = true;
}

void write_file_atomically(const std::string& path, const std::string& content) {
    AtomicWriter out(path);
    out.write(content.data(), content.size());
    out.commit();
}

}  // namespace eva
