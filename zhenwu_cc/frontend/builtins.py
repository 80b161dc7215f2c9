"""The builtin functions: a handler per name that checks the call (arity, keywords, dtypes, axes)
and emits `zk` ops; `composites` holds the builtins written as formulas of other ops."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from xdsl.dialects.builtin import TensorType

from zhenwu_cc.core.diagnostics import (
    CompileError,
    Diagnostic,
    FixIt,
    Span,
    did_you_mean,
    error,
    typo_fixits,
)
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.frontend import ast, composites
from zhenwu_cc.frontend.dtype_rules import DTYPE_ALIASES
from zhenwu_cc.frontend.folding import I64, SCALAR_UNARY, fold
from zhenwu_cc.frontend.values import Value

UNARY_FUNCS = ("exp", "log", "tanh", "erf", "sigmoid", "relu", "gelu", "gelu_tanh", "silu",
               "softplus", "sqrt", "rsqrt", "abs")
BUILTINS = (*UNARY_FUNCS, "max", "min", "sum", "mean", "argmax", "pow", "clamp", "where", "iota",
            "concat", "softmax", "log_softmax", "logsumexp", "layernorm", "rmsnorm", "transpose",
            "reshape", "broadcast_to", "bitcast", *composites.CALLS)


class BuiltinCalls:
    """The kernel generator's builtin calls (`irgen._KernelGen` mixes them in; they use its
    static-value helpers, dtype rules and operators)."""

    def call(self, node: ast.Call, kids: list[Value]) -> Value:
        name = node.func
        args = kids[: len(node.args)]
        kwargs = {kw.name: (kw, v) for kw, v in zip(node.kwargs, kids[len(node.args):])}
        if name in dtypes.DTYPES:
            self.arity(node, args, 1, 1)
            self.kwargs(node, kwargs, ())
            return self.cast_call(dtypes.DTYPES[name], args[0], node.span)
        handler = _CALLS.get(name)
        if handler is None:
            alias = DTYPE_ALIASES.get(name.lower())
            guess = alias or did_you_mean(name, [*BUILTINS, *dtypes.DTYPES])
            raise CompileError(Diagnostic(
                "ZK0203", f"unknown function `{name}`", node.func_span,
                fixits=(FixIt(node.func_span, guess),) if alias else
                typo_fixits(node.func_span, name, guess),
                help=f"did you mean `{guess}`?" if guess else
                "docs/language.md lists the builtins"))
        return handler(self, node, args, kwargs)

    def arity(self, node: ast.Call, args: list[Value], lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise error("ZK0305", f"`{node.func}` takes {want} positional argument"
                        f"{'' if want == '1' else 's'}, got {len(args)}", node.span)

    def kwargs(self, node: ast.Call, kwargs: dict, allowed: Sequence[str]) -> dict[str, Value]:
        out = {}
        for name, (kw, v) in kwargs.items():
            if name not in allowed:
                guess = did_you_mean(name, allowed)
                raise error("ZK0306", f"`{node.func}` has no keyword argument `{name}`", kw.span,
                            help=(f"did you mean `{guess}`?" if guess else
                                  f"it takes: {', '.join(allowed)}" if allowed else
                                  "it takes no keyword arguments"))
            out[name] = v
        if len(node.kwargs) != len(kwargs):
            seen = set()
            for kw in node.kwargs:
                if kw.name in seen:
                    raise error("ZK0306", f"keyword argument `{kw.name}` given twice", kw.span)
                seen.add(kw.name)
        return out

    def cast_call(self, to: DType, v: Value, span: Span) -> Value:
        if v.is_scalar:
            if isinstance(v.num, bool) and to.name != "i1":
                raise error("ZK0308", f"cannot make {to.name} from {v.num!r}", v.span)
            return self.weak(v, to, span)  # a literal must fit: no silent saturation
        v = self.need_tensor(v, f"`{to.name}(...)`")
        if v.dtype == to:
            return v
        if to.name == "f8E8M0FNU" and not v.dtype.is_float:
            raise error("ZK0308", f"`f8E8M0FNU(...)` converts the value of {v.describe()}: an "
                        "integer is not a power of two in general, and 0 becomes NaN", span,
                        help="to read integer codes as E8M0 scales (2**(code - 127)) use "
                        "`bitcast(x, f8E8M0FNU)`; to convert values, go through a float: "
                        "`f8E8M0FNU(f32(x))`")
        return self.tensor(zk.CastOp(v.ssa, dtypes.to_xdsl(to)), span)

    def bitcast_call(self, node, args, kwargs) -> Value:
        """`bitcast(x, DTYPE)`: the same bits read as another type of the same width."""
        self.arity(node, args, 2, 2)
        self.kwargs(node, kwargs, ())
        x = self.need_tensor(args[0], "`bitcast`")
        to = args[1].dtype_arg
        if to is None:
            raise error("ZK0306", f"`bitcast` needs a dtype name as its second argument, got "
                        f"{args[1].describe()}", args[1].span, help="e.g. `bitcast(s, f8E8M0FNU)`")
        if not zk.bitcast_compatible(x.dtype, to):
            raise error("ZK0308", f"`bitcast` from {x.dtype.name} ({x.dtype.bits} bits) to "
                        f"{to.name} ({to.bits} bits): the widths must match, at 8 bits or more",
                        node.span, help="`bitcast` reinterprets bits; to convert values use "
                        f"`{to.name}(x)`")
        if x.dtype == to:
            return x
        return self.tensor(zk.BitcastOp(x.ssa, dtypes.to_xdsl(to)), node.span)

    def unary_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 1)
        self.kwargs(node, kwargs, ())
        x = args[0]
        if x.is_scalar and not isinstance(x.num, bool):
            return Value(node.span, num=fold(SCALAR_UNARY[node.func], x.num))
        x = self.need_tensor(x, f"`{node.func}`")
        if node.func != "abs" and not x.dtype.is_float:
            raise error("ZK0308", f"`{node.func}` needs a float tensor, got {x.describe()}",
                        node.span, help="cast first, e.g. `f32(x)`")
        if node.func == "abs" and x.dtype.name in ("i1", "ui8"):
            return x
        return self.tensor(zk.UNARY_OPS[node.func](x.ssa), node.span)

    def minmax_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 2)
        if len(args) == 2:
            self.kwargs(node, kwargs, ())
            return self.binary(node.func, args[0], args[1], node.span)
        return self.reduce_call(node, args, kwargs)

    def reduce_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 1)
        kw = self.kwargs(node, kwargs, ("axis", "keepdims"))
        x = self.need_tensor(args[0], f"`{node.func}`")
        axes = self.axes(kw.get("axis"), len(x.shape))
        keep = self.static_bool(kw["keepdims"], "keepdims") if "keepdims" in kw else False
        if node.func == "mean" and not x.dtype.is_float:
            raise error("ZK0308", f"`mean` needs a float tensor, got {x.describe()}", node.span,
                        help="cast first, e.g. `mean(f32(x))`")
        if node.func == "sum" and x.dtype.name == "i1":
            raise error("ZK0308", "`sum` of an i1 mask is not defined", node.span,
                        help="cast it first: `sum(i32(mask))`")
        if not axes:  # a rank-0 tensor, or `axis=()`: over no axes it is itself, as in numpy
            return Value(node.span, ssa=x.ssa)
        return self.tensor(zk.REDUCE_OPS[node.func](x.ssa, axes, keep), node.span)

    def argmax_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 1)
        kw = self.kwargs(node, kwargs, ("axis", "keepdims"))
        x = self.need_tensor(args[0], "`argmax`")
        if "axis" not in kw:
            raise error("ZK0306", "`argmax` needs `axis=`", node.span,
                        fixits=[FixIt(Span(node.span.file, node.span.end_line,
                                           node.span.end_col - 1, node.span.end_line,
                                           node.span.end_col - 1), ", axis=-1")])
        axis = self.axis(self.static_int(kw["axis"], "axis"), len(x.shape), kw["axis"].span)
        keep = self.static_bool(kw["keepdims"], "keepdims") if "keepdims" in kw else False
        return self.tensor(zk.ArgmaxOp(x.ssa, axis, keep), node.span)

    def pow_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 2, 2)
        self.kwargs(node, kwargs, ())
        return self.binary("pow", args[0], args[1], node.span)

    def clamp_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 3)
        kw = self.kwargs(node, kwargs, ("min", "max"))
        lo = args[1] if len(args) > 1 else kw.get("min")
        hi = args[2] if len(args) > 2 else kw.get("max")
        if lo is None and hi is None:
            raise error("ZK0305", "`clamp` needs a lower or upper bound", node.span)
        x = self.need_tensor(args[0], "`clamp`")
        if lo is not None:
            x = self.binary("max", x, lo, node.span)
        if hi is not None:
            x = self.binary("min", x, hi, node.span)
        return x

    def where_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 3, 3)
        self.kwargs(node, kwargs, ())
        cond, a, b = args
        if cond.is_scalar and isinstance(cond.num, bool):
            cond = self.constant(cond.num, dtypes.I1, cond.span)
        cond = self.need_tensor(cond, "`where` condition")
        if cond.dtype.name != "i1":
            raise error("ZK0308", f"`where` needs an i1 condition, got {cond.describe()}",
                        cond.span, help="compare to make a mask, e.g. `x > 0`")
        a, b = self.unify([a, b], node.span, "`where`")
        self.broadcast_check([cond, a, b], node.span, "`where`")
        return self.tensor(zk.SelectOp(cond.ssa, a.ssa, b.ssa), node.span)

    def iota_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 1)
        kw = self.kwargs(node, kwargs, ("axis",))
        shape = self.dims(args[0], "iota shape")
        axis = self.axis(self.static_int(kw["axis"], "axis"), len(shape), kw["axis"].span) \
            if "axis" in kw else self.axis(-1, len(shape), node.span)
        t = TensorType(dtypes.to_xdsl(dtypes.I32), shape)
        return self.tensor(zk.IotaOp(axis, t), node.span)

    def concat_call(self, node, args, kwargs) -> Value:
        kw = self.kwargs(node, kwargs, ("axis",))
        if len(args) == 1 and args[0].items is not None:
            args = args[0].items
        if len(args) < 1:
            raise error("ZK0305", "`concat` needs tensors to join", node.span)
        vals = self.unify(args, node.span, "`concat`")
        rank = len(vals[0].shape)
        axis = self.axis(self.static_int(kw["axis"], "axis") if "axis" in kw else 0, rank,
                         kw["axis"].span if "axis" in kw else node.span)
        for v in vals[1:]:
            if len(v.shape) != rank or any(v.shape[i] != vals[0].shape[i]
                                           for i in range(rank) if i != axis):
                raise error("ZK0315", f"`concat` along axis {axis}: {vals[0].describe()} and "
                            f"{v.describe()} differ off that axis", v.span)
        if sum(v.shape[axis] for v in vals) > I64.finite_max:
            raise error("ZK0313", f"`concat` along axis {axis} makes a dimension beyond i64",
                        node.span)
        return self.tensor(zk.ConcatOp([v.ssa for v in vals], axis), node.span)

    def softmax_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 1)
        kw = self.kwargs(node, kwargs, ("axis",))
        x = self.float_tensor(args[0], node)
        axes = self.norm_axes(kw, x, node)
        if len(axes) > 1:
            return composites.softmax_over(self, node, x, axes)
        cls = zk.SoftmaxOp if node.func == "softmax" else zk.LogSoftmaxOp
        return self.tensor(cls(x.ssa, axes[0]), node.span)

    def norm_axes(self, kw: dict[str, Value], x: Value, node) -> list[int]:
        """`axis=` of softmax and the norms: one axis (default -1) or a tuple of them."""
        if "axis" not in kw:
            return [self.axis(-1, len(x.shape), node.span)]
        if kw["axis"].items is not None:
            if not kw["axis"].items:
                raise error("ZK0304", f"`{node.func}` needs at least one axis", kw["axis"].span)
            return self.axes(kw["axis"], len(x.shape))
        return [self.axis(self.static_int(kw["axis"], "axis"), len(x.shape), kw["axis"].span)]

    def logsumexp_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 1)
        kw = self.kwargs(node, kwargs, ("axis", "keepdims"))
        x = self.float_tensor(args[0], node)
        axes = self.axes(kw.get("axis", Value(node.span, num=-1)), len(x.shape))
        keep = self.static_bool(kw["keepdims"], "keepdims") if "keepdims" in kw else False
        if not axes:  # `axis=()`: log(exp(x)) over no axes is x
            return Value(node.span, ssa=x.ssa)
        return self.tensor(zk.LogSumExpOp(x.ssa, axes, keep), node.span)

    def norm_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 3)
        kw = self.kwargs(node, kwargs, ("scale", "bias", "axis", "eps"))
        x = self.float_tensor(args[0], node)
        scale = args[1] if len(args) > 1 else kw.get("scale")
        bias = args[2] if len(args) > 2 else kw.get("bias")
        axes = self.norm_axes(kw, x, node)
        default_eps = 1e-5 if node.func == "layernorm" else 1e-6
        eps = self.static_float(kw["eps"], "eps") if "eps" in kw else default_eps
        if not eps >= 0:
            raise error("ZK0306", f"eps must be non-negative, got {eps!r}", kw["eps"].span)
        operands = []
        for v in (scale, bias):
            if v is None:
                operands.append(None)
                continue
            if v.is_scalar:
                v = self.weak(v, x.dtype, node.span)
            v = self.need_tensor(v, f"`{node.func}` scale/bias")
            if not dtypes.widens_to(v.dtype, x.dtype):
                raise error("ZK0303", f"`{node.func}` scale/bias is {v.dtype.name} but the input "
                            f"is {x.dtype.name}", v.span, help=f"cast it: `{x.dtype.name}(...)`")
            v = self.cast(v, x.dtype)
            if zk.broadcast_shapes(v.shape, x.shape) != x.shape:
                raise error("ZK0302", f"`{node.func}` scale/bias {v.describe()} does not "
                            f"broadcast to the input {x.describe()}", v.span)
            operands.append(v)
        if len(axes) > 1:
            return composites.norm_over(self, node, x, axes, *operands, eps)
        cls = zk.LayerNormOp if node.func == "layernorm" else zk.RMSNormOp
        scale, bias = (v.ssa if v else None for v in operands)
        return self.tensor(cls(x.ssa, scale, bias, axes[0], eps), node.span)

    def float_tensor(self, v: Value, node: ast.Call) -> Value:
        v = self.need_tensor(v, f"`{node.func}`")
        if not v.dtype.is_float:
            raise error("ZK0308", f"`{node.func}` needs a float tensor, got {v.describe()}",
                        v.span, help="cast first, e.g. `f32(x)`")
        return v

    def transpose_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 1, 2)
        kw = self.kwargs(node, kwargs, ("perm",))
        x = self.need_tensor(args[0], "`transpose`")
        rank = len(x.shape)
        perm_v = args[1] if len(args) > 1 else kw.get("perm")
        if perm_v is None:
            if rank < 2:
                raise error("ZK0314", f"`transpose` of {x.describe()}: rank below 2", node.span)
            perm = [*range(rank - 2), rank - 1, rank - 2]
        else:
            raw = self.static_ints(perm_v, "perm")
            perm = [zk.normalize_axis(p, rank) for p in raw]
            if None in perm or sorted(perm) != list(range(rank)):
                raise error("ZK0314", f"perm {raw} is not a permutation of the {rank} axes of "
                            f"{x.describe()}", perm_v.span)
        return self.tensor(zk.TransposeOp(x.ssa, perm), node.span)

    def reshape_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 2, 2)
        self.kwargs(node, kwargs, ())
        x = self.need_tensor(args[0], "`reshape`")
        raw = self.static_ints(args[1], "shape")
        total = math.prod(x.shape)
        if raw.count(-1) > 1 or any(d < 1 and d != -1 for d in raw):
            raise error("ZK0313", f"reshape target {raw}: dims must be positive, at most one -1",
                        args[1].span)
        if -1 in raw:
            known = math.prod(d for d in raw if d != -1)
            if total % known:
                raise error("ZK0309", f"cannot reshape {x.describe()} ({total} elements) to {raw}",
                            args[1].span)
            raw = [total // known if d == -1 else d for d in raw]
        if math.prod(raw) != total:
            raise error("ZK0309", f"cannot reshape {x.describe()} ({total} elements) to {raw} "
                        f"({math.prod(raw)} elements)", args[1].span)
        return self.tensor(zk.ReshapeOp(x.ssa, raw), node.span)

    def broadcast_call(self, node, args, kwargs) -> Value:
        self.arity(node, args, 2, 2)
        self.kwargs(node, kwargs, ())
        shape = self.dims(args[1], "shape")
        x = args[0]
        if x.is_scalar:
            raise error("ZK0312", "`broadcast_to` needs a tensor; cast the literal first, e.g. "
                        "`broadcast_to(f32(0), (M, N))`", x.span)
        x = self.need_tensor(x, "`broadcast_to`")
        if zk.broadcast_shapes(x.shape, shape) != tuple(shape):
            raise error("ZK0302", f"cannot broadcast {x.describe()} to {shape}", node.span,
                        help="numpy rules: trailing dimensions must be equal or 1")
        return self.tensor(zk.BroadcastOp(x.ssa, shape), node.span)


_CALLS: dict[str, Callable] = {
    **{f: BuiltinCalls.unary_call for f in UNARY_FUNCS},
    "max": BuiltinCalls.minmax_call, "min": BuiltinCalls.minmax_call,
    "sum": BuiltinCalls.reduce_call, "mean": BuiltinCalls.reduce_call,
    "argmax": BuiltinCalls.argmax_call, "pow": BuiltinCalls.pow_call, "clamp": BuiltinCalls.clamp_call,
    "where": BuiltinCalls.where_call, "iota": BuiltinCalls.iota_call,
    "concat": BuiltinCalls.concat_call, "softmax": BuiltinCalls.softmax_call,
    "log_softmax": BuiltinCalls.softmax_call, "logsumexp": BuiltinCalls.logsumexp_call,
    "layernorm": BuiltinCalls.norm_call, "rmsnorm": BuiltinCalls.norm_call,
    "transpose": BuiltinCalls.transpose_call, "reshape": BuiltinCalls.reshape_call,
    "broadcast_to": BuiltinCalls.broadcast_call, "bitcast": BuiltinCalls.bitcast_call,
    **composites.CALLS,
}
assert set(_CALLS) == set(BUILTINS)
