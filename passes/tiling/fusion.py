"""Fusion policy of the `tile` pass: which values a matmul's grid computes on its
accumulator (its elementwise epilogue) rather than from its stored result. The rest of the
policy (what is inlined into consumer tiles, what is materialised) is described in
passes/tile.py and applied by `tiling.grids` and `tiling.kernel`."""

from __future__ import annotations

from xdsl.ir import Operation, SSAValue
from zhenwu_cc.dialects import zk


def matmul_grid_of(op: Operation, partials) -> zk.MatmulOp | None:
    """The matmul whose grid computes `op` (the matmul or its epilogue up to `op`), or None:
    a matmul fed only on the way to `op`, not split over K (`partials`)."""
    mm = zk.matmul_feeding(op)
    if mm is not None and mm not in partials and exclusive(mm, op):
        return mm
    return None


def has_own_grid(v: SSAValue, anchors, partials) -> bool:
    """Whether `v`, which carries a `tile [M, N, K]` directive, is computed by its matmul's
    grid (the epilogue up to `v` on the accumulator) and loaded by the grid holding
    `anchors`, rather than recomputed there from the matmul's bare result: the matmul is
    materialised anyway, so honouring the directive moves no more data. Not when that grid
    is the matmul's."""
    mm = zk.matmul_feeding(v.owner)
    if mm is None or mm is v.owner or mm in anchors:
        return False
    return mm not in partials and exclusive(mm, v.owner)


def exclusive(mm: zk.MatmulOp, root: Operation) -> bool:
    """The matmul's value, and every value between it and `root`, is used only on the way to
    `root`: then computing the epilogue on the accumulator serves every use."""
    if root is mm:
        return True
    path = path_ops(root, mm)
    inside = {id(op) for op in path}
    return all(id(use.operation) in inside
               for op in [mm, *path] if op is not root
               for use in op.results[0].uses)


def path_ops(root: Operation, mm: zk.MatmulOp) -> list[Operation]:
    """The elementwise ops on paths from `mm` to `root` (root included)."""
    out, stack, seen = [], [root], set()
    while stack:
        op = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        out.append(op)
        for operand in op.operands:
            owner = operand.owner
            if isinstance(owner, zk.ELEMENTWISE_OPS) and _reaches(owner, mm):
                stack.append(owner)
    return out


def _reaches(op: Operation, target: Operation) -> bool:
    stack, seen = [op], set()
    while stack:
        cur = stack.pop()
        if cur is target:
            return True
        if id(cur) in seen or not isinstance(cur, zk.ELEMENTWISE_OPS):
            continue
        seen.add(id(cur))
        stack.extend(o.owner for o in cur.operands if isinstance(o.owner, Operation))
    return False


def joint_matmuls(v: SSAValue, partials) -> list[zk.MatmulOp] | None:
    """The matmuls an elementwise `v` of their result shape combines, when there are two or
    more, they share their left operand and each is used only on the way to `v` (SwiGLU's
    `silu(x @ w1) * (x @ w3)`): one grid with an accumulator each computes `v`, loading the
    shared operand once per K step, and neither product reaches HBM. None otherwise."""
    op = v.owner
    found = zk.matmuls_feeding(op) if isinstance(op, Operation) else []
    if len(found) < 2:
        return None
    lhs = found[0].lhs
    if any(mm.lhs is not lhs or mm in partials or not exclusive(mm, op) for mm in found):
        return None
    block = op.parent_block()
    order = {id(o): i for i, o in enumerate(block.ops)} if block is not None else {}
    return sorted(found, key=lambda mm: order.get(id(mm), 0))
