"""`ppu` program -> `Workload`: what each launch asks of the DMA, tensor and vector engines.

Counts are exact: a DMA's bytes are summed over every tile it moves, with edge tiles clipped to
the tensor (tile indices are evaluated over the whole grid and loop, in closed form where each
index walks one axis, else with numpy the way the executor addresses them); compute is counted on whole tiles, as the engines run them. The
kernel's useful FLOPs (for achieved TFLOP/s) come from its `FLOPS` attribute (core/attrs.py:
the `tile` pass records them from the source-level matmuls, `lower-ppu` carries them over).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xdsl.dialects import arith
from xdsl.dialects.builtin import DictionaryAttr, MemRefType
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.core.attrs import FLOPS, live_steps, used_tiles
from zhenwu_cc.dialects import ppu
from zhenwu_cc.dialects.zk_attrs import PlaceAttr
from zhenwu_cc.dialects.loc import loc_text
from zhenwu_cc.runtime.cost.workload import Phase, Tensor, TileSizes, Work, Workload

if TYPE_CHECKING:  # numpy is imported where a sum is taken point by point: `cost` of a kernel
    import numpy as np  # whose indices each walk one axis never needs it (~0.1 s of start-up)

# index arithmetic -> the numpy function that evaluates it over the space
_INDEX_FNS = {arith.AddiOp: "add", arith.SubiOp: "subtract", arith.MuliOp: "multiply",
              arith.FloorDivSIOp: "floor_divide", arith.RemSIOp: "remainder"}


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


IndexExpr = tuple  # ("grid", d) | ("step",) | ("const", c) | (numpy fn name, lhs, rhs)


def _index_expr(v: SSAValue, grid_args: list[SSAValue], iv: SSAValue | None) -> IndexExpr:
    """A DMA index as data: grid dims, the loop's step and constants under index arithmetic."""
    if v in grid_args:
        return ("grid", grid_args.index(v))
    if v is iv:
        return ("step",)
    op = v.owner
    if isinstance(op, arith.ConstantOp):
        return ("const", op.value.value.data)
    return (_INDEX_FNS[type(op)], _index_expr(op.lhs, grid_args, iv),
            _index_expr(op.rhs, grid_args, iv))


class _Space:
    """The iteration space of a launch (grid dims, then the loop's steps) for index arithmetic.
    `const` maps the constants of the index arithmetic (a split's steps per part)."""

    def __init__(self, grid: tuple[int, ...], trips: int, const=None, live=None):
        self.shape = (*grid, trips)
        self.const = const
        self.values: dict[IndexExpr, np.ndarray] = {}
        self.live = None  # per grid point and step, where the loop skips steps
        self.live_rows = None  # (grid dim, [its points, steps]): the same, in two dimensions
        if live is not None:
            import numpy as np

            dim, lo, hi = live
            rank = len(self.shape)
            step = np.arange(trips)
            rows = (np.asarray(lo)[:, None] <= step) & (step < np.asarray(hi)[:, None])
            self.live_rows = dim, rows
            self.live = rows.reshape([grid[dim] if i == dim else 1 for i in range(rank - 1)]
                                     + [trips])

    def index(self, e: IndexExpr) -> np.ndarray:
        import numpy as np

        if e not in self.values:
            rank = len(self.shape)
            if e[0] == "grid":
                d = e[1]
                value = np.arange(self.shape[d]).reshape([-1 if i == d else 1
                                                          for i in range(rank)])
            elif e[0] == "step":
                value = np.arange(self.shape[-1]).reshape([1] * (rank - 1) + [-1])
            elif e[0] == "const":
                value = np.asarray(e[1] if self.const is None else self.const(e[1]))
            else:
                value = getattr(np, e[0])(self.index(e[1]), self.index(e[2]))
            self.values[e] = value
        return self.values[e]

    def total(self, per_point: np.ndarray, in_loop: bool) -> int:
        """Sum a broadcastable per-point count over the space (the loop dim only if in it)."""
        full = list(self.shape) if in_loop else [*self.shape[:-1], 1]
        if isinstance(per_point, int) and not (in_loop and self.live is not None):
            return per_point * math.prod(full)  # the same count at every point
        import numpy as np

        per_point = np.asarray(per_point)
        if in_loop and self.live is not None:  # skipped steps do no work
            per_point = per_point * self.live
        arr = per_point.reshape([1] * (len(full) - per_point.ndim) + list(per_point.shape))
        repeat = math.prod(n for n, m in zip(full, arr.shape) if m == 1)
        return int(arr.sum(dtype=np.int64)) * repeat


def _dma_elements(dims, space: _Space, in_loop: bool, dim=None) -> int:
    """Elements a DMA moves over the space: per dimension (index, tile size, bound), the part
    of each tile inside the bound (edge tiles clipped), multiplied over dimensions. Where each
    dimension's index is one grid dim, the step or a constant, each on an axis of its own, the
    sum is a product of per-dimension sums in closed form; otherwise numpy sums it point by
    point. Where the loop skips steps per point of one grid dim (`live_rows`), the extents
    along that dim and the step are summed over the live steps alone (a 2-D product)."""
    full = space.shape if in_loop else (*space.shape[:-1], 1)
    live = space.live_rows if in_loop else None
    if live is not None:  # numpy is there already: it computed the live rows
        import numpy as np
    total, used, extents = 1, set(), {}
    for idx, size, lim in dims:
        size = size if dim is None else dim(size)
        if idx[0] == "const":
            c = idx[1] if space.const is None else space.const(idx[1])
            total *= min(max(lim - c * size, 0), size)
            continue
        axis = idx[1] if idx[0] == "grid" else len(full) - 1 if idx[0] == "step" else None
        if axis is None or axis in used:
            return _dma_points(dims, space, in_loop, dim)
        used.add(axis)
        n = full[axis]
        if live is not None and axis in (live[0], len(full) - 1):
            extents[axis] = np.clip(lim - np.arange(n, dtype=np.int64) * size, 0, size)
            continue
        whole, rest = divmod(lim, size)  # whole tiles, then one partial tile (if reached)
        total *= size * min(n, whole) + (rest if whole < n else 0)
    if live is not None:
        row, rows = live
        per_row = extents.get(row, np.ones(full[row], np.int64))
        per_step = extents.get(len(full) - 1, np.ones(full[-1], np.int64))
        total *= int(per_row @ rows.astype(np.int64) @ per_step)
        used.update((row, len(full) - 1))
    return total * math.prod(n for a, n in enumerate(full) if a not in used)


def _dma_points(dims, space: _Space, in_loop: bool, dim=None) -> int:
    """`_dma_elements` summed point by point over the space (any index arithmetic)."""
    import numpy as np

    extents = None
    for idx, size, lim in dims:
        size = size if dim is None else dim(size)
        e = np.clip(lim - space.index(idx) * size, 0, size)
        extents = e if extents is None else extents * e
    return space.total(1 if extents is None else extents, in_loop)


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class OpWork:
    """What one ppu op does, as numbers a tile size change maps (see `phase_of`): `shape`
    (the elements it computes; a matmul's result tile), `k` (a matmul's K tile), `dims`
    (a DMA's (index, tile size, bound) per dimension), `promotions` (a block-scaled matmul's
    stepped f32 scales: (shape, axis))."""

    kind: str
    where: str
    in_loop: bool
    dtype: str
    tensor: str
    loc: str
    op: str
    shape: tuple[int, ...] = ()
    k: int = 0
    dims: tuple = ()
    element: object = None  # a DMA's element DType (its bytes per element)
    promotions: tuple = ()


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class PhaseSpec:
    """One launch as data: its work per op and the numbers `phase_of` needs."""

    name: str
    loc: str
    grid: tuple[int, ...]
    trips: int
    looped: bool
    buffers: int
    sram: int
    ops: tuple[OpWork, ...]
    tile: TileSizes | None
    live: tuple[int, tuple[int, ...], tuple[int, ...]] | None = None  # `loop.live_steps`
    reload_waits: str = ""  # `Phase.reload_waits`
    indexed: dict[str, frozenset[int]] = field(default_factory=dict)  # grid dims loads index by


def _op_work(op: Operation, where: str, in_loop: bool, loc: str, names: _Names,
             grid_args: list[SSAValue], iv: SSAValue | None,
             stepped: set[SSAValue] = frozenset()) -> OpWork | None:
    """The work of one op over the phase; `stepped` holds the buffers the loop loads anew
    every step."""
    if isinstance(op, (ppu.DmaLoadOp, ppu.DmaStoreOp)):
        t = op.global_value.type
        kind = "load" if isinstance(op, ppu.DmaLoadOp) else "store"
        _, bound = op.window
        dims = tuple((_index_expr(i, grid_args, iv), size, lim)
                     for i, size, lim in zip(op.indices, op.tile_sizes, bound))
        return OpWork(kind, where, in_loop, dtypes.from_xdsl(t.element_type).name,
                      names.names[op.global_value], loc, op.name, dims=dims,
                      element=dtypes.from_xdsl(t.element_type))
    if isinstance(op, ppu.MmaOp):
        f32 = dtypes.to_xdsl(dtypes.F32)
        promotions = tuple((tuple(s.type.get_shape()), axis)
                           for scales, axis in ((op.lhs_scales, -1), (op.rhs_scales, -2))
                           for s in scales if s.type.element_type == f32 and s in stepped)
        return OpWork("mma", where, in_loop, dtypes.from_xdsl(op.lhs.type.element_type).name,
                      "", loc, op.name, shape=tuple(op.acc.type.get_shape()),
                      k=op.lhs.type.get_shape()[-1], promotions=promotions)
    if isinstance(op, ppu.VQuantizeOp):
        return OpWork("quantize", where, in_loop, _dtype(op.outs[0]), "", loc, op.name,
                      shape=tuple(op.input.type.get_shape()))
    if isinstance(op, ppu.VMapOp):
        kind = "transcendental" if op.function in ppu.TRANSCENDENTAL else "vector"
        return OpWork(kind, where, in_loop, _dtype(op.out), "", loc, op.name,
                      shape=tuple(op.out.type.get_shape()))
    if isinstance(op, ppu.VReduceOp):
        return OpWork("vector", where, in_loop, _dtype(op.input), "", loc, op.name,
                      shape=tuple(op.input.type.get_shape()))
    if isinstance(op, (ppu.VTransposeOp, ppu.FillOp, ppu.VIotaOp)):
        if _free_for_the_tensor_engine(op):
            return None
        return OpWork("vector", where, in_loop, _dtype(op.out), "", loc, op.name,
                      shape=tuple(op.out.type.get_shape()))
    return None


def _free_for_the_tensor_engine(op: Operation) -> bool:
    """A zero fill that only starts a matmul's accumulator, or a transpose that only turns a
    matmul's operand: tensor engines start from zero and read either operand layout (Hopper's
    wgmma: a scale-D of 0, transposed 16-bit operands), so neither costs vector work."""
    if isinstance(op, ppu.FillOp) and op.number != 0.0:
        return False
    if not isinstance(op, (ppu.FillOp, ppu.VTransposeOp)):
        return False
    user = _next_user(op, op.out)
    if not isinstance(user, ppu.MmaOp):
        return False
    if isinstance(op, ppu.FillOp):
        return user.acc is op.out and op.out not in (user.lhs, user.rhs)
    return op.out in (user.lhs, user.rhs) and user.acc is not op.out


def _next_user(op: Operation, buffer: SSAValue) -> Operation | None:
    """The first op after `op` (in its block, looking into loops) that names `buffer`."""
    cur = op.next_op
    while cur is not None:
        for inner in cur.walk():
            if buffer in inner.operands:
                return inner
        cur = cur.next_op
    return None


def _dtype(v: SSAValue) -> str:
    return dtypes.from_xdsl(v.type.element_type).name


def _reload_waits(ops: list[Operation], loop: ppu.LoopOp | None) -> str:
    """How far into a tile the next tile's prologue loads must wait (`Phase.reload_waits`):
    a load before the loop into a buffer with one slot cannot run ahead into the next tile
    while this tile still reads that buffer in its loop (`loop`), or while its epilogue uses
    SRAM that overlaps it, a buffer placed where the load's was once the loop ended
    (`epilogue`: until its stores have drained)."""
    if loop is None:
        return ""
    held = [(a.byte_offset, a.byte_offset + a.nbytes) for op in ops[:ops.index(loop)]
            if isinstance(op, ppu.DmaLoadOp) and isinstance(a := op.dest.owner, ppu.AllocOp)
            and a.slots == 1]

    def touches(op: Operation) -> bool:
        return any(isinstance(a := v.owner, ppu.AllocOp)
                   and any(a.byte_offset < end and start < a.byte_offset + a.nbytes
                           for start, end in held)
                   for inner in op.walk() for v in inner.operands)

    if any(touches(op) for op in ops[ops.index(loop) + 1:]):
        return "epilogue"
    return "loop" if touches(loop) else ""


def phase_spec(launch: ppu.LaunchOp, names: _Names, written: set[str]) -> PhaseSpec:
    """One launch's work as data. Loads of a tensor an earlier phase wrote are charged to this
    phase's line, the one that reads it: the load's own location may be an op of the producer's
    line recomputed here (a matmul's epilogue inlined into the softmax that reads its result)."""
    ops = list(launch.body.block.ops)
    here = loc_text(launch)
    loop = next((op for op in ops if isinstance(op, ppu.LoopOp)), None)
    grid_args = list(launch.body.block.args)
    iv = loop.induction_var if loop else None
    work: list[OpWork] = []
    where = "prologue" if loop else "body"

    def loc_of(op, load: bool) -> str:
        return here if load and names.names[op.global_value] in written else loc_text(op)

    for op in ops:
        if op is loop:
            stepped = {o.dest for o in loop.body.block.ops if isinstance(o, ppu.DmaLoadOp)}
            for inner in loop.body.block.ops:
                w = _op_work(inner, "body", True,
                             loc_of(inner, isinstance(inner, ppu.DmaLoadOp)), names,
                             grid_args, iv, stepped)
                if w is not None:
                    work.append(w)
            where = "epilogue"
            continue
        w = _op_work(op, where, False, loc_of(op, isinstance(op, ppu.DmaLoadOp)), names,
                     grid_args, iv)
        if w is not None:
            work.append(w)
    allocs = [op for op in launch.walk() if isinstance(op, ppu.AllocOp)]
    sram = max((a.byte_offset + a.nbytes for a in allocs), default=0)
    buffers = max((a.slots for a in allocs), default=1)
    written.update(w.tensor for w in work if w.kind == "store")
    used = used_tiles(launch)
    tile = None if used is None else TileSizes(
        tuple(used["sizes"]), used["step"], used["directive"],
        tuple(used["directive_sizes"]) if used["directive_sizes"] is not None else None,
        used["parts"], used["split"])
    return PhaseSpec(f"{launch.role.data} {here}".strip(), here, tuple(launch.grid_shape),
                     loop.trip_count if loop else 1, loop is not None, buffers, sram,
                     tuple(work), tile, live_steps(loop) if loop else None,
                     _reload_waits(ops, loop), _indexed_dims(work))


def phase_of(spec: PhaseSpec, tensors: dict[str, Tensor], grid: tuple[int, ...] | None = None,
             trips: int | None = None, sram: int | None = None, tile: TileSizes | None = None,
             dim=None, const=None, live=None, buffers=None) -> Phase:
    """The `Phase` of `spec`, as lowered; or with other numbers: the `grid`, loop `trips`,
    `sram` and `tile` of another schedule whose tiles differ only in size, `dim` mapping each
    tile dimension of the spec to its size there, `const` each index constant, `live` its
    loop's live steps and `buffers` its loads' slots (the fast cost path,
    zhenwu_cc/fast_cost.py)."""
    grid = spec.grid if grid is None else grid
    trips = spec.trips if trips is None else trips
    tiles = math.prod(grid)
    space = _Space(grid, trips, const, spec.live if live is None else live)
    looped = space.total(1, True)  # tile-steps run: fewer where the loop skips steps
    size = (lambda shape: math.prod(shape)) if dim is None else (
        lambda shape: math.prod(dim(n) for n in shape))
    work: list[Work] = []
    unique: dict[str, int] = defaultdict(int)
    for w in spec.ops:
        count = looped if w.in_loop else tiles
        if w.kind in ("load", "store"):
            amount = w.element.nbytes(_dma_elements(w.dims, space, w.in_loop, dim))
            if w.kind == "load":
                unique[w.tensor] += amount
            work.append(Work(w.kind, amount, w.where, w.dtype, w.tensor, w.loc, w.op))
        elif w.kind == "mma":
            c = size(w.shape)
            k = w.k if dim is None else dim(w.k)
            work.append(Work("mma", 2 * c * k * count, w.where, w.dtype, "", w.loc, w.op))
            promotions = max((shape[axis] if dim is None else dim(shape[axis])
                              for shape, axis in w.promotions), default=0)
            if promotions:
                work.append(Work("vector", c * promotions * count, w.where, "f32", "", w.loc,
                                 w.op))
        else:
            work.append(Work(w.kind, size(w.shape) * count, w.where, w.dtype, "", w.loc, w.op))
    bounded = {name: min(total, tensors[name].bytes) for name, total in unique.items()}
    steps = looped // tiles if spec.looped else trips  # per tile, on average where skipped
    return Phase(spec.name, tiles, steps, spec.buffers if buffers is None else buffers,
                 spec.sram if sram is None else sram,
                 tuple(work), bounded, _shared_dims(spec, grid), spec.loc,
                 spec.tile if tile is None else tile, spec.reload_waits)


def _shared_dims(spec: PhaseSpec, grid: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per loaded tensor, the grid dims of more than one point that no load of it indexes by:
    the tiles along them read the same slices."""
    return {name: tuple(d for d, n in enumerate(grid) if n > 1 and d not in dims)
            for name, dims in spec.indexed.items()}


def _indexed_dims(work: list[OpWork]) -> dict[str, frozenset[int]]:
    """Per loaded tensor, the grid dims its loads' indices use (they do not change with the
    tile sizes, so the fast cost path reuses them)."""
    used: dict[str, set[int]] = {}
    for w in work:
        if w.kind == "load":
            dims = used.setdefault(w.tensor, set())
            for idx, _, _ in w.dims:
                dims.update(_grid_dims(idx))
    return {name: frozenset(dims) for name, dims in used.items()}


def _grid_dims(e: IndexExpr) -> set[int]:
    """The grid dims an index expression uses."""
    if e[0] == "grid":
        return {e[1]}
    if e[0] in ("step", "const"):
        return set()
    return _grid_dims(e[1]) | _grid_dims(e[2])


def workload_of(kernel: ppu.KernelOp) -> Workload:
    """The cost model's view of a lowered kernel."""
    names = _Names(kernel)
    written: set[str] = set()
    phases = tuple(phase_of(phase_spec(op, names, written), names.tensors)
                   for op in kernel.body.block.ops if isinstance(op, ppu.LaunchOp))
    flops = kernel.attributes.get(FLOPS)
    useful = ({k: v.value.data for k, v in flops.data.items()}
              if isinstance(flops, DictionaryAttr) else {})
    return Workload(kernel.sym_name.data, phases, names.tensors, useful)
