"""Row blocks replayed: a straight-line launch's later blocks run as a tape of numpy calls.

A vector launch runs block after block (rowblocks.py), and every block walks the same ops with
the same shapes: only the grid indices move. Interpreting each op again (reading SRAM
references, choosing scratch arrays, checking slots) costs about a millisecond a block, a sixth
of a row kernel's time. So where a launch body is straight-line code over single-slot buffers
(index arithmetic, allocs, loads, fills, vector maps and reductions, stores: no loop, no slot,
no view, no tensor-engine work), the interpreter runs its first full block as usual while the
`Tape` notes what each op did, and the later full blocks run the tape instead:

- index ops, loads and stores go through the interpreter's own rules, so every block's tiles are
  bounds-, race- and written-checked as before, and a store's tiles are computed into in place
  of the store as before (forward.py);
- vector maps and reductions call the same compute functions on the same operands, into the
  arrays the noted block computed into (each of those was free at that point of that block, so
  it is free at the same point of every block: the data flow is the same);
- fills and allocs cost nothing: a fill is a read-only constant, a buffer is just its array; a
  load whose tiles do not move with the blocks (a LayerNorm's gamma) keeps the noted view.

Same functions, same operands, same order: every output bit is the plain path's (tested). What
the noted block proved of SRAM (no read before a write) holds for every block, since each
block allocates its buffers afresh and runs the same straight-line code. A short last block
runs through the interpreter.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.compute import align, bitcast, broadcast_shapes, vmap, vreduce
from zhenwu_cc.runtime.executor.index import INDEX_OPS

_FREE = (ppu.AllocOp, ppu.WaitOp, ppu.YieldOp)  # nothing to do once the tape exists
_TAPED = (ppu.DmaLoadOp, ppu.FillOp, ppu.VMapOp, ppu.VReduceOp, ppu.DmaStoreOp)
ENABLED = True  # off: every block interpreted (tests compare the two)
_STRAIGHT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # launch -> bool


def straight(launch: ppu.LaunchOp) -> bool:
    """Whether `launch`'s later row blocks may replay a tape (see the module docstring)."""
    found = _STRAIGHT.get(launch)
    if found is None:
        found = _STRAIGHT[launch] = all(
            not op.regions and (isinstance(op, INDEX_OPS + _TAPED)
                                or (isinstance(op, _FREE)
                                    and (not isinstance(op, ppu.AllocOp) or op.slots == 1)))
            for op in launch.body.block.ops)
    return found


Step = Callable[[dict], None]


def _held(value: np.ndarray, r: int, shape: tuple[int, ...]) -> np.ndarray:
    """What a buffer of tile `shape` reads back after `value` is written to it (buffers.Ref)."""
    if value.shape[r:] != shape:
        return np.broadcast_to(value, value.shape[:r] + shape)
    return value


class Tape:
    """The steps one full row block of a straight-line launch took, to run again per block."""

    def __init__(self, interp, launch: ppu.LaunchOp, vmap_plan: Callable):
        """Run the current row block through `interp` (the first full one), noting its steps;
        `vmap_plan` is the interpreter's choice of how a vector op computes (run.py)."""
        self.steps: list[Step] = []
        self.start: dict[SSAValue, np.ndarray] = {}  # buffers read before the block writes them
        self.interp = interp
        self._record(launch, vmap_plan)

    def run(self) -> None:
        """The next full row block (the interpreter has set the grid indices)."""
        values = dict(self.start)
        for step in self.steps:
            step(values)

    # -- noting one block, run by the interpreter --
    def _record(self, launch: ppu.LaunchOp, vmap_plan: Callable) -> None:
        interp = self.interp
        r = interp.launch.rank
        written: set[SSAValue] = set()
        for op in launch.body.block.ops:
            reads = (op.ins if isinstance(op, ppu.VMapOp) else (op.input,)
                     if isinstance(op, ppu.VReduceOp) else (op.source,)
                     if isinstance(op, ppu.DmaStoreOp) else ())
            for v in reads:
                if v not in written and v not in self.start:  # unwritten, read unchecked
                    self.start[v] = interp.read(v, op)
            plan = None
            if isinstance(op, ppu.VMapOp):  # asked before the op overwrites an operand
                ins = [interp.read(v, op) for v in op.ins]
                rank = len(op.out.type.get_shape())
                ins = [align(x, r, rank) for x in ins]
                fused, into_dest = vmap_plan(op.function, tuple(x.dtype for x in ins),
                                             interp.dtype(op.out))
                plan = fused, into_dest, broadcast_shapes(*(x.shape for x in ins)), ins
            interp.run_op(op)
            if isinstance(op, INDEX_OPS):
                self.steps.append(lambda values, op=op: interp.run_op(op))
            elif isinstance(op, ppu.FillOp):
                self.steps.append(self._same(op.out, interp.read(op.out, op)))
                written.add(op.out)
            elif isinstance(op, ppu.DmaLoadOp):
                if self._same_tiles(op, launch):  # checked once, as every block would
                    self.steps.append(self._same(op.dest, interp.read(op.dest, op)))
                else:
                    self.steps.append(self._load(op, r))
                written.add(op.dest)
            elif isinstance(op, ppu.VMapOp):
                self.steps.append(self._vmap(op, r, plan))
                written.add(op.out)
            elif isinstance(op, ppu.VReduceOp):
                self.steps.append(self._vreduce(op, r))
                written.add(op.out)
            elif isinstance(op, ppu.DmaStoreOp):
                self.steps.append(lambda values, op=op: interp._store(op, values.get(op.source)))

    @staticmethod
    def _same(dest: SSAValue, value: np.ndarray) -> Step:
        """`dest` gets `value` in every block: a fill, or a load of `_same_tiles`."""
        def same(values: dict) -> None:
            values[dest] = value
        return same

    def _same_tiles(self, op: ppu.DmaLoadOp, launch: ppu.LaunchOp) -> bool:
        """Whether `op` loads the same tiles in every block: its tile indices do not depend on
        the blocked grid index and the launch stores nothing into the tensor it reads (so its
        data, and what its checks see, stay as they are)."""
        args = launch.body.block.args
        (key,) = self.interp.launch.offsets
        blocked = args[key + len(args)]

        def depends(v: SSAValue) -> bool:
            if v is blocked:
                return True
            return isinstance(v.owner, Operation) and any(depends(u) for u in v.owner.operands)
        env = self.interp.env
        root = env[op.source].root
        return not (any(depends(v) for v in op.indices)
                    or any(env[store.dest].root is root for store in launch.body.walk()
                           if isinstance(store, ppu.DmaStoreOp)))

    def _load(self, op: ppu.DmaLoadOp, r: int) -> Step:
        interp, dest, shape = self.interp, op.dest, tuple(op.dest.type.get_shape())

        def load(values: dict) -> None:
            values[dest] = _held(interp.load_tiles(op, r), r, shape)
        return load

    def _vmap(self, op: ppu.VMapOp, r: int, plan) -> Step:
        interp = self.interp
        function, operands, result, rank, dest = interp.facts[op]
        shape = tuple(result.type.get_shape())
        if function == "bitcast":
            src = interp.dtype(operands[0])

            def view(values: dict) -> None:
                x = align(values[operands[0]], r, rank)
                values[result] = _held(bitcast(x, src, dest), r, shape)
            return view
        fused, into_dest, out_shape, ins = plan
        forwarded = into_dest and op in interp.launch.forwards
        out = None
        if into_dest and not forwarded:
            # the array the noted block computed into: free at this point of every block
            written, owned = interp.read_owned(result, op)
            if (owned and written.shape == out_shape and written.dtype == dest.np_dtype
                    and written.flags.writeable and written.flags.c_contiguous
                    and not any(np.may_share_memory(written, x)
                                for v, x in zip(operands, ins) if v is not result)):
                out = written

        def compute(values: dict) -> None:
            ins = [align(values[v], r, rank) for v in operands]
            if forwarded:
                tiles = interp._forward(op, function, out_shape, dest)
                if tiles is not None:
                    values[result] = vmap(function, ins, dest, tiles, fused)
                    return
            values[result] = _held(vmap(function, ins, dest, out, fused), r, shape)
        return compute

    def _vreduce(self, op: ppu.VReduceOp, r: int) -> Step:
        function, source, result, axis_list, dest = self.interp.facts[op]
        axes = tuple(r + a for a in axis_list)
        shape = tuple(result.type.get_shape())

        def reduce(values: dict) -> None:
            values[result] = _held(vreduce(function, values[source], axes, dest), r, shape)
        return reduce
