"""SRAM planning arithmetic for one `tile.grid` body, shared by `tile` and `alloc-sram`.

`tile` plans each candidate grid to shrink tiles until they fit; `alloc-sram` plans the final
grids and records the result. Neither pass owns the arithmetic, so it lives here and both
import it (a later pass is never imported by an earlier one).

The ops of a grid body are numbered in program order and each value gets a live interval;
values that may overwrite one another in place are merged into one buffer; the buffers are then
placed by a linear scan (first fit at `alignment`-byte offsets), reusing the bytes of dead ones.

Liveness: a value lives from its definition to its last use. A use inside a `tile.loop` of a value
defined outside it keeps the value live to the end of that loop (every step reads it). A
multi-buffered load lives for its whole loop: the DMA of step k+1 fills another slot while step k
computes. A grid without a loop that runs more tiles than the compute units (each CU runs
several in turn) multi-buffers its loads across those tiles (`across`): the DMA of a CU's next
tile fills another slot while this one computes, so such a load lives for the whole body. A
loop's iter arg is defined where the loop starts, its result where the body ends.

In place: an elementwise op may write over an operand of its own type that it reads last, a
`tile.mma` over its accumulator, a loop's iter arg over its init and its result over the value
yielded for it. The iter arg and the result always share a buffer (the accumulator); the init and
the yielded value join it where their lifetimes allow, and `lower-ppu` copies where they do not.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass

from xdsl.dialects.builtin import TensorType
from xdsl.ir import BlockArgument, Operation, SSAValue
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.core.tiling import tile_bytes
from zhenwu_cc.dialects.tile import root_of

DEFAULT_BUFFERS = 2  # double buffering, unless the schedule says `buffers N`


def value_bytes(value: SSAValue) -> int:
    """The bytes of the tile value `value` (tensor-typed)."""
    t = value.type
    assert isinstance(t, TensorType)
    return tile_bytes(dtypes.from_xdsl(t.element_type), t.get_shape())


def _loops_around(op: Operation) -> list[tile.LoopOp]:
    """The tile.loops enclosing `op`, innermost first, up to its grid."""
    loops = []
    parent = op.parent_op()
    while isinstance(parent, tile.LoopOp):
        loops.append(parent)
        parent = parent.parent_op()
    return loops


def _writes_in_place(x: SSAValue, y: SSAValue) -> bool:
    """May `y` be written over `x` by the op that defines `y`, which reads `x` for the last time?"""
    if isinstance(y, BlockArgument):
        loop = y.owner.parent_op()
        return isinstance(loop, tile.LoopOp) and loop.inits[y.index - 1] == x
    op = y.owner
    if isinstance(op, tile.LoopOp):
        return root_of(op.body.block.last_op.operands[y.index]) == x
    if isinstance(op, tile.MmaOp):
        return root_of(op.acc) == x
    return (isinstance(op, zk.ELEMENTWISE_OPS) and x.type == y.type
            and any(root_of(o) == x for o in op.operands))


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class _Value:
    """A tile value's SRAM needs: its live range, size and buffer depth."""

    value: SSAValue
    order: int  # position in program order, for deterministic choices
    start: int
    end: int
    nbytes: int
    depth: int

    def fits_with(self, other: _Value) -> bool:
        if self.end < other.start or other.end < self.start:
            return True
        early = (self.start, self.end) <= (other.start, other.end)
        first, second = (self, other) if early else (other, self)
        return first.end == second.start and _writes_in_place(first.value, second.value)


class Buffer:
    """Values that share one SRAM buffer, one after another: sorted by start, their ends ascend
    too, so the few whose lives meet a given interval are found by bisection."""

    def __init__(self, value: _Value):
        self.values = [value]
        self.first = value  # the earliest in program order: it names the buffer
        self.start, self.end = value.start, value.end
        self.offset = 0

    def meeting(self, v: _Value) -> list[_Value]:
        """The values whose lives overlap or touch v's."""
        lo = bisect_left(self.values, v.start, key=lambda x: x.end)
        return self.values[lo:bisect_right(self.values, v.end, key=lambda x: x.start)]

    def absorb(self, other: Buffer) -> None:
        for v in other.values:
            insort(self.values, v, key=lambda x: (x.start, x.end))
        self.first = min(self.first, other.first, key=lambda v: v.order)
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)

    @property
    def nbytes(self) -> int:
        return self.first.nbytes * self.first.depth


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class GridPlan:
    """The buffers of one grid, placed, and the SRAM they need."""

    buffers: list[Buffer]
    peak: int
    of: dict[SSAValue, Buffer]  # every tile value (root) of the body -> its buffer


class _Planner:
    def __init__(self, grid: tile.GridOp, buffers: int, alignment: int, across: bool = False):
        self.buffers = buffers
        self.alignment = alignment
        self.across = across
        self.ops = list(grid.body.walk())
        self.index = {op: i for i, op in enumerate(self.ops)}
        self.of: dict[SSAValue, Buffer] = {}

    def end_of(self, loop: tile.LoopOp) -> int:
        return self.index[loop.body.block.last_op]

    def live(self, value: SSAValue, order: int) -> _Value:
        """The interval and size of a tile value (a root: no reshape)."""
        if isinstance(value, BlockArgument):
            loop = value.owner.parent_op()
            assert isinstance(loop, tile.LoopOp)
            start, holders = self.index[loop], [loop, *_loops_around(loop)]
        elif isinstance(value.owner, tile.LoopOp):
            start, holders = self.end_of(value.owner), _loops_around(value.owner)
        else:
            start, holders = self.index[value.owner], _loops_around(value.owner)
        end, depth = start, 1
        if isinstance(value.owner, tile.LoadOp) and holders and self.buffers > 1:
            depth = self.buffers
            start, end = self.index[holders[0]], self.end_of(holders[0])
        elif isinstance(value.owner, tile.LoadOp) and self.across and self.buffers > 1:
            depth = self.buffers
            start, end = 0, len(self.ops) - 1
        for user in self._users(value):
            at = self.index[user]
            for loop in _loops_around(user):
                if loop not in holders:
                    at = max(at, self.end_of(loop))
            end = max(end, at)
        return _Value(value, order, start, end, value_bytes(value), depth)

    def _users(self, value: SSAValue) -> list[Operation]:
        users = []
        for use in value.uses:
            if isinstance(use.operation, zk.ReshapeOp):
                users += self._users(use.operation.result)
            users.append(use.operation)
        return users

    def new(self, value: SSAValue) -> None:
        self.of[value] = Buffer(self.live(value, len(self.of)))

    def union(self, a: SSAValue, b: SSAValue) -> bool:
        """Merge the buffers of a and b if their values fit one after another."""
        if b not in self.of:  # defined outside the grid: not a tile of this body
            return False
        ba, bb = self.of[a], self.of[b]
        if ba is bb:
            return True
        va, vb = ba.first, bb.first
        if (a.type, va.depth) != (b.type, vb.depth) or va.depth > 1:
            return False
        small, big = sorted((ba, bb), key=lambda buf: len(buf.values))
        if not all(x.fits_with(y) for y in small.values for x in big.meeting(y)):
            return False
        big.absorb(small)
        for v in small.values:
            self.of[v.value] = big
        return True

    def candidates(self, op: Operation, value: SSAValue) -> list[SSAValue]:
        """Buffers `value` would best share: the accumulator it is yielded into, then operands
        it may overwrite in place."""
        out = [use.operation.parent_op().res[use.index] for use in value.uses
               if isinstance(use.operation, tile.YieldOp)
               and isinstance(use.operation.parent_op(), tile.LoopOp)]
        if isinstance(op, tile.MmaOp):
            out.append(root_of(op.acc))
        elif isinstance(op, zk.ELEMENTWISE_OPS):
            out += [root_of(o) for o in op.operands if o.type == value.type]
        return list(dict.fromkeys(out))

    def plan(self) -> GridPlan:
        for op in self.ops:
            if isinstance(op, tile.LoopOp):
                for arg, res, init in zip(op.iter_args, op.res, op.inits):
                    self.new(arg)
                    self.new(res)
                    joined = self.union(arg, res)
                    assert joined, "a loop's iter arg and result always fit one buffer"
                    self.union(arg, root_of(init))
            elif not isinstance(op, zk.ReshapeOp):
                for value in op.results:
                    if isinstance(value.type, TensorType):
                        self.new(value)
                        for other in self.candidates(op, value):
                            if self.union(value, other):
                                break
        buffers = sorted({id(b): b for b in self.of.values()}.values(),
                         key=lambda b: (b.start, b.first.order))
        return GridPlan(buffers, self.place(buffers), dict(self.of))

    def place(self, buffers: list[Buffer]) -> int:
        return place_buffers(buffers, self.alignment)


def place_buffers(buffers, alignment: int) -> int:
    """Linear scan (buffers come in order of first definition), first fit; sets each buffer's
    `offset` and returns the peak in bytes. Buffers need `start`, `end`, `nbytes` and `offset`
    (the fast cost path places buffers of other sizes with it, zhenwu_cc/fast_cost.py)."""
    active = []
    peak = 0
    for buf in buffers:
        active = sorted((a for a in active if a.end >= buf.start), key=lambda a: a.offset)
        offset = 0
        for a in active:
            if offset + buf.nbytes <= a.offset:
                break
            offset = max(offset, -(-(a.offset + a.nbytes) // alignment) * alignment)
        buf.offset = offset
        active.append(buf)
        peak = max(peak, offset + buf.nbytes)
    return peak


def plan_grid(grid: tile.GridOp, buffers: int = DEFAULT_BUFFERS, alignment: int = 128,
              across: bool = False) -> GridPlan:
    """Decide the SRAM buffers of one grid body (without recording them); `across`: its loads
    are multi-buffered across the tiles a CU runs in turn (see `runs_in_turn`)."""
    return _Planner(grid, buffers, alignment, across).plan()


def runs_in_turn(grid: tile.GridOp, cus: int) -> bool:
    """Whether a loop-less grid gives some compute unit several tiles to run one after another:
    then its loads can fetch a CU's next tile while the current one computes."""
    if math.prod(grid.grid_shape) <= cus:
        return False
    return not any(isinstance(op, tile.LoopOp) for op in grid.body.walk())


