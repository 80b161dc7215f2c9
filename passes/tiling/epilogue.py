"""A row reduction in its matmul's epilogue: the max and the sum of `exp(x - max)` over the last
axis of `x`, an elementwise function of a matmul (`logsumexp(h @ w + b)`, a classifier's
log-partition; `softmax`/`log_softmax` of a matmul's result), computed by the matmul's grid on
each [M, N] tile it holds instead of by two reduction grids reading `x` back from HBM.

Each tile keeps, per row, its maximum `m_i` and `l_i = sum(exp(x - f(m_i)))` with `f(m) = m`
where finite, else 0 (so a tile of -inf scores adds 0, never NaN); the parts go to two small
[N tiles, ..., M, 1] tensors. Where used, the parts combine as online softmax does:
`max = max_i m_i` (exact), `sum = sum_i l_i * exp(f(m_i) - shift)` with `shift` the kernel's own
shift of that max (`max`, or decompose's finite max). The sum differs from the unfused program's
in its last bits and both are checked against the exact math. `x` itself reaches HBM only where
something else reads it (`log_softmax`'s `x - lse`, `softmax`'s `exp(x - max) / sum`): then the
grid stores it too, and the reductions no longer read it back.

The match (`decompose.exp_sum`) is on the dataflow `decompose` leaves (`_softmax`,
`_log_softmax`, `_logsumexp`): `sum(exp(x - shift))` with `shift` the max of `x` over its last
axis (kept), or `select(abs(max) < inf, max, 0)`. A `tile`/`split` directive on either
reduction, `split_k` on the matmul or `fuse NAME off` on a value of the group keeps the unfused
grids, which honour them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.dialects.builtin import DenseArrayBase, DictionaryAttr, IntegerAttr, i64
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.passes.decompose import exp_sum
from zhenwu_cc.passes.tiling.directives import split_k_asked
from zhenwu_cc.passes.tiling.fusion import exclusive, path_ops
from zhenwu_cc.passes.tiling.requests import reduces_last_axis, shape_of
from zhenwu_cc.passes.tiling.sizes import halve_matmul, k_steps
from zhenwu_cc.passes.tiling.split import split_parts

F32 = dtypes.to_xdsl(dtypes.F32)
# In a grid's `tile.sizes`: how many parts (N tiles) it keeps of a row reduction. The count
# follows the N tile and shapes the grids that combine the parts, so a schedule that changes
# it is a new program (zhenwu_cc/fast_cost.py lowers such kernels in full).
ROW_PARTS = "row_parts"


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class OnlineMatch:
    """The values of one `sum(exp(x - shift))` over a matmul's result (module docstring)."""

    mm: zk.MatmulOp
    x: SSAValue
    mx: zk.ReduceMaxOp
    shift: tuple[Operation, ...]  # between the max and the subtraction (empty: the max itself)
    sub: zk.SubOp
    exp: zk.ExpOp
    total: zk.ReduceSumOp


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class OnlineGroup:
    """Every match over one `x` (`softmax(y)` and `log_softmax(y)` of one `y`): their parts
    are the same, so one grid computes them once."""

    matches: tuple[OnlineMatch, ...]

    @property
    def mm(self) -> zk.MatmulOp:
        return self.matches[0].mm

    @property
    def x(self) -> SSAValue:
        return self.matches[0].x

    @property
    def stores_x(self) -> bool:
        """Whether anything but the reductions reads `x` (then the grid stores it)."""
        readers = {id(op) for m in self.matches for op in (m.sub, m.mx)}
        return (any(id(u.operation) not in readers for u in self.x.uses)
                or any(not m.sub.result.has_one_use() or not m.exp.result.has_one_use()
                       for m in self.matches))

    def group(self) -> list[Operation]:
        """The ops the grid fuses (what `fuse NAME off` on any of them keeps apart)."""
        return [self.mm, *path_ops(self.x.owner, self.mm),
                *(op for m in self.matches
                  for op in (m.mx, *m.shift, m.sub, m.exp, m.total))]

    def honours_directives(self) -> bool:
        """Whether no directive asks for the unfused grids (module docstring)."""
        return not (any(attrs.TILE in op.attributes or split_parts(op) is not None
                        for m in self.matches for op in (m.mx, m.total))
                    or split_parts(self.mm) is not None or split_k_asked(self.x, self.mm))


def match_online(total: Operation) -> OnlineMatch | None:
    """The match `total` (a `zk.reduce_sum`) heads, or None."""
    found = exp_sum(total)
    if not (found is not None and reduces_last_axis(found.total) and reduces_last_axis(found.mx)
            and isinstance(found.x.owner, Operation)):
        return None
    x = found.x
    mm = zk.matmul_feeding(x.owner)
    if mm is None or shape_of(mm.result) != shape_of(x) or not exclusive(mm, x.owner):
        return None
    return OnlineMatch(mm, x, found.mx, found.shift, found.sub, found.exp, found.total)


class EpilogueReductions:
    """The matches of one kernel, grouped by `x` (found once per `tile` run): `grid_for` asks
    `match` of every value it builds, `Grid` asks `stores` of the values it would compute
    inline; a built group's parts are partials (`Grid._combine_partials` combines them)."""

    def __init__(self, block, fusion, row_budget: int):
        self.fusion = fusion
        self.row_budget = row_budget  # a stored `x`'s rows up to this long: see `match`
        by_x: dict[int, list[OnlineMatch]] = {}
        for op in block.ops:
            m = match_online(op)
            if m is not None:
                by_x.setdefault(id(m.x), []).append(m)
        self.by_op: dict[int, OnlineGroup] = {}
        for matches in by_x.values():
            g = OnlineGroup(tuple(matches))
            self.by_op[id(g.x.owner)] = g
            self.by_op.update((id(op), g) for m in matches for op in (m.mx, m.total))
        self.claimed: set[int] = set()  # ops a flash-attention grid computes (`claim`)
        self.allowed: dict[int, bool] = {}  # per group: whether the schedule lets it fuse

    def claim(self, ops) -> None:
        """`ops` are fused by a flash-attention grid, which keeps its own running max and sum."""
        self.claimed.update(id(op) for op in ops)

    def match(self, v: SSAValue) -> OnlineGroup | None:
        """The group whose grid computes `v` (its `x`, where stored, a max or a sum), if the
        schedule lets it (`fusion`: the `tile` pass's FuseControl). Not where `x` is stored
        anyway and its rows fit one tile: its readers then reduce each row they load, with no
        second pass over `x` to save."""
        g = self.by_op.get(id(v.owner))
        if (g is None or (v is g.x and not g.stores_x)
                or (g.stores_x and shape_of(g.x)[-1] <= self.row_budget)
                or any(id(m.total) in self.claimed for m in g.matches)):
            return None
        if id(g) not in self.allowed:  # asked once per group: `match` runs for every tile
            self.allowed[id(g)] = g.honours_directives() and self.fusion.allows_all(g.group())
        return g if self.allowed[id(g)] else None

    def stores(self, v: SSAValue) -> bool:
        """Whether `v` is an `x` its group's grid stores: consumers load it from there rather
        than compute it from the matmul's bare result."""
        g = self.match(v)
        return g is not None and v is g.x


def epilogue_grid(tiler, v: SSAValue, m: OnlineGroup) -> SSAValue:
    """Build the matmul grid that keeps the parts (and `x` where read elsewhere), register them
    with the tiler, and return `v`'s tensor."""
    directive = tiler.directive(m.x, m.mm)
    tm, tn, tk, _ = tiler.matmul_sizes(m.x, m.mm)
    multiple = tiler.k_multiple(m.mm)
    built = []

    def build(sizes):
        ops, result, grid = _build(tiler, m, *sizes)
        built[:] = [grid]
        return ops, result, grid

    tiler.fit(m.x, build, (tm, tn, tk), lambda sz: halve_matmul(sz, multiple), directive,
              "tile [M, N, K]")
    grid = built[0]
    *stored, maxima, sums = grid.res
    parts = maxima.type.get_shape()[0]
    for one in m.matches:  # combined where used (`Grid._combine_partials`)
        tiler.partials[one.mx] = (maxima, parts)
        tiler.partials[one.total] = (sums, parts)
        tiler.online[one.total] = maxima, bool(one.shift)
    if stored:
        stored[0].name_hint = m.x.name_hint
        tiler.materialized[m.x] = stored[0]
        if v is m.x:
            return stored[0]
    return tiler.elementwise_grid(v)


def _build(tiler, m: OnlineGroup, tm: int, tn: int, tk: int):
    shape = shape_of(m.x)
    last = len(shape) - 1
    loc = m.mm.location
    g, req = tiler.matrix_grid(m.x, shape, tm, tn, loc)
    acc = tiler.accumulate(g, m.mm, req, lambda kk: kk, k_steps(m.mm, tk), tk, loc)
    g.anchors[m.mm] = (req, acc)
    x = g.tile_of(m.x, req)
    scores = g.mask(x, req, last, -math.inf, loc) if shape[-1] % tn else x
    row_max = g.emit(zk.ReduceMaxOp(scores, [last], True), loc)
    e = g.emit(zk.ExpOp(g.emit(zk.SubOp(scores, g.finite(row_max, loc)), loc)), loc)
    row_sum = g.emit(zk.ReduceSumOp(e, [last], True), loc)
    parts = -(-shape[-1] // tn)
    rows = (*shape[:-1], 1)
    at = (req.idx[-1], *req.idx[:-1], g.zero)
    part_sizes = (1, *req.sizes[:-1], 1)
    first = m.matches[0]
    outs = [tiler.empty(first.mx.result, (parts, *rows), F32),
            tiler.empty(first.total.result, (parts, *rows), F32)]
    stores = [(g.emit(zk.ReshapeOp(row_max, part_sizes), loc), 0, at, None),
              (g.emit(zk.ReshapeOp(row_sum, part_sizes), loc), 1, at, None)]
    if m.stores_x:
        outs.insert(0, tiler.empty(m.x))
        stores = [(x, 0, req.idx, None)] + [(t, i + 1, at_, b) for t, i, at_, b in stores]
    grid = g.finish([o.result for o in outs], "matmul", g.counts, stores, tk)
    used = dict(grid.attributes[attrs.TILE_SIZES].data)  # the [M, N] tile, not a part's rows
    used["tile"] = DenseArrayBase.from_list(i64, list(req.sizes))
    used[ROW_PARTS] = IntegerAttr(parts, 64)
    grid.attributes[attrs.TILE_SIZES] = DictionaryAttr(used)
    grid.location = loc
    return [*outs, grid], grid.res[0], grid
