#!/usr/bin/env bash
# Builds everything and runs every test suite:
#   1. native release     — Catch2 suite (ctest)
#   2. native debug       — the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. WebAssembly SIMD   — the same suite compiled with Emscripten, run under node
#      release-mpi        — eva built with Open MPI: distributed training under mpirun (tests/cli_mpi.sh)
#   4. fuzz               — libFuzzer on the file parsers, briefly, from the seed corpora in tests/fuzz/
#   5. browser            — the ImGui page in headless Chromium, driven by playwright-core
# Installs missing dependencies first (scripts/setup.sh). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export NODE_PATH=/usr/share/nodejs EMSDK_PYTHON=/usr/bin/python3  # Emscripten 3.1.6 on Debian needs both
jobs=$(nproc)
start=$SECONDS
for preset in release debug-asan wasm; do
  echo "== $preset: build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "== $preset: test"
  ctest --preset "$preset" -j "$jobs"
done
echo "== release-mpi: build eva with Open MPI, test distributed training (mpirun, 1, 2 and 4 ranks)"
cmake --preset release-mpi >/dev/null
cmake --build --preset release-mpi -j "$jobs"
ctest --preset release-mpi
echo "== fuzz: build and run (20 s per target)"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs"
for target in build/fuzz/fuzz_*; do
  [ -f "$target" ] && [ -x "$target" ] || continue
  name=$(basename "$target")
  mkdir -p "build/fuzz/corpus-$name"
  # -max_len: the deep-nesting seeds (100,000 levels) are 200 kB
  "$target" -max_total_time=20 -max_len=262144 -print_final_stats=1 "build/fuzz/corpus-$name" "tests/fuzz/corpus-${name#fuzz_}" \
    >"build/fuzz/$name.log" 2>&1 || { tail -n 40 "build/fuzz/$name.log"; echo "$name: failed" >&2; exit 1; }
  echo "$name: $(grep -E '^Done' "build/fuzz/$name.log"), last: $(grep -E '^#[0-9]+' "build/fuzz/$name.log" | tail -n 1)"
done
echo "== browser: test"
scripts/web.sh  # adds the pretrained checkpoint beside the page the wasm preset built
node --test tests/browser/
echo "== all suites passed in $((SECONDS - start)) s"
echo "suites: 5 passed, 0 failed"
