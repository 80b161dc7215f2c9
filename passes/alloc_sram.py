"""`alloc-sram`: give every tile value inside a `tile.grid` a buffer in a compute unit's SRAM.

A grid's tiles run one per CU, so the values of one grid body must fit one CU's SRAM together.
The buffers and their offsets come from `passes/sram_plan.py` (liveness, in-place reuse, linear
scan), which `tile` uses too when it sizes tiles to fit. A loop-less grid with more tiles than
the target has compute units multi-buffers its loads across the tiles each CU runs in turn
where the SRAM allows (`sram_plan.runs_in_turn`), else keeps one slot.

An iter arg yielded for another accumulator (a swap) is first copied (`zk.broadcast` to its own
shape), the one change this pass makes to the IR.

Output, on the op that defines each value: `sram.buffer` (which of the grid's buffers, numbered
in order of first definition), `sram.offset` (bytes) and `sram.depth` (slots); arrays with one
entry per result on a `tile.loop` (its accumulators) or a `tile.quantize`, and a `zk.reshape` repeats the buffer of its input, which
it views. `sram.peak` (bytes) on the grid. ZK0601 when the peak exceeds the SRAM of a CU.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import (
    DenseArrayBase,
    IntegerAttr,
    ModuleOp,
    TensorType,
    i64,
)
from xdsl.ir import BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from zhenwu_cc.core import attrs
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.dialects.tile import root_of
from zhenwu_cc.dialects.loc import span_of

from zhenwu_cc.core.diagnostics import CompileError, Note, error
from zhenwu_cc.passes.sram_plan import (
    DEFAULT_BUFFERS,
    GridPlan,
    plan_grid,
    runs_in_turn,
)
from zhenwu_cc.core.target import DEFAULT_TARGET, load_target


def break_swaps(grid: tile.GridOp) -> None:
    """Copy an iter arg yielded for another accumulator (`tile.yield %b, %a`) first.

    Each accumulator keeps one buffer, and its result is written where the body ends; the copy
    lets one accumulator's old value outlive that write for the other to take it."""
    for loop in [op for op in grid.body.walk() if isinstance(op, tile.LoopOp)]:
        end = loop.body.block.last_op
        for index, value in enumerate(end.operands):
            if value in loop.iter_args and value.index - 1 != index:
                copy = zk.BroadcastOp(value, value.type.get_shape())
                copy.location = end.location
                loop.body.block.insert_op_before(copy, end)
                end.operands[index] = copy.result


def _record(grid: tile.GridOp, plan: GridPlan) -> None:
    number = {id(b): n for n, b in enumerate(plan.buffers)}
    for op in grid.body.walk():
        values = [root_of(r) for r in op.results if isinstance(r.type, TensorType)]
        if not values:
            continue
        bufs = [plan.of[v] for v in values]
        fields = zip(attrs.SRAM_PLACEMENT, ([number[id(b)] for b in bufs], [b.offset for b in bufs],
                                            [b.first.depth for b in bufs]))
        several = isinstance(op, tile.LoopOp) or len(op.results) > 1
        for name, numbers in fields:
            op.attributes[name] = (DenseArrayBase.from_list(i64, numbers) if several
                                   else IntegerAttr(numbers[0], 64))
    grid.attributes[attrs.SRAM_PEAK] = IntegerAttr(plan.peak, 64)


def _definer(value: SSAValue) -> Operation:
    """The op that defines a tile value (the loop, for an iter arg)."""
    owner = value.owner
    return owner.parent_op() if isinstance(value, BlockArgument) else owner


def buffer_origin(buf) -> tuple[str, object]:
    """The name and span of the op that defines a buffer's first value (ZK0601's notes)."""
    op = _definer(buf.first.value)
    return op.name, span_of(op)


def _describe(name: str, shape, dtype, nbytes: int, depth: int, offset: int) -> str:
    what = "x".join([*(str(d) for d in shape), str(dtype)])
    slots = f" x {depth} slots" if depth > 1 else ""
    return f"`{name}` {what}: {nbytes} bytes{slots} at offset {offset}"


def _overflow(grid: tile.GridOp, plan: GridPlan, capacity: int, source: str) -> CompileError:
    buffers = [(*buffer_origin(buf), buf.first.value.type.get_shape(),
                dtypes.from_xdsl(buf.first.value.type.element_type), buf.first.nbytes,
                buf.first.depth, buf.offset)
               for buf in sorted(plan.buffers, key=lambda b: (b.offset, b.first.order))]
    return sram_refusal(grid.role.data, span_of(grid), plan.peak, capacity, source, buffers)


def sram_refusal(role: str, span, peak: int, capacity: int, source: str, buffers
                 ) -> CompileError:
    """ZK0601 for a grid whose buffers, (defining op's name and span, shape, dtype, bytes per
    slot, slots, offset) in the order of their offsets, need `peak` bytes. The fast cost path (zhenwu_cc/fast_cost.py) raises it
    too."""
    notes = [Note(_describe(name, shape, dtype, nbytes, depth, offset), where)
             for name, where, shape, dtype, nbytes, depth, offset in buffers]
    multi = any(b[5] > 1 for b in buffers)
    return error(
        "ZK0601",
        f"the on-chip buffers of this {role} grid need {peak} bytes of SRAM per "
        f"compute unit, more than the {capacity} of {source}",
        span, notes=notes,
        help="use smaller `tile` sizes for this computation in the schedule"
             + (", or `buffers 1` to stop multi-buffering its loads" if multi else ""))


# frozen: xDSL's ModulePass is; no repr (start-up: nothing prints a pass)
@dataclass(frozen=True, repr=False)
class AllocSramPass(ModulePass):
    """Place the tile values of every grid in SRAM; record offsets, depths and peaks."""

    name = "alloc-sram"

    sram_bytes: int = 0  # SRAM per compute unit; 0 = the target's
    target: str = DEFAULT_TARGET
    alignment: int = 128

    def __post_init__(self) -> None:
        if self.sram_bytes < 0 or self.alignment < 1:
            raise ValueError("alloc-sram needs sram-bytes >= 0 and alignment >= 1")

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        capacity, source = self.sram_bytes, "the `sram-bytes` option"
        target = load_target(self.target)
        if not capacity:
            capacity, source = target.sram_per_cu, f"target `{self.target}`"
        for kernel in op.walk():
            if not isinstance(kernel, zk.KernelOp):
                continue
            count = kernel.attributes.get(attrs.BUFFERS)
            buffers = count.value.data if isinstance(count, IntegerAttr) else DEFAULT_BUFFERS
            for grid in kernel.body.walk():
                if isinstance(grid, tile.GridOp):
                    break_swaps(grid)
                    plan = plan_grid(grid, buffers, self.alignment)
                    if runs_in_turn(grid, target.compute_units):
                        across = plan_grid(grid, buffers, self.alignment, across=True)
                        plan = across if across.peak <= capacity else plan
                    _record(grid, plan)
                    if plan.peak > capacity:
                        raise _overflow(grid, plan, capacity, source)
