"""Loops that skip steps (`loop.live_steps`): which grid points run a step, and the state a step
must leave unchanged where it does not run.

The executor runs every grid point of a row block at once, so a step that runs for some points
and not others is run for all of them and then undone where it should not have run: the
buffers the loop carries (read in a step before that step writes them, or read after the loop)
get their old contents back there. A step that runs nowhere is not run at all, one that runs
everywhere is run as usual."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core.attrs import live_steps
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.dependence import root_alloc


class LiveSteps:
    """For one run of a loop: the grid points (of the current row block) each step runs on."""

    def __init__(self, loop: ppu.LoopOp, rows: np.ndarray, rank: int):
        _, lo, hi = live_steps(loop)
        rows = rows.reshape((1,) * (rank - rows.ndim) + rows.shape)
        self.lo, self.hi = np.asarray(lo)[rows], np.asarray(hi)[rows]

    def at(self, k: int) -> np.ndarray:
        """Whether step k runs, per grid point (broadcastable over the grid axes)."""
        return (self.lo <= k) & (k < self.hi)


def carried(loop: ppu.LoopOp, launch: ppu.LaunchOp) -> tuple[Operation, ...]:
    """The allocations whose contents a step that does not run must keep: read in the body
    before the body writes them (loop state), or written in it and read after the loop."""
    written: set[Operation] = set()
    state: list[Operation] = []
    for op in loop.body.walk():
        reads, writes = _reads_writes(op)
        state += [a for a in reads if a not in written and a not in state]
        written.update(writes)
    after = False
    for op in launch.body.walk():
        if op is loop:
            after = True
            continue
        if after and not _inside(op, loop):
            reads, _ = _reads_writes(op)
            state += [a for a in reads if a in written and a not in state]
    return tuple(a for a in state if isinstance(a, ppu.AllocOp))


def _inside(op: Operation, loop: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if parent is loop:
            return True
        parent = parent.parent_op()
    return False


def _reads_writes(op: Operation) -> tuple[list[Operation], list[Operation]]:
    """The allocations an op reads and writes."""
    reads: list[SSAValue] = []
    writes: list[SSAValue] = []
    if isinstance(op, ppu.VMapOp):
        reads, writes = list(op.ins), [op.out]
    elif isinstance(op, (ppu.VReduceOp, ppu.VTransposeOp)):
        reads, writes = [op.input], [op.out]
    elif isinstance(op, ppu.MmaOp):
        reads = [op.lhs, op.rhs, op.acc, *op.lhs_scales, *op.rhs_scales]
        writes = [op.acc]
    elif isinstance(op, (ppu.FillOp, ppu.VIotaOp)):
        writes = [op.out]
    elif isinstance(op, ppu.DmaLoadOp):
        writes = [op.dest]
    elif isinstance(op, ppu.DmaStoreOp):
        reads = [op.source]
    elif isinstance(op, ppu.VQuantizeOp):
        reads = [op.input, *([op.amax] if op.amax is not None else [])]
        writes = list(op.outs)
    return list(_allocs(reads)), list(_allocs(writes))


def _allocs(values) -> Iterator[Operation]:
    for v in values:
        owner = v.owner
        if isinstance(owner, Operation):
            yield root_alloc(v)
