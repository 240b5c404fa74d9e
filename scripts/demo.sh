#!/usr/bin/env bash
# The main job: installs what is missing, builds the browser demo (the wasm page and the pretrained mini
# checkpoint it shows — trained once by the native build, a few minutes) and serves it on
# http://127.0.0.1:PORT/ (default 8080; the URL is printed). Open it and pick a panel; Ctrl-C stops.
# The command-line equivalent of the old main job: build/release/eva train (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8080}
[[ "$port" =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || { echo "demo: usage: scripts/demo.sh [PORT]" >&2; exit 2; }
scripts/setup.sh
scripts/web.sh
exec scripts/serve.sh "$port"
