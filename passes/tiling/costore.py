"""Kernel results stored by the grid that computes them anyway: an elementwise grid whose result
tile needs the tile of another kernel result of the same shape, at the same tile (rmsnorm's
`h = x + residual`, returned beside `y = rmsnorm(h)`), stores that tile too. The result then
needs no grid of its own that would read the operands again and recompute it (one read of x
and residual instead of two); its bits are the same, computed by the same ops.

Not for a result with a `tile` directive of its own (the schedule sized its grid), and not
where the extra store's buffer, live to the end of the tile, would overflow SRAM: the grid is
then built without it, as before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import attrs
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.passes.sram_plan import plan_grid
from zhenwu_cc.passes.tiling.requests import Req, shape_of

if TYPE_CHECKING:
    from zhenwu_cc.passes.tiling.kernel import KernelTiler


def _candidates(tiler: KernelTiler, v: SSAValue) -> list[SSAValue]:
    """Kernel results other than `v`, of `v`'s shape, that no grid holds yet and no directive
    sizes: computed elementwise (a load, a reduction or a matmul has a grid of its own)."""
    ret = tiler.block.last_op
    found: list[SSAValue] = []
    for w in ret.operands if isinstance(ret, zk.ReturnOp) else ():
        op = w.owner
        if (w is v or w in found or w in tiler.materialized or not isinstance(op, Operation)
                or not isinstance(op, zk.ELEMENTWISE_OPS) or attrs.TILE in op.attributes
                or shape_of(w) != shape_of(v)):
            continue
        found.append(w)
    return found


def build(tiler: KernelTiler, v: SSAValue, sizes: tuple[int, ...], role: str, loc):
    """The elementwise grid of `v` with tiles of `sizes`: (ops to add, v's tensor, the grid),
    storing the results `_candidates` names whose tiles it builds, where SRAM allows."""
    ops, grid, extra = _build(tiler, v, sizes, role, loc, co_store=role != "copy")
    if extra and plan_grid(grid, tiler.buffers).peak > tiler.target.sram_per_cu:
        ops, grid, extra = _build(tiler, v, sizes, role, loc, co_store=False)
    tiler.co_stored = (grid.res[0], {w: grid.res[k] for k, w in enumerate(extra, 1)})
    return ops, grid.res[0], grid


def _build(tiler: KernelTiler, v: SSAValue, sizes: tuple[int, ...], role: str, loc,
           co_store: bool) -> tuple[list[Operation], tile.GridOp, list[SSAValue]]:
    shape = shape_of(v)
    counts = tile.tile_counts(shape, sizes)
    g = tiler.new_grid(len(shape), loc, v)
    g.tile_elems = math.prod(sizes)
    idx = g.tile_index(counts)
    req = Req(idx, sizes, (0,) * len(shape), shape)
    t = g.tile_of(v, req)
    outs, stores, extra = [tiler.empty(v)], [(t, 0, idx, None)], []
    for w in _candidates(tiler, v) if co_store else ():
        if (tw := g._built(w, req)) is not None:
            extra.append(w)
            outs.append(tiler.empty(w))
            stores.append((tw, len(outs) - 1, idx, None))
    grid = g.finish([o.result for o in outs], role, counts, stores)
    grid.location = loc
    return [*outs, grid], grid, extra


def taken(tiler: KernelTiler, out: SSAValue) -> dict[SSAValue, SSAValue]:
    """The results the grid whose first result is `out` stores besides it, by their `zk` value
    (once: the record is cleared)."""
    first, extra = tiler.co_stored
    if first is not out:
        return {}
    tiler.co_stored = (None, {})
    for w, res in extra.items():
        res.name_hint = w.name_hint
    return extra
