"""The executor's time against plain numpy on the same data, as ratios (median and best of runs).

Kernels: f32 GEMM 2048^3 with tiles 128x128x64 and 64x64x32, softmax over 4096x4096 rows,
layernorm over 8192x4096 rows, each compiled from `.zk` source to ppu IR by the compiler's own
pipeline (what `zhenwu-cc compile --emit ppu` prints). Both sides run in this process with the
same BLAS threads; the figures are for this machine, never pass/fail.

    .venv/bin/python benchmarks/runtime_vs_numpy.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from zhenwu_cc.runtime.executor import execute

import zhenwu_cc

GEMM = """
kernel gemm<M = 2048, N = 2048, K = 2048>(a: f32[M, K], b: f32[K, N]) -> f32[M, N] {
    c = a @ b
    return c
}
schedule gemm {
    tile c [TILES]
    buffers 2
}
"""
SOFTMAX = """
kernel softmax_rows<M = 4096, N = 4096>(x: f32[M, N]) -> f32[M, N] {
    y = softmax(x, axis=-1)
    return y
}
schedule softmax_rows {
    tile y [4, 4096]
}
"""
LAYERNORM = """
kernel layernorm<T = 8192, D = 4096>(x: f32[T, D], gamma: f32[D], beta: f32[D]) -> f32[T, D] {
    y = layernorm(x, gamma, beta, axis=-1, eps=1e-5)
    return y
}
schedule layernorm {
    tile y [4, 4096]
}
"""


# ---- numpy baselines ----------------------------------------------------------------------------
def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=1, keepdims=True)
    return xc / np.sqrt(var + np.float32(eps)) * gamma + beta


# ---- measuring ----------------------------------------------------------------------------------
def cases(rng: np.random.Generator):
    """(label, .zk source, inputs, the numpy computation of the same output)."""
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    b = rng.standard_normal((2048, 2048), dtype=np.float32)
    for tiles in ("128, 128, 64", "64, 64, 32"):
        label = f"gemm f32 2048^3 tiles {tiles.replace(', ', 'x')}"
        yield label, GEMM.replace("TILES", tiles), {"a": a, "b": b}, lambda: a @ b
    x = rng.standard_normal((4096, 4096), dtype=np.float32)
    yield "softmax f32 4096x4096 (rows)", SOFTMAX, {"x": x}, lambda: np_softmax(x)
    x = rng.standard_normal((8192, 4096), dtype=np.float32)
    gamma = rng.standard_normal(4096, dtype=np.float32)
    beta = rng.standard_normal(4096, dtype=np.float32)
    yield "layernorm f32 8192x4096 (rows)", LAYERNORM, {"x": x, "gamma": gamma, "beta": beta}, \
        lambda: np_layernorm(x, gamma, beta, 1e-5)


def _seconds(fn: Callable[[], object], repeat: int) -> list[float]:
    """Seconds of `repeat` back-to-back runs after a warm-up run. (Interleaving the two sides
    makes each pay for memory the other just freed: page faults dominate on some hosts.)"""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side (median)")
    args = parser.parse_args()
    threads = {k: v for k, v in sorted(os.environ.items())
               if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NVPL"))}
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, thread settings: {threads or 'none'}")
    print(f"{'':34} {'median seconds':^21} {'ratio':>7} {'ratio':>7}")
    print(f"{'kernel':34} {'executor':>10} {'numpy':>10} {'median':>7} {'best':>7}  max |diff|")
    for label, source, inputs, baseline in cases(np.random.default_rng(0)):
        kernel = zhenwu_cc.compile(source).module("ppu").ops.first
        ours = _seconds(lambda: execute(kernel, inputs), args.repeat)
        theirs = _seconds(baseline, args.repeat)
        (got,) = execute(kernel, inputs).values()
        diff = float(np.max(np.abs(got - baseline())))
        mine, base = statistics.median(ours), statistics.median(theirs)
        print(f"{label:34} {mine:9.3f}s {base:9.3f}s {mine / base:6.2f}x "
              f"{min(ours) / min(theirs):6.2f}x  {diff:.2e}")


if __name__ == "__main__":
    main()
