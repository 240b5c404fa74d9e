#!/usr/bin/env bash
# Builds the browser page into build/wasm/web/: the wasm preset (eva.js, eva.wasm, index.html) and the
# pretrained mini checkpoint the panels show (mini.safetensors). The native `eva train` produces it once —
# a few minutes — with one MTP module (DeepSeek-V3's --mtp 1, so the KV panel can decode speculatively),
# and `eva convert --dtype fp8` stores it as the V3 release stores its weights: every Linear weight inside
# the blocks as E4M3 codes with a float32 weight_scale_inv per 128x128 block, the rest BF16 (about 14 MB
# instead of 56 MB in float32). Both are reused until the training settings below change.
# Expects the packages of scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export NODE_PATH=/usr/share/nodejs EMSDK_PYTHON=/usr/bin/python3  # Emscripten 3.1.6 on Debian needs both
jobs=$(nproc)
# The pretrained checkpoint's training run (docs/web-kv.md quotes its validation loss and acceptance).
steps=700 seed=1 mtp=1 lr=6e-3 warmup=30 batch=16
name=mini-s${seed}-${steps}-b${batch}-lr${lr}-w${warmup}-mtp${mtp}
asset=build/pretrained/$name.safetensors tmp=build/pretrained/partial fp8=build/pretrained/$name-fp8.safetensors
if [ ! -f "$asset" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$jobs" --target eva
  mkdir -p build/pretrained
  echo "web: training the pretrained mini checkpoint ($name; once)"
  ./build/release/eva train --steps "$steps" --seed "$seed" --mtp "$mtp" --lr "$lr" --warmup "$warmup" \
    --batch "$batch" --eval-every 100 --json --out "$tmp.safetensors" >"build/pretrained/$name.jsonl"
  # A run that diverged ends with a null (non-finite) validation loss: the panels would then show a
  # model of NaNs, so stop here instead of publishing it.
  tail -n 1 "build/pretrained/$name.jsonl" | python3 -c 'import json, sys
v = json.load(sys.stdin).get("val_loss")
sys.exit(0 if isinstance(v, float) else "web: the pretrained run diverged (final val_loss %s); not publishing it" % json.dumps(v))'
  mv "$tmp.safetensors" "$asset"
  rm -f "$tmp.optim.safetensors"
fi
if [ ! -f "$fp8" ]; then
  [ -x build/release/eva ] || { cmake --preset release >/dev/null && cmake --build --preset release -j "$jobs" --target eva; }
  ./build/release/eva convert "$asset" "$fp8" --dtype fp8
fi
cmake --preset wasm >/dev/null
cmake --build --preset wasm -j "$jobs"
cp "$fp8" build/wasm/web/mini.safetensors  # the page loads it with the core loader (FP8 dequantized)
scripts/docs.sh build/wasm/web/docs  # the course (docs/*.md) as HTML beside the page
# The Train panel's corpus: six of Debian's fortunes files as plain text ('%' separator lines made blank,
# as load_corpus reads them), about 430 KB, so the page needs no fortunes package at run time.
for f in cookie humorists literature food kids love; do sed 's/^%$//' "/usr/share/games/fortunes/$f"; done \
  >build/wasm/web/corpus.txt
echo "web: build/wasm/web/ ($(du -sh build/wasm/web | cut -f1))"
