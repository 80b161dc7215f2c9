"""`place-hbm`: give every global tensor of a kernel an HBM region, and check that they all fit.

The memory model (docs/placement.md): HBM is `hbm.stacks` stacks of `stack_capacity` bytes. A
region is a set of stacks, a byte offset `base` that is the same on each of them, and an
interleave: the tensor's bytes go round its stacks `interleave` bytes at a time, so a region over
k stacks takes ceil(size / (k x interleave)) x interleave bytes from `base` on each, rounded up to
the target's `alignment` (the padding counts against capacity).

The policy, deterministic (program order within each class, the classes in this order):
1. tensors of at least one interleave unit per stack (size >= interleave x stacks) and no
   `stacks(...)` directive: interleaved over all stacks, so every stack serves an equal share;
2. `place NAME in hbm stacks(...)`: interleaved over those stacks;
3. smaller tensors: packed contiguously (`interleave 0`) on the stack with the fewest bytes in
   use (the lowest id on a tie), so that none takes a whole stripe of every stack.
Each region starts at the lowest aligned base free on all of its stacks. `place NAME in l2` keeps
the tensor's HBM home (by the rules above) and marks it L2-resident.

Checks, before anything is recorded: ZK0903 a pinned stack the target lacks, ZK0901 the kernel
over the target's HBM, ZK0904 L2-resident tensors over the persisting L2, ZK0902 a stack over its
capacity. Each names the tensors, their sizes, the total and the capacity, and what would fit.

Global tensors are the kernel's arguments (inputs) and the `tile.empty`s the `tile` pass made
(outputs when returned, else intermediates); kernel-level `zk.reshape`s are views, not
allocations. The region is recorded as `#ppu.hbm<...>` under `ppu.hbm` on the argument
(arg_attrs) or the tile.empty; `lower-ppu` carries it to the ppu arguments and `ppu.global`s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, TensorType
from xdsl.ir import Attribute
from xdsl.passes import ModulePass
from zhenwu_cc.core import attrs as attr_names
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu, tile, zk
from zhenwu_cc.dialects.loc import span_at, span_of
from zhenwu_cc.core.target import DEFAULT_TARGET, HBM, Target, list_targets, load_target

from zhenwu_cc.core.diagnostics import Note, Span, error

KEY = attr_names.HBM  # the attribute name of a placement, on arguments and tile.empty / ppu.global


def gib(n: int, exact: bool = True) -> str:
    """Bytes for people, and exactly: `150.00 GiB (161061273600 bytes)`."""
    unit, scale = next(((u, 1 << s) for u, s in (("GiB", 30), ("MiB", 20), ("KiB", 10))
                        if n >= 1 << s), ("bytes", 1))
    if scale == 1:
        return f"{n} bytes"
    return f"{n / scale:.2f} {unit}" + (f" ({n} bytes)" if exact else "")


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class _Global:
    """A global tensor of a tile-level kernel."""

    name: str
    role: str  # input | output | intermediate
    type: TensorType
    pinned: tuple[int, ...]  # `place NAME in hbm stacks(...)`; () = the policy's choice
    l2: bool  # `place NAME in l2`
    span: Span | None
    where: tile.EmptyOp | int  # the tile.empty that makes it, or its argument's index

    @property
    def nbytes(self) -> int:
        return dtypes.from_xdsl(self.type.element_type).nbytes(math.prod(self.type.get_shape()))

    def describe(self) -> str:
        dt = dtypes.from_xdsl(self.type.element_type).name
        return f"`{self.name}` ({self.role}, {dt}{list(self.type.get_shape())})"


def _returned(kernel: zk.KernelOp) -> dict[tile.EmptyOp, int]:
    """The tile.empty behind each kernel result (through the grids that fill it and reshapes)."""
    out: dict[tile.EmptyOp, int] = {}
    for index, value in enumerate(kernel.body.block.last_op.operands):
        while isinstance(value.owner, (zk.ReshapeOp, tile.GridOp)):
            owner = value.owner
            value = owner.input if isinstance(owner, zk.ReshapeOp) else owner.outs[value.index]
        if isinstance(value.owner, tile.EmptyOp):
            out[value.owner] = index
    return out


def _held_name(e: tile.EmptyOp) -> str | None:
    """The name of the value the grid filling `e` computes (its result for that `outs`)."""
    for use in e.result.uses:
        grid = use.operation
        if isinstance(grid, tile.GridOp):
            return grid.res[use.index - len(grid.ins)].name_hint
    return None


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _arg_dicts(kernel: zk.KernelOp) -> list[dict[str, Attribute]]:
    if kernel.arg_attrs is None:
        return [{} for _ in kernel.body.block.args]
    return [dict(d.data) for d in kernel.arg_attrs.data]


def _directive(attrs: dict[str, Attribute]) -> tuple[tuple[int, ...], bool]:
    """(pinned stacks, L2-resident) from a `zk.place` attribute."""
    p = attrs.get(attr_names.PLACE)
    if not isinstance(p, zk.PlaceAttr):
        return (), False
    return p.stack_ids, p.memory.data == "l2"


def global_tensors(kernel: zk.KernelOp) -> list[_Global]:
    """Inputs, outputs, then intermediates, named as the cost report names them: arguments and
    results by name, intermediates by the value they hold, else `tmpN` (N counts tensors)."""
    taken: set[str] = set()
    out: list[_Global] = []
    for i, (arg, attrs) in enumerate(zip(kernel.body.block.args, _arg_dicts(kernel))):
        out.append(_Global(_unique(kernel.arg_names[i], taken), "input", arg.type,
                           *_directive(attrs), span_at(arg.location), i))
    returned = _returned(kernel)
    empties = [op for op in kernel.body.block.ops if isinstance(op, tile.EmptyOp)]
    results = sorted((e for e in empties if e in returned), key=lambda e: returned[e])
    for e in [*results, *(e for e in empties if e not in returned)]:
        if e in returned:
            name, role = kernel.names_of_results[returned[e]], "output"
        else:
            name, role = e.result.name_hint or f"tmp{len(out)}", "intermediate"
        out.append(_Global(_unique(name, taken), role, e.result.type,
                           *_directive(dict(e.attributes)), span_of(e), e))
    return out


def _record(kernel: zk.KernelOp, tensors: list[_Global], regions: dict[str, ppu.HbmAttr]) -> None:
    dicts = _arg_dicts(kernel)
    for t in tensors:
        if isinstance(t.where, int):
            dicts[t.where][KEY] = regions[t.name]
        else:
            t.where.attributes[KEY] = regions[t.name]
    if dicts:
        kernel.arg_attrs = ArrayAttr([DictionaryAttr(d) for d in dicts])


def _placed(kernel: zk.KernelOp, t: _Global) -> Attribute | None:
    if isinstance(t.where, int):
        return kernel.arg_attr(t.where, KEY)
    return t.where.attributes.get(KEY)


# ---- the layout -------------------------------------------------------------------------------
def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def _layout(t: _Global, hbm: HBM) -> tuple[int, int]:
    """(how many stacks, interleave) the policy gives `t`; interleave 0 = packed contiguously."""
    if t.pinned:
        return len(t.pinned), hbm.interleave
    if t.nbytes >= hbm.interleave * hbm.stacks:
        return hbm.stacks, hbm.interleave
    return 1, 0


def _per_stack(t: _Global, hbm: HBM) -> int:
    """Bytes `t` reserves on each of its stacks, alignment padding included."""
    k, g = _layout(t, hbm)
    return _align(t.nbytes if g == 0 else -(-t.nbytes // (k * g)) * g, hbm.alignment)


def _need(tensors: list[_Global], hbm: HBM) -> int:
    return sum(_per_stack(t, hbm) * _layout(t, hbm)[0] for t in tensors)


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class _Plan:
    """Where each tensor goes, and how full each stack is so far."""

    regions: dict[str, ppu.HbmAttr]
    top: list[int]  # the first free byte of each stack
    level: int  # bytes each stack holds of the tensors interleaved over all stacks


def _plan(tensors: list[_Global], hbm: HBM) -> _Plan:
    top = [0] * hbm.stacks
    regions: dict[str, ppu.HbmAttr] = {}
    everywhere = [t for t in tensors if not t.pinned and _layout(t, hbm)[1]]
    pinned = [t for t in tensors if t.pinned]
    packed = [t for t in tensors if not t.pinned and not _layout(t, hbm)[1]]
    for t in [*everywhere, *pinned, *packed]:
        g = _layout(t, hbm)[1]
        if t.pinned:
            stacks = t.pinned
        elif g:
            stacks = tuple(range(hbm.stacks))
        else:
            stacks = (min(range(hbm.stacks), key=lambda s: (top[s], s)),)
        base = max(top[s] for s in stacks)
        for s in stacks:
            top[s] = base + _per_stack(t, hbm)
        regions[t.name] = ppu.HbmAttr(stacks, base, t.nbytes, g, t.l2)
    level = sum(_per_stack(t, hbm) for t in everywhere)
    return _Plan(regions, top, level)


# ---- checks -------------------------------------------------------------------------------------
def _other_targets(target: Target, fits: Callable[[Target], bool]) -> list[Target]:
    out = []
    for name in list_targets():
        other = load_target(name)
        if other.path != target.path and fits(other):
            out.append(other)
    return out


def _check_stack_ids(kernel: zk.KernelOp, tensors: list[_Global], target: Target) -> None:
    count = target.hbm.stacks
    for t in tensors:
        bad = [s for s in t.pinned if s >= count]
        if bad:
            raise error("ZK0903", f"{t.describe()} is placed on HBM stack"
                        f"{'s' * (len(bad) > 1)} {', '.join(map(str, bad))}, but {target.name} "
                        f"has {count} stacks (0..{count - 1})", t.span or span_of(kernel),
                        help=f"place `{t.name}` on stacks among 0..{count - 1}, e.g. "
                             f"`place {t.name} in hbm stacks("
                             f"{', '.join(map(str, range(min(len(t.pinned), count))))})`")


def _check_capacity(kernel: zk.KernelOp, tensors: list[_Global], target: Target) -> None:
    hbm = target.hbm
    need = _need(tensors, hbm)
    if need <= hbm.capacity:
        return
    others = _other_targets(target, lambda o: _need(tensors, o.hbm) <= o.hbm.capacity)
    shrink = (f"shrink the tensors {need / hbm.capacity:.3f}x (smaller -D shape values), or give "
              "a target file with a larger hbm.stacks.capacity (--target FILE.toml)")
    help = (f"a target whose HBM fits: "
            f"{', '.join(f'{o.name} ({gib(o.hbm.capacity, False)})' for o in others)}; or {shrink}"
            if others else f"no packaged target has {gib(need)} of HBM; {shrink}")
    raise error(
        "ZK0901", f"kernel `{kernel.sym_name.data}` needs {gib(need)} of HBM for its "
        f"{len(tensors)} global tensors (alignment padding included); {target.name} has "
        f"{gib(hbm.capacity)}: {hbm.stacks} stacks of {gib(hbm.stack_capacity)}",
        span_of(kernel),
        notes=[Note(f"{t.describe()}: {gib(t.nbytes)}", t.span)
               for t in sorted(tensors, key=lambda t: (-t.nbytes, t.name))],
        help=help)


def _check_stacks(plan: _Plan, tensors: list[_Global], target: Target) -> None:
    hbm = target.hbm
    for s, used in enumerate(plan.top):
        if used <= hbm.stack_capacity:
            continue
        on = [t for t in tensors if s in plan.regions[t.name].stack_ids]
        pinned = [t for t in on if t.pinned]
        if pinned:
            cause = max(pinned, key=lambda t: t.nbytes)
            k = -(-cause.nbytes // max(hbm.stack_capacity - plan.level, 1))
            help = (f"spread `{cause.name}` over at least {k} stacks (`place {cause.name} in hbm "
                    f"stacks({', '.join(map(str, range(k)))})`), or pin fewer tensors to stack "
                    f"{s}" if k <= hbm.stacks else f"drop the pin of `{cause.name}`")
        else:
            cause = on[0]
            help = "the kernel nearly fills HBM: shrink its tensors (smaller -D shape values)"
        raise error(
            "ZK0902", f"HBM stack {s} of {target.name} would hold {gib(used)}; it has "
            f"{gib(hbm.stack_capacity)}", cause.span,
            notes=[Note(f"{t.describe()} on stacks {list(plan.regions[t.name].stack_ids)}: "
                        f"{gib(_per_stack(t, hbm))} on each", t.span) for t in on],
            help=help)


def _check_l2(tensors: list[_Global], target: Target) -> None:
    l2 = [t for t in tensors if t.l2]
    need = sum(t.nbytes for t in l2)
    if not l2 or need <= target.l2.persisting_bytes:
        return
    names = ", ".join(f"`{t.name}`" for t in l2)
    others = _other_targets(target, lambda o: need <= o.l2.persisting_bytes)
    where = (f"a target whose persisting L2 fits them: "
             f"{', '.join(f'{o.name} ({gib(o.l2.persisting_bytes, False)})' for o in others)}"
             if others else "no packaged target can set aside that much L2")
    if not target.l2.persisting:
        message = (f"{names} placed in L2, but the L2 of {target.name} cannot set aside a "
                   "persisting region")
    else:
        message = (f"tensors placed in L2 ({names}) need {gib(need)}; {target.name} can set "
                   f"aside {gib(target.l2.persisting_bytes)} of its {gib(target.l2.bytes)} L2 "
                   f"(l2.persisting_max_fraction {target.l2.persisting_max_fraction:g})")
    raise error("ZK0904", message, l2[0].span,
                notes=[Note(f"{t.describe()}: {gib(t.nbytes)}", t.span) for t in l2],
                help=f"place fewer or smaller tensors in L2 (they stay in HBM without "
                     f"`place NAME in l2`); or {where}")


def place_kernel(kernel: zk.KernelOp, target: Target) -> None:
    """Check and record the placement of one tile-level kernel's global tensors."""
    for e in kernel.body.block.ops:
        if isinstance(e, tile.EmptyOp) and not e.result.name_hint:
            e.result.name_hint = _held_name(e)  # reports name it after the value it holds
    tensors = global_tensors(kernel)
    _check_stack_ids(kernel, tensors, target)
    _check_capacity(kernel, tensors, target)
    _check_l2(tensors, target)
    plan = _plan(tensors, target.hbm)
    _check_stacks(plan, tensors, target)
    _record(kernel, tensors, plan.regions)


# frozen: xDSL's ModulePass is; no repr (start-up: nothing prints a pass)
@dataclass(frozen=True, repr=False)
class PlaceHbmPass(ModulePass):
    """Give every global tensor of each tile-level `zk.kernel` an HBM region (module docstring)."""

    name = "place-hbm"
    target: str = DEFAULT_TARGET

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = load_target(self.target)
        for kernel in [k for k in op.walk() if isinstance(k, zk.KernelOp)]:
            place_kernel(kernel, target)


# ---- the placement map, for reports -------------------------------------------------------------
def placement_map(kernel: zk.KernelOp) -> list[dict]:
    """One record per placed global tensor of a tile-level kernel, in program order: tensor,
    role, bytes, stacks, base, interleave, l2 (the driver reads a ppu kernel's through
    `runtime.cost.report.placement_map`)."""
    rows = [(t.name, t.role, _placed(kernel, t)) for t in global_tensors(kernel)]
    return [{"tensor": name, "role": role, "bytes": a.size.data, "stacks": list(a.stack_ids),
             "base": a.base.data, "interleave": a.interleave.data, "l2": a.l2_resident}
            for name, role, a in rows if isinstance(a, ppu.HbmAttr)]
