"""Merging a reduction loop into one matmul: the loads of every step at once, one tensor-engine
product over the whole reduction.

A `ppu.loop` whose body only computes indices, picks slots, loads tiles and accumulates
`ppu.mma` products of tiles it has just loaded into float32 (or integer) accumulators computes
acc + sum_k A_k @ B_k. The executor then evaluates the body's index arithmetic once with the loop
variable as a step axis (index.py), performs every step's loads as one gather each
(bounds, padding and uninitialised-data checks included), concatenates the steps' tiles along K
and multiplies once (compute.grid_matmul). Only the float32 summation order changes.
Slots are left holding what the last step that used them loaded, as stepping would leave them.
Scaled low-precision products merge too: their scale tiles are concatenated along K with the
operands (a scale loaded before the loop holds for every step). Any other loop, or one whose slot
choice differs between tiles or that loads one slot twice in a step, runs step by step (as do a
float16/bfloat16 accumulator, which rounds every step, and `fp8_fast` accumulation, whose
promotions follow the steps).
"""

from __future__ import annotations

import numpy as np
from xdsl.ir import SSAValue
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.compute import accumulate, product
from zhenwu_cc.runtime.executor.dependence import root_alloc
from zhenwu_cc.runtime.executor.index import INDEX_OPS, Index
from zhenwu_cc.runtime.executor.lowp import scaled_product
from zhenwu_cc.runtime.executor.state import Machine

_BODY_OPS = (ppu.SlotOp, ppu.DmaLoadOp, ppu.WaitOp, ppu.MmaOp, ppu.YieldOp, *INDEX_OPS)


def _accumulates_exactly(mma: ppu.MmaOp) -> bool:
    """Merging changes only the summation order: float32 sums, or wrapping integer sums."""
    acc = dtypes.from_xdsl(mma.acc.type.element_type)
    return acc.name == "f32" or acc.is_int and dtypes.from_xdsl(mma.lhs.type.element_type).is_int


def mergeable(loop: ppu.LoopOp) -> bool:
    """The body has the shape described in the module docstring (checked without data)."""
    ops = list(loop.body.block.ops)
    inside = set(ops)
    loaded: set[SSAValue] = set()
    accs: set[SSAValue] = set()
    for op in ops:
        if not isinstance(op, _BODY_OPS):
            return False
        if isinstance(op, ppu.DmaLoadOp):
            if op.dest in loaded or isinstance(op.dest.owner, ppu.ViewOp):
                return False
            loaded.add(op.dest)
        if isinstance(op, ppu.MmaOp):
            scales = [*op.lhs_scales, *op.rhs_scales]
            if (op.lhs not in loaded or op.rhs not in loaded or op.acc.owner in inside
                    or not _accumulates_exactly(op) or op.fp8_fast is not None
                    or any(s not in loaded and s.owner in inside for s in scales)):
                return False
            accs.add(root_alloc(op.acc))
    return bool(accs) and not accs & {root_alloc(v) for v in loaded}


def _steps(ix: Index, trips: int, r: int) -> np.ndarray | None:
    """Per-step values of an index that varies only with the step, else None."""
    v = ix.value.reshape((1,) * (r + 1 - ix.value.ndim) + ix.value.shape)
    if any(n > 1 for n in v.shape[1:]):
        return None
    return np.broadcast_to(v.reshape(-1), (trips,))


def _along_k(x: np.ndarray, trips: int, lhs: bool) -> np.ndarray:
    """Step tiles [T, ..., m, k] side by side as [..., m, T*k] (lhs), or [T, ..., k, n] stacked
    as [..., T*k, n] (rhs)."""
    x = np.broadcast_to(x, (trips,) + x.shape[1:])
    if lhs:
        y = np.moveaxis(x, 0, -2)
        return y.reshape(y.shape[:-2] + (trips * y.shape[-1],))
    y = np.moveaxis(x, 0, -3)
    return y.reshape(y.shape[:-3] + (trips * y.shape[-2], y.shape[-1]))


def _slot_reloaded(loads: list[ppu.DmaLoadOp], slot_steps: dict[SSAValue, np.ndarray],
                   env: dict) -> bool:
    """Whether two loads of one step write the same slot (through different SSA values): then
    which data an mma sees depends on their order, and only stepping gets that right."""
    by_alloc: dict[int, list[np.ndarray]] = {}
    for op in loads:
        by_alloc.setdefault(id(env[op.dest].alloc), []).append(slot_steps[op.dest])
    for steps in by_alloc.values():
        table = np.sort(np.stack(steps), axis=0)
        if (table[1:] == table[:-1]).any():
            return True
    return False


def _scale_steps(interp: Machine, tiles: dict, s: SSAValue, mma: ppu.MmaOp, trips: int,
                 lhs: bool) -> np.ndarray:
    """A scale's tiles side by side along K like its operand's; one loaded before the loop
    holds for every step."""
    x = tiles[s] if s in tiles else interp.read(s, mma)[np.newaxis]
    return _along_k(x, trips, lhs)


def run_merged(interp: Machine, loop: ppu.LoopOp) -> bool:
    """Run a mergeable loop as one product; False (having changed nothing but the body's index
    values) when a load's slot choice differs between tiles or two loads of a step share a
    slot, so the caller steps through it."""
    launch, env = interp.launch, interp.env
    r, trips = launch.rank, loop.trip_count
    env[loop.induction_var] = Index.along(-(r + 1), trips)
    body = list(loop.body.block.ops)
    for op in body:
        if isinstance(op, (*INDEX_OPS, ppu.SlotOp)):
            interp.run_op(op)
    loads = [op for op in body if isinstance(op, ppu.DmaLoadOp)]
    slot_steps: dict[SSAValue, np.ndarray] = {}
    for op in loads:
        ref = env[op.dest]
        if ref.index is None:
            if ref.alloc.depth > 1:
                return False
            steps = np.zeros(trips, np.int64)
        elif (steps := _steps(ref.index, trips, r)) is None:
            return False
        slot_steps[op.dest] = steps % ref.alloc.depth
    if _slot_reloaded(loads, slot_steps, env):
        return False
    launch.names[-(r + 1)] = loop.induction_var.name_hint or "step"
    tiles = {op.dest: interp.load_tiles(op, r + 1) for op in loads}
    last: dict[tuple[int, int], tuple[int, int, SSAValue]] = {}
    for position, op in enumerate(loads):
        alloc, steps = env[op.dest].alloc, slot_steps[op.dest]
        for k in np.unique(steps):
            t = int(np.flatnonzero(steps == k)[-1])
            key = (id(alloc), int(k))
            if key not in last or (t, position) > last[key][:2]:
                last[key] = (t, position, op.dest)
    for (_, k), (t, _, dest) in last.items():
        x = tiles[dest]
        env[dest].alloc.put(k, x[t if x.shape[0] > 1 else 0])
    for op in body:
        if isinstance(op, ppu.MmaOp):
            lhs = _along_k(tiles[op.lhs], trips, lhs=True)
            rhs = _along_k(tiles[op.rhs], trips, lhs=False)
            rank = len(op.acc.type.get_shape())
            if op.lhs_scales or op.rhs_scales:
                sa = [_scale_steps(interp, tiles, s, op, trips, True) for s in op.lhs_scales]
                sb = [_scale_steps(interp, tiles, s, op, trips, False) for s in op.rhs_scales]
                prod = scaled_product(lhs, sa, rhs, sb, r, rank, False)
            else:
                prod = product(lhs, rhs, r, rank, interp.dtype(op.acc))
            acc, owned = interp.read_owned(op.acc, op)
            interp.write(op.acc, accumulate(acc, prod, interp.dtype(op.acc), owned), owned=True)
    return True
