"""Numerics check: how far each output of a run is from the float64 oracle, and is it fine?

The yardstick is dtype-aware without a table of magic tolerances: the reference evaluator's
"as typed" mode rounds every op into its declared dtype, as the chip would, so its distance
from the oracle is the error the program's own dtypes imply. A run passes when its error is
within twice that, plus a few units in the last place of the output dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zhenwu_cc.dialects import dtypes

ULPS = 4  # slack in units of the output dtype's epsilon, relative to the output's scale


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

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "max_abs_error": _r(self.max_abs), "max_rel_error": _r(self.max_rel),
                "where": list(self.where), "got": _r(self.got), "expected": _r(self.expected),
                "typed_max_abs_error": _r(self.typed_max_abs), "tolerance": _r(self.tolerance),
                "mismatched_nan": self.mismatched_nan, "passed": self.passed}


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


def compare(name: str, dtype: str, got: np.ndarray, oracle: np.ndarray,
            typed: np.ndarray) -> OutputCheck:
    a = np.asarray(got, dtype=np.float64)
    r = np.asarray(oracle, dtype=np.float64)
    t = np.asarray(typed, dtype=np.float64)
    finite = np.isfinite(r)
    scale = float(np.abs(r[finite]).max()) if finite.any() else 0.0
    nan_mismatch = int(np.count_nonzero(np.isnan(a) != np.isnan(r)))
    diff = _errors(a, r)
    where = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    max_abs = float(diff.max()) if diff.size else 0.0
    tiny = 1e-6 * scale
    big = np.abs(r) > tiny
    rel = np.where(big, diff / np.where(big, np.abs(r), 1.0), 0.0)
    typed_err = _max_abs(t, r)
    tol = 2.0 * typed_err + ULPS * _eps(dtype) * scale + 1e-12
    return OutputCheck(
        name, dtype, tuple(a.shape), max_abs, float(rel.max()) if rel.size else 0.0,
        tuple(int(i) for i in where), float(a[where]) if a.size else 0.0,
        float(r[where]) if r.size else 0.0, typed_err, tol,
        bool(max_abs <= tol and nan_mismatch == 0), nan_mismatch)


def render(checks: list[OutputCheck]) -> str:
    lines = []
    for c in checks:
        verdict = "ok" if c.passed else "FAIL"
        at = ", ".join(str(i) for i in c.where)
        lines.append(f"check {c.name}: {verdict}  max abs error {c.max_abs:.3g} at [{at}] "
                     f"(got {c.got:.6g}, expected {c.expected:.6g}), max rel error "
                     f"{c.max_rel:.3g}; tolerance {c.tolerance:.3g} (as-typed error "
                     f"{c.typed_max_abs:.3g})"
                     + (f"; {c.mismatched_nan} NaN mismatches" if c.mismatched_nan else ""))
    return "\n".join(lines) + "\n"
