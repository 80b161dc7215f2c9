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


class MatmulCones:
    """The matmuls each elementwise op is computed from, through elementwise ops, memoised per
    tiling run: `joint_matmuls` is asked of every value a grid inlines, and a chain of
    thousands of ops must be walked once, not once per value."""

    def __init__(self):
        self._cones: dict[int, tuple[zk.MatmulOp, ...]] = {}
        self._order: dict[int, int] = {}

    def feeding(self, op: Operation) -> list[zk.MatmulOp]:
        """`zk.matmuls_feeding(op)`: the cone's matmuls of `op`'s result shape."""
        if not isinstance(op, zk.ELEMENTWISE_OPS):
            return []
        shape = op.results[0].type.get_shape()
        return [mm for mm in self._cone(op) if mm.result.type.get_shape() == shape]

    def _cone(self, root: Operation) -> tuple[zk.MatmulOp, ...]:
        stack = [(root, False)]  # operands first, without recursion (long chains)
        while stack:
            op, ready = stack.pop()
            if id(op) in self._cones:
                continue
            inner = [o.owner for o in op.operands if isinstance(o.owner, zk.ELEMENTWISE_OPS)]
            if not ready:
                stack.append((op, True))
                stack.extend((o, False) for o in inner if id(o) not in self._cones)
                continue
            found: dict[int, zk.MatmulOp] = {}
            for operand in op.operands:
                owner = operand.owner
                cone = ((owner,) if isinstance(owner, zk.MatmulOp) else
                        self._cones[id(owner)] if isinstance(owner, zk.ELEMENTWISE_OPS) else ())
                found.update((id(mm), mm) for mm in cone)
            self._cones[id(op)] = tuple(found.values())
        return self._cones[id(root)]

    def position(self, op: Operation) -> int:
        """`op`'s index in its block (matmuls are ordered as the source wrote them)."""
        if id(op) not in self._order:
            block = op.parent_block()
            self._order.update({id(o): i for i, o in enumerate(block.ops)} if block else
                               {id(op): 0})
        return self._order[id(op)]


def joint_matmuls(v: SSAValue, partials, cones: MatmulCones) -> list[zk.MatmulOp] | None:
    """The matmuls an elementwise `v` of their result shape combines, when there are two or
    more, they share their left operand and each is used only on the way to `v` (SwiGLU's
    `silu(x @ w1) * (x @ w3)`): one grid with an accumulator each computes `v`, loading the
    shared operand once per K step, and neither product reaches HBM. None otherwise."""
    op = v.owner
    found = cones.feeding(op) if isinstance(op, Operation) else []
    if len(found) < 2:
        return None
    lhs = found[0].lhs
    if any(mm.lhs is not lhs or mm in partials or not exclusive(mm, op) for mm in found):
        return None
    return sorted(found, key=cones.position)
