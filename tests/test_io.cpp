// Input files are regular files of bounded size; outputs are written atomically and never leave a
// temporary behind; output paths are checked before any work.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#ifndef __EMSCRIPTEN__
#include <sys/stat.h>
#endif

#include "eva/error.hpp"
#include "eva/io.hpp"

using namespace eva;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::string& path, std::uint64_t max = kMaxConfigFileBytes) {
    try {
        read_input_file(path, max, "--input");
    } catch (const FileError& e) {
        return e.what();
    }
    return "";
}

// A folder of this test case's own, removed at its end. ctest runs the cases as parallel processes,
// so a folder shared by name was removed by one case while another was still creating files in it.
struct ScratchDir {
    const fs::path dir = fs::temp_directory_path() / ("eva_test_io_" + std::to_string(::getpid()));
    ScratchDir() { fs::create_directories(dir); }
    ~ScratchDir() { fs::remove_all(dir); }
    fs::path operator/(const std::string& name) const { return dir / name; }
};

}  // namespace

TEST_CASE("read_input_file: the whole regular file; directories and oversize files refused", "[io]") {
    const ScratchDir scratch;
    const fs::path p = scratch / "a.txt";
    std::ofstream(p, std::ios::binary) << std::string("ab\0cd", 5);
    CHECK(read_input_file(p.string(), 5, "x") == std::string("ab\0cd", 5));
    CHECK(error_of(p.string(), 4).find("at most 4 bytes are allowed") != std::string::npos);
    CHECK(error_of(scratch.dir.string()).find("is a directory, not a regular file") != std::string::npos);
    CHECK(error_of((scratch / "missing").string()).find("cannot open (No such file") != std::string::npos);
}

#ifndef __EMSCRIPTEN__
TEST_CASE("read_input_file: /dev/zero and a FIFO are refused up front, without reading", "[io]") {
    CHECK(error_of("/dev/zero").find("is a character device") != std::string::npos);
    const ScratchDir scratch;
    const fs::path fifo = scratch / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(error_of(fifo.string()).find("is a FIFO") != std::string::npos);  // and does not block
}
#endif

TEST_CASE("write_file_atomically and require_writable", "[io]") {
    const ScratchDir scratch;
    const fs::path p = scratch / "out.bin";
    write_file_atomically(p.string(), "first");
    write_file_atomically(p.string(), "second");
    CHECK(read_input_file(p.string(), 100, "") == "second");
    for (const auto& e : fs::directory_iterator(p.parent_path()))
        CHECK(e.path().filename().string().find(".tmp") == std::string::npos);  // no stray temporary
    CHECK_NOTHROW(require_writable(p.string(), "--out"));
    CHECK_NOTHROW(require_writable((p.parent_path() / "new.bin").string(), "--out"));
    CHECK_THROWS_WITH(require_writable(p.parent_path().string(), "--out"), Catch::Contains("is a directory"));
    CHECK_THROWS_WITH(require_writable("/no/such/folder/x.bin", "--out"), Catch::Contains("does not exist"));
    // A target that cannot be replaced (a directory): the error comes, and no temporary is left.
    const fs::path dir = scratch / "adir";
    fs::create_directories(dir);
    CHECK_THROWS_AS(write_file_atomically(dir.string(), "x"), FileError);
    for (const auto& e : fs::directory_iterator(p.parent_path()))
        CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
}
