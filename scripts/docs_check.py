#!/usr/bin/env python3
"""Runs every command quoted in the docs and checks the quoted output against a fresh run.

A quoted example is a fenced block with the class `console`:

    <!-- check: tol=1e-3 skip="tok/s" -->
    ```console
    $ eva mla memory --config v3
    KV cache, config v3: ...
    ```

Lines starting with `$ ` are commands (each must call `eva`, optionally fed by a pipe such as
`printf '1\\n' | eva fp8 encode`); the lines after a command, up to the next command, are its quoted
output. The commands of one block run in order, in one fresh temporary directory, with the eva binary
under test first on PATH.

The optional HTML comment on the line just before the fence sets how the output is compared:
  (default)    every line identical, every number character for character;
  tol=R        numbers may differ by R relative to the quoted value (text between numbers still identical);
  skip=REGEX   text matching REGEX (a timing such as `[0-9]+ tok/s`) is masked in both the quoted and the
               fresh line before comparing: its numbers are not compared;
  run-only     the output is machine-dependent (the CPU's SIMD kernel, a speed): only the exit status
               and that something was printed are checked.
A quoted line `...` stands for any number of output lines (a long table cut short).

A benchmark figure quoted in prose is followed by an HTML comment naming its cell in
docs/performance.json (the file docs/performance.md is rendered from):

    a MoE layer costs 0.87×<!-- perf: moe | mini | MoE / dense time --> the dense layer's time

`perf: BENCHMARK | ROW | COLUMN` (with `BENCHMARK/TABLE` when a benchmark has several tables; inside a
table row the separators are written `\|`, or they would split the row's cells) must name an existing cell, and the quoted number must equal that cell rounded to the quoted number of decimals:
re-running scripts/bench.py without updating the prose fails the check. A timing (ms, tokens/s, GB/s,
GFLOP/s) in the prose of a chapter (docs/[1-6]-*.md) must carry such a comment. Every `](figures/X.svg)`
must exist: committed in docs/figures/ (the concept diagrams) or drawn by scripts/docs_figures.py.
A figure in prose that eva computes (not a benchmark) is followed by a comment naming the command and
the JSON value it must equal:

    V3 caches 68.6 KiB<!-- run: eva mla memory config=v3 seq-len=1 dtype=bf16 +json => schemes[0].bytes_per_token / 1024 --> per token

`run: COMMAND => EXPR [tol=R]`: COMMAND calls eva like a console block's command (pipes allowed), with
its options written `name=value` for `--name value` and `+flag` for `--flag`, since an HTML comment may
not contain `--` (Markdown renderers would show it as text). It runs once per page, in order, in one
temporary directory per page; its stdout is JSON (or JSON lines,
read as a list; `_` is the whole document). EXPR is arithmetic (+ − × /, parentheses, numbers, `len`,
`min`, `max`, `sum`, `abs`) over paths into it (`a.b[0]`, `_[-1].loss`, slices `a.b[2:]`). Without `tol=` the quoted number must
equal EXPR rounded to the quoted number of decimals (`1,024` and `1024` are the same number); with
`tol=R` it may differ by R relative.

A one-off measurement that no check can rerun (a browser's frame time, a run of hours) is marked
`<!-- once: WHERE AND WHEN -->` after the number, naming the machine and the date, and a fixed budget or
a test's threshold (a 16 ms frame) `<!-- limit: WHOSE -->`; on the reference pages (docs/web-*.md,
gemm.md, architecture.md, embedding.md) a timing needs a perf:, run:, once: or limit: comment, and on the
chapters a perf: or run: one (or limit:).

Text between numbers is compared with runs of spaces collapsed, so a column widening by a digit is no
drift; a number is the drift. Exit status 1 lists every mismatch; 0 prints one line per block.

usage: docs_check.py --eva build/release/eva [--perf docs/performance.json] docs/*.md
"""
import ast
import json
import argparse
import operator
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
FENCE_OPEN = re.compile(r"^```+\s*\{?\.?console\}?\s*$")
OPTIONS = re.compile(r"^<!--\s*check:(.*)-->\s*$")
CALLS_EVA = re.compile(r"(?:^|\|\s*)eva(?:\s|$)")
# A quoted figure may group its digits with commas (1,988) and carry a typographic minus (−0.1).
GROUPED_NUMBER = r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
PERF_FIGURE = re.compile(r"(" + GROUPED_NUMBER + r"|" + NUMBER.pattern + r")(?:\s+(?:ms|tokens/s|GB/s|GFLOP/s)|[^\s<]*)\s*<!--\s*perf:(.*?)-->")
PERF_COMMENT = re.compile(r"<!--\s*perf:")
# A timing in learner prose: a number with a unit that only a benchmark can produce.
TIMING = re.compile(r"(?<![\d.,])\d[\d,]*(?:\.\d+)?\s*(?:ms|tokens/s|GB/s|GFLOP/s)(?!\w)")
LEARNER_PAGE = re.compile(r"(?:^|/)[1-6]-[^/]*\.md$")
REFERENCE_PAGE = re.compile(r"(?:^|/)(?:web-[^/]*|gemm|architecture|embedding)\.md$")
# A number (digits grouped by commas allowed) right before a run: comment, and the comment itself.
# (the number may carry a suffix such as × or % and be followed by one unit word: `68.6 KiB<!-- run: … -->`)
FIGURE_TAIL = r"[^\s<]*(?:\s+[^\s\d<]{1,12})?\s*"
RUN_FIGURE = re.compile(r"(" + GROUPED_NUMBER + r")" + FIGURE_TAIL + r"<!--\s*run:(.*?)-->")
RUN_COMMENT = re.compile(r"<!--\s*run:")
# once: a one-off measurement (where and when); limit: a fixed budget or a test's threshold (whose).
ONCE_FIGURE = re.compile(r"(" + NUMBER.pattern + r")" + FIGURE_TAIL + r"<!--\s*(?:once|limit):(.*?)-->")
ONCE_COMMENT = re.compile(r"<!--\s*(?:once|limit):")
SLOW_SECONDS = 10.0  # CPU seconds: each quoted command stays well under this, so the check stays short


class Block:
    def __init__(self, path, line, options):
        self.path, self.line, self.options = path, line, options
        self.steps = []  # [(command, [expected output lines])]


def parse_options(text):
    opts = {"tol": 0.0, "skip": None, "run_only": False}
    for word in shlex.split(text):
        if word == "run-only":
            opts["run_only"] = True
        elif word.startswith("tol="):
            opts["tol"] = float(word[4:])
        elif word.startswith("skip="):
            opts["skip"] = re.compile(word[5:])
        else:
            raise ValueError(f"unknown check option {word!r} (allowed: tol=R, skip=REGEX, run-only)")
    return opts


def blocks_of(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        if not FENCE_OPEN.match(lines[i]):
            i += 1
            continue
        prev = lines[i - 1] if i > 0 else ""
        m = OPTIONS.match(prev.strip())
        block = Block(path, i + 1, parse_options(m.group(1)) if m else parse_options(""))
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            text = lines[i]
            if text.startswith("$ "):
                block.steps.append((text[2:], []))
            elif block.steps:
                block.steps[-1][1].append(text)
            elif text.strip():
                raise ValueError(f"{path}:{i + 1}: console block output before any `$ ` command")
            i += 1
        if i >= len(lines):
            raise ValueError(f"{path}:{block.line}: unclosed console block")
        blocks.append(block)
        i += 1
    return blocks


def split_numbers(line):
    """The text around the numbers (spaces collapsed) and the numbers as written."""
    numbers = NUMBER.findall(line)
    text = " ".join(NUMBER.sub("#", line).split())
    return text, numbers


def numbers_agree(want, got, tol):
    if want == got:
        return True
    if tol == 0.0:
        return False
    a, b = float(want), float(got)
    return abs(a - b) <= tol * abs(a)


def line_agrees(want, got, opts):
    if opts["skip"] is not None:
        want, got = opts["skip"].sub("~", want), opts["skip"].sub("~", got)
    wt, wn = split_numbers(want)
    gt, gn = split_numbers(got)
    if wt != gt or len(wn) != len(gn):
        return False
    return all(numbers_agree(w, g, opts["tol"]) for w, g in zip(wn, gn))


def match(expected, actual, opts):
    """Matches quoted lines (with `...` elisions) against the fresh output; returns the first mismatch."""
    def go(i, j):
        while i < len(expected):
            if expected[i].strip() == "...":
                if i + 1 == len(expected):
                    return None
                for k in range(j, len(actual) + 1):
                    if go(i + 1, k) is None:
                        return None
                return (i, j)
            if j >= len(actual) or not line_agrees(expected[i], actual[j], opts):
                return (i, j)
            i, j = i + 1, j + 1
        return None if j == len(actual) else (i, j)
    return go(0, 0)


def trim(lines):
    lines = [l.rstrip() for l in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def child_cpu():
    """CPU seconds used by finished child processes: the cost of a command, which unlike its wall time
    does not depend on how busy the machine is."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_block(block, eva, timings):
    failures = []
    env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(eva)) + os.pathsep + os.environ["PATH"])
    with tempfile.TemporaryDirectory(prefix="eva-docs-") as tmp:
        for command, expected in block.steps:
            where = f"{block.path}:{block.line}: $ {command}"
            if not CALLS_EVA.search(command):
                failures.append(f"{where}\n  a quoted command must call eva")
                continue
            start, cpu0 = time.monotonic(), child_cpu()
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
            timings.append((child_cpu() - cpu0, time.monotonic() - start, where))
            actual = trim(proc.stdout.decode("utf-8", errors="replace").split("\n"))
            if proc.returncode != 0:
                failures.append(f"{where}\n  exit status {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
                continue
            if block.options["run_only"]:
                if not actual:
                    failures.append(f"{where}\n  printed nothing")
                continue
            expected = trim(expected)
            bad = match(expected, actual, block.options)
            if bad is not None:
                i, j = bad
                want = expected[i] if i < len(expected) else "(end of the quoted output)"
                got = actual[j] if j < len(actual) else "(end of the output)"
                failures.append(f"{where}\n  quoted line {i + 1}: {want}\n  fresh  line {j + 1}: {got}")
    return failures


def perf_cell(perf, ref):
    """The value of `BENCHMARK[/TABLE] | ROW | COLUMN` in performance.json, or an error message."""
    parts = [p.strip() for p in ref.replace("\\|", "|").split("|")]
    if len(parts) != 3:
        return None, f"perf reference {ref.strip()!r} is not BENCHMARK | ROW | COLUMN"
    bench, row, col = parts
    bench, _, table = bench.partition("/")
    b = perf["benchmarks"].get(bench)
    if b is None:
        return None, f"no benchmark {bench!r} in performance.json"
    tables = [t for t in b["tables"] if not table or (t["title"] or "") == table]
    if len(tables) != 1:
        return None, f"benchmark {bench!r} has {len(b['tables'])} tables: name one as {bench}/TITLE"
    t = tables[0]
    names = [c["name"] for c in t["columns"]]
    if col not in names:
        return None, f"{bench}: no column {col!r} (columns: {names})"
    for r in t["rows"]:
        if str(r[0]) == row:
            return r[names.index(col)], None
    return None, f"{bench}: no row {row!r} (rows: {[str(r[0]) for r in t['rows']]})"


def prose_lines(path):
    """(line number, text) of the lines outside fenced blocks."""
    fenced = False
    for n, line in enumerate(open(path, encoding="utf-8").read().split("\n"), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def check_perf(path, perf):
    """Every `perf:` figure equals its performance.json cell at the quoted precision; learner pages
    quote no timing without one."""
    failures = []
    for n, line in prose_lines(path):
        for m in PERF_FIGURE.finditer(line):
            quoted, ref = m.group(1).replace(",", "").replace("\u2212", "-"), m.group(2)
            value, err = perf_cell(perf, ref)
            if err is None and not isinstance(value, (int, float)):
                err = f"the cell {ref.strip()!r} holds {value!r}, not a number"
            if err is not None:
                failures.append(f"{path}:{n}: {err}")
                continue
            decimals = len(quoted.split(".")[1]) if "." in quoted else 0
            if abs(float(quoted) - value) > 0.5 * 10 ** -decimals * (1 + 1e-9):
                failures.append(f"{path}:{n}: quoted {quoted}, performance.json has {value:.{decimals + 2}f} "
                                f"({ref.strip()})")
        for c in re.finditer(r"<!--(.*?)-->", line):
            if "--" in c.group(1):
                failures.append(f"{path}:{n}: an HTML comment may not contain -- (Markdown would show it as text)")
        if line.lstrip().startswith("|") and re.search(r"<!--[^>]*(?<!\\)\|[^>]*-->", line):
            failures.append(f"{path}:{n}: inside a table row, write the |s of a comment as \\| "
                            f"(a bare | splits the row's cells)")
        if len(PERF_COMMENT.findall(line)) != len(PERF_FIGURE.findall(line)):
            failures.append(f"{path}:{n}: a perf comment must follow the number it checks")
        rest = RUN_FIGURE.sub("", PERF_FIGURE.sub("", line))
        if LEARNER_PAGE.search(path):
            for t in TIMING.finditer(ONCE_FIGURE.sub("", rest)):
                failures.append(f"{path}:{n}: timing {t.group(0)!r} without a perf: comment "
                                f"(quote it from performance.json, or drop it)")
            if re.search(r"<!--\s*once:", line):
                failures.append(f"{path}:{n}: a chapter quotes no one-off measurement (once:): "
                                f"use performance.json (perf:) or a checked run (run:)")
        elif REFERENCE_PAGE.search(path):
            for t in TIMING.finditer(ONCE_FIGURE.sub("", rest)):
                failures.append(f"{path}:{n}: timing {t.group(0)!r} without a perf:, run:, once: or limit: comment")
        if len(ONCE_COMMENT.findall(line)) != len(ONCE_FIGURE.findall(line)):
            failures.append(f"{path}:{n}: a once: or limit: comment must follow the number it describes")
        for m in ONCE_FIGURE.finditer(line):
            if len(m.group(2).strip()) < 8:
                failures.append(f"{path}:{n}: once: must say where and when {m.group(1)} was measured "
                                f"(limit: whose threshold it is)")
    return failures


class JsonExpr:
    """EXPR of a run: comment, evaluated over a command's JSON output with nothing but arithmetic and
    path lookups (no names beyond the document's keys and a few reductions, no calls into Python)."""
    FUNCS = {"len": len, "min": min, "max": max, "sum": sum, "abs": abs}

    def __init__(self, doc):
        self.doc = doc

    def eval(self, text):
        return self.node(ast.parse(text.strip(), mode="eval").body)

    def node(self, e):
        if isinstance(e, ast.Constant) and isinstance(e.value, (int, float, str)):
            return e.value
        if isinstance(e, ast.Name):
            if e.id == "_":
                return self.doc
            if isinstance(self.doc, dict) and e.id in self.doc:
                return self.doc[e.id]
            raise ValueError(f"no key {e.id!r} in the output")
        if isinstance(e, ast.Attribute):
            v = self.node(e.value)
            if not isinstance(v, dict) or e.attr not in v:
                raise ValueError(f"no key {e.attr!r}")
            return v[e.attr]
        if isinstance(e, ast.Subscript):
            sl = e.slice.value if hasattr(ast, "Index") and isinstance(e.slice, ast.Index) else e.slice
            v, k = self.node(e.value), self.node(sl)
            try:
                return v[k]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"no element {k!r}")
        if isinstance(e, ast.Slice):
            return slice(*[None if x is None else self.node(x) for x in (e.lower, e.upper, e.step)])
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, (ast.USub, ast.UAdd)):
            v = self.node(e.operand)
            return -v if isinstance(e.op, ast.USub) else v
        if isinstance(e, ast.BinOp) and isinstance(e.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = self.node(e.left), self.node(e.right)
            return {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                    ast.Div: operator.truediv}[type(e.op)](a, b)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id in self.FUNCS and not e.keywords:
            return self.FUNCS[e.func.id](*[self.node(x) for x in e.args])
        raise ValueError(f"not allowed in a run: expression: {ast.dump(e)[:60]}")


def parse_output(text):
    """A command's stdout as JSON: one document, or JSON lines as a list."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(l) for l in text.splitlines() if l.strip()]


def run_command(text):
    """A run: comment's command as the shell runs it: `name=value` → `--name value`, `+flag` → `--flag`."""
    words = []
    for w in text.split(" "):
        m = re.fullmatch(r"([a-z][a-z0-9-]*)=(\S+)", w)
        if m:
            words += ["--" + m.group(1), m.group(2)]
        elif re.fullmatch(r"\+[a-z][a-z0-9-]*", w):
            words.append("--" + w[1:])
        else:
            words.append(w)
    return " ".join(words)


def check_runs(path, eva):
    """Every run: figure equals its command's JSON value (at the quoted precision, or within tol=)."""
    failures, outputs = [], {}
    env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(eva)) + os.pathsep + os.environ["PATH"])
    with tempfile.TemporaryDirectory(prefix="eva-docs-run-") as tmp:
        for n, line in prose_lines(path):
            if len(RUN_COMMENT.findall(line)) != len(RUN_FIGURE.findall(line)):
                failures.append(f"{path}:{n}: a run: comment must follow the number it checks")
            for m in RUN_FIGURE.finditer(line):
                quoted, spec = m.group(1).replace("\u2212", "-"), m.group(2)
                tol = None
                t = re.search(r"\s+tol=(\S+)\s*$", spec)
                if t:
                    tol, spec = float(t.group(1)), spec[:t.start()]
                if "=>" not in spec:
                    failures.append(f"{path}:{n}: run: needs COMMAND => EXPR")
                    continue
                if "--" in spec:
                    failures.append(f"{path}:{n}: in a run: comment write --name value as name=value and "
                                    f"--flag as +flag (an HTML comment may not contain --)")
                    continue
                command, expr = (x.strip() for x in spec.rsplit("=>", 1))
                command = run_command(command)
                if not CALLS_EVA.search(command):
                    failures.append(f"{path}:{n}: a run: command must call eva: {command}")
                    continue
                if command not in outputs:
                    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
                    if proc.returncode != 0:
                        outputs[command] = ValueError(f"exit status {proc.returncode}: "
                                                      f"{proc.stderr.decode(errors='replace').strip()[:200]}")
                    else:
                        try:
                            outputs[command] = parse_output(proc.stdout.decode("utf-8", errors="replace"))
                        except json.JSONDecodeError as e:
                            outputs[command] = ValueError(f"output is not JSON ({e})")
                doc = outputs[command]
                try:
                    if isinstance(doc, Exception):
                        raise doc
                    value = JsonExpr(doc).eval(expr)
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        raise ValueError(f"{expr} is {value!r}, not a number")
                except (ValueError, SyntaxError, TypeError, ZeroDivisionError) as e:
                    failures.append(f"{path}:{n}: run: {command} => {expr}: {e}")
                    continue
                q = float(quoted.replace(",", ""))
                mantissa = quoted.replace(",", "").lower().split("e")[0]
                decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
                exp = int(quoted.lower().split("e")[1]) if "e" in quoted.lower() else 0
                if tol is not None:
                    ok = abs(q - value) <= tol * abs(q)
                    want = f"within {tol} relative"
                else:
                    ok = abs(q - value) <= 0.5 * 10 ** (exp - decimals) * (1 + 1e-9)
                    want = "at the quoted precision"
                if not ok:
                    failures.append(f"{path}:{n}: quoted {quoted}, the run gives {value:.6g} ({want}; "
                                    f"{command} => {expr})")
    return failures


FIGURE_REF = re.compile(r"\]\(figures/([^)\s]+)\)")
GENERATED_FIGURE = re.compile(r'write\(out, "([^"]+)"')


def check_figures(path):
    """Every figure a page shows exists: a concept diagram committed in docs/figures/, or a data plot
    that scripts/docs_figures.py writes at build time."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    generated = set(GENERATED_FIGURE.findall(open(os.path.join(root, "scripts", "docs_figures.py")).read()))
    failures = []
    for n, line in prose_lines(path):
        for name in FIGURE_REF.findall(line):
            if name not in generated and not os.path.isfile(os.path.join(root, "docs", "figures", name)):
                failures.append(f"{path}:{n}: figure {name} is neither in docs/figures/ nor drawn by docs_figures.py")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eva", required=True, help="the eva binary under test")
    parser.add_argument("--perf", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs",
                                                       "performance.json"),
                        help="benchmark results the perf: figures are checked against")
    parser.add_argument("files", nargs="+", help="Markdown files")
    args = parser.parse_args()
    failures, timings, count = [], [], 0
    perf = json.load(open(args.perf, encoding="utf-8"))
    for path in args.files:
        failures += check_perf(path, perf) + check_figures(path) + check_runs(path, args.eva)
        for block in blocks_of(path):
            count += 1
            failures += run_block(block, args.eva, timings)
    cpu, wall = sum(t[0] for t in timings), sum(t[1] for t in timings)
    slowest = max(timings, default=(0.0, 0.0, "none"))
    print(f"docs check: {count} blocks, {len(timings)} commands, {cpu:.1f} s CPU, {wall:.1f} s wall "
          f"(slowest {slowest[0]:.1f} s CPU: {slowest[2]})")
    for cpu_s, _, where in timings:
        if cpu_s > SLOW_SECONDS:
            print(f"warning: {cpu_s:.1f} s CPU (keep quoted commands under {SLOW_SECONDS:.0f} s): {where}")
    if count == 0:
        failures.append("no console blocks found")
    for f in failures:
        print("FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
