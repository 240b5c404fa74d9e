#!/usr/bin/env bash
# Installs everything eva's build, tests and demo need on a fresh Debian 12 / Ubuntu machine.
# Idempotent: a second run checks, finds everything present, and changes nothing.
#   apt packages  — compilers, header-only math libraries, test/bench frameworks, Chromium, PyTorch,
#                   Open MPI (the distributed-training build and its tests)
#   ImGui sources — Debian's source package (the binary package ships no imgui*.cpp), into .cache/
#   npm packages  — playwright-core (drives the system Chromium; it downloads no browser)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache"
mkdir -p "$cache"

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libxtensor-dev libxsimd-dev xtl-dev nlohmann-json3-dev libcli11-dev
  catch2 libbenchmark-dev libopenblas-dev
  emscripten wabt
  libimgui-dev chromium
  python3 python3-numpy python3-torch
  fortunes pandoc
  openmpi-bin libopenmpi-dev
  dpkg-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  log="$cache/apt-install.log"
  { sudo_ apt-get update -qq && sudo_ env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; echo "setup: apt-get failed (full log: $log)" >&2; exit 1; }
else
  echo "setup: apt packages present"
fi

# Dear ImGui core sources (imgui.cpp, imgui_draw.cpp, ...) come only with the source package.
if ! ls "$cache"/imgui-*/imgui.cpp >/dev/null 2>&1; then
  if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Enable source entries by editing the existing ones (deb822 or classic one-line format).
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && sudo_ sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    done
    [ -f /etc/apt/sources.list ] && sudo_ sed -i -E 's/^deb (.*)$/deb \1\ndeb-src \1/' /etc/apt/sources.list
    sudo_ apt-get update -qq
  fi
  (cd "$cache" && apt-get source -qq imgui >/dev/null 2>&1) || true
  ls "$cache"/imgui-*/imgui.cpp >/dev/null 2>&1 || { echo "setup: could not unpack the imgui source package" >&2; exit 1; }
  echo "setup: ImGui sources in $(ls -d "$cache"/imgui-*/)"
else
  echo "setup: ImGui sources present"
fi

# playwright-core for the browser tests (uses /usr/bin/chromium; no browser download).
if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
  echo "setup: npm packages installed"
else
  echo "setup: npm packages present"
fi
