"""Tensor-engine products of a stepped loop, with their buffers kept from step to step.

A `ppu.loop` that is not merged into one product (merge.py) runs its body once per step, and
each float32 `ppu.mma` in it multiplies operands of the same layout every step. Made afresh,
the float32 copies of its operands, the product and the sum with the accumulator cost a page
fault per 4 KiB each step, about as much as the arithmetic at attention's tile-grid sizes. So
each such mma keeps, for its launch, its layout (compute.GridMatmul) and one buffer per
operand and for the product; a read-only operand that is still the same array (attention's Q
tile, loaded before the loop) is converted once; and the sum goes into the accumulator's own
array when the executor owns it, else into an array the accumulator's allocation has spare.
Every number is the one `compute.product` and `compute.accumulate` give: the same BLAS calls
on the same float32 operands, the same float32 additions in the same order.

A scaled product (FP8 attention's Q K^T and P V, exact dequantisation, not `fp8_fast`) runs
here too: each operand is dequantised straight into its kept buffer (`lowp.dequantize_into`,
the bits of `lowp.scaled_product`'s `precision.dequantize`), and a read-only operand whose
scales hold the same bits as last step's is not dequantised again."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime import precision
from zhenwu_cc.runtime.executor.buffers import Ref
from zhenwu_cc.runtime.executor.compute import F32, GridMatmul, align, broadcast_shapes
from zhenwu_cc.runtime.executor.lowp import dequantize_factors, dequantize_into

_BF16 = np.dtype(ml_dtypes.bfloat16)


def kept(op: ppu.MmaOp) -> bool:
    """Whether `op` is a product this module runs: a float32 accumulation inside a loop of a
    product, unscaled or with one scale per tile of each operand (FP8 attention's per-tensor
    and unit scales) dequantised exactly, not `fp8_fast`'s accumulator. Block scales (MX,
    NVFP4) stay with `lowp.scaled_product`: expanded over their blocks each step, they would
    add a temporary as large as the operand to the kept buffers."""
    return (isinstance(op.parent_op(), ppu.LoopOp) and op.fp8_fast is None
            and dtypes.from_xdsl(op.acc.type.element_type).name == "f32"
            and all(n == 1 for s in (*op.lhs_scales, *op.rhs_scales)
                    for n in s.type.get_shape()))


def _strided_bf16(x: np.ndarray) -> bool:
    """A bfloat16 operand whose last axis is strided (a transposed tile, attention's K^T):
    numpy widens it element by element through ml_dtypes, five times slower than by bits."""
    return x.dtype == _BF16 and x.ndim > 0 and x.shape[-1] > 1 and x.strides[-1] != 2


def widen_bf16_into(x: np.ndarray, dest: np.ndarray) -> None:
    """bfloat16 `x` as float32 into `dest` (float32, x's shape, any strides): its bits shifted
    into the upper half, which is ml_dtypes' conversion bit for bit (NaN payloads and
    subnormals included)."""
    np.left_shift(x.view(np.uint16), 16, out=dest.view(np.uint32), dtype=np.uint32,
                  casting="unsafe")


def _view(buffer: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The first elements of a flat `buffer` as an array of `shape`, or None if it is short."""
    n = math.prod(shape)
    return None if buffer is None or buffer.size < n else buffer[:n].reshape(shape)


@dataclass
class _Kept:
    """One mma's layout for its operand shapes, and its buffers (flat float32 arrays)."""

    shapes: tuple[tuple[int, ...], tuple[int, ...]]
    plan: GridMatmul
    operands: list[np.ndarray | None] = field(default_factory=lambda: [None, None])
    sources: list[tuple[np.ndarray, int | None, int] | None] = field(
        default_factory=lambda: [None, None])
    product: np.ndarray | None = None
    scales: list[tuple[np.ndarray, ...]] = field(default_factory=lambda: [(), ()])


def _same_scales(kept: tuple[np.ndarray, ...], scales: Sequence[np.ndarray]) -> bool:
    """Whether `scales` hold the bits of the copies `kept` (NaN payloads included)."""
    return len(kept) == len(scales) and all(
        k.dtype == s.dtype and k.shape == s.shape and k.tobytes() == s.tobytes()
        for k, s in zip(kept, scales))


def _address(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


def _covers(kept: tuple[np.ndarray, int | None, int] | None, x: np.ndarray, g: int | None,
            a: int | None) -> bool:
    """Whether the read-only array converted last (`kept`: it, and the grid axis it was cut
    along with its first row, or None for a whole one) held every element of `x` (cut to rows
    from `a` of axis g, when g is not None and x varies along it): the same memory (held alive
    by `kept`), layout and type. Both are read-only views of what a load gave, which nothing
    changes in place; a store forgets them first (`Products.forget`)."""
    if kept is None or x.flags.writeable:
        return False
    y, kg, lo = kept
    if y.dtype != x.dtype or y.strides != x.strides or y.ndim != x.ndim:
        return False
    shift = 0
    if g is not None and x.shape[g] > 1 and kg in (None, g) and lo <= a:
        shift = (a - lo) * x.strides[g]
        if a - lo + x.shape[g] > y.shape[g]:
            return False
        if any(p != q for d, (p, q) in enumerate(zip(y.shape, x.shape)) if d != g):
            return False
    elif y.shape != x.shape:
        return False
    return _address(y) + shift == _address(x)


class Products:
    """The kept layouts and buffers of the stepped float32 products of one launch. While a
    step runs on rows [a, b) of the n along grid axis g (`narrow`, window.py), an operand cut
    to those rows is put back in place in a whole-axis buffer and the product is the whole
    axis's, cut: a BLAS call's numbers depend on its shape, so the call stays the one the
    whole axis makes (the other rows hold earlier contents, which no row of the rows kept
    reads)."""

    def __init__(self):
        self.kept: dict[object, _Kept] = {}
        self.narrow: tuple[int, int, int, int] | None = None

    def forget(self) -> None:
        """Drop the read-only operands converted so far: a store is about to change memory
        they may be views of."""
        for kept in self.kept.values():
            kept.sources = [None, None]

    def multiply(self, op: object, lhs: np.ndarray, rhs: np.ndarray, r: int, rank: int,
                 lhs_scales: Sequence[np.ndarray] = (), rhs_scales: Sequence[np.ndarray] = (),
                 into: Callable[[tuple[int, ...]], np.ndarray | None] | None = None
                 ) -> np.ndarray:
        """`compute.product(lhs, rhs, r, rank, f32)` for the mma `op` (with scales, the exact
        `lowp.scaled_product`), in its product buffer (valid until this op's next product), or
        in the array `into(shape)` gives (float32, C-contiguous, sharing no memory with the
        operands) where the step is not narrowed: the same BLAS call either way."""
        operands = []
        for x, scales in ((lhs, lhs_scales), (rhs, rhs_scales)):
            factors = dequantize_factors(x, scales, x.ndim - r) if scales else []
            if factors is None:  # dequantised anew, as lowp.scaled_product does
                x, factors = precision.dequantize(x, scales, x.ndim - r), []
            operands.append((align(x, r, rank), [align(f, r, rank) for f in factors],
                             tuple(scales) if factors else ()))
        (a, a_factors, a_scales), (b, b_factors, b_scales) = operands
        g = lo = hi = None
        shapes = (a.shape, b.shape)
        if self.narrow is not None:
            g, n, lo, hi = self.narrow
            shapes = tuple(_whole(x.shape, g, n, hi - lo) for x in (a, b))
        kept = self.kept.get(op)
        if kept is None or kept.shapes != shapes:
            old = kept
            kept = self.kept[op] = _Kept(shapes, GridMatmul(*shapes))
            if old is not None:  # the buffers serve any shape they hold
                kept.operands, kept.product = old.operands, old.product
        plan = kept.plan
        sides = []
        for side, (x, factors, scales, whole, make, shape, perm) in enumerate((
                (a, a_factors, a_scales, shapes[0], plan.lhs, plan.lhs_shape, plan.lhs_perm),
                (b, b_factors, b_scales, shapes[1], plan.rhs, plan.rhs_shape, plan.rhs_perm))):
            buffer = _view(kept.operands[side], shape)
            cut = whole != x.shape
            if (buffer is not None and _covers(kept.sources[side], x, g, lo)
                    and _same_scales(kept.scales[side], scales)):
                sides.append(buffer)  # the same read-only elements: converted before
                continue
            if cut or factors or _strided_bf16(x):
                if buffer is None:
                    buffer = np.zeros(shape, F32)
                    kept.operands[side] = buffer.reshape(-1)
                rows = buffer.reshape(tuple(whole[d] for d in perm)).transpose(np.argsort(perm))
                dest = rows[(slice(None),) * g + (slice(lo, hi),)] if cut else rows
                if factors:
                    dequantize_into(x, factors, dest)
                elif _strided_bf16(x):
                    widen_bf16_into(x, dest)
                else:
                    np.copyto(dest, x, casting="unsafe")
                kept.sources[side] = None if x.flags.writeable else (x, g, lo if cut else 0)
                kept.scales[side] = tuple(np.array(s) for s in scales)
                sides.append(buffer)
                continue
            converted, copied = make(x, F32, buffer)
            kept.sources[side] = (x, g, 0) if copied and not x.flags.writeable else None
            kept.scales[side] = ()
            if copied and converted is not buffer:
                kept.operands[side] = converted.reshape(-1)
            sides.append(converted)
        out = None if into is None or g is not None else into(plan.shape)
        if out is not None and (out.shape != plan.shape or out.dtype != F32
                                or not out.flags.c_contiguous
                                or any(np.may_share_memory(out, x) for x in (*sides, lhs, rhs))):
            out = None
        if out is None:
            out = _view(kept.product, plan.shape)
        if out is None:
            out = np.empty(plan.shape, F32)
            kept.product = out.reshape(-1)
        prod = plan.multiply(sides[0], sides[1], out)
        if g is None or prod.shape[g] == 1:
            return prod
        return prod[(slice(None),) * g + (slice(lo, hi),)]


def _whole(shape: tuple[int, ...], g: int, n: int, cut: int) -> tuple[int, ...]:
    """The shape an operand cut to `cut` rows of grid axis g has on the whole axis."""
    return shape if shape[g] != cut else shape[:g] + (n,) + shape[g + 1:]


def target(ref: Ref, acc: np.ndarray, owned: bool, shape: tuple[int, ...]) -> np.ndarray | None:
    """Where the sum with an accumulator the executor does not own (a fill's read-only
    broadcast) goes, for a product of `shape` to be computed there first and `accumulate` to
    add in place: the same additions as into a third array, without the traffic of one more
    array per step. None where the sum would go elsewhere: into the accumulator's own array,
    or into a new one."""
    if owned or broadcast_shapes(acc.shape, shape) != shape:
        return None
    found = ref.scratch(shape, F32)
    return None if found is None or np.may_share_memory(found, acc) else found


def accumulate(ref: Ref, acc: np.ndarray, owned: bool, prod: np.ndarray) -> np.ndarray:
    """`acc + prod` in float32 (`compute.accumulate` for a float32 accumulator), written into
    the accumulator's array when it is owned and of the sum's shape, else into an array its
    allocation may overwrite (where `target` had `prod` computed, in place), never into a
    kept product buffer."""
    shape = broadcast_shapes(acc.shape, prod.shape)
    target = acc if owned and acc.shape == shape else ref.scratch(shape, F32)
    if (target is not None and target.shape == prod.shape and target.flags.c_contiguous
            and prod.flags.c_contiguous and _address(target) == _address(prod)):
        return np.add(acc, prod, out=prod)  # the product was computed there (`target`)
    if target is None or np.may_share_memory(target, prod):
        target = np.empty(shape, F32)
    return np.add(acc, prod, out=target)
