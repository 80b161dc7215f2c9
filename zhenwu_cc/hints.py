"""Hints: what a kernel's cost leaves on the table, each with a stable code, a sentence and, where
one exists, the schedule edit that recovers it.

Every proposed edit has been applied to the source, compiled and costed here (an edit that does
not compile, or cuts the estimate by less than MIN_GAIN, is not proposed), and a precision edit
has also passed the numerics budget when `eval` ran the numerics check. The codes are our own
namespace (ZKH..), never diagnostic codes; docs/agent-guide.md lists them (a test keeps the table
and HINTS in step).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from zhenwu_cc.schedule_edit import Directive, Edit, directives

# code -> (what triggers it, the edit it suggests): the table in docs/agent-guide.md
HINTS = {
    "ZKH01": ("a phase keeps under half of the compute units busy",
              "smaller tiles, or `split_k` for a matmul, to make more tiles"),
    "ZKH02": ("a partly filled last wave of tiles loses a tenth or more of a phase",
              "tile sizes whose tile count fills the waves better"),
    "ZKH03": ("a tile size could double and still fit SRAM, and the estimate drops",
              "the `tile` line with that size doubled"),
    "ZKH04": ("an intermediate is written to HBM by one grid and read back by another (at "
              "least 1% of the kernel's time at the HBM bandwidth)",
              "none yet: fusing the two grids would keep it on chip"),
    "ZKH05": ("an input would take half the bytes in a narrower precision, within the "
              "numerics budget, and the estimate drops", "a `precision NAME as DTYPE` line"),
    "ZKH06": ("a schedule directive changes nothing in the estimate, or a `tile` directive "
              "is clamped to smaller sizes", "remove the directive, or write the sizes used"),
}
MIN_SHARE = 0.05  # a phase under this share of the kernel's time gets no tile hint
LOW_OCCUPANCY = 0.5  # ZKH01: fewer busy compute units than this fraction
WAVE_LOSS = 0.10  # ZKH02: at least this fraction of a phase lost to its last wave
MIN_GAIN = 0.03  # an edit must cut the estimate by at least this fraction
BYTES_SHARE = 0.10  # ZKH05: an input with at least this share of the HBM reads
MIN_ROUND_TRIP = 0.01  # ZKH04: a round trip worth at least this fraction of the kernel time
NARROWER = {"f32": "bf16", "f16": "f8E4M3FN", "bf16": "f8E4M3FN"}  # halves the bytes
DEFAULT_BUDGET = 1e-2  # rel L2 error against the exact math: ZKH05's budget, eval's ZK1106 line


@dataclass(frozen=True)
class Hint:
    code: str
    message: str
    loc: str = ""
    phase: int | None = None
    edit: Edit | None = None
    time_s: float | None = None  # the estimate with the edit made
    saving: float = 0.0  # estimated fraction of the kernel time the edit (or fusion) saves
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "loc": self.loc or None,
                "phase": self.phase, "edit": None if self.edit is None else self.edit.to_dict(),
                "estimated_time_s": _r(self.time_s), "saving": _r(self.saving),
                **self.detail}


def _r(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


class Context:
    """What the rules read: the kernel's source and its costing, and a way to cost an edit."""

    def __init__(self, compiled, costing, *, check_seed: int | None = None,
                 budget: float | None = None, costs: MutableMapping | None = None):
        """`costs`: where edited kernels' estimates are kept, keyed by the hash of source text,
        file, kernel, target, shape parameters and fusion (`--no-fuse`) (`serve` passes one
        bounded cache for all its requests)."""
        text, _ = compiled.source
        self.compiled, self.costing = compiled, costing
        self.source, self.file, self.kernel = text, compiled.file, compiled.name
        self.params = {k: v.value.data for k, v in compiled.zk.attributes["params"].data.items()}
        self.est, self.target = costing.estimate, costing.target
        self.check_seed = check_seed  # None: the numerics check did not run, edits are unchecked
        self.budget = DEFAULT_BUDGET if budget is None else budget
        self.directives = directives(text, self.file, self.kernel)
        self._costed = {} if costs is None else costs

    def variant(self, edit: Edit):
        """The kernel with `edit` made, compiled, or None when it does not compile."""
        from zhenwu_cc.core.diagnostics import CompileError
        from zhenwu_cc.frontend import build

        text = edit.apply(self.source)
        try:
            module = build(text, self.file, self.params, self.kernel)
        except CompileError:
            return None
        other = self.compiled.derived(module)
        other.source = (text, self.kernel)
        return other

    def cost(self, edit: Edit):
        """The estimate with `edit` made (None when it does not compile or fit), memoised."""
        from zhenwu_cc.core.diagnostics import CompileError

        key = hashlib.sha256(json.dumps([edit.apply(self.source), self.file, self.kernel,
                                         self.compiled.target, sorted(self.params.items()),
                                         self.compiled.fuse]).encode()).hexdigest()
        if key not in self._costed:
            try:
                if edit.retile is not None:
                    other = self._retiled(edit)
                elif edit.action == "remove" and edit.old.text.startswith("tile "):
                    other = self._untiled(edit.old)
                else:
                    other = self.variant(edit)
                self._costed[key] = None if other is None else \
                    other.costing(self.compiled.target).estimate
            except CompileError:
                self._costed[key] = None
        return self._costed[key]

    def _retiled(self, edit: Edit):
        """A `tile` edit through `retile()`: the parsed kernel reused, as a tuner does."""
        name, sizes, split = edit.retile
        return self.compiled.retile({name: list(sizes)},
                                    split_k={name: split} if split > 1 else None)

    def _untiled(self, directive: Directive):
        """The kernel without the `tile` directive at `directive`'s line, the parsed kernel
        reused: the same program as the source without that line (each `#zk.tile` carries the
        location of the line it came from)."""
        from xdsl.dialects.builtin import FileLineColLoc

        from zhenwu_cc.core import attrs

        module = self.compiled.module("zk").clone()
        for op in module.ops.first.body.walk():
            loc = getattr(op.attributes.get(attrs.TILE), "loc", None)
            if isinstance(loc, FileLineColLoc) and (loc.line.data, loc.column.data) == (
                    directive.line, directive.col):
                del op.attributes[attrs.TILE]
        return self.compiled.derived(module)

    def best(self, edits: list[Edit]):
        """The edit with the lowest estimate, if it beats the kernel's by MIN_GAIN."""
        costed = [(est.time, i, e, est) for i, e in enumerate(edits)
                  if (est := self.cost(e)) is not None]
        if not costed:
            return None
        time, _, edit, est = min(costed)
        return (edit, est) if time <= self.est.time * (1 - MIN_GAIN) else None


def hints(ctx: Context) -> list[Hint]:
    """Every rule's hints, the largest saving first (then by code and phase: deterministic)."""
    out: list[Hint] = []
    low = _low_occupancy(ctx)
    out += low
    out += _wave_quantization(ctx, {h.phase for h in low})
    out += _tile_could_double(ctx, {h.phase for h in out})
    out += _round_trips(ctx)
    out += _narrower_precision(ctx)
    out += _no_effect(ctx)
    return sorted(out, key=lambda h: (-h.saving, h.code, h.phase if h.phase is not None else -1))


# ---- tiles --------------------------------------------------------------------------------------
def _tile_of(ctx: Context, phase_est, workload_phase
             ) -> tuple[str, list[int], int, Directive | None] | None:
    """(binding, sizes as a `tile` line writes them, split_k, the directive) for a phase, or
    None when no binding names its grid."""
    tile = phase_est.tile
    if tile is None:
        return None
    mma = any(w.kind == "mma" for w in workload_phase.work)
    name = tile.directive or _binding_at(ctx, phase_est.loc)
    if name is None:
        return None
    old = next((d for d in ctx.directives if d.text.startswith(f"tile {name} ")), None)
    split = 1
    if old is not None and (m := re.search(r"split_k\s+(\d+)", old.text)):
        split = int(m.group(1))
    sizes = [*tile.sizes[-2:], tile.step] if mma and tile.step is not None else list(tile.sizes)
    if tile.directive_sizes is not None and len(sizes) != len(tile.directive_sizes):
        sizes = list(tile.directive_sizes)
    return name, sizes, split, old


def _binding_at(ctx: Context, loc: str) -> str | None:
    """The binding whose defining op is at `loc` (a grid the compiler tiled on its own)."""
    from zhenwu_cc.dialects.loc import loc_text

    for op in ctx.compiled.zk.body.walk():
        if op.results and op.results[0].name_hint and loc_text(op) == loc:
            return op.results[0].name_hint
    return None


def _tile_edit(ctx: Context, name: str, sizes: list[int], split: int, old) -> Edit:
    line = f"tile {name} [{', '.join(str(s) for s in sizes)}]" + (
        f" split_k {split}" if split > 1 else "")
    return Edit(ctx.kernel, line, old, retile=(name, tuple(sizes), split))


def _parallel(sizes: list[int], mma: bool) -> range:
    """The indices of `sizes` that split the output (a matmul's K is the last)."""
    return range(len(sizes) - 1 if mma else len(sizes))


def _phases(ctx: Context):
    for i, (p, w) in enumerate(zip(ctx.est.phases, ctx.costing.workload.phases)):
        if p.time >= MIN_SHARE * ctx.est.time:
            yield i, p, w


def _low_occupancy(ctx: Context) -> list[Hint]:
    units = ctx.target.compute_units
    out = []
    for i, p, w in _phases(ctx):
        if p.active_cus >= LOW_OCCUPANCY * units:
            continue
        message = (f"phase [{i}] ({p.name}) keeps {p.active_cus} of {units} compute units busy "
                   f"({p.tiles} tile(s)) for {p.time / ctx.est.time:.0%} of the kernel's time")
        best = None
        if (tile := _tile_of(ctx, p, w)) is not None:
            name, sizes, split, old = tile
            mma = any(x.kind == "mma" for x in w.work)
            k = max(0, math.ceil(math.log2(units / max(p.tiles, 1))))
            splits = max(0, (p.steps.bit_length() - 1)) if mma else 0  # split_k <= steps
            edits = []
            for halvings, c in _spreads(k, sizes, list(_parallel(sizes, mma)), splits > 0):
                edit = _tile_edit(ctx, name, _halved(sizes, halvings), split << min(c, splits),
                                  old)
                if edit.line != (old.text if old else "") and edit not in edits:
                    edits.append(edit)
            best = ctx.best(edits)
        out.append(_with_edit(ctx, "ZKH01", message + (
            "" if best else "; no tile or split_k the compiler accepts does better"), p, i, best,
            detail={"active_cus": p.active_cus, "compute_units": units, "tiles": p.tiles}))
    return out


def _wave_quantization(ctx: Context, skip: set) -> list[Hint]:
    units = ctx.target.compute_units
    out = []
    for i, p, w in _phases(ctx):
        lost = p.terms.get("wave_quantization", 0.0)
        if i in skip or lost < WAVE_LOSS * p.time:
            continue
        last = p.tiles - (p.waves - 1) * units
        message = (f"phase [{i}] ({p.name}) runs {p.tiles} tiles in {p.waves} wave(s) on {units} "
                   f"compute units, the last with {last}: {lost / p.time:.0%} of the phase is "
                   "lost to the partly filled wave")
        best = None
        if (tile := _tile_of(ctx, p, w)) is not None:
            name, sizes, split, old = tile
            mma = any(x.kind == "mma" for x in w.work)
            edits = [_tile_edit(ctx, name, _scaled(sizes, d, f), split, old)
                     for d in _parallel(sizes, mma) for f in (0.5, 2) if sizes[d] * f >= 1]
            best = ctx.best(edits)
        out.append(_with_edit(ctx, "ZKH02", message, p, i, best,
                              detail={"tiles": p.tiles, "waves": p.waves,
                                      "last_wave_tiles": last, "compute_units": units}))
    return out


def _tile_could_double(ctx: Context, skip: set) -> list[Hint]:
    out = []
    for i, p, w in _phases(ctx):
        if i in skip or (tile := _tile_of(ctx, p, w)) is None:
            continue
        name, sizes, split, old = tile
        edits = [_tile_edit(ctx, name, _scaled(sizes, d, 2), split, old)
                 for d in range(len(sizes))]
        best = ctx.best(edits)
        if best is None:
            continue
        edit, est = best
        sram = max(q.sram_bytes for q in est.phases)
        out.append(_with_edit(ctx, "ZKH03", f"phase [{i}] ({p.name}): `{edit.line}` still fits "
                              f"SRAM ({_kib(sram)} of {_kib(est.sram_capacity)} per compute "
                              "unit) and the estimate drops", p, i, best,
                              detail={"sram_bytes": sram}))
    return out


def _spreads(k: int, sizes: list[int], dims: list[int], split: bool) -> list[tuple[dict, int]]:
    """Ways to make 2**k times more tiles: ({dim: halvings}, split_k doublings) — spread evenly
    over the dims, all on the largest dim, and with split_k: all on it, or half on it and half
    spread. A few candidates: each costs a compile."""
    if k == 0 or not dims:
        return []

    def even(n: int) -> dict:
        return {d: n // len(dims) + (i < n % len(dims)) for i, d in enumerate(dims)}

    ways = [(even(k), 0), ({max(dims, key=lambda d: (sizes[d], -d)): k}, 0)]
    if split:
        ways += [({}, k), (even(k - k // 2), k // 2)]
    unique = []
    for w in ways:
        if w not in unique:
            unique.append(w)
    return unique


def _halved(sizes: list[int], halvings: dict) -> list[int]:
    return [max(1, s >> halvings.get(d, 0)) for d, s in enumerate(sizes)]


def _scaled(sizes: list[int], d: int, f: float) -> list[int]:
    return [max(1, int(s * f)) if j == d else s for j, s in enumerate(sizes)]


def _kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB"


# ---- bytes --------------------------------------------------------------------------------------
def _round_trips(ctx: Context) -> list[Hint]:
    """ZKH04: an intermediate stored by one phase and loaded by a later one."""
    out = []
    tensors = ctx.costing.workload.tensors
    phases = ctx.costing.workload.phases
    bandwidth = ctx.target.hbm_bandwidth
    for name, t in tensors.items():
        if t.role != "intermediate":
            continue
        writers = [i for i, p in enumerate(phases)
                   if any(w.kind == "store" and w.tensor == name for w in p.work)]
        readers = [i for i, p in enumerate(phases)
                   if any(w.kind == "load" and w.tensor == name for w in p.work)]
        later = [j for j in readers if writers and j > writers[0]]
        if not writers or not later:
            continue
        moved = t.bytes + sum(phases[j].unique_load_bytes.get(name, t.bytes) for j in later)
        time = moved / bandwidth
        if time < MIN_ROUND_TRIP * ctx.est.time:
            continue
        out.append(Hint("ZKH04", f"`{name}` ({_mib(t.bytes)}) is written to HBM by phase "
                        f"[{writers[0]}] and read back by phase(s) "
                        f"{', '.join(f'[{j}]' for j in later)}: fused, it would stay on chip, "
                        f"saving at least {_mib(moved)} of HBM traffic "
                        f"(about {time * 1e6:.2f} us at "
                        f"{bandwidth / 1e12:.2f} TB/s)", phases[writers[0]].loc, writers[0],
                        saving=min(1.0, time / ctx.est.time),
                        detail={"tensor": name, "bytes": moved}))
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _narrower_precision(ctx: Context) -> list[Hint]:
    """ZKH05: an input with a large share of the HBM reads, in a dtype that halves."""
    from zhenwu_cc.core import attrs, dtypes

    kernel = ctx.compiled.zk
    reads = max(ctx.est.hbm_read_bytes, 1)
    out = []
    for i, (name, arg) in enumerate(zip(kernel.arg_names, kernel.body.block.args)):
        dtype = dtypes.from_xdsl(arg.type.element_type).name
        t = ctx.costing.workload.tensors.get(name)
        if (dtype not in NARROWER or kernel.arg_attr(i, attrs.PRECISION) is not None
                or t is None or t.bytes < BYTES_SHARE * reads):
            continue
        if not any(p.bound in ("hbm", "l2") and p.time >= MIN_SHARE * ctx.est.time
                   and any(x.kind == "load" and x.tensor == name for x in w.work)
                   for p, w in zip(ctx.est.phases, ctx.costing.workload.phases)):
            continue  # no phase that reads it waits on memory: fewer bytes cannot help
        edit = Edit(ctx.kernel, f"precision {name} as {NARROWER[dtype]}")
        best = ctx.best([edit])
        if best is None:
            continue
        detail: dict = {"tensor": name, "dtype": dtype, "to": NARROWER[dtype],
                        "budget_rel_l2": ctx.budget}
        worst = _numerics_of(ctx, edit)
        if worst is False:
            continue
        detail["rel_l2_error"] = None if worst is None else _r(worst)
        checked = ("unchecked: run eval with the numerics check to judge it" if worst is None
                   else f"rel L2 error {worst:.2g} against the exact math, within {ctx.budget:g}")
        out.append(_with_edit(ctx, "ZKH05", f"input `{name}` ({dtype}, {_mib(t.bytes)}) is "
                              f"{t.bytes / reads:.0%} of the HBM reads; as {NARROWER[dtype]} it "
                              f"takes half the bytes ({checked})", None, None, best,
                              detail=detail))
    return out


def _numerics_of(ctx: Context, edit: Edit):
    """The worst output's rel L2 error against the exact math with `edit` made; None when the
    numerics check is not run; False when over budget or it fails."""
    from zhenwu_cc.core.diagnostics import CompileError

    if ctx.check_seed is None:
        return None
    other = ctx.variant(edit)
    try:
        result = other.check(seed=ctx.check_seed)
    except CompileError:
        return False
    worst = max((c.rel_l2 for c in result.checks), default=0.0)
    if not math.isfinite(worst) or worst > ctx.budget:
        return False
    return worst


# ---- directives ---------------------------------------------------------------------------------
def _no_effect(ctx: Context) -> list[Hint]:
    """ZKH06: a directive whose removal leaves the estimate as it is, or a clamped tile."""
    out = []
    base = _comparable(ctx.est)
    from zhenwu_cc.passes.sram_plan import DEFAULT_BUFFERS

    for d in ctx.directives:
        edit = Edit(ctx.kernel, "", d)
        if d.text == f"buffers {DEFAULT_BUFFERS}":  # the default restated: no compile needed
            out.append(Hint("ZKH06", f"`{d.text}` (line {d.line}) changes nothing: "
                            f"{DEFAULT_BUFFERS} is the default", _loc(ctx, d), edit=edit,
                            time_s=ctx.est.time, detail={"directive": d.text}))
            continue
        est = ctx.cost(edit)
        if est is not None and _comparable(est) == base:
            out.append(Hint("ZKH06", f"`{d.text}` (line {d.line}) changes nothing in the "
                            "estimate: the compiler does the same without it", _loc(ctx, d),
                            edit=edit, time_s=est.time, detail={"directive": d.text}))
    for i, p in enumerate(ctx.est.phases):
        t = p.tile
        if t is None or t.directive is None or t.directive_sizes is None:
            continue
        used = [*t.sizes[-2:], t.step] if len(t.directive_sizes) == 3 and t.step is not None \
            and len(t.sizes) >= 2 else list(t.sizes)
        asked = list(t.directive_sizes)
        if len(used) != len(asked) or used == asked or any(u > a for u, a in zip(used, asked)):
            continue
        old = next((d for d in ctx.directives if d.text.startswith(f"tile {t.directive} ")), None)
        if old is None or any(h.detail["directive"] == old.text for h in out):
            continue  # removing it is the better edit
        split = re.search(r"split_k\s+(\d+)", old.text)
        edit = _tile_edit(ctx, t.directive, used, int(split.group(1)) if split else 1, old)
        out.append(Hint("ZKH06", f"`{old.text}` (line {old.line}) runs as "
                        f"[{', '.join(map(str, used))}]: the tensor is smaller than the tile",
                        p.loc, i, edit=edit, time_s=ctx.est.time,
                        detail={"directive": old.text, "sizes_used": used}))
    return out


def _comparable(est) -> dict:
    """An estimate as a dict without the names of the directives its tiles came from."""
    d = est.to_dict()
    for p in d["phases"]:
        if p["tile"] is not None:
            p["tile"] = {k: v for k, v in p["tile"].items()
                         if k not in ("directive", "directive_sizes")}
    return d


def _loc(ctx: Context, d: Directive) -> str:
    return f"{ctx.file}:{d.line}:{d.col}"


def _with_edit(ctx: Context, code: str, message: str, p, i, best, detail: dict) -> Hint:
    if best is None:
        return Hint(code, message, p.loc if p is not None else "", i, detail=detail)
    edit, est = best
    return Hint(code, f"{message}; {edit.text()}: {_us(ctx.est.time)} -> {_us(est.time)}",
                p.loc if p is not None else "", i, edit=edit, time_s=est.time,
                saving=1 - est.time / ctx.est.time, detail=detail)


def _us(t: float) -> str:
    return f"{t * 1e6:.2f} us"
