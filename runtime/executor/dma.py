"""Tile data movement of the executor: all tiles of one `ppu.dma_load` / `ppu.dma_store` at once.

A window (base, bound) of a global tensor cut into tiles of `sizes` is seen as a block array
`[n0, n1, ..., t0, t1, ...]` (tile index first, element within the tile last): a strided view of
the tensor when the tiles divide the window, else (loads) a copy padded with the pad value, or
(stores) a padded staging copy written back clipped. Tile indices are index values over the grid
(index.py). With affine indices, the tiles of every grid point are one strided view of
the block array — no copy at all for a load; otherwise a fancy-index gather or scatter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided
from xdsl.ir import Operation
from zhenwu_cc.core.tiling import tile_counts
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.runtime.executor.compute import broadcast_shapes
from zhenwu_cc.runtime.executor.index import Affine, Index

from zhenwu_cc.core.diagnostics import error


def window(x: np.ndarray, base: Sequence[int], bound: Sequence[int]) -> np.ndarray:
    """The window as a view (also of a rank-0 tensor, hence the Ellipsis)."""
    return x[(*(slice(b, b + e) for b, e in zip(base, bound)), Ellipsis)]


def _as_strided(x: np.ndarray, shape, strides, writeable: bool) -> np.ndarray:
    """`as_strided` that keeps ml_dtypes element types: numpy cannot rebuild some of them
    (float8_e5m2 reads as `<f1`) from the array interface, so the view goes through raw bytes."""
    raw = as_strided(x.view(f"V{x.itemsize}"), shape, strides, writeable=writeable)
    return raw.view(x.dtype)


def _divides(bound: Sequence[int], sizes: Sequence[int]) -> bool:
    return all(e % t == 0 for e, t in zip(bound, sizes))


def _blocks(win: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """`win` (whose shape the tiles divide) as a [n..., t...] view."""
    counts = tuple(e // t for e, t in zip(win.shape, sizes))
    strides = tuple(t * s for t, s in zip(sizes, win.strides)) + win.strides
    return _as_strided(win, counts + tuple(sizes), strides, win.flags.writeable)


def load_blocks(x: np.ndarray, base: Sequence[int], bound: Sequence[int], sizes: Sequence[int],
                pad: np.ndarray) -> tuple[np.ndarray, bool]:
    """The block array a load reads, and whether it is a copy (padded edge tiles)."""
    win = window(x, base, bound)
    if _divides(bound, sizes):
        return _blocks(win, sizes), False
    full = tuple(n * t for n, t in zip(tile_counts(bound, sizes), sizes))
    padded = np.empty(full, dtype=x.dtype)
    padded[tuple(slice(0, e) for e in bound)] = win
    for d, e in enumerate(bound):  # only the margins past the bound take the pad value
        padded[(slice(None),) * d + (slice(e, None),)] = pad
    return _blocks(padded, sizes), True


def check_tiles(op: Operation, indices: Sequence[Index], counts: Sequence[int],
                names: dict[int, str], context: str, offsets: dict[int, int]) -> None:
    """ZK0610 when a tile index lies outside [0, count) on any grid point (named by its grid
    indices: a row block's positions plus `offsets`, its first index along each axis)."""
    for d, (ix, n) in enumerate(zip(indices, counts)):
        v = ix.value
        if ix.affine is not None and _inside(ix.affine, v.shape, n):
            continue  # in bounds on every grid point, by its affine form alone
        bad = (v < 0) | (v >= n)
        if bad.any():
            at = np.argwhere(bad)[0] if v.ndim else ()
            where = ", ".join(f"{names.get(p - v.ndim, '?')}={c + offsets.get(p - v.ndim, 0)}"
                              for p, c in enumerate(at) if v.shape[p] > 1)
            point = f" at {where}" if where else ""
            raise error("ZK0610", f"`{op.name}` addresses tile {int(v[tuple(at)])} of dimension "
                        f"{d}, outside the {n} tile(s) of its window{point}{context}",
                        span_of(op), help="the tile indices or the grid of the lowered program "
                        "are wrong; report it with the IR (--emit ppu)")


@lru_cache(maxsize=4096)
def _inside(affine: Affine, shape: tuple[int, ...], n: int) -> bool:
    """Whether an index of this affine form, over grid points of this shape, lies in [0, n)
    (asked of the same few forms every loop step and row block)."""
    ix = Index(np.empty(shape, np.int64), affine)
    return 0 <= _low(ix) and _high(ix) < n


def _low(ix: Index) -> int:
    """The least value of an affine index over the grid points it spans."""
    v = ix.value
    return ix.affine.const + sum(min(0, c * (v.shape[v.ndim + a] - 1))
                                 for a, c in ix.affine.coefs if v.ndim + a >= 0)


def _high(ix: Index) -> int:
    v = ix.value
    return ix.affine.const + sum(max(0, c * (v.shape[v.ndim + a] - 1))
                                 for a, c in ix.affine.coefs if v.ndim + a >= 0)


def index_shape(indices: Sequence[Index], naxes: int) -> tuple[int, ...]:
    return broadcast_shapes(*(ix.value.shape for ix in indices), (1,) * naxes)


def _strided(blocks: np.ndarray, indices: Sequence[Index], shape: tuple[int, ...],
             writeable: bool) -> np.ndarray:
    """The tiles at affine `indices` over the grid `shape`: a view of `blocks`."""
    rank = len(indices)
    origin = blocks[(*(ix.affine.const for ix in indices), Ellipsis)]
    strides = _grid_strides(tuple(ix.affine.coefs for ix in indices), blocks.strides, shape)
    assert origin.ndim == blocks.ndim - rank
    return _as_strided(origin, shape + origin.shape, strides + origin.strides, writeable)


@lru_cache(maxsize=4096)
def _grid_strides(coefs: tuple[tuple[tuple[int, int], ...], ...], strides: tuple[int, ...],
                  shape: tuple[int, ...]) -> tuple[int, ...]:
    """The byte step along each grid axis of `shape` of tiles at affine indices with these
    coefficients (one per block axis of `strides`): asked again every loop step."""
    steps = []
    for p, n in enumerate(shape):
        axis = p - len(shape)
        step = sum(dict(c).get(axis, 0) * strides[d] for d, c in enumerate(coefs))
        steps.append(step if n > 1 else 0)
    return tuple(steps)


def _affine(indices: Sequence[Index]) -> bool:
    return all(ix.affine is not None for ix in indices)


def gather(blocks: np.ndarray, indices: Sequence[Index], naxes: int) -> np.ndarray:
    """Tiles at `indices` for every grid point: shape index_shape(...) + tile shape."""
    shape = index_shape(indices, naxes)
    if _affine(indices):
        return _strided(blocks, indices, shape, writeable=False)
    tiles = blocks[tuple(ix.value for ix in indices)]
    return tiles.reshape(shape + tiles.shape[tiles.ndim - (blocks.ndim - len(indices)):])


def _raw(x: np.ndarray) -> np.ndarray:
    """The same bytes as unsigned integers: numpy copies those at memory speed, while an
    ml_dtypes element type goes through its per-element copy function."""
    return x.view(f"u{x.itemsize}") if x.itemsize in (1, 2, 4, 8) else x


def _scatter(blocks: np.ndarray, indices: Sequence[Index], grid: tuple[int, ...],
             value: np.ndarray) -> None:
    if _affine(indices):
        view = _strided(blocks, indices, grid, writeable=True)
        if value.dtype == view.dtype:
            view, value = _raw(view), _raw(value)
        view[...] = value
    else:
        blocks[tuple(np.broadcast_to(ix.value, grid) for ix in indices)] = value


def store_view(x: np.ndarray, base: Sequence[int], bound: Sequence[int], sizes: Sequence[int],
               indices: Sequence[Index], naxes: int) -> np.ndarray | None:
    """The tiles a store at `indices` writes, as a writeable view of `x` ([grid..., tile...]);
    None where the store goes through a staging copy (edge tiles) or a scatter."""
    if not _divides(bound, sizes) or not _affine(indices):
        return None
    return _strided(_blocks(window(x, base, bound), sizes), indices,
                    index_shape(indices, naxes), writeable=True)


def store(x: np.ndarray, base: Sequence[int], bound: Sequence[int], sizes: Sequence[int],
          indices: Sequence[Index], value: np.ndarray, naxes: int) -> None:
    """Write the tiles `value` ([grid..., tile...]) at `indices` of `x`'s window, clipped."""
    grid = broadcast_shapes(index_shape(indices, naxes), value.shape[:naxes])
    win = window(x, base, bound)
    if _divides(bound, sizes):
        _scatter(_blocks(win, sizes), indices, grid, value)
        return
    lows = [int(ix.value.min()) for ix in indices]
    if any(lows) or any(int(ix.value.max()) + 1 < n
                        for ix, n in zip(indices, tile_counts(bound, sizes))):
        # stage only the tiles this row block writes (indices shifted to start at 0)
        highs = [int(ix.value.max()) + 1 for ix in indices]
        base = tuple(b + lo * t for b, lo, t in zip(base, lows, sizes))
        bound = tuple(min(e - lo * t, (hi - lo) * t)
                      for e, lo, hi, t in zip(bound, lows, highs, sizes))
        indices = [_shifted(ix, -lo) for ix, lo in zip(indices, lows)]
        win = window(x, base, bound)
        if _divides(bound, sizes):
            _scatter(_blocks(win, sizes), indices, grid, value)
            return
    counts = tile_counts(bound, sizes)
    staging = np.empty(tuple(n * t for n, t in zip(counts, sizes)), dtype=x.dtype)
    inner = tuple(slice(0, e) for e in bound)
    if not _covers(indices, grid, counts):
        staging[inner] = win  # keep what the tiles this store misses hold
    _scatter(_blocks(staging, sizes), indices, grid, value)
    win[...] = staging[inner]


def _shifted(ix: Index, by: int) -> Index:
    """`ix` + `by` (a constant), keeping its affine form."""
    affine = None if ix.affine is None else Affine(ix.affine.const + by, ix.affine.coefs)
    return Index(ix.value + by, affine)


def _covers(indices: Sequence[Index], grid: tuple[int, ...], counts: Sequence[int]) -> bool:
    """Whether the grid's tiles together write every tile of the window."""
    if math.prod(grid) < math.prod(counts):
        return False
    flat = np.ravel_multi_index(tuple(np.broadcast_to(ix.value, grid) for ix in indices), counts)
    return np.unique(flat).size == math.prod(counts)
