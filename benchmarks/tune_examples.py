"""What `tune` finds on the bundled examples, and how close a sampled search comes to the optimum.

1. For every example in examples/ at its default shape parameters on m890: the modeled time of
   the schedule as written, of the tuner's winner (verified at reduced shapes against the float64
   reference), the speedup, and the tuner's wall time (no cache: every candidate is compiled).
   Where the kernel's tensors in HBM (parameters, results and intermediates, as the cost model
   counts them) total more than MAX_BYTES, its largest shape parameter is halved until they do
   not, and the row says so: a size rule, so the same examples are reduced whatever the load.
2. On three small spaces: the best time of the tuner (Optuna TPE) with a budget of a quarter of
   the compiles an exhaustive search of the whole space needs (after pruning) against that
   exhaustive search; the goal is within 2%.
3. The issue's case: a 1024^3 f32 GEMM with the examples' 128x128x64 tiles, tuned.

    python benchmarks/tune_examples.py [--budget 64] [--verify 3] [--only NAME] [--parts 123]
                                       [--max-rel-error E]

`--max-rel-error E` adds the matmul operands' precision (bf16, FP8) to the search of part 1, the
winners held to E against the exact math.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 1 << 30  # HBM bytes an example may hold at the shape it is tuned at
SMALL_SPACES = [("gemm.zk", {"M": 512, "N": 512, "K": 512}),
                ("softmax.zk", {"M": 1024, "N": 1024}),
                ("gemm_batched.zk", {"B": 2, "M": 256, "N": 256, "K": 256})]


def _compile_small_enough(path: Path):
    """(the kernel, the shape parameters it was reduced to or {})."""
    import zhenwu_cc

    k = zhenwu_cc.compile(str(path))
    params = {n: a.value.data for n, a in k.zk.attributes["params"].data.items()}
    reduced: dict[str, int] = {}
    while True:
        tensors = k.costing(k.target).workload.tensors.values()
        if sum(t.bytes for t in tensors) <= MAX_BYTES or not params:
            return k, reduced
        name = max(params, key=lambda n: params[n])
        params[name] //= 2
        reduced[name] = params[name]
        k = zhenwu_cc.compile(str(path), defines=reduced)


def examples(budget: int, verify: int, only: str | None, max_rel_error: float | None) -> None:
    budget_note = "" if max_rel_error is None else f", max rel error {max_rel_error:g}"
    print(f"1. every example on m890, budget {budget}, verify {verify}{budget_note} "
          "(modeled times)")
    print(f"{'example':<22} {'default':>11} {'tuned':>11} {'speedup':>8} {'wall':>7}  "
          "verified  winner / note")
    for path in sorted((ROOT / "examples").glob("*.zk")):
        if only and only not in path.stem:
            continue
        k, reduced = _compile_small_enough(path)
        t = time.perf_counter()
        r = k.tune(budget=budget, verify=verify, max_rel_error=max_rel_error, cache=False)
        wall = time.perf_counter() - t
        win = r.winner
        tuned = win.time if win is not None else r.default_time
        note = win.schedule.text() if win is not None else "the schedule as written"
        if reduced:
            note += "  [reduced: " + " ".join(f"{n}={v}" for n, v in reduced.items()) + "]"
        checked = "-" if win is None or verify == 0 else (
            "yes" if r.verified.get(win.schedule, {}).get("passed") else "no")
        print(f"{path.stem:<22} {r.default_time * 1e6:>9.2f}us {tuned * 1e6:>9.2f}us "
              f"{r.default_time / tuned:>7.2f}x {wall:>6.1f}s  {checked:<8}  {note}",
              flush=True)


def small_spaces() -> None:
    import zhenwu_cc

    print("\n2. sampled search (a quarter of the exhaustive compiles) against exhaustive, on m890")
    print(f"{'kernel':<40} {'space':>6} {'compiles':>8} {'budget':>6} {'exhaustive':>11} "
          f"{'sampled':>11} {'gap':>7} {'default':>11}")
    for name, defines in SMALL_SPACES:
        k = zhenwu_cc.compile(str(ROOT / "examples" / name), defines=defines)
        full = k.tune(budget=10**6, verify=0, cache=False)
        compiles = sum(t.status in ("costed", "refused") for t in full.trials)
        budget = max(8, compiles // 4)
        part = k.tune(budget=budget, verify=0, cache=False)
        best, got = full.ranked[0].time, part.ranked[0].time
        shape = " ".join(f"{n}={v}" for n, v in defines.items())
        print(f"{name + ' ' + shape:<40} {full.space.size:>6} {compiles:>8} {budget:>6} "
              f"{best * 1e6:>9.3f}us "
              f"{got * 1e6:>9.3f}us {100 * (got / best - 1):>6.2f}% "
              f"{full.default_time * 1e6:>9.3f}us", flush=True)


ISSUE_CASE = """
kernel gemm32<M = 1024, N = 1024, K = 1024>(a: f32[M, K], b: f32[K, N]) -> f32[M, N] {
    c = a @ b
    return c
}
schedule gemm32 {
    tile c [128, 128, 64]
}
"""


def issue_case(budget: int, verify: int) -> None:
    import zhenwu_cc

    print(f"\n3. 1024^3 f32 GEMM, tile c [128, 128, 64] as written, budget {budget}, on m890")
    k = zhenwu_cc.compile(ISSUE_CASE)
    t = time.perf_counter()
    r = k.tune(budget=budget, verify=verify, cache=False)
    wall = time.perf_counter() - t
    print("".join(f"   {line}\n" for line in r.text(5).splitlines()), end="")
    print(f"   tuner wall time {wall:.1f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--verify", type=int, default=3)
    ap.add_argument("--only", help="only examples whose name contains this")
    ap.add_argument("--parts", default="123", help="which parts to run (default 123)")
    ap.add_argument("--max-rel-error", type=float, help="numerics budget of part 1's winners")
    args = ap.parse_args()
    if "1" in args.parts:
        examples(args.budget, args.verify, args.only, args.max_rel_error)
    if "2" in args.parts:
        small_spaces()
    if "3" in args.parts:
        issue_case(args.budget, args.verify)


if __name__ == "__main__":
    main()
