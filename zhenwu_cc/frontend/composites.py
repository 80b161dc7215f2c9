"""Builtins written in terms of other `zk` ops: each is exactly its formula, so the reference,
the lowering, the executor and the cost model support it without a line of their own.

Each handler takes the kernel generator of `irgen` (`gen`), the call's node, its positional
arguments and its keyword arguments, like the handlers in `builtins`. Narrow floats are widened
to f32 once and rounded back once, as `decompose` does for the composite ops, so a builtin here
rounds to its result dtype exactly once.
"""

from __future__ import annotations

import math

from zhenwu_cc.core.diagnostics import error
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.frontend.values import Value

F32 = dtypes.DTYPES["f32"]


def _float_tensor(gen, v, func: str):
    v = gen.need_tensor(v, f"`{func}`")
    if not v.dtype.is_float:
        raise error("ZK0308", f"`{func}` needs a float tensor, got {v.describe()}", v.span,
                    help="cast first, e.g. `f32(x)`")
    return v


def leaky_relu(gen, node, args, kwargs):
    """`leaky_relu(x, slope=0.01)`: x where x > 0, else slope * x (NaN stays NaN)."""
    gen.arity(node, args, 1, 2)
    kw = gen.kwargs(node, kwargs, ("slope",))
    slope = args[1] if len(args) > 1 else kw.get("slope")
    slope_num = gen.static_float(slope, "slope") if slope is not None else 0.01
    x = args[0]
    if x.is_scalar and not isinstance(x.num, bool):
        return Value(node.span, num=x.num if x.num > 0 else x.num * slope_num)
    x = _float_tensor(gen, x, "leaky_relu")
    span = node.span
    positive = gen.compare("gt", x, Value(span, num=0), span)
    scaled = gen.binary("mul", x, Value(slope.span if slope else span, num=slope_num), span)
    return gen.tensor(zk.SelectOp(positive.ssa, x.ssa, scaled.ssa), span)


def hardtanh(gen, node, args, kwargs):
    """`hardtanh(x, lo=-1, hi=1)`: x clamped to [lo, hi]."""
    gen.arity(node, args, 1, 3)
    kw = gen.kwargs(node, kwargs, ("lo", "hi"))
    span = node.span
    lo = args[1] if len(args) > 1 else kw.get("lo", Value(span, num=-1.0))
    hi = args[2] if len(args) > 2 else kw.get("hi", Value(span, num=1.0))
    lo_num, hi_num = gen.static_float(lo, "lo"), gen.static_float(hi, "hi")
    if not lo_num <= hi_num:
        raise error("ZK0306", f"`hardtanh` needs lo <= hi, got lo={lo_num!r}, hi={hi_num!r}",
                    span, help="swap the bounds")
    x = args[0]
    if x.is_scalar and not isinstance(x.num, bool):
        return Value(span, num=min(max(x.num, lo_num), hi_num))
    x = _float_tensor(gen, x, "hardtanh")
    return gen.binary("min", gen.binary("max", x, lo, span), hi, span)


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def mish(gen, node, args, kwargs):
    """`mish(x)` = x * tanh(softplus(x)), computed in f32 and rounded once."""
    gen.arity(node, args, 1, 1)
    gen.kwargs(node, kwargs, ())
    x = args[0]
    span = node.span
    if x.is_scalar and not isinstance(x.num, bool):
        return Value(span, num=x.num * math.tanh(_softplus(float(x.num))))
    x = _float_tensor(gen, x, "mish")
    wide = gen.cast(x, F32)
    t = gen.tensor(zk.TanhOp(gen.tensor(zk.SoftplusOp(wide.ssa), span).ssa), span)
    return gen.cast(gen.binary("mul", wide, t, span), x.dtype)


def over_axes(gen, x, axes: list[int], apply, span):
    """Apply a last-axis op over several axes: move them to the end, merge them into one, apply
    `apply(merged, axis)`, and undo the merge and the move. Values are untouched by the moves,
    so the result is the op's over the joint axes."""
    rank = len(x.shape)
    perm = [a for a in range(rank) if a not in axes] + list(axes)
    moved = x if perm == list(range(rank)) else gen.tensor(zk.TransposeOp(x.ssa, perm), span)
    moved_shape = [x.shape[a] for a in perm]
    keep = rank - len(axes)
    merged_shape = [*moved_shape[:keep], math.prod(moved_shape[keep:])]
    merged = gen.tensor(zk.ReshapeOp(moved.ssa, merged_shape), span)
    y = gen.tensor(zk.ReshapeOp(apply(merged, keep).ssa, moved_shape), span)
    if perm == list(range(rank)):
        return y
    inverse = sorted(range(rank), key=perm.__getitem__)
    return gen.tensor(zk.TransposeOp(y.ssa, inverse), span)


def softmax_over(gen, node, x, axes: list[int]):
    """softmax / log_softmax over a tuple of axes."""
    cls = zk.SoftmaxOp if node.func == "softmax" else zk.LogSoftmaxOp
    return over_axes(gen, x, axes, lambda m, axis: gen.tensor(cls(m.ssa, axis), node.span),
                     node.span)


def norm_over(gen, node, x, axes: list[int], scale, bias, eps: float):
    """layernorm / rmsnorm over a tuple of axes: normalised in f32 over the merged axes, then
    scaled and shifted in f32 and rounded once to x's dtype."""
    cls = zk.LayerNormOp if node.func == "layernorm" else zk.RMSNormOp
    wide = gen.cast(x, F32)
    y = over_axes(gen, wide, axes, lambda m, axis: gen.tensor(cls(m.ssa, None, None, axis, eps),
                                                                node.span), node.span)
    return gen.cast(_scale_bias(gen, y, scale, bias, node.span), x.dtype)


def _scale_bias(gen, y, scale, bias, span):
    if scale is not None:
        y = gen.tensor(zk.MulOp(y.ssa, gen.cast(scale, F32).ssa), span)
    if bias is not None:
        y = gen.tensor(zk.AddOp(y.ssa, gen.cast(bias, F32).ssa), span)
    return y


def group_norm(gen, node, args, kwargs):
    """`group_norm(x, groups, scale, bias, eps=1e-5)` on x: [N, C, ...]: the C channels split into
    `groups` groups, each normalised (population variance) over its channels and all trailing
    axes, then per-channel `scale` and `bias` of shape [C] (as torch.nn.GroupNorm)."""
    gen.arity(node, args, 2, 4)
    kw = gen.kwargs(node, kwargs, ("scale", "bias", "eps"))
    x = _float_tensor(gen, args[0], "group_norm")
    span = node.span
    if len(x.shape) < 2:
        raise error("ZK0313", f"`group_norm` needs x of rank 2 or more ([N, C, ...]), got "
                    f"{x.describe()}", x.span)
    groups = gen.static_int(args[1], "groups")
    channels = x.shape[1]
    if groups < 1 or channels % groups:
        raise error("ZK0313", f"`group_norm`: {channels} channels do not split into {groups} "
                    "equal groups", args[1].span,
                    help=f"use a divisor of {channels} as the number of groups")
    eps = gen.static_float(kw["eps"], "eps") if "eps" in kw else 1e-5
    if not eps >= 0:
        raise error("ZK0306", f"eps must be non-negative, got {eps!r}", kw["eps"].span)
    per_channel = [channels, *([1] * (len(x.shape) - 2))]
    operands = []
    for v in (args[2] if len(args) > 2 else kw.get("scale"),
              args[3] if len(args) > 3 else kw.get("bias")):
        if v is None:
            operands.append(None)
            continue
        v = _float_tensor(gen, v, "group_norm scale/bias")
        if v.shape != (channels,):
            raise error("ZK0302", f"`group_norm` scale/bias must be [{channels}] (one per "
                        f"channel), got {v.describe()}", v.span)
        operands.append(gen.tensor(zk.ReshapeOp(v.ssa, per_channel), span))
    wide = gen.cast(x, F32)
    grouped = [x.shape[0], groups, math.prod(x.shape[1:]) // groups]
    g = gen.tensor(zk.ReshapeOp(wide.ssa, grouped), span)
    normed = gen.tensor(zk.LayerNormOp(g.ssa, None, None, 2, eps), span)
    y = gen.tensor(zk.ReshapeOp(normed.ssa, list(x.shape)), span)
    return gen.cast(_scale_bias(gen, y, *operands, span), x.dtype)


CALLS = {"leaky_relu": leaky_relu, "hardtanh": hardtanh, "mish": mish, "group_norm": group_norm}
