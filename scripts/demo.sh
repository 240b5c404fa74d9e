#!/usr/bin/env bash
# The main job: installs what is missing, builds the native release, and trains eva-mini (DeepSeek-V3's
# structure at 11 M parameters: MLA, sigmoid-routed MoE with aux-loss-free balancing) on Debian's
# fortunes collection, printing the loss, tokens/s, validation loss and a sample of generated text.
# Extra arguments go to `eva train` (e.g. scripts/demo.sh --steps 2000 --out mini.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
echo
exec ./build/release/eva train --steps 300 --eval-every 100 "$@"
