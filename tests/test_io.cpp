// Input files are regular files of bounded size; outputs are written atomically and never leave a
// temporary behind; output paths are checked before any work.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
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

fs::path scratch(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / "eva_test_io";
    fs::create_directories(d);
    return d / name;
}

}  // namespace

TEST_CASE("read_input_file: the whole regular file; directories and oversize files refused", "[io]") {
    const fs::path p = scratch("a.txt");
    std::ofstream(p, std::ios::binary) << std::string("ab\0cd", 5);
    CHECK(read_input_file(p.string(), 5, "x") == std::string("ab\0cd", 5));
    CHECK(error_of(p.string(), 4).find("at most 4 bytes are allowed") != std::string::npos);
    CHECK(error_of(scratch("").string()).find("is a directory, not a regular file") != std::string::npos);
    CHECK(error_of(scratch("missing").string()).find("cannot open (No such file") != std::string::npos);
    fs::remove(p);
}

#ifndef __EMSCRIPTEN__
TEST_CASE("read_input_file: /dev/zero and a FIFO are refused up front, without reading", "[io]") {
    CHECK(error_of("/dev/zero").find("is a character device") != std::string::npos);
    const fs::path fifo = scratch("fifo");
    fs::remove(fifo);
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(error_of(fifo.string()).find("is a FIFO") != std::string::npos);  // and does not block
    fs::remove(fifo);
}
#endif

TEST_CASE("write_file_atomically and require_writable", "[io]") {
    const fs::path p = scratch("out.bin");
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
    const fs::path dir = scratch("adir");
    fs::create_directories(dir);
    CHECK_THROWS_AS(write_file_atomically(dir.string(), "x"), FileError);
    for (const auto& e : fs::directory_iterator(p.parent_path()))
        CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
    fs::remove_all(p.parent_path());
}
