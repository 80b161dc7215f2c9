"""How fast the cost model answers, the two numbers a tuner cares about.

1. Static cost of an already-lowered 8192x8192x8192 GEMM (extract the workload from the ppu
   program + estimate), in-process: median over repeats. Goal: well under 50 ms.
2. End to end for new schedules of a 4096^3 GEMM, schedules per second: from source text
   (front end + lowering with per-pass verification + cost), and through
   `CompiledKernel.retile` (the parsed kernel reused; lowering without per-pass verification +
   cost), which is what a tuner calls.

For scale, the same run times numpy's 1024^3 f32 matmul.

    python benchmarks/cost_speed.py
"""

from __future__ import annotations

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


def main() -> None:
    from zhenwu_cc.runtime.cost.extract import workload_of
    from zhenwu_cc.runtime.cost.model import estimate
    from zhenwu_cc.core.target import load_target

    import zhenwu_cc
    from zhenwu_cc.core.diagnostics import CompileError

    target = load_target("m890")
    kernel = zhenwu_cc.compile(GEMM)
    ppu_kernel = kernel.module("ppu").ops.first
    static = _median_ms(lambda: estimate(workload_of(ppu_kernel), target), 20)
    extract_only = _median_ms(lambda: workload_of(ppu_kernel), 20)
    print(f"static cost of a lowered 8192^3 GEMM: {static:.2f} ms "
          f"(workload extraction {extract_only:.2f} ms, model {static - extract_only:.2f} ms)")

    sizes = [16, 32, 64, 128, 256]
    schedules = [(tm, tn, tk) for tm, tn, tk in itertools.product(sizes, sizes, (32, 64, 128))]
    base = zhenwu_cc.compile(GEMM, defines={"M": 4096, "N": 4096, "K": 4096})
    for label, candidate in (
            ("source text (parse + lower + cost)", lambda s: zhenwu_cc.compile(
                GEMM.replace("8192", "4096") + f"schedule gemm {{ tile c {list(s)} }}\n")),
            ("retile (lower + cost; what a tuner calls)", lambda s: base.retile({"c": s}))):
        start = time.perf_counter()
        best, rejected = None, 0
        for s in schedules:
            try:
                t = candidate(s).cost().time
            except CompileError:  # tiles that do not fit in SRAM (ZK0604): a tuner skips them
                rejected += 1
                continue
            best = min(best or (t, s), (t, s))
        elapsed = time.perf_counter() - start
        print(f"new schedules end to end, {label}: {len(schedules)} in {elapsed:.2f} s = "
              f"{len(schedules) / elapsed:.1f} schedules/s ({rejected} rejected as too big for "
              f"SRAM); best {best[1]} at {best[0] * 1e6:.1f} us")

    a = np.ones((1024, 1024), np.float32)
    ref = _median_ms(lambda: a @ a, 5)
    print(f"for scale, numpy 1024^3 f32 matmul on this machine: {ref:.1f} ms")


if __name__ == "__main__":
    main()
