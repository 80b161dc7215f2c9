"""The tuner's search space: the schedule choices a compiled kernel has, one small class per kind
of choice (a tile's sizes, a matmul's split-K, a reduction's split, a fused group on or off, a
matmul's operand precision, a softmax's `scale unit`, a parameter's L2 pinning, the buffering
depth), and the schedule a point of the space stands for.

A new kind of choice is one more `Choice` subclass: its parameters and options, how it sets a
`Schedule`, and optionally why a candidate cannot fit on chip and a lower bound of the time of the
phase it governs. Tile sizes, split-K and buffers are costed on the kernel as compiled; the other
kinds change which grids there are, so a candidate with them is costed on the kernel compiled
again with their directives (`Schedule.structure`, `tune_eval.variant`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from zhenwu_cc.core import dtypes

MATMUL_MIN, MATMUL_MAX = 16, 512  # matmul tile sizes searched (powers of two)
MAX_SPLIT_K = 16
MAX_SPLIT = 64  # parts a `split NAME S` choice offers at most
AS_WRITTEN = "as written"  # a precision choice's option that adds no directive
NARROWER = ("bf16", "f8E4M3FN")  # operand dtypes a precision choice offers, widest first
FP8 = "f8E4M3FN"
UNIT = f"{FP8} scale unit"  # what a softmax's precision choice offers (`UnitChoice`)


@dataclass(frozen=True)
class Schedule:
    """A candidate schedule: what `CompiledKernel.retile()` takes, as plain values (it travels
    to Dask workers and into the cache as JSON)."""

    tiles: tuple[tuple[str, tuple[int, ...]], ...] = ()
    split_k: tuple[tuple[str, int], ...] = ()
    buffers: int | None = None
    splits: tuple[tuple[str, int], ...] = ()  # `split NAME S`
    unfused: tuple[str, ...] = ()  # `fuse NAME off`
    precision: tuple[tuple[tuple[str, ...], str], ...] = ()  # `precision A, B as DTYPE`
    places: tuple[tuple[str, str], ...] = ()  # `place NAME in WHERE`

    def directives(self) -> list[str]:
        """The schedule lines, as a `schedule` block writes them."""
        split = dict(self.split_k)
        lines = [f"tile {name} [{', '.join(map(str, sizes))}]"
                 + (f" split_k {split[name]}" if split.get(name, 1) > 1 else "")
                 for name, sizes in self.tiles]
        return lines + self.structure() + (
            [f"buffers {self.buffers}"] if self.buffers is not None else [])

    def structure(self) -> list[str]:
        """The lines that change which grids the kernel has (not only their sizes): a candidate
        with any is costed on the kernel compiled again with them."""
        return ([f"split {n} {parts}" for n, parts in self.splits]
                + [f"fuse {n} off" for n in self.unfused]
                + [f"precision {', '.join(names)} as {dtype}" for names, dtype in self.precision]
                + [f"place {n} in {where}" for n, where in self.places])

    def text(self) -> str:
        return "; ".join(self.directives()) or "(as written)"

    def to_dict(self) -> dict:
        return {"tiles": {n: list(s) for n, s in self.tiles},
                "split_k": {n: k for n, k in self.split_k if k > 1}, "buffers": self.buffers,
                "splits": dict(self.splits), "unfused": list(self.unfused),
                "precision": [[list(names), dtype] for names, dtype in self.precision],
                "places": dict(self.places)}

    @staticmethod
    def from_dict(d: dict) -> Schedule:
        return Schedule(tuple((n, tuple(s)) for n, s in d["tiles"].items()),
                        tuple(d["split_k"].items()), d["buffers"], tuple(d["splits"].items()),
                        tuple(d["unfused"]),
                        tuple((tuple(names), dtype) for names, dtype in d["precision"]),
                        tuple(d["places"].items()))


class Choice:
    """One decision of a schedule: named parameters, each with its options in a fixed order."""

    key: str
    params: tuple[tuple[str, tuple[int | str, ...]], ...]

    def apply(self, values: dict[str, int], s: Schedule) -> Schedule:
        raise NotImplementedError

    def misfit(self, s: Schedule, target) -> str | None:
        """Why `s` cannot fit on chip (before compiling it), or None."""
        return None

    def floor(self, s: Schedule, target) -> float:
        """A lower bound of the time of the phase this choice governs under `s` (seconds)."""
        return 0.0

    def describe(self) -> str:
        return f"{self.key}: " + " x ".join(f"{p.split('.')[-1]} {len(o)}" for p, o in self.params)


@dataclass(eq=False)
class TileChoice(Choice):
    """`tile NAME [sizes]`: powers of two per dimension ([M, N, K] for a matmul)."""

    name: str
    labels: tuple[str, ...]
    options: tuple[tuple[int, ...], ...]
    elem_bytes: int  # bytes of an element of a tile (the matmul's operands, else the value)
    matmul: tuple[int, int, int, int, str] | None = None  # batch, M, N, K, operand dtype
    operands: tuple[str, ...] = ()  # the names a `PrecisionChoice` for this matmul quantises

    def __post_init__(self):
        self.key = f"tile {self.name}"
        self.params = tuple((f"tile.{self.name}.{label}", opts)
                            for label, opts in zip(self.labels, self.options))

    def apply(self, values, s):
        sizes = tuple(values[p] for p, _ in self.params)
        return replace(s, tiles=s.tiles + ((self.name, sizes),))

    def _sizes(self, s: Schedule) -> tuple[int, ...]:
        return dict(s.tiles)[self.name]

    def _dtype(self, s: Schedule) -> str:
        """The matmul's operand dtype under `s`: its precision choice's, else as compiled."""
        return (dict(s.precision).get(self.operands) or self.matmul[4]).split()[0]

    def misfit(self, s, target):
        sizes = self._sizes(s)
        buffers = s.buffers or _default_buffers()
        if self.matmul is not None:
            tm, tn, tk = sizes
            elem = min(self.elem_bytes, max(dtypes.get(self._dtype(s)).nbytes(1), 1))
            need = (tm * tk + tk * tn) * elem * buffers + tm * tn * 4
        else:
            need = math.prod(sizes) * self.elem_bytes
        if need > target.sram_per_cu:
            return f"needs at least {need} bytes of SRAM, more than {target.sram_per_cu}"
        return None

    def floor(self, s, target):
        """The matmul's useful FLOPs on the compute units its tiles can keep busy."""
        if self.matmul is None:
            return 0.0
        batch, m, n, k, _ = self.matmul
        tm, tn, _ = self._sizes(s)
        tiles = batch * -(-m // tm) * -(-n // tn) * dict(s.split_k).get(self.name, 1)
        per_cu = _peak(target, self._dtype(s)) / target.compute_units
        if per_cu <= 0:
            return 0.0
        return 2 * batch * m * n * k / (min(tiles, target.compute_units) * per_cu)


@dataclass(eq=False)
class FlashTileChoice(TileChoice):
    """`tile o [BQ, BD, BKV]` of a flash-attention grid, with the `tile s [BQ, BKV, K]` that
    must agree with it (ZK0618) set to match (its head-dim step K kept as compiled)."""

    agreeing: str = ""
    agreeing_k: int = 0

    def apply(self, values, s):
        bq, bd, bkv = (values[p] for p, _ in self.params)
        return replace(s, tiles=s.tiles + ((self.name, (bq, bd, bkv)),
                                           (self.agreeing, (bq, bkv, self.agreeing_k))))


@dataclass(eq=False)
class SharedTileChoice(TileChoice):
    """`tile NAME [M, N, K]` of a grid that computes two matmuls (a fused operand chain), with
    the other matmul's directive, which must agree (ZK0618), set to the same sizes."""

    agreeing: str = ""

    def apply(self, values, s):
        sizes = tuple(values[p] for p, _ in self.params)
        return replace(s, tiles=s.tiles + ((self.name, sizes), (self.agreeing, sizes)))


@dataclass(eq=False)
class SplitKChoice(Choice):
    """`split_k N` on a matmul's `tile` line: for matmuls with fewer tiles than compute units."""

    name: str
    options: tuple[int, ...]

    def __post_init__(self):
        self.key = f"split_k {self.name}"
        self.params = ((f"split_k.{self.name}", self.options),)

    def apply(self, values, s):
        n = values[self.params[0][0]]
        return replace(s, split_k=s.split_k + ((self.name, n),)) if n > 1 else s


@dataclass(eq=False)
class BuffersChoice(Choice):
    """`buffers N`: the DMA multi-buffering depth of the whole kernel."""

    options: tuple[int, ...]

    def __post_init__(self):
        self.key = "buffers"
        self.params = (("buffers", self.options),)

    def apply(self, values, s):
        return replace(s, buffers=values["buffers"])


@dataclass(eq=False)
class SplitChoice(Choice):
    """`split NAME S` on a reduction whose rows are fewer than the compute units: 0 keeps the
    schedule as written (the compiler's split, or the source's directive), 1 asks for none."""

    name: str
    options: tuple[int, ...]

    def __post_init__(self):
        self.key = f"split {self.name}"
        self.params = ((f"split.{self.name}", self.options),)

    def apply(self, values, s):
        n = values[self.params[0][0]]
        return replace(s, splits=s.splits + ((self.name, n),)) if n else s


@dataclass(eq=False)
class FuseChoice(Choice):
    """`fuse NAME off` for a fused group (flash attention, a fused operand chain, a matmul keeping
    its row reductions' parts): the unfused grids may be faster where the fused one runs few
    tiles."""

    name: str

    def __post_init__(self):
        self.key = f"fuse {self.name}"
        self.params = ((f"fuse.{self.name}", ("on", "off")),)

    def apply(self, values, s):
        off = values[self.params[0][0]] == "off"
        return replace(s, unfused=s.unfused + (self.name,)) if off else s


@dataclass(eq=False)
class PrecisionChoice(Choice):
    """`precision A, B as DTYPE` on the parameters a matmul (or matmuls sharing an operand)
    multiplies: offered only with a numerics budget (`--max-rel-error`), which verification
    then holds each candidate to against the exact math."""

    operands: tuple[str, ...]
    options: tuple[str, ...]  # AS_WRITTEN, then narrower dtypes

    def __post_init__(self):
        self.key = f"precision {', '.join(self.operands)}"
        self.params = ((f"precision.{','.join(self.operands)}", self.options),)

    def apply(self, values, s):
        dtype = values[self.params[0][0]]
        return s if dtype == AS_WRITTEN else replace(
            s, precision=s.precision + ((self.operands, dtype),))


@dataclass(eq=False)
class UnitChoice(Choice):
    """`precision p as f8E4M3FN scale unit` on `p = softmax(...)` that is the left operand of a
    matmul over the softmax's axis whose other operand is FP8: then that matmul runs at FP8 rate
    (in the flash grid for attention). Where that operand is a parameter `value` with no
    directive, the choice writes its `precision value as f8E4M3FN` too: either alone leaves
    `p @ v` at the wider rate. Offered, like `PrecisionChoice`, only with a numerics budget."""

    name: str
    value: str = ""  # the parameter whose FP8 directive the choice writes with p's

    def __post_init__(self):
        self.key = f"precision {self.name}" + (f" with {self.value}" if self.value else "")
        option = UNIT + (f", {self.value} as {FP8}" if self.value else "")
        self.params = ((f"precision.{self.name}", (AS_WRITTEN, option)),)

    def apply(self, values, s):
        if values[self.params[0][0]] == AS_WRITTEN:
            return s
        operand = (((self.value,), FP8),) if self.value else ()
        return replace(s, precision=s.precision + operand + (((self.name,), UNIT),))


@dataclass(eq=False)
class PlaceChoice(Choice):
    """`place NAME in l2` for a parameter that fits the persisting L2 and that HBM would serve
    more than once; `pinned` holds the bytes of every parameter offered, for the capacity."""

    name: str
    pinned: dict[str, int]

    def __post_init__(self):
        self.key = f"place {self.name}"
        self.params = ((f"place.{self.name}", ("hbm", "l2")),)

    def apply(self, values, s):
        l2 = values[self.params[0][0]] == "l2"
        return replace(s, places=s.places + ((self.name, "l2"),)) if l2 else s

    def misfit(self, s, target):
        if self.name not in dict(s.places):
            return None
        need = sum(self.pinned[n] for n, where in s.places if where == "l2")
        if need > target.l2.persisting_bytes:
            return (f"pins {need} bytes in L2, more than the {target.l2.persisting_bytes} it "
                    "can set aside")
        return None


@dataclass
class Space:
    """The choices of one kernel, the global floor of its time, and the choices left out."""

    choices: list[Choice]
    overhead: float = 0.0
    compute_floor: float = 0.0  # every FLOP at the chip's peak
    dropped: list[dict] = field(default_factory=list)
    # the schedule as compiled, where it fits
    start: dict[str, int | str] = field(default_factory=dict)

    @property
    def params(self) -> list[tuple[str, tuple[int | str, ...]]]:
        return [p for c in self.choices for p in c.params]

    @property
    def size(self) -> int:
        return math.prod(len(o) for _, o in self.params)

    def schedule(self, values: dict[str, int | str]) -> Schedule:
        s = Schedule()
        for c in self.choices:
            s = c.apply(values, s)
        return s

    def misfit(self, s: Schedule, target) -> str | None:
        return next((why for c in self.choices if (why := c.misfit(s, target))), None)

    def floor(self, s: Schedule, target) -> float:
        """A lower bound of the kernel's modeled time under `s` (the roofline: phases run one
        after another, each at least its tensor work on the compute units it keeps busy)."""
        return self.overhead + max(self.compute_floor,
                                   sum(c.floor(s, target) for c in self.choices))

    def to_dict(self) -> dict:
        return {"size": self.size,
                "choices": [{"choice": c.key, "params": {p: list(o) for p, o in c.params}}
                            for c in self.choices],
                "dropped": self.dropped}


def _peak(target, dtype: str) -> float:
    """The tensor engine's FLOP/s for `dtype` operands as the cost model rates it (0 when the
    target cannot run it)."""
    peak, support = target.tensor_peak(dtype)
    return 0.0 if support == "unsupported" else peak * target.efficiency.compute


def _default_buffers() -> int:
    from zhenwu_cc.passes.sram_plan import DEFAULT_BUFFERS

    return DEFAULT_BUFFERS


def _pow2s(lo: int, hi: int) -> tuple[int, ...]:
    out, v = [], 1
    while v <= hi:
        if v >= lo:
            out.append(v)
        v *= 2
    return tuple(out)


def _pow2_ceil(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


def build_space(k, costing, probe, precision: bool = False) -> Space:
    """The choices of compiled kernel `k`, from its default `costing`: a `tile` choice for each
    binding that names a grid (one a phase of the estimate runs), split-K for matmuls with few
    tiles, `split` for reductions with few, `fuse ... off` for each fused group, `place ... in
    l2` for parameters HBM serves more than once, the operand `precision` of matmuls of
    parameters and `scale unit` on softmaxes feeding matmuls (with their FP8 parameter, as one
    choice, where it has no directive) when `precision` (a numerics budget was given), and
    `buffers`.
    `probe(schedule)` returns None when the compiler accepts a schedule, else the refusal: a tile
    or fuse choice the compiler refuses as compiled is left out."""
    from zhenwu_cc.core import attrs
    from zhenwu_cc.dialects import zk
    from zhenwu_cc.dialects.loc import loc_text
    from zhenwu_cc.frontend.schedules import MAX_BUFFERS, MAX_TILE
    from zhenwu_cc.passes.tiling.epilogue import ROW_PARTS
    from zhenwu_cc.passes.tiling.scales import mma_dtype
    from zhenwu_cc.passes.tiling.sizes import MIN_SPLIT_K_CHUNK

    target, est = costing.target, costing.estimate
    ops = [op for op in k.zk.body.walk() if op.results and op.results[0].name_hint]
    named = {op.results[0].name_hint: op for op in ops}
    at = {}
    for op in ops:
        at.setdefault(loc_text(op), op.results[0].name_hint)
    space = Space([], overhead=target.kernel_overhead)
    seen: set[str] = set()
    flops = 0.0
    launches = [op for op in costing.kernel.body.block.ops if op.name == "ppu.launch"]
    agreeing = [dict(attrs.used_tiles(op) or {},
                     row_parts=ROW_PARTS in getattr(op.attributes.get(attrs.TILE_SIZES), "data", {}))
                for op in launches]
    quantised = _precision_choices(k.zk, target) if precision else {}
    taken = {n for c in quantised.values() for n in c.operands}
    units = _unit_choices(k.zk, target, taken) if precision else {}
    fused: list[str] = []
    for p, w, agree in zip(est.phases, costing.workload.phases, agreeing):
        t = p.tile
        name = None if t is None else (t.directive or at.get(p.loc))
        if name is None or name in seen or name not in named \
                or not named[name].results[0].type.get_shape():  # a scalar has no tile line
            continue
        seen.add(name)
        op = named[name]
        mm = zk.matmul_feeding(op)
        if (p.name.startswith("attention") or "agreeing" in agree or agree["row_parts"]
                or len(zk.matmuls_feeding(op)) > 1):
            fused.append(name)
        if mm is not None:
            shape = list(mm.result.type.get_shape())
            m, n = shape[-2:]
            kk = list(mm.lhs.type.get_shape())[-1]
            batch = math.prod(shape[:-2])
            ran = [x.dtype for x in w.work if x.kind == "mma"]  # as run: precision applied
            dtype = dtypes.get(ran[0]) if ran else mma_dtype(mm)
            opts = tuple(_pow2s(min(MATMUL_MIN, _pow2_ceil(d)), min(_pow2_ceil(d), MATMUL_MAX))
                         for d in (m, n, kk))
            other = agree.get("agreeing")
            narrow = quantised.get(mm)
            operands = () if narrow is None else narrow.operands
            unit = units.get(mm)
            if unit is not None:  # `p @ v` runs in FP8 with `scale unit`
                narrow, operands = unit, (unit.name,)
            if other in named and p.name.startswith("attention"):  # `tile s` follows `tile o`
                seen.add(other)
                choice = FlashTileChoice(name, ("M", "N", "K"), opts, max(dtype.nbytes(1), 1),
                                         (batch, m, n, kk, dtype.name), operands,
                                         agreeing=other, agreeing_k=agree["agreeing_sizes"][2])
            elif other in named:  # two matmuls in one grid: the same tiles
                seen.add(other)
                choice = SharedTileChoice(name, ("M", "N", "K"), opts, max(dtype.nbytes(1), 1),
                                          (batch, m, n, kk, dtype.name), operands,
                                          agreeing=other)
            else:
                choice = TileChoice(name, ("M", "N", "K"), opts, max(dtype.nbytes(1), 1),
                                    (batch, m, n, kk, dtype.name), operands)
            current = [*t.sizes[-2:], t.step if t.step is not None else opts[2][-1]]
            peaks = [_peak(target, d.split()[0])
                     for d in (dtype.name, *(narrow.params[0][1][1:] if narrow else ()))]
            if (peak := max(peaks)) > 0:  # the fastest dtype the space offers: a lower bound
                flops += 2 * batch * m * n * kk / peak
        else:
            shape = list(op.results[0].type.get_shape())
            elem = max(dtypes.from_xdsl(op.results[0].type.element_type).nbytes(1), 1)
            opts = tuple(_pow2s(1, min(_pow2_ceil(d), MAX_TILE)) for d in shape)
            choice = TileChoice(name, tuple(f"d{i}" for i in range(len(shape))), opts, elem)
            current = list(t.directive_sizes or t.sizes)
        refused = probe(Schedule(((name, tuple(current)),)))
        if refused is not None:
            space.dropped.append({"choice": choice.key, "reason": refused})
            continue
        space.choices.append(choice)
        space.start.update({p: v for (p, o), v in zip(choice.params, current) if v in o})
        if mm is not None:
            few = batch * -(-m // MATMUL_MAX) * -(-n // MATMUL_MAX) < target.compute_units
            top = min(MAX_SPLIT_K, kk // MIN_SPLIT_K_CHUNK)
            if few and top >= 2:
                split = SplitKChoice(name, _pow2s(1, top))
                space.choices.append(split)
                if t.parts in split.options:
                    space.start[split.params[0][0]] = t.parts
    for split in _split_choices(named, est.phases, target):
        space.choices.append(split)
        given = named[split.name].attributes.get(attrs.SPLIT)
        parts = given.parts.data if given is not None else 0
        space.start[split.params[0][0]] = parts if parts in split.options else 0
    for name in fused:
        choice = FuseChoice(name)
        refused = probe(Schedule(unfused=(name,)))
        if refused is not None:
            space.dropped.append({"choice": choice.key, "reason": refused})
            continue
        space.choices.append(choice)
        space.start[choice.params[0][0]] = "on"
    for choice in dict.fromkeys(quantised.values()):  # matmuls sharing operands: one choice
        space.choices.append(choice)
        space.start[choice.params[0][0]] = AS_WRITTEN
    for choice in dict.fromkeys(units.values()):  # a softmax feeding two matmuls: one choice
        space.choices.append(choice)
        space.start[choice.params[0][0]] = AS_WRITTEN
    for choice in _place_choices(k.zk, costing.workload, est, target):
        space.choices.append(choice)
        space.start[choice.params[0][0]] = "hbm"
    space.choices.append(BuffersChoice(tuple(range(1, MAX_BUFFERS + 1))))
    buffers = k.zk.attributes.get(attrs.BUFFERS)
    space.start["buffers"] = _default_buffers() if buffers is None else buffers.value.data
    space.compute_floor = flops
    return space


def _split_choices(named: dict, phases, target) -> list[SplitChoice]:
    """A `split` choice for each binding of a reduction over one axis (a composite's too) whose
    phases run fewer tiles than the target has compute units, or that has fewer rows: the
    parts a chunk size can cut its axis into (`split_chunk`), powers of two up to MAX_SPLIT."""
    from zhenwu_cc.dialects import zk
    from zhenwu_cc.dialects.loc import loc_text
    from zhenwu_cc.passes.tiling.split import split_chunk

    tiles: dict[str, int] = {}
    for p in phases:
        parts = p.tile.parts if p.tile is not None else 1
        tiles[p.loc] = min(tiles.get(p.loc, p.tiles // parts), p.tiles // parts)
    cus = target.compute_units
    out = []
    for name, op in named.items():
        if isinstance(op, zk.ReduceOp) and len(op.axis_list) == 1:
            axis = op.axis_list[0]
        elif isinstance(op, (zk.ArgmaxOp, zk.AxisOp, zk.NormOp)):
            axis = op.axis.value.data
        else:
            continue
        shape = list(op.operands[0].type.get_shape())
        extent = shape[axis]
        rows = math.prod(shape) // extent
        if rows >= cus and tiles.get(loc_text(op), cus) >= cus:
            continue
        parts = [s for s in _pow2s(2, min(MAX_SPLIT, extent))
                 if split_chunk(extent, s, extent) is not None]
        if parts:
            out.append(SplitChoice(name, (0, 1, *parts)))
    return out


def _precision_choices(kernel, target) -> dict:
    """matmul -> its `PrecisionChoice`: for each matmul of two float parameters (through
    transposes) that no `precision` directive names, the narrower dtypes the target's tensor
    engine runs (bf16 below f32, FP8 below 16 bits); matmuls sharing a parameter share one."""
    from xdsl.ir import BlockArgument

    from zhenwu_cc.core import attrs
    from zhenwu_cc.dialects import zk

    names = kernel.arg_names

    def param(v):
        while isinstance(v.owner, zk.TransposeOp):
            v = v.owner.input
        if (not isinstance(v, BlockArgument)
                or kernel.arg_attr(v.index, attrs.PRECISION) is not None):
            return None
        dtype = dtypes.from_xdsl(v.type.element_type)
        usable = dtype.is_float and not dtype.is_low_precision
        return (names[v.index], dtype) if usable else None

    groups: list[tuple[set, list]] = []  # (parameter names, matmuls)
    widths: dict[str, int] = {}
    for mm in (op for op in kernel.body.walk() if isinstance(op, zk.MatmulOp)):
        found = [param(mm.lhs), param(mm.rhs)]
        if None in found:
            continue
        widths.update((n, d.bits) for n, d in found)
        group = ({n for n, _ in found}, [mm])
        for other in [g for g in groups if g[0] & group[0]]:
            groups.remove(other)
            group = (group[0] | other[0], other[1] + group[1])
        groups.append(group)
    out = {}
    for params, mms in groups:
        bits = min(widths[n] for n in params)
        options = tuple(d for d in NARROWER if dtypes.get(d).bits < bits and _peak(target, d) > 0)
        if options:
            choice = PrecisionChoice(tuple(n for n in names if n in params),
                                     (AS_WRITTEN, *options))
            out.update((mm, choice) for mm in mms)
    return out


def _unit_choices(kernel, target, taken: set[str]) -> dict:
    """matmul -> the `UnitChoice` of the `p = softmax(x, axis=-1)` without a precision directive
    that it reads as its left operand (through float casts with no other use: `bf16(p) @ v`, as
    `cast` normalises it), so contracted over p's axis; the target must run FP8. Where the right
    operand `v`, through casts and transposes, has an FP8 precision directive, the choice is p's
    `scale unit`. Where `v` is a float parameter with no directive that no `PrecisionChoice`
    names (`taken`) and p has no other use (the flash grid's form), the choice writes v's FP8
    directive too."""
    from xdsl.ir import BlockArgument

    from zhenwu_cc.core import attrs
    from zhenwu_cc.dialects import zk

    def source(v):
        while isinstance(v.owner, (zk.TransposeOp, zk.CastOp)):
            v = v.owner.input
        return v

    def fp8(v) -> bool:
        given = (kernel.arg_attr(v.index, attrs.PRECISION) if isinstance(v, BlockArgument)
                 else v.owner.attributes.get(attrs.PRECISION))
        return given is not None and given.element.is_low_precision and given.element.bits == 8

    def plain(v) -> bool:
        if not isinstance(v, BlockArgument) or kernel.arg_attr(v.index, attrs.PRECISION):
            return False
        dtype = dtypes.from_xdsl(v.type.element_type)
        return (dtype.is_float and not dtype.is_low_precision
                and kernel.arg_names[v.index] not in taken)

    def left_of(use):
        """The matmul reading `use`'s value as its left operand, through float casts."""
        op, v = use.operation, use.operation.operands[use.index]
        while (isinstance(op, zk.CastOp) and op.result.has_one_use()
               and dtypes.from_xdsl(op.result.type.element_type).is_float):
            v, op = op.result, op.result.get_user_of_unique_use()
        return op if isinstance(op, zk.MatmulOp) and op.lhs is v else None

    if _peak(target, FP8) <= 0:
        return {}
    out = {}
    for op in kernel.body.walk():
        if (not isinstance(op, zk.SoftmaxOp) or op.result.name_hint is None
                or attrs.PRECISION in op.attributes
                or op.axis.value.data != len(op.result.type.get_shape()) - 1):
            continue
        mms = [mm for u in op.result.uses if (mm := left_of(u)) is not None]
        written = [mm for mm in mms if fp8(source(mm.rhs))]
        if written:
            choice = UnitChoice(op.result.name_hint)
            out.update((mm, choice) for mm in written)
        elif len(mms) == 1 and op.result.has_one_use() and plain(v := source(mms[0].rhs)):
            out[mms[0]] = UnitChoice(op.result.name_hint, kernel.arg_names[v.index])
    return out


def _place_choices(kernel, workload, est, target) -> list[PlaceChoice]:
    """`place NAME in l2` for each parameter without a `place` directive that fits the
    persisting L2 and whose loads the estimate takes from HBM more than once over (more bytes
    than it has): a pin would serve those re-reads from L2. A tensor the L2 keeps between its
    reads anyway (`_L2Contents`) gets no choice: pinning it would change nothing."""
    from zhenwu_cc.core import attrs

    room = target.l2.persisting_bytes
    reads: dict[str, float] = {}
    for phase in est.phases:
        for n, b in phase.hbm_reads.items():
            reads[n] = reads.get(n, 0.0) + b
    pinned = {n: workload.tensors[n].bytes for i, n in enumerate(kernel.arg_names)
              if n in workload.tensors and kernel.arg_attr(i, attrs.PLACE) is None
              and 0 < workload.tensors[n].bytes <= room
              and reads.get(n, 0.0) > workload.tensors[n].bytes}
    return [PlaceChoice(n, pinned) for n in pinned]
