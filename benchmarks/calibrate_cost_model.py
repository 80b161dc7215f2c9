"""Fit the cost model's free constants to XLA's measured H100 BF16 GEMMs and print the errors.

    .venv/bin/python benchmarks/calibrate_cost_model.py            # fit, then print the table
    .venv/bin/python benchmarks/calibrate_cost_model.py --no-fit   # the target file as it is

Method (it carries over to any target with measurements): build, for each measured shape, the
Workload our `tile` pass produces (`gemm_workload`, a documented stand-in until the pass exists);
predict FLOP/s with `estimate`; choose the free constants -- the fixed overhead t0 and the compute
and L2 efficiencies, each in (0, 1] -- that minimise the mean |relative error| of predicted vs
measured FLOP/s: a coarse grid, then Nelder-Mead from its best point (deterministic). The memory
efficiency is not fitted: GEMMs barely constrain it (the script prints how little the error moves
with it), so it comes from streaming-kernel measurements (the target file's value). It prints the
per-shape errors, their median / p90 / max (also as errors in time, the convention of
hardware-numerics.md §5), the plain roofline at datasheet peaks as a baseline, and the constants.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import math
import statistics
import sys
from pathlib import Path

from zhenwu_cc.runtime.cost.model import estimate
from zhenwu_cc.runtime.cost.workload import Phase, Tensor, Work, Workload
from zhenwu_cc.core.target import Efficiency, Target, load_target

REPO = Path(__file__).resolve().parent.parent
CSV_NAME = "h100_bf16_gemm_calibration.csv"
CSV_PLACES = (REPO / "benchmarks" / "data" / CSV_NAME, REPO.parent / "shared" / "data" / CSV_NAME)
TILE_M = TILE_N = 128
TILE_K = 64
MIN_K_PART = 256


def gemm_workload(m: int, n: int, k: int, compute_units: int) -> Workload:
    """The Workload the `tile` pass will produce for a batch-1 BF16 GEMM (stand-in).

    128x128 output tiles with a K step of 64; when there are fewer output tiles than CUs, K is
    split into s = min(ceil(CUs / tiles), K / 256) parts (each part >= 256 deep), each part
    storing an f32 partial tile, and a second phase reduces the s partials (s x M x N x 4 bytes
    read, M x N x 2 written, s x M x N vector adds). Each step loads a 128x64 slice of A and a
    64x128 slice of B; the epilogue stores the output tile in bf16. Amounts are exact totals
    (edge tiles included): every tile column reads all of A, every tile row all of B. The
    reduction is elementwise, so its tiles (rows x 128, one partial per step) are made just
    small enough to give every CU work.
    """
    tm, tn = math.ceil(m / TILE_M), math.ceil(n / TILE_N)
    out_tiles = tm * tn
    split = max(1, min(math.ceil(compute_units / out_tiles), k // MIN_K_PART)) \
        if out_tiles < compute_units else 1
    steps = math.ceil(math.ceil(k / split) / TILE_K)
    a_bytes, b_bytes, c_bytes = m * k * 2, k * n * 2, m * n * 2
    tensors = {"a": Tensor("a", a_bytes, "input"), "b": Tensor("b", b_bytes, "input"),
               "c": Tensor("c", c_bytes, "output")}
    step_sram = (TILE_M * TILE_K + TILE_K * TILE_N) * 2
    body = (Work("load", a_bytes * tn, tensor="a", dtype="bf16", op="ppu.dma"),
            Work("load", b_bytes * tm, tensor="b", dtype="bf16", op="ppu.dma"),
            Work("mma", 2 * m * n * k, dtype="bf16", op="ppu.mma"))
    unique = {"a": a_bytes, "b": b_bytes}
    if split == 1:
        gemm = Phase("gemm", out_tiles, steps, 2, 2 * step_sram,
                     body + (Work("store", c_bytes, "epilogue", tensor="c", op="ppu.dma"),), unique)
        return Workload("gemm", (gemm,), tensors, {"bf16": 2 * m * n * k})
    partial_bytes = split * m * n * 4
    tensors["partials"] = Tensor("partials", partial_bytes, "intermediate")
    gemm = Phase("gemm", out_tiles * split, steps, 2, 2 * step_sram,
                 body + (Work("store", partial_bytes, "epilogue", tensor="partials",
                              op="ppu.dma"),), unique)
    rows = TILE_M
    while rows > 1 and math.ceil(m / rows) * tn < compute_units:
        rows //= 2
    reduce = Phase("reduce", math.ceil(m / rows) * tn, split, 2, 2 * rows * TILE_N * 4, (
        Work("load", partial_bytes, tensor="partials", dtype="f32", op="ppu.dma"),
        Work("vector", split * m * n, dtype="f32", op="ppu.add"),
        Work("store", c_bytes, "epilogue", tensor="c", op="ppu.dma"),
    ), {"partials": partial_bytes})
    return Workload("gemm", (gemm, reduce), tensors, {"bf16": 2 * m * n * k})


def read_shapes(path: Path) -> list[tuple[int, int, int, float]]:
    with path.open() as f:
        return [(int(r["m"]), int(r["n"]), int(r["k"]), float(r["flops_per_s"]))
                for r in csv.DictReader(f)]


def predicted(target: Target, shape: tuple[int, int, int, float]) -> float:
    m, n, k, _ = shape
    return 2 * m * n * k / estimate(gemm_workload(m, n, k, target.compute_units), target).time


def roofline(target: Target, shape: tuple[int, int, int, float]) -> float:
    """The plain roofline at datasheet peaks: max(FLOPs / peak, A+B+C bytes / HBM bandwidth)."""
    m, n, k, _ = shape
    flops = 2 * m * n * k
    nbytes = (m * k + k * n + m * n) * 2
    t = max(flops / target.tensor_peak("bf16")[0], nbytes / target.hbm_bandwidth)
    return flops / t


def errors(pred: list[float], shapes) -> list[float]:
    return [(p - s[3]) / s[3] for p, s in zip(pred, shapes)]


def summary(errs: list[float]) -> dict[str, float]:
    a = sorted(abs(e) for e in errs)
    return {"median": statistics.median(a), "p90": a[math.ceil(0.9 * len(a)) - 1], "max": a[-1],
            "mean": statistics.fmean(a)}


def with_constants(target: Target, t0: float, e_c: float, e_l2: float,
                   e_m: float | None = None) -> Target:
    e = target.efficiency
    return dataclasses.replace(target, kernel_overhead=t0, efficiency=Efficiency(
        e_c, e.memory if e_m is None else e_m, e_l2, e.vector))


def mean_error(target: Target, shapes) -> float:
    return summary(errors([predicted(target, s) for s in shapes], shapes))["mean"]


def fit(target: Target, shapes) -> tuple[float, float, float]:
    """(t0, e_c, e_l2) minimising the mean |relative error|; efficiencies in (0, 1]."""
    from scipy.optimize import minimize

    def loss(x) -> float:
        t0_us, e_c, e_l2 = x
        if not 0 <= t0_us <= 50 or not (0 < e_c <= 1 and 0 < e_l2 <= 1):
            return 1e3
        return mean_error(with_constants(target, t0_us * 1e-6, e_c, e_l2), shapes)

    start = min(itertools.product((3.0, 4.5, 6.0), (0.7, 0.85, 1.0), (0.6, 0.8, 1.0)), key=loss)
    best = minimize(loss, start, method="Nelder-Mead",
                    options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 2000})
    t0_us, e_c, e_l2 = (float(v) for v in best.x)
    return t0_us * 1e-6, e_c, e_l2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help=f"measurements (default: benchmarks/data/{CSV_NAME})")
    parser.add_argument("--target", default="h100")
    parser.add_argument("--no-fit", action="store_true", help="use the target file's constants")
    args = parser.parse_args(argv)
    path = args.csv or next((p for p in CSV_PLACES if p.exists()), None)
    if path is None:
        print(f"cannot find {CSV_NAME}; pass --csv PATH", file=sys.stderr)
        return 2
    shapes = read_shapes(path)
    target = load_target(args.target)
    if not args.no_fit:
        target = with_constants(target, *fit(target, shapes))
    pred = [predicted(target, s) for s in shapes]
    errs = errors(pred, shapes)
    print(f"{'M':>5} {'N':>5} {'K':>5} {'measured':>9} {'model':>9} {'error':>7}  bound  (TFLOP/s)")
    for s, p, e in zip(shapes, pred, errs):
        m, n, k, measured = s
        bound = estimate(gemm_workload(m, n, k, target.compute_units), target).bound
        print(f"{m:5d} {n:5d} {k:5d} {measured / 1e12:9.1f} {p / 1e12:9.1f} {e:+7.1%}  {bound}")
    roof = [roofline(target, s) for s in shapes]
    print(f"\n{len(shapes)} shapes from {path.name}, target {target.name}; |relative error|:")
    for label, values in (("model", pred), ("roofline at datasheet peaks", roof)):
        for unit, errs_ in (("FLOP/s", errors(values, shapes)),
                            ("time", [s[3] / v - 1 for v, s in zip(values, shapes)])):
            print(f"  {label:<28} {unit:<7}" + ", ".join(
                f"{k} {v:.1%}" for k, v in summary(errs_).items()))
    e = target.efficiency
    origin = "from the target file" if args.no_fit else "fitted: t0, e_c, e_l2"
    print(f"\nconstants ({origin}):")
    print(f"  kernel_overhead    = {target.kernel_overhead:.3g} s")
    print(f"  efficiency.compute = {e.compute:.3f}\n  efficiency.l2      = {e.l2:.3f}")
    sweep = {m: mean_error(dataclasses.replace(target, efficiency=dataclasses.replace(
        e, memory=m)), shapes) for m in (0.6, 0.7, 0.8, 0.9, 1.0)}
    print(f"  efficiency.memory  = {e.memory:.3f} (not fitted); mean |error| with it at "
          + ", ".join(f"{m:.1f}: {v:.1%}" for m, v in sweep.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
