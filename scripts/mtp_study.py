#!/usr/bin/python3
"""What one MTP module does to eva-mini's MAIN model: validation loss at equal steps and at equal compute
time, with and without `--mtp 1`, on several seeds and corpora; and the module's own next-next-byte accuracy.

Every run is `eva train --json` with the same seed, batches and schedule except --mtp; the losses are
deterministic (bit-identical for any thread count), the times are not. "Equal time" compares the plain
run's final loss with the MTP run's loss after the same compute: at step steps / r, interpolated along
its validation points, where r is the CPU time of a step with the module over one without, measured
by alternating short runs (or given with --cost-ratio).
Prints a Markdown table and writes the figures as JSON (--json). Standard library only.
Usage: scripts/mtp_study.py [--eva build/release/eva] [--data fortunes=/usr/share/games/fortunes ...]
       [--seeds 1,2] [--steps 400] [--batch 8] [--seq-len 64] [--threads 1] [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def train(a, data, seed, mtp):
    cmd = [a.eva, "train", "--data", data, "--seed", str(seed), "--steps", str(a.steps), "--batch", str(a.batch),
           "--seq-len", str(a.seq_len), "--eval-every", str(a.eval_every), "--threads", str(a.threads), "--json"]
    if mtp:
        cmd += ["--mtp", "1"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"mtp_study: error: {' '.join(cmd)} failed: {p.stderr.strip()}")
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    evals = [l for l in lines if "val_loss" in l and "step" in l]
    final = lines[-1]
    return {"steps": [e["step"] for e in evals], "val_loss": [e["val_loss"] for e in evals],
            "seconds": final["seconds"],
            "mtp_accuracy": [e["val_mtp_accuracy"][0] for e in evals] if mtp else None}


def cpu_seconds_per_step(a, data, mtp, steps=20):
    """CPU seconds (user + system) per step of a short run: on a shared machine the CPU time a process
    gets is a steadier measure of its work than the wall time it waits."""
    cmd = [a.eva, "train", "--data", data, "--steps", str(steps), "--batch", str(a.batch), "--seq-len",
           str(a.seq_len), "--eval-every", str(steps), "--threads", "1", "--json"] + (["--mtp", "1"] if mtp else [])
    before = os.times()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = os.times()
    return (after.children_user - before.children_user + after.children_system - before.children_system) / steps


def cost_ratio(a, data, rounds=3):
    """A step with one MTP module over one without: the median of per-round ratios, the two alternating
    so that both see the same machine."""
    return statistics.median(cpu_seconds_per_step(a, data, True) / cpu_seconds_per_step(a, data, False)
                             for _ in range(rounds))


def at_step(run, step):
    """The run's validation loss at a (fractional) step, interpolated between its evaluations."""
    pts = list(zip(run["steps"], run["val_loss"]))
    if step >= pts[-1][0]:
        return pts[-1][1]
    for (s0, l0), (s1, l1) in zip(pts, pts[1:]):
        if s0 <= step <= s1:
            return l0 + (l1 - l0) * (step - s0) / (s1 - s0)
    return pts[0][1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eva", default="build/release/eva")
    ap.add_argument("--data", action="append", help="NAME=PATH (repeatable; default: Debian's fortunes)")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost-ratio", type=float, help="CPU time of a step with MTP over one without (default: measured)")
    ap.add_argument("--json")
    a = ap.parse_args()
    corpora = [d.split("=", 1) for d in (a.data or ["fortunes=/usr/share/games/fortunes"])]
    seeds = [int(s) for s in a.seeds.split(",")]
    out = {"steps": a.steps, "batch": a.batch, "seq_len": a.seq_len, "threads": a.threads, "runs": []}
    print(f"| corpus | seed | val loss, no MTP | val loss, MTP 1 (equal steps) | change | MTP 1 at equal time | "
          f"change | MTP head next-next-byte accuracy | CPU time per step, MTP / no MTP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, path in corpora:
        for seed in seeds:
            plain, mtp = train(a, path, seed, False), train(a, path, seed, True)
            lp, lm = plain["val_loss"][-1], mtp["val_loss"][-1]
            # Equal time: in the plain run's time the MTP run gets through steps / ratio steps; its loss
            # there (interpolated along its own validation points) against the plain run's final.
            ratio = a.cost_ratio or cost_ratio(a, path)
            lm_eq = at_step(mtp, a.steps / ratio)
            row = {"corpus": name, "seed": seed, "plain": plain, "mtp": mtp, "cost_ratio": ratio,
                   "mtp_at_equal_time": lm_eq}
            out["runs"].append(row)
            print(f"| {name} | {seed} | {lp:.4f} | {lm:.4f} | {100 * (lm / lp - 1):+.2f}% | {lm_eq:.4f} (MTP at step "
                  f"{a.steps / ratio:.0f}) | {100 * (lm_eq / lp - 1):+.2f}% | {100 * mtp['mtp_accuracy'][-1]:.1f}% | "
                  f"{ratio:.2f}× |", flush=True)
    eq = [100 * (r["mtp"]["val_loss"][-1] / r["plain"]["val_loss"][-1] - 1) for r in out["runs"]]
    print(f"\nmean change at equal steps: {statistics.mean(eq):+.2f}% over {len(eq)} runs")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
