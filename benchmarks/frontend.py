"""How fast the front end is: each example's parse + irgen + verify in-process, and
`zhenwu-cc check examples/gemm.zk` as a whole process, with `python -c pass` and
`python -c "import xdsl.dialects.builtin"` timed in the same run so the figures read as ratios.

    .venv/bin/python benchmarks/frontend.py [--runs N] [--process-runs N] [--imports]

Goals (from the issue): under 20 ms per example in-process, under 0.4 s for the whole process.
In-process figures are medians after one warm-up build: lark's grammar is loaded once per process
(from the tables `make parser` generates) and its lexer compiles a regex per parser state on first
use, so the warm-up carries those costs; the start-up section shows them in fresh processes.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from zhenwu_cc.frontend.irgen import generate
from zhenwu_cc.frontend.parser import parse

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.zk"))
GEMM = REPO / "examples" / "gemm.zk"
BIN = Path(sys.executable).parent
IN_PROCESS_GOAL_MS, PROCESS_GOAL_S = 20.0, 0.4

# Run in a fresh interpreter: the cost of each start-up step of `zhenwu-cc check`, in order.
_PHASES = r"""
import json, sys, time
t = [time.perf_counter()]
import zhenwu_cc.cli; t.append(time.perf_counter())
from zhenwu_cc.frontend import parser; t.append(time.perf_counter())
parser._lark(); t.append(time.perf_counter())
tree = parser.parse(open(sys.argv[1]).read(), sys.argv[1]); t.append(time.perf_counter())
from zhenwu_cc.frontend import irgen; t.append(time.perf_counter())
irgen.generate(tree).verify(); t.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(t, t[1:])]))
"""
PHASE_NAMES = ("import cli (argparse, json)", "import parser (lark, ast, diagnostics)",
               "load grammar (generated LALR tables)", "first parse (lexer regexes)",
               "import irgen (xdsl, zk dialect)", "first irgen + verify")


def in_process(path: Path, runs: int) -> dict[str, float]:
    """Median milliseconds of each phase over `runs` builds, after one warm-up."""
    text = path.read_text()
    generate(parse(text, str(path))).verify()
    times = defaultdict(list)
    for _ in range(runs):
        t0 = time.perf_counter()
        tree = parse(text, str(path))
        t1 = time.perf_counter()
        module = generate(tree)
        t2 = time.perf_counter()
        module.verify()
        t3 = time.perf_counter()
        for name, dt in (("parse", t1 - t0), ("irgen", t2 - t1), ("verify", t3 - t2),
                         ("total", t3 - t0)):
            times[name].append(dt * 1e3)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["min"] = min(times["total"])
    out["ops"] = sum(1 for _ in module.walk())
    return out


def process_times(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall seconds of each command, run round-robin (so machine noise spreads evenly), after
    one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs + 1):
        for name, argv in commands.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
            if i:
                times[name].append(time.perf_counter() - t0)
    return times


def startup_phases(runs: int) -> list[float]:
    """Median seconds of each start-up step of `check` on gemm.zk, in fresh processes."""
    samples = [json.loads(subprocess.run([sys.executable, "-c", _PHASES, str(GEMM)], check=True,
                                         capture_output=True, text=True, cwd=REPO).stdout)
               for _ in range(runs)]
    return [statistics.median(col) for col in zip(*samples, strict=True)]


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_times(runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """`-X importtime` of `zhenwu-cc check`: median self ms by top-level package, and median
    cumulative ms of each module."""
    by_package, cumulative = defaultdict(list), defaultdict(list)
    for _ in range(runs):
        err = subprocess.run([sys.executable, "-X", "importtime", "-m", "zhenwu_cc", "check",
                              str(GEMM)], check=True, capture_output=True, text=True,
                             cwd=REPO).stderr
        selfs = defaultdict(float)
        for m in _IMPORT_LINE.finditer(err):
            own, cum, name = int(m.group(1)) / 1e3, int(m.group(2)) / 1e3, m.group(4)
            top = name.split(".")[0]
            selfs[top if top in ("xdsl", "lark", "zhenwu_cc") else "other"] += own
            cumulative[name].append(cum)
        for k, v in selfs.items():
            by_package[k].append(v)
    return ({k: statistics.median(v) for k, v in by_package.items()},
            {k: statistics.median(v) for k, v in cumulative.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="in-process builds per example")
    ap.add_argument("--process-runs", type=int, default=9, help="runs of each process (>= 7)")
    ap.add_argument("--imports", action="store_true",
                    help="also break start-up down by module with -X importtime")
    args = ap.parse_args()

    print(f"in-process parse + irgen + verify, median of {args.runs} after a warm-up (ms):")
    print(f"  {'example':<26}{'parse':>8}{'irgen':>8}{'verify':>8}{'total':>8}{'(min)':>8}"
          f"{'ops':>6}")
    totals = []
    for path in EXAMPLES:
        r = in_process(path, args.runs)
        totals.append(r["total"])
        flag = "" if r["total"] < IN_PROCESS_GOAL_MS else f"  over {IN_PROCESS_GOAL_MS:g} ms"
        print(f"  {path.name:<26}{r['parse']:8.2f}{r['irgen']:8.2f}{r['verify']:8.2f}"
              f"{r['total']:8.2f}{r['min']:8.2f}{r['ops']:6d}{flag}")
    if totals:
        print(f"  {'slowest (median)':<26}{max(totals):32.2f}   goal < {IN_PROCESS_GOAL_MS:g} ms: "
              + ("met" if max(totals) < IN_PROCESS_GOAL_MS else "NOT met"))

    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "import xdsl.dialects.builtin": [sys.executable, "-c",
                                                 "import xdsl.dialects.builtin"],
                "zhenwu-cc check gemm.zk": [str(BIN / "zhenwu-cc"), "check", str(GEMM)]}
    runs = max(7, args.process_runs)
    times = process_times(commands, runs)
    print(f"\nwhole process, median (min) of {runs} runs after a warm-up, same run:")
    base = statistics.median(times["import xdsl.dialects.builtin"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<30}{med:7.3f} s ({min(ts):.3f})  = {med / base:4.2f} x xdsl import")
    check = statistics.median(times["zhenwu-cc check gemm.zk"])
    print(f"  goal < {PROCESS_GOAL_S:g} s: " + ("met" if check < PROCESS_GOAL_S else "NOT met"))

    phases = startup_phases(runs)
    print(f"\nstart-up steps of `check` in a fresh process, median of {runs} (ms):")
    for name, dt in zip(PHASE_NAMES, phases, strict=True):
        print(f"  {name:<42}{dt * 1e3:8.1f}")
    print(f"  {'sum (after the interpreter starts)':<42}{sum(phases) * 1e3:8.1f}")

    if args.imports:
        by_package, cumulative = import_times(runs)
        print(f"\n-X importtime of `check`, median of {runs}: self time by package (ms):")
        for name, ms in sorted(by_package.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<42}{ms:8.1f}")
        print("largest modules by cumulative time (ms):")
        for name, ms in sorted(cumulative.items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {name:<42}{ms:8.1f}")


if __name__ == "__main__":
    main()
