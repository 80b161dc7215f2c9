"""Row blocks: a launch's grid runs a fixed number of grid points at a time along one axis.

Executing every tile of a large launch at once makes each vector op stream whole tensors (tens
of MiB) through memory, and holds all of them at once. The executor instead runs a launch's body
once per block of grid points along its longest axis (the first of equals), sized so that
the largest buffer of a block is about BLOCK_BYTES (in float32): a block's buffers stay in
cache, are reused from block to block (buffers.py), and the host memory a launch takes is one
block's. The size comes from the IR alone (tile shapes and the grid axes each buffer depends on,
dependence.py), never from the host, so the float32 summation order — and every output bit — is
the same on every machine and every run. A block spans at least two points of an axis that has
two, so a store writing different data to one place from two tiles is still seen (ZK0616).

A launch with tensor-engine work (`ppu.mma`) runs as one block: BLAS sums in an order that
depends on the matrix shape, so splitting a product's rows would change its bits (and a single
large call is BLAS's fastest).
"""

from __future__ import annotations

import math
import weakref

from xdsl.ir import SSAValue
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.dependence import Dependence

BLOCK_BYTES = 4 << 20  # measured: 1 MiB blocks paid more per-op overhead than they saved


def point_bytes(v: SSAValue, dep: Dependence, grid: tuple[int, ...], axis: int) -> int:
    """Bytes one grid point along `axis` adds to `v`'s contents (0 when they do not depend on
    `axis`), at float32 or wider working precision."""
    axes = dep.axes(v)
    if axis not in axes:
        return 0
    itemsize = dtypes.from_xdsl(v.type.element_type).np_dtype.itemsize
    return (math.prod(grid[d] for d in axes if d != axis) * math.prod(v.type.get_shape())
            * max(itemsize, 4))


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # launch -> {BLOCK_BYTES: plan}


def plan(launch: ppu.LaunchOp, dep: Dependence | None = None) -> tuple[int, int]:
    """(grid axis, points per block) for `launch`; one block of the whole axis when its
    buffers do not grow along it. Worked out once per launch (every run asks it)."""
    plans = _PLANS.setdefault(launch, {})
    if BLOCK_BYTES not in plans:
        plans[BLOCK_BYTES] = _plan(launch, dep)
    return plans[BLOCK_BYTES]


def _plan(launch: ppu.LaunchOp, dep: Dependence | None) -> tuple[int, int]:
    grid = tuple(launch.grid_shape)
    axis = max(range(len(grid)), key=lambda d: (grid[d], -d)) if grid else 0
    if not grid or grid[axis] <= 2:
        return axis, grid[axis] if grid else 1
    ops = list(launch.body.walk())
    if any(isinstance(op, ppu.MmaOp) for op in ops):
        return axis, grid[axis]
    dep = dep or Dependence(launch)
    largest = max((point_bytes(op.result, dep, grid, axis) for op in ops
                   if isinstance(op, ppu.AllocOp)), default=0)
    if largest == 0:
        return axis, grid[axis]
    return axis, min(grid[axis], max(2, BLOCK_BYTES // largest))
