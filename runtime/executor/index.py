"""Index values of the executor: one integer per grid point, held as a broadcastable numpy array.

A launch of grid rank r runs every tile at once, so an `index` SSA value is an int64 array whose
last r axes are the grid's (size 1 where the value does not depend on that grid index); a merged
reduction loop adds its step axis in front (rank r + 1). Arrays are right-aligned, so values of
both ranks combine by plain numpy broadcasting.

Each value also carries its affine form `const + sum(coef * axis)` when the arithmetic that made it
was affine (launch indices, loop variables, constants, +, -, * by a constant). A tile gather with
affine indices is a strided view of the source instead of a fancy-index copy (dma.py).
Axes are named by negative numbers counted from the right, the same in either rank: grid axis d of
r is d - r, the loop step axis is -(r + 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from xdsl.dialects import arith
from xdsl.ir import Operation
from zhenwu_cc.dialects.loc import span_of

from zhenwu_cc.core.diagnostics import error


@dataclass(frozen=True)
class Affine:
    """const + sum(coef * position along axis) over the axes named in `coefs` (axis -> coef)."""

    const: int
    coefs: tuple[tuple[int, int], ...] = ()

    def coef(self, axis: int) -> int:
        return dict(self.coefs).get(axis, 0)

    def __add__(self, other: Affine) -> Affine:
        merged = dict(self.coefs)
        for axis, c in other.coefs:
            merged[axis] = merged.get(axis, 0) + c
        return Affine(self.const + other.const, _norm(merged))

    def scaled(self, k: int) -> Affine:
        return Affine(self.const * k, _norm({a: c * k for a, c in self.coefs}))


def _norm(coefs: dict[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(sorted((a, c) for a, c in coefs.items() if c))


@dataclass(frozen=True)
class Index:
    """An index value over the grid: `value` (int64, broadcastable) and its affine form if any."""

    value: np.ndarray
    affine: Affine | None

    @staticmethod
    def constant(c: int) -> Index:
        return Index(np.array(c, np.int64), Affine(int(c)))

    @staticmethod
    def along(axis: int, n: int, start: int = 0) -> Index:
        """start..start+n-1 along `axis` (a negative axis name, see the module docstring): a
        launch's grid index over one row block (rowblocks.py), or a loop's steps."""
        shape = [1] * -axis
        shape[0] = n
        return Index(np.arange(start, start + n, dtype=np.int64).reshape(shape),
                     Affine(start, ((axis, 1),)))


def _add(a: Index, b: Index) -> Index:
    aff = a.affine + b.affine if a.affine is not None and b.affine is not None else None
    return Index(a.value + b.value, aff)


def _sub(a: Index, b: Index) -> Index:
    aff = (a.affine + b.affine.scaled(-1)
           if a.affine is not None and b.affine is not None else None)
    return Index(a.value - b.value, aff)


def _mul(a: Index, b: Index) -> Index:
    aff = None
    if a.affine is not None and b.affine is not None:
        if not b.affine.coefs:
            aff = a.affine.scaled(b.affine.const)
        elif not a.affine.coefs:
            aff = b.affine.scaled(a.affine.const)
    return Index(a.value * b.value, aff)


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


_PLAIN: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    arith.DivUIOp: np.floor_divide, arith.DivSIOp: _trunc_div,
    arith.FloorDivSIOp: np.floor_divide,
    arith.CeilDivSIOp: lambda a, b: -np.floor_divide(-a, b),
    arith.CeilDivUIOp: lambda a, b: -np.floor_divide(-a, b),
    arith.RemUIOp: np.mod, arith.RemSIOp: np.fmod,
    arith.MinSIOp: np.minimum, arith.MaxSIOp: np.maximum,
    arith.MinUIOp: np.minimum, arith.MaxUIOp: np.maximum,
}
_DIVIDING = (arith.DivUIOp, arith.DivSIOp, arith.FloorDivSIOp, arith.CeilDivSIOp,
             arith.CeilDivUIOp, arith.RemUIOp, arith.RemSIOp)
_AFFINE = {arith.AddiOp: _add, arith.SubiOp: _sub, arith.MuliOp: _mul}
INDEX_OPS = (arith.ConstantOp, arith.IndexCastOp, *_AFFINE, *_PLAIN)


def evaluate(op: Operation, args: list[Index]) -> Index:
    """The result of an `arith` op on index values (ZK0617 for a division by zero)."""
    if isinstance(op, arith.ConstantOp):
        return Index.constant(op.value.value.data)
    if isinstance(op, arith.IndexCastOp):
        return args[0]
    if type(op) in _AFFINE:
        return _AFFINE[type(op)](*args)
    if type(op) not in _PLAIN:
        raise TypeError(f"the executor has no rule for {op.name}")
    a, b = args
    if isinstance(op, _DIVIDING) and not np.all(b.value):
        raise error("ZK0617", f"`{op.name}` divides by zero on some tile", span_of(op),
                    help="the index arithmetic of the lowered program is wrong; report it with "
                    "the IR (--emit ppu)")
    return Index(_PLAIN[type(op)](a.value, b.value), None)
