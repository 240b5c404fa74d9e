#!/usr/bin/env python3
"""The FP8-vs-fp32 validation-loss gap of eva's training, with the statistics a small gap needs.

A single pair of runs cannot resolve a gap smaller than the run-to-run spread of fp32 itself: two fp32
runs with different seeds already differ by about a percent early in training. This script therefore
trains every seed twice, once in fp32 and once with DeepSeek-V3's FP8 recipe (`--precision fp8`), from
the same seed — the same initial weights and the same batches in the same order — and compares the two
runs of each seed (a *paired* comparison: the seed's luck cancels in the difference). It reports

  * per seed: the final validation loss of each precision and the relative gap (fp8 − fp32) / fp32;
  * the mean relative gap over seeds with its sample standard deviation and a 95% interval
    (mean ± t₀.₉₇₅,ₙ₋₁ · std / √n, Student's t since n is small);
  * beside it, the seed-to-seed spread of fp32 alone (std of the fp32 losses over seeds, relative to
    their mean): the scale a single unpaired fp8 run would have to beat;
  * the last slope of each precision's validation curve (loss change per 100 steps between the last two
    evaluations), to say how flat the runs are when they stop.

Losses are deterministic (bit-identical for any thread count), so running two processes at a time or on a
loaded machine changes only the time. Every run's JSON lines are kept in --out-dir; a run whose file is
complete is not trained again, so the report can be regenerated from the files alone.

Standard library only. The study in docs/fp8-gap.md (defaults: the baby model, 100 steps of 12×64):

  python3 scripts/fp8_gap.py --eva build/release/eva \\
      --corpus fortunes --corpus tinyshakespeare=/path/to/tinyshakespeare.txt \\
      --seeds 5 --steps 100 --jobs 2 --out-dir fp8-gap-runs
"""

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import statistics
import subprocess
import sys

# The model is eva's `baby` preset (core/src/config.cpp; docs/5-model.md): mini's structure at nanoGPT's CPU
# "baby" size, 1,774,080 parameters, 889,344 activated per token. Small enough for several seeds × two
# precisions × two corpora on a shared CPU; every Linear layer inside the blocks still runs through the FP8 recipe.
CONFIG = "baby"

# Two-sided 95% quantiles t₀.₉₇₅ of Student's t with df degrees of freedom (standard table values);
# beyond the table the normal 1.960 is within 2% of t for df > 30.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
        18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def t975(df):
    if df in T975:
        return T975[df]
    below = [d for d in T975 if d <= df]
    return T975[max(below)] if df <= 30 else 1.960


def student_t_cdf(t, df, n=2000):
    """P(T <= t) for Student's t, by Simpson's rule over its density from 0 (the density is symmetric):
    an independent check of the table above, used by --self-test."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    f = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)
    h = t / n
    s = f(0) + f(t) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, n))
    return 0.5 + s * h / 3


def self_test():
    """The statistics against independent references: each tabled t quantile against the quantile solved
    from the integrated density (bisection; the table rounds to 3 decimals, so they agree to 0.0005 plus
    the integration's error), and the interval of 1..5 against its value by hand (mean 3, std √2.5,
    half-width 2.776·√2.5/√5)."""
    for df, t in T975.items():
        lo, hi = 1.0, 20.0
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if student_t_cdf(mid, df) < 0.975 else (lo, mid)
        if abs(lo - t) > 6e-4:
            sys.exit(f"self-test: t975({df}) is {lo:.4f} by integration, the table has {t}")
    m, sd, lo, hi = interval([1, 2, 3, 4, 5])
    want = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    if abs(m - 3) > 1e-12 or abs(sd - math.sqrt(2.5)) > 1e-12 or abs(hi - 3 - want) > 1e-12 or abs(3 - lo - want) > 1e-12:
        sys.exit(f"self-test: interval(1..5) = {m, sd, lo, hi}")
    print(f"self-test: {len(T975)} t quantiles and the interval agree")


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "unknown CPU"


def parse_corpus(spec):
    """NAME or NAME=PATH; 'fortunes' without a path is eva's default corpus (no --data)."""
    name, _, path = spec.partition("=")
    if not name:
        raise argparse.ArgumentTypeError("--corpus needs NAME or NAME=PATH")
    if not path and name != "fortunes":
        raise argparse.ArgumentTypeError(f"--corpus {name}: give NAME=PATH (only 'fortunes' has a default)")
    if path and not os.path.isfile(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"--corpus {name}: no such file or folder: {path}")
    return name, path or None


def read_run(path, steps):
    """The JSON lines of a finished run, or None when the file is missing or incomplete."""
    try:
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    if not lines or not lines[-1].get("final") or lines[-1].get("steps") != steps:
        return None
    return lines


def train(args, corpus, precision, seed):
    name, data = corpus
    out = os.path.join(args.out_dir, f"{name}_{precision}_seed{seed}_steps{args.steps}.jsonl")
    if read_run(out, args.steps) is not None:
        return out
    cmd = ["nice", "-n", str(args.nice), args.eva, "train", "--config", CONFIG, "--steps", str(args.steps),
           "--batch", str(args.batch), "--seq-len", str(args.seq_len), "--lr", str(args.lr),
           "--warmup", str(args.warmup), "--seed", str(seed), "--precision", precision,
           "--eval-every", str(args.eval_every), "--threads", "1", "--json"]
    if data:
        cmd += ["--data", data]
    print(f"  start {name} {precision} seed {seed}", file=sys.stderr, flush=True)
    tmp = out + ".part"
    with open(tmp, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    os.replace(tmp, out)
    print(f"  done  {name} {precision} seed {seed}", file=sys.stderr, flush=True)
    return out


def summarize(runs, eval_every):
    """Final val loss, the last slope (per 100 steps) and the step-1 train loss of one run."""
    evals = [(l["step"], l["val_loss"]) for l in runs if "step" in l and "val_loss" in l]
    final = runs[-1]["val_loss"]
    slope = None
    if len(evals) >= 2:
        (s0, v0), (s1, v1) = evals[-2], evals[-1]
        slope = (v1 - v0) / (s1 - s0) * 100
    first = next(l for l in runs if l.get("step") == 1)
    return {"val_loss": final, "slope_per_100": slope, "step1_loss": first["loss"], "curve": evals,
            "seconds": runs[-1]["seconds"]}


def interval(xs):
    m = statistics.mean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    half = t975(len(xs) - 1) * sd / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return m, sd, m - half, m + half


def pct(x):
    return f"{100 * x:+.2f}%"


def report(corpus_name, seeds, res):
    """Markdown tables of one corpus, and its statistics as a dict."""
    rows, gaps, v32s, v8s = [], [], [], []
    for s in seeds:
        a, b = res[("fp32", s)], res[("fp8", s)]
        # Same seed ⇒ same init and batches: the step-1 train losses (one forward of the same batch
        # through the same weights, FP8-rounded or not) must agree closely, else the pairing is broken.
        if abs(b["step1_loss"] - a["step1_loss"]) > 0.01 * a["step1_loss"]:
            raise RuntimeError(f"{corpus_name} seed {s}: step-1 losses {a['step1_loss']} vs {b['step1_loss']} "
                               "differ by > 1%: the two runs did not see the same batch")
        gap = (b["val_loss"] - a["val_loss"]) / a["val_loss"]
        gaps.append(gap)
        v32s.append(a["val_loss"])
        v8s.append(b["val_loss"])
        rows.append(f"| {s} | {a['val_loss']:.4f} | {b['val_loss']:.4f} | {pct(gap)} |")
    gm, gsd, glo, ghi = interval(gaps)
    m32, sd32, _, _ = interval(v32s)
    m8, sd8, _, _ = interval(v8s)
    sl32 = statistics.mean(res[("fp32", s)]["slope_per_100"] for s in seeds)
    sl8 = statistics.mean(res[("fp8", s)]["slope_per_100"] for s in seeds)
    lines = [f"### {corpus_name}", "", "| seed | fp32 val loss | fp8 val loss | fp8 vs fp32 |", "|---|---|---|---|"]
    lines += rows
    lines += ["",
              f"- mean relative gap (fp8 − fp32)/fp32 over {len(seeds)} seeds: {pct(gm)}, "
              f"std {100 * gsd:.2f}%, 95% interval [{pct(glo)}, {pct(ghi)}]",
              f"- fp32 alone, seed to seed: mean {m32:.4f}, std {sd32:.4f} = {100 * sd32 / m32:.2f}% of the mean "
              f"(fp8: mean {m8:.4f}, std {sd8:.4f} = {100 * sd8 / m8:.2f}%)",
              f"- last slope of the validation loss (mean over seeds, per 100 steps): fp32 {sl32:+.4f}, "
              f"fp8 {sl8:+.4f}", ""]
    stats = {"gaps": gaps, "gap_mean": gm, "gap_std": gsd, "gap_ci95": [glo, ghi], "fp32_mean": m32,
             "fp32_std": sd32, "fp32_rel_std": sd32 / m32, "fp8_mean": m8, "fp8_std": sd8,
             "slope_fp32_per_100": sl32, "slope_fp8_per_100": sl8,
             "per_seed": {str(s): {"fp32": res[("fp32", s)]["val_loss"], "fp8": res[("fp8", s)]["val_loss"],
                                   "fp32_curve": res[("fp32", s)]["curve"], "fp8_curve": res[("fp8", s)]["curve"],
                                   "seconds": [res[("fp32", s)]["seconds"], res[("fp8", s)]["seconds"]]}
                          for s in seeds}}
    return "\n".join(lines), stats


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eva", default="build/release/eva", help="the eva binary")
    p.add_argument("--corpus", action="append", type=parse_corpus, metavar="NAME[=PATH]",
                   help="corpus to train on (repeatable; 'fortunes' alone is eva's default data)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 1..N (at least 2 for a spread)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--jobs", type=int, default=2, help="training processes at a time (each --threads 1)")
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--out-dir", default="fp8-gap-runs", help="JSON lines of every run, reused when complete")
    p.add_argument("--json", help="also write the statistics here")
    p.add_argument("--self-test", action="store_true", help="check the statistics and exit (no training)")
    a = p.parse_args()
    if a.self_test:
        return self_test()
    if not a.corpus:
        a.corpus = [("fortunes", None)]
    if a.seeds < 2:
        p.error("--seeds must be at least 2: one seed has no spread")
    if a.steps < 2 * a.eval_every:
        p.error("--steps must be at least two --eval-every intervals (the last slope needs two evaluations)")
    if not os.access(a.eva, os.X_OK):
        p.error(f"--eva {a.eva}: not an executable (build it: cmake --build build/release --target eva)")
    os.makedirs(a.out_dir, exist_ok=True)
    seeds = list(range(1, a.seeds + 1))

    # fp8 first within a seed: it is the slower run, so the two workers end close together.
    jobs = [(c, prec, s) for c in a.corpus for s in seeds for prec in ("fp8", "fp32")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as ex:
        futures = {ex.submit(train, a, c, prec, s): (c, prec, s) for c, prec, s in jobs}
        files = {}
        for fut in concurrent.futures.as_completed(futures):
            c, prec, s = futures[fut]
            files[(c[0], prec, s)] = fut.result()

    out = {"machine": cpu_model(), "date": datetime.date.today().isoformat(),
           "setup": {"config": CONFIG, "steps": a.steps, "batch": a.batch, "seq_len": a.seq_len, "lr": a.lr,
                     "warmup": a.warmup, "eval_every": a.eval_every, "seeds": seeds}, "corpora": {}}
    print(f"FP8 (--precision fp8) vs fp32, {len(seeds)} seeds, {a.steps} steps of {a.batch}×{a.seq_len}, "
          f"lr {a.lr:g}, warmup {a.warmup}; {out['machine']}, {out['date']}\n")
    for c in a.corpus:
        res = {(prec, s): summarize(read_run(files[(c[0], prec, s)], a.steps), a.eval_every)
               for prec in ("fp32", "fp8") for s in seeds}
        text, stats = report(c[0], seeds, res)
        print(text)
        out["corpora"][c[0]] = stats
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
