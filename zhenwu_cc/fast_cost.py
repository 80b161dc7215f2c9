"""The fast cost path: cost a schedule without building its `ppu` program.

A tuner asks for thousands of schedules that differ only in tile sizes, split-K parts and the
`buffers` depth. Lowering each one (`retile(...).cost()`) builds and rewrites the whole IR; yet
the program's structure (which grids, which values each loads or recomputes, their dtypes and
placement, the SRAM buffers' lifetimes) depends on the schedule only through a few discrete
facts. So `FastCoster` lowers once per *structure key* and keeps, per launch, its work as data
(`runtime/cost/extract.py`'s `PhaseSpec`) and its SRAM buffers' lifetimes (from
`passes/sram_plan.py`, as `tile` and `alloc-sram` planned them). For another schedule with the
same key it only computes numbers, with the code lowering uses:

- each directive-sized grid's tiles from `passes/tiling/sizes.py` (`directed_sizes`,
  `equal_parts`), its grid from `core/tiling.tile_counts`, its steps from `k_steps`;
- bytes per DMA (edge tiles clipped), FLOPs and vector work by `extract.phase_of`, the function
  `workload_of` itself uses, with each tile dimension of the lowered program mapped to its size
  in the new schedule;
- SRAM by `sram_plan.place_buffers` on the same buffers with their new sizes.

The key holds what decides structure: the `buffers` depth, the split-K parts, and per tile
size whether it is 1, covers its dimension, divides it (ragged edges get masks), how it meets
a block-scaled operand's scale blocks (`_blocked`), and which sizes of a directive are equal
(so that a dimension of the lowered program names one size).
Grids the schedule does not size are the same in every schedule of a key and are reused as
lowered. A key is trusted after the first schedule that changes its numbers gave exactly the
workload of the full lowering (both are computed then); a key whose numbers cannot be derived
this way (a directive on a reduction or a quantised value, a mismatch) always lowers.
Tiles too big for SRAM raise `tile`'s ZK0604 (`sram_overflow`), the smaller tiles it names
planned from the templates of their keys (lowering in full where one is missing).
"""

from __future__ import annotations

import math
from dataclasses import replace

from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.core.diagnostics import error
from zhenwu_cc.core.target import load_target
from zhenwu_cc.core.tiling import tile_bytes, tile_counts
from zhenwu_cc.dialects import ppu, zk
from zhenwu_cc.dialects import tile as tile_dialect
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.frontend.schedules import check_tile
from zhenwu_cc.passes.alloc_sram import AllocSramPass
from zhenwu_cc.passes.sram_plan import DEFAULT_BUFFERS, place_buffers, plan_grid, runs_in_turn
from zhenwu_cc.passes.tile import TilePass
from zhenwu_cc.passes.tiling.kernel import KernelTiler, sram_overflow
from zhenwu_cc.passes.tiling.requests import shape_of
from zhenwu_cc.passes.tiling.scales import operand_blocks
from zhenwu_cc.passes.tiling.sizes import (
    directed_sizes,
    equal_parts,
    halve_largest,
    halve_matmul,
    k_steps,
)
from zhenwu_cc.pipeline import _default_passes, make_context
from zhenwu_cc.runtime.cost.extract import _Names, phase_of, phase_spec, workload_of
from zhenwu_cc.runtime.cost.model import estimate
from zhenwu_cc.runtime.cost.workload import TileSizes, Workload

_MATMUL, _GRID = "matmul", "grid"


class _Fallback(Exception):
    """This schedule needs the full lowering (never leaves this module)."""


class _Slot:
    """A planned SRAM buffer with another size, for `place_buffers`."""

    __slots__ = ("start", "end", "nbytes", "offset", "dtype", "shape", "depth")

    def __init__(self, start: int, end: int, dtype, shape: tuple, depth: int):
        self.start, self.end, self.dtype, self.shape, self.depth = start, end, dtype, shape, depth
        self.nbytes = tile_bytes(dtype, shape) * depth
        self.offset = 0


def _buffers_of(grid, buffers: int, alignment: int = 128, across: bool = False) -> tuple:
    """A grid's planned buffers as data: (start, end, dtype, shape, depth)."""
    plan = plan_grid(grid, buffers, alignment, across)
    return tuple((b.start, b.end, dtypes.from_xdsl(b.first.value.type.element_type),
                  tuple(b.first.value.type.get_shape()), b.first.depth) for b in plan.buffers)


def _place(planned: tuple, dim, alignment: int) -> tuple[int, list[_Slot]]:
    """The peak of these buffers with each dimension mapped by `dim`, and the buffers."""
    slots = [_Slot(start, end, dtype, tuple(dim(n) for n in shape), depth)
             for start, end, dtype, shape, depth in planned]
    return place_buffers(slots, alignment), slots


def _same(n: int) -> int:
    return n


class _Sizes:
    """The tiles one directive gives its grid, as `tile` builds it: `build` (the sizes `fit`
    tries: [M, N, K] of a matmul, else one per dimension), `tile` (the result tile), `step`
    (the K tile), `parts` (split-K), `grid` and `trips` (steps per part); `classes` is its
    part of the structure key."""

    __slots__ = ("kind", "build", "tile", "step", "parts", "grid", "trips", "classes")

    def __init__(self, kind: str, build: tuple, parts: int, out: tuple, mm=None,
                 blocks: tuple = ()):
        self.kind, self.build, self.parts = kind, build, parts
        if kind == _MATMUL:
            tm, tn, tk = build
            self.tile, self.step = (1,) * (len(out) - 2) + (tm, tn), tk
            self.trips = k_steps(mm, tk) // parts
            dims = (*out[-2:], shape_of(mm.lhs)[-1])
        else:
            self.tile, self.step, self.trips, dims = build, None, 1, out
        self.grid = ((parts,) if parts > 1 else ()) + tile_counts(out, self.tile)
        self.classes = (kind, parts, tuple(build.index(v) for v in build),
                        tuple((v == 1, v == d, d % v == 0) for v, d in zip(build, dims)),
                        tuple(_blocked(build[i], b) for i, b in blocks))

    def vars(self) -> tuple:
        return (self.tile, self.step, self.parts)


def _key(target: str, depth: int, sizes: dict[str, _Sizes], cus: int) -> tuple:
    """The structure key: the target, the `buffers` depth, each directive's classes and
    whether its grid (if not a matmul's) has more tiles than CUs, which multi-buffers a
    loop-less grid's loads across the tiles a CU runs in turn (alloc-sram)."""
    return (target, depth, tuple(sorted(
        (n, s.classes, s.kind == _GRID and math.prod(s.grid) > cus) for n, s in sizes.items())))


def _blocked(size: int, block: int) -> tuple:
    """How a tile size meets an operand's scale blocks (`scales.scale_plan`): whole blocks
    (how many: the scale tile's size), inside one (how many tiles a block holds: the scale
    index divides by it), or cutting them."""
    return ("whole", size // block) if size % block == 0 else (
        ("within", block // size) if block % size == 0 else ("cut",))


class _Overflow(Exception):
    """The tiles of directive `name` need more SRAM than a compute unit has: `tile` refuses
    them (ZK0604). `buffers`: (dtype, shape, bytes, slots) by offset."""

    def __init__(self, name: str, peak: int, buffers: list):
        super().__init__()
        self.name, self.peak, self.buffers = name, peak, buffers


class _Template:
    """What one lowering of a structure key leaves for the others (see the module docstring)."""

    def __init__(self, workload, specs, tile_plans, alloc_plans, sizes, alignment,
                 across_plans=None):
        self.workload = workload
        self.specs = specs
        self.tile_plans = tile_plans
        self.alloc_plans = alloc_plans
        # per phase: alloc-sram's plan multi-buffered across the tiles a CU runs in turn,
        # which it takes where it fits (None: the grid is not such a grid)
        self.across_plans = across_plans or [None] * len(specs)
        self.sizes = sizes  # per phase: the _Sizes it was lowered with (None: no directive)
        self.alignment = alignment
        self.trusted = False
        self.slow = False
        self.spans: dict[str, object] = {}  # directive -> where `tile` reports its ZK0604

    def workload_for(self, sizes: dict[str, _Sizes], asked: dict[str, tuple], capacity: int):
        """The workload of a schedule with these directive sizes (same key), and whether any
        grid's numbers differ from the lowered ones."""
        phases, changed = [], False
        for i, probe in enumerate(self.sizes):
            phase = self.workload.phases[i]
            if probe is None:
                phases.append(phase)
                continue
            name = phase.tile.directive
            new = sizes[name]
            tile = TileSizes(new.tile, new.step, name, asked[name], new.parts)
            if new.vars() == probe.vars():
                phases.append(phase if tile == phase.tile else replace(phase, tile=tile))
                continue
            changed = True
            dim = self._dim(probe, new)
            peak, slots = _place(self.tile_plans[i], dim, self.alignment)
            if peak > capacity:
                raise _Overflow(name, peak, [(b.dtype, b.shape, b.nbytes // b.depth, b.depth)
                                             for b in sorted(slots, key=lambda b: b.offset)])
            sram = peak if self.alloc_plans[i] == self.tile_plans[i] else \
                _place(self.alloc_plans[i], dim, self.alignment)[0]
            if sram > capacity:
                raise _Fallback  # alloc-sram refuses it (ZK0601)
            sram, buffers = self.alloc_peak(i, dim, capacity, sram)
            const = ((lambda c, a=probe.trips, b=new.trips: b if c == a else c)
                     if probe.parts > 1 else None)
            phases.append(replace(phase_of(self.specs[i], self.workload.tensors, new.grid,
                                           new.trips, sram, tile, dim, const),
                                  buffers=buffers))
        w = self.workload
        return Workload(w.kernel, tuple(phases), w.tensors, w.flops_by_dtype), changed

    def alloc_peak(self, i: int, dim, capacity: int, plain: int) -> tuple[int, int]:
        """(SRAM peak, buffers) of phase i as alloc-sram plans it with tile dimensions mapped by
        `dim`: multi-buffered across the tiles a CU runs in turn where that fits, else `plain`
        (the peak of its plain plan) with that plan's depth."""
        for plan, peak in ((self.across_plans[i], None), (self.alloc_plans[i], plain)):
            if plan is None:
                continue
            peak = _place(plan, dim, self.alignment)[0] if peak is None else peak
            if peak <= capacity or plan is self.alloc_plans[i]:
                return peak, max((depth for *_, depth in plan), default=1)
        raise AssertionError("every phase has a plain plan")

    @staticmethod
    def _dim(probe: _Sizes, new: _Sizes):
        """Each tile dimension of the lowered grid -> its size under `new` (the key makes
        equal sizes stay equal, so a dimension names one size)."""
        mapping = dict(zip(probe.tile, new.tile))
        if probe.step is not None:
            mapping[probe.step] = new.step
        return lambda n: mapping.get(n, n)

    def tile_peak(self, name: str, new: _Sizes) -> int:
        """The SRAM `tile` plans for the grid directive `name` sizes, with `new` tiles."""
        for i, probe in enumerate(self.sizes):
            if probe is not None and self.workload.phases[i].tile.directive == name:
                if self.slow or (not self.trusted and new.vars() != probe.vars()):
                    raise _Fallback
                return _place(self.tile_plans[i], self._dim(probe, new), self.alignment)[0]
        raise _Fallback


class FastCoster:
    """`CompiledKernel.fast_cost`'s state: the kernel's directives and the templates by key."""

    def __init__(self, kernel):
        self.kernel = kernel
        body = kernel.zk.body
        self.named = {op.results[0].name_hint: op for op in body.walk()
                      if op.results and op.results[0].name_hint}
        self.original = {name: (attr.values, attr.split_k.data)
                         for name, op in self.named.items()
                         if (attr := op.attributes.get(attrs.TILE)) is not None}
        self.matmuls = {name: zk.matmul_feeding(op) for name, op in self.named.items()}
        self.blocks: dict[str, tuple] = {}  # a tiled matmul's scale blocks (`_blocks`)
        count = kernel.zk.attributes.get(attrs.BUFFERS)
        self.buffers = count.value.data if count is not None else DEFAULT_BUFFERS
        self.templates: dict[tuple, _Template] = {}
        self.lowered = 0  # schedules costed by the full lowering
        self.shrink: dict[str, int] = {}  # directive -> the K multiple its matmul shrinks by

    def cost(self, tiles, split_k, buffers, target: str):
        """The estimate of this schedule (arguments checked as retile() checks them)."""
        return self.costing(tiles, split_k, buffers, target)[1]

    def costing(self, tiles, split_k, buffers, target: str):
        """(workload, estimate) of this schedule, lowered only when its key is new, not yet
        trusted, or not derivable, or when its tiles do not fit SRAM (`lowered` counts it)."""
        loaded = load_target(target)
        directives = self._directives(tiles, split_k)
        depth = self._depth(buffers)
        sizes = {name: self._sizes(name, *given) for name, given in directives.items()}
        asked = {name: given[0] for name, given in directives.items()}
        key = _key(target, depth, sizes, loaded.compute_units)
        template = self.templates.get(key)
        if template is None:
            return self._probe(key, tiles, split_k, buffers, target, sizes, loaded)
        if template.slow:
            return self._full(tiles, split_k, buffers, target)
        try:
            try:
                workload, changed = template.workload_for(sizes, asked, loaded.sram_per_cu)
            except _Overflow as too_big:
                if not template.trusted:
                    raise _Fallback from None
                raise self._refusal(too_big, sizes, key, loaded, template.spans) from None
        except _Fallback:
            return self._full(tiles, split_k, buffers, target)
        if changed and not template.trusted:  # the key's first new numbers: checked in full
            full = self._full(tiles, split_k, buffers, target)
            template.trusted = workload == full[0]
            template.slow = not template.trusted
            return full
        return workload, estimate(workload, loaded)

    def _full(self, tiles, split_k, buffers, target):
        self.lowered += 1
        costing = self.kernel.retile(tiles, split_k=split_k, buffers=buffers).costing(target)
        return costing.workload, costing.estimate

    def _directives(self, tiles, split_k) -> dict:
        """Every binding's `tile` directive under this schedule, (sizes, split-K), checked as
        retile() checks them."""
        out = dict(self.original)
        for name, given in tiles.items():
            if name not in self.named:
                raise error("ZK0402", f"kernel `{self.kernel.name}` has no binding named "
                            f"`{name}`", help="bindings: " + ", ".join(sorted(self.named)))
            check_tile(self.named[name], name, given, split_k.get(name))
            out[name] = (tuple(given), split_k.get(name) or 1)
        return out

    def _blocks(self, name: str) -> tuple:
        """(which of [M, N, K], block) for each scale block a matmul's operands have along M,
        K (each operand's own) and N, as `tile` sees them (after `cast`)."""
        op = next(o for o in self.kernel.cast.body.walk()
                  if o.results and o.results[0].name_hint == name)
        mm = zk.matmul_feeding(op)
        lhs, rhs = len(shape_of(mm.lhs)), len(shape_of(mm.rhs))
        blocks = ((0, operand_blocks(mm.lhs, lhs - 2)), (2, operand_blocks(mm.lhs, lhs - 1)),
                  (2, operand_blocks(mm.rhs, rhs - 2)), (1, operand_blocks(mm.rhs, rhs - 1)))
        return tuple((i, b) for i, b in blocks if b > 1)

    def _depth(self, buffers: int | None) -> int:
        return self.buffers if buffers is None else buffers

    def _sizes(self, name: str, values: tuple, split: int) -> _Sizes:
        """The tiles `tile` gives the grid this directive sizes, by its own functions."""
        mm = self.matmuls[name]
        if mm is not None:
            out = shape_of(mm.result)
            tm, tn, tk = directed_sizes(values, (*out[-2:], shape_of(mm.lhs)[-1]))
            if name not in self.blocks:
                self.blocks[name] = self._blocks(name)
            return _Sizes(_MATMUL, (tm, tn, tk), equal_parts(mm, tk, split), out, mm,
                          self.blocks[name])
        shape = shape_of(self.named[name].results[0])
        return _Sizes(_GRID, directed_sizes(values, shape), 1, shape)

    def _refusal(self, too_big: _Overflow, sizes: dict[str, _Sizes], key: tuple, target,
                 spans: dict):
        """ZK0604 as `tile` raises it: `fit` shrinks the tiles until they fit, to name the
        ones that would; each smaller size is planned from the template of its own key."""
        name, first = too_big.name, sizes[too_big.name]
        if name not in self.shrink:
            raise _Fallback
        mm = self.matmuls[name]
        out = shape_of(self.named[name].results[0] if mm is None else mm.result)
        build, fits = first.build, None
        while fits is None:
            build = (halve_matmul(build, self.shrink[name]) if first.kind == _MATMUL
                     else halve_largest(build))
            if build is None:
                break
            smaller = _Sizes(first.kind, build, first.parts, out, mm, self.blocks.get(name, ()))
            other = _key(key[0], key[1], {n: smaller if n == name else s
                                          for n, s in sizes.items()}, target.compute_units)
            template = self.templates.get(other)
            if template is None:
                raise _Fallback
            peak = template.tile_peak(name, smaller)
            if peak <= target.sram_per_cu:
                fits = (build, peak)
        what = "tile [M, N, K]" if first.kind == _MATMUL else "tile"
        return sram_overflow(name, what, first.build, too_big.peak, too_big.buffers, target,
                             target.sram_per_cu, spans[name], fits)

    def _probe(self, key, tiles, split_k, buffers, target, sizes, loaded):
        """Lower this schedule in full, keep its template under `key`, return its estimate."""
        self.lowered += 1
        other = self.kernel.retile(tiles, split_k=split_k, buffers=buffers)
        module = other._zk.clone()
        ctx = make_context()
        depth = key[1]
        tile_plans = alloc_plans = across_plans = None
        alignment = 128
        spans = {}
        for p in _default_passes("ppu", target, self.kernel.fuse):
            if isinstance(p, TilePass):
                self._shrinks(module.ops.first, loaded)
            p.apply(ctx, module)
            grids = [op for op in module.ops.first.body.block.ops
                     if isinstance(op, tile_dialect.GridOp)]
            if isinstance(p, TilePass):
                tile_plans = [_buffers_of(g, depth) for g in grids]
                for g in grids:  # `tile` reports a grid's ZK0604 where its value is defined
                    used = attrs.used_tiles(g)
                    if used is not None and used["directive"] is not None:
                        spans[used["directive"]] = span_of(g.outs[0].owner)
            elif isinstance(p, AllocSramPass):
                alignment = p.alignment
                alloc_plans = [_buffers_of(g, depth, alignment) for g in grids]
                across_plans = [_buffers_of(g, depth, alignment, across=True)
                                if runs_in_turn(g, loaded.compute_units) else None
                                for g in grids]
        kernel = module.ops.first
        workload = workload_of(kernel)
        names = _Names(kernel)
        written: set[str] = set()
        specs = [phase_spec(op, names, written) for op in kernel.body.block.ops
                 if isinstance(op, ppu.LaunchOp)]
        template = _Template(workload, specs, tile_plans, alloc_plans,
                             [None] * len(specs), alignment, across_plans)
        template.spans = spans
        template.slow = not _derivable(template, sizes, loaded.sram_per_cu)
        self.templates[key] = template
        return workload, estimate(workload, loaded)

    def _shrinks(self, kernel, target) -> None:
        """How `fit` shrinks the tiles of each directive of `kernel` (as `tile` receives it)."""
        tiler = KernelTiler(kernel, target)
        for op in kernel.body.walk():
            name = op.results[0].name_hint if op.results else None
            if attrs.TILE in op.attributes and name:
                mm = zk.matmul_feeding(op)
                self.shrink[name] = tiler.k_multiple(mm) if mm is not None else 1


def _derivable(template: _Template, sizes: dict[str, _Sizes], capacity: int) -> bool:
    """Whether the fast path can derive this template's numbers: one grid per directive, of
    the kind its sizes come from, lowered with exactly those tiles, grid and steps, and SRAM
    plans that give the lowered peaks."""
    phases = template.workload.phases
    if not (len(template.tile_plans) == len(template.alloc_plans) == len(phases)):
        return False
    seen = set()
    for i, phase in enumerate(phases):
        name = phase.tile.directive if phase.tile is not None else None
        if name is None:
            continue
        s = sizes.get(name)
        role = phase.name.split(" ")[0]
        if (s is None or name in seen or (role == "matmul") != (s.kind == _MATMUL)
                or role not in ("matmul", "elementwise", "copy")
                or (s.kind == _GRID and template.specs[i].looped)):
            return False
        seen.add(name)
        if (phase.tile.sizes, phase.tile.step, phase.tile.parts) != s.vars() \
                or template.specs[i].grid != s.grid or phase.steps != s.trips:
            return False
        plain = _place(template.alloc_plans[i], _same, template.alignment)[0]
        if template.alloc_peak(i, _same, capacity, plain) != (phase.sram_bytes, phase.buffers):
            return False
        template.sizes[i] = s
    return True
