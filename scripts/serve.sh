#!/usr/bin/env bash
# Serves the built browser page (build/wasm/web) on http://127.0.0.1:PORT/ (default 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8080}
[ -f build/wasm/web/eva.wasm ] || { echo "serve: build/wasm/web is not built: run scripts/test.sh or the wasm preset" >&2; exit 2; }
echo "eva page: http://127.0.0.1:$port/"
exec /usr/bin/python3 -m http.server --bind 127.0.0.1 --directory build/wasm/web "$port"
