#!/usr/bin/env python3
"""Draws the course's figures as SVG from the JSON that eva's command line prints.

Every point plotted comes from a command run here (`eva ... --json`, or the MLA decode benchmark's
Google Benchmark JSON); nothing is typed in by hand. Python's standard library only: the SVG is written
directly (no plotting package is needed, and none has to be installed).

usage: docs_figures.py --bin build/release --out build/docs/figures [--quick]
  --quick  fewer training steps (for trying the script out; the docs build uses the full settings)
"""
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

PALETTE = ["#1f6fb4", "#d1495b", "#2a9d8f", "#e9a23b", "#6c4ba3", "#555555"]


# ------------------------------------------------------------------------------------------ running
def run_json(argv, lines=False):
    """Runs a command and parses its stdout as one JSON object, or as JSON lines."""
    start = time.monotonic()
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout.decode()
    print(f"  {time.monotonic() - start:6.1f} s  {' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))}")
    if lines:
        return [json.loads(l) for l in out.splitlines() if l.strip()]
    return json.loads(out)


def write_npy(path, rows, cols, values):
    """A float32 .npy file (format version 1.0), so no NumPy is needed to make eva's input."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"  # pad the preamble to a multiple of 64 bytes
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(struct.pack(f"<{rows * cols}f", *values))


# ------------------------------------------------------------------------------------------ drawing
def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_ticks(lo, hi, count=5):
    span = hi - lo if hi > lo else abs(hi) or 1.0
    step = 10 ** math.floor(math.log10(span / count))
    for m in (1, 2, 2.5, 5, 10):
        if span / (m * step) <= count:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    return ticks


def fmt(v):
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:g}"


def fmt_bytes(v):
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if v >= size:
            return f"{v / size:g} {unit}"
    return f"{v:g} B"


class Chart:
    """A plot area with linear or log10 axes, drawn into an SVG string."""

    def __init__(self, title, x_label, y_label, width=640, height=380):
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = 80, 170, 40, 52
        self.parts = []

    def axes(self, x_range, y_range, log_x=False, log_y=False, x_fmt=fmt, y_fmt=fmt, x_ticks=None, y_ticks=None):
        self.log_x, self.log_y = log_x, log_y
        self.x0, self.x1 = [math.log10(v) if log_x else v for v in x_range]
        self.y0, self.y1 = [math.log10(v) if log_y else v for v in y_range]
        pw, ph = self.w - self.left - self.right, self.h - self.top - self.bottom
        p = self.parts
        p.append(f'<rect x="{self.left}" y="{self.top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>')
        for v in x_ticks if x_ticks is not None else self._ticks(x_range, log_x):
            x = self.px(v)
            p.append(f'<line x1="{x:.1f}" y1="{self.top}" x2="{x:.1f}" y2="{self.top + ph}" stroke="#e4e4e4"/>')
            p.append(f'<text x="{x:.1f}" y="{self.top + ph + 16}" text-anchor="middle">{esc(x_fmt(v))}</text>')
        for v in y_ticks if y_ticks is not None else self._ticks(y_range, log_y):
            y = self.py(v)
            p.append(f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            p.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(y_fmt(v))}</text>')
        p.append(f'<text x="{self.left + pw / 2}" y="{self.h - 12}" text-anchor="middle">{esc(self.x_label)}</text>')
        p.append(f'<text transform="translate(16 {self.top + ph / 2}) rotate(-90)" text-anchor="middle">'
                 f'{esc(self.y_label)}</text>')

    @staticmethod
    def _ticks(rng, log):
        if not log:
            return nice_ticks(*rng)
        lo, hi = math.floor(math.log10(rng[0]) + 1e-9), math.ceil(math.log10(rng[1]) - 1e-9)
        return [10.0 ** e for e in range(lo, hi + 1) if rng[0] <= 10.0 ** e <= rng[1] * (1 + 1e-9)]

    def px(self, v):
        v = math.log10(v) if self.log_x else v
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.w - self.left - self.right)

    def py(self, v):
        v = math.log10(v) if self.log_y else v
        return self.h - self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.h - self.top - self.bottom)

    def line(self, xs, ys, colour, dash=None, markers=False):
        pts = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(xs, ys))
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.8"{d}/>')
        if markers:
            for x, y in zip(xs, ys):
                self.parts.append(f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="3" fill="{colour}"/>')

    def legend(self, entries):
        x = self.w - self.right + 14
        for i, (label, colour, dash) in enumerate(entries):
            y = self.top + 10 + 20 * i
            d = f' stroke-dasharray="{dash}"' if dash else ""
            self.parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{colour}" stroke-width="2.5"{d}/>')
            self.parts.append(f'<text x="{x + 28}" y="{y + 4}">{esc(label)}</text>')

    def svg(self, note):
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.w} {self.h}" width="{self.w}" '
                f'height="{self.h}" font-family="sans-serif" font-size="12" fill="#222">\n'
                f'<desc>generated by scripts/docs_figures.py from: {esc(note)}</desc>\n'
                f'<text x="{self.left}" y="22" font-size="14" font-weight="bold">{esc(self.title)}</text>\n')
        return head + "\n".join(self.parts) + "\n</svg>\n"


# ------------------------------------------------------------------------------------------ figures
def cached_run(argv, cache):
    """Training runs are the slow part (minutes): their JSON lines are kept in `cache` and reused while
    the command line is the same and the eva binary is older than the kept file (runs are deterministic)."""
    key = "-".join(a.lstrip("-") for a in argv[1:] if a != "--json")
    path = os.path.join(cache, key + ".jsonl")
    if os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(argv[0]):
        print(f"  (kept) {' '.join(argv[1:])}")
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    rows = run_json(argv, lines=True)
    with open(path + ".partial", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(path + ".partial", path)
    return rows


def fig_loss(eva, out, quick):
    steps, every = (40, 10) if quick else (150, 25)
    base = [eva, "train", "--steps", str(steps), "--batch", "8", "--seq-len", "64", "--eval-every", str(every),
            "--seed", "1", "--json"]
    cache = os.path.join(out, "runs")
    os.makedirs(cache, exist_ok=True)
    runs = {p: cached_run(base + ["--precision", p], cache) for p in ("fp32", "fp8")}
    c = Chart("eva-mini on Debian's fortunes: FP32 vs FP8 (DeepSeek-V3 recipe)", "optimizer step",
              "loss (nats/byte)")
    pts = {p: [(r["step"], r["loss"], r.get("val_loss")) for r in rows if "step" in r and not r.get("final")]
           for p, rows in runs.items()}
    all_loss = [l for rows in pts.values() for _, l, _ in rows]
    c.axes((0, steps), (math.floor(min(all_loss) * 4) / 4, math.ceil(max(all_loss) * 4) / 4))
    legend = []
    for i, p in enumerate(("fp32", "fp8")):
        colour = PALETTE[i]
        c.line([s for s, _, _ in pts[p]], [l for _, l, _ in pts[p]], colour, dash="3 3")
        val = [(s, v) for s, _, v in pts[p] if v is not None]
        c.line([s for s, _ in val], [v for _, v in val], colour, markers=True)
        legend += [(f"{p} train", colour, "3 3"), (f"{p} validation", colour, None)]
    c.legend(legend)
    note = " ".join(base[1:]) + " [--precision fp32|fp8]"
    write(out, "loss.svg", c.svg(note))
    return {p: [v for _, _, v in pts[p] if v is not None][-1] for p in pts}


def fig_maxvio(eva, out, quick):
    steps = 100 if quick else 300
    base = [eva, "moe", "route", "--config", "mini", "--tokens", "1024", "--steps", str(steps), "--seed", "1", "--json"]
    modes = ("none", "aux-free", "seq-loss", "aux-loss")
    runs = {m: run_json(base + ["--balance", m]) for m in modes}
    c = Chart("Load balance of mini's router (16 experts, top-2), fresh batch each step", "balancing step",
              "MaxVio = max load / mean load - 1")
    top = max(s["max_vio"] for r in runs.values() for s in r["steps"])
    c.axes((0, steps), (0, math.ceil(top * 2) / 2))
    dashes = {"aux-loss": "5 4"}
    for i, m in enumerate(modes):
        xs = [s["step"] for s in runs[m]["steps"]]
        ys = [s["max_vio"] for s in runs[m]["steps"]]
        c.line(xs, ys, PALETTE[i], dash=dashes.get(m))
    c.legend([(m, PALETTE[i], dashes.get(m)) for i, m in enumerate(modes)])
    write(out, "maxvio.svg", c.svg(" ".join(base[1:]) + " --balance none|aux-free|seq-loss|aux-loss"))
    return {m: runs[m]["steps"][-1]["max_vio"] for m in modes}


def fig_granularity(eva, out, tmp):
    """Activations whose few outlier channels grow from 1x to 10^4x the rest, quantized with each scale
    granularity and format: where one scale per tensor stops being enough."""
    rows, cols, outliers = 256, 1024, (3, 200, 517, 900)
    factors = [1, 10, 100, 1000, 10000]
    grans, fmts = ("tensor", "block", "tile"), ("e4m3", "e5m2")
    labels = {"tensor": "per tensor", "block": "128x128 blocks", "tile": "1x128 tiles"}
    err = {(f, g): [] for f in fmts for g in grans}
    for factor in factors:
        rng = random.Random(1)  # the same normal values each time; only the outliers' size changes
        values = []
        for _ in range(rows):
            row = [rng.gauss(0.0, 1.0) for _ in range(cols)]
            for ch in outliers:
                row[ch] *= factor
            values += row
        path = os.path.join(tmp, f"activations-x{factor}.npy")
        write_npy(path, rows, cols, values)
        for f in fmts:
            for g in grans:
                m = run_json([eva, "fp8", "quantize", "--input", path, "--format", f, "--granularity", g, "--json"])
                err[(f, g)].append(100.0 * m["metrics"]["mean_rel_error"])
    c = Chart("FP8 error vs outlier size and scale granularity", "outlier channels' size (x the others)",
              "mean relative error (%)", width=700)
    c.right = 230  # room for six legend entries
    flat = [v for vs in err.values() for v in vs]
    c.axes((factors[0], factors[-1]), (10 ** math.floor(math.log10(min(flat))), 10 ** math.ceil(math.log10(max(flat)))),
           log_x=True, log_y=True, x_ticks=factors, x_fmt=lambda v: f"{int(v)}")
    legend = []
    for i, g in enumerate(grans):
        for f, dash in zip(fmts, (None, "5 4")):
            c.line(factors, err[(f, g)], PALETTE[i], dash=dash, markers=True)
            legend.append((f"{f.upper()}, {labels[g]}", PALETTE[i], dash))
    c.legend(legend)
    note = (f"eva fp8 quantize --input activations-xF.npy --format e4m3|e5m2 --granularity tensor|block|tile --json; "
            f"activations: {rows}x{cols} standard normal (Python random, seed 1), channels {outliers} times F")
    write(out, "fp8-granularity.svg", c.svg(note))
    return {f"{f} {g}": dict(zip(factors, err[(f, g)])) for f in fmts for g in grans}


def fig_accumulation(eva, out):
    ks = [256, 512, 1024, 2048, 4096, 8192, 16384]
    series = {"14 bits, never": ["--accum-bits", "14", "--promote-every", "0"],
              "14 bits, every 128": ["--accum-bits", "14", "--promote-every", "128"],
              "13 bits, never": ["--accum-bits", "13", "--promote-every", "0"]}
    res = {name: [run_json([eva, "fp8", "gemm-error", "--k", str(k), "--json"] + a)["accumulation_rel_error"] * 100
                  for k in ks] for name, a in series.items()}
    c = Chart("FP8 GEMM accumulation error vs K (accumulator bits, promotion)", "K",
              "error vs exact product of the FP8 inputs (%)")
    flat = [v for vs in res.values() for v in vs]
    c.axes((ks[0], ks[-1]), (10 ** math.floor(math.log10(min(flat))), 10 ** math.ceil(math.log10(max(flat)))),
           log_x=True, log_y=True, x_ticks=ks, x_fmt=lambda v: f"{int(v)}")
    for i, (name, vs) in enumerate(res.items()):
        c.line(ks, vs, PALETTE[i], markers=True)
    c.legend([(n, PALETTE[i], None) for i, n in enumerate(res)])
    write(out, "fp8-accumulation.svg",
          c.svg("eva fp8 gemm-error --k K --accum-bits 14|13 --promote-every 0|128 --json"))
    return {n: dict(zip(ks, v)) for n, v in res.items()}


def fig_kv_memory(eva, out):
    lens = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
    rows = [run_json([eva, "mla", "memory", "--config", "v3", "--dtype", "bf16", "--seq-len", str(n), "--json"])
            for n in lens]
    names = [s["name"] for s in rows[0]["schemes"]]
    c = Chart("KV cache of one sequence, DeepSeek-V3 shapes (61 layers), bf16", "context (tokens)",
              "cache bytes")
    flat = [s["bytes_sequence"] for r in rows for s in r["schemes"]]
    lo, hi = 4 ** math.floor(math.log(min(flat), 4)), 4 ** math.ceil(math.log(max(flat), 4))
    c.axes((lens[0], lens[-1]), (lo, hi), log_x=True, log_y=True, x_ticks=lens[::2] + [lens[-1]],
           x_fmt=lambda v: f"{int(v) // 1024}K", y_fmt=fmt_bytes,
           y_ticks=[4.0 ** e for e in range(round(math.log(lo, 4)), round(math.log(hi, 4)) + 1)])
    for i, name in enumerate(names):
        c.line(lens, [r["schemes"][i]["bytes_sequence"] for r in rows], PALETTE[i], markers=True)
    c.legend([(n, PALETTE[i], None) for i, n in enumerate(names)])
    write(out, "kv-memory.svg", c.svg("eva mla memory --config v3 --dtype bf16 --seq-len N --json"))
    return {n: rows[-1]["schemes"][i]["bytes_sequence"] for i, n in enumerate(names)}


def fig_decode_latency(bench, out, tmp):
    """The MLA decode benchmark (one V2-Lite-sized layer): time per step vs context."""
    path = os.path.join(tmp, "bench_mla.json")
    argv = [bench, "--benchmark_filter=^decode/", "--benchmark_min_time=0.2", "--benchmark_out_format=json",
            f"--benchmark_out={path}"]
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"  {time.monotonic() - start:6.1f} s  eva_bench_mla {' '.join(argv[1:3])}")
    with open(path) as f:
        data = json.load(f)
    series = {}
    for b in data["benchmarks"]:
        _, kind, ctx = b["name"].split("/")[:3]
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0}[b["time_unit"]]
        series.setdefault(kind, []).append((int(ctx), b["cpu_time"] * scale))
    c = Chart("Decode step of one MLA layer (V2-Lite dims), fp32, 1 thread", "context (tokens)",
              "CPU time per step (ms)")
    ctxs = sorted({x for pts in series.values() for x, _ in pts})
    top = max(t for pts in series.values() for _, t in pts)
    c.axes((ctxs[0], ctxs[-1]), (0, top * 1.1), log_x=True, x_ticks=ctxs, x_fmt=lambda v: f"{int(v)}")
    names = {"absorbed": "MLA, absorbed cache", "naive": "MLA, naive cache", "mha": "MHA, same heads"}
    for i, kind in enumerate(("absorbed", "naive", "mha")):
        pts = sorted(series.get(kind, []))
        c.line([x for x, _ in pts], [t for _, t in pts], PALETTE[i], markers=True)
    c.legend([(names[k], PALETTE[i], None) for i, k in enumerate(("absorbed", "naive", "mha"))])
    write(out, "decode-latency.svg", c.svg("eva_bench_mla " + " ".join(argv[1:3]) + " (medians of CPU time)"))
    return {k: sorted(v) for k, v in series.items()}


def write(out, name, text):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        f.write(text)
    print(f"  wrote {os.path.join(out, name)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", required=True, help="folder holding eva and eva_bench_mla")
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    eva = os.path.join(a.bin, "eva")
    summary = {}
    with tempfile.TemporaryDirectory(prefix="eva-figures-") as tmp:
        summary["kv_memory_bytes_at_128k"] = fig_kv_memory(eva, a.out)
        summary["fp8_granularity"] = fig_granularity(eva, a.out, tmp)
        summary["fp8_accumulation_pct"] = fig_accumulation(eva, a.out)
        summary["final_max_vio"] = fig_maxvio(eva, a.out, a.quick)
        summary["final_val_loss"] = fig_loss(eva, a.out, a.quick)
        bench = os.path.join(a.bin, "eva_bench_mla")
        if os.path.exists(bench):
            summary["decode_ms"] = fig_decode_latency(bench, a.out, tmp)
        else:
            print(f"docs_figures: {bench} not built: no decode-latency figure", file=sys.stderr)
            return 1
    with open(os.path.join(a.out, "figures.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
