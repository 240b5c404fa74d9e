# Third-party dependencies, all from Debian packages installed by scripts/setup.sh.
#
# Natively they are found with find_package. Under Emscripten, find_package cannot see the header-only
# packages and -I/usr/include must never be used (glibc's headers would shadow Emscripten's libc), so a
# folder of symlinks to just the needed header trees stands in for /usr/include, and the same target
# names are defined over it.
if(EMSCRIPTEN)
  set(EVA_SYSINC "${CMAKE_BINARY_DIR}/sysinc")
  file(MAKE_DIRECTORY "${EVA_SYSINC}")
  foreach(dir IN ITEMS xtensor xtl xsimd catch2 nlohmann CLI)
    if(NOT EXISTS "/usr/include/${dir}")
      message(FATAL_ERROR "/usr/include/${dir} is missing: run scripts/setup.sh")
    endif()
    file(CREATE_LINK "/usr/include/${dir}" "${EVA_SYSINC}/${dir}" SYMBOLIC)
  endforeach()
  add_library(eva_sysinc INTERFACE)
  target_include_directories(eva_sysinc SYSTEM INTERFACE "${EVA_SYSINC}")
  add_library(xtensor ALIAS eva_sysinc)
  add_library(nlohmann_json::nlohmann_json ALIAS eva_sysinc)
  add_library(Catch2::Catch2 ALIAS eva_sysinc)
else()
  find_package(xtensor REQUIRED)
  find_package(nlohmann_json 3 REQUIRED)
  find_package(Catch2 2 REQUIRED)
  find_package(CLI11 REQUIRED)
  find_package(benchmark REQUIRED)
  # OpenBLAS is the named baseline of the GEMM benchmark (single-threaded cblas_sgemm).
  find_library(EVA_OPENBLAS NAMES openblas REQUIRED)
  find_path(EVA_OPENBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas openblas-pthread REQUIRED)
endif()
