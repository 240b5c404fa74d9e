#!/usr/bin/python3
"""Runs every eva benchmark and writes one JSON file and the Markdown report generated from it.

  GEMM            build/release/eva_bench        eva's kernel vs OpenBLAS cblas_sgemm, 1 thread
  FP8 codec       build/release/eva_bench_fp8    E4M3 encode/decode/tile quantization vs memcpy
  MLA decode      build/release/eva_bench_mla    absorbed vs naive MLA vs plain MHA, contexts 512–8192
  MoE layer       build/release/eva_bench_moe    DeepSeekMoE vs dense SwiGLU vs the per-token loop
  training        build/release/eva_bench_train  eva-mini steps vs PyTorch (native/bench_train.py)
  decoding        build/release/eva_bench_decode plain vs speculative (MTP) vs PyTorch (native/bench_decode.py)
  wasm vs native  build/release/eva_speed and build/wasm/eva_speed.js under node: the same GEMM harness
  MPI training    build/release-mpi/eva under mpirun (1 and 2 ranks, data and expert parallel) vs
                  build/release/eva on 2 OpenMP threads: eva-mini's training throughput
  Shakespeare     build/release/eva train --config baby on tinyshakespeare (--shakespeare PATH), 2 threads:
                  time to a validation loss, against nanoGPT's published CPU "baby" result

Each benchmark measures its named baseline in the same run; this script only runs them, keeps what they
print (their --json output, kept verbatim under "raw"), reshapes it into tables of medians and ratios,
and renders the tables as Markdown. The Markdown is never edited by hand: `--render` re-renders it from
the JSON, and the full default run regenerates both docs/performance.json and docs/performance.md;
`--only SECTIONS` re-measures some sections in place (the report says when each section was measured).

The PyTorch baseline needs /usr/bin/python3 with torch (Debian's python3-torch) and the wasm figures need
the wasm preset's eva_speed.js and node, the MPI figures the release-mpi preset's eva and mpirun; without
them those parts are skipped and the report says so.
Python standard library only.
"""
import argparse
import datetime
import glob
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"  # the interpreter native/bench_train.cpp runs the PyTorch baseline with
REPETITIONS = 5              # full mode: Google Benchmark repetitions, whose median is reported
SECTIONS = ["gemm", "fp8", "mla", "moe", "train", "decode", "wasm", "mpi", "shakespeare"]
# Every benchmark but the training one (which sets its thread counts itself) compares one thread of eva
# with one-thread baselines: builds whose core is multi-threaded (OpenMP) are held to one thread.
ONE_THREAD = {"EVA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


class BenchError(Exception):
    """A failure the user can act on; main() prints it as one line and exits with status 2."""


def rel(path):
    """Paths in the report are relative to the repository, so it does not name the machine's folders."""
    r = os.path.relpath(path, ROOT)
    return path if r.startswith("..") else r


# ------------------------------------------------------------------------------------------ running

class Runner:
    def __init__(self, build, wasm_build, quick, log_dir):
        self.build, self.wasm_build, self.quick, self.log_dir = build, wasm_build, quick, log_dir
        self.tmp = tempfile.mkdtemp(prefix="eva_bench_")

    def binary(self, name):
        path = os.path.join(self.build, name)
        if not os.access(path, os.X_OK):
            raise BenchError(f"{rel(path)} is missing: build the release preset first "
                             "(cmake --preset release && cmake --build --preset release)")
        return path

    def gbench_args(self, quick_filter=None):
        """Google Benchmark options: the median of REPETITIONS runs, or in quick mode one short run
        of just the benchmarks matching quick_filter (the largest cases take seconds to set up)."""
        if self.quick:
            return ["--benchmark_min_time=0.01"] + ([f"--benchmark_filter={quick_filter}"] if quick_filter else [])
        return [f"--benchmark_repetitions={REPETITIONS}", "--benchmark_report_aggregates_only=true"]

    def run(self, name, cmd, env=None):
        """Runs cmd, logging its output to LOG_DIR/name.log; returns stdout. Fails with the log's tail.
        `env`: extra variables (the training runs set their own thread counts; the rest get ONE_THREAD)."""
        log = os.path.join(self.log_dir, name + ".log")
        shown = " ".join(shlex.quote(rel(c) if os.path.isabs(c) else c) for c in cmd)
        print(f"  $ {shown}", file=sys.stderr, flush=True)
        threads = {} if name == "train" or name.startswith("train-") else ONE_THREAD
        env = dict(os.environ, **threads, **(env or {}))
        # An OPENBLAS_CORETYPE inherited from the environment (some machines set one, e.g. Haswell on
        # an AVX-512 CPU, which halves OpenBLAS's speed) would pin the baselines to that kernel; the
        # benchmarks give OpenBLAS (and PyTorch over it) the best kernel for the CPU themselves.
        env.pop("OPENBLAS_CORETYPE", None)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
        with open(log, "w") as f:
            f.write(p.stdout)
        if p.returncode != 0:
            tail = "\n".join(p.stdout.splitlines()[-15:])
            raise BenchError(f"{shown} exited with status {p.returncode} (log: {rel(log)}):\n{tail}")
        return p.stdout

    def run_json(self, name, cmd):
        """Runs a benchmark that writes its figures with --json FILE and returns them."""
        path = os.path.join(self.tmp, name + ".json")
        self.run(name, cmd + ["--json", path])
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise BenchError(f"{rel(cmd[0])} wrote no valid JSON to --json ({e})")


def command_text(cmd, one_thread=True):
    env = "".join(f"{k}={v} " for k, v in ONE_THREAD.items()) if one_thread else ""
    return env + " ".join(rel(c) if os.path.isabs(c) else c for c in cmd)


def table(columns, rows, title=None):
    """columns: (name, kind) pairs. kind: "case" (text), "median" (measured, positive), "ratio" (of two
    medians of the same run), "fraction" (a median over the fp32 FMA peak measured in the same run, shown
    as a percentage), "size" (computed, not timed), "loss" (a validation loss, 4 decimals). Cells that do not
    apply are None."""
    return {"title": title, "columns": [{"name": n, "kind": k} for n, k in columns], "rows": rows}


def span(values):
    lo, hi = min(values), max(values)
    return f"{lo:.2f}×" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}×"


# ---------------------------------------------------------------------------------------- sections

def bench_gemm(r):
    cmd = [r.binary("eva_bench")] + r.gbench_args()
    raw = r.run_json("gemm", cmd)
    peak = raw["peak_gflops"]
    rows = [[s["shape"], s["eva_gflops"], s["openblas_gflops"], s["ratio"], s["eva_gflops"] / peak,
             s["openblas_gflops"] / peak] for s in raw["shapes"]]
    return {
        "title": "GEMM: eva vs OpenBLAS",
        "what": "Single-precision C = op(A)·op(B) for the shapes the model uses (NN: both plain, NT: B "
                "transposed), both libraries on one thread in the same process; GFLOP/s = 2·M·N·K / CPU time; "
                f"% of peak: of one core's fp32 FMA peak measured in the same run ({peak:.0f} GFLOP/s, "
                f"{raw['peak_simd']}).",
        "baseline": raw["baseline"],
        "command": command_text(cmd),
        "tables": [table([("shape (M×N×K/ops)", "case"), ("eva GFLOP/s", "median"), ("OpenBLAS GFLOP/s", "median"),
                          ("eva / OpenBLAS", "ratio"), ("eva % of peak", "fraction"),
                          ("OpenBLAS % of peak", "fraction")], rows)],
        "headline": f"GEMM: eva's kernel ({raw['simd']}) runs at {span([x[3] for x in rows])} the speed of "
                    f"OpenBLAS's sgemm on one thread ({len(rows)} shapes), "
                    f"{min(x[4] for x in rows):.0%}–{max(x[4] for x in rows):.0%} of the core's FMA peak.",
        "machine": {"gemm_simd": raw["simd"], "openblas": raw["baseline"], "peak_gflops": peak,
                    "peak_simd": raw["peak_simd"], "clock_ghz": raw.get("clock_ghz")},
        "raw": raw,
    }


def bench_fp8(r):
    cmd = [r.binary("eva_bench_fp8")] + r.gbench_args()
    raw = r.run_json("fp8", cmd)
    rows = [[x["name"], x["gb_per_s"], x["ratio"]] for x in raw["results"]]
    rate = {x[0]: x[2] for x in rows}
    headline = "FP8: encoding float32 to E4M3 runs at {:.2f}× memcpy's rate over the same bytes".format(
        rate["fp8_encode_e4m3"]) if "fp8_encode_e4m3" in rate else "FP8: see the table"
    if "fp8_decode_e4m3" in rate:
        headline += f", decoding at {rate['fp8_decode_e4m3']:.2f}×"
    return {
        "title": "FP8 codec vs memcpy",
        "what": f"A {raw['bytes_per_pass'] >> 20} MiB float32 tensor per pass: the vectorized E4M3 encoder "
                "(saturating), the scalar reference encoder, the decoder, and the 128×128-tile quantization "
                "of a 4096×4096 activation; GB/s of float32 data, wall time.",
        "baseline": "memcpy of the same bytes, same run",
        "command": command_text(cmd),
        "tables": [table([("operation", "case"), ("GB/s", "median"), ("rate / memcpy rate", "ratio")], rows)],
        "headline": headline + ".",
        "raw": raw,
    }


def bench_mla(r):
    cmd = [r.binary("eva_bench_mla")] + r.gbench_args(quick_filter="decode/.*/(512|2048)$|prefill")
    raw = r.run_json("mla", cmd)
    decode = [[d["context"], d["absorbed_ms"], d["naive_ms"], d["mha_ms"], d["absorbed_cache_mib"],
               d["naive_cache_mib"], d["mha_cache_mib"], d["absorbed_over_mha"], d["naive_over_mha"]]
              for d in raw["decode"]]
    pre = raw.get("prefill", {})
    forward, absorbed = pre.get("prefill/forward/512"), pre.get("prefill/absorbed/512")
    prefill = [["batched forward (training path)", forward, None]] if forward else []
    if absorbed:
        prefill.append(["absorbed decode path, one chunk", absorbed, absorbed / forward if forward else None])
    longest = max(decode, key=lambda d: d[0])
    return {
        "title": "MLA decode: absorbed vs naive vs MHA",
        "what": "One attention layer with DeepSeek-V2-Lite's dimensions (dim 2048, 16 heads, kv_lora_rank 512, "
                "nope 128 + rope 64, v 128), fp32, one thread: the time of one decoding step after a context "
                "of L tokens (CPU time), with the cache each keeps; then a 512-token prompt chunk.",
        "baseline": "plain multi-head attention with the same heads and head sizes and a full K/V cache, same run",
        "command": command_text(cmd),
        "tables": [
            table([("context L", "case"), ("absorbed ms", "median"), ("naive ms", "median"), ("MHA ms", "median"),
                   ("absorbed cache MiB", "size"), ("naive cache MiB", "size"), ("MHA cache MiB", "size"),
                   ("absorbed / MHA time", "ratio"), ("naive / MHA time", "ratio")], decode, "decode step"),
            table([("prefill of 512 tokens", "case"), ("tokens/s", "median"), ("rate / forward rate", "ratio")],
                  prefill, "prefill"),
        ],
        "headline": f"MLA: at a context of {longest[0]} tokens a decoding step of absorbed MLA takes "
                    f"{longest[7]:.2f}× the time of MHA with a {longest[6] / longest[4]:.0f}× smaller cache "
                    f"(naive MLA: {longest[8]:.2f}×).",
        "raw": raw,
    }


def bench_moe(r):
    cmd = [r.binary("eva_bench_moe")] + r.gbench_args(quick_filter="/mini$")
    raw = r.run_json("moe", cmd)
    rows = [[c["case"], c["moe_tokens_per_s"], c["dense_tokens_per_s"], c["naive_tokens_per_s"],
             c["moe_over_dense_time"], c["naive_over_moe_time"]] for c in raw["cases"]]
    return {
        "title": "MoE layer vs dense vs per-token loop",
        "what": "One DeepSeekMoE layer's forward + backward (gate, grouped dispatch, shared experts) in tokens "
                "per second of CPU time, one thread; `mini` is eva-mini's layer, `v2-lite-slice` V2-Lite's "
                "layer with 16 of its 64 routed experts. The per-token loop runs on fewer tokens (its cost is "
                "linear in them).",
        "baseline": "a dense SwiGLU with the same activated width ((shared + top-k) · moe_inter_dim), and the "
                    "naive per-token loop over the selected experts, same run",
        "command": command_text(cmd),
        "tables": [table([("layer", "case"), ("MoE tokens/s", "median"), ("dense tokens/s", "median"),
                          ("per-token loop tokens/s", "median"), ("MoE / dense time", "ratio"),
                          ("loop / MoE time", "ratio")], rows)],
        "headline": "MoE: a DeepSeekMoE layer costs " + ", ".join(f"{x[4]:.2f}× ({x[0]})" for x in rows) +
                    " the time of the dense layer with the same activated parameters, and is " +
                    ", ".join(f"{x[5]:.0f}×" for x in rows) + " faster than the per-token loop.",
        "raw": raw,
    }


def flatten(obj, prefix=""):
    """{"a": {"b": 1}} → {"a_b": 1}: reads the training benchmark's figures whether flat or nested."""
    out = {}
    for k, v in obj.items():
        key = f"{prefix}_{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def torch_version():
    """torch.__version__ as /usr/bin/python3 sees it, or None when it cannot import torch."""
    try:
        p = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def number(v):
    """A figure as printed: a number, or a list of per-round figures whose median is taken."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return float(statistics.median(v))
    return None


def train_figures(raw):
    """(seconds, speedups) from eva_bench_train's JSON: seconds per step by (trainer, threads), from keys
    such as eva_seconds, eva_2t_seconds, eva_fp8_1t_seconds, torch_1t_seconds (a number, or a list of
    per-round medians; no thread count means 1 thread), and the benchmark's own ratios by (kind, N) where
    it prints them: ("torch", N) from speedup_vs_torch_Nt, ("fp8", N) from fp8_vs_fp32_Nt."""
    seconds, speedups = {}, {}
    for k, v in flatten(raw).items():
        m = re.fullmatch(r"(eva_fp8|eva|torch)_?(?:(\d+)_?t(?:hreads?)?)?_?(?:median_)?seconds", k)
        if m and number(v) is not None:
            seconds[(m.group(1), int(m.group(2) or 1))] = number(v)
        m = re.fullmatch(r"(?:speedup_vs_(torch)|(fp8)_vs_fp32)_(\d+)t", k)
        if m and number(v) is not None:
            speedups[(m.group(1) or m.group(2), int(m.group(3)))] = number(v)
    return seconds, speedups


def bench_train(r, torch):
    # Given explicitly (full mode: the benchmark's own defaults), so tokens per step are known here.
    batch, seq_len, steps = (2, 32, 2) if r.quick else (16, 128, 10)
    cmd = [r.binary("eva_bench_train"), "--batch", str(batch), "--seq-len", str(seq_len), "--steps", str(steps)]
    if r.quick and "--rounds" in r.run("train-help", [cmd[0], "--help"]):
        cmd += ["--rounds", "1"]  # a benchmark that alternates eva and PyTorch over rounds: one is enough
    raw = r.run_json("train", cmd)
    seconds, speedups = train_figures(raw)
    if not any(t == "eva" for t, _ in seconds):
        raise BenchError(f"eva_bench_train's JSON has no eva_*seconds figure: {json.dumps(raw)}")
    torch_measured = any(t == "torch" for t, _ in seconds)
    if torch and not torch_measured:
        raise BenchError("/usr/bin/python3 imports torch but eva_bench_train measured no PyTorch step "
                         f"(log: {rel(os.path.join(r.log_dir, 'train.log'))})")
    tokens = batch * seq_len
    rows = []
    for trainer, name in (("eva", "eva"), ("eva_fp8", "eva fp8"), ("torch", "PyTorch fp32")):
        for threads in sorted(th for t, th in seconds if t == trainer):
            s = seconds[(trainer, threads)]
            label = f"{name}, {threads} thread" + ("s" if threads > 1 else "")
            ratio = fp8_ratio = None
            if trainer == "torch":
                # eva's speedup against PyTorch at the same thread count, or against eva on 1 thread when
                # eva was only measured there (the label then says so).
                # The benchmark's own figure (it may be the median of per-round ratios) when it has one.
                eva_threads = threads if ("eva", threads) in seconds else 1
                if eva_threads != threads:
                    label += f", vs eva on {eva_threads} thread"
                    ratio = s / seconds[("eva", eva_threads)]
                else:
                    ratio = speedups.get(("torch", threads), s / seconds[("eva", eva_threads)])
            if trainer == "eva_fp8":  # the FP8 step against the fp32 one at the same thread count
                fp8_ratio = speedups.get(("fp8", threads), s / seconds[("eva", threads)])
            rows.append([label, s * 1e3, tokens / s, raw[f"{trainer}_{threads}t_mfu"], ratio, fp8_ratio])
    speedups = [x for x in rows if x[4] is not None]
    headline = ("Training: a PyTorch step takes " + ", ".join(f"{x[4]:.2f}× ({x[0]})" for x in speedups) +
                " the time of eva-mini's step" if speedups
                else f"Training: eva-mini trains at {rows[0][2]:.0f} tokens/s (PyTorch not measured)")
    headline += "; eva's MFU " + ", ".join(f"{x[3]:.0%} ({x[0].split(', ')[1]})" for x in rows if x[0].startswith("eva,"))
    fp8 = [x for x in rows if x[5] is not None]
    if fp8:
        headline += "; an FP8 step takes " + ", ".join(f"{x[5]:.2f}× ({x[0].split(', ')[1]})" for x in fp8) + \
                    " the fp32 step's time"
    return {
        "title": "Training: eva vs PyTorch",
        "what": f"One training step of eva-`{raw.get('config', 'mini')}` (forward, hand-written backward, "
                f"clipping, AdamW, bias update) on a batch of {batch}×{seq_len} tokens, against "
                "the same model, data and optimizer in PyTorch (float32, autograd; native/bench_train.py), "
                "and eva's same step with FP8 Linear layers (`--precision fp8`, emulated in fp32: E4M3 "
                "operands in 1×128 tiles and 128×128 blocks, timed right after the fp32 step in each round); "
                "median wall time per step (where the benchmark alternates the two over rounds: the median "
                "over rounds, and its ratio is the median of the per-round ratios). MFU: the step's model FLOPs, "
                f"counted from the config ({raw['step_gflop']:.2f} GFLOP = 6 × {raw['matmul_weights'] / 1e6:.3f} M "
                f"matmul weights × {tokens} tokens + {raw['step_gflop_attention']:.2f} of causal attention; "
                "core/include/eva/flops.hpp), ÷ time ÷ (threads × one core's fp32 FMA peak measured in the "
                f"same run, {raw['peak_gflops']:.0f} GFLOP/s).",
        "baseline": f"PyTorch {torch} on /usr/bin/python3, same run" if torch else "PyTorch (not measured)",
        "command": command_text(cmd, one_thread=False),
        "tables": [table([("trainer", "case"), ("ms/step", "median"), ("tokens/s", "median"), ("MFU", "fraction"),
                          ("PyTorch time / eva time", "ratio"), ("time / eva fp32", "ratio")], rows)],
        "headline": headline + ".",
        "skipped": [] if torch else ["PyTorch: /usr/bin/python3 cannot import torch (install python3-torch)"],
        "raw": raw,
    }


def bench_decode(r, torch):
    new, rounds = (16, 1) if r.quick else (128, 3)
    cmd = [r.binary("eva_bench_decode"), "--new", str(new), "--rounds", str(rounds)]
    raw = r.run_json("decode", cmd)
    plain = statistics.median(raw["plain_seconds_per_token"])
    spec = statistics.median(raw["speculative_seconds_per_token"])
    rows = [["eva plain (absorbed cache)", plain * 1e3, 1 / plain, None],
            ["eva speculative (1 MTP module)", spec * 1e3, 1 / spec, plain / spec]]
    if "torch_seconds_per_token" in raw:
        t = statistics.median(raw["torch_seconds_per_token"])
        rows.append(["PyTorch fp32, naive cache", t * 1e3, 1 / t, plain / t])
    if torch and "torch_seconds_per_token" not in raw:
        raise BenchError("/usr/bin/python3 imports torch but eva_bench_decode measured no PyTorch decode "
                         f"(log: {rel(os.path.join(r.log_dir, 'decode.log'))})")
    costs = [["one forward over 1 new token", raw["step1_seconds"] * 1e3, None],
             ["one verifying forward over 2 tokens", raw["verify2_seconds"] * 1e3, raw["verify2_over_step1"]]]
    headline = (f"Decoding (batch 1, greedy): speculative decoding with one MTP module runs at "
                f"{plain / spec:.2f}× plain decoding's tokens/s; the verifying forward of 2 tokens costs "
                f"{raw['verify2_over_step1']:.2f}× a 1-token step")
    if "speedup_vs_torch" in raw:
        headline += f"; PyTorch's naive-cache decode takes {raw['speedup_vs_torch']:.2f}× eva's time per token"
    return {
        "title": "Decoding: plain vs speculative vs PyTorch",
        "what": f"Greedy decoding of {new} tokens after a {raw['prompt_tokens']}-token prompt, batch 1, one thread, "
                f"by eva-mini with one MTP module ({raw['weights']}; its acceptance rate, "
                f"{raw['acceptance_rate']:.0%} here, is that of these weights, so the speculative speed is a "
                "property of this run, not of MTP). Plain: one forward per token through the absorbed cache. "
                "Speculative: the MTP module drafts, one forward over two positions verifies "
                f"(output {'identical to' if raw['speculative_identical'] else 'DIFFERENT from'} plain). "
                "PyTorch: the same weights, tests/torch_model.py's model with a naive per-head K/V cache "
                "(native/bench_decode.py). Medians over rounds; the second table is the cost that decides "
                f"whether speculation pays, at context {raw['context']}.",
        "baseline": f"eva plain decoding and PyTorch {torch} on /usr/bin/python3, same run" if torch
                    else "eva plain decoding, same run (PyTorch not measured)",
        "command": command_text(cmd),
        "tables": [table([("decoder", "case"), ("ms/token", "median"), ("tokens/s", "median"),
                          ("tokens/s ÷ eva plain's", "ratio")], rows),
                   table([("forward", "case"), ("ms", "median"), ("/ 1-token step", "ratio")], costs)],
        "headline": headline + ".",
        "skipped": [] if torch else ["PyTorch: /usr/bin/python3 cannot import torch (install python3-torch)"],
        "raw": raw,
    }


def wasm_training_table(runs):
    """The harness's eva-mini training steps (the browser Train panel's batch, one thread), per precision:
    median tokens/s per CPU second natively and in wasm, and their ratio. None for a harness without them."""
    def rate(target, precision):
        rates = [t["tokens_per_s"] for run in runs[target] for t in run.get("train", []) if t["precision"] == precision]
        return statistics.median(rates) if rates else None

    rows = []
    for t in runs["native"][0].get("train", []):
        native, wasm = rate("native", t["precision"]), rate("wasm", t["precision"])
        if native and wasm:
            rows.append([f"{t['config']}, {t['precision']}", native, wasm, wasm / native])
    return table([("training step", "case"), ("native tokens/s", "median"), ("wasm tokens/s", "median"),
                  ("wasm / native", "ratio")], rows, title="training step (Trainer::step)") if rows else None


def bench_wasm(r):
    native_cmd = [r.binary("eva_speed")]
    js = os.path.join(r.wasm_build, "eva_speed.js")
    node = shutil.which("node")
    section = {
        "title": "WebAssembly vs native: GEMM and a training step",
        "what": "The same plain timing harness (native/speed.cpp: median GFLOP/s of C = A·B over 5–11 products, and "
                "median tokens/s of 5 eva-mini training steps at the browser Train panel's batch, "
                "per second of the process's CPU time) built natively and with the wasm preset (SIMD128) and run under node, V8's optimizing "
                "tier from the start (--no-liftoff); "
                f"{1 if r.quick else REPETITIONS} alternating run(s) of each, median per shape.",
        "baseline": "the native build of the same harness, same run",
        "command": command_text(native_cmd) + f"; node --no-liftoff --no-experimental-fetch {rel(js)}",
        "tables": [],
        "skipped": [],
    }
    if not os.path.exists(js) or not node:
        why = (f"{rel(js)} is missing (cmake --preset wasm && cmake --build --preset wasm --target eva_speed)"
               if not os.path.exists(js) else "node is not installed")
        section["skipped"] = ["wasm: " + why]
        section["headline"] = "WebAssembly: not measured (" + why + ")."
        return section
    # Runs of the two builds alternate and each shape's figure is the median over the runs, so a burst of
    # load on a shared machine affects both sides alike.
    runs = {"native": [], "wasm": []}
    # V8 first runs a module in its baseline tier (Liftoff) and optimizes it in the background; on a busy
    # machine that lasts through the harness's short products, so V8 is told to optimize it up front.
    wasm_cmd = [node, "--no-liftoff", "--no-experimental-fetch", js]
    for i in range(1 if r.quick else REPETITIONS):
        for target, cmd in (("native", native_cmd), ("wasm", wasm_cmd)):
            runs[target].append(json.loads(r.run(f"speed-{target}-{i + 1}", cmd).strip().splitlines()[-1]))
    native, wasm = runs["native"][0], runs["wasm"][0]

    def gflops(target, shape):
        return statistics.median(g["gflops"] for run in runs[target] for g in run["gemm"] if g["shape"] == shape)

    shapes = [g["shape"] for g in native["gemm"] if any(w["shape"] == g["shape"] for w in wasm["gemm"])]
    rows = [[sh, gflops("native", sh), gflops("wasm", sh)] for sh in shapes]
    # Each target's own multiply-add peak, measured by the same harness (SIMD128 has no FMA: a multiply
    # and an add), so the fraction says how close each build's GEMM comes to what its instructions allow.
    peak = {t: statistics.median(run["peak_gflops"] for run in runs[t]) for t in runs}
    rows = [row + [row[2] / row[1], row[1] / peak["native"], row[2] / peak["wasm"]] for row in rows]
    section["tables"] = [table([("shape (M×N×K)", "case"), (f"native GFLOP/s ({native['simd']})", "median"),
                                (f"wasm GFLOP/s ({wasm['simd']})", "median"), ("wasm / native", "ratio"),
                                (f"native % of its peak ({peak['native']:.0f})", "fraction"),
                                (f"wasm % of its peak ({peak['wasm']:.0f})", "fraction")], rows,
                               title="GEMM")]
    section["headline"] = (f"WebAssembly: the GEMM under node runs at {span([x[3] for x in rows])} the native "
                           f"speed ({wasm['simd']} vs {native['simd']})")
    train = wasm_training_table(runs)
    if train:
        section["tables"].append(train)
        section["headline"] += f"; an eva-mini training step at {span([x[3] for x in train['rows']])}"
    section["headline"] += "."
    section["machine"] = {"node": subprocess.run([node, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip(),
                          "wasm_compiler": wasm_compiler(r.wasm_build)}
    section["raw"] = runs
    return section


# Open MPI refuses to start as root (CI runs as root) and more ranks than cores without these.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def bench_mpi(r):
    """eva-mini's training throughput in one process on 2 OpenMP threads (the baseline) against the same
    run under mpirun: 1 rank, 2 ranks of 1 thread (data parallel) and 2 ranks with --ep 2. All print the
    same losses (the shard tree; the script checks it), so only the time differs; on one machine MPI's
    messages are memory copies, which this measures honestly."""
    mpi_eva = os.path.join(os.path.dirname(r.build), "release-mpi", "eva")
    mpirun = shutil.which("mpirun")
    batch, seq_len, steps = (4, 32, 3) if r.quick else (16, 128, 8)
    train = ["train", "--batch", str(batch), "--seq-len", str(seq_len), "--steps", str(steps),
             "--eval-every", str(steps), "--json"]
    section = {
        "title": "Training on MPI ranks vs OpenMP threads",
        "what": f"eva-mini training steps ({batch}×{seq_len} tokens, {steps} steps; the first step is left out) "
                "in one process on 2 OpenMP threads, and the same run under mpirun on this one machine: "
                "1 rank of 2 threads (--bind-to none), 2 ranks of 1 thread each (data parallel: each rank computes half of the "
                "gradient shards, summed by the fixed-order all-reduce), and 2 ranks with --ep 2 (each rank "
                "also runs half of the routed experts; tokens dispatched and combined with MPI_Alltoallv). "
                "Median tokens/s of the whole batch per step, "
                f"{1 if r.quick else REPETITIONS} alternating round(s), median over rounds.",
        "baseline": "the single process on 2 OpenMP threads (build/release/eva), same run",
        "command": f"mpirun -np 2 build/release-mpi/eva {' '.join(train)} --threads 1 [--ep 2]",
        "tables": [],
        "skipped": [],
    }
    if not os.access(mpi_eva, os.X_OK) or not mpirun:
        why = (f"{rel(mpi_eva)} is missing (cmake --preset release-mpi && cmake --build --preset release-mpi)"
               if mpirun else "mpirun is not installed (openmpi-bin)")
        section["skipped"] = ["MPI: " + why]
        section["headline"] = "MPI: not measured (" + why + ")."
        return section
    cases = [("1 process, 2 OpenMP threads", [r.binary("eva")] + train + ["--threads", "2"]),
             # Open MPI binds each rank to one core by default: a rank of 2 threads needs --bind-to none,
             # or its threads share one core (measured: 0.64x the throughput).
             ("mpirun -np 1 --bind-to none, 2 threads",
              [mpirun, "--bind-to", "none", "-np", "1", mpi_eva] + train + ["--threads", "2"]),
             ("mpirun -np 2, 1 thread each", [mpirun, "--oversubscribe", "-np", "2", mpi_eva] + train + ["--threads", "1"]),
             ("mpirun -np 2 --ep 2, 1 thread each",
              [mpirun, "--oversubscribe", "-np", "2", mpi_eva] + train + ["--threads", "1", "--ep", "2"])]
    rates = {name: [] for name, _ in cases}
    losses = {}
    for i in range(1 if r.quick else REPETITIONS):
        for k, (name, cmd) in enumerate(cases):
            lines = [json.loads(l) for l in r.run(f"train-mpi-{k}-{i + 1}", cmd, MPI_ENV).splitlines()
                     if l.startswith("{")]
            step_lines = [l for l in lines if "step" in l]
            rates[name].append(statistics.median(l["tokens_per_s"] for l in step_lines[1:]))
            losses[name] = [l["loss"] for l in step_lines]
    reference = losses[cases[0][0]]
    for name, l in losses.items():
        if l != reference:
            raise BenchError(f"MPI: '{name}' printed other losses than one process ({l} vs {reference})")
    base = statistics.median(rates[cases[0][0]])
    rows = [[name, statistics.median(rates[name]), statistics.median(rates[name]) / base] for name, _ in cases]
    section["tables"] = [table([("run", "case"), ("tokens/s", "median"), ("÷ 2 OpenMP threads", "ratio")], rows)]
    section["headline"] = ("MPI: on this one machine 2 ranks train at " +
                           ", ".join(f"{x[2]:.2f}× ({x[0].split(', ')[0]})" for x in rows[2:]) +
                           " the throughput of one process on 2 OpenMP threads, with the same losses.")
    section["raw"] = {"tokens_per_s": rates}
    return section


# The tinyshakespeare runs: eva's `baby` preset (nanoGPT's CPU "baby" size) on 24 × 64-byte batches (twice
# nanoGPT's 12: the same loss per token here, at a higher throughput on 2 threads) cut into 2 gradient shards
# (one per thread: the fewest parallel regions), peak lr 4e-3 after 50 warmup steps and an aux-free bias speed
# γ of 0.01 (a few hundred steps need a faster bias than V3's 0.001; these won a scan of 500–1,100-step runs),
# and the loss over the whole validation text at the end (73 batches of 24 windows of 64 bytes, 1,752 windows
# spread evenly over its 111,540 bytes). A single run's loss moves by a few hundredths with the seed (a
# chaotic trajectory: routing decisions flip), so the first run is trained from three seeds and reports
# their median.
# The 255 s run's step count is chosen from the first runs' measured speed, to end within nanoGPT's time.
SHAKESPEARE_BYTES = 1115394  # the corpus's size as char-rnn and nanoGPT distribute it
SHAKESPEARE_TRAIN = ["train", "--config", "baby", "--batch", "24", "--seq-len", "64", "--shards", "2", "--lr", "4e-3",
                     "--warmup", "50", "--gamma", "0.01", "--eval-batches", "73", "--threads", "2", "--json"]
SHAKESPEARE_STEPS = 640
SHAKESPEARE_SEEDS = (1, 2, 3)
SHAKESPEARE_SECONDS = 255  # nanoGPT's CPU baby run on this project's earlier Intel machines: 255–278 s


def shakespeare_run(r, path, steps, seed, name):
    """(wall seconds of the whole process, its final JSON line) of one `eva train` on tinyshakespeare."""
    cmd = [r.binary("eva")] + SHAKESPEARE_TRAIN + ["--data", os.path.abspath(path), "--steps", str(steps),
                                                  "--eval-every", str(steps), "--seed", str(seed)]
    t0 = time.monotonic()
    out = r.run(name, cmd)
    wall = time.monotonic() - t0
    return wall, [json.loads(l) for l in out.splitlines() if l.startswith("{") and '"final"' in l][-1]


def bench_shakespeare(r):
    """Wall time of the whole `eva train` process (start, training, the final evaluation) on
    tinyshakespeare to nanoGPT's published CPU "baby" result, and the best loss within its time."""
    tokens = 24 * 64
    seeds = SHAKESPEARE_SEEDS[:1] if r.quick else SHAKESPEARE_SEEDS
    section = {
        "title": "Training to nanoGPT's Shakespeare result",
        "what": "eva's `baby` preset (mini's structure at nanoGPT's CPU \"baby\" size: 4 layers × 128, context 64; "
                "1.77 M parameters, 0.89 M activated) trained on tinyshakespeare (1,115,394 bytes, not shipped with "
                "eva: give `--shakespeare PATH`) on 2 threads, batch 24 × 64 bytes in 2 gradient shards, peak lr 4e-3, "
                "bias speed γ 0.01; the wall time of the whole process, and the validation loss over the whole "
                "validation text (the last 10%, as nanoGPT splits it) at the end. The first run is trained from "
                f"seed(s) {', '.join(map(str, seeds))} (a run's loss moves by a few hundredths with the seed), then their "
                f"median; the last run's step count is chosen from their speed to end within {SHAKESPEARE_SECONDS} s. "
                "The reference: nanoGPT's "
                "shakespeare_char README gives about 1.88 for its CPU baby run (0.80 M parameters, 2000 "
                "iterations of 12 × 64), measured on this project's earlier Intel machines at 1.8857 after 2000 "
                "iterations in 255–278 s on 2 threads. Its model differs (dense, GPT-2 attention), so this "
                "compares the time to a result, not two implementations of one model.",
        "baseline": "nanoGPT's published CPU baby run (1.8857 nats/char after 2000 iterations, 255–278 s); not "
                    "measured in this run",
        "command": "build/release/eva " + " ".join(SHAKESPEARE_TRAIN) +
                   f" --data tinyshakespeare.txt --steps {SHAKESPEARE_STEPS} --eval-every {SHAKESPEARE_STEPS} --seed S",
        "tables": [],
        "skipped": [],
    }
    path = r.shakespeare
    if not path:
        why = "no tinyshakespeare.txt given (scripts/bench.py --shakespeare PATH)"
        section.update(skipped=[why], headline=f"Shakespeare: not measured ({why}).")
        return section
    if not os.path.isfile(path):
        raise BenchError(f"--shakespeare {path}: no such file")
    if not r.quick and os.path.getsize(path) != SHAKESPEARE_BYTES:
        raise BenchError(f"--shakespeare {path}: {os.path.getsize(path)} bytes, not tinyshakespeare's {SHAKESPEARE_BYTES}")
    steps = 10 if r.quick else SHAKESPEARE_STEPS
    runs = [shakespeare_run(r, path, steps, seed, f"train-shakespeare-seed-{seed}") for seed in seeds]
    rows = [[f"{steps} steps, seed {seed}", w, f["seconds"], steps * tokens / f["seconds"], f["val_loss"]]
            for seed, (w, f) in zip(seeds, runs)]
    median = [f"{steps} steps, median"] + [statistics.median(row[c] for row in rows) for c in range(1, 5)]
    rows.append(median)
    wall, seconds, speed = median[1], median[2], median[3]
    # The longer run (the first seed): as many whole hundreds of steps as fit in the time at the first runs'
    # speed, after the same start-up and final evaluation (the wall time beyond the training steps).
    budget = 1.0 if r.quick else SHAKESPEARE_SECONDS
    long_steps = 20 if r.quick else int((budget - (wall - seconds)) * speed / tokens / 100) * 100
    lw, lf = shakespeare_run(r, path, long_steps, seeds[0], "train-shakespeare-long")
    rows.append([f"{long_steps} steps", lw, lf["seconds"], long_steps * tokens / lf["seconds"], lf["val_loss"]])
    section["tables"] = [table([("run", "case"), ("wall s", "median"), ("training s", "median"), ("tokens/s", "median"),
                                ("validation loss (nats/char)", "loss")], rows)]
    losses = [row[4] for row in rows[:len(seeds)]]
    section["headline"] = (f"Shakespeare: eva's baby model reaches a validation loss of {median[4]:.4f} nats/char "
                           f"(median of {len(seeds)} seed(s), {min(losses):.4f}–{max(losses):.4f}) in {wall:.0f} s on 2 "
                           f"threads and {rows[-1][4]:.4f} in {rows[-1][1]:.0f} s (nanoGPT's CPU baby run: 1.8857 in "
                           "255–278 s).")
    return section


# ------------------------------------------------------------------------------------------ machine

def compiler(build):
    """Compiler id and version from CMake's record of the build directory (e.g. "GNU 12.2.0")."""
    for path in glob.glob(os.path.join(build, "CMakeFiles", "*", "CMakeCXXCompiler.cmake")):
        with open(path) as f:
            text = f.read()
        found = dict(re.findall(r'set\(CMAKE_CXX_COMPILER_(ID|VERSION) "([^"]*)"\)', text))
        if found:
            return " ".join(v for v in (found.get("ID"), found.get("VERSION")) if v)
    return None


def wasm_compiler(build):
    """"Emscripten 3.1.6 (Clang 14.0.6)": the version file sits four levels above the toolchain file."""
    clang, toolchain = compiler(build), cmake_cache(build, "CMAKE_TOOLCHAIN_FILE")
    try:
        with open(os.path.join(os.path.dirname(toolchain), "..", "..", "..", "emscripten-version.txt")) as f:
            return f"Emscripten {f.read().strip().strip(chr(34))} ({clang})"
    except (OSError, TypeError):
        return clang


def cmake_cache(build, key):
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def git(*args):
    p = subprocess.run(["git", "-C", ROOT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def machine_info(build, torch):
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    commit = git("rev-parse", "--short=12", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    build_type = cmake_cache(build, "CMAKE_BUILD_TYPE")
    # The FMA peak is measured in every run, whichever sections it has: it names the machine where the CPU's
    # name does not (and the GEMM section measures it again, beside its figures).
    peak = json.loads(subprocess.run([os.path.join(build, "eva"), "info", "--json", "--peak"], stdout=subprocess.PIPE,
                                     text=True, check=True).stdout)
    return {
        "peak_gflops": peak["peak_gflops_per_core"], "peak_simd": peak["peak_simd"], "clock_ghz": peak["clock_ghz"],
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "compiler": compiler(build),
        "build_type": build_type,
        "cxx_flags": cmake_cache(build, f"CMAKE_CXX_FLAGS_{(build_type or '').upper()}"),
        "torch": torch,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": commit,
    }


# What a section records of the run that measured it.
STAMP = ("date", "git_commit", "cpu_model", "peak_gflops")


def measure(a):
    log_dir = os.path.join(a.build, "bench-logs")
    runner = Runner(a.build, a.wasm_build, a.quick, log_dir)
    runner.shakespeare = a.shakespeare
    for name in ("eva", "eva_bench", "eva_bench_fp8", "eva_bench_mla", "eva_bench_moe", "eva_bench_train", "eva_bench_decode",
                 "eva_speed"):
        runner.binary(name)  # every binary checked before the first long run
    os.makedirs(log_dir, exist_ok=True)
    torch = torch_version()
    out = {"schema": 1, "mode": "quick" if a.quick else "full",
           "repetitions": 1 if a.quick else REPETITIONS, "note": a.note,
           "machine": machine_info(a.build, torch), "benchmarks": {}}
    steps = {"gemm": bench_gemm, "fp8": bench_fp8, "mla": bench_mla, "moe": bench_moe,
             "train": lambda r: bench_train(r, torch), "decode": lambda r: bench_decode(r, torch), "wasm": bench_wasm,
             "mpi": bench_mpi, "shakespeare": bench_shakespeare}
    chosen = a.only or SECTIONS
    try:
        for i, key in enumerate(chosen, 1):
            t0 = time.monotonic()
            print(f"[{i}/{len(chosen)}] {key}", file=sys.stderr, flush=True)
            try:
                section = steps[key](runner)
            except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:
                raise BenchError(f"{key}: the benchmark's output is not what this script reads ({e!r}); "
                                 f"its log is in {rel(log_dir)}/")
            section["seconds"] = round(time.monotonic() - t0, 1)
            out["machine"].update(section.pop("machine", {}))
            section["measured"] = {k: out["machine"].get(k) for k in STAMP}
            for why in section.get("skipped", []):
                print(f"  skipped: {why}", file=sys.stderr)
            out["benchmarks"][key] = section
    finally:
        shutil.rmtree(runner.tmp, ignore_errors=True)
    return out


def same_machine(a, b):
    """Whether two runs' machines compare: the same CPU name and, as a guest's CPU name can hide its
    generation (two kinds of "AMD EPYC" here, one executing AVX-512 at full width and one as 2×256 bits),
    FMA peaks within 15% of each other."""
    if a.get("cpu_model") != b.get("cpu_model"):
        return False
    pa, pb = a.get("peak_gflops"), b.get("peak_gflops")
    return not (pa and pb) or abs(pa - pb) <= 0.15 * max(pa, pb)


def merge(old, new):
    """The report `old` with the sections of `new` (an --only run) in their place. Each section keeps the
    date and commit it was measured at; the machine must be the same, or the figures would not compare."""
    if old.get("schema") != new["schema"] or old.get("mode") != new["mode"]:
        raise BenchError("--only: the existing report is of another schema or mode; run every section")
    if not same_machine(old["machine"], new["machine"]):
        describe = lambda m: f"{m.get('cpu_model')} (fp32 FMA peak {m.get('peak_gflops') or 0:.0f} GFLOP/s per core)"
        raise BenchError(f"--only: the existing report was measured on {describe(old['machine'])}, this is "
                         f"{describe(new['machine'])}: run every section")
    for s in old["benchmarks"].values():  # reports written before sections were stamped
        s.setdefault("measured", {k: old["machine"].get(k) for k in STAMP})
    machine = dict(old["machine"], **new["machine"])
    sections = dict(old["benchmarks"], **new["benchmarks"])
    return dict(old, machine=machine, benchmarks={k: sections[k] for k in SECTIONS if k in sections})


# ----------------------------------------------------------------------------------------- Markdown

def fmt(v, kind):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if kind == "ratio":
        return f"{v:.2f}×"
    if kind == "fraction":
        return f"{v:.0%}" if v >= 0.1 else f"{v:.1%}"
    if kind == "case":
        return str(v)
    if kind == "loss":
        return f"{v:.4f}"
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 else f"{v:.3f}"


def markdown_table(t):
    cols = t["columns"]
    lines = ["| " + " | ".join(c["name"] for c in cols) + " |",
             "|" + "|".join("---" if c["kind"] == "case" else "---:" for c in cols) + "|"]
    for row in t["rows"]:
        lines.append("| " + " | ".join(fmt(v, c["kind"]) for v, c in zip(row, cols)) + " |")
    return lines


def peak_text(m):
    """"225 GFLOP/s (avx512bw; 3.50 GHz, 64 FLOP/cycle)" from the figures the GEMM benchmark measured."""
    if not m.get("peak_gflops"):
        return None
    clock = f"; {m['clock_ghz']:.2f} GHz, {m['peak_gflops'] / m['clock_ghz']:.0f} FLOP/cycle" if m.get("clock_ghz") else ""
    return f"{m['peak_gflops']:.0f} GFLOP/s ({m.get('peak_simd')}{clock}), measured in the same run"


def render(data, json_name, json_path):
    m, quick = data["machine"], data["mode"] == "quick"
    regen = "scripts/bench.py" + (" --quick" if quick else "")
    if data.get("note"):
        regen += " --note " + shlex.quote(data["note"])
    lines = ["# Performance", "",
             f"_Generated by `{regen}` from [{json_name}]({json_name}); do not edit by hand. "
             f"`scripts/bench.py --render {json_path}` re-renders it from the JSON._", ""]
    how = (f"Medians of {data['repetitions']} repetitions" if not quick
           else "Quick mode: one short run of each benchmark, figures indicative only")
    how += "; each ratio compares two figures measured in the same run."
    if data.get("note"):
        how += " " + data["note"]
    lines += [how, "", "## Headline", ""]
    lines += ["- " + s["headline"] for s in data["benchmarks"].values()]
    rows = [("CPU", m.get("cpu_model")), ("logical cores", m.get("cores")),
            ("compiler", f"{m.get('compiler')}, {m.get('build_type')} ({m.get('cxx_flags')})"),
            ("eva GEMM kernel", m.get("gemm_simd")), ("OpenBLAS baseline", m.get("openblas")),
            ("fp32 FMA peak, 1 core", peak_text(m)),
            ("PyTorch", m.get("torch") or "not available"), ("node", m.get("node")),
            ("wasm compiler", m.get("wasm_compiler")), ("date", m.get("date")), ("git commit", m.get("git_commit"))]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows if v is not None]
    for s in data["benchmarks"].values():
        lines += ["", "## " + s["title"], "", s["what"], "", f"Baseline: {s['baseline']}.  ",
                  f"Command: `{s['command']}`"]
        when = s.get("measured", {})
        if when and when.get("git_commit") != m.get("git_commit"):
            on = (f", on {when.get('cpu_model')} with an fp32 FMA peak of {when['peak_gflops']:.0f} GFLOP/s per core"
                  if when.get("peak_gflops") else "")
            lines += ["", f"_Measured in an earlier run of this report: {when.get('date')}, commit {when.get('git_commit')}{on}._"]
        for why in s.get("skipped", []):
            lines += ["", f"_Not measured in this run — {why}._"]
        for t in s["tables"]:
            lines += [""] + ([f"**{t['title']}**", ""] if t.get("title") else []) + markdown_table(t)
    return "\n".join(lines) + "\n"


def write_report(data, json_path, md_path):
    with open(md_path, "w") as f:
        f.write(render(data, os.path.relpath(json_path, os.path.dirname(os.path.abspath(md_path))),
                       rel(os.path.abspath(json_path))))


# --------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(
        prog="scripts/bench.py",
        description="Run every eva benchmark (GEMM vs OpenBLAS, FP8 codec vs memcpy, MLA decode vs MHA, MoE vs "
                    "dense, training vs PyTorch, wasm vs native) and write DIR/performance.json and "
                    "DIR/performance.md. Needs the release preset built; the wasm figures also need the wasm "
                    "preset's eva_speed target, the PyTorch ones python3-torch (skipped with a note otherwise).")
    ap.add_argument("--quick", action="store_true",
                    help="one short run of each benchmark (about half a minute; for tests), written to "
                         "build/bench-quick/ unless --out-dir is given")
    ap.add_argument("--out-dir", help="where performance.json and performance.md go (default: docs/, or "
                                      "build/bench-quick/ with --quick)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"),
                    help="the release build directory (default: build/release)")
    ap.add_argument("--wasm-build", default=os.path.join(ROOT, "build", "wasm"),
                    help="the wasm build directory (default: build/wasm)")
    ap.add_argument("--shakespeare", metavar="PATH",
                    help="tinyshakespeare.txt (1,115,394 bytes; not shipped with eva): also time training to "
                         "nanoGPT's Shakespeare result (skipped without it)")
    ap.add_argument("--note", default="", help="a sentence about the machine, printed in the report's header")
    ap.add_argument("--render", metavar="JSON", help="only re-render the Markdown beside JSON from it")
    ap.add_argument("--only", metavar="SECTIONS", type=lambda v: v.split(","),
                    help="measure only these sections (comma separated: " + ",".join(SECTIONS) + ") and put them "
                         "in place in the existing DIR/performance.json; the others keep their figures, and the "
                         "report says when each was measured")
    a = ap.parse_args()
    try:
        if a.render:
            with open(a.render) as f:
                data = json.load(f)
            md = os.path.splitext(a.render)[0] + ".md"
            write_report(data, a.render, md)
            print(f"wrote {rel(os.path.abspath(md))}", file=sys.stderr)
            return 0
        default_dir = os.path.join(ROOT, "build", "bench-quick") if a.quick else os.path.join(ROOT, "docs")
        out_dir = a.out_dir or default_dir
        a.build, a.wasm_build = os.path.abspath(a.build), os.path.abspath(a.wasm_build)
        t0 = time.monotonic()
        json_path, md_path = os.path.join(out_dir, "performance.json"), os.path.join(out_dir, "performance.md")
        if a.only:
            unknown = [k for k in a.only if k not in SECTIONS]
            if unknown:
                raise BenchError(f"--only: no section {', '.join(unknown)} (sections: {', '.join(SECTIONS)})")
            try:
                with open(json_path) as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                raise BenchError(f"--only: {rel(json_path)} cannot be read ({e}); run every section first")
        data = measure(a)
        if a.only:
            data = merge(old, data)
        os.makedirs(out_dir, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        write_report(data, json_path, md_path)
        print("\n".join(s["headline"] for s in data["benchmarks"].values()))
        print(f"wrote {rel(os.path.abspath(json_path))} and {rel(os.path.abspath(md_path))} "
              f"in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        return 0
    except BenchError as e:
        print(f"scripts/bench.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
