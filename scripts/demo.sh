#!/usr/bin/env bash
# The main job: installs what is missing, builds the native release, and runs the `eva` command line
# on its built-in default (for now: the GEMM self-check every eva layer builds on).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
echo
./build/release/eva info
echo
./build/release/eva gemm
