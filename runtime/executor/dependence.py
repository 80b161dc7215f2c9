"""Which grid axes each value of a launch varies along, from the IR alone.

A launch holds every SRAM buffer for all its tiles at once, but only along the grid axes the
buffer's contents depend on (a GEMM's A tile does not depend on the column index). The
dependence follows launch indices -> index arithmetic -> DMA tile indices -> buffers -> whatever
is computed from them, to a fixed point (loops carry buffers around). The host-memory estimate
(memory.py) and the row blocks a launch runs in (rowblocks.py) both read it.
"""

from __future__ import annotations

from xdsl.ir import Operation, SSAValue
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.index import INDEX_OPS


def root_alloc(v: SSAValue) -> Operation:
    """The allocation behind an SRAM buffer value (through slots and views)."""
    op = v.owner
    if isinstance(op, ppu.SlotOp):
        return root_alloc(op.buffer)
    return root_alloc(op.source) if isinstance(op, ppu.ViewOp) else op


class Dependence:
    """Which grid axes each index value and each allocation's contents vary along."""

    def __init__(self, launch: ppu.LaunchOp):
        self.of: dict[SSAValue | Operation, frozenset[int]] = {
            arg: frozenset({d}) for d, arg in enumerate(launch.body.block.args)}
        changed = True
        while changed:
            before = dict(self.of)
            for op in launch.body.walk():
                self._visit(op)
            changed = before != self.of

    def axes(self, v: SSAValue) -> frozenset[int]:
        key = root_alloc(v) if isinstance(v.owner, (ppu.AllocOp, ppu.SlotOp, ppu.ViewOp)) else v
        return self.of.get(key, frozenset())

    def _join(self, dest: SSAValue, *sources: SSAValue) -> None:
        key = root_alloc(dest)
        self.of[key] = self.of.get(key, frozenset()).union(*(self.axes(s) for s in sources))

    def _visit(self, op: Operation) -> None:
        if isinstance(op, INDEX_OPS):
            self.of[op.results[0]] = frozenset().union(*(self.axes(v) for v in op.operands))
        elif isinstance(op, (ppu.DmaLoadOp, ppu.VIotaOp)):
            self._join(op.dest if isinstance(op, ppu.DmaLoadOp) else op.out, *op.indices)
        elif isinstance(op, ppu.VMapOp):
            self._join(op.out, *op.ins)
        elif isinstance(op, (ppu.VReduceOp, ppu.VTransposeOp)):
            self._join(op.out, op.input)
        elif isinstance(op, ppu.MmaOp):
            self._join(op.acc, op.lhs, op.rhs, *op.lhs_scales, *op.rhs_scales)
        elif isinstance(op, ppu.VQuantizeOp):
            for out in op.outs:
                self._join(out, op.input, *([op.amax] if op.amax is not None else []))
