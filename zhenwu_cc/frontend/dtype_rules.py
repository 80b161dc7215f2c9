"""The dtype rules of expressions: value-preserving promotion, weak scalar literals that take the
tensor's dtype if it can hold them, numpy broadcasting, and other tools' names for our dtypes."""

from __future__ import annotations

import math

from zhenwu_cc.core.diagnostics import Note, Span, error
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.frontend.values import Value

DTYPE_ALIASES = {"fp32": "f32", "float32": "f32", "float": "f32", "fp16": "f16", "float16": "f16",
                 "half": "f16", "bfloat16": "bf16", "fp8": "f8E4M3FN", "e4m3": "f8E4M3FN",
                 "fp8e4m3": "f8E4M3FN", "e5m2": "f8E5M2", "fp8e5m2": "f8E5M2", "fp4": "f4E2M1FN",
                 "e2m1": "f4E2M1FN", "int8": "i8", "int32": "i32", "int64": "i64", "bool": "i1",
                 "uint8": "ui8", "f8e4m3fn": "f8E4M3FN", "f8e5m2": "f8E5M2", "f4e2m1fn": "f4E2M1FN"}


def mix_help(a: DType, b: DType) -> str:
    wider = "f32" if a.is_float and b.is_float else "i64" if a.is_int and b.is_int else None
    if wider:
        return f"cast one side explicitly, e.g. `{wider}(x)`"
    return "cast the integer side to a float dtype (e.g. `f32(i)`) or the float side to an integer"


class DtypeRules:
    """The kernel generator's dtype rules (`irgen._KernelGen` mixes them in; they emit casts and
    constants through its `tensor` and `constant`)."""

    def cast(self, v: Value, to: DType) -> Value:
        if v.dtype == to:
            return v
        return self.tensor(zk.CastOp(v.ssa, dtypes.to_xdsl(to)), v.span)

    def weak(self, scalar: Value, like: DType, op_span: Span) -> Value:
        """A weak scalar literal takes the tensor's dtype, if the dtype can hold it."""
        num = scalar.num
        if isinstance(num, bool):
            if like.name == "i1":
                return self.constant(num, like, scalar.span)
            raise error("ZK0308", "`true`/`false` are i1 values: they combine with i1 masks "
                        "and set keyword arguments such as `keepdims=`", scalar.span)
        if like.is_int:
            if not isinstance(num, int) and not float(num).is_integer():
                raise error("ZK0308", f"the literal {num!r} is not an integer but the tensor is "
                            f"{like.name}", scalar.span,
                            help="cast the tensor to a float dtype first, e.g. `f32(x)`")
            if not like.finite_min <= num <= like.finite_max:
                raise error("ZK0311", f"{num!r} does not fit in {like.name}", scalar.span)
        elif math.isinf(num):
            if not like.has_inf:
                raise error("ZK0311", f"{like.name} has no infinity", scalar.span,
                            help=f"use the largest finite value, {like.finite_max!r}, or a wider"
                            " dtype")
        elif not math.isnan(num) and abs(num) > like.finite_max:
            raise error("ZK0311", f"{num!r} overflows {like.name} (largest finite value "
                        f"{like.finite_max!r})", scalar.span)
        return self.constant(num, like, scalar.span)

    def unify(self, vals: list[Value], op_span: Span, what: str) -> list[Value]:
        """Bring tensors to one dtype (value-preserving promotion only); weak scalars follow."""
        tensors = [v for v in vals if v.is_tensor]
        if not tensors:
            raise error("ZK0312", f"{what} needs at least one tensor operand", op_span)
        common = tensors[0].dtype
        for t in tensors[1:]:
            joined = dtypes.promote(common, t.dtype)
            if joined is None:
                a, b = tensors[0], t
                raise error("ZK0303", f"{what} mixes {common.name} and {t.dtype.name}, and neither "
                            "holds every value of the other", op_span,
                            notes=[Note(f"this is {a.describe()}", a.span),
                                   Note(f"this is {b.describe()}", b.span)],
                            help=mix_help(common, t.dtype))
            common = joined
        out = []
        for v in vals:
            if v.is_tensor:
                out.append(self.cast(v, common))
            elif v.is_scalar:
                out.append(self.weak(v, common, op_span))
            else:
                raise error("ZK0312", f"{what} cannot take {v.describe()}", v.span)
        return out

    def broadcast_check(self, vals: list[Value], op_span: Span, what: str) -> None:
        shapes = [v.shape for v in vals]
        if zk.broadcast_shapes(*shapes) is None:
            raise error("ZK0302", f"{what}: shapes " + " and ".join(str(list(s)) for s in shapes)
                        + " cannot be broadcast together", op_span,
                        notes=[Note(f"this is {v.describe()}", v.span) for v in vals],
                        help="numpy rules: trailing dimensions must be equal or 1; use reshape() "
                        "or broadcast_to() to line them up")
