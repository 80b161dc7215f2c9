"""Stores the IR proves to write every element of their tensor exactly once, so the executor
need not record, element by element, what they wrote (the written-mask behind ZK0614 and ZK0615).

A `ppu.dma_store` directly in a launch's body (no loop around it: it runs once per grid point)
whose window is its whole destination, and whose tile index along each dimension is either a
grid index of its own, the grid being exactly as long as the tiles along that dimension, or the
constant 0 where there is one tile, writes each tile once: the grid points and the tiles are in
one-to-one correspondence, and edge tiles are clipped to the window. Every other grid axis must
have extent 1 (else several points would write one tile). Everything here is read from the IR:
the same program is proven the same way on every run. Where nothing is proven, the mask is kept.
"""

from __future__ import annotations

from xdsl.dialects import arith
from xdsl.dialects.builtin import IntegerAttr
from xdsl.ir import SSAValue
from zhenwu_cc.core.tiling import tile_counts
from zhenwu_cc.dialects import ppu


def unmasked_tensors(kernel: ppu.KernelOp) -> set[SSAValue]:
    """The kernel's tensors whose written-mask no store touches: every store into them is one
    of `unmasked_stores` (memory.py counts no mask for these)."""
    stored: dict[SSAValue, bool] = {}
    for launch in kernel.body.block.ops:
        if isinstance(launch, ppu.LaunchOp):
            unmasked = unmasked_stores(launch)
            for op in launch.body.walk():
                if isinstance(op, ppu.DmaStoreOp):
                    root = _root(op.dest)
                    stored[root] = stored.get(root, True) and op in unmasked
    return {v for v, ok in stored.items() if ok}


def untracked_tensors(kernel: ppu.KernelOp) -> set[SSAValue]:
    """The `unmasked_tensors` no launch loads before a launch stores them: nothing ever reads
    their written-mask (the first store makes them wholly written), so none is allocated."""
    candidates = unmasked_tensors(kernel)
    stored: set[SSAValue] = set()
    read_first: set[SSAValue] = set()
    for launch in kernel.body.block.ops:
        if isinstance(launch, ppu.LaunchOp):
            ops = list(launch.body.walk())
            read_first |= {_root(op.source) for op in ops
                           if isinstance(op, ppu.DmaLoadOp)} - stored
            stored |= {_root(op.dest) for op in ops if isinstance(op, ppu.DmaStoreOp)}
    return candidates - read_first


def unmasked_stores(launch: ppu.LaunchOp) -> tuple[ppu.DmaStoreOp, ...]:
    """The stores of `launch` that need not record what they write: proven to write their whole
    tensor once (`covering_stores`), into the tensor itself (not a view), which the launch does
    not load (a load in the same launch would need the mask of what earlier blocks wrote)."""
    loaded = {_root(op.source) for op in launch.body.walk() if isinstance(op, ppu.DmaLoadOp)}
    return tuple(op for op in covering_stores(launch)
                 if _root(op.dest) is op.dest and op.dest not in loaded)


def _root(v: SSAValue) -> SSAValue:
    while isinstance(v.owner, ppu.ViewOp):
        v = v.owner.source
    return v


def covering_stores(launch: ppu.LaunchOp) -> tuple[ppu.DmaStoreOp, ...]:
    """The stores of `launch` proven to write their whole destination exactly once."""
    return tuple(op for op in launch.body.block.ops
                 if isinstance(op, ppu.DmaStoreOp) and _covers_once(op, launch))


def _covers_once(op: ppu.DmaStoreOp, launch: ppu.LaunchOp) -> bool:
    grid = tuple(launch.grid_shape)
    args = list(launch.body.block.args)
    shape = tuple(op.dest.type.get_shape())
    base, bound = op.window
    if any(base) or tuple(bound) != shape:
        return False
    counts = tile_counts(bound, op.tile_sizes)
    if len(op.indices) != len(counts):
        return False
    used: set[int] = set()
    for index, count in zip(op.indices, counts):
        if index in args:
            d = args.index(index)
            if d in used or grid[d] != count:
                return False
            used.add(d)
        elif not (count == 1 and _zero(index)):
            return False
    return all(n == 1 for d, n in enumerate(grid) if d not in used)


def _zero(v) -> bool:
    owner = v.owner
    return (isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr)
            and owner.value.value.data == 0)
