"""Online max + sum in the `tile` pass: a split softmax's two statistics in one pass over x.

`decompose` leaves softmax as `e = exp(x - max(x))`, `y = e / sum(e)`. When the reduced axis is
split across compute units (`Grid.combine_partials`), the max and the sum would each be a grid
reading all of x, the sum's after the max's has finished. Instead one grid keeps, per part, a
running max m and a running sum s rescaled whenever m grows (s·exp(m_old − m_new) +
Σ exp(x − m_new), the online softmax of flash.py) and stores both partials; a consumer combines
them, M = max_p m_p and S = Σ_p s_p·exp(m_p − M) (`online` names the maxima a sum's partials are
relative to). One read of x instead of two.

The match is on the dataflow, never on a name (`decompose.exp_sum`): `sum(exp(a - max(a)))` over
one kept axis of the same f32 value `a`, the max split in as many parts as the sum would be.
`--no-fuse` and `fuse NAME off` on any of its ops or on the sum's users (the softmax's division,
which `decompose` gives the softmax binding's directives) keep the two grids. The sum's terms are
shifted by each part's running max and rescaled, so S differs from the two-pass sum in its
last bits; special values follow the reference: a row of all -inf, or one holding +inf or NaN,
gives NaN."""

from __future__ import annotations

import math

from xdsl.dialects import arith
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.passes.decompose import exp_sum, exp_sums_of
from zhenwu_cc.passes.tiling.grids import F32
from zhenwu_cc.passes.tiling.requests import Req, shape_of
from zhenwu_cc.passes.tiling.split import split_parts


def online_grid(tiler, v: SSAValue, op: Operation, sizes: tuple[int, ...], split: int,
                shrink) -> SSAValue | None:
    """`v`, the result of the split reduction `op`, when it is a max or a sum of a pair that
    one grid computes (built here, or by the max's grid when the sum's is asked for first);
    None for any other reduction. Both become partials, the sum's relative to the maxima."""
    if op in tiler.partials:  # the max's grid computed it
        return tiler.elementwise_grid(v)
    m_op = online_max(tiler, op)
    if m_op is not None:
        tiler.ensure(m_op.results[0])
        return tiler.elementwise_grid(v) if op in tiler.partials else None
    s_op = online_sum(tiler, op)
    if s_op is None:
        return None
    built = []

    def build(sizes):
        ops, result, grid = build_online(tiler, v, op, s_op, sizes[:-1], sizes[-1], split)
        built[:] = [grid]
        return ops, result, grid

    maxima = tiler.fit(v, build, sizes, shrink, tiler.directive(v), "tile (and reduction chunk)")
    grid = built[0]
    tiler.partials[op] = maxima, split
    tiler.partials[s_op] = grid.res[1], split
    tiler.online[s_op] = maxima, False  # the softmax's shift is its plain max
    tiler.splits.record(grid, op)
    tiler.splits.record(grid, s_op)
    return tiler.elementwise_grid(v)


def online_sum(tiler, m_op: Operation) -> zk.ReduceSumOp | None:
    """The `sum(exp(a - m))` to compute with `m_op` (a kept-axis max of `a`) in one grid, if
    any: a sum over the same axis that no grid has computed yet and that the schedule splits as
    it splits the max (both, or neither, by `split`)."""
    if not isinstance(m_op, zk.ReduceMaxOp) or m_op.keepdims is None:
        return None
    if m_op.input.type.element_type != F32 or len(m_op.axis_list) != 1:
        return None
    for found in exp_sums_of(m_op):
        s_op = found.total
        if (s_op.keepdims is not None
                and s_op not in tiler.partials and s_op.result not in tiler.materialized
                and split_parts(s_op) == split_parts(m_op)
                and tiler.fusion.allows_all([m_op, found.sub, found.exp, s_op, *(
                    u.operation for u in s_op.results[0].uses)])):
            return s_op
    return None


def online_max(tiler, s_op: Operation) -> zk.ReduceMaxOp | None:
    """The max whose grid is to compute `s_op` (a `sum(exp(a - max(a)))`) with it, when the
    sum's grid is asked for first (the max not yet built)."""
    found = exp_sum(s_op)
    if found is None or found.shift:
        return None
    m_op = found.mx
    if m_op in tiler.partials or m_op.results[0] in tiler.materialized:
        return None
    return m_op if online_sum(tiler, m_op) is s_op else None


def build_online(tiler, v: SSAValue, m_op: zk.ReduceMaxOp, s_op: zk.ReduceSumOp,
                 out_sizes, chunk: int, split: int):
    """The grid over (parts, kept tiles) whose loop keeps the running max and rescaled sum of
    its part's chunks; its outs are the partial maxima and the partial sums, [split, *out]."""
    axis = m_op.axis_list[0]
    in_shape = shape_of(m_op.input)
    out_shape = shape_of(v)
    trips = -(-in_shape[axis] // chunk) // split
    loc = m_op.location
    g = tiler.new_grid(len(out_shape) + 1, loc, v)
    counts = tile.tile_counts(out_shape, out_sizes)
    part, *out_idx = g.index_args
    first = g.emit(arith.MuliOp(part, g.index_const(trips, g.scopes[0])), loc)
    row = TensorType(F32, list(out_sizes))
    init_m = g.emit(zk.ConstantOp(-math.inf, row), loc)
    init_s = g.emit(zk.ConstantOp(0.0, row), loc)

    def body(k, accs):
        m_run, s_run = accs
        at = g.emit(arith.AddiOp(first, k), loc)
        idx = tuple(at if d == axis else out_idx[d] for d in range(len(in_shape)))
        sizes = tuple(chunk if d == axis else out_sizes[d] for d in range(len(in_shape)))
        req = Req(idx, sizes, (0,) * len(in_shape), in_shape, -math.inf)
        x = g.tile_of(m_op.input, req, loc)
        if req.ragged(axis) and not isinstance(x.owner, tile.LoadOp):
            x = g.mask(x, req, axis, -math.inf, loc)
        m_new, _, _, s_new = g.online_step(x, m_run, s_run, axis, loc)
        return [m_new, s_new]

    m_fin, s_fin = g.loop(trips, [init_m, init_s], body, loc)
    outs = [tiler.empty(v, (split, *out_shape)), tiler.empty(s_op.results[0], (split, *out_shape))]
    stores = [(g.emit(zk.ReshapeOp(t, (1, *out_sizes)), loc), i, (part, *out_idx), None)
              for i, t in enumerate((m_fin, s_fin))]
    grid = g.finish([o.result for o in outs], "reduction", (split, *counts), stores, chunk, split)
    grid.location = loc
    return [*outs, grid], grid.res[0], grid
