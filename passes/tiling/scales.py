"""Low-precision scales in the `tile` pass: how a tile meets the scale blocks of a
(de)quantised tensor, when a matmul's dequantised operands go to the tensor engine as narrow
values and scales (a scaled `tile.mma`), and what that asks of the tile sizes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.ir import SSAValue
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.passes.tiling.requests import Req, dtype_of, shape_of, transposed_req

FP8_CHUNK = 128  # K elements an FP8 tensor core sums before promoting to f32 (`fp8_fast`)


def fusable(v: SSAValue, req: Req) -> bool:
    """Whether the tile `req` of a matmul operand can go to the tensor engine as low-precision
    values and scales: a dequantise (through transposes) whose scale blocks the tile respects."""
    while isinstance(v.owner, zk.TransposeOp):
        req = transposed_req(req, v.owner.permutation)
        v = v.owner.input
    op = v.owner
    return isinstance(op, zk.DequantizeOp) and all(
        scale_plan(req, shape_of(op.values), shape_of(s)) is not None for s in op.scales)


def fused_dtype(mm: zk.MatmulOp) -> dtypes.DType | None:
    """The format a scaled mma of `mm` runs in: both operands dequantised from formats one of
    which holds the other exactly; else None."""
    sources = [_dequantized(v) for v in mm.operands]
    if not all(sources):
        return None
    a, b = (dtypes.from_xdsl(s.values.type.element_type) for s in sources)
    return dtypes.promote(a, b)


def scale_plan(req: Req, shape: Sequence[int], scales: Sequence[int]
                ) -> list[tuple[str, int]] | None:
    """How a values tile `req` meets the blocks of a scale tensor, per dimension: ("one", 1) for
    a single scale along it, ("whole", block) when the tile holds whole blocks, ("within",
    block) when it lies inside one; None when it cuts a block."""
    blocks = zk.blocks_of(shape, scales)
    if blocks is None:
        return None
    plan = []
    for d, (s, b) in enumerate(zip(scales, blocks)):
        t, base = req.sizes[d], req.base[d]
        if s == 1:
            plan.append(("one", 1))
        elif base % b:
            return None
        elif t % b == 0:
            plan.append(("whole", b))
        elif b % t == 0:
            plan.append(("within", b))
        else:
            return None
    return plan


def block_multiples(op: zk.QuantizeOp | zk.DequantizeOp) -> tuple[int, ...]:
    """What the tiles of a grid over a (de)quantised tensor must be multiples of, per dim:
    the scale blocks where a dimension holds several of them."""
    values = op.input if isinstance(op, zk.QuantizeOp) else op.values
    shape = shape_of(values)
    scales = op.results[1:] if isinstance(op, zk.QuantizeOp) else op.scales
    need = [1] * len(shape)
    for s in scales:
        for d, (n, b) in enumerate(zip(shape_of(s), zk.blocks_of(shape, shape_of(s)))):
            if n > 1:
                need[d] = math.lcm(need[d], b)
    return tuple(need)


def operand_blocks(v: SSAValue, axis: int) -> int:
    """The scale blocks along `axis` of a matmul operand dequantised (through transposes) with
    scales that vary along it: the lcm of their blocks; else 1."""
    source = _contraction_source(v, axis)
    if source is None:
        return 1
    op, a = source
    out = 1
    for s in op.scales:
        if shape_of(s)[a] > 1:
            out = math.lcm(out, zk.blocks_of(shape_of(op.values), shape_of(s))[a])
    return out


def _dequantized(v: SSAValue) -> zk.DequantizeOp | None:
    """The `zk.dequantize` a matmul operand is, through transposes."""
    while isinstance(v.owner, zk.TransposeOp):
        v = v.owner.input
    return v.owner if isinstance(v.owner, zk.DequantizeOp) else None


def _contraction_source(v: SSAValue, axis: int) -> tuple[zk.DequantizeOp, int] | None:
    """The dequantise behind a matmul operand and which of its axes `axis` of the operand is."""
    while isinstance(v.owner, zk.TransposeOp):
        axis = v.owner.permutation[axis]
        v = v.owner.input
    return (v.owner, axis) if isinstance(v.owner, zk.DequantizeOp) else None


def mma_dtype(mm: zk.MatmulOp) -> dtypes.DType:
    """The operand dtype the tensor engine runs a matmul in: the low-precision format when both
    operands are dequantised from compatible formats, else the operands' own."""
    return fused_dtype(mm) or dtype_of(mm.lhs)


def k_multiple(mm: zk.MatmulOp, fp8_fast: bool) -> int:
    """What a chosen K tile must be a multiple of: the scale blocks along K of a scaled mma's
    operands, and the 128-element promotion interval of `fp8_fast` accumulation."""
    out = 1
    if fused_dtype(mm) is not None:
        out = math.lcm(operand_blocks(mm.lhs, len(shape_of(mm.lhs)) - 1),
                       operand_blocks(mm.rhs, len(shape_of(mm.rhs)) - 2))
    if fp8_fast and mma_dtype(mm).is_low_precision:
        out = math.lcm(out, FP8_CHUNK)
    return out
