"""AST -> `zk` dialect: the walk over a kernel's statements and expressions, names, operators
and shape checks. The dtype rules, the builtins, constant folding and the schedule directives
are modules of their own (dtype_rules, builtins, folding, schedules).

Every user error is found here and reported with its source span; the verifiers of the `zk` ops
then hold by construction (a verifier failure after irgen is a compiler bug). Expressions are
lowered by an explicit post-order walk, so expression length is bounded by memory, not by
Python's recursion limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    DictionaryAttr,
    FileLineColLoc,
    IntegerAttr,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Block, Operation, Region, SSAValue

from zhenwu_cc.core.diagnostics import (
    CompileError,
    Diagnostic,
    FixIt,
    Note,
    Span,
    did_you_mean,
    error,
    typo_fixits,
)
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.dialects.loc import location
from zhenwu_cc.frontend import ast
from zhenwu_cc.frontend.builtins import BUILTINS, BuiltinCalls
from zhenwu_cc.frontend.dtype_rules import DTYPE_ALIASES, DtypeRules
from zhenwu_cc.frontend.folding import I64, SCALAR_COMPARE, fold_binary, within_i64
from zhenwu_cc.frontend.schedules import apply_schedule
from zhenwu_cc.frontend.values import Value, type_str

CONSTANTS = {"inf": math.inf, "pi": math.pi, "true": True, "false": False}


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


OPERATOR_KIND = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
OPERATOR_SYMBOL = {v: k for k, v in OPERATOR_KIND.items()}
COMPARE_KIND = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


# ---- one kernel ----------------------------------------------------------------------------------
# Plain classes, not dataclasses: nothing compares or prints them, and each generated method would
# be compiled at every start-up.
class _Binding:
    """What a name means in a kernel: its value, where it was bound, whether a parameter."""

    def __init__(self, value: Value, span: Span, is_param: bool):
        self.value = value
        self.span = span
        self.is_param = is_param


class _KernelGen(DtypeRules, BuiltinCalls):
    """Generates one kernel's `zk` ops from its AST."""

    def __init__(self, kernel: ast.Kernel, shape_values: dict[str, int]):
        self.kernel = kernel
        self.shape_values = shape_values
        self.block = Block()
        self.env: dict[str, _Binding] = {}
        self.flops = 0  # of the matmuls so far

    # -- helpers --
    def loc(self, span: Span) -> FileLineColLoc:
        return location(span)

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
                return within_i64(int(v.num), v.span)
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

    # -- operators --
    def binary(self, kind: str, lhs: Value, rhs: Value, span: Span) -> Value:
        what = f"`{OPERATOR_SYMBOL.get(kind, kind)}`"  # messages quote what the source wrote
        if lhs.items is not None or rhs.items is not None:
            raise error("ZK0312", f"{what} cannot take a sequence", span)
        if lhs.is_scalar and rhs.is_scalar:
            return Value(span, num=fold_binary(kind, lhs.num, rhs.num, span))
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
            return Value(span, num=within_i64(-v.num, span))
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
            apply_schedule(schedules[k.name], op, gen)
        ops.append(op)
    return ModuleOp(ops)
