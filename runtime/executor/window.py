"""Loops that skip steps (`loop.live_steps`): which grid points run a step, and the state a step
must leave unchanged where it does not run.

The executor runs every grid point of a row block at once. A step that runs nowhere is not run
at all, one that runs everywhere is run as usual. A step that runs on a contiguous range of the
live axis (a causal mask's query tiles from the diagonal on, a sliding window's band) runs on
that range alone (`Narrowed`): the index values and buffers the body reads are cut to it, and
what the step leaves in the buffers it found is written back into those rows, the other rows
keeping their contents. Each tile's numbers are the ones the whole grid would give (the same
vector operations; products batched the same way, with fewer rows). Any other partial step is
run for every point and then undone where it should not have run: the buffers the loop carries
(read in a step before that step writes them, or read after the loop) get their old contents
back there."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core.attrs import live_steps
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.buffers import Alloc, Ref
from zhenwu_cc.runtime.executor.dependence import root_alloc
from zhenwu_cc.runtime.executor.index import Affine, Index
from zhenwu_cc.runtime.executor.products import Products, kept


class LiveSteps:
    """For one run of a loop: the grid points (of the current row block) each step runs on."""

    def __init__(self, loop: ppu.LoopOp, rows: np.ndarray, rank: int):
        _, lo, hi = live_steps(loop)
        rows = rows.reshape((1,) * (rank - rows.ndim) + rows.shape)
        self.lo, self.hi = np.asarray(lo)[rows], np.asarray(hi)[rows]

    def at(self, k: int) -> np.ndarray:
        """Whether step k runs, per grid point (broadcastable over the grid axes)."""
        return (self.lo <= k) & (k < self.hi)


def span(runs: np.ndarray) -> tuple[int, int] | None:
    """The positions [a, b) along the live axis where a partial step runs, if contiguous."""
    where = np.flatnonzero(runs.reshape(-1))
    a, b = int(where[0]), int(where[-1]) + 1
    return (a, b) if b - a == where.size else None


class Narrowed:
    """What running a loop's steps on a range of the live grid axis needs, read from the IR
    once: the index values the body reads from outside it, the allocations made outside it
    (the ones it can find holding contents), and whether it may run so at all: not with a
    store in the body (its check that tiles agree needs the whole block), nor with a product
    products.py does not run (it keeps the BLAS calls of the whole axis, see there)."""

    def __init__(self, loop: ppu.LoopOp, axis: int, state: tuple[Operation, ...]):
        self.axis, self.state = axis, frozenset(state)
        inside = set(loop.body.walk())
        self.allowed = not any(isinstance(op, ppu.DmaStoreOp)
                               or isinstance(op, ppu.MmaOp) and not kept(op) for op in inside)
        self.inner = frozenset(op for op in inside if isinstance(op, ppu.AllocOp))
        self.free = tuple(dict.fromkeys(v for op in inside for v in op.operands
                                        if _defined_outside(v, inside)))

    def run(self, env: dict, allocs: dict, products: Products, r: int, n: int, a: int, b: int,
            body) -> bool:
        """Run `body()` on positions [a, b) of the live axis (n positions); False (nothing
        run) when a value the body reads cannot be cut: a slot index outside the loop, or a
        carried buffer not wholly written."""
        g = self.axis
        indices = {}
        for v in self.free:
            x = env.get(v)
            if isinstance(x, Ref) and x.index is not None:
                return False
            if isinstance(x, Index):
                indices[v] = x
        outside = [al for op, al in allocs.items() if op not in self.inner]
        for al in outside:
            if al.op in self.state and not all(v is not None and w.all()
                                               for v, w in zip(al.values, al.written)):
                return False
        for v, x in indices.items():
            env[v] = _cut_index(x, g, r, a, b)
        saved = [(al, _cut(al, g, a, b)) for al in outside]
        products.narrow = (g, n, a, b)
        try:
            body()
        finally:
            products.narrow = None
            env.update(indices)
            for al, cut in saved:
                _widen(al, g, n, a, b, cut, al.op in self.state)
        return True


def _defined_outside(v: SSAValue, inside: set[Operation]) -> bool:
    owner = v.owner
    if isinstance(owner, Operation):
        return owner not in inside
    return owner.parent_op() not in inside  # a block argument


def _cut_index(x: Index, g: int, r: int, a: int, b: int) -> Index:
    """Index value `x` on positions [a, b) of grid axis g (of r)."""
    at = x.value.ndim - (r - g)
    if at < 0 or x.value.shape[at] == 1:
        return x
    value = x.value[(slice(None),) * at + (slice(a, b),)]
    affine = None if x.affine is None else Affine(x.affine.const + a * x.affine.coef(g - r),
                                                  x.affine.coefs)
    return Index(value, affine)


def _cut(al: Alloc, g: int, a: int, b: int) -> tuple[list, list, list]:
    """Put rows [a, b) of axis g of `al`'s slots in place of them (views: an owned array is
    computed into in place); the whole arrays, whether they were owned, and those views, for
    `_widen`."""
    full, owned = list(al.values), list(al.owned)
    views = []
    for k, v in enumerate(full):
        view = v if v is None or v.shape[g] == 1 else v[(slice(None),) * g + (slice(a, b),)]
        views.append(view)
        al.values[k] = view
    return full, owned, views


def _widen(al: Alloc, g: int, n: int, a: int, b: int, cut: tuple[list, list, list],
           carried: bool) -> None:
    """Bring `al` back to the whole axis after a step on rows [a, b): a slot computed into in
    place is its whole array again; a slot given a new array gets it in those rows, the other
    rows keeping what they held (a slot nothing reads later may simply keep an array that does
    not vary along the axis)."""
    for k, (old, was_owned, view) in enumerate(zip(*cut)):
        cur = al.values[k]
        if cur is view:  # still owned if nothing took a view of it meanwhile
            al.values[k], al.owned[k] = old, was_owned and al.owned[k]
            continue
        if cur is None or (cur.shape[g] == 1 and not carried):
            continue
        shape = np.broadcast_shapes(
            cur.shape[:g] + (n,) + cur.shape[g + 1:],
            *(() if old is None else (old.shape[:g] + (n,) + old.shape[g + 1:],)))
        if old is not None and was_owned and old.shape == shape:
            whole = old
        else:
            whole = np.empty(shape, cur.dtype)
            if old is not None:
                whole[...] = old
        whole[(slice(None),) * g + (slice(a, b),)] = cur
        al.values[k], al.owned[k] = whole, True


def carried(loop: ppu.LoopOp, launch: ppu.LaunchOp) -> tuple[Operation, ...]:
    """The allocations whose contents a step that does not run must keep: read in the body
    before the body writes them (loop state), or written in it and read after the loop."""
    written: set[Operation] = set()
    state: list[Operation] = []
    for op in loop.body.walk():
        reads, writes = _reads_writes(op)
        state += [a for a in reads if a not in written and a not in state]
        written.update(writes)
    after = False
    for op in launch.body.walk():
        if op is loop:
            after = True
            continue
        if after and not _inside(op, loop):
            reads, _ = _reads_writes(op)
            state += [a for a in reads if a in written and a not in state]
    return tuple(a for a in state if isinstance(a, ppu.AllocOp))


def _inside(op: Operation, loop: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if parent is loop:
            return True
        parent = parent.parent_op()
    return False


def _reads_writes(op: Operation) -> tuple[list[Operation], list[Operation]]:
    """The allocations an op reads and writes."""
    reads: list[SSAValue] = []
    writes: list[SSAValue] = []
    if isinstance(op, ppu.VMapOp):
        reads, writes = list(op.ins), [op.out]
    elif isinstance(op, (ppu.VReduceOp, ppu.VTransposeOp)):
        reads, writes = [op.input], [op.out]
    elif isinstance(op, ppu.MmaOp):
        reads = [op.lhs, op.rhs, op.acc, *op.lhs_scales, *op.rhs_scales]
        writes = [op.acc]
    elif isinstance(op, (ppu.FillOp, ppu.VIotaOp)):
        writes = [op.out]
    elif isinstance(op, ppu.DmaLoadOp):
        writes = [op.dest]
    elif isinstance(op, ppu.DmaStoreOp):
        reads = [op.source]
    elif isinstance(op, ppu.VQuantizeOp):
        reads = [op.input, *([op.amax] if op.amax is not None else [])]
        writes = list(op.outs)
    return list(_allocs(reads)), list(_allocs(writes))


def _allocs(values) -> Iterator[Operation]:
    for v in values:
        owner = v.owner
        if isinstance(owner, Operation):
            yield root_alloc(v)
