"""Shape rules, shared by the dialects' verifiers, the front end's diagnostics and the runtime."""

from __future__ import annotations

from collections.abc import Sequence

Shape = tuple[int, ...]


def broadcast_shapes(*shapes: Sequence[int]) -> Shape | None:
    """numpy broadcasting of several shapes, or None if they are incompatible."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def matmul_shape(lhs: Sequence[int], rhs: Sequence[int]) -> Shape | None:
    """`@` on [..., M, K] and [..., K, N]: [broadcast(...), M, N], or None if they do not fit."""
    if len(lhs) < 2 or len(rhs) < 2 or lhs[-1] != rhs[-2]:
        return None
    batch = broadcast_shapes(lhs[:-2], rhs[:-2])
    return None if batch is None else (*batch, lhs[-2], rhs[-1])


def reduce_shape(shape: Sequence[int], axes: Sequence[int], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def normalize_axis(axis: int, rank: int) -> int | None:
    """A possibly negative axis as an index into a shape of `rank`, or None if out of range."""
    if -rank <= axis < rank:
        return axis % rank
    return None


def prod(shape: Sequence[int]) -> int:
    """The element count of `shape` (1 for rank 0)."""
    out = 1
    for d in shape:
        out *= d
    return out
