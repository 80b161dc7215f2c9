"""Numerics check: how far each output of a run is from the float64 oracle, and is it fine?

Every error figure is against the exact math: the source program evaluated in float64 with its
casts as the identity and its precision directives ignored (the `zk` module before `cast`).

The verdict's yardstick is dtype-aware without a table of magic tolerances: the reference
evaluator's "as typed" mode rounds every op into its declared dtype, as the chip would, so its
distance from the oracle is the error the program's own dtypes imply. For a kernel with
`precision` directives the typed program is the one after the `cast` pass, which quantises as
the schedule asks, so the yardstick includes that error too: it tells a faithful lowering from a
wrong one, not a good precision choice from a bad one. A run passes when its error is within
twice that, plus a few units in the last place of the output dtype, and, when the caller sets
one, within a budget of relative L2 error against the exact math (`max_rel_l2`), which does
judge the precision choice.

A comparison that cannot tell right from wrong never passes: within the tolerance, an exact-math
reference that is all zero, has NaN (the math is undefined there, and NaN matching NaN proves
nothing) or no finite value, or underflows the output dtype, and an output that is all zero or
has no finite value. Such an output is "inconclusive" (its `reason` says why; the CLI reports it
as ZK0509); one outside the tolerance fails whatever its values.

Beyond the verdict the report says where the error sits: the relative L2 error, a histogram of
elementwise relative errors per decade, and each precision directive's share (the typed error
with every directive, and without that one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from zhenwu_cc.core import dtypes

ULPS = 4  # slack in units of the output dtype's epsilon, relative to the output's scale
DECADES = tuple(range(-8, 0))  # histogram buckets [1e-8, 1e-7), ..., [1e-1, 1); plus below, above
TINY = 1e-6  # relative errors divide by max(|expected|, TINY x the output's largest magnitude)
EXACT = "exact math: the source in float64, casts as the identity, precision directives ignored"


@dataclass(frozen=True)
class Attribution:
    """One precision directive's part in an output's error: the relative L2 error of the typed
    `cast` program with every directive, and with all but this one."""

    directive: str
    rel_l2_with: float
    rel_l2_without: float

    @property
    def cost(self) -> float:
        return self.rel_l2_with - self.rel_l2_without

    def to_dict(self) -> dict:
        return {"directive": self.directive, "rel_l2_error_with": _r(self.rel_l2_with),
                "rel_l2_error_without": _r(self.rel_l2_without), "cost": _r(self.cost)}


def attribute(directive: str, typed_all: np.ndarray, typed_without: np.ndarray,
              oracle: np.ndarray) -> Attribution:
    return Attribution(directive, _rel_l2(typed_all, oracle), _rel_l2(typed_without, oracle))


@dataclass(frozen=True)
class OutputCheck:
    name: str
    dtype: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # elementwise, over elements whose reference is not tiny
    where: tuple[int, ...]  # index of the largest absolute error
    got: float
    expected: float
    typed_max_abs: float  # the error the program's dtypes alone imply
    tolerance: float
    passed: bool
    mismatched_nan: int  # elements where exactly one side is NaN
    rel_l2: float = 0.0  # ||got - expected|| / ||expected|| over the finite elements
    scale: float = 0.0  # the largest finite |expected|: max_abs / scale is a normwise error
    histogram: dict[str, int] = field(default_factory=dict)  # |rel error| per decade
    attribution: tuple[Attribution, ...] = ()
    typed_rel_l2: float = 0.0  # the yardstick program's own rel L2 error against the exact math
    max_rel_l2: float | None = None  # the caller's budget of rel L2 error, if any
    reason: str = ""  # why it did not pass ("" when it did)
    inconclusive: bool = False  # failed because the comparison cannot tell right from wrong
    sampled: str = ""  # which part of the output was compared, when not all of it
    typed_differs: str = ""  # where the kernel rounds other than the typed program, in words

    @property
    def yardstick(self) -> str:
        """What the verdict compares the error with, in words."""
        text = (f"2 x the typed `cast` program's error + {ULPS} ulps of {self.dtype}"
                if dtypes.get(self.dtype).is_float else "the typed `cast` program's error x 2")
        if self.max_rel_l2 is not None:
            text += f", and rel L2 error against the exact math <= {self.max_rel_l2:g}"
        if self.typed_differs:
            text += f" ({self.typed_differs})"
        return text

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "max_abs_error": _r(self.max_abs), "max_rel_error": _r(self.max_rel),
                "rel_l2_error": _r(self.rel_l2), "expected_max_abs": _r(self.scale),
                "where": list(self.where), "got": _r(self.got), "expected": _r(self.expected),
                "typed_max_abs_error": _r(self.typed_max_abs), "tolerance": _r(self.tolerance),
                "mismatched_nan": self.mismatched_nan, "passed": self.passed,
                "rel_error_histogram": dict(self.histogram),
                "attribution": [a.to_dict() for a in self.attribution],
                "errors_against": EXACT, "yardstick": self.yardstick,
                "typed_rel_l2_error": _r(self.typed_rel_l2), "max_rel_l2": self.max_rel_l2,
                "inconclusive": self.inconclusive, "reason": self.reason,
                "sampled": self.sampled or None}

    def to_json(self) -> str:
        """`to_dict()` as JSON text: keys in the same order, indented as the CLI prints them."""
        return json.dumps(self.to_dict(), indent=2)


def _r(x: float) -> float | None:
    return None if not np.isfinite(x) else float(f"{x:.6g}")


def _eps(name: str) -> float:
    d = dtypes.get(name)
    if not d.is_float:
        return 0.0
    import ml_dtypes

    return float(ml_dtypes.finfo(d.np_dtype).eps)


def _errors(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """|a - r| elementwise, with equal infinities and NaN-against-NaN counting as exact and
    any other non-finite disagreement as an infinite error."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - r)
    same = (a == r) | (np.isnan(a) & np.isnan(r))
    return np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    diff = _errors(a, b)
    return float(diff.max()) if diff.size else 0.0


def _rel_l2(a: np.ndarray, r: np.ndarray) -> float:
    a, r = np.asarray(a, np.float64), np.asarray(r, np.float64)
    ok = np.isfinite(a) & np.isfinite(r)
    norm = float(np.linalg.norm(r[ok]))
    return float(np.linalg.norm(a[ok] - r[ok])) / norm if norm else 0.0


def histogram(rel: np.ndarray) -> dict[str, int]:
    """Counts of |relative error| per decade: "<1e-8", "1e-8" ([1e-8, 1e-7)), ..., "1e-1",
    ">=1" (non-finite errors count there)."""
    rel = np.where(np.isnan(rel), np.inf, np.abs(rel)).ravel()
    edges = [10.0**e for e in DECADES] + [1.0]
    counts = np.histogram(np.clip(rel, 0, 10.0), bins=[0.0, *edges, np.inf])[0]
    labels = ["<1e-8", *(f"1e{e}" for e in DECADES), ">=1"]
    return {label: int(n) for label, n in zip(labels, counts)}


def _smallest_normal(name: str) -> float:
    d = dtypes.get(name)
    if not d.is_float:
        return 0.0
    import ml_dtypes

    return float(ml_dtypes.finfo(d.np_dtype).smallest_normal)


def _inconclusive(dtype: str, a: np.ndarray, r: np.ndarray, scale: float) -> str:
    """Why comparing output `a` with the exact-math reference `r` cannot tell right from wrong
    ("" when it can)."""
    nan = int(np.count_nonzero(np.isnan(r)))
    if r.size and not np.isfinite(r).any():
        return ("the exact-math reference is all NaN" if nan == r.size else
                "the exact-math reference has no finite value")
    if nan:
        return (f"the exact-math reference has {nan} NaN value(s) of {r.size}: the math is "
                "undefined on these inputs (log or sqrt of a negative number?), and NaN "
                "matching NaN proves nothing")
    if r.size and scale == 0.0:
        return "the exact-math reference is all zero, so an output of zeros passes unseen"
    if 0.0 < scale < _smallest_normal(dtype):
        return (f"every exact-math reference value is below {dtype}'s smallest normal "
                f"({_smallest_normal(dtype):.3g}): the output underflows")
    if a.size and not np.isfinite(a).any():
        return "the output has no finite value"
    if a.size and not np.any(a != 0):
        return "the output is all zero"
    return ""


def compare(name: str, dtype: str, got: np.ndarray, oracle: np.ndarray,
            typed: np.ndarray, attribution=(), *, max_rel_l2: float | None = None,
            sampled: str = "") -> OutputCheck:
    """Output `got` against the exact-math `oracle`, judged by the typed program `typed` (and
    by `max_rel_l2`, a budget of rel L2 error against the oracle, when given)."""
    a = np.asarray(got, dtype=np.float64)
    r = np.asarray(oracle, dtype=np.float64)
    t = np.asarray(typed, dtype=np.float64)
    finite = np.isfinite(r)
    scale = float(np.abs(r[finite]).max()) if finite.any() else 0.0
    nan_mismatch = int(np.count_nonzero(np.isnan(a) != np.isnan(r)))
    diff = _errors(a, r)
    where = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    max_abs = float(diff.max()) if diff.size else 0.0
    tiny = TINY * scale
    big = np.abs(r) > tiny
    rel = np.where(big, diff / np.where(big, np.abs(r), 1.0), 0.0)
    typed_err = _max_abs(t, r)
    tol = 2.0 * typed_err + ULPS * _eps(dtype) * scale
    with np.errstate(invalid="ignore"):
        spread = diff / np.maximum(np.abs(np.where(finite, r, 0.0)), max(tiny, 1e-300))
    rel_l2 = _rel_l2(a, r)
    inconclusive = ""
    if nan_mismatch:
        reason = f"{nan_mismatch} element(s) are NaN on one side only"
    elif not max_abs <= tol:
        reason = f"max abs error {max_abs:.3g} is above the tolerance {tol:.3g}"
    else:  # within the tolerance: but does that prove anything?
        reason = inconclusive = _inconclusive(dtype, a, r, scale)
    if not reason and max_rel_l2 is not None and not rel_l2 <= max_rel_l2:
        reason = (f"rel L2 error {rel_l2:.3g} against the exact math is above the budget "
                  f"{max_rel_l2:g}")
    return OutputCheck(
        name, dtype, tuple(a.shape), max_abs, float(rel.max()) if rel.size else 0.0,
        tuple(int(i) for i in where), float(a[where]) if a.size else 0.0,
        float(r[where]) if r.size else 0.0, typed_err, tol, not reason, nan_mismatch, rel_l2,
        scale, histogram(spread), tuple(attribution), _rel_l2(t, r), max_rel_l2, reason,
        bool(inconclusive), sampled)


def render(checks: list[OutputCheck]) -> str:
    lines = []
    for c in checks:
        verdict = "ok" if c.passed else "INCONCLUSIVE" if c.inconclusive else "FAIL"
        at = ", ".join(str(i) for i in c.where)
        lines.append(f"check {c.name}: {verdict}  max abs error {c.max_abs:.3g} at [{at}] "
                     f"(got {c.got:.6g}, expected {c.expected:.6g}), max rel error "
                     f"{c.max_rel:.3g}; tolerance {c.tolerance:.3g} (as-typed error "
                     f"{c.typed_max_abs:.3g})"
                     + (f"; {c.mismatched_nan} NaN mismatches" if c.mismatched_nan else ""))
        if c.reason:
            lines.append(f"  {verdict}: {c.reason}")
        if c.sampled:
            lines.append(f"  sampled: {c.sampled}")
        lines.append(f"  against the exact math (float64, no casts): rel L2 error {c.rel_l2:.3g}"
                     f"; the typed `cast` program's own: {c.typed_rel_l2:.3g}")
        lines.append(f"  verdict's yardstick: {c.yardstick}")
        buckets = ", ".join(f"{k}: {n}" for k, n in c.histogram.items() if n)
        lines.append(f"  elements by |rel error| decade: {buckets}")
        for a in c.attribution:
            lines.append(f"  {a.directive}: rel L2 error {a.rel_l2_with:.3g} with it, "
                         f"{a.rel_l2_without:.3g} without (costs {a.cost:+.3g})")
    return "\n".join(lines) + "\n"
