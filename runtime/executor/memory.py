"""How much host memory an executor run takes, estimated from the IR before anything is allocated.

A launch holds every SRAM buffer for the whole grid at once, but only along the grid axes its
contents depend on (a GEMM's A tile does not depend on the column index), so the estimate follows
that dependence through the program: launch indices -> index arithmetic -> DMA tile indices ->
buffers -> whatever is computed from them. It adds padded copies of edge-tiled sources, the
temporaries of the one op running at a time (a vector op's float32 working copies, a
quantisation's, the float32 operands of a merged reduction loop), and the kernel's global tensors
(the caller's inputs, copies of those a store writes, outputs, intermediates, and their
written-masks). The temporaries per op were measured (tests/test_host_memory.py keeps the
estimate at or above the bytes a run takes, and within about twice them).
"""

from __future__ import annotations

import math

from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core.tiling import tile_counts
from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.dialects import ppu
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.runtime import numerics
from zhenwu_cc.runtime.executor import coverage, products, rowblocks
from zhenwu_cc.runtime.executor.dependence import Dependence, root_alloc
from zhenwu_cc.runtime.executor.merge import mergeable
from zhenwu_cc.runtime.executor.window import carried
from zhenwu_cc.runtime.units import MAX_HOST_BYTES_ENV, host_memory_limit

from zhenwu_cc.core.diagnostics import error

_QUANTIZE_SCRATCH = 8  # float32 temporaries of a quantisation, measured (largest buffer each)
_INTERPRETER = 2 << 20  # the interpreter's own objects, index arrays, heap slack (measured)
_F16_SCRATCH = 3 * 4 * numerics.F16_CHUNK


def _elements(v: SSAValue) -> int:
    return math.prod(v.type.get_shape())


def _itemsize(v: SSAValue) -> int:
    return dtypes.from_xdsl(v.type.element_type).np_dtype.itemsize


def _written(op) -> list[SSAValue]:
    """The buffers `op` puts a new array into (a fill's broadcast and a transpose's view take
    no memory)."""
    if isinstance(op, ppu.DmaLoadOp):
        return [op.dest]
    if isinstance(op, (ppu.VMapOp, ppu.VReduceOp, ppu.VIotaOp)):
        return [op.out]
    if isinstance(op, ppu.MmaOp):
        return [op.acc]
    if isinstance(op, ppu.VQuantizeOp):
        return list(op.outs)
    return []


def _launch_bytes(launch: ppu.LaunchOp) -> int:
    """Peak bytes of one launch, following its ops in order: each allocation's array over one
    row block (rowblocks.py) from the first op that writes it to the end of the launch, plus the
    running op's temporaries, plus padded copies of edge-tiled sources."""
    dep = Dependence(launch)
    axis, size = rowblocks.plan(launch, dep)
    grid = tuple(size if d == axis else n for d, n in enumerate(launch.grid_shape))

    def points(v: SSAValue) -> int:
        return math.prod(grid[d] for d in dep.axes(v)) * _elements(v)

    def held(v: SSAValue) -> int:
        """Bytes of a float32 (or wider) working copy of `v` over one row block."""
        return points(v) * max(_itemsize(v), 4)

    live = peak = padded = staging = 0
    seen: set[Operation] = set()
    for op in launch.body.walk():
        if isinstance(op, ppu.LoopOp):  # what its stepped products keep (products.py)
            live += sum(held(m.lhs) + held(m.rhs) + held(m.acc) for m in op.body.walk()
                        if isinstance(m, ppu.MmaOp) and _kept_product(m))
            if attrs.live_steps(op) is not None:
                live += _partial_step_bytes(op, launch, points)
        peak = max(peak, live + _temporaries(op, held))
        for v in _written(op):
            if (alloc := root_alloc(v)) not in seen:
                seen.add(alloc)
                live += points(alloc.result) * _itemsize(alloc.result)
        peak = max(peak, live)
        if isinstance(op, (ppu.DmaLoadOp, ppu.DmaStoreOp)):
            _, bound = op.window
            full = math.prod(n * t for n, t in zip(tile_counts(bound, op.tile_sizes),
                                                   op.tile_sizes))
            if full != math.prod(bound):
                copy = full * _itemsize(op.global_value)
                if isinstance(op, ppu.DmaLoadOp):
                    padded += copy
                else:
                    staging = max(staging, copy)
    return peak + padded + staging


def _partial_step_bytes(loop: ppu.LoopOp, launch: ppu.LaunchOp, points) -> int:
    """What a step that some tiles skip holds beside the loop's buffers (window.py): a copy of
    the state it carries (run everywhere, then undone in place), or, run on the range of tiles
    it does not skip, the whole arrays of the buffers outside the loop it writes kept beside
    the new ones it gives those rows. And the heap's holes: a step run on a range gives the
    body's own buffers arrays of that range's size (smaller step by step under a causal mask);
    glibc serves arrays below its mmap threshold (raised to the largest block freed, up to 32
    MiB) from its heap, where those blocks stay as holes that the whole-size arrays of a step
    run everywhere do not fit, so the heap grows by about the body's arrays once more
    (measured on attention_causal B=1, H=8, S=2048, D=64: 4.8 MiB free in the heap at the
    peak, the body's arrays being 3.8 MiB)."""
    inside = {id(o) for o in loop.body.walk()}
    written = {root_alloc(v) for o in loop.body.walk() for v in _written(o)}
    outside = [a for a in written if id(a) not in inside]
    nbytes = [points(a.result) * _itemsize(a.result) for a in written if id(a) in inside]
    return sum(nbytes) + max(sum(points(a.result) * _itemsize(a.result) for a in group)
                             for group in (carried(loop, launch), outside))


def _narrow(v: SSAValue) -> bool:
    """A float held in fewer than 4 bytes: the executor computes on a float32 copy of it."""
    d = dtypes.from_xdsl(v.type.element_type)
    return d.is_float and d.np_dtype.itemsize < 4


def _kept_product(op: ppu.MmaOp) -> bool:
    """A product in a loop run step by step whose operands' float32 copies and product stay in
    buffers the launch keeps (products.py), not temporaries."""
    return products.kept(op) and not mergeable(op.parent_op())


def _temporaries(op, held) -> int:
    """Bytes of the working copies `op` makes beyond the buffers it writes (compute.py): a
    float32 copy of each narrow operand, a float32 result rounded into a narrow destination, a
    select's result, a non-plain cast's rounding steps; a product (and its operands' float32
    copies, every step's for a merged loop); a quantisation's measured temporaries."""
    if isinstance(op, ppu.VMapOp):
        largest = max(held(v) for v in (*op.ins, op.out))
        dest = dtypes.from_xdsl(op.out.type.element_type).name
        chunks = _F16_SCRATCH if dest == "f16" else 0  # numerics.f16_from_f32's working arrays
        if op.function == "cast":
            return chunks if dest in ("f32", "f16", "bf16") else 3 * largest
        if op.function in ("add", "sub", "mul", "div", "neg", "abs", "sqrt") and dest in (
                "f32", "f16", "bf16") and not any(dtypes.from_xdsl(
                    v.type.element_type).kind != "float" for v in op.ins):
            return 0  # one numpy call, no float32 copies (compute.one_call)
        copies = sum(map(_narrow, op.ins)) + (_narrow(op.out) or op.function == "select")
        return copies * largest + chunks
    if isinstance(op, ppu.VReduceOp):
        return _narrow(op.input) * held(op.input)
    if isinstance(op, ppu.VQuantizeOp):
        return _QUANTIZE_SCRATCH * max(held(v) for v in (op.input, *op.outs))
    if isinstance(op, ppu.MmaOp) and not _kept_product(op):
        scaled = bool(op.lhs_scales or op.rhs_scales or op.fp8_fast is not None)
        integer = dtypes.from_xdsl(op.acc.type.element_type).is_int
        # a dequantised operand is widened, then scaled (the other's result already held)
        copied = sum(held(v) for v in (op.lhs, op.rhs) if scaled or integer or _narrow(v))
        loop = op.parent_op()  # a merged loop multiplies every step's operands at once
        merged = isinstance(loop, ppu.LoopOp) and mergeable(loop)
        # a merged loop of several steps gathers its operands along K too; one product's are
        # widened, then scaled in place (precision.dequantize)
        copied += (copied // 2) if scaled and merged and loop.trip_count > 1 else 0
        stepped = isinstance(loop, ppu.LoopOp) and not merged
        # the product and its reshaping, an integer one in int64 slices (compute.py); a scaled
        # product made anew every step of several leaves the heap that much slack (measured)
        products = (4 if integer else 2) + (stepped and scaled and loop.trip_count > 1)
        return copied * (loop.trip_count if merged else 1) + products * held(op.acc)
    return 0


def stored_inputs(kernel: ppu.KernelOp) -> set[SSAValue]:
    """The kernel arguments some `ppu.dma_store` writes (directly or through views): the
    executor copies those before the run."""
    out = set()
    for op in kernel.walk():
        if isinstance(op, ppu.DmaStoreOp):
            v = op.dest
            while isinstance(v.owner, ppu.ViewOp):
                v = v.owner.source
            out.add(v)
    return out


def estimate_host_bytes(kernel: ppu.KernelOp) -> int:
    """Peak host bytes a run of `kernel` on inputs in their declared dtypes is expected to take,
    those inputs included (an estimate meant to err high)."""
    total, peak = 0, 0
    stored = stored_inputs(kernel)
    for arg in kernel.inputs:  # the caller's array, and a copy of one a store writes
        total += (2 if arg in stored else 1) * _elements(arg) * _itemsize(arg)
    unmasked = coverage.unmasked_tensors(kernel)
    for v in [*kernel.outputs, *(op.result for op in kernel.body.block.ops
                                 if isinstance(op, ppu.GlobalOp))]:
        total += _elements(v) * (_itemsize(v) + (v not in unmasked))  # and its written-mask
    for op in kernel.body.block.ops:
        if isinstance(op, ppu.LaunchOp):
            peak = max(peak, _launch_bytes(op))
    return total + peak + _INTERPRETER


def ensure_host_memory(kernel: ppu.KernelOp, converted: int = 0,
                       estimate: int | None = None) -> None:
    """Refuse (ZK0505) before allocating when the estimate (`estimate` where the caller has
    it already), plus `converted` bytes of copies of inputs given in another dtype, exceeds the
    host-memory limit."""
    limit = host_memory_limit()
    if limit is None:
        return
    need = (estimate_host_bytes(kernel) if estimate is None else estimate) + converted
    if need > limit:
        raise error("ZK0505", f"executing kernel `{kernel.sym_name.data}` needs about {need} "
                    f"bytes of host memory, more than the limit of {limit} bytes",
                    span_of(kernel), help="use smaller shapes (-D NAME=VALUE) or tiles, or raise "
                    f"the limit with {MAX_HOST_BYTES_ENV}=<bytes>")
