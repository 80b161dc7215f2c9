"""Tile-size choice for the `tile` pass: the schedule's `tile` directive where there is one,
else a heuristic that fits the target's SRAM (whole rows for elementwise grids, a few rows and
long chunks for reductions, the largest matmul tiles that fit and a split of K that fills the
compute units); and how sizes shrink when a grid's buffers do not fit after all."""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import attrs
from zhenwu_cc.dialects import zk
from zhenwu_cc.passes.tiling.requests import shape_of
from zhenwu_cc.passes.tiling.scales import mma_dtype

DEFAULT_TK = 64
MIN_SPLIT_K_CHUNK = 256  # each split-K part reduces at least this many K elements
TILE_CHOICES = (256, 128, 64, 32, 16, 8, 4, 2, 1)


def tile_budget(target) -> int:
    """Elements one tile may hold: SRAM shared by ~8 live tiles of 4-byte values."""
    return pow2_floor(max(1024, target.sram_per_cu // (4 * 8)))


def grid_sizes(v: SSAValue, directive: Operation | None, budget: int) -> tuple[int, ...]:
    """Tile sizes for a grid over `v`: the `directive`'s, else whole rows that fit `budget`."""
    shape = shape_of(v)
    if directive is not None:
        return directed_sizes(directive.attributes[attrs.TILE].values, shape)
    if not shape:
        return ()
    sizes = [1] * len(shape)
    sizes[-1] = min(shape[-1], budget)
    if len(shape) >= 2:
        rows = max(1, budget // sizes[-1])
        sizes[-2] = min(shape[-2], pow2_floor(rows))
    return tuple(sizes)


def reduction_sizes(v: SSAValue, axis: int, keep: bool, directive: Operation | None
                    ) -> tuple[int, ...]:
    """Output tiles of a reduction grid: a few rows (or a run of columns when the reduced
    axis is not the last), leaving the tile budget to long chunks of the reduced axis."""
    shape = shape_of(v)
    if directive is not None:
        sizes = directive.attributes[attrs.TILE].values
        return tuple(min(s, d) for s, d in zip(sizes, shape))
    in_rank = len(shape) + (0 if keep else 1)
    kept = [d for d in range(in_rank) if d != axis]
    sizes = [1] * in_rank
    if kept:
        inner = kept[-1]
        sizes[inner] = min(shape_of(v.owner.input)[inner], 8 if axis == in_rank - 1 else 64)
    if not keep:
        del sizes[axis]
    return tuple(sizes)


def matmul_sizes(mm: zk.MatmulOp, carrier: Operation | None, target, buffers: int,
                 k_multiple: int) -> tuple[int, int, int, int]:
    """(tm, tn, tk, split) from the directive on `carrier`, or chosen to fit the target's SRAM
    (with `buffers` slots per operand tile, a K tile that is a multiple of `k_multiple`) and
    fill its compute units."""
    m, n = shape_of(mm.result)[-2:]
    k = shape_of(mm.lhs)[-1]
    if carrier is not None:
        attr = carrier.attributes[attrs.TILE]
        return (*directed_sizes(attr.values, (m, n, k)), attr.split_k.data)
    elem = max(mma_dtype(mm).nbytes(1), 1)
    tk = min(k, align_up([DEFAULT_TK], [k_multiple])[0])
    sram = target.sram_per_cu
    best = None
    for tm in TILE_CHOICES:
        for tn in TILE_CHOICES:
            tm_, tn_ = min(tm, _pow2_ceil(m)), min(tn, _pow2_ceil(n))
            need = (tm_ * tk + tk * tn_) * elem * buffers + tm_ * tn_ * 4 * 2
            if need <= sram and (best is None or tm_ * tn_ > best[0] * best[1]):
                best = (tm_, tn_)
    tm, tn = best or (16, 16)
    tm, tn = min(tm, m), min(tn, n)
    batch = math.prod(shape_of(mm.result)[:-2])
    tiles = batch * -(-m // tm) * -(-n // tn)
    split = 1
    cus = target.compute_units
    if tiles < cus and k >= 2 * MIN_SPLIT_K_CHUNK:
        split = split_k_parts(tiles, -(-k // tk), cus,
                              min(-(-cus // tiles), k // MIN_SPLIT_K_CHUNK))
    return tm, tn, tk, split


def split_k_parts(tiles: int, steps: int, cus: int, most: int) -> int:
    """The split-K parts (equal ones, at most `most`) that leave the busiest compute unit the
    fewest K steps: waves of tiles x steps per part; the fewest parts on a tie. A split that
    does not shorten that work only adds partial sums and their combine, as 128 tiles on 132
    units split in two would run 256 half-tiles in two waves."""
    def busiest(parts: int) -> int:
        return -(-tiles * parts // cus) * (steps // parts)
    return min((p for p in range(1, max(1, most) + 1) if steps % p == 0),
               key=lambda p: (busiest(p), p))


def equal_parts(mm: zk.MatmulOp, tk: int, split: int) -> int:
    """The split-K parts a matmul grid runs: equal ones, the largest divisor of its K steps
    not above `split` (the fast cost path derives them here too)."""
    return divisor_at_most(k_steps(mm, tk), split)


def directed_sizes(values: Sequence[int], dims: Sequence[int]) -> tuple[int, ...]:
    """A `tile` directive's sizes on dimensions `dims`: each at most its dimension."""
    return tuple(min(s, d) for s, d in zip(values, dims))


MIN_SPLIT_CHUNKS = 4  # each part of a split reduction loops over at least this many chunks


def reduction_split(tiles: int, trips: int, cus: int) -> int:
    """How many parts a reduction's chunks are split into so that `tiles` output tiles fill
    `cus` compute units (the same rule as split-K): equal parts of at least MIN_SPLIT_CHUNKS
    chunks each, 1 when the tiles already fill the units."""
    if tiles >= cus or trips < 2 * MIN_SPLIT_CHUNKS:
        return 1
    return divisor_at_most(trips, min(-(-cus // tiles), trips // MIN_SPLIT_CHUNKS))


def align_up(sizes: Sequence[int], need: Sequence[int]) -> tuple[int, ...]:
    """Each size rounded down to a multiple of its `need` (at least one multiple)."""
    return tuple(max(m, t - t % m) for t, m in zip(sizes, need))


def shrink_aligned(sizes: tuple[int, ...], need: Sequence[int]) -> tuple[int, ...] | None:
    """Halve the largest size that can shrink and stay a multiple of its `need`."""
    for d in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        half = align_up([-(-sizes[d] // 2)], [need[d]])[0]
        if half < sizes[d]:
            return sizes[:d] + (half,) + sizes[d + 1:]
    return None


def halve_largest(sizes: tuple[int, ...]) -> tuple[int, ...] | None:
    if max(sizes, default=1) <= 1:
        return None
    d = max(range(len(sizes)), key=lambda i: (sizes[i], -i))
    return tuple(-(-s // 2) if i == d else s for i, s in enumerate(sizes))


def halve_matmul(sizes: tuple[int, int, int], k_multiple: int = 1
                  ) -> tuple[int, int, int] | None:
    """Shrink output tiles first (down to 16), then the K step (down to 16, keeping it a
    multiple of `k_multiple`)."""
    tm, tn, tk = sizes
    if max(tm, tn) > 16:
        return (-(-tm // 2), tn, tk) if tm >= tn else (tm, -(-tn // 2), tk)
    if tk > 16 and -(-tk // 2) % k_multiple == 0:
        return tm, tn, -(-tk // 2)
    return None


def k_steps(mm: zk.MatmulOp, tk: int) -> int:
    return -(-shape_of(mm.lhs)[-1] // tk)


def divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n not above limit (split-K parts must be equal)."""
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def pow2_floor(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def _pow2_ceil(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


def parts_kept(shrink, extent: int, parts: int, multiple: int):
    """`shrink` for a grid split in `parts` equal runs of its last size's chunks (a split
    reduction's chunk, a split-K's K tile): the other sizes first; the last only to half a
    chunk that is still a multiple of `multiple` and still cuts `extent` into a multiple of
    `parts` chunks, so that no chunk is left out of every part."""
    others = keep_last(shrink)

    def step(sizes):
        smaller = others(sizes)
        if smaller is not None:
            return smaller
        half = sizes[-1] // 2
        if half >= multiple and half % multiple == 0 and -(-extent // half) % parts == 0:
            return (*sizes[:-1], half)
        return None
    return step


def keep_last(shrink):
    """`shrink` applied to all sizes but the last (a split grid's chunk or K tile, chosen so
    that its parts are equal), which it keeps."""
    def keep(sizes):
        smaller = shrink(sizes[:-1]) if len(sizes) > 1 else None
        return None if smaller is None else (*smaller, sizes[-1])
    return keep
