#!/usr/bin/env bash
# Builds the course (docs/*.md) as static HTML beside the browser page, into build/wasm/web/docs/
# (or the folder given as $1): pandoc with MathML (no script, no network), the figures drawn by
# scripts/docs_figures.py from the eva command line's JSON, the concept diagrams of docs/figures/, and
# docs/site/style.css.
# The figures are generated here, not committed, so they always show what the current code computes;
# the two training runs behind the loss figure (~3 min on 2 busy cores) are kept in build/docs/figures/runs/
# and rerun only when the eva binary is newer. Expects the packages of scripts/setup.sh (pandoc among them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/wasm/web/docs}
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target eva eva_bench_mla
python3 scripts/docs_figures.py --bin build/release --out build/docs/figures
mkdir -p "$out/figures"
cp build/docs/figures/*.svg "$out/figures/"
cp docs/figures/*.svg "$out/figures/"  # the concept diagrams, hand-written and committed
cp docs/site/style.css "$out/"
head=build/docs/head.html  # no favicon request (a 404 in the console otherwise)
echo '<link rel="icon" href="data:,">' >"$head"
# One navigation line on every page: the index and the six chapters, in order.
nav=build/docs/nav.html
{
  printf '<nav class="course"><a href="index.html">eva course</a>'
  for md in docs/[1-6]-*.md; do
    printf ' <a href="%s.html">%s</a>' "$(basename "$md" .md)" "$(sed -n '1s/^# //p' "$md" | cut -d: -f1)"
  done
  printf ' <a href="embedding.html">Embedding</a> <a href="../index.html">the live page</a></nav>\n'
} >"$nav"
for md in docs/*.md; do
  name=$(basename "$md" .md)
  pandoc "$md" -f gfm+tex_math_dollars -t html5 --standalone --mathml --css style.css \
    --metadata pagetitle="$(sed -n '1s/^# //p' "$md")" --lua-filter docs/site/links.lua \
    --include-in-header "$head" --include-before-body "$nav" -o "$out/$name.html"
done
echo "docs: $out/ ($(ls "$out"/*.html | wc -l) pages, $(ls "$out"/figures/*.svg | wc -l) figures)"
