"""How much host memory an executor run takes, estimated from the IR before anything is allocated.

A launch holds every SRAM buffer for the whole grid at once, but only along the grid axes its
contents depend on (a GEMM's A tile does not depend on the column index), so the estimate follows
that dependence through the program: launch indices -> index arithmetic -> DMA tile indices ->
buffers -> whatever is computed from them. It adds padded copies of edge-tiled sources, the
temporaries of the one op running at a time (a vector op's float32 working copies, a
quantisation's, the float32 operands of a merged reduction loop), and the kernel's global tensors
(the caller's inputs, copies of those a store writes, outputs, intermediates, and their
written-masks). The temporaries per op were measured (tests/test_host_memory.py keeps the
estimate at or above the bytes a run takes, and within about twice them).
"""

from __future__ import annotations

import math

from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core.tiling import tile_counts
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.runtime.executor.index import INDEX_OPS
from zhenwu_cc.runtime.units import MAX_HOST_BYTES_ENV, host_memory_limit

from zhenwu_cc.core.diagnostics import error

# float32 temporaries an op makes at most, each as large as its largest buffer (measured: a
# vector op about 3, a quantisation about 11, a stepped matmul's product and upcast operands 2)
_SCRATCH = {ppu.VMapOp: 3, ppu.VQuantizeOp: 12, ppu.MmaOp: 2, ppu.VReduceOp: 1,
            ppu.VTransposeOp: 1}


def _elements(v: SSAValue) -> int:
    return math.prod(v.type.get_shape())


def _itemsize(v: SSAValue) -> int:
    return dtypes.from_xdsl(v.type.element_type).np_dtype.itemsize


def _root(v: SSAValue) -> Operation:
    """The allocation behind an SRAM buffer value (through slots and views)."""
    op = v.owner
    if isinstance(op, ppu.SlotOp):
        return _root(op.buffer)
    return _root(op.source) if isinstance(op, ppu.ViewOp) else op


class _Dependence:
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
        key = _root(v) if isinstance(v.owner, (ppu.AllocOp, ppu.SlotOp, ppu.ViewOp)) else v
        return self.of.get(key, frozenset())

    def _join(self, dest: SSAValue, *sources: SSAValue) -> None:
        key = _root(dest)
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


def _launch_bytes(launch: ppu.LaunchOp) -> int:
    grid = launch.grid_shape
    dep = _Dependence(launch)

    def held(v: SSAValue) -> int:
        """Bytes of `v`'s contents over the grid, in float32 (or wider) working precision."""
        return (math.prod(grid[d] for d in dep.axes(v)) * _elements(v) * max(_itemsize(v), 4))

    values = sum(held(op.result) for op in launch.body.walk() if isinstance(op, ppu.AllocOp))
    padded = staging = scratch = 0
    for op in launch.body.walk():
        if type(op) in _SCRATCH:
            largest = max(held(v) for v in (*op.operands, *op.results)
                          if isinstance(v.type, MemRefType))
            scratch = max(scratch, _SCRATCH[type(op)] * largest)
        if isinstance(op, (ppu.DmaLoadOp, ppu.DmaStoreOp)):
            _, bound = op.window
            full = math.prod(n * t for n, t in zip(tile_counts(bound, op.tile_sizes),
                                                   op.tile_sizes))
            if full != math.prod(bound):
                copy = full * _itemsize(op.global_value)
                if isinstance(op, ppu.DmaLoadOp):
                    padded += copy
                else:
                    staging = max(staging, copy)
        if isinstance(op, ppu.MmaOp) and isinstance(op.parent_op(), ppu.LoopOp):
            # merged: every step's operands side by side in float32, and the product
            trips = op.parent_op().trip_count
            scratch = max(scratch, (held(op.lhs) + held(op.rhs)) * trips + held(op.acc))
    return values + scratch + padded + staging


def stored_inputs(kernel: ppu.KernelOp) -> set[SSAValue]:
    """The kernel arguments some `ppu.dma_store` writes (directly or through views): the
    executor copies those before the run."""
    out = set()
    for op in kernel.walk():
        if isinstance(op, ppu.DmaStoreOp):
            v = op.dest
            while isinstance(v.owner, ppu.ViewOp):
                v = v.owner.source
            out.add(v)
    return out


def estimate_host_bytes(kernel: ppu.KernelOp) -> int:
    """Peak host bytes a run of `kernel` on inputs in their declared dtypes is expected to take,
    those inputs included (an estimate meant to err high)."""
    total, peak = 0, 0
    stored = stored_inputs(kernel)
    for arg in kernel.inputs:  # the caller's array, and a copy of one a store writes
        total += (2 if arg in stored else 1) * _elements(arg) * _itemsize(arg)
    for v in [*kernel.outputs, *(op.result for op in kernel.body.block.ops
                                 if isinstance(op, ppu.GlobalOp))]:
        total += _elements(v) * (_itemsize(v) + 1)  # the tensor and its written-mask
    for op in kernel.body.block.ops:
        if isinstance(op, ppu.LaunchOp):
            peak = max(peak, _launch_bytes(op))
    return total + peak


def ensure_host_memory(kernel: ppu.KernelOp, converted: int = 0) -> None:
    """Refuse (ZK0505) before allocating when the estimate, plus `converted` bytes of copies of
    inputs given in another dtype, exceeds the host-memory limit."""
    need, limit = estimate_host_bytes(kernel) + converted, host_memory_limit()
    if limit is not None and need > limit:
        raise error("ZK0505", f"executing kernel `{kernel.sym_name.data}` needs about {need} "
                    f"bytes of host memory, more than the limit of {limit} bytes",
                    span_of(kernel), help="use smaller shapes (-D NAME=VALUE) or tiles, or raise "
                    f"the limit with {MAX_HOST_BYTES_ENV}=<bytes>")
