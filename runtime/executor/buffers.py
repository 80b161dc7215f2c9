"""SRAM buffers of the executor: what each allocation holds for every tile of a launch grid.

An allocation keeps, per slot, one array `[grid..., tile...]` (size-1 grid axes where the
contents do not depend on that grid index), or None before anything wrote it. Alongside it
keeps on which grid points each slot has been written (a bool array over the grid: the slot a
tile reads may be chosen per tile) for the uninitialised-read check, and whether the array is
the executor's own — fresh, seen by no other buffer or tensor — so the next vector op may
compute into it in place instead of allocating. A `Ref` is an SSA buffer value: the allocation,
the `ppu.slot` index that picked a slot, and the shape a `ppu.view` gives the same bytes.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.index import Index


_NO, _YES = np.zeros((), np.bool_), np.ones((), np.bool_)  # never changed in place
_FIRST = ((0, None),)  # the parts of a buffer read or written without a slot index
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layout(op: ppu.AllocOp) -> tuple:
    """What the IR says of an allocation (read once: a launch allocates it every row block, a
    loop every step)."""
    found = _LAYOUTS.get(op)
    if found is None:
        shape = tuple(op.result.type.get_shape())
        depth = op.slots
        found = _LAYOUTS[op] = (depth, shape, dtypes.from_xdsl(op.result.type.element_type),
                                shape[1:] if depth > 1 else shape)
    return found


class Alloc:
    """One SRAM allocation over the grid: per slot, an array [grid..., tile...] or None (never
    written), whether the executor may overwrite that array in place (no one else sees it), and
    on which grid points the slot has been written."""

    def __init__(self, op: ppu.AllocOp, r: int, spare: list[np.ndarray | None] | None = None):
        self.op, self.r = op, r
        self.depth, self.shape, self.dtype, self.tile = _layout(op)
        self.values: list[np.ndarray | None] = [None] * self.depth
        self.owned = [False] * self.depth
        self.written = [_NO] * self.depth
        # arrays the same allocation owned in the previous row block, free to be overwritten
        self.spare = spare if spare is not None else [None] * self.depth

    def leftovers(self) -> list[np.ndarray | None]:
        """The arrays this allocation owns, for the next row block's to reuse."""
        return [v if own else s for v, own, s in zip(self.values, self.owned, self.spare)]

    def scratch(self, index: Index | None, shape: tuple[int, ...], dtype: np.dtype
                ) -> np.ndarray | None:
        """An array of `shape` and `dtype` that a write through `index` may compute into: the
        slot's own array, or the one it owned in the previous row block; None if neither fits."""
        if index is None and self.depth > 1:
            return None
        parts = self.parts(index)
        if len(parts) != 1:
            return None
        k = parts[0][0]
        for candidate in ((self.values[k] if self.owned[k] else None), self.spare[k]):
            if (candidate is not None and candidate.dtype == dtype
                    and candidate.size == math.prod(shape)):
                return candidate.reshape(shape)
        return None

    def parts(self, index: Index | None) -> Sequence[tuple[int, np.ndarray | None]]:
        """(slot, grid points choosing it or None for all) that a slot index selects."""
        if index is None:
            return _FIRST
        s = np.mod(index.value, self.depth)
        if s.size == 1:
            return [(int(s.reshape(-1)[0]), None)]
        return [(int(k), s == k) for k in np.unique(s)]

    def unwritten(self, index: Index | None) -> int | None:
        """A slot read through `index` on some grid point that never wrote it, if any."""
        if index is None and self.depth == 1 and self.written[0] is _YES:
            return None  # the common case, asked of every read
        for k, choose in self._all_parts(index):
            if self.written[k] is _YES:
                continue
            if not (self.written[k] if choose is None else self.written[k] | ~choose).all():
                return k
        return None

    def _all_parts(self, index):
        if index is None and self.depth > 1:
            return [(k, None) for k in range(self.depth)]
        return self.parts(index)

    def _value(self, k: int) -> np.ndarray:
        v = self.values[k]
        return v if v is not None else np.zeros((1,) * self.r + self.tile, self.dtype.np_dtype)

    def _grid(self, choose: np.ndarray) -> np.ndarray:
        return choose.reshape((1,) * (self.r - choose.ndim) + choose.shape
                              + (1,) * len(self.tile))

    def read(self, index: Index | None) -> tuple[np.ndarray, bool]:
        """The contents seen through `index`, and whether that array is owned."""
        if index is None and self.depth == 1 and self.values[0] is not None:
            return self.values[0], self.owned[0]  # the common case
        if index is None and self.depth > 1:
            slots = np.broadcast_arrays(*(self._value(k) for k in range(self.depth)))
            return np.stack(slots, axis=self.r), False
        (k, _), *rest = parts = self.parts(index)
        out = self._value(k)
        for k2, choose in rest:
            out = np.where(self._grid(choose), self._value(k2), out)
        return out, len(parts) == 1 and self.owned[k]

    def put(self, k: int, value: np.ndarray, owned: bool = False) -> None:
        if owned and self.spare[k] is not None and np.may_share_memory(value, self.spare[k]):
            self.spare[k] = None  # taken
        self.values[k], self.owned[k], self.written[k] = value, owned, _YES

    def write(self, index: Index | None, value: np.ndarray, owned: bool) -> None:
        if index is None and self.depth > 1:
            for k in range(self.depth):
                self.put(k, value[(slice(None),) * self.r + (k,)])
            return
        parts = self.parts(index)
        if len(parts) == 1:
            self.put(parts[0][0], value, owned)
            return
        for k, choose in parts:
            old = self.values[k]
            self.values[k] = value if old is None else np.where(self._grid(choose), value, old)
            self.owned[k] = False
            self.written[k] = self.written[k] | choose

    def snapshot(self) -> list[np.ndarray | None]:
        """A copy of every slot's contents, for `restore`."""
        return [None if v is None else v.copy() for v in self.values]

    def restore(self, runs: np.ndarray, old: list[np.ndarray | None]) -> None:
        """Give the grid points where `runs` is false their `snapshot` contents back (a loop
        step that should not have run there, window.py)."""
        for k, before in enumerate(old):
            now = self.values[k]
            if before is None or now is None:
                continue
            where = self._grid(runs)
            if self.owned[k] and now.shape == np.broadcast_shapes(now.shape, before.shape,
                                                                  where.shape):
                np.copyto(now, before, where=~where)  # in place: no third copy
                continue
            self.values[k] = np.where(where, now, before)
            self.owned[k] = True

    def disown(self, index: Index | None) -> None:
        for k, _ in self._all_parts(index):
            self.owned[k] = False


@dataclass(frozen=True)
class Ref:
    """An SRAM buffer value: an allocation, the slot index when it came from `ppu.slot`, and the
    shape it is seen with (a `ppu.view` reshapes the same bytes)."""

    alloc: Alloc
    index: Index | None
    shape: tuple[int, ...]

    @property
    def stored_shape(self) -> tuple[int, ...]:
        a = self.alloc
        return a.tile if self.index is not None or a.depth == 1 else (a.depth, *a.tile)

    def read(self) -> tuple[np.ndarray, bool]:
        value, owned = self.alloc.read(self.index)
        r = self.alloc.r
        return value.reshape(value.shape[:r] + self.shape), owned

    def scratch(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """An array of `shape` ([grid..., this view's shape]) a write may compute into."""
        r = self.alloc.r
        if shape[r:] != self.shape:
            return None
        found = self.alloc.scratch(self.index, shape[:r] + self.stored_shape, dtype)
        return None if found is None else found.reshape(shape)

    def write(self, value: np.ndarray, owned: bool) -> None:
        r = self.alloc.r
        if value.shape[r:] != self.shape:
            value, owned = np.broadcast_to(value, value.shape[:r] + self.shape), False
        self.alloc.write(self.index, value.reshape(value.shape[:r] + self.stored_shape), owned)
