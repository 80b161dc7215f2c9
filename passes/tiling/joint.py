"""Fused operand chains in the `tile` pass: matmuls that share their left operand and are
combined elementwise (SwiGLU's `h = bf16(silu(x @ w1) * (x @ w3))`, found by
`fusion.joint_matmuls`) run as one grid with an accumulator each. The shared operand's tile is
loaded once per K step, and only the end of the elementwise chain is stored (`h`, which the down
projection loads): neither f32 product reaches HBM."""

from __future__ import annotations

from xdsl.ir import SSAValue
from zhenwu_cc.core import attrs
from zhenwu_cc.dialects import zk
from zhenwu_cc.passes.tiling.directives import disagree, record_directive, split_k_asked
from zhenwu_cc.passes.tiling.fusion import joint_matmuls, path_ops
from zhenwu_cc.passes.tiling.requests import shape_of
from zhenwu_cc.passes.tiling.sizes import halve_matmul, k_steps
from zhenwu_cc.passes.tiling.split import split_parts


def joint_of(tiler, v: SSAValue) -> list[zk.MatmulOp] | None:
    """The matmuls `v` combines in one grid, when no split K loop is asked for them and fusion
    may group them with every op of the chain up to where it stops (`fuse h off` on SwiGLU's
    `h` keeps the whole chain unfused)."""
    mms = joint_matmuls(v, tiler.partials, tiler.cones)
    if mms is None:
        return None
    if any(split_k_asked(v, mm) or split_parts(mm) is not None for mm in mms):
        return None  # each matmul keeps its own (split) grid
    top = _top(v, mms, tiler)
    group = [*mms, *{id(o): o for mm in mms for o in path_ops(top.owner, mm)}.values()]
    return mms if tiler.fusion.allows_all(group) else None


def joint_root(tiler, v: SSAValue) -> bool:
    """Whether `v` is where a joint matmul grid stops: grids that read `v` load it."""
    if v in tiler.materialized or joint_of(tiler, v) is None:
        return False
    return _top(v, joint_matmuls(v, tiler.partials, tiler.cones), tiler) is v


def _top(v: SSAValue, mms: list[zk.MatmulOp], tiler) -> SSAValue:
    """Where the elementwise chain that combines `mms` stops, from `v` upwards: through each
    value's single elementwise use that still combines the same matmuls."""
    while v.has_one_use():
        user = v.first_use.operation
        if not isinstance(user, zk.ELEMENTWISE_OPS) or joint_matmuls(
                user.results[0], tiler.partials, tiler.cones) != mms:
            break
        v = user.results[0]
    return v


def joint_grid(tiler, v: SSAValue, mms: list[zk.MatmulOp]) -> SSAValue:
    """The grid computing `v` from an accumulator per matmul of `mms`. Their `tile [M, N, K]`
    directives size it and must agree (ZK0618); else a per-dimension `tile` on `v` gives its
    output tile."""
    given = [(d, tiler.matmul_sizes(v, mm)[:3]) for mm in mms
             if (d := tiler.directive(v, mm)) is not None]
    if len({sizes for _, sizes in given}) > 1:
        first = given[0][0]
        raise disagree(first, given[1][0], "one grid computes both matmuls (they share an "
                       "operand and are combined elementwise), so their tiles are the same",
                       f"give both `{list(first.attributes[attrs.TILE].values)}`, or keep one "
                       "of the two directives")
    sizes = given[0][1] if given else tiler.matmul_sizes(v, mms[0])[:3]
    carrier = given[0][0] if given else tiler.directive(v)
    if not given and carrier is not None:
        tm, tn = carrier.attributes[attrs.TILE].values[-2:]
        sizes = (min(tm, shape_of(v)[-2]), min(tn, shape_of(v)[-1]), sizes[2])
    multiple = tiler.k_multiple(mms[0])
    out = tiler.fit(v, lambda sz: _build(tiler, v, mms, *sz), sizes,
                    lambda sz: halve_matmul(sz, multiple), carrier, "tile [M, N, K]")
    if len(given) > 1:
        record_directive(out.owner, carrier, given[1][0])
    return out


def _build(tiler, v: SSAValue, mms: list[zk.MatmulOp], tm: int, tn: int, tk: int):
    loc = v.owner.location
    g, req = tiler.matrix_grid(v, shape_of(v), tm, tn, loc)
    accs = tiler.accumulate_all(g, mms, req, lambda kk: kk, k_steps(mms[0], tk), tk, loc)
    for mm, acc in zip(mms, accs):
        g.anchors[mm] = (req, acc)
    return tiler.store_root(g, v, req, "matmul", tk, loc)
