#!/usr/bin/env bash
# Serves the built browser page (build/wasm/web) on http://127.0.0.1:PORT/ (default 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8080}
[ -f build/wasm/web/eva.wasm ] || { echo "serve: build/wasm/web is not built: run scripts/web.sh" >&2; exit 2; }
/usr/bin/python3 -c "import socket; socket.socket().bind(('127.0.0.1', $port))" 2>/dev/null ||
  { echo "serve: port $port is in use or invalid: give another, e.g. $0 8081" >&2; exit 2; }
echo "eva page: http://127.0.0.1:$port/   (one panel alone: http://127.0.0.1:$port/?panel=kv&embed=1)"
[ -f build/wasm/web/docs/index.html ] && echo "eva course: http://127.0.0.1:$port/docs/"
echo "Ctrl-C stops the server."
exec /usr/bin/python3 -m http.server --bind 127.0.0.1 --directory build/wasm/web "$port"
