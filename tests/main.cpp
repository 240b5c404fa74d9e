// The Catch2 runner shared by the native and WebAssembly builds of the test suite.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
