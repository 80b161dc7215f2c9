"""Does the front end stay linear? Time per statement (parse + irgen + verify, in-process) for
kernels of 1,000, 5,000 and 20,000 chained bindings, a 1 MB one-line expression, and a file of
5,000 kernels; then the passes of `compile` on a 5,000-statement kernel against a 1,000 one.

    .venv/bin/python benchmarks/frontend_scaling.py [--quick]

Goal (issue 11): the time per statement at 20,000 statements within 1.3x of that at 1,000,
measured in the same run. `--quick` stops at 5,000 statements and a 100 kB expression.
"""

from __future__ import annotations

import argparse
import gc
import time

from zhenwu_cc.frontend import build

GOAL = 1.3


def chain(n: int) -> str:
    """One kernel of `n` bindings, each using the one before: `y1 = y0 + 1.0` ..."""
    body = "\n".join(f"    y{i} = y{i - 1} + 1.0" for i in range(1, n))
    return (f"kernel k(x: f32[64]) -> f32[64] {{\n    y0 = x + 1.0\n{body}\n"
            f"    return y{n - 1}\n}}\n")


def long_expression(size: int) -> str:
    """One statement whose right-hand side is a `size`-byte sum `x + x + ... + x`."""
    terms = max(1, size // 4)
    return f"kernel k(x: f32[64]) -> f32[64] {{\n    y = {' + '.join(['x'] * terms)}\n" \
           "    return y\n}\n"


def kernels(n: int) -> str:
    return "".join(f"kernel k{i}(x: f32[64]) -> f32[64] {{\n    y = x * 2.0\n    return y\n}}\n"
                   for i in range(n))


def seconds(fn) -> float:
    """Best of two runs (the first also warms lark's lexer), with the collector out of the way."""
    best = float("inf")
    for _ in range(2):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best


def front_end(text: str) -> float:
    return seconds(lambda: build(text, "bench.zk"))


def passes(n: int) -> float:
    """The default `compile` pipeline (through lower-ppu) on an `n`-statement kernel."""
    from zhenwu_cc.pipeline import lower

    text = chain(n)

    def run():
        lower(build(text, "bench.zk"), "ppu")

    return seconds(run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = ap.parse_args()
    sizes = (1000, 5000) if args.quick else (1000, 5000, 20000)
    per = {}
    print("front end (parse + irgen + verify), per statement:")
    for n in sizes:
        t = front_end(chain(n))
        per[n] = t / n
        print(f"  {n:>6} statements  {t:8.3f} s  {per[n] * 1e6:8.1f} us/statement")
    ratio = per[sizes[-1]] / per[sizes[0]]
    print(f"  ratio {sizes[-1]} : {sizes[0]} = {ratio:.2f} (goal <= {GOAL})")
    size = 100_000 if args.quick else 1_000_000
    text = long_expression(size)
    t = front_end(text)
    terms = text.count("x +") + 1
    print(f"  {size / 1e6:g} MB expression ({terms} terms)  {t:8.3f} s  "
          f"{t / terms * 1e6:8.1f} us/term")
    n = 1000 if args.quick else 5000
    t = front_end(kernels(n))
    print(f"  {n} kernels  {t:8.3f} s  {t / n * 1e6:8.1f} us/kernel")
    small, big = 1000, 5000
    ts, tb = passes(small), passes(big)
    print("passes to ppu, per statement:")
    print(f"  {small:>6} statements  {ts:8.3f} s  {ts / small * 1e6:8.1f} us/statement")
    print(f"  {big:>6} statements  {tb:8.3f} s  {tb / big * 1e6:8.1f} us/statement")
    print(f"  ratio {big} : {small} = {(tb / big) / (ts / small):.2f}")


if __name__ == "__main__":
    main()
