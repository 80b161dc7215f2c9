"""`ppu` program -> `Workload`: what each launch asks of the DMA, tensor and vector engines.

Counts are exact: a DMA's bytes are summed over every tile it moves, with edge tiles clipped to
the tensor (tile indices are evaluated over the whole grid and loop with numpy, the way the
executor addresses them); compute is counted on whole tiles, as the engines run them. The
kernel's useful FLOPs (for achieved TFLOP/s) come from its `FLOPS` attribute (core/attrs.py:
the `tile` pass records them from the source-level matmuls, `lower-ppu` carries them over).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import DictionaryAttr, MemRefType
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.core.attrs import FLOPS, live_steps, used_tiles
from zhenwu_cc.dialects import ppu
from zhenwu_cc.dialects.zk_attrs import PlaceAttr
from zhenwu_cc.dialects.loc import loc_text
from zhenwu_cc.runtime.cost.workload import Phase, Tensor, TileSizes, Work, Workload

_INDEX_FNS = {arith.AddiOp: np.add, arith.SubiOp: np.subtract, arith.MuliOp: np.multiply,
              arith.FloorDivSIOp: np.floor_divide, arith.RemSIOp: np.remainder}


def _elements(t: MemRefType) -> int:
    return math.prod(t.get_shape())


def _nbytes(t: MemRefType, count: int | None = None) -> int:
    return dtypes.from_xdsl(t.element_type).nbytes(_elements(t) if count is None else count)


class _Names:
    """Global tensors by name: kernel arguments by their names, globals numbered, views resolved
    to the tensor they look into."""

    def __init__(self, kernel: ppu.KernelOp):
        self.names: dict[SSAValue, str] = {}
        self.tensors: dict[str, Tensor] = {}
        n_in = len(kernel.inputs)
        for i, arg in enumerate(kernel.body.block.args):
            role = "input" if i < n_in else "output"
            self._add(arg, arg.name_hint or f"arg{i}", role, kernel.arg_attr(i, "ppu.hbm"),
                      kernel.arg_attr(i, attrs.PLACE))
        for op in kernel.body.block.ops:
            if isinstance(op, ppu.GlobalOp):
                self._add(op.result, op.result.name_hint or f"tmp{len(self.tensors)}",
                          "intermediate", op.attributes.get("ppu.hbm"),
                          op.attributes.get(attrs.PLACE))
            elif isinstance(op, ppu.ViewOp):
                self.names[op.result] = self.names[op.source]

    def _add(self, v: SSAValue, name: str, role: str, hbm, place) -> None:
        while name in self.tensors:
            name += "_"
        self.names[v] = name
        if isinstance(hbm, ppu.HbmAttr):  # placed by `place-hbm`: the stacks it really spans
            stacks, l2 = hbm.stack_ids, hbm.l2_resident
        else:  # lowered without `place-hbm`: the schedule's directive alone
            stacks = place.stack_ids if isinstance(place, PlaceAttr) else ()
            l2 = isinstance(place, PlaceAttr) and place.memory.data == "l2"
        self.tensors[name] = Tensor(name, _nbytes(v.type), role, tuple(stacks), l2)


class _Space:
    """The iteration space of a launch (grid dims, then the loop's steps) for index arithmetic."""

    def __init__(self, launch: ppu.LaunchOp, loop: ppu.LoopOp | None):
        grid = launch.grid_shape
        self.shape = (*grid, loop.trip_count if loop else 1)
        rank = len(self.shape)
        self.values: dict[SSAValue, np.ndarray] = {}
        for d, arg in enumerate(launch.body.block.args):
            self.values[arg] = np.arange(grid[d]).reshape([-1 if i == d else 1
                                                           for i in range(rank)])
        self.live = None  # per grid point and step, where the loop skips steps
        if loop is not None:
            step = np.arange(loop.trip_count).reshape([1] * (rank - 1) + [-1])
            self.values[loop.induction_var] = step
            window = live_steps(loop)
            if window is not None:
                dim, lo, hi = window
                rows = self.values[launch.body.block.args[dim]]
                self.live = (np.asarray(lo)[rows] <= step) & (step < np.asarray(hi)[rows])

    def index(self, v: SSAValue) -> np.ndarray:
        if v not in self.values:
            op = v.owner
            if isinstance(op, arith.ConstantOp):
                self.values[v] = np.asarray(op.value.value.data)
            else:
                fn = _INDEX_FNS[type(op)]
                self.values[v] = fn(self.index(op.lhs), self.index(op.rhs))
        return self.values[v]

    def total(self, per_point: np.ndarray, in_loop: bool) -> int:
        """Sum a broadcastable per-point count over the space (the loop dim only if in it)."""
        per_point = np.asarray(per_point)
        if in_loop and self.live is not None:  # skipped steps do no work
            per_point = per_point * self.live
        full = list(self.shape) if in_loop else [*self.shape[:-1], 1]
        arr = per_point.reshape([1] * (len(full) - per_point.ndim) + list(per_point.shape))
        repeat = math.prod(n for n, m in zip(full, arr.shape) if m == 1)
        return int(arr.sum(dtype=np.int64)) * repeat


def _dma_elements(op, space: _Space, in_loop: bool) -> int:
    base, bound = op.window
    extents = None
    for idx, size, lim in zip(op.indices, op.tile_sizes, bound):
        e = np.clip(lim - space.index(idx) * size, 0, size)
        extents = e if extents is None else extents * e
    return space.total(1 if extents is None else extents, in_loop)


def _work(op: Operation, space: _Space, in_loop: bool, count: int, names: _Names,
          stepped: set[SSAValue] = frozenset()) -> list[tuple[str, int, str, str]]:
    """(kind, amount, dtype, tensor) of the work one op does over the phase; `stepped` holds
    the buffers the loop loads anew every step."""
    if isinstance(op, (ppu.DmaLoadOp, ppu.DmaStoreOp)):
        t = op.global_value.type
        n = _dma_elements(op, space, in_loop)
        kind = "load" if isinstance(op, ppu.DmaLoadOp) else "store"
        return [(kind, _nbytes(t, n), dtypes.from_xdsl(t.element_type).name,
                 names.names[op.global_value])]
    if isinstance(op, ppu.MmaOp):
        a, b, c = (v.type.get_shape() for v in (op.lhs, op.rhs, op.acc))
        flops = 2 * math.prod(c) * a[-1]
        work = [("mma", flops * count, dtypes.from_xdsl(op.lhs.type.element_type).name, "")]
        promotions = _promotions(op, stepped)
        if promotions:
            work.append(("vector", math.prod(c) * promotions * count, "f32", ""))
        return work
    if isinstance(op, ppu.VQuantizeOp):
        return [("quantize", _elements(op.input.type) * count, _dtype(op.outs[0]), "")]
    if isinstance(op, ppu.VMapOp):
        kind = "transcendental" if op.function in ppu.TRANSCENDENTAL else "vector"
        return [(kind, _elements(op.out.type) * count, _dtype(op.out), "")]
    if isinstance(op, ppu.VReduceOp):
        return [("vector", _elements(op.input.type) * count, _dtype(op.input), "")]
    if isinstance(op, (ppu.VTransposeOp, ppu.FillOp, ppu.VIotaOp)):
        return [("vector", _elements(op.out.type) * count, _dtype(op.out), "")]
    return []


def _promotions(mma: ppu.MmaOp, stepped: set[SSAValue]) -> int:
    """How often a scaled mma's float32 scales multiply a partial sum per step: once per scale
    block along K when the scales change with the K step (block scaling, DeepSeek-V3 style, on
    the vector engine). Scales constant over K apply once per tile (negligible); E8M0 and E4M3
    block scales act inside the tensor engine."""
    f32 = dtypes.to_xdsl(dtypes.F32)
    return max((s.type.get_shape()[axis]
                for scales, axis in ((mma.lhs_scales, -1), (mma.rhs_scales, -2))
                for s in scales if s.type.element_type == f32 and s in stepped), default=0)


def _dtype(v: SSAValue) -> str:
    return dtypes.from_xdsl(v.type.element_type).name


def _phase(launch: ppu.LaunchOp, names: _Names, written: set[str]) -> Phase:
    """One launch's work. Loads of a tensor an earlier phase wrote are charged to this phase's
    line, the one that reads it: the load's own location may be an op of the producer's line
    recomputed here (a matmul's epilogue inlined into the softmax that reads its result)."""
    ops = list(launch.body.block.ops)
    here = loc_text(launch)
    loop = next((op for op in ops if isinstance(op, ppu.LoopOp)), None)
    space = _Space(launch, loop)
    tiles = launch.tiles
    steps = space.total(1, True) // tiles if loop else 1  # per tile, on average where skipped
    work: list[Work] = []
    unique: dict[str, int] = defaultdict(int)
    where = "prologue" if loop else "body"
    for op in ops:
        if op is loop:
            stepped = {o.dest for o in loop.body.block.ops if isinstance(o, ppu.DmaLoadOp)}
            for inner in loop.body.block.ops:
                for w in _work(inner, space, True, space.total(1, True), names, stepped):
                    loc = here if w[0] == "load" and w[3] in written else loc_text(inner)
                    work.append(Work(w[0], w[1], "body", w[2], w[3], loc, inner.name))
            where = "epilogue"
            continue
        for w in _work(op, space, False, tiles, names):
            loc = here if w[0] == "load" and w[3] in written else loc_text(op)
            work.append(Work(w[0], w[1], where, w[2], w[3], loc, op.name))
    for w in work:
        if w.kind == "load":
            unique[w.tensor] += w.amount
    allocs = [op for op in launch.walk() if isinstance(op, ppu.AllocOp)]
    sram = max((a.byte_offset + a.nbytes for a in allocs), default=0)
    buffers = max((a.slots for a in allocs), default=1)
    bounded = {name: min(total, names.tensors[name].bytes) for name, total in unique.items()}
    written.update(w.tensor for w in work if w.kind == "store")
    used = used_tiles(launch)
    tile = None if used is None else TileSizes(
        tuple(used["sizes"]), used["step"], used["directive"],
        tuple(used["directive_sizes"]) if used["directive_sizes"] is not None else None,
        used["parts"], used["split"])
    return Phase(f"{launch.role.data} {here}".strip(), tiles, steps, buffers, sram,
                 tuple(work), bounded, here, tile)


def workload_of(kernel: ppu.KernelOp) -> Workload:
    """The cost model's view of a lowered kernel."""
    names = _Names(kernel)
    written: set[str] = set()
    phases = tuple(_phase(op, names, written) for op in kernel.body.block.ops
                   if isinstance(op, ppu.LaunchOp))
    flops = kernel.attributes.get(FLOPS)
    useful = ({k: v.value.data for k, v in flops.data.items()}
              if isinstance(flops, DictionaryAttr) else {})
    return Workload(kernel.sym_name.data, phases, names.tensors, useful)
