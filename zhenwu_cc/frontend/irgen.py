"""AST -> `zk` dialect: names, dtype rules, shape checks and schedule directives.

Every user error is found here and reported with its source span; the verifiers of the `zk` ops
then hold by construction (a verifier failure after irgen is a compiler bug). Expressions are
lowered by an explicit post-order walk, so expression length is bounded by memory, not by
Python's recursion limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdsl.dialects.builtin import (
    DictionaryAttr,
    FileLineColLoc,
    IntAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from zhenwu_cc.core import attrs
from zhenwu_cc.diagnostics import (
    CompileError,
    Diagnostic,
    FixIt,
    Note,
    Span,
    did_you_mean,
    error,
    typo_fixits,
)
from zhenwu_cc.dialects import dtypes, zk
from zhenwu_cc.dialects.dtypes import DType
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.frontend import ast, composites
from zhenwu_cc.frontend.values import Value, type_str

CONSTANTS = {"inf": math.inf, "pi": math.pi, "true": True, "false": False}
DTYPE_ALIASES = {"fp32": "f32", "float32": "f32", "float": "f32", "fp16": "f16", "float16": "f16",
                 "half": "f16", "bfloat16": "bf16", "fp8": "f8E4M3FN", "e4m3": "f8E4M3FN",
                 "fp8e4m3": "f8E4M3FN", "e5m2": "f8E5M2", "fp8e5m2": "f8E5M2", "fp4": "f4E2M1FN",
                 "e2m1": "f4E2M1FN", "int8": "i8", "int32": "i32", "int64": "i64", "bool": "i1",
                 "uint8": "ui8", "f8e4m3fn": "f8E4M3FN", "f8e5m2": "f8E5M2", "f4e2m1fn": "f4E2M1FN"}
UNARY_FUNCS = ("exp", "log", "tanh", "erf", "sigmoid", "relu", "gelu", "gelu_tanh", "silu",
               "softplus", "sqrt", "rsqrt", "abs")
BUILTINS = (*UNARY_FUNCS, "max", "min", "sum", "mean", "argmax", "pow", "clamp", "where", "iota",
            "concat", "softmax", "log_softmax", "logsumexp", "layernorm", "rmsnorm", "transpose",
            "reshape", "broadcast_to", "bitcast", *composites.CALLS)
PRECISION_DTYPES = ("f8E4M3FN", "f8E5M2", "f4E2M1FN", "f16", "bf16")
SCALE_MODES = {"tensor": 0, "channel": 1, "block": 2, "mx": 0, "nvfp4": 0, "none": 0}
ACCUMULATE_DTYPES = ("f32", "f16", "bf16")
ACCUMULATE_OPTIONS = ("fp8_fast",)
MAX_BUFFERS = 8
MAX_TILE = 1 << 16
I64 = dtypes.DTYPES["i64"]  # the range of every compile-time integer


def check_size(t: TensorType, span: Span) -> None:
    """Element and byte counts are i64 in the IR and every later stage (ZK0318): a shape
    parameter of 10**12 must fail here, with the position, not as an overflow in a pass."""
    dtype = dtypes.from_xdsl(t.element_type)
    shape = t.get_shape()
    count = math.prod(shape)
    if dtype.nbytes(count) > I64.finite_max:
        raise error("ZK0318", f"{type_str(dtype, shape)} holds {count} elements "
                    f"({dtype.nbytes(count)} bytes): sizes must fit in i64 (at most "
                    f"{I64.finite_max} bytes)", span,
                    help="use smaller shape parameters (-D) or dimensions")


def _fold(fn: Callable, *args) -> float:
    """IEEE results for constant folding (overflow -> inf, domain errors -> nan), with `math`
    rather than numpy so that the front end starts fast."""
    try:
        return float(fn(*(float(a) for a in args)))
    except OverflowError:
        return math.inf
    except (ValueError, ZeroDivisionError):
        return math.nan


def _exp(x: float) -> float:
    return math.exp(x) if x < 710 else math.inf


def _log(x: float) -> float:
    return -math.inf if x == 0 else math.log(x)


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: float) -> float:
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + _exp(-x))


SCALAR_UNARY: dict[str, Callable] = {
    "exp": _exp, "log": _log, "tanh": math.tanh, "erf": math.erf, "sqrt": math.sqrt,
    "rsqrt": lambda x: math.inf if x == 0 else 1.0 / math.sqrt(x), "abs": abs,
    "sigmoid": _sigmoid, "relu": lambda x: max(x, 0.0), "gelu": _gelu, "gelu_tanh": _gelu_tanh,
    "silu": lambda x: x * _sigmoid(x), "softplus": lambda x: max(x, 0.0) + math.log1p(_exp(-abs(x))),
}
SCALAR_BINARY: dict[str, Callable] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "max": max, "min": min, "pow": lambda a, b: _fold(math.pow, a, b),
}
OPERATOR_KIND = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
OPERATOR_SYMBOL = {v: k for k, v in OPERATOR_KIND.items()}
COMPARE_KIND = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
SCALAR_COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
                  "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}


# ---- one kernel ----------------------------------------------------------------------------------
@dataclass
class _Binding:
    value: Value
    span: Span
    is_param: bool


@dataclass
class _KernelGen:
    kernel: ast.Kernel
    shape_values: dict[str, int]
    block: Block = field(default_factory=Block)
    env: dict[str, _Binding] = field(default_factory=dict)
    flops: int = 0  # of the matmuls so far

    # -- helpers --
    def loc(self, span: Span) -> FileLineColLoc:
        return FileLineColLoc(StringAttr(span.file), IntAttr(span.line), IntAttr(span.col))

    def emit(self, op: Operation, span: Span) -> SSAValue:
        op.location = self.loc(span)
        check_size(op.results[0].type, span)
        self.block.add_op(op)
        return op.results[0]

    def tensor(self, op: Operation, span: Span) -> Value:
        return Value(span, ssa=self.emit(op, span))

    def constant(self, num: int | float | bool, dtype: DType, span: Span,
                 shape: Sequence[int] = ()) -> Value:
        t = TensorType(dtypes.to_xdsl(dtype), list(shape))
        return self.tensor(zk.ConstantOp(float(num), t), span)

    # -- names and static values --
    def lookup(self, name: str, span: Span) -> Value:
        if name in self.env:
            v = self.env[name].value
            return Value(span, ssa=v.ssa, num=v.num, items=v.items)
        if name in self.shape_values:
            return Value(span, num=self.shape_values[name])
        if name in CONSTANTS:
            return Value(span, num=CONSTANTS[name])
        if name in dtypes.DTYPES:
            return Value(span, dtype_arg=dtypes.DTYPES[name])
        guess = did_you_mean(name, [*self.env, *self.shape_values, *CONSTANTS])
        fix = typo_fixits(span, name, guess)
        raise CompileError(Diagnostic("ZK0201", f"undefined name `{name}`", span, fixits=fix,
                                      help=f"did you mean `{guess}`?" if guess else None))

    def static_int(self, v: Value, what: str) -> int:
        if v.is_scalar and not isinstance(v.num, bool):
            if isinstance(v.num, int):
                return v.num
            if float(v.num).is_integer():
                return _i64(int(v.num), v.span)
            raise error("ZK0316", f"{what} must be an integer, got {v.num!r}", v.span)
        raise error("ZK0316", f"{what} must be a compile-time integer, got {v.describe()}", v.span,
                    help="use integer literals or shape parameters")

    def static_ints(self, v: Value, what: str) -> list[int]:
        if v.items is not None:
            return [self.static_int(i, what) for i in v.items]
        return [self.static_int(v, what)]

    def static_bool(self, v: Value, what: str) -> bool:
        if v.is_scalar and isinstance(v.num, bool):
            return v.num
        raise error("ZK0306", f"{what} must be `true` or `false`", v.span)

    def static_float(self, v: Value, what: str) -> float:
        if v.is_scalar and not isinstance(v.num, bool):
            return float(v.num)
        raise error("ZK0306", f"{what} must be a number", v.span)

    def need_tensor(self, v: Value, what: str) -> Value:
        if v.is_tensor:
            return v
        raise error("ZK0312", f"{what} needs a tensor, got {v.describe()}", v.span)

    def axis(self, axis: int, rank: int, span: Span) -> int:
        a = zk.normalize_axis(axis, rank)
        if a is None:
            raise error("ZK0304", f"axis {axis} is out of range for a tensor of rank {rank}", span,
                        help=f"valid axes are {-rank}..{rank - 1}" if rank else
                        "a rank-0 tensor has no axes")
        return a

    def axes(self, v: Value | None, rank: int) -> list[int]:
        if v is None or (v.is_scalar and v.num is None):
            return list(range(rank))
        raw = self.static_ints(v, "axis")
        axes = [self.axis(a, rank, v.span) for a in raw]
        if len(set(axes)) != len(axes):
            raise error("ZK0304", f"axis list {raw} names an axis twice", v.span)
        return sorted(axes)

    def dims(self, v: Value, what: str) -> list[int]:
        dims = self.static_ints(v, what)
        if any(d < 1 for d in dims):
            raise error("ZK0313", f"{what} {dims} has a dimension below 1", v.span)
        return dims

    # -- dtype rules --
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
                            help=_mix_help(common, t.dtype))
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

    # -- operators --
    def binary(self, kind: str, lhs: Value, rhs: Value, span: Span) -> Value:
        what = f"`{OPERATOR_SYMBOL.get(kind, kind)}`"  # messages quote what the source wrote
        if lhs.items is not None or rhs.items is not None:
            raise error("ZK0312", f"{what} cannot take a sequence", span)
        if lhs.is_scalar and rhs.is_scalar:
            return Value(span, num=_fold_binary(kind, lhs.num, rhs.num, span))
        lhs, rhs = self.unify([lhs, rhs], span, what)
        dt = lhs.dtype
        if kind in ("div", "pow") and not dt.is_float:
            raise error("ZK0308", f"{what} needs float tensors, got {dt.name}", span,
                        help="cast first, e.g. `f32(x)`")
        if dt.name == "i1" and kind in ("add", "sub", "mul"):
            raise error("ZK0308", f"arithmetic on i1 masks is not defined ({what})", span,
                        help="use where(mask, x, 0) to apply a mask")
        self.broadcast_check([lhs, rhs], span, what)
        return self.tensor(zk.BINARY_OPS[kind](lhs.ssa, rhs.ssa), span)

    def compare(self, kind: str, lhs: Value, rhs: Value, span: Span) -> Value:
        if lhs.is_scalar and rhs.is_scalar:
            return Value(span, num=bool(SCALAR_COMPARE[kind](lhs.num, rhs.num)))
        lhs, rhs = self.unify([lhs, rhs], span, "comparison")
        self.broadcast_check([lhs, rhs], span, "comparison")
        return self.tensor(zk.CompareOp(kind, lhs.ssa, rhs.ssa), span)

    def matmul(self, lhs: Value, rhs: Value, span: Span) -> Value:
        for v in (lhs, rhs):
            self.need_tensor(v, "`@`")
            if len(v.shape) < 2:
                raise error("ZK0301", f"`@` needs operands of rank 2 or more, got {v.describe()}",
                            v.span, help="reshape a vector to a matrix, e.g. reshape(v, (1, K))")
        lhs, rhs = self.unify([lhs, rhs], span, "`@`")
        if lhs.dtype.name == "i1":
            raise error("ZK0308", "`@` is not defined for i1", span)
        a, b = lhs.shape, rhs.shape
        if a[-1] != b[-2]:
            raise error("ZK0301", f"shapes {list(a)} and {list(b)} do not match for `@`: inner "
                        f"dims {a[-1]} and {b[-2]}", span,
                        notes=[Note(f"left is {lhs.describe()}", lhs.span),
                               Note(f"right is {rhs.describe()}", rhs.span)],
                        help="the last dim of the left operand must equal the second-to-last of "
                        "the right; transpose(x) swaps the last two")
        if zk.matmul_shape(a, b) is None:
            raise error("ZK0301", f"batch dims {list(a[:-2])} and {list(b[:-2])} of `@` cannot "
                        "be broadcast", span)
        flops = 2 * math.prod(zk.matmul_shape(a, b)) * a[-1]
        self.flops += flops  # the kernel's total is recorded (zk.flops) and costed in i64 too
        if self.flops > I64.finite_max:
            what = f"`@` of {lhs.describe()} and {rhs.describe()} takes {flops} FLOPs" if (
                flops == self.flops) else f"with this `@`, the kernel's matmuls take {self.flops}" \
                " FLOPs"
            raise error("ZK0319", f"{what}: operation counts must fit in i64 (at most "
                        f"{I64.finite_max})", span,
                        help="use smaller shape parameters (-D) or dimensions")
        return self.tensor(zk.MatmulOp(lhs.ssa, rhs.ssa), span)

    def neg(self, v: Value, span: Span) -> Value:
        if v.is_scalar:
            if isinstance(v.num, bool):
                raise error("ZK0308", "cannot negate `true`/`false`", span)
            return Value(span, num=_i64(-v.num, span))
        v = self.need_tensor(v, "unary `-`")
        if v.dtype.name in ("i1", "ui8", "f8E8M0FNU"):
            raise error("ZK0308", f"unary `-` is not defined for {v.dtype.name}", span)
        return self.tensor(zk.NegOp(v.ssa), span)

    # -- expressions (iterative post-order) --
    def expr(self, root: ast.Node) -> Value:
        done: dict[int, Value] = {}
        stack: list[tuple[ast.Node, bool]] = [(root, False)]
        while stack:
            node, ready = stack.pop()
            kids = ast.children(node)
            if not ready and kids:
                stack.append((node, True))
                stack.extend((k, False) for k in reversed(kids))
                continue
            done[id(node)] = self.apply(node, [done.pop(id(k)) for k in kids])
        return done[id(root)]

    def apply(self, node: ast.Node, kids: list[Value]) -> Value:
        match node:
            case ast.Name(id=name):
                return self.lookup(name, node.span)
            case ast.Number(value=v):
                return Value(node.span, num=v)
            case ast.Neg():
                return self.neg(kids[0], node.span)
            case ast.BinOp(op="@"):
                return self.matmul(kids[0], kids[1], node.span)
            case ast.BinOp(op=op) if op in COMPARE_KIND:
                return self.compare(COMPARE_KIND[op], kids[0], kids[1], node.span)
            case ast.BinOp(op=op):
                return self.binary(OPERATOR_KIND[op], kids[0], kids[1], node.span)
            case ast.Seq():
                return Value(node.span, items=kids)
            case ast.Kwarg():
                return kids[0]
            case ast.SubIndex() | ast.SubSlice():
                return Value(node.span, items=kids)
            case ast.Index():
                return self.index(node, kids[0], kids[1:])
            case ast.Call():
                return self.call(node, kids)
        raise AssertionError(f"unhandled node {type(node).__name__}")

    def index(self, node: ast.Index, base: Value, subs: list[Value]) -> Value:
        base = self.need_tensor(base, "indexing")
        shape = base.shape
        if len(node.subs) > len(shape):
            raise error("ZK0310", f"{len(node.subs)} subscripts for a tensor of rank {len(shape)}",
                        node.span)
        start, limit, drop = [0] * len(shape), list(shape), []
        for i, (sub, val) in enumerate(zip(node.subs, subs)):
            dim = shape[i]
            if isinstance(sub, ast.SubIndex):
                k = self.static_int(val.items[0], "an index")
                k2 = k + dim if k < 0 else k
                if not 0 <= k2 < dim:
                    raise error("ZK0310", f"index {k} is out of range for dimension {i} of size "
                                f"{dim}", sub.span)
                start[i], limit[i] = k2, k2 + 1
                drop.append(i)
                continue
            it = iter(val.items)
            lo = self.static_int(next(it), "a slice bound") if sub.start is not None else 0
            hi = self.static_int(next(it), "a slice bound") if sub.stop is not None else dim
            lo2, hi2 = (lo + dim if lo < 0 else lo), (hi + dim if hi < 0 else hi)
            if not 0 <= lo2 < hi2 <= dim:
                raise error("ZK0310", f"slice {lo}:{hi} is empty or out of range for dimension {i}"
                            f" of size {dim}", sub.span, help=f"bounds must satisfy 0 <= start < "
                            f"stop <= {dim} (negative bounds count from the end)")
            start[i], limit[i] = lo2, hi2
        out = base
        if start != [0] * len(shape) or limit != list(shape):
            out = self.tensor(zk.SliceOp(base.ssa, start, limit), node.span)
        if drop:
            new_shape = [d for i, d in enumerate(out.shape) if i not in drop]
            out = self.tensor(zk.ReshapeOp(out.ssa, new_shape), node.span)
        return out

    # -- builtin calls --
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
            return Value(node.span, num=_fold(SCALAR_UNARY[node.func], x.num))
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
    **{f: _KernelGen.unary_call for f in UNARY_FUNCS},
    "max": _KernelGen.minmax_call, "min": _KernelGen.minmax_call,
    "sum": _KernelGen.reduce_call, "mean": _KernelGen.reduce_call,
    "argmax": _KernelGen.argmax_call, "pow": _KernelGen.pow_call, "clamp": _KernelGen.clamp_call,
    "where": _KernelGen.where_call, "iota": _KernelGen.iota_call,
    "concat": _KernelGen.concat_call, "softmax": _KernelGen.softmax_call,
    "log_softmax": _KernelGen.softmax_call, "logsumexp": _KernelGen.logsumexp_call,
    "layernorm": _KernelGen.norm_call, "rmsnorm": _KernelGen.norm_call,
    "transpose": _KernelGen.transpose_call, "reshape": _KernelGen.reshape_call,
    "broadcast_to": _KernelGen.broadcast_call, "bitcast": _KernelGen.bitcast_call,
    **composites.CALLS,
}
assert set(_CALLS) == set(BUILTINS)


def _fold_binary(kind: str, a, b, span: Span):
    if isinstance(a, bool) or isinstance(b, bool):
        raise error("ZK0308", "`true`/`false` are not numbers", span)
    if kind == "div":
        if b == 0:
            raise error("ZK0311", "division by zero in a constant expression", span)
        if isinstance(a, int) and isinstance(b, int) and a % b == 0:
            return _i64(a // b, span)
        return _finite(a / b, (a, b), span)
    return _finite(_i64(SCALAR_BINARY[kind](a, b), span), (a, b), span)


def _finite(num, operands, span: Span):
    """Folding finite constants must not overflow f64 into inf silently (ZK0107)."""
    if isinstance(num, float) and math.isinf(num) and all(math.isfinite(x) for x in operands):
        raise error("ZK0107", "this constant expression overflows f64 (beyond about 1.8e308)",
                    span, help="use smaller constants, or write `inf` if infinity is meant")
    return num


def _i64(num, span: Span):
    """Integer constants stay within i64, as their literals do: the IR holds no more, and
    float() of a bigger one overflows."""
    if isinstance(num, int) and not I64.finite_min <= num <= I64.finite_max:
        raise error("ZK0311", f"the integer constant {num} does not fit in i64", span,
                    help="for a large number use a float, e.g. `1e20`")
    return num


def _mix_help(a: DType, b: DType) -> str:
    wider = "f32" if a.is_float and b.is_float else "i64" if a.is_int and b.is_int else None
    if wider:
        return f"cast one side explicitly, e.g. `{wider}(x)`"
    return "cast the integer side to a float dtype (e.g. `f32(i)`) or the float side to an integer"


# ---- kernels and schedules -------------------------------------------------------------------
def _dtype(t: ast.TensorType) -> DType:
    if t.dtype in dtypes.DTYPES:
        return dtypes.DTYPES[t.dtype]
    guess = DTYPE_ALIASES.get(t.dtype.lower()) or did_you_mean(t.dtype, dtypes.DTYPES)
    raise CompileError(Diagnostic(
        "ZK0204", f"unknown dtype `{t.dtype}`", t.dtype_span,
        fixits=(FixIt(t.dtype_span, guess),) if t.dtype.lower() in DTYPE_ALIASES else
        typo_fixits(t.dtype_span, t.dtype, guess),
        help=(f"did you mean `{guess}`?" if guess else "")
        + " dtypes: " + " ".join(dtypes.DTYPES)))


def _type_shape(gen: _KernelGen, t: ast.TensorType) -> list[int]:
    dims = []
    for d in t.dims:
        if isinstance(d, ast.Name) and d.id not in gen.shape_values:
            guess = did_you_mean(d.id, gen.shape_values)
            raise CompileError(Diagnostic(
                "ZK0207", f"`{d.id}` is not a shape parameter of kernel `{gen.kernel.name}`",
                d.span, fixits=typo_fixits(d.span, d.id, guess),
                help=f"did you mean `{guess}`?" if guess else
                f"declare it: kernel {gen.kernel.name}<{d.id} = ...>(...)"))
        v = gen.expr(d)
        dims.append(gen.static_int(v, "a dimension"))
        if dims[-1] < 1:
            raise error("ZK0313", f"dimension evaluates to {dims[-1]}; dimensions must be >= 1",
                        d.span)
    return dims


def _kernel(k: ast.Kernel, defines: dict[str, int]) -> tuple[zk.KernelOp, _KernelGen]:
    seen: dict[str, Span] = {}
    for sp in k.shape_params:
        if sp.name in seen:
            raise error("ZK0206", f"shape parameter `{sp.name}` declared twice", sp.span,
                        notes=[Note("first declared here", seen[sp.name])])
        seen[sp.name] = sp.span
        if sp.default < 1:
            raise error("ZK0313", f"shape parameter `{sp.name}` must be >= 1", sp.span)
    shape_values = {sp.name: defines.get(sp.name, sp.default) for sp in k.shape_params}
    gen = _KernelGen(k, shape_values)
    arg_types = []
    for p in k.params:
        if p.name in seen:
            raise error("ZK0206", f"parameter `{p.name}` declared twice", p.span,
                        notes=[Note("first declared here", seen[p.name])])
        _check_bindable(p.name, p.span)
        seen[p.name] = p.span
        t = TensorType(dtypes.to_xdsl(_dtype(p.type)), _type_shape(gen, p.type))
        check_size(t, p.type.span)
        arg = gen.block.insert_arg(t, len(gen.block.args))
        arg.name_hint = p.name
        arg.location = gen.loc(p.span)
        gen.env[p.name] = _Binding(Value(p.span, ssa=arg), p.span, True)
        arg_types.append(t)
    result_types = [TensorType(dtypes.to_xdsl(_dtype(r.type)), _type_shape(gen, r.type))
                    for r in k.results]
    for r, t in zip(k.results, result_types):
        check_size(t, r.type.span)

    returned: ast.Return | None = None
    for stmt in k.body:
        if returned is not None:
            raise error("ZK0210", "statement after `return`", stmt.span,
                        notes=[Note("the kernel returns here", returned.span)])
        if isinstance(stmt, ast.Return):
            returned = stmt
            continue
        if stmt.name in gen.env:
            first = gen.env[stmt.name]
            raise error("ZK0202", f"`{stmt.name}` is already bound; bindings are single-assignment",
                        stmt.name_span, notes=[Note("first bound here", first.span)],
                        help="choose a new name")
        if stmt.name in shape_values:
            raise error("ZK0208", f"`{stmt.name}` is a shape parameter of the kernel",
                        stmt.name_span, help="choose another name")
        _check_bindable(stmt.name, stmt.name_span)
        v = gen.expr(stmt.value)
        if v.is_tensor and isinstance(v.ssa.owner, Operation) \
                and v.ssa.owner.parent_block() is gen.block and v.ssa.name_hint is None:
            v.ssa.name_hint = stmt.name
        gen.env[stmt.name] = _Binding(v, stmt.name_span, False)
    if returned is None:
        raise error("ZK0209", f"kernel `{k.name}` has no `return`", k.name_span,
                    help="end the body with `return <expr>`")
    if len(returned.values) != len(k.results):
        raise error("ZK0317", f"kernel `{k.name}` declares {len(k.results)} result"
                    f"{'s' if len(k.results) != 1 else ''} but returns {len(returned.values)}",
                    returned.span)
    outs, names = [], []
    for i, (expr, res, rtype) in enumerate(zip(returned.values, k.results, result_types)):
        v = gen.expr(expr)
        want = dtypes.from_xdsl(rtype.element_type)
        if v.is_scalar and not rtype.get_shape():
            v = gen.weak(v, want, expr.span)
        v = gen.need_tensor(v, "`return`")
        if (v.dtype, v.shape) != (want, tuple(rtype.get_shape())):
            fix = ()
            if v.shape == tuple(rtype.get_shape()):
                at = expr.span  # two insertions that wrap the expression in a cast
                fix = (FixIt(Span(at.file, at.line, at.col, at.line, at.col), f"{want.name}("),
                       FixIt(Span(at.file, at.end_line, at.end_col, at.end_line, at.end_col), ")"))
            raise CompileError(Diagnostic(
                "ZK0307", f"result {i} is {v.describe()} but the kernel declares "
                f"{type_str(want, rtype.get_shape())}", expr.span,
                notes=(Note("declared here", res.span),), fixits=fix,
                help=f"cast it: `{want.name}(...)`" if fix else None))
        if res.name is not None and res.name in names:
            raise error("ZK0206", f"result `{res.name}` is declared twice", res.span,
                        help="give every result its own name")
        name = res.name or (expr.id if isinstance(expr, ast.Name) else None)
        if name is None or name in names:
            name = f"result{i}"
        names.append(name)
        outs.append(v.ssa)
    ret = zk.ReturnOp(outs)
    ret.location = gen.loc(returned.span)
    gen.block.add_op(ret)
    params_attr = DictionaryAttr({n: IntegerAttr(v, 64) for n, v in shape_values.items()})
    op = zk.KernelOp(k.name, arg_types, result_types, names, Region(gen.block),
                     attributes={"params": params_attr})
    op.location = gen.loc(k.name_span)
    return op, gen


def _check_bindable(name: str, span: Span) -> None:
    if name in dtypes.DTYPES or name in CONSTANTS or name in BUILTINS:
        what = ("a dtype" if name in dtypes.DTYPES else "a constant" if name in CONSTANTS
                else "a builtin function")
        raise error("ZK0208", f"`{name}` is {what} and cannot be rebound", span,
                    help="choose another name")


def _apply_schedule(sched: ast.Schedule, op: zk.KernelOp, gen: _KernelGen) -> None:
    arg_attrs: list[dict[str, Attribute]] = [{} for _ in op.body.block.args]
    first: dict[tuple[str, str], Span] = {}

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
    if any(arg_attrs):
        from xdsl.dialects.builtin import ArrayAttr

        op.arg_attrs = ArrayAttr([DictionaryAttr(a) for a in arg_attrs])


def tile_attr(op: Operation, name: str, sizes: Sequence[int], split_k: int | None,
              sizes_span: Span | None = None, span: Span | None = None) -> zk.TileAttr:
    """`tile NAME [sizes] split_k N`, checked against the op NAME binds (ZK0403): three sizes
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
    loc = (FileLineColLoc(StringAttr(span.file), IntAttr(span.line), IntAttr(span.col))
           if span is not None else None)
    return zk.TileAttr(sizes, split_k or 1, loc)


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
                    + "modes: tensor, channel(axis), block(rows, cols), mx, nvfp4")
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


def _check_precision(d: ast.PrecisionDirective, ident: ast.Ident, v: Value,
                     gen: _KernelGen) -> None:
    """Checks that need the tensor: rank, block tiling, and contraction-axis modes."""
    mode = d.mode.id if d.mode else "tensor"
    if not v.dtype.is_float:
        raise error("ZK0404", f"`{ident.id}` is {v.describe()}; precision applies to floats",
                    ident.span)
    shape = v.shape
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


def generate(module: ast.Module, defines: dict[str, int] | None = None,
             kernel: str | None = None) -> ModuleOp:
    """Build a verified `builtin.module` of `zk.kernel`s (all, or the one named `kernel`)."""
    defines = defines or {}
    names: dict[str, ast.Kernel] = {}
    for k in module.kernels:
        if k.name in names:
            raise error("ZK0205", f"kernel `{k.name}` is defined twice", k.name_span,
                        notes=[Note("first defined here", names[k.name].name_span)])
        names[k.name] = k
    schedules: dict[str, ast.Schedule] = {}
    for s in module.schedules:
        if s.kernel not in names:
            guess = did_you_mean(s.kernel, names)
            raise error("ZK0401", f"schedule for unknown kernel `{s.kernel}`", s.kernel_span,
                        help=f"did you mean `{guess}`?" if guess else
                        "a schedule block names a kernel of the same file")
        if s.kernel in schedules:
            raise error("ZK0410", f"kernel `{s.kernel}` has two schedule blocks", s.kernel_span,
                        notes=[Note("the first is here", schedules[s.kernel].kernel_span)],
                        help="merge them into one")
        schedules[s.kernel] = s
    if kernel is not None and kernel not in names:
        guess = did_you_mean(kernel, names)
        raise error("ZK0003", f"no kernel named `{kernel}`" + (f"; did you mean `{guess}`?"
                                                               if guess else ""),
                    help="kernels in this file: " + (", ".join(names) or "none"))
    chosen = [names[kernel]] if kernel is not None else module.kernels
    known = {sp.name for k in chosen for sp in k.shape_params}
    for name in defines:
        if name not in known:
            guess = did_you_mean(name, known)
            raise error("ZK0002", f"-D {name}: no kernel here has a shape parameter `{name}`"
                        + (f"; did you mean `{guess}`?" if guess else ""),
                        help="shape parameters: " + (", ".join(sorted(known)) or "none"))
        if not 1 <= defines[name] <= I64.finite_max:
            raise error("ZK0002", f"-D {name}={defines[name]}: a shape parameter must be >= 1 "
                        "and fit in i64")
    ops = []
    for k in chosen:
        op, gen = _kernel(k, defines)
        if k.name in schedules:
            _apply_schedule(schedules[k.name], op, gen)
        ops.append(op)
    return ModuleOp(ops)
