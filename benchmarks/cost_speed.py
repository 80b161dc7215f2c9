"""How fast the cost model answers, the numbers a tuner cares about.

1. Static cost of an already-lowered 8192x8192x8192 GEMM (extract the workload from the ppu
   program + estimate), in-process: median over repeats. Goal: well under 50 ms.
2. New schedules per second, in-process, for a 4096^3 GEMM and for attention
   (examples/attention.zk and examples/attention_causal.zk, each fused into one flash grid whose
   blocks `tile s` and `tile o` give together, and attention with --no-fuse): through
   `CompiledKernel.retile(...).cost()` (lowering every schedule) and through
   `CompiledKernel.fast_cost(...)` (zhenwu_cc/fast_cost.py: a lowering per structure key, then
   numbers only), next to the cost model's own time per schedule (`estimate` alone on each
   schedule's precomputed workload), measured in the same run. The fast path's first pass over
   the schedules (a fresh `fast_cost` cache) learns their structure keys: it is reported with
   how many distinct keys it met, how many schedules it lowered in full and how many it took
   only through `tile` (a key served by a template of another key of the same structure; a key
   that differs from a template's only in which of a flash grid's sizes are equal is served
   without either); the
   steady state is the best of `--repeats` later passes (interleaved with the model's).
   Schedules whose tiles do not fit SRAM count too (both paths raise ZK0604 or ZK0601 for
   them). Goal: >= 2,000 schedules/s for the GEMM, >= 500/s
   for attention, a schedule costed in <= 4x the model's own time.
3. From source text (front end + lowering with per-pass verification + cost), for scale.

The machine may be shared: the figures are the best of the repeats.

    python benchmarks/cost_speed.py [--repeats N]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np

GEMM = """
kernel gemm<M = 8192, N = 8192, K = 8192>(a: bf16[M, K], b: bf16[K, N]) -> bf16[M, N] {
    c = bf16(a @ b)
    return c
}
"""


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _sweep(cost, schedules) -> tuple[float, int]:
    """Seconds to cost every schedule, and how many were refused (ZK0604)."""
    from zhenwu_cc.core.diagnostics import CompileError

    rejected = 0
    start = time.perf_counter()
    for tiles in schedules:
        try:
            cost(tiles)
        except CompileError:
            rejected += 1
    return time.perf_counter() - start, rejected


def _speeds(label: str, kernel, schedules, repeats: int) -> None:
    from zhenwu_cc.core.target import load_target
    from zhenwu_cc.passes.tiling import masks
    from zhenwu_cc.runtime.cost.model import estimate

    n = len(schedules)
    workloads = []
    full, rejected = _sweep(lambda t: workloads.append(
        kernel.retile(t).costing(kernel.target).workload), schedules)
    masks._live_blocks.cache_clear()  # the masks the retile sweep evaluated: the 1st pass is cold
    first, _ = _sweep(kernel.fast_cost, schedules)
    learnt = kernel._fast
    keys = len(learnt.templates) + sum(len(t.serves) for t in learnt.templates.values())
    lowered, tiled = learnt.lowered, learnt.tiled
    target = load_target(kernel.target)
    fasts, models = [], []
    for _ in range(repeats):  # interleaved, so that both see the same machine load
        fasts.append(_sweep(kernel.fast_cost, schedules)[0] / n)
        models.append(_sweep(lambda w: estimate(w, target), workloads)[0] / len(workloads))
    per, model = min(fasts), min(models)
    fast = per * n
    ratio = statistics.median(f / m for f, m in zip(fasts, models))
    print(f"{label}: {n} schedules ({rejected} refused as too big for SRAM)\n"
          f"  retile + cost:        {n / full:8.1f} schedules/s ({1e3 * full / n:.2f} ms each)\n"
          f"  fast_cost, 1st pass:  {n / first:8.1f} schedules/s (learning {keys} structure "
          f"keys: {lowered} lowered, {tiled} only through `tile`)\n"
          f"  fast_cost, steady:    {n / fast:8.1f} schedules/s ({1e3 * per:.3f} ms each, "
          f"{full / fast:.0f}x retile + cost)\n"
          f"  cost model alone:     {1e3 * model:8.3f} ms per schedule "
          f"(fast_cost: {ratio:.1f}x the model's own time, the median over paired passes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from zhenwu_cc.runtime.cost.extract import workload_of
    from zhenwu_cc.runtime.cost.model import estimate
    from zhenwu_cc.core.target import load_target

    import zhenwu_cc

    target = load_target("m890")
    kernel = zhenwu_cc.compile(GEMM)
    ppu_kernel = kernel.module("ppu").ops.first
    static = _median_ms(lambda: estimate(workload_of(ppu_kernel), target), 20)
    extract_only = _median_ms(lambda: workload_of(ppu_kernel), 20)
    print(f"static cost of a lowered 8192^3 GEMM: {static:.2f} ms "
          f"(workload extraction {extract_only:.2f} ms, model {static - extract_only:.2f} ms)")

    sizes = [16, 32, 64, 128, 256]
    gemm = [{"c": (tm, tn, tk)} for tm, tn, tk in itertools.product(sizes, sizes, (32, 64, 128))]
    _speeds("GEMM 4096^3 (examples/gemm.zk)", zhenwu_cc.compile("examples/gemm.zk"), gemm,
            args.repeats)
    mm = (16, 32, 64, 128)
    # flash attention: `tile s [BQ, BKV, K]` and `tile o [BQ, BD, BKV]` agree (ZK0618 otherwise)
    attention = [{"s": (bq, bkv, sk), "o": (bq, bd, bkv)}
                 for bq, bkv, sk, bd in itertools.product(mm, mm, (32, 64, 128), (64, 128))]
    _speeds("attention, one flash grid (examples/attention.zk)",
            zhenwu_cc.compile("examples/attention.zk"), attention, args.repeats)
    _speeds("causal attention, one flash grid skipping masked blocks "
            "(examples/attention_causal.zk)", zhenwu_cc.compile("examples/attention_causal.zk"),
            attention, args.repeats)
    _speeds("attention --no-fuse (S in HBM)",
            zhenwu_cc.compile("examples/attention.zk", fuse=False),
            [{"s": (sm, sn, sk), "o": (om, 128, ok)} for sm, sn, sk, om, ok
             in itertools.product((32, 64, 128), (32, 64, 128), (32, 64), (32, 64, 128),
                                  (32, 64))], args.repeats)

    source = GEMM.replace("8192", "4096")
    start = time.perf_counter()
    for tiles in gemm[:10]:
        zhenwu_cc.compile(source + f"schedule gemm {{ tile c {list(tiles['c'])} }}\n").cost()
    elapsed = time.perf_counter() - start
    print(f"from source text (parse + verified lowering + cost): {10 / elapsed:.1f} schedules/s")

    a = np.ones((1024, 1024), np.float32)
    ref = _median_ms(lambda: a @ a, 5)
    print(f"for scale, numpy 1024^3 f32 matmul on this machine: {ref:.1f} ms")


if __name__ == "__main__":
    main()
