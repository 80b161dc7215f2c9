"""Fit the cost model's free constants to XLA's measured H100 BF16 GEMMs and print the errors.

    .venv/bin/python benchmarks/calibrate_cost_model.py                  # fit COMBINE_WAIT, print
    .venv/bin/python benchmarks/calibrate_cost_model.py --refit-all      # t0, e_c, e_l2, e_m too
    .venv/bin/python benchmarks/calibrate_cost_model.py --no-fit         # the committed constants
    .venv/bin/python benchmarks/calibrate_cost_model.py --cross-validate # held-out errors per fit

Method (it carries over to any target with measurements): compile, for each measured shape, the
kernel benchmarks/validate_cost_model.py validates through the normal pipeline for the target
(the `tile` heuristic's tiles, split-K and its combine included) and keep its Workload; predict
FLOP/s with `estimate`; choose the free constants by least squares on the relative error of
predicted vs measured FLOP/s (the root mean square). Squares weigh the worst shapes more than a
mean |error| does; `--cross-validate` shows that this, with the memory efficiency fitted too,
keeps the error on shapes left out of the fit lowest (docs/validation.md). By default the fit is
the wait of a split's combine alone (`COMBINE_WAIT` in runtime/cost/model.py, a fraction of t0)
with the target file's other constants; `--refit-all` fits it with the fixed overhead t0 and the
compute, L2 and memory efficiencies (each in (0, 1]): a coarse grid, then Nelder-Mead from its
best point (deterministic). It prints the per-shape errors, their median / p90 / max (also as
errors in time, the convention of hardware-numerics.md §5), the plain roofline at datasheet peaks
as a baseline, and the constants.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import math
import random
import statistics
import sys
from pathlib import Path

import zhenwu_cc
from zhenwu_cc.runtime.cost import model
from zhenwu_cc.runtime.cost.model import estimate
from zhenwu_cc.runtime.cost.workload import Workload
from zhenwu_cc.core.target import Efficiency, Target, load_target

REPO = Path(__file__).resolve().parent.parent
CSV_NAME = "h100_bf16_gemm_calibration.csv"
CSV_PLACES = (REPO / "benchmarks" / "data" / CSV_NAME, REPO.parent / "shared" / "data" / CSV_NAME)
# What copies and STREAM triad reach of H100's HBM bandwidth (hardware-numerics.md §2.5): the
# memory efficiency the fit held before it fitted e_m, which --cross-validate compares against.
STREAM_MEMORY_EFFICIENCY = 0.9
KERNEL = """
kernel gemm<M = 1024, N = 1024, K = 1024>(a: bf16[M, K], b: bf16[K, N]) -> bf16[M, N] {
    c = bf16(a @ b)
    return c
}
"""


def gemm_workload(m: int, n: int, k: int, target: str) -> Workload:
    """The Workload the compiler produces for a batch-1 BF16 GEMM on `target`: what
    validate_cost_model.py costs. It depends on the target's compute units and SRAM, not on the
    constants being fitted, so each shape is compiled once."""
    kern = zhenwu_cc.compile(KERNEL, defines={"M": m, "N": n, "K": k}, target=target)
    return kern.costing(target).workload


def read_shapes(path: Path) -> list[tuple[int, int, int, float]]:
    with path.open() as f:
        return [(int(r["m"]), int(r["n"]), int(r["k"]), float(r["flops_per_s"]))
                for r in csv.DictReader(f)]


def predicted(target: Target, shape: tuple[int, int, int, float], workloads) -> float:
    m, n, k, _ = shape
    return 2 * m * n * k / estimate(workloads[m, n, k], target).time


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


def rms_error(errs: list[float]) -> float:
    """The least-squares loss: root mean square of the relative errors."""
    return math.sqrt(statistics.fmean(e * e for e in errs))


def mean_abs_error(errs: list[float]) -> float:
    return statistics.fmean(abs(e) for e in errs)


def shape_errors(target: Target, shapes, workloads) -> list[float]:
    return errors([predicted(target, s, workloads) for s in shapes], shapes)


def fit_wait(target: Target, shapes, workloads) -> float:
    """COMBINE_WAIT in [0, 1] by least squares, the target's other constants fixed."""
    from scipy.optimize import minimize_scalar

    def loss(wait: float) -> float:
        model.COMBINE_WAIT = wait
        return rms_error(shape_errors(target, shapes, workloads))
    return float(minimize_scalar(loss, bounds=(0.0, 1.0), method="bounded",
                                 options={"xatol": 1e-4}).x)


def fit(target: Target, shapes, workloads, loss_of=rms_error, memory: float | None = None
        ) -> tuple[float, float, float, float, float]:
    """(t0, e_c, e_l2, e_m, combine wait) minimising `loss_of` the relative errors; efficiencies
    in (0, 1], the combine's wait a fraction of t0 in [0, 1]. e_m is fitted too, or held at
    `memory` when given."""
    from scipy.optimize import minimize

    def unpack(x) -> tuple[float, ...]:
        return tuple(x) if memory is None else (*x, memory)

    def loss(x) -> float:
        t0_us, e_c, e_l2, wait, e_m = unpack(x)
        if not 0 <= t0_us <= 50 or not (0 < e_c <= 1 and 0 < e_l2 <= 1 and 0 < e_m <= 1
                                        and 0 <= wait <= 1):
            return 1e3
        model.COMBINE_WAIT = wait
        return loss_of(shape_errors(with_constants(target, t0_us * 1e-6, e_c, e_l2, e_m),
                                    shapes, workloads))

    grid = [(3.0, 4.5, 6.0), (0.7, 0.85, 1.0), (0.6, 0.8, 1.0), (0.0, 0.2, 0.4)]
    start = min(itertools.product(*grid, *([(0.7, 0.9)] if memory is None else [])), key=loss)
    best = minimize(loss, start, method="Nelder-Mead",
                    options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 6000})
    t0_us, e_c, e_l2, wait, e_m = (float(v) for v in unpack(best.x))
    return t0_us * 1e-6, e_c, e_l2, e_m, wait


def halves(shapes, seed: int = 0, shuffles: int = 2) -> list[tuple[str, list, list]]:
    """Deterministic (name, fitted on, left out) splits of the shapes in two: alternate rows,
    and `shuffles` seeded random halves, each both ways round."""
    pairs = [("even rows", shapes[0::2], shapes[1::2])]
    rng = random.Random(seed)
    for i in range(shuffles):
        first = set(rng.sample(range(len(shapes)), len(shapes) // 2))
        pairs.append((f"random half {i}", [s for j, s in enumerate(shapes) if j in first],
                      [s for j, s in enumerate(shapes) if j not in first]))
    return [p for name, a, b in pairs for p in ((name, a, b), (name + "'", b, a))]


def cross_validate(target: Target, shapes, workloads) -> None:
    """Fit each way on one half of the shapes and print its errors on the other half."""
    fixed = STREAM_MEMORY_EFFICIENCY
    ways = ((f"mean |error|, e_m {fixed}", mean_abs_error, fixed),
            ("mean |error|, e_m fitted", mean_abs_error, None),
            (f"least squares, e_m {fixed}", rms_error, fixed),
            ("least squares, e_m fitted", rms_error, None))
    held = {label: [] for label, _, _ in ways}
    print(f"{'split':<16} {'fit':<26} {'left-out |error|: median':>25} {'max':>6} {'mean':>6}"
          "   e_m")
    for name, fitted_on, left_out in halves(shapes):
        for label, loss_of, memory in ways:
            t0, e_c, e_l2, e_m, model.COMBINE_WAIT = fit(target, fitted_on, workloads, loss_of,
                                                         memory)
            s = summary(shape_errors(with_constants(target, t0, e_c, e_l2, e_m), left_out,
                                     workloads))
            held[label].append(s)
            print(f"{name:<16} {label:<26} {s['median']:25.1%} {s['max']:6.1%} {s['mean']:6.1%}"
                  f"   {e_m:.2f}")
    print("\naverage over the splits, on the left-out halves:")
    for label, rows in held.items():
        print(f"  {label:<26} " + ", ".join(
            f"{k} {statistics.fmean(r[k] for r in rows):.1%}" for k in ("median", "max", "mean")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help=f"measurements (default: benchmarks/data/{CSV_NAME})")
    parser.add_argument("--target", default="h100")
    parser.add_argument("--no-fit", action="store_true", help="use the committed constants")
    parser.add_argument("--refit-all", action="store_true",
                        help="fit t0, e_c, e_l2 and e_m with COMBINE_WAIT (else the target file's)")
    parser.add_argument("--cross-validate", action="store_true",
                        help="fit on halves of the shapes, print the errors on the other halves")
    args = parser.parse_args(argv)
    path = args.csv or next((p for p in CSV_PLACES if p.exists()), None)
    if path is None:
        print(f"cannot find {CSV_NAME}; pass --csv PATH", file=sys.stderr)
        return 2
    shapes = read_shapes(path)
    target = load_target(args.target)
    workloads = {(m, n, k): gemm_workload(m, n, k, args.target) for m, n, k, _ in shapes}
    if args.cross_validate:
        cross_validate(target, shapes, workloads)
        return 0
    if args.refit_all and not args.no_fit:
        t0, e_c, e_l2, e_m, model.COMBINE_WAIT = fit(target, shapes, workloads)
        target = with_constants(target, t0, e_c, e_l2, e_m)
    elif not args.no_fit:
        model.COMBINE_WAIT = fit_wait(target, shapes, workloads)
    pred = [predicted(target, s, workloads) for s in shapes]
    errs = errors(pred, shapes)
    print(f"{'M':>5} {'N':>5} {'K':>5} {'measured':>9} {'model':>9} {'error':>7}  bound  (TFLOP/s)")
    for s, p, e in zip(shapes, pred, errs):
        m, n, k, measured = s
        bound = estimate(workloads[m, n, k], target).bound
        print(f"{m:5d} {n:5d} {k:5d} {measured / 1e12:9.1f} {p / 1e12:9.1f} {e:+7.1%}  {bound}")
    roof = [roofline(target, s) for s in shapes]
    print(f"\n{len(shapes)} shapes from {path.name}, target {target.name}; |relative error|:")
    for label, values in (("model", pred), ("roofline at datasheet peaks", roof)):
        for unit, errs_ in (("FLOP/s", errors(values, shapes)),
                            ("time", [s[3] / v - 1 for v, s in zip(values, shapes)])):
            print(f"  {label:<28} {unit:<7}" + ", ".join(
                f"{k} {v:.1%}" for k, v in summary(errs_).items()))
    e = target.efficiency
    origin = ("committed" if args.no_fit else "fitted: t0, e_c, e_l2, e_m, COMBINE_WAIT"
              if args.refit_all else "fitted: COMBINE_WAIT; the rest from the target file")
    print(f"\nconstants ({origin}); least-squares loss {rms_error(errs):.2%}:")
    print(f"  kernel_overhead    = {target.kernel_overhead:.3g} s")
    print(f"  efficiency.compute = {e.compute:.3f}\n  efficiency.l2      = {e.l2:.3f}")
    print(f"  efficiency.memory  = {e.memory:.3f}")
    print(f"  COMBINE_WAIT       = {model.COMBINE_WAIT:.3f} (of kernel_overhead: "
          f"{model.COMBINE_WAIT * target.kernel_overhead:.3g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
