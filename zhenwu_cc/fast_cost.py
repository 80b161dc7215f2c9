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
  `equal_parts`), its grid from `core/tiling.tile_counts`, its steps from `k_steps`; a
  flash-attention grid's blocks from `tile s` and `tile o` together, its steps and the steps a
  mask lets it skip from `passes/tiling/flash.py` (`flash_tiles`, `kv_steps`, `flash_live`);
- bytes per DMA (edge tiles clipped), FLOPs and vector work by `extract.phase_of`, the function
  `workload_of` itself uses, with each tile dimension of the lowered program mapped to its size
  in the new schedule;
- SRAM by `sram_plan.place_buffers` on the same buffers with their new sizes.

The key holds what decides structure: the `buffers` depth, the split-K parts, and per tile
size whether it is 1, covers its dimension, divides it (ragged edges get masks), how it meets
a block-scaled operand's scale blocks (`_blocked`), and which sizes of a directive are equal
(so that a dimension of the lowered program names one size); for a flash grid also the
scores' unrolled K steps and whether a mask skips any step. Where every grid is sized by a
directive, any depth above 1 shares one template (the loads in loops take that many slots, the
rest stays): the key holds only whether the depth is 1.
Grids the schedule does not size are the same in every schedule of a key and are reused as
lowered. A key is trusted after the first schedule that changes its numbers gave exactly the
workload of the full lowering (both are computed then); a key whose numbers cannot be derived
this way (a directive on a reduction or a quantised value, a matmul grid keeping a row
reduction's parts, whose count follows its N tile: `passes/tiling/epilogue.py`, a mismatch)
always lowers.
Keys that differ only in which sizes are equal (one *coarse key*, `coarse`) mostly have one
structure (`zhenwu_cc/fast_structure.py` holds the keys and this matching): a new key is served
by a template of its coarse key whose sizes map to its own, without a lowering or a check of
its own (`FastCoster._serving`), where the two keys differ only in which sizes of a flash grid
are equal (which never changes its program: `equal_sizes_only`), else where its program after
`tile` (a fraction of a lowering) has the template's structure. A flash grid met first with
equal sizes is learned from sizes of the same classes with none equal (`FastCoster._distinct`),
whose template maps to every key of its coarse key.
Tiles too big for SRAM raise `tile`'s ZK0604 (`sram_overflow`), the smaller tiles it names
planned from the templates of their keys (lowering in full where one is missing); buffers
`alloc-sram` cannot place raise its ZK0601 (`sram_refusal`). A key not yet trusted checks its
first refusal against the full lowering; a schedule refused before its key had a template is
refused again from memory.
"""

from __future__ import annotations

from dataclasses import replace

from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.core.diagnostics import CompileError, error
from zhenwu_cc.core.target import load_target
from zhenwu_cc.core.tiling import tile_bytes, tile_counts
from zhenwu_cc.dialects import ppu, zk
from zhenwu_cc.dialects import tile as tile_dialect
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.fast_structure import FLASH as _FLASH
from zhenwu_cc.fast_structure import GRID as _GRID
from zhenwu_cc.fast_structure import MATMUL as _MATMUL
from zhenwu_cc.fast_structure import (
    coarse,
    distinct_tiles,
    equal_sizes_only,
    flash_groups,
    program_structure,
    structure_key,
    tiled_structure,
)
from zhenwu_cc.frontend.schedules import check_tile
from zhenwu_cc.passes.alloc_sram import AllocSramPass, buffer_origin, sram_refusal
from zhenwu_cc.passes.sram_plan import DEFAULT_BUFFERS, place_buffers, plan_grid, runs_in_turn
from zhenwu_cc.passes.tile import TilePass
from zhenwu_cc.passes.tiling.epilogue import ROW_PARTS
from zhenwu_cc.passes.tiling.flash import (
    FlashMatch,
    flash_live,
    flash_spell,
    flash_tiles,
    kv_steps,
    match_flash,
    score_steps,
    shrink_flash,
)
from zhenwu_cc.passes.tiling.fuse_control import FuseControl
from zhenwu_cc.passes.tiling.kernel import KernelTiler, sram_overflow
from zhenwu_cc.passes.tiling.requests import shape_of
from zhenwu_cc.passes.tiling.scales import operand_blocks
from zhenwu_cc.passes.tiling.split import split_parts
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

_MULTI = "multi"  # a key's depth where any `buffers` depth above 1 shares its template
_ROLES = {_MATMUL: ("matmul",), _GRID: ("elementwise", "copy"), _FLASH: ("attention",)}


class _Fallback(Exception):
    """This schedule needs the full lowering (never leaves this module)."""


def _same(n: int) -> int:
    return n


class _Slot:
    """A planned SRAM buffer with another size, for `place_buffers`."""

    __slots__ = ("start", "end", "nbytes", "offset", "dtype", "shape", "depth")

    def __init__(self, start: int, end: int, dtype, shape: tuple, depth: int):
        self.start, self.end, self.dtype, self.shape, self.depth = start, end, dtype, shape, depth
        self.nbytes = tile_bytes(dtype, shape) * depth
        self.offset = 0


def _buffers_of(grid, buffers: int, alignment: int = 128, origins: list | None = None,
                across: bool = False) -> tuple:
    """A grid's planned buffers as data: (start, end, dtype, shape, depth); `origins` gets
    each buffer's (op name, span, order), as ZK0601 names them."""
    plan = plan_grid(grid, buffers, alignment, across)
    if origins is not None:
        origins.append(tuple((*buffer_origin(b), b.first.order) for b in plan.buffers))
    return tuple((b.start, b.end, dtypes.from_xdsl(b.first.value.type.element_type),
                  tuple(b.first.value.type.get_shape()), b.first.depth) for b in plan.buffers)


def _place(planned: tuple, dim, alignment: int, depth_of=_same) -> tuple[int, list[_Slot]]:
    """The peak of these buffers with each dimension mapped by `dim` (and each depth by
    `depth_of`), and the buffers."""
    slots = [_Slot(start, end, dtype, tuple(dim(n) for n in shape), depth_of(depth))
             for start, end, dtype, shape, depth in planned]
    return place_buffers(slots, alignment), slots


class _Sizes:
    """The tiles one directive gives its grid, as `tile` builds it: `build` (the sizes `fit`
    tries: [M, N, K] of a matmul, [BQ, BD, BKV, K] of a flash grid, else one per dimension),
    `tile` (the result tile), `step` (the K tile, a flash grid's key/value block), `parts`
    (split-K), `grid`, `trips` (steps per part) and `live` (the steps a flash grid's mask
    skips, `flash_live`); `classes` is its part of the structure key."""

    __slots__ = ("kind", "build", "tile", "step", "parts", "grid", "trips", "classes", "live",
                 "mapped", "spell", "args")

    def __init__(self, kind: str, build: tuple, parts: int, out: tuple, mm=None,
                 blocks: tuple = (), flash: FlashMatch | None = None, live=None, spell=list):
        self.kind, self.build, self.parts, self.spell = kind, build, parts, spell
        self.live = None if live is None else (live[0], tuple(live[1]), tuple(live[2]))
        self.args = (out, mm, blocks, flash)
        extra: tuple = ()
        if kind == _MATMUL:
            tm, tn, tk = build
            self.tile, self.step = (1,) * (len(out) - 2) + (tm, tn), tk
            self.trips = k_steps(mm, tk) // parts
            dims = (*out[-2:], shape_of(mm.lhs)[-1])
        elif kind == _FLASH:
            bq, bd, bkv, tk = build
            self.tile, self.step = (1,) * (len(out) - 2) + (bq, bd), bkv
            self.trips = kv_steps(flash, bkv)
            dims = (*out[-2:], flash.kv_len, shape_of(flash.qk.lhs)[-1])
            # the scores' K steps are unrolled (one op each), and a mask that skips no step
            # leaves no `loop.live_steps` (nor a discount of the useful FLOPs)
            extra = (score_steps(flash, tk), live is None)
        else:
            self.tile, self.step, self.trips, dims = build, None, 1, out
        self.mapped = self.tile + build[2:] if kind == _FLASH else \
            self.tile + ((self.step,) if self.step is not None else ())
        self.grid = ((parts,) if parts > 1 else ()) + tile_counts(out, self.tile)
        self.classes = (kind, parts, tuple(build.index(v) for v in build),
                        tuple((v == 1, v == d, d % v == 0) for v, d in zip(build, dims)),
                        tuple(_blocked(build[i], b) for i, b in blocks), extra)

    def vars(self) -> tuple:
        return (self.tile, self.step, self.parts, self.build)

    def maps(self, new: _Sizes) -> bool:
        """Whether each of these sizes names one size of `new` (sizes equal here are equal
        there), so that a grid lowered with these tiles maps to `new`'s."""
        seen: dict[int, int] = {}
        return all(seen.setdefault(a, b) == b for a, b in zip(self.mapped, new.mapped))


def _blocked(size: int, block: int) -> tuple:
    """How a tile size meets an operand's scale blocks (`scales.scale_plan`): whole blocks
    (how many: the scale tile's size), inside one (how many tiles a block holds: the scale
    index divides by it), or cutting them."""
    return ("whole", size // block) if size % block == 0 else (
        ("within", block // size) if block % size == 0 else ("cut",))


class _Refused(Exception):
    """`alloc-sram` refuses this schedule's buffers: `error` (ZK0601)."""

    def __init__(self, refusal):
        super().__init__()
        self.error = refusal


class _Overflow(Exception):
    """The tiles of directive `name` need more SRAM than a compute unit has: `tile` refuses
    them (ZK0604). `buffers`: (dtype, shape, bytes, slots) by offset."""

    def __init__(self, name: str, peak: int, buffers: list):
        super().__init__()
        self.name, self.peak, self.buffers = name, peak, buffers


class _Template:
    """What one lowering of a structure key leaves for the others (see the module docstring)."""

    def __init__(self, workload, specs, tile_plans, alloc_plans, sizes, alignment, depth,
                 across_plans=None):
        self.workload = workload
        self.depth = depth  # the `buffers` depth it was lowered with
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
        self.refuses = False  # a refusal derived from it was the full lowering's
        # the program after `tile` (`program_structure`), and the other keys of its coarse key
        # (`coarse`) whose programs have that structure (it serves them) or not
        self.structure: tuple | None = None
        self.classes: tuple = ()  # its key's classes (`equal_sizes_only`)
        self.serves: set[tuple] = set()
        self.apart: set[tuple] = set()
        self.spans: dict[str, object] = {}  # directive -> where `tile` reports its ZK0604
        self.grids: list[tuple] = []  # per grid: (role, span, SRAM's source) for ZK0601
        self.origins: list[tuple] = []  # per grid: (op name, span, order) of each buffer

    def workload_for(self, sizes: dict[str, _Sizes], asked: dict[str, tuple], capacity: int,
                     depth: int):
        """The workload of a schedule with these directive sizes and `buffers` depth (same
        key), and whether any grid's numbers differ from the lowered ones."""
        phases, changed, refused = [], False, None
        slots = self._slots(depth)
        for i, probe in enumerate(self.sizes):
            phase = self.workload.phases[i]
            if probe is None:
                phases.append(phase)
                continue
            name = phase.tile.directive
            new = sizes[name]
            tile = TileSizes(new.tile, new.step, name, asked[name], new.parts)
            if new.vars() == probe.vars() and depth == self.depth:
                phases.append(phase if tile == phase.tile else replace(phase, tile=tile))
                continue
            changed = True
            dim = self._dim(probe, new)
            peak, placed = _place(self.tile_plans[i], dim, self.alignment, slots)
            if peak > capacity:
                raise _Overflow(name, peak, [(b.dtype, b.shape, b.nbytes // b.depth, b.depth)
                                             for b in sorted(placed, key=lambda b: b.offset)])
            sram, placed = (peak, placed) if self.alloc_plans[i] == self.tile_plans[i] else \
                _place(self.alloc_plans[i], dim, self.alignment, slots)
            if sram > capacity and refused is None:  # alloc-sram, after `tile`: ZK0601
                refused = self._alloc_refusal(i, sram, placed, capacity)
            sram, buffers = self.alloc_peak(i, dim, capacity, sram, slots)
            const = ((lambda c, a=probe.trips, b=new.trips: b if c == a else c)
                     if probe.parts > 1 else None)
            phases.append(phase_of(self.specs[i], self.workload.tensors, new.grid, new.trips,
                                   sram, tile, dim, const, new.live, buffers))
        if refused is not None:
            raise _Refused(refused)
        w = self.workload
        return Workload(w.kernel, tuple(phases), w.tensors, w.flops_by_dtype), changed

    def alloc_peak(self, i: int, dim, capacity: int, plain: int, slots=_same
                   ) -> tuple[int, int]:
        """(SRAM peak, buffers) of phase i as alloc-sram plans it with tile dimensions mapped by
        `dim` (and depths by `slots`): multi-buffered across the tiles a CU runs in turn where
        that fits, else `plain` (the peak of its plain plan) with that plan's depth."""
        for plan, peak in ((self.across_plans[i], None), (self.alloc_plans[i], plain)):
            if plan is None:
                continue
            peak = _place(plan, dim, self.alignment, slots)[0] if peak is None else peak
            if peak <= capacity or plan is self.alloc_plans[i]:
                return peak, max((slots(depth) for *_, depth in plan), default=1)
        raise AssertionError("every phase has a plain plan")

    def _alloc_refusal(self, i: int, peak: int, slots: list, capacity: int):
        """ZK0601 as `alloc-sram` raises it for grid `i` with these buffers."""
        role, span, source = self.grids[i]
        placed = sorted(zip(slots, self.origins[i]), key=lambda so: (so[0].offset, so[1][2]))
        return sram_refusal(role, span, peak, capacity, source,
                            [(name, where, b.shape, b.dtype, b.nbytes // b.depth, b.depth,
                              b.offset) for b, (name, where, _) in placed])

    def _slots(self, depth: int):
        """Each buffer's slots -> its slots at `depth`: the multi-buffered loads take the new
        depth (the key keeps depth 1 apart, where loads are not multi-buffered)."""
        old = self.depth
        return _same if depth == old else (lambda n: depth if n == old else n)

    def maps(self, sizes: dict[str, _Sizes]) -> bool:
        """Whether each tile dimension of its program names one size under `sizes`."""
        return all(probe is None or probe.maps(sizes[self.workload.phases[i].tile.directive])
                   for i, probe in enumerate(self.sizes))

    @staticmethod
    def _dim(probe: _Sizes, new: _Sizes):
        """Each tile dimension of the lowered grid -> its size under `new` (the key makes
        equal sizes stay equal, so a dimension names one size)."""
        mapping = dict(zip(probe.mapped, new.mapped))
        return lambda n: mapping.get(n, n)

    def tile_peak(self, name: str, new: _Sizes, depth: int) -> int:
        """The SRAM `tile` plans for the grid directive `name` sizes, with `new` tiles."""
        for i, probe in enumerate(self.sizes):
            if probe is not None and self.workload.phases[i].tile.directive == name:
                if self.slow or (not (self.trusted or self.refuses)
                                 and (new.vars() != probe.vars() or depth != self.depth)):
                    raise _Fallback
                return _place(self.tile_plans[i], self._dim(probe, new), self.alignment,
                              self._slots(depth))[0]
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
        self.families: dict[tuple, list[_Template]] = {}  # coarse key -> its templates
        self.lowered = 0  # schedules costed by the full lowering
        self.tiled = 0  # schedules taken only through `tile` (`_serving`)
        self.shrink: dict[str, int] = {}  # directive -> the K multiple its matmul shrinks by
        self.flash: list | None = None  # the flash-attention groups (`_flash_groups`)
        self.lives: dict[tuple, tuple | None] = {}  # (match id, BQ, BKV) -> `flash_live`
        self.refused: dict[tuple, list] = {}  # a schedule of a key yet unknown -> diagnostics

    def cost(self, tiles, split_k, buffers, target: str):
        """The estimate of this schedule (arguments checked as retile() checks them)."""
        return self.costing(tiles, split_k, buffers, target)[1]

    def costing(self, tiles, split_k, buffers, target: str):
        """(workload, estimate) of this schedule, lowered only when its key is new, not yet
        trusted, or not derivable, or when its tiles do not fit SRAM (`lowered` counts it)."""
        loaded = load_target(target)
        directives = self._directives(tiles, split_k)
        depth = self._depth(buffers)
        try:
            sizes = self._all_sizes(directives)
        except _Fallback:  # `tile s` and `tile o` disagree: `tile` says how (ZK0618)
            return self._full(tiles, split_k, buffers, target)
        asked = {name: given[0] for name, given in directives.items()}
        key = structure_key(target, depth, sizes, loaded.compute_units)
        template = self._template(key)
        if template is None:
            exact = (key, tuple(sorted(directives.items())))
            if exact in self.refused:  # no template to derive it from: refused as before
                raise CompileError(self.refused[exact])
            try:
                template = self._serving(key, sizes, tiles, split_k, buffers, target) or \
                    self._distinct(key, sizes, tiles, split_k, buffers, target, loaded)
                if template is None:
                    return self._probe(key, tiles, split_k, buffers, target, sizes, loaded)
            except CompileError as e:
                self.refused[exact] = e.diagnostics
                raise
        if template.slow:
            return self._full(tiles, split_k, buffers, target)
        try:
            try:
                workload, changed = template.workload_for(sizes, asked, loaded.sram_per_cu,
                                                          depth)
            except (_Overflow, _Refused) as too_big:
                refusal = too_big.error if isinstance(too_big, _Refused) else \
                    self._refusal(too_big, sizes, key, loaded, template.spans)
                if not (template.trusted or template.refuses):  # checked in full
                    return self._check_refusal(template, refusal, tiles, split_k, buffers,
                                               target)
                raise refusal from None
        except _Fallback:
            return self._full(tiles, split_k, buffers, target)
        if changed and not template.trusted:  # the key's first new numbers: checked in full
            full = self._full(tiles, split_k, buffers, target)
            template.trusted = workload == full[0]
            template.slow = not template.trusted
            return full
        return workload, estimate(workload, loaded)

    def _check_refusal(self, template: _Template, refusal, tiles, split_k, buffers, target):
        """The full lowering's answer to a schedule whose tiles the key's template finds too
        big: the key refuses from numbers alone once its refusal was the lowering's own."""
        try:
            full = self._full(tiles, split_k, buffers, target)
        except CompileError as e:
            template.refuses = e.diagnostics == refusal.diagnostics
            template.slow = not template.refuses
            raise
        template.slow = True
        return full

    def _serving(self, key: tuple, sizes: dict[str, _Sizes], tiles, split_k, buffers,
                 target: str):
        """A template of another key of `key`'s coarse key (`coarse`) that serves this
        schedule: its sizes map to this schedule's (`_Template.maps`), and either its key
        differs only in which sizes of a flash grid are equal (`equal_sizes_only`: one
        structure, known without a look) or this schedule's program after `tile` (and its
        canonicalize, cse) has its structure (`program_structure`), which takes a fraction of
        a lowering to tell. None where no template does (other equal sizes can change
        structure)."""
        candidates = [t for t in self._family(key)
                      if not t.slow and key[2] not in t.apart and t.maps(sizes)]
        known = next((t for t in candidates if equal_sizes_only(t.classes, key[2])), None)
        if known is not None or not candidates:
            if known is not None:
                known.serves.add(key[2])
            return known
        self.tiled += 1
        structure = tiled_structure(self.kernel.retile(tiles, split_k=split_k, buffers=buffers),
                                    target)
        for template in candidates:
            if template.structure == structure:
                template.serves.add(key[2])
                return template
            template.apart.add(key[2])
        return None

    def _distinct(self, key: tuple, sizes: dict[str, _Sizes], tiles, split_k, buffers,
                  target: str, loaded):
        """Where a flash grid of this schedule has equal sizes (and no template of its coarse
        key maps to it), the template of the same schedule with sizes of the same classes, no
        two equal (`distinct_build`), lowered in its place: it maps to every key of the coarse
        key, and serves this one (checked, as its first new numbers, against this schedule's
        own lowering). None where no such sizes give the same key up to equalities or their
        lowering refuses them."""
        other = distinct_tiles(self._flash_groups(), sizes, tiles)
        if other is None:
            return None
        try:
            other_sizes = self._all_sizes(self._directives(other, split_k))
        except _Fallback:
            return None
        other_key = structure_key(target, key[1], other_sizes, loaded.compute_units)
        if (self._template(other_key) is not None or not equal_sizes_only(other_key[2], key[2])
                or not all(other_sizes[n].maps(s) for n, s in sizes.items())):
            return None
        try:
            self._probe(other_key, other, split_k, buffers, target, other_sizes, loaded)
        except CompileError:
            return None
        template = self._exact(other_key)
        if template.slow:
            return None
        template.serves.add(key[2])
        return template

    def _template(self, key: tuple):
        """The template of `key` (target, depth, classes): its own where trusted (or known
        not derivable), else one of its coarse key that serves it (`_serving`), else its own
        if any."""
        exact = self._exact(key)
        if exact is not None and (exact.trusted or exact.slow):
            return exact
        return next((t for t in self._family(key) if not t.slow and key[2] in t.serves), exact)

    def _exact(self, key: tuple):
        """The template lowered for `key`: one lowered at any depth above 1 where every grid
        is sized by a directive (the depth then changes only how many slots the loads in
        loops take), else one lowered at this depth."""
        target, depth, classes = key
        template = self.templates.get((target, _MULTI, classes)) if depth > 1 else None
        if template is not None:
            return template
        return self.templates.get(key)

    def _family(self, key: tuple) -> list[_Template]:
        """The templates of `key`'s coarse key (`coarse`), those lowered at any depth above 1
        first (as `_exact`)."""
        target, depth, classes = coarse(key)
        multi = self.families.get((target, _MULTI, classes), []) if depth > 1 else []
        return multi + self.families.get((target, depth, classes), [])

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

    def _all_sizes(self, directives: dict) -> dict[str, _Sizes]:
        """Each directive's `_Sizes`; the directives of a flash group (`tile o`, `tile s`)
        share the flash grid's, computed by `tile`'s own functions (`flash_tiles`,
        `kv_steps`, `flash_live`)."""
        sizes = {}
        for f, o_names, s_names in self._flash_groups():
            o = [n for n in o_names if n in directives]
            s = [n for n in s_names if n in directives]
            if len(o) > 1 or len(s) > 1 or not o + s or any(directives[n][1] > 1 for n in o + s):
                continue  # a split asked: the unfused grids (`FlashMatch.asks_split`)
            tiles = flash_tiles(f, *(tuple(directives[n[0]][0]) if n else None for n in (o, s)))
            if tiles is None:
                raise _Fallback
            flash = _Sizes(_FLASH, tiles, 1, shape_of(f.pv.result), flash=f,
                           live=self._live(f, tiles[0], tiles[2]), spell=flash_spell(bool(o)))
            sizes.update((n, flash) for n in o + s)
        for name, given in directives.items():
            if name not in sizes:
                sizes[name] = self._sizes(name, *given)
        return sizes

    def _live(self, f: FlashMatch, bq: int, bkv: int):
        """`flash_live` of this group and blocks, evaluated once (it reads the mask's ops)."""
        key = (id(f), bq, bkv)
        if key not in self.lives:
            self.lives[key] = flash_live(f, bq, bkv)
        return self.lives[key]

    def _flash_groups(self) -> list:
        """(match, names of `o`'s matmul, names of `s`'s) of each `softmax(s) @ v` that `tile`
        fuses into a flash grid whatever the tile sizes (found in the kernel as `tile` receives
        it; a `fuse NAME off` or `split NAME S` in it keeps the unfused grids), found once."""
        if self.flash is None:
            self.flash = flash_groups(self.kernel)
        return self.flash

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
        out, mm, blocks, flash = first.args
        halve, what = {_MATMUL: (lambda b: halve_matmul(b, self.shrink[name]), "tile [M, N, K]"),
                       _FLASH: (shrink_flash, "flash-attention tile"),
                       _GRID: (halve_largest, "tile")}[first.kind]
        build, fits = first.build, None
        while fits is None:
            build = halve(build)
            if build is None:
                break
            live = self._live(flash, build[0], build[2]) if flash is not None else None
            smaller = _Sizes(first.kind, build, first.parts, out, mm, blocks, flash, live,
                             first.spell)
            other = structure_key(key[0], key[1], {n: smaller if s is first else s
                                          for n, s in sizes.items()}, target.compute_units)
            template = self._template(other)
            if template is None:
                raise _Fallback
            peak = template.tile_peak(name, smaller, key[1])
            if peak <= target.sram_per_cu:
                fits = (build, peak)
        return sram_overflow(name, what, first.build, too_big.peak, too_big.buffers, target,
                             target.sram_per_cu, spans[name], fits, first.spell)

    def _probe(self, key, tiles, split_k, buffers, target, sizes, loaded):
        """Lower this schedule in full, keep its template under `key`, return its estimate."""
        self.lowered += 1
        other = self.kernel.retile(tiles, split_k=split_k, buffers=buffers)
        module = other._zk.clone()
        ctx = make_context()
        depth = key[1]
        tile_plans = alloc_plans = across_plans = None
        row_parts = False
        alignment = 128
        spans, about, origins = {}, [], []
        tiled = len(_default_passes("tile", target, self.kernel.fuse))
        structure = None
        for i, p in enumerate(_default_passes("ppu", target, self.kernel.fuse)):
            if isinstance(p, TilePass):
                self._shrinks(module.ops.first, loaded)
            p.apply(ctx, module)
            if i == tiled - 1:
                structure = program_structure(module)
            grids = [op for op in module.ops.first.body.block.ops
                     if isinstance(op, tile_dialect.GridOp)]
            if isinstance(p, TilePass):
                tile_plans = [_buffers_of(g, depth) for g in grids]
                row_parts = any(ROW_PARTS in g.attributes[attrs.TILE_SIZES].data for g in grids)
                for g in grids:  # `tile` reports a grid's ZK0604 where its value is defined
                    used = attrs.used_tiles(g)
                    if used is not None and used["directive"] is not None:
                        spans[used["directive"]] = span_of(g.outs[0].owner)
            elif isinstance(p, AllocSramPass):
                alignment = p.alignment
                alloc_plans = [_buffers_of(g, depth, alignment, origins) for g in grids]
                across_plans = [_buffers_of(g, depth, alignment, across=True)
                                if runs_in_turn(g, loaded.compute_units) else None
                                for g in grids]
                source = f"target `{p.target}`"  # the default pipeline's (no sram-bytes)
                about = [(g.role.data, span_of(g), source) for g in grids]
        kernel = module.ops.first
        workload = workload_of(kernel)
        names = _Names(kernel)
        written: set[str] = set()
        specs = [phase_spec(op, names, written) for op in kernel.body.block.ops
                 if isinstance(op, ppu.LaunchOp)]
        template = _Template(workload, specs, tile_plans, alloc_plans,
                             [None] * len(specs), alignment, depth, across_plans)
        template.spans, template.grids, template.origins = spans, about, origins
        template.structure, template.classes = structure, key[2]
        template.slow = row_parts or not _derivable(template, sizes, loaded.sram_per_cu)
        if depth > 1 and not template.slow and None not in template.sizes:
            key = (key[0], _MULTI, key[2])
        self.templates[key] = template
        if not template.slow:
            self.families.setdefault(coarse(key), []).append(template)
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
    """Whether the fast path can derive this template's numbers: one grid per directive (per
    flash group), of the kind its sizes come from, lowered with exactly those tiles, grid,
    steps and skipped steps, and SRAM plans that give the lowered peaks."""
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
        spec = template.specs[i]
        if (s is None or id(s) in seen or role not in _ROLES[s.kind]
                or (s.kind == _GRID and spec.looped)):
            return False
        seen.add(id(s))
        if (phase.tile.sizes, phase.tile.step, phase.tile.parts) != s.vars()[:3] \
                or spec.grid != s.grid or spec.trips != s.trips or spec.live != s.live:
            return False
        plain = _place(template.alloc_plans[i], _same, template.alignment)[0]
        if template.alloc_peak(i, _same, capacity, plain) != (phase.sram_bytes, phase.buffers):
            return False
        template.sizes[i] = s
    return True
