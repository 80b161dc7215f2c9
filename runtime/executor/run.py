"""The executor: a `ppu` kernel run on numpy arrays as the PPU would run it, one launch at a time.

Every `ppu.launch` executes for many tiles at once: its whole grid, or for a vector launch one
row block of grid points after another (rowblocks.py; buffers of one block are computed into in
place and reused by the next; a straight-line launch's later blocks replay the first one's numpy
calls, replay.py). Each SRAM buffer holds one numpy array
`[grid..., tile...]` with a size-1 grid axis wherever its contents do not depend on that grid
index (a GEMM's A tile is [gi, 1, tm, tk], buffers.py); index values are integer
arrays over the grid (index.py). A `ppu.dma_load` is one gather of every tile (a
strided view of the source when the tile indices are affine), a `ppu.dma_store` one scatter,
both with the window, padding and clipping the IR states (dma.py); vector and tensor
work is one numpy call per op over the grid (compute.py; quantisation and scaled
low-precision products in lowp.py). A `ppu.loop` runs its
steps in order, each over the whole grid, its float32 products in buffers kept from step to
step (products.py), except that a loop which only loads tiles and
accumulates `ppu.mma` products into float32 (or integer) accumulators becomes one matmul over
the whole reduction (merge.py), and a step a mask hides from some tiles runs on the others
(window.py).

It checks what the hardware would not forgive, each a CompileError: a tile index outside its
window (ZK0610), SRAM overflow and overlapping live buffers (ZK0611, ZK0612, sram.py),
reads of SRAM never written (ZK0613) and of HBM never stored (ZK0614), output elements no store
wrote (ZK0615), tiles storing different data to one place (ZK0616), division by zero in index
arithmetic (ZK0617) — and it refuses a run that would not fit in host memory (ZK0505,
memory.py) before allocating. The HBM checks keep a written-mask per tensor, except for a store
the IR proves to write its whole tensor exactly once (coverage.py): the tensor counts as written
when its launch ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core.attrs import LIVE_STEPS, live_steps
from zhenwu_cc.core.tiling import tile_counts
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.runtime import precision
from zhenwu_cc.runtime.executor import coverage, dma, forward, products, replay, rowblocks
from zhenwu_cc.runtime.executor.buffers import Alloc, Ref
from zhenwu_cc.runtime.executor.compute import (
    accumulate,
    bitcast,
    broadcast_shapes,
    align,
    into,
    layout_free,
    one_call,
    product,
    result_dtype,
    vmap,
    vreduce,
)
from zhenwu_cc.runtime.executor.index import INDEX_OPS, Index, evaluate
from zhenwu_cc.runtime.executor.lowp import scaled_product
from zhenwu_cc.runtime.executor.memory import ensure_host_memory, stored_inputs
from zhenwu_cc.runtime.executor.merge import mergeable, run_merged
from zhenwu_cc.runtime.executor.sram import check_allocations
from zhenwu_cc.runtime.executor.window import LiveSteps, Narrowed, carried, span
from zhenwu_cc.runtime.executor.state import Global, Launch
from zhenwu_cc.runtime.inputs import checked
from zhenwu_cc.runtime.numerics import round_to
from zhenwu_cc.core.target import load_target

from zhenwu_cc.core.diagnostics import did_you_mean, error
from zhenwu_cc.core import attrs

def _dtype(v: SSAValue) -> DType:
    return dtypes.from_xdsl(v.type.element_type)


def _shape(v: SSAValue) -> tuple[int, ...]:
    return tuple(v.type.get_shape())


def _name(v: SSAValue) -> str:
    return f"`%{v.name_hint}`" if v.name_hint else "a buffer"


# ---- the interpreter -----------------------------------------------------------------------------
class Interpreter:
    """Runs one kernel; `env` maps SSA values to index values, globals and SRAM references."""

    def __init__(self, kernel: ppu.KernelOp, check_uninitialised: bool, sram_bytes: int | None,
                 facts: dict | None = None):
        self.kernel = kernel
        self.check = check_uninitialised
        self.sram_bytes = sram_bytes
        self.env: dict[SSAValue, object] = {}
        # what each op says, read from the IR once (and kept by the caller for the kernel's
        # next runs: `execute`'s `facts`)
        self.facts: dict = {} if facts is None else facts
        self.launch: Launch | None = None
        self.steps: list[tuple[str, int]] = []  # loops being stepped through, for messages

    # -- running --
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._bind_inputs(inputs)
        outputs = {}
        untracked = self._kernel_facts()[1] if self.check else ()
        for arg in self.kernel.outputs:
            array = np.zeros(_shape(arg), _dtype(arg).np_dtype)
            mask = np.zeros(array.shape, np.bool_) if self.check and arg not in untracked else None
            self.env[arg] = Global(array, array, mask)
            outputs[_arg_name(self.kernel, arg)] = array
        with np.errstate(all="ignore"):  # IEEE results (inf, nan) are the semantics
            self.block(self.kernel.body.block)
        for arg in self.kernel.outputs:
            self._check_written(arg)
        return outputs

    def block(self, block) -> None:
        ops = self.facts.get(block)
        if ops is None:  # a block's ops, listed once: a loop runs its body every step
            ops = self.facts[block] = tuple(block.ops)
        for op in ops:
            self.run_op(op)

    def run_op(self, op: Operation) -> None:
        rule = _RULES.get(type(op))
        if rule is None:
            raise TypeError(f"the executor has no rule for {op.name}")
        rule(self, op)

    # -- values --
    def dtype(self, v: SSAValue) -> DType:
        return _dtype(v)

    def read_owned(self, v: SSAValue, op: Operation) -> tuple[np.ndarray, bool]:
        """An SRAM buffer's contents (ZK0613 if unwritten) and whether they may be overwritten."""
        ref: Ref = self.env[v]
        if self.check and (k := ref.alloc.unwritten(ref.index)) is not None:
            slot = f" (slot {k})" if ref.alloc.depth > 1 else ""
            raise error("ZK0613", f"`{op.name}` reads {_name(ref.alloc.op.result)}{slot} before "
                        f"anything wrote it{self._context()}", span_of(op),
                        help="a buffer must be loaded, filled or computed into before it is "
                        "read; the lowered program is wrong, report it with the IR (--emit ppu)")
        return ref.read()

    def read(self, v: SSAValue, op: Operation) -> np.ndarray:
        return self.read_owned(v, op)[0]

    def write(self, v: SSAValue, value: np.ndarray, owned: bool) -> None:
        self.env[v].write(value, owned)

    def _context(self) -> str:
        return f" (at {', '.join(f'{n}={k}' for n, k in self.steps)})" if self.steps else ""

    # -- kernel level --
    def _kernel_facts(self) -> tuple:
        """(the inputs some launch stores into, the outputs whose written-mask nothing reads:
        coverage.untracked_tensors), read from the kernel once. Kept in `facts`, which lives
        with the compiled kernel, never in a module-level table: these values refer back to
        the kernel and would keep it alive."""
        facts = self.facts.get(self.kernel)
        if facts is None:
            facts = self.facts[self.kernel] = (stored_inputs(self.kernel),
                                               coverage.untracked_tensors(self.kernel))
        return facts

    def _bind_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        names = [_arg_name(self.kernel, a) for a in self.kernel.inputs]
        for name in inputs:
            if name not in names:
                guess = did_you_mean(name, names)
                raise error("ZK0501", f"input `{name}` is not an input of kernel "
                            f"`{self.kernel.sym_name.data}` (inputs: {', '.join(names)})",
                            span_of(self.kernel),
                            help=f"did you mean `{guess}`?" if guess else "drop it")
        stored = self._kernel_facts()[0]
        for name, arg in zip(names, self.kernel.inputs):
            if name not in inputs:
                raise error("ZK0501", f"missing input `{name}` for kernel "
                            f"`{self.kernel.sym_name.data}`", span_of(self.kernel),
                            help="pass one array per input argument")
            x = inputs[name]
            if (isinstance(x, np.ndarray) and x.dtype == _dtype(arg).np_dtype
                    and x.shape == _shape(arg) and arg not in stored):
                x = np.ascontiguousarray(x).view()
                x.flags.writeable = False
            else:
                x = np.ascontiguousarray(checked(name, arg, x))
            self.env[arg] = Global(x, x, None)

    def _global(self, op: ppu.GlobalOp) -> None:
        array = np.zeros(_shape(op.result), _dtype(op.result).np_dtype)
        self.env[op.result] = Global(array, array,
                                      np.zeros(array.shape, np.bool_) if self.check else None)

    def _view(self, op: ppu.ViewOp) -> None:
        source = self.env[op.source]
        shape = _shape(op.result)
        if isinstance(source, Ref):
            self.env[op.result] = Ref(source.alloc, source.index, shape)
            return
        self.env[op.result] = Global(source.array.reshape(shape), source.root,
                                      None if source.mask is None else source.mask.reshape(shape))

    def _check_written(self, arg: SSAValue) -> None:
        g: Global = self.env[arg]
        if g.mask is None or g.mask.all():
            return
        missing = np.argwhere(~g.mask)
        raise error("ZK0615", f"{len(missing)} element(s) of output "
                    f"`{_arg_name(self.kernel, arg)}` were never stored, the first at index "
                    f"{missing[0].tolist()}", span_of(self.kernel),
                    help="the grid or the store tile indices of the lowered program do not "
                    "cover the output; report it with the IR (--emit ppu)")

    # -- launches and loops --
    def _launch(self, op: ppu.LaunchOp) -> None:
        check_allocations(op, self.sram_bytes)  # once per launch and SRAM size (sram.py)
        grid = op.grid_shape
        r = len(grid)
        args = op.body.block.args
        self.launch = Launch(r, {d - r: a.name_hint or f"grid{d}" for d, a in enumerate(args)},
                             unmasked=self._unmasked(op), forwards=self.facts[op][1])
        axis, size = rowblocks.plan(op)
        extent = grid[axis] if grid else 1
        tape = None  # full blocks after the first replay it (replay.py)
        taped = replay.ENABLED and extent // size >= 2 and replay.straight(op)
        for start in range(0, extent, size):
            if start + size > extent:
                self.launch.spare = {}  # a shorter last block: the arrays would not fit
            self.launch.offsets = {axis - r: start}
            for d, (arg, n) in enumerate(zip(args, grid)):
                self.env[arg] = (Index.along(d - r, min(size, n - start), start) if d == axis
                                 else Index.along(d - r, n))
            if tape is not None and start + size <= extent:
                tape.run()
                continue
            if taped and start == 0:
                tape = replay.Tape(self, op, _vmap_plan)
            else:
                self.block(op.body.block)
            for alloc in self.launch.allocs.values():
                self.launch.spare[alloc.op] = alloc.leftovers()
            self.launch.allocs = {}
        for g in self.launch.unmasked.values():
            self._written(g.root)
        self.launch = None
        for v in self.facts[op][2]:  # SRAM lives for one launch: free its buffers now
            self.env.pop(v, None)

    def _unmasked(self, op: ppu.LaunchOp) -> dict[ppu.DmaStoreOp, Global]:
        """The stores of launch `op` that keep no written-mask (coverage.py), by the tensor
        each writes, where that tensor's elements are tracked."""
        facts = self.facts.get(op)
        if facts is None:  # and every value the launch defines (freed when it ends)
            defined = (*op.body.block.args, *(v for inner in op.body.walk() for v in (
                *inner.results, *(a for r in inner.regions for b in r.blocks for a in b.args))))
            facts = self.facts[op] = (coverage.unmasked_stores(op), forward.forwarded(op),
                                      tuple(dict.fromkeys(defined)))
        stores = facts[0]
        if not self.check:
            return {}
        return {s: g for s in stores if (g := self.env[s.dest]).mask is not None}

    def _written(self, root: np.ndarray) -> None:
        """Every element of `root` has been stored: it and its views need no written-mask."""
        for v, x in self.env.items():
            if isinstance(x, Global) and x.root is root:
                self.env[v] = Global(x.array, x.root, None)

    def _loop(self, op: ppu.LoopOp) -> None:
        windowed = LIVE_STEPS in op.attributes
        if not windowed and mergeable(op) and run_merged(self, op):
            return
        live = state = None
        if windowed:  # steps a mask wholly hides are skipped (window.py)
            launch = op.parent_op()
            while not isinstance(launch, ppu.LaunchOp):
                launch = launch.parent_op()
            facts = self.facts.get(op)
            if facts is None:
                dim = live_steps(op)[0]
                state = carried(op, launch)
                facts = self.facts[op] = (launch.body.block.args[dim], state,
                                          Narrowed(op, dim, state))
            row, state, narrowed = facts
            live = LiveSteps(op, self.env[row].value, self.launch.rank)
        name = op.induction_var.name_hint or "step"
        for k in range(op.trip_count):
            runs = None if live is None else live.at(k)
            if runs is not None and not runs.any():
                continue
            self.env[op.induction_var] = Index.constant(k)
            self.steps.append((name, k))
            if runs is not None and not runs.all():
                self._partial_step(op, runs, state, narrowed)
            else:
                self.block(op.body.block)
            self.steps.pop()

    def _partial_step(self, op: ppu.LoopOp, runs: np.ndarray, state, narrowed: Narrowed
                      ) -> None:
        """A step that runs on some grid points only (window.py): on their range of the live
        axis alone when they are one, else everywhere and undone where it should not run."""
        where = span(runs) if narrowed.allowed else None
        if where is not None and where[1] - where[0] > 1:  # one row looks like no axis
            a, b = where
            key = narrowed.axis - self.launch.rank
            offset = self.launch.offsets.get(key)
            self.launch.offsets[key] = (offset or 0) + a
            try:
                if narrowed.run(self.env, self.launch.allocs, self.launch.products,
                                self.launch.rank, runs.size, a, b,
                                lambda: self.block(op.body.block)):
                    return
            finally:
                if offset is None:
                    del self.launch.offsets[key]
                else:
                    self.launch.offsets[key] = offset
        kept = [(a, a.snapshot()) for a in (self.launch.allocs.get(op) for op in state)
                if a is not None]
        self.block(op.body.block)
        for alloc, old in kept:
            alloc.restore(runs, old)

    def _index(self, op: Operation) -> None:
        facts = self.facts.get(op)
        if facts is None:
            facts = self.facts[op] = (op.results[0], tuple(op.operands),
                                      isinstance(op, arith.ConstantOp))
        result, operands, constant = facts
        if constant and result in self.env:
            return  # an index constant keeps its value for the whole run
        self.env[result] = evaluate(op, [self.env[v] for v in operands])

    # -- SRAM --
    def _alloc(self, op: ppu.AllocOp) -> None:
        before = self.launch.allocs.get(op)  # the same buffer's last step in a loop
        spare = before.leftovers() if before is not None else self.launch.spare.pop(op, None)
        alloc = self.launch.allocs[op] = Alloc(op, self.launch.rank, spare)
        result = self.facts.get(op)
        if result is None:
            result = self.facts[op] = op.result
        self.env[result] = Ref(alloc, None, alloc.shape)

    def _slot(self, op: ppu.SlotOp) -> None:
        facts = self.facts.get(op)
        if facts is None:
            facts = self.facts[op] = (op.result, op.buffer, op.index, _shape(op.result))
        result, buffer, index, shape = facts
        self.env[result] = Ref(self.env[buffer].alloc, self.env[index], shape)

    # -- DMA --
    def load_tiles(self, op: ppu.DmaLoadOp, naxes: int) -> np.ndarray:
        """Every grid point's tile of a load, [index axes (naxes)..., tile...], bounds-checked
        (ZK0610) and, for tensors stores write, checked to have been stored (ZK0614)."""
        facts = self.facts.get(op)
        if facts is None:
            base, bound = op.window
            facts = self.facts[op] = (
                op.source, tuple(op.indices), base, bound, op.tile_sizes,
                tile_counts(bound, op.tile_sizes),
                round_to(np.array(op.pad_value), _dtype(op.source)), op.dest)
        source, index_values, base, bound, sizes, counts, pad, _ = facts
        g: Global = self.env[source]
        indices = [self.env[i] for i in index_values]
        dma.check_tiles(op, indices, counts, self.launch.names, self._context(),
                        self.launch.offsets)
        blocks = self._blocks(g, source, base, bound, sizes, pad, "data")
        if g.mask is not None:
            mask = self._blocks(g, source, base, bound, sizes, np.True_, "mask")
            if not dma.gather(mask, indices, naxes).all():
                raise error("ZK0614", f"`{op.name}` reads elements of {_name(op.source)} that "
                            f"no store has written yet{self._context()}", span_of(op),
                            help="the launches of the lowered program are out of order or do "
                            "not cover the tensor; report it with the IR (--emit ppu)")
        return dma.gather(blocks, indices, naxes)

    def _blocks(self, g: Global, source: SSAValue, base, bound, sizes, pad, kind: str):
        cache = self.launch.blocks.setdefault(id(g.root), {})
        key = (kind, source, base, bound, sizes, pad.tobytes())
        if key not in cache:
            array = g.array if kind == "data" else g.mask
            cache[key], copied = dma.load_blocks(array, base, bound, sizes, pad)
            if not copied and kind == "data":
                self.launch.viewed.add(id(g.root))
        return cache[key]

    def _load(self, op: ppu.DmaLoadOp) -> None:
        tiles = self.load_tiles(op, self.launch.rank)
        self.write(self.facts[op][-1], tiles, owned=False)

    def _store_facts(self, op: ppu.DmaStoreOp) -> tuple:
        facts = self.facts.get(op)
        if facts is None:
            base, bound = op.window
            facts = self.facts[op] = (op.dest, op.source, tuple(op.indices), base, bound,
                                      op.tile_sizes, tile_counts(bound, op.tile_sizes))
        return facts

    def _store(self, op: ppu.DmaStoreOp, value: np.ndarray | None = None) -> None:
        """Store the source buffer's tiles (`value`: its contents, when replay.py has them)."""
        dest, source, index_values, base, bound, sizes, counts = self._store_facts(op)
        g: Global = self.env[dest]
        if op in self.launch.forwarded:  # its tiles hold the data already (_forward)
            self.launch.forwarded.discard(op)
            return
        if value is None:
            value = self.read(source, op)
        r = self.launch.rank
        indices = [self.env[i] for i in index_values]
        dma.check_tiles(op, indices, counts, self.launch.names, self._context(),
                        self.launch.offsets)
        self._check_race(op, indices, value.shape)
        self.launch.products.forget()
        self._detach(g.root)
        dma.store(g.array, base, bound, sizes, indices, value, r)
        if g.mask is not None and op not in self.launch.unmasked:
            dma.store(g.mask, base, bound, sizes, indices,
                      np.broadcast_to(np.True_, value.shape), r)

    def _check_race(self, op: ppu.DmaStoreOp, indices: list[Index], shape: tuple[int, ...]
                    ) -> None:
        r = self.launch.rank
        where = dma.index_shape(indices, r)
        for p in range(r):
            if shape[p] > 1 and where[p] == 1:
                axis = self.launch.names[p - r]
                raise error("ZK0616", f"`{op.name}` writes the tile of every `{axis}` to the same "
                            f"place, but the data differ along `{axis}`{self._context()}",
                            span_of(op), help="the store's tile indices miss a grid index; "
                            "report it with the IR (--emit ppu)")

    def _detach(self, root: np.ndarray) -> None:
        """Before a store changes `root`, copy SRAM contents that are views of it and forget
        padded copies of it: SRAM holds what was loaded, not what memory holds now."""
        self.launch.blocks.pop(id(root), None)
        if id(root) not in self.launch.viewed:
            return
        for alloc in self.launch.allocs.values():
            for k, v in enumerate(alloc.values):
                if v is not None and np.may_share_memory(v, root):
                    alloc.values[k], alloc.owned[k] = np.array(v), True

    # -- compute --
    def _mma(self, op: ppu.MmaOp) -> None:
        r = self.launch.rank
        if self._kept(op):  # buffers kept from step to step (products.py)
            lhs_value, rhs_value, acc_value, rank, lhs_scales, rhs_scales = self.facts[op][1]
            lhs, rhs = self.read(lhs_value, op), self.read(rhs_value, op)
            scales = ([self.read(s, op) for s in lhs_scales],
                      [self.read(s, op) for s in rhs_scales])
            acc, owned = self.read_owned(acc_value, op)
            ref = self.env[acc_value]
            prod = self.launch.products.multiply(
                op, lhs, rhs, r, rank, *scales,
                into=lambda shape: products.target(ref, acc, owned, shape))
            self.write(acc_value, products.accumulate(ref, acc, owned, prod), True)
            return
        lhs, rhs = self.read(op.lhs, op), self.read(op.rhs, op)
        if op.lhs_scales or op.rhs_scales or op.fp8_fast is not None:
            prod = scaled_product(lhs, [self.read(s, op) for s in op.lhs_scales], rhs,
                                  [self.read(s, op) for s in op.rhs_scales], r,
                                  len(_shape(op.acc)), op.fp8_fast is not None)
        else:
            prod = product(lhs, rhs, r, len(_shape(op.acc)), _dtype(op.acc))
        acc, owned = self.read_owned(op.acc, op)
        self.write(op.acc, accumulate(acc, prod, _dtype(op.acc), owned), owned=True)

    def _kept(self, op: ppu.MmaOp) -> bool:
        """Whether the product runs with buffers kept from step to step (products.py)."""
        facts = self.facts.get(op)
        if facts is None:
            facts = self.facts[op] = (products.kept(op), (
                op.lhs, op.rhs, op.acc, len(_shape(op.acc)), tuple(op.lhs_scales),
                tuple(op.rhs_scales)))
        return facts[0]

    def _vquantize(self, op: ppu.VQuantizeOp) -> None:
        x = self.read(op.input, op)
        amax = self.read(op.amax, op) if op.amax is not None else None
        spec = precision.Spec.of(op.precision, op.blocked_axis)
        parts = precision.quantize_tiles(x, spec, _shape(op.outs[1]), len(_shape(op.input)),
                                         amax)
        for out, part in zip(op.outs, parts):
            self.write(out, part, owned=True)

    def _vmap(self, op: ppu.VMapOp) -> None:
        facts = self.facts.get(op)
        if facts is None:
            facts = self.facts[op] = (op.function, tuple(op.ins), op.out, len(_shape(op.out)),
                                      _dtype(op.out))
        function, operands, result, rank, dest = facts
        r = self.launch.rank
        ins = [align(self.read(v, op), r, rank) for v in operands]
        if function == "bitcast":  # a view of its input: not the destination's own
            self.write(result, bitcast(ins[0], _dtype(operands[0]), dest), owned=False)
            return
        out = None
        fused, into_dest = _vmap_plan(function, tuple(x.dtype for x in ins), dest)
        if into_dest:
            shape = broadcast_shapes(*(x.shape for x in ins))
            if (tiles := self._forward(op, function, shape, dest)) is not None:
                self.write(result, vmap(function, ins, dest, tiles, fused), owned=False)
                return
            out = self.env[result].scratch(shape, dest.np_dtype)
        self.write(result, vmap(function, ins, dest, out, fused), owned=True)

    def _forward(self, op: ppu.VMapOp, function: str, shape: tuple[int, ...], dest: DType
                 ) -> np.ndarray | None:
        """The HBM tiles the store after `op` writes, for `op` to compute into (forward.py),
        checked as that store checks them first; None where it may not."""
        store = self.launch.forwards.get(op)
        if store is None or not layout_free(function):
            return None
        _, _, index_values, base, bound, sizes, counts = self._store_facts(store)
        g: Global = self.env[store.dest]
        indices = [self.env[i] for i in index_values]
        tiles = dma.store_view(g.array, base, bound, sizes, indices, self.launch.rank)
        if (tiles is None or tiles.shape != shape or tiles.dtype != dest.np_dtype
                or not tiles.flags.c_contiguous):
            return None
        dma.check_tiles(store, indices, counts, self.launch.names, self._context(),
                        self.launch.offsets)  # before anything is written through `tiles`
        self._check_race(store, indices, shape)
        self.launch.products.forget()
        self._detach(g.root)
        self.launch.forwarded.add(store)
        return tiles

    def _vreduce(self, op: ppu.VReduceOp) -> None:
        facts = self.facts.get(op)
        if facts is None:
            facts = self.facts[op] = (op.function, op.input, op.out, tuple(op.axis_list),
                                      _dtype(op.out))
        function, source, result, axis_list, dest = facts
        r = self.launch.rank
        axes = tuple(r + a for a in axis_list)
        self.write(result, vreduce(function, self.read(source, op), axes, dest), owned=True)

    def _vtranspose(self, op: ppu.VTransposeOp) -> None:
        facts = self.facts.get(op)
        if facts is None:
            facts = self.facts[op] = (op.input, op.out, tuple(op.perm.get_values()))
        source, result, tile_perm = facts
        r = self.launch.rank
        x = self.read(source, op)
        perm = list(range(r)) + [r + p for p in tile_perm]
        ref: Ref = self.env[source]
        ref.alloc.disown(ref.index)
        self.write(result, np.transpose(x, perm), owned=False)

    def _fill(self, op: ppu.FillOp) -> None:
        facts = self.facts.get(op)
        if facts is None:  # a read-only broadcast, made once: a loop fills every step
            value = round_to(np.array(op.number), _dtype(op.out))
            facts = self.facts[op] = (op.out, np.broadcast_to(
                value, (1,) * self.launch.rank + _shape(op.out)))
        result, value = facts
        self.write(result, value, owned=False)

    def _viota(self, op: ppu.VIotaOp) -> None:
        r = self.launch.rank
        axis = op.axis.value.data
        sizes = tuple(op.sizes.get_values())
        start = self.env[op.indices[axis]].value * sizes[axis]
        start = start.reshape((1,) * (r - start.ndim) + start.shape + (1,) * len(sizes))
        ramp = np.arange(sizes[axis]).reshape([-1 if a == axis else 1 for a in range(len(sizes))])
        dest = _dtype(op.out)
        if dest.is_int and dest.kind != "bool" and start.size:
            info = np.iinfo(dest.np_dtype)  # in range: round_to's clip would change nothing
            if info.min <= start.min() and start.max() + sizes[axis] - 1 <= info.max:
                self.write(op.out, np.add(start, ramp, dtype=dest.np_dtype, casting="unsafe"),
                           owned=False)
                return
        self.write(op.out, into(start + ramp, dest), owned=False)


@lru_cache(maxsize=1024)
def _vmap_plan(function: str, types: tuple[np.dtype, ...], dest: DType) -> tuple[bool, bool]:
    """(one numpy call from the operands, computed into a destination array) for a vector op
    on operands of `types` (the same every row block: asked once)."""
    ins = [np.empty(0, t) for t in types]
    fused = one_call(function, ins, dest)
    return fused, fused or (function != "select"
                            and result_dtype(function, ins, dest) == dest.np_dtype)


def _nothing(interp: Interpreter, op: Operation) -> None:
    """Waits complete at once: every DMA is done when its op returns."""


# The rule of each op. A class-level table, not bound methods kept on the instance: those would
# make a reference cycle that holds every array of a run until the garbage collector runs.
_RULES: dict[type, Callable[[Interpreter, Operation], None]] = {
    ppu.GlobalOp: Interpreter._global, ppu.ViewOp: Interpreter._view,
    ppu.LaunchOp: Interpreter._launch, ppu.LoopOp: Interpreter._loop,
    ppu.AllocOp: Interpreter._alloc, ppu.SlotOp: Interpreter._slot,
    ppu.DmaLoadOp: Interpreter._load, ppu.DmaStoreOp: Interpreter._store,
    ppu.MmaOp: Interpreter._mma, ppu.VQuantizeOp: Interpreter._vquantize,
    ppu.VMapOp: Interpreter._vmap,
    ppu.VReduceOp: Interpreter._vreduce, ppu.VTransposeOp: Interpreter._vtranspose,
    ppu.FillOp: Interpreter._fill, ppu.VIotaOp: Interpreter._viota,
    ppu.WaitOp: _nothing, ppu.YieldOp: _nothing, ppu.ReturnOp: _nothing,
    **dict.fromkeys(INDEX_OPS, Interpreter._index),
}


def _arg_name(kernel: ppu.KernelOp, arg: SSAValue) -> str:
    return arg.name_hint or f"arg{arg.index}"


def execute(kernel: ppu.KernelOp, inputs: Mapping[str, np.ndarray], *,
            check_uninitialised: bool = True, sram_bytes: int | None = None,
            host_bytes: int | None = None, facts: dict | None = None) -> dict[str, np.ndarray]:
    """Run `kernel` on `inputs` (by input argument name) and return its outputs by name, each
    in its declared element type (ml_dtypes types for bf16 / FP8 / FP4).

    Inputs of another float type are rounded into the declared one (ZK0501-ZK0503 for missing,
    unknown, misshapen or mistyped inputs, as in the reference evaluator). `check_uninitialised`
    tracks which SRAM slots and HBM elements have been written (ZK0613-ZK0615); `sram_bytes`
    bounds every `ppu.alloc` (ZK0611); when None, the SRAM of the target the kernel records
    (`ppu.target`, set by `lower-ppu`) does, and a kernel without one is not checked. Raises
    ZK0505 before allocating when `estimate_host_bytes(kernel)` (`host_bytes` where the caller
    has it already: the API computes it once per compiled kernel), plus copies of inputs given
    in another dtype, exceeds the host-memory limit. `facts`, a dict the caller keeps for
    `kernel` (empty at first, the API keeps one per compiled kernel), holds what the run read
    from the IR, for the kernel's next runs to skip (the IR must not change in between; the
    static SRAM checks are kept per launch by `sram.check_allocations`).
    """
    def copied(x, arg: SSAValue) -> bool:
        return not (isinstance(x, np.ndarray) and x.dtype == _dtype(arg).np_dtype
                    and x.flags.c_contiguous)

    ensure_host_memory(kernel, sum(
        math.prod(_shape(a)) * _dtype(a).np_dtype.itemsize for a in kernel.inputs
        if _arg_name(kernel, a) in inputs and copied(inputs[_arg_name(kernel, a)], a)),
        host_bytes)
    if sram_bytes is None and (target := kernel.attributes.get(attrs.TARGET)) is not None:
        # a non-string value (hand-edited IR) is an unknown target (ZK0701), not a crash
        name = target.data if isinstance(target, StringAttr) else str(target)
        sram_bytes = load_target(name).sram_per_cu
    return Interpreter(kernel, check_uninitialised, sram_bytes, facts).run(inputs)

