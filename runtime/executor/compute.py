"""What the vector and tensor engines compute, on tiles batched over the launch grid.

Every array here is `[grid..., tile...]`: `r` leading grid axes (size 1 where a value does not
depend on that grid index), then the tile's own axes. Vector work computes in float32 (integers
in int64, i1 as bool) and rounds into the destination's type with `numerics.round_to`; the tensor
engine multiplies operands upcast exactly to float32 and accumulates in the accumulator's type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import scipy.special
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.runtime.numerics import f16_from_f32, f32_from_f16, round_to

F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)


# numpy's own, remembered: it costs ~10 us a call, and the executor asks it of the same few
# shapes for every op of every row block
broadcast_shapes = lru_cache(maxsize=4096)(np.broadcast_shapes)


def compute_dtype(dt: np.dtype) -> np.dtype:
    """The type an element is computed in: float32 for floats, int64 for integers, bool kept."""
    if dt == np.bool_:
        return dt
    if dt.kind in "iu":
        return np.dtype(np.int64)
    return F32


def up(x: np.ndarray) -> np.ndarray:
    return f32_from_f16(x) if x.dtype == F16 else x.astype(compute_dtype(x.dtype), copy=False)


def into(x: np.ndarray, d: DType) -> np.ndarray:
    """`x` held as an element of `d` (no copy when it already is one)."""
    return x if x.dtype == d.np_dtype else round_to(x, d)


def align(x: np.ndarray, r: int, rank: int) -> np.ndarray:
    """`x` with size-1 axes after its `r` grid axes so that its tile part has `rank` axes."""
    extra = rank - (x.ndim - r)
    return x.reshape(x.shape[:r] + (1,) * extra + x.shape[r:]) if extra else x


# ---- ppu.vmap ---------------------------------------------------------------------------------
Fn = Callable[..., np.ndarray]


def _rsqrt(x, out=None):
    root = np.sqrt(x, out=out)
    return np.divide(root.dtype.type(1), root, out=root)


def _copy(x, out=None):
    if out is None:
        return np.array(x)
    np.copyto(out, x)
    return out


_UFUNCS: dict[str, Fn] = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "tanh": np.tanh,
    "erf": scipy.special.erf, "sqrt": np.sqrt, "rsqrt": _rsqrt, "copy": _copy,
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "max": np.maximum, "min": np.minimum, "pow": np.power,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}
COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
# IEEE operations whose result is the exact one rounded once (max and min are not among them:
# numpy's loops may pick either zero of max(-0, +0)), so they give the same bits however numpy
# loops over the operands, whether widened beforehand or chunk by chunk inside the call
_ROUNDED_ONCE = frozenset({"neg", "abs", "add", "sub", "mul", "div", "sqrt"})


def layout_free(fn: str) -> bool:
    """Whether `vmap fn` gives the same bits into any destination layout (numpy may pick other
    loops for strided memory): plain casts and the ops rounded once do."""
    return fn == "cast" or fn in _ROUNDED_ONCE


def result_dtype(fn: str, ins: Sequence[np.ndarray], dest: DType) -> np.dtype:
    """The type `vmap fn` computes its result in (before rounding into the destination); a
    cast that one numpy conversion performs exactly computes straight into `dest`."""
    if fn == "cast":
        return dest.np_dtype if _plain_cast(ins[0].dtype, dest) else np.dtype(np.float64)
    if fn in COMPARISONS:
        return np.dtype(np.bool_)
    if fn == "select":
        return np.result_type(compute_dtype(ins[1].dtype), compute_dtype(ins[2].dtype))
    return np.result_type(*(compute_dtype(x.dtype) for x in ins))


def one_call(fn: str, ins: Sequence[np.ndarray], dest: DType) -> bool:
    """Whether `vmap fn` runs as one numpy call from its operands straight into a destination
    array: numpy widens float operands to float32 and rounds the float32 results into an f16 or
    bf16 destination chunk by chunk as it goes, the same bits as float32 copies computed then
    rounded (`numerics.round_to` rounds float32 into those two by numpy's own conversion)."""
    return (fn in _ROUNDED_ONCE and dest.name in ("f32", "f16", "bf16")
            and all(x.dtype != np.bool_ and x.dtype.kind in "fV"
                    and np.can_cast(x.dtype, F32, "safe") for x in ins))


def vmap(fn: str, ins: Sequence[np.ndarray], dest: DType, out: np.ndarray | None,
         fused: bool = False) -> np.ndarray:
    """`fn` of the aligned inputs, held in `dest`; written into `out` when one is given (a
    destination array of the exact result shape and `dest`'s type that may be overwritten,
    given when `result_dtype` is that type or, with `fused`, `one_call` holds)."""
    if fn == "cast":
        if out is not None:
            _plain_cast_into(ins[0], out)
            return out
        return _cast(ins[0], dest)
    if fused and out is not None:
        return _UFUNCS[fn](*(_rows(x, out.shape) for x in ins), out=out, dtype=F32,
                           casting="unsafe")
    if fn == "select":
        cond, a, b = ins
        return into(np.where(cond, up(a), up(b)), dest)
    return into(_UFUNCS[fn](*(up(x) for x in ins), out=out), dest)


_ROWS = 1 << 16  # elements: a broadcast operand is widened to at most this many


def _rows(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`x`, or, where it repeats one row over the trailing axes of `shape` (a LayerNorm's gamma
    over a tile's rows), those rows written out once: numpy then walks the tile as one run
    instead of one short run per row (measured 119 against 213 us for [64, 4, 4096] float32
    times a row), and some row addresses made numpy's row-by-row walk several times slower
    still. The values and the rounded-once operation are the same, so are the bits."""
    if x.shape == shape or x.ndim != len(shape):
        return x
    k = len(shape)
    while k > 0 and x.shape[k - 1] == shape[k - 1]:
        k -= 1
    wide = math.prod(shape[k - 1:]) if k else 0
    if (k == 0 or x.shape[k - 1] != 1 or wide > _ROWS or math.prod(shape[k:]) < 256
            or any(n != 1 for n in x.shape[:k - 1])):
        return x  # not one row repeated, too wide, or rows too short to matter
    return np.ascontiguousarray(np.broadcast_to(x, (1,) * (k - 1) + shape[k - 1:]))


def bitcast(x: np.ndarray, src: DType, dest: DType) -> np.ndarray:
    """The bits of `x` held as `src`, read as `dest` (same width: the verifier checks)."""
    held = x if x.dtype == src.np_dtype else round_to(x, src)
    return held.view(dest.np_dtype)


def _plain_cast(src: np.dtype, dest: DType) -> bool:
    """Whether numpy's own conversion of `src` into `dest` is `round_to`'s: float32 rounded
    once (RNE, no saturation) into f16 or bf16, or a float type float32 holds widened into f32."""
    if dest.name == "f32":
        return src != np.bool_ and src.kind in "fV" and np.can_cast(src, np.float32, "safe")
    return src == F32 and dest.name in ("f16", "bf16")


def _plain_cast_into(x: np.ndarray, out: np.ndarray) -> None:
    """A `_plain_cast` into `out`; float16 both ways by numerics' fast conversions (the same
    bits as numpy's, which convert float16 element by element)."""
    if out.flags.c_contiguous and out.shape == x.shape:
        if x.dtype == F32 and out.dtype == F16:
            f16_from_f32(x, out)
            return
        if x.dtype == F16 and out.dtype == F32:
            f32_from_f16(x, out)
            return
    np.copyto(out, x, casting="unsafe")


def _cast(x: np.ndarray, dest: DType) -> np.ndarray:
    """Round (saturating) into `dest`; NaN cast to an integer is 0, as in the reference. Floats
    reach an integer type through float64, which holds every float and the integer bounds
    exactly (float32 rounds 2**31 - 1 up, past the range)."""
    if dest.is_int and dest.kind != "bool" and x.dtype.kind not in "biu":
        x = x.astype(np.float64)
        x = np.where(np.isnan(x), 0.0, x)
    return round_to(x, dest)


# ---- ppu.vreduce ------------------------------------------------------------------------------
def vreduce(fn: str, x: np.ndarray, axes: tuple[int, ...], dest: DType) -> np.ndarray:
    """Reduce the (grid-offset) `axes` keeping them as 1: sum/max/min accumulate in float32
    (int64 for integers); argmax is the first index of the maximum along its one axis."""
    if fn == "argmax":
        if len(axes) != 1:
            raise ValueError(f"argmax reduces one axis, not {len(axes)}")
        return into(np.argmax(up(x), axis=axes[0], keepdims=True), dest)
    reduce = {"sum": np.sum, "max": np.max, "min": np.min}[fn]
    xs = up(x)
    if fn == "sum":
        total = np.int64 if xs.dtype == np.bool_ else xs.dtype
        return into(reduce(xs, axis=axes, keepdims=True, dtype=total), dest)
    return into(reduce(xs, axis=axes, keepdims=True), dest)


# ---- ppu.mma ----------------------------------------------------------------------------------
class GridMatmul:
    """How `grid_matmul` lays out `a @ b` for operands of two shapes (broadcast leading axes):
    axes only `a` spans fold into its rows, axes only `b` spans into its columns, and only axes
    both span remain a batch. Kept by a loop's steps, which multiply operands of the same shapes
    with buffers reused from step to step (products.py)."""

    def __init__(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...]):
        nd = max(len(a_shape), len(b_shape))
        sa = (1,) * (nd - len(a_shape)) + tuple(a_shape)
        sb = (1,) * (nd - len(b_shape)) + tuple(b_shape)
        self.a_shape, self.b_shape = sa, sb
        outer = nd - 2
        ga, gb = sa[:outer], sb[:outer]
        both = [d for d in range(outer) if ga[d] > 1 and gb[d] > 1]
        a_only = [d for d in range(outer) if ga[d] > 1 and gb[d] == 1]
        b_only = [d for d in range(outer) if ga[d] == 1 and gb[d] > 1]
        ones_a = [d for d in range(outer) if ga[d] == 1]
        ones_b = [d for d in range(outer) if gb[d] == 1]
        (m, k), n = sa[-2:], sb[-1]
        s = math.prod(ga[d] for d in both)
        rows = math.prod(ga[d] for d in a_only) * m
        cols = math.prod(gb[d] for d in b_only) * n
        self.lhs_perm = both + a_only + ones_a + [outer, outer + 1]
        self.rhs_perm = both + ones_b + [outer] + b_only + [outer + 1]
        self.lhs_shape, self.rhs_shape = (s, rows, k), (s, k, cols)
        self.unfolded = [ga[d] for d in both + a_only] + [m] + [gb[d] for d in b_only] + [n]
        pos = {d: i for i, d in enumerate(both + a_only)}
        m_at = len(pos)
        pos |= {d: m_at + 1 + i for i, d in enumerate(b_only)}
        self.order = [pos[d] for d in sorted(pos)] + [m_at, m_at + 1 + len(b_only)]
        self.shape = tuple(max(x, y) for x, y in zip(ga, gb)) + (m, n)

    def _operand(self, x: np.ndarray, shape, perm, folded, dtype: np.dtype,
                 into: np.ndarray | None) -> tuple[np.ndarray, bool]:
        y = x.reshape(shape).transpose(perm)
        if into is None or (y.dtype == dtype and y.flags.c_contiguous):
            out = np.ascontiguousarray(y, dtype=dtype)
            return out.reshape(folded), not np.may_share_memory(out, x)
        np.copyto(into.reshape(y.shape), y, casting="unsafe")
        return into, True

    def lhs(self, a: np.ndarray, dtype: np.dtype, into: np.ndarray | None = None
            ) -> tuple[np.ndarray, bool]:
        """`a` as the [batch, rows, K] matrices of `dtype` the product multiplies, written into
        `into` (of that shape and type) when given, and whether it is a copy of `a`."""
        return self._operand(a, self.a_shape, self.lhs_perm, self.lhs_shape, dtype, into)

    def rhs(self, b: np.ndarray, dtype: np.dtype, into: np.ndarray | None = None
            ) -> tuple[np.ndarray, bool]:
        """`b` as the [batch, K, columns] matrices (see `lhs`)."""
        return self._operand(b, self.b_shape, self.rhs_perm, self.rhs_shape, dtype, into)

    def multiply(self, lhs: np.ndarray, rhs: np.ndarray, out: np.ndarray | None = None
                 ) -> np.ndarray:
        """The product of `lhs` and `rhs` (from `lhs` and `rhs` above) in the broadcast grid
        shape; written into `out` (a C-contiguous array of that shape and the operands' type)
        when given and the layout allows it (the same BLAS call either way)."""
        s = lhs.shape[0]
        if out is not None and self.order == sorted(self.order):
            dest = out.reshape(s, lhs.shape[1], rhs.shape[2])
            np.matmul(lhs[0], rhs[0], out=dest[0]) if s == 1 else np.matmul(lhs, rhs, out=dest)
            return out
        prod = np.matmul(lhs[0], rhs[0]) if s == 1 else np.matmul(lhs, rhs)
        return prod.reshape(self.unfolded).transpose(self.order).reshape(self.shape)


def grid_matmul(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`a @ b` over broadcast leading axes, in `dtype`, with as few and as large BLAS calls as the
    broadcasting allows (GridMatmul): a GEMM's A tiles [gi, 1, m, K] and B tiles [1, gj, K, n]
    become one [gi*m, K] @ [K, gj*n] product."""
    plan = GridMatmul(a.shape, b.shape)
    return plan.multiply(plan.lhs(a, dtype)[0], plan.rhs(b, dtype)[0])


def _magnitude_bits(dt: np.dtype) -> int:
    """log2 of the largest magnitude an integer (or bool) type holds."""
    return 0 if dt == np.bool_ else np.iinfo(dt).bits - (dt.kind == "i")


def _exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The integer product `a @ b` in int64, exactly, on float BLAS where it is exact: every
    partial sum of `k` products of magnitude <= 2**bits is an integer float32 holds when
    k * 2**bits <= 2**24, so K is cut into such slices (int8: 1024) whose float32 products are
    summed in int64; float64 (2**53) where slices would be short; numpy's int64 loop beyond."""
    bits = _magnitude_bits(a.dtype) + _magnitude_bits(b.dtype)
    k = a.shape[-1]
    if bits > 53 - max(k, 1).bit_length():
        return grid_matmul(a, b, np.dtype(np.int64))
    step = 1 << (24 - bits) if bits <= 18 else k
    dtype = F32 if bits <= 18 else np.dtype(np.float64)
    total = None
    for start in range(0, k, step):
        part = grid_matmul(a[..., start:start + step], b[..., start:start + step, :], dtype)
        part = part.astype(np.int64)
        total = part if total is None else np.add(total, part, out=total)
    return total if total is not None else grid_matmul(a, b, np.dtype(np.int64))


def product(lhs: np.ndarray, rhs: np.ndarray, r: int, rank: int, acc: DType) -> np.ndarray:
    """The tensor engine's `lhs @ rhs` for grid-batched tiles, brought to the accumulator's tile
    `rank`: operands upcast exactly to float32 and summed in float32 for a float accumulator
    `acc` (integer operands too), exactly in int64 for an integer one."""
    a, b = align(lhs, r, rank), align(rhs, r, rank)
    if acc.is_int and a.dtype.kind in "biu" and b.dtype.kind in "biu":
        return _exact_int_matmul(a, b)
    return grid_matmul(a, b, np.dtype(np.int64) if acc.is_int else F32)


def accumulate(acc: np.ndarray, prod: np.ndarray, d: DType, owned: bool) -> np.ndarray:
    """`acc + prod` held in the accumulator's type `d`: float32 adds; another float type rounds
    the sum once into `d`; integers wrap as a fixed-width accumulator does. `prod` is a fresh
    array the sum may be written into; `owned` says `acc` may be overwritten too."""
    if d.is_int:
        return (acc.astype(np.int64) + prod).astype(d.np_dtype)
    if acc.dtype != F32:
        return into(up(acc) + prod, d)
    for target in (prod, acc if owned else None):
        if target is not None and target.shape == broadcast_shapes(acc.shape, prod.shape):
            return np.add(acc, prod, out=target)
    return acc + prod
