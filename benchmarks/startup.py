"""Whole-process start-up of each command, as a ratio to the floor every command pays.

The floor is `python -c "import xdsl.dialects.builtin, lark"`: the interpreter plus the two
libraries that any command parsing a `.zk` file needs. Each round runs the floor and every
command once, in turn (paired: a busy moment slows a floor and a command alike); a command's
figure is its best of N rounds over the floor's best of the same rounds, and beside it the median
over the rounds of its time over the floor's in the same round (the paired ratio: steadier on a
noisy machine, where one lucky floor run moves the best-of ratio by a tenth).

Goals (issue 16): check <= 1.25x the floor, compile and cost <= 2x.

Bytecode is written and used as an installed package would (PYTHONDONTWRITEBYTECODE is
cleared for the runs, and one warm-up round fills the caches).

    python benchmarks/startup.py [--rounds 7] [--format json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "gemm.zk")
SMALL = ["-D", "M=64", "-D", "N=64", "-D", "K=64"]
FLOOR = [sys.executable, "-c", "import xdsl.dialects.builtin, lark"]
COMMANDS = {
    "check": ["check", EXAMPLE],
    "compile": ["compile", EXAMPLE, *SMALL],
    "cost": ["cost", EXAMPLE, *SMALL],
    "run": ["run", EXAMPLE, *SMALL],
}
GOALS = {"check": 1.25, "compile": 2.0, "cost": 2.0}


def _time(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of `argv`."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return wall, usage.ru_utime + usage.ru_stime


def measure(rounds: int) -> dict:
    """Seconds per run, by name ("floor" and each command), over `rounds` paired rounds."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    argvs = {"floor": FLOOR, **{name: [sys.executable, "-m", "zhenwu_cc", *args]
                                for name, args in COMMANDS.items()}}
    for argv in argvs.values():  # warm-up: bytecode caches, the OS's file cache
        _time(argv, env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in argvs}
    for _ in range(rounds):
        for name, argv in argvs.items():
            times[name].append(_time(argv, env))
    return times


def table(times: dict) -> tuple[list[dict], str]:
    """Per command: best and median wall time, best CPU time, the best of each as a ratio to the
    floor's best (CPU time is the steadier figure on a busy machine), and the median of its
    wall time over the floor's round by round (`paired`)."""
    floor_wall = min(w for w, _ in times["floor"])
    floor_cpu = min(c for _, c in times["floor"])
    rows = []
    for name, ts in times.items():
        wall, cpu = min(w for w, _ in ts), min(c for _, c in ts)
        paired = statistics.median(w / f for (w, _), (f, _) in zip(ts, times["floor"]))
        goal = GOALS.get(name)
        rows.append({"command": name, "best_s": round(wall, 4),
                     "median_s": round(statistics.median(w for w, _ in ts), 4),
                     "ratio": round(wall / floor_wall, 2), "best_cpu_s": round(cpu, 4),
                     "cpu_ratio": round(cpu / floor_cpu, 2), "goal": goal,
                     "paired_ratio": round(paired, 2),
                     "met": None if goal is None else wall / floor_wall <= goal,
                     "paired_met": None if goal is None else paired <= goal})
    lines = [f"{'command':<9} {'best s':>8} {'median s':>9} {'x floor':>8} {'cpu s':>7} "
             f"{'x floor':>8} {'paired':>7}  goal (wall: best, paired)"]
    for r in rows:
        goal = "" if r["goal"] is None else \
            (f"<= {r['goal']}x {'met' if r['met'] else 'NOT met'}, "
             f"{'met' if r['paired_met'] else 'NOT met'}")
        lines.append(f"{r['command']:<9} {r['best_s']:>8.3f} {r['median_s']:>9.3f} "
                     f"{r['ratio']:>7.2f}x {r['best_cpu_s']:>7.3f} {r['cpu_ratio']:>7.2f}x "
                     f"{r['paired_ratio']:>6.2f}x  {goal}")
    return rows, "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="paired rounds (best of; >= 5)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    args = p.parse_args()
    if args.rounds < 5:
        p.error("--rounds must be >= 5")
    rows, text = table(measure(args.rounds))
    if args.format == "json":
        print(json.dumps({"rounds": args.rounds, "python": sys.version.split()[0],
                          "rows": rows}, indent=2))
    else:
        print(f"start-up, best of {args.rounds} paired rounds, {EXAMPLE} at M=N=K=64\n" + text)


if __name__ == "__main__":
    main()
