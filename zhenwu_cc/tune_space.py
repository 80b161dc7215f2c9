"""The tuner's search space: the schedule choices a compiled kernel has, one small class per kind
of choice (a tile's sizes, a matmul's split-K, the buffering depth), and the schedule a point of
the space stands for.

A new kind of choice (`split NAME S`, `fuse NAME off`, a precision within the numerics budget) is
one more `Choice` subclass: its parameters and options, how it sets a `Schedule`, and optionally
why a candidate cannot fit SRAM and a lower bound of the time of the phase it governs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

MATMUL_MIN, MATMUL_MAX = 16, 512  # matmul tile sizes searched (powers of two)
MAX_SPLIT_K = 16


@dataclass(frozen=True)
class Schedule:
    """A candidate schedule: what `CompiledKernel.retile()` takes, as plain values (it travels
    to Dask workers and into the cache as JSON)."""

    tiles: tuple[tuple[str, tuple[int, ...]], ...] = ()
    split_k: tuple[tuple[str, int], ...] = ()
    buffers: int | None = None

    def directives(self) -> list[str]:
        """The schedule lines, as a `schedule` block writes them."""
        split = dict(self.split_k)
        lines = [f"tile {name} [{', '.join(map(str, sizes))}]"
                 + (f" split_k {split[name]}" if split.get(name, 1) > 1 else "")
                 for name, sizes in self.tiles]
        return lines + ([f"buffers {self.buffers}"] if self.buffers is not None else [])

    def text(self) -> str:
        return "; ".join(self.directives()) or "(as written)"

    def to_dict(self) -> dict:
        return {"tiles": {n: list(s) for n, s in self.tiles},
                "split_k": {n: k for n, k in self.split_k if k > 1}, "buffers": self.buffers}

    @staticmethod
    def from_dict(d: dict) -> Schedule:
        return Schedule(tuple((n, tuple(s)) for n, s in d["tiles"].items()),
                        tuple(d["split_k"].items()), d["buffers"])


class Choice:
    """One decision of a schedule: named parameters, each with its options in a fixed order."""

    key: str
    params: tuple[tuple[str, tuple[int, ...]], ...]

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

    def __post_init__(self):
        self.key = f"tile {self.name}"
        self.params = tuple((f"tile.{self.name}.{label}", opts)
                            for label, opts in zip(self.labels, self.options))

    def apply(self, values, s):
        sizes = tuple(values[p] for p, _ in self.params)
        return replace(s, tiles=s.tiles + ((self.name, sizes),))

    def _sizes(self, s: Schedule) -> tuple[int, ...]:
        return dict(s.tiles)[self.name]

    def misfit(self, s, target):
        sizes = self._sizes(s)
        buffers = s.buffers or _default_buffers()
        if self.matmul is not None:
            tm, tn, tk = sizes
            need = (tm * tk + tk * tn) * self.elem_bytes * buffers + tm * tn * 4
        else:
            need = math.prod(sizes) * self.elem_bytes
        if need > target.sram_per_cu:
            return f"needs at least {need} bytes of SRAM, more than {target.sram_per_cu}"
        return None

    def floor(self, s, target):
        """The matmul's useful FLOPs on the compute units its tiles can keep busy."""
        if self.matmul is None:
            return 0.0
        batch, m, n, k, dtype = self.matmul
        tm, tn, _ = self._sizes(s)
        tiles = batch * -(-m // tm) * -(-n // tn) * dict(s.split_k).get(self.name, 1)
        per_cu = _peak(target, dtype) / target.compute_units
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


@dataclass
class Space:
    """The choices of one kernel, the global floor of its time, and the choices left out."""

    choices: list[Choice]
    overhead: float = 0.0
    compute_floor: float = 0.0  # every FLOP at the chip's peak
    dropped: list[dict] = field(default_factory=list)
    start: dict[str, int] = field(default_factory=dict)  # the schedule as compiled, where it fits

    @property
    def params(self) -> list[tuple[str, tuple[int, ...]]]:
        return [p for c in self.choices for p in c.params]

    @property
    def size(self) -> int:
        return math.prod(len(o) for _, o in self.params)

    def schedule(self, values: dict[str, int]) -> Schedule:
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


def build_space(k, costing, probe) -> Space:
    """The choices of compiled kernel `k`, from its default `costing`: a `tile` choice for each
    binding that names a grid (one a phase of the estimate runs), split-K for matmuls with few
    tiles, and `buffers`. `probe(schedule)` returns None when the compiler accepts a schedule,
    else the refusal: a tile choice the compiler refuses at its current sizes is left out."""
    from zhenwu_cc.core import attrs, dtypes
    from zhenwu_cc.dialects import zk
    from zhenwu_cc.dialects.loc import loc_text
    from zhenwu_cc.frontend.schedules import MAX_BUFFERS, MAX_TILE
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
    agreeing = [(attrs.used_tiles(op) or {}) for op in launches]
    for p, w, agree in zip(est.phases, costing.workload.phases, agreeing):
        t = p.tile
        name = None if t is None else (t.directive or at.get(p.loc))
        if name is None or name in seen or name not in named \
                or not named[name].results[0].type.get_shape():  # a scalar has no tile line
            continue
        seen.add(name)
        op = named[name]
        mm = zk.matmul_feeding(op)
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
            if other in named and p.name.startswith("attention"):  # `tile s` follows `tile o`
                seen.add(other)
                choice = FlashTileChoice(name, ("M", "N", "K"), opts, max(dtype.nbytes(1), 1),
                                         (batch, m, n, kk, dtype.name), agreeing=other,
                                         agreeing_k=agree["agreeing_sizes"][2])
            elif other in named:  # two matmuls in one grid: the same tiles
                seen.add(other)
                choice = SharedTileChoice(name, ("M", "N", "K"), opts, max(dtype.nbytes(1), 1),
                                          (batch, m, n, kk, dtype.name), agreeing=other)
            else:
                choice = TileChoice(name, ("M", "N", "K"), opts, max(dtype.nbytes(1), 1),
                                    (batch, m, n, kk, dtype.name))
            current = [*t.sizes[-2:], t.step if t.step is not None else opts[2][-1]]
            if (peak := _peak(target, dtype.name)) > 0:
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
    space.choices.append(BuffersChoice(tuple(range(1, MAX_BUFFERS + 1))))
    buffers = k.zk.attributes.get(attrs.BUFFERS)
    space.start["buffers"] = _default_buffers() if buffers is None else buffers.value.data
    space.compute_floor = flops
    return space
