"""Tile arithmetic that tiling, lowering, the executor and the cost model share: the window a
tile load or store addresses, how many tiles cover it, and the bytes one tile holds.

Tile addressing (docs/design.md): a load of `tile [t0, t1]` at tile index `[i0, i1]` reads
element `src[base0 + i0*t0 + r0, base1 + i1*t1 + r1]` when `i*t + r < bound` in every dimension."""

from __future__ import annotations

from collections.abc import Sequence

from zhenwu_cc.core.shapes import prod
from zhenwu_cc.core.dtypes import DType


def window(src_shape: Sequence[int], base: Sequence[int] | None,
           bound: Sequence[int] | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (base, bound) a load or store addresses; defaults cover the whole tensor."""
    b = tuple(base) if base is not None else (0,) * len(src_shape)
    e = tuple(bound) if bound is not None else tuple(d - o for d, o in zip(src_shape, b))
    return b, e


def tile_counts(bound: Sequence[int], sizes: Sequence[int]) -> tuple[int, ...]:
    """How many tiles of `sizes` cover `bound` (the last ones may be partial)."""
    return tuple(-(-e // t) for e, t in zip(bound, sizes))


def tile_bytes(dtype: DType, sizes: Sequence[int]) -> int:
    """The bytes one tile of `sizes` elements of `dtype` takes (sub-byte formats packed)."""
    return dtype.nbytes(prod(sizes))
