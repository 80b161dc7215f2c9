"""Schedule directives (`tile`, `split`, `fuse`, `precision`, `accumulate`, `place`, `buffers`):
checked against the kernel they name and recorded as `zk.*` attributes. `tile_attr` is public:
`CompiledKernel.retile` builds the same attribute without parsing again."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, StringAttr
from xdsl.ir import Attribute, Block, Operation

from zhenwu_cc.core import attrs
from zhenwu_cc.core.diagnostics import (
    CompileError,
    Diagnostic,
    Note,
    Span,
    did_you_mean,
    error,
    typo_fixits,
)
from zhenwu_cc.core import dtypes, quant
from zhenwu_cc.dialects import zk
from zhenwu_cc.dialects.loc import location, span_at, span_of
from zhenwu_cc.frontend import ast
from zhenwu_cc.frontend.dtype_rules import DTYPE_ALIASES
from zhenwu_cc.frontend.values import Value

PRECISION_DTYPES = quant.PRECISION_DTYPES
SCALE_MODES = {"tensor": 0, "channel": 1, "block": 2, "mx": 0, "nvfp4": 0, "unit": 0, "none": 0}
ACCUMULATE_DTYPES = dtypes.ACCUMULATORS
ACCUMULATE_OPTIONS = attrs.ACCUMULATE_MODES
MAX_BUFFERS = attrs.MAX_BUFFERS
MAX_TILE = 1 << 16


def apply_schedule(sched: ast.Schedule, op: zk.KernelOp, gen) -> None:
    """Record a kernel's schedule directives as attributes of `op` and of the ops and
    parameters they name; `gen` is the generator (`irgen`) that built `op`, with its bindings."""
    arg_attrs: list[dict[str, Attribute]] = [{} for _ in op.body.block.args]
    first: dict[tuple[str, str], Span] = {}
    split_spans: dict[Operation, Span] = {}  # the ops `split` directives split

    def once(key: tuple[str, str], span: Span, what: str) -> None:
        if key in first:
            raise error("ZK0407", f"{what} given twice", span,
                        notes=[Note("first given here", first[key])])
        first[key] = span

    def resolve(ident: ast.Ident, allow_params: bool = True) -> Value:
        b = gen.env.get(ident.id)
        if b is None:
            names = [n for n, x in gen.env.items() if allow_params or not x.is_param]
            guess = did_you_mean(ident.id, names)
            raise CompileError(Diagnostic(
                "ZK0402", f"kernel `{op.sym_name.data}` has no tensor named `{ident.id}`",
                ident.span, fixits=typo_fixits(ident.span, ident.id, guess),
                help=f"did you mean `{guess}`?" if guess else
                "schedules name parameters or bindings of the kernel"))
        if not b.value.is_tensor:
            raise error("ZK0402", f"`{ident.id}` is a compile-time scalar, not a tensor",
                        ident.span)
        if not allow_params and isinstance(b.value.ssa.owner, Block):  # a parameter or its alias
            raise error("ZK0402", f"`{ident.id}` names a parameter; tiles apply to computed values",
                        ident.span)
        return b.value

    def set_attr(ident: ast.Ident, key: str, attr: Attribute) -> None:
        v = resolve(ident).ssa
        if isinstance(v.owner, Block):
            arg_attrs[v.index][key] = attr  # a parameter, or a binding that aliases it
        else:
            v.owner.attributes[key] = attr

    for d in sched.directives:
        match d:
            case ast.TileDirective():
                v = resolve(d.target, allow_params=False)
                once(("tile", d.target.id), d.span, f"`tile {d.target.id}`")
                v.ssa.owner.attributes[attrs.TILE] = tile_attr(
                    v.ssa.owner, d.target.id, d.sizes, d.split_k, d.sizes_span, d.span)
            case ast.SplitDirective():
                v = resolve(d.target, allow_params=False)
                once(("split", d.target.id), d.span, f"`split {d.target.id}`")
                carrier = _split_carrier(v.ssa.owner, d)
                if carrier in split_spans:  # two names for one matmul (`c = a @ b`, `h = c + 1`)
                    raise error("ZK0407", f"the split of `{d.target.id}`'s matmul given twice",
                                d.span, notes=[Note("first given here", split_spans[carrier])])
                carrier.attributes[attrs.SPLIT] = zk.SplitAttr(d.target.id, d.parts,
                                                               location(d.span))
                split_spans[carrier] = d.span
            case ast.FuseDirective():
                v = resolve(d.target)
                once(("fuse", d.target.id), d.span, f"`fuse {d.target.id}`")
                if d.setting.id != "off":
                    raise error("ZK0609", f"`fuse {d.target.id} {d.setting.id}`: the setting is "
                                "`off`", d.setting.span, help=f"write `fuse {d.target.id} off` "
                                "to keep it out of fused groups; fusion is on by default")
                if isinstance(v.ssa.owner, Block):
                    raise error("ZK0609", f"`{d.target.id}` names a parameter: no grid fuses "
                                "the computation of an input", d.target.span,
                                help=f"drop `fuse {d.target.id} off`, or name a computed value")
                v.ssa.owner.attributes[attrs.FUSE] = zk.FuseAttr(location(d.span))
            case ast.PrecisionDirective():
                attr = _precision_attr(d)
                for ident in d.targets:
                    v = resolve(ident)
                    once(("precision", ident.id), ident.span, f"precision of `{ident.id}`")
                    _check_precision(d, ident, v, gen)
                    set_attr(ident, attrs.PRECISION, attr)
            case ast.AccumulateDirective():
                once(("accumulate", ""), d.span, "`accumulate`")
                if d.dtype.id not in ACCUMULATE_DTYPES:
                    raise error("ZK0409", f"cannot accumulate in `{d.dtype.id}`", d.dtype.span,
                                help="accumulate takes one of " + ", ".join(ACCUMULATE_DTYPES))
                op.attributes[attrs.ACCUMULATE] = dtypes.to_xdsl(dtypes.DTYPES[d.dtype.id])
                if d.option is not None:
                    if d.option.id not in ACCUMULATE_OPTIONS:
                        guess = did_you_mean(d.option.id, ACCUMULATE_OPTIONS)
                        raise error("ZK0409", f"unknown accumulate option `{d.option.id}`",
                                    d.option.span, help=(f"did you mean `{guess}`? " if guess
                                                         else "") + "options: fp8_fast")
                    if d.dtype.id != "f32":
                        raise error("ZK0409", f"`{d.option.id}` emulates FP8 tensor cores, which "
                                    "promote partial sums to f32", d.option.span,
                                    help=f"write `accumulate f32 {d.option.id}`")
                    op.attributes[attrs.ACCUMULATE_MODE] = StringAttr(d.option.id)
            case ast.PlaceDirective():
                stacks = d.stacks or []
                if len(set(stacks)) != len(stacks):
                    raise error("ZK0405", f"stacks {stacks} names a stack twice", d.span)
                for ident in d.targets:
                    resolve(ident)
                    once(("place", ident.id), ident.span, f"placement of `{ident.id}`")
                    set_attr(ident, attrs.PLACE, zk.PlaceAttr(d.memory, stacks))
            case ast.BuffersDirective():
                once(("buffers", ""), d.span, "`buffers`")
                if not 1 <= d.count <= MAX_BUFFERS:
                    raise error("ZK0406", f"buffers {d.count}: the multi-buffering depth must be "
                                f"1..{MAX_BUFFERS}", d.span)
                op.attributes[attrs.BUFFERS] = IntegerAttr(d.count, 64)
    _check_split_k(op, split_spans)
    if any(arg_attrs):
        from xdsl.dialects.builtin import ArrayAttr

        op.arg_attrs = ArrayAttr([DictionaryAttr(a) for a in arg_attrs])


def tile_attr(op: Operation, name: str, sizes: Sequence[int], split_k: int | None,
              sizes_span: Span | None = None, span: Span | None = None) -> zk.TileAttr:
    """`tile NAME [sizes] split_k N`, checked against the op NAME binds (`check_tile`)."""
    check_tile(op, name, sizes, split_k, sizes_span, span)
    return zk.TileAttr(sizes, split_k or 1, location(span) if span is not None else None)


def check_tile(op: Operation, name: str, sizes: Sequence[int], split_k: int | None,
               sizes_span: Span | None = None, span: Span | None = None) -> None:
    """ZK0403 unless `tile NAME [sizes] split_k N` fits the op NAME binds: three sizes
    [M, N, K] for a matmul and its epilogue, else one per dimension of the value."""
    rooted = zk.matmul_feeding(op) is not None
    shape = tuple(op.results[0].type.get_shape())
    want = 3 if rooted else len(shape)
    what = ("[M, N, K] for a matmul and its epilogue" if rooted
            else f"one per dimension of {list(shape)}")
    if len(sizes) != want:
        raise error("ZK0403", f"`tile {name}` needs {want} size{'s' * (want != 1)} ({what}), "
                    f"got {len(sizes)}", sizes_span)
    if any(not 1 <= s <= MAX_TILE for s in sizes):
        raise error("ZK0403", f"tile sizes must be between 1 and {MAX_TILE}", sizes_span)
    if split_k is not None and (not rooted or not 1 <= split_k <= 1024):
        raise error("ZK0403", "split_k applies to matmuls and must be 1..1024"
                    if rooted else f"`{name}` is not a matmul: no split_k", span)


SPLITTABLE = "sum, max, min, mean, logsumexp, argmax, softmax, log_softmax, layernorm, rmsnorm, @"


def _split_carrier(op: Operation, d: ast.SplitDirective) -> Operation:
    """The op that `split NAME S` splits (ZK0607 when none can be): the reduction NAME binds
    (a composite's reductions once `decompose` expands it), or the matmul NAME computes,
    directly or through its epilogue, where it means `split_k S`. S must lie in
    1..the reduced extent."""
    name = d.target.id
    mm = zk.matmul_feeding(op)
    if mm is not None:
        op, axis, extent = mm, None, mm.lhs.type.get_shape()[-1]
    else:
        if isinstance(op, zk.ReduceOp):
            axes = op.axis_list
        elif isinstance(op, (zk.ArgmaxOp, zk.AxisOp, zk.NormOp)):
            axes = (op.axis.value.data,)
        else:
            raise error("ZK0607", f"`split {name} {d.parts}` cannot apply: `{name}` "
                        f"(`{op.name}`) has no reduction to split", d.span,
                        notes=_binding_note(op, name),
                        help="`split` takes a value bound to a reduction or matmul ("
                        + SPLITTABLE + "); bind the reduction to a name of its own and split "
                        "that")
        if len(axes) != 1:
            raise error("ZK0607", f"`split {name} {d.parts}` cannot apply: `{name}` reduces "
                        f"{len(axes)} axes at once", d.span, notes=_binding_note(op, name),
                        help="reduce one axis at a time (`sum(sum(x, axis=1), axis=0)`) and "
                        "split the binding of the longer one")
        axis = axes[0]
        extent = op.operands[0].type.get_shape()[axis]
    if not 1 <= d.parts <= extent:
        what = "K" if axis is None else f"axis {axis}"
        raise error("ZK0607", f"`split {name} {d.parts}` cannot apply: the reduced {what} of "
                    f"`{name}` has {extent} elements, so it splits in 1..{extent} parts",
                    d.parts_span, notes=_binding_note(op, name),
                    help=f"choose S between 1 and {extent}; 1 keeps the reduction in one part")
    return op


def _binding_note(op: Operation, name: str) -> list[Note]:
    span = span_of(op)
    return [Note(f"`{name}` is computed here", span)] if span is not None else []


def _check_split_k(kernel: zk.KernelOp, split_spans: dict[Operation, Span]) -> None:
    """`split NAME S` on a matmul is its `split_k S`: refuse a kernel asking both (ZK0407)."""
    for op in kernel.body.walk():
        tile = op.attributes.get(attrs.TILE)
        if not isinstance(tile, zk.TileAttr) or tile.split_k.data == 1:
            continue
        mm = zk.matmul_feeding(op)
        if mm is None or mm not in split_spans:
            continue
        name = op.results[0].name_hint or "this value"
        raise error("ZK0407", f"the split of `{name}`'s matmul given twice: `split_k "
                    f"{tile.split_k.data}` and `split {mm.attributes[attrs.SPLIT].parts.data}`",
                    split_spans[mm], notes=[Note("split_k given here", span_at(tile.loc))]
                    if span_at(tile.loc) else [], help="keep one of them")


def _precision_attr(d: ast.PrecisionDirective) -> zk.PrecisionAttr:
    if d.dtype.id not in PRECISION_DTYPES:
        guess = DTYPE_ALIASES.get(d.dtype.id.lower()) or did_you_mean(d.dtype.id, PRECISION_DTYPES)
        raise error("ZK0404", f"`precision ... as {d.dtype.id}`: not a precision dtype",
                    d.dtype.span, help=(f"did you mean `{guess}`? " if guess else "")
                    + "precision takes " + ", ".join(PRECISION_DTYPES))
    dt = dtypes.DTYPES[d.dtype.id]
    mode = d.mode.id if d.mode else ("tensor" if dt.is_low_precision else "none")
    if mode not in SCALE_MODES:
        guess = did_you_mean(mode, SCALE_MODES)
        raise error("ZK0404", f"unknown scale mode `{mode}`", d.mode.span,
                    help=(f"did you mean `{guess}`? " if guess else "")
                    + "modes: tensor, channel(axis), block(rows, cols), mx, nvfp4, unit")
    if len(d.mode_args) != SCALE_MODES[mode]:
        raise error("ZK0404", f"scale mode `{mode}` takes {SCALE_MODES[mode]} argument"
                    f"{'s' if SCALE_MODES[mode] != 1 else ''}, got {len(d.mode_args)}", d.span)
    if mode == "nvfp4" and dt.name != "f4E2M1FN":
        raise error("ZK0404", "scale mode `nvfp4` needs `as f4E2M1FN`", d.dtype.span)
    if mode == "mx" and not dt.is_low_precision:
        raise error("ZK0404", "scale mode `mx` needs an FP8 or FP4 dtype", d.dtype.span)
    if mode != "none" and not dt.is_low_precision:
        raise error("ZK0404", f"{dt.name} needs no scale: drop `scale {mode}`", d.mode.span)
    if mode == "block" and any(a < 1 for a in d.mode_args):
        raise error("ZK0404", f"block sizes must be positive, got {d.mode_args}", d.span)
    option = d.mode_option.id if d.mode_option else ""
    choices = zk.SCALE_OPTIONS.get(mode, ())
    if option and option not in choices:
        raise error("ZK0404", f"scale mode `{mode}` has no option `{option}`",
                    d.mode_option.span, help=f"`{mode}` takes " + " or ".join(choices)
                    if choices else f"`{mode}` takes no option")
    return zk.PrecisionAttr(dtypes.to_xdsl(dt), mode, d.mode_args,
                            "" if option == next(iter(choices), "") else option)


def _check_precision(d: ast.PrecisionDirective, ident: ast.Ident, v: Value, gen) -> None:
    """Checks that need the tensor: rank, block tiling, and contraction-axis modes."""
    mode = d.mode.id if d.mode else "tensor"
    if not v.dtype.is_float:
        raise error("ZK0404", f"`{ident.id}` is {v.describe()}; precision applies to floats",
                    ident.span)
    shape = v.shape
    if mode == "unit" and not isinstance(v.ssa.owner, zk.SoftmaxOp):
        raise error("ZK0619", f"scale mode `unit` quantises a softmax's unnormalised "
                    f"probabilities, but `{ident.id}` is not the result of `softmax(...)`",
                    ident.span, notes=[Note(f"`{ident.id}` is computed here", span_of(v.ssa.owner))]
                    if isinstance(v.ssa.owner, Operation) else [],
                    help="name a binding `p = softmax(s, axis=...)`, or use `scale tensor`")
    if mode == "channel":
        gen.axis(d.mode_args[0], len(shape), d.mode.span)
    if mode == "block":
        rows, cols = d.mode_args
        if len(shape) < 2 or shape[-2] % rows or shape[-1] % cols:
            raise error("ZK0404", f"scale block({rows}, {cols}) does not tile `{ident.id}` of "
                        f"shape {list(shape)}", d.span,
                        help="block sizes must divide the last two dimensions")
    if mode in ("mx", "nvfp4"):
        group = 32 if mode == "mx" else 16
        axis = zk.contraction_axis(v.ssa)
        if axis is None:
            raise error("ZK0404", f"scale mode `{mode}` blocks along the contraction axis, but "
                        f"`{ident.id}` is not an operand of a matmul", ident.span)
        if shape[axis] % group:
            raise error("ZK0404", f"scale mode `{mode}` needs the contraction dim of "
                        f"`{ident.id}` ({shape[axis]}) to be a multiple of {group}", ident.span)
        others = zk.uses_besides_matmuls(v.ssa)
        if others:
            raise error("ZK0801", f"scale mode `{mode}` blocks `{ident.id}` along the contraction "
                        f"axis of its matmul, but `{ident.id}` is also used by "
                        f"`{others[0].name}`", ident.span,
                        notes=[Note("used here", span_of(others[0]))],
                        help=f"quantise a copy for the matmul (`{ident.id}_mm = {ident.id} * 1` "
                        "in the kernel), or choose `scale tensor`, `channel` or `block`")
