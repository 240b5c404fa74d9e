#!/usr/bin/env bash
# Builds the browser page into build/wasm/web/: the wasm preset (eva.js, eva.wasm, index.html) and the
# pretrained mini checkpoint the panels show (mini.safetensors), which the native `eva train` produces
# once — a few minutes — and which is reused until its training settings below change.
# Expects the packages of scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export NODE_PATH=/usr/share/nodejs EMSDK_PYTHON=/usr/bin/python3  # Emscripten 3.1.6 on Debian needs both
jobs=$(nproc)
steps=300 seed=1  # the pretrained checkpoint's training run
asset=build/pretrained/mini-s${seed}-${steps}.safetensors tmp=build/pretrained/partial
if [ ! -f "$asset" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$jobs" --target eva
  mkdir -p build/pretrained
  echo "web: training the pretrained mini checkpoint ($steps steps; once)"
  ./build/release/eva train --steps "$steps" --seed "$seed" --eval-every "$steps" --json \
    --out "$tmp.safetensors" >build/pretrained/train.jsonl
  mv "$tmp.safetensors" "$asset"
  rm -f "$tmp.optim.safetensors"
fi
cmake --preset wasm >/dev/null
cmake --build --preset wasm -j "$jobs"
cp "$asset" build/wasm/web/mini.safetensors
scripts/docs.sh build/wasm/web/docs  # the course (docs/*.md) as HTML beside the page
echo "web: build/wasm/web/ ($(du -sh build/wasm/web | cut -f1))"
