#!/usr/bin/python3
"""End-to-end check of the one benchmark command: `scripts/bench.py --quick` into a temporary directory.

Checks the JSON holds every section with finite, positive medians and ratios, the machine information,
and that the Markdown generated from it holds every table row. No timing is asserted (the machine is
shared; a quick run's figures are noisy). The PyTorch part is skipped when /usr/bin/python3 cannot
import torch, the wasm part when the wasm build has no eva_speed.js, the MPI part when there is no
release-mpi build beside BUILD_DIR: each says so on stdout. The Shakespeare part trains on a stand-in
text (quick mode does not check that it is tinyshakespeare).
Also checks the clear error for a missing build. Run by ctest (eva_bench_quick):
  tests/bench_quick.py BUILD_DIR WASM_BUILD_DIR
"""
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "scripts", "bench.py")
SECTIONS = ["gemm", "fp8", "mla", "moe", "train", "decode", "wasm", "mpi", "shakespeare"]
MACHINE = ["cpu_model", "cores", "compiler", "gemm_simd", "openblas", "peak_gflops", "date", "git_commit"]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


def positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def check_table(key, t, md_lines):
    check(len(t["rows"]) > 0, f"{key}: table {t.get('title')} has rows")
    kinds = [c["kind"] for c in t["columns"]]
    for row in t["rows"]:
        check(len(row) == len(kinds), f"{key}: row {row} has one cell per column")
        for v, c in zip(row, t["columns"]):
            if c["kind"] == "median":
                check(positive(v), f"{key}: {c['name']} of {row[0]} is a finite positive median ({v})")
            elif c["kind"] in ("ratio", "size", "fraction", "loss") and v is not None:
                check(positive(v), f"{key}: {c['name']} of {row[0]} is finite and positive ({v})")
        # The Markdown row: the case first, then one cell per column.
        line = next((l for l in md_lines if l.startswith(f"| {row[0]} |")), None)
        check(line is not None and line.count("|") == len(kinds) + 1, f"{key}: Markdown has the row of {row[0]}")


def main():
    build, wasm_build = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="eva_bench_quick_") as tmp:
        p = subprocess.run([sys.executable, SCRIPT, "--help"], stdout=subprocess.PIPE, text=True)
        check(p.returncode == 0 and "--quick" in p.stdout, "--help describes the options")
        # A missing build is one clear line and exit status 2, before anything runs.
        p = subprocess.run([sys.executable, SCRIPT, "--quick", "--build", os.path.join(tmp, "none"),
                            "--out-dir", tmp], stderr=subprocess.PIPE, text=True)
        check(p.returncode == 2 and "build the release preset first" in p.stderr,
              f"missing build: status 2 and a hint (got {p.returncode}: {p.stderr.strip()})")

        # A stand-in for tinyshakespeare (quick mode trains a few steps on whatever text it is given).
        text = os.path.join(tmp, "text.txt")
        with open(text, "w") as f:
            f.write("".join(f"Line {i}: to be, or not to be, that is the question.\n" for i in range(800)))
        p = subprocess.run([sys.executable, SCRIPT, "--quick", "--build", build, "--wasm-build", wasm_build,
                            "--out-dir", tmp, "--shakespeare", text],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(p.stdout)
        if p.returncode != 0:
            print("FAIL: scripts/bench.py --quick exited with", p.returncode)
            return 1
        with open(os.path.join(tmp, "performance.json")) as f:
            data = json.load(f)
        with open(os.path.join(tmp, "performance.md")) as f:
            md = f.read()
        # --only re-measures one section in place: the others are kept as they were.
        p = subprocess.run([sys.executable, SCRIPT, "--quick", "--build", build, "--wasm-build", wasm_build,
                            "--out-dir", tmp, "--only", "fp8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check(p.returncode == 0, f"--only fp8 runs ({p.stdout[-300:]})")
        with open(os.path.join(tmp, "performance.json")) as f:
            merged = json.load(f)
        check(list(merged["benchmarks"]) == list(data["benchmarks"]), "--only keeps every section, in order")
        check(all(merged["benchmarks"][k] == data["benchmarks"][k] for k in data["benchmarks"] if k != "fp8"),
              "--only leaves the other sections' figures as they were")
        check(merged["benchmarks"]["fp8"]["measured"]["date"] is not None, "--only stamps the section it measured")
        check(merged["benchmarks"]["fp8"]["measured"].get("peak_gflops", 0) > 0, "the stamp has the run's FMA peak")
        # A report from a machine of the same name but another peak (a guest's CPU name can hide its kind)
        # is not merged into: its figures would not compare.
        merged["machine"]["peak_gflops"] *= 3
        with open(os.path.join(tmp, "performance.json"), "w") as f:
            json.dump(merged, f)
        p = subprocess.run([sys.executable, SCRIPT, "--quick", "--build", build, "--wasm-build", wasm_build,
                            "--out-dir", tmp, "--only", "fp8"], stderr=subprocess.PIPE, text=True)
        check(p.returncode == 2 and "run every section" in p.stderr,
              f"--only into another machine's report: status 2 ({p.returncode}: {p.stderr.strip()[-200:]})")
        p = subprocess.run([sys.executable, SCRIPT, "--quick", "--build", build, "--out-dir", tmp, "--only", "nope"],
                           stderr=subprocess.PIPE, text=True)
        check(p.returncode == 2 and "no section nope" in p.stderr, f"--only with an unknown section: status 2 ({p.stderr.strip()})")
    md_lines = md.splitlines()

    check(data["mode"] == "quick", "mode is quick")
    for k in MACHINE:
        check(data["machine"].get(k) not in (None, ""), f"machine.{k} is recorded")
    check(any(l.startswith("_Generated by `scripts/bench.py --quick`") for l in md_lines),
          "the Markdown's header names the command that regenerates it")

    torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], stderr=subprocess.DEVNULL).returncode == 0
    wasm = os.path.exists(os.path.join(wasm_build, "eva_speed.js"))
    mpi = os.access(os.path.join(os.path.dirname(os.path.abspath(build)), "release-mpi", "eva"), os.X_OK)
    for key in SECTIONS:
        s = data["benchmarks"].get(key)
        check(s is not None, f"section {key} is present")
        if s is None:
            continue
        check(f"## {s['title']}" in md_lines, f"{key}: Markdown has its heading")
        check(f"- {s['headline']}" in md_lines, f"{key}: Markdown has its headline")
        if key == "wasm" and not wasm:
            print(f"SKIPPED: the wasm part ({wasm_build}/eva_speed.js is not built)")
            check(s["skipped"] and not s["tables"], "wasm: marked skipped")
            continue
        if key == "mpi" and not mpi:
            print("SKIPPED: the MPI part (the release-mpi preset's eva is not built)")
            check(s["skipped"] and not s["tables"], "mpi: marked skipped")
            continue
        check(len(s["tables"]) > 0 and not s.get("skipped"), f"{key}: measured")
        for t in s["tables"]:
            check_table(key, t, md_lines)
    trainers = [row[0] for row in data["benchmarks"]["train"]["tables"][0]["rows"]]
    if torch:
        check(any(t.startswith("PyTorch") for t in trainers), "train: PyTorch measured")
        check(data["machine"].get("torch"), "machine.torch is recorded")
    else:
        print("SKIPPED: the PyTorch part (/usr/bin/python3 cannot import torch)")
        check(data["benchmarks"]["train"]["skipped"], "train: PyTorch marked skipped")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
