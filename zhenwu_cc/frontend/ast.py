"""The `.zk` syntax tree: plain dataclasses with a source span on every node.

The parser builds it; irgen gives it meaning. Nodes compare by identity (`eq=False`) so that a
deep expression never recurses through a generated `__eq__`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zhenwu_cc.core.diagnostics import Span


@dataclass(eq=False)
class Node:
    span: Span


# ---- expressions -------------------------------------------------------------------------------
@dataclass(eq=False)
class Name(Node):
    id: str


@dataclass(eq=False)
class Number(Node):
    value: int | float
    text: str


@dataclass(eq=False)
class Neg(Node):
    operand: Node


@dataclass(eq=False)
class BinOp(Node):
    op: str  # + - * / @ == != < <= > >=
    lhs: Node
    rhs: Node


@dataclass(eq=False)
class Kwarg(Node):
    name: str
    value: Node


@dataclass(eq=False)
class Call(Node):
    func: str
    func_span: Span
    args: list[Node]
    kwargs: list[Kwarg]


@dataclass(eq=False)
class SubIndex(Node):
    index: Node


@dataclass(eq=False)
class SubSlice(Node):
    start: Node | None
    stop: Node | None


@dataclass(eq=False)
class Index(Node):
    base: Node
    subs: list[SubIndex | SubSlice]


@dataclass(eq=False)
class Seq(Node):
    """A tuple or list literal: shapes, axes, permutations."""

    items: list[Node]


def children(node: Node) -> list[Node]:
    """The sub-nodes of a statement or expression, for walks that must not recurse."""
    match node:
        case Assign(value=v) | Neg(operand=v) | Kwarg(value=v) | SubIndex(index=v):
            return [v]
        case Return(values=vs) | Seq(items=vs):
            return list(vs)
        case BinOp(lhs=a, rhs=b):
            return [a, b]
        case Call(args=a, kwargs=k):
            return [*a, *k]
        case Index(base=b, subs=s):
            return [b, *s]
        case SubSlice(start=a, stop=b):
            return [x for x in (a, b) if x is not None]
    return []


# ---- kernels -----------------------------------------------------------------------------------
@dataclass(eq=False)
class TensorType(Node):
    dtype: str
    dtype_span: Span
    dims: list[Node]


@dataclass(eq=False)
class ShapeParam(Node):
    name: str
    default: int


@dataclass(eq=False)
class Param(Node):
    name: str
    type: TensorType


@dataclass(eq=False)
class Result(Node):
    name: str | None
    type: TensorType


@dataclass(eq=False)
class Assign(Node):
    name: str
    name_span: Span
    value: Node


@dataclass(eq=False)
class Return(Node):
    values: list[Node]


@dataclass(eq=False)
class Kernel(Node):
    name: str
    name_span: Span
    shape_params: list[ShapeParam]
    params: list[Param]
    results: list[Result]
    body: list[Assign | Return]


# ---- schedules ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Ident(Node):
    """A name inside a schedule directive (it refers to a parameter or binding of the kernel)."""

    id: str


@dataclass(eq=False)
class TileDirective(Node):
    target: Ident
    sizes: list[int]
    sizes_span: Span
    split_k: int | None


@dataclass(eq=False)
class SplitDirective(Node):
    target: Ident
    parts: int
    parts_span: Span


@dataclass(eq=False)
class FuseDirective(Node):
    target: Ident
    setting: Ident  # `off`, the one setting


@dataclass(eq=False)
class PrecisionDirective(Node):
    targets: list[Ident]
    dtype: Ident
    mode: Ident | None  # tensor | channel | block | mx | nvfp4
    mode_args: list[int]
    mode_option: Ident | None = None  # a scale-rounding option: mx(rceil), nvfp4(rne)


@dataclass(eq=False)
class AccumulateDirective(Node):
    dtype: Ident
    option: Ident | None = None  # fp8_fast: emulate FP8 tensor-core accumulation


@dataclass(eq=False)
class PlaceDirective(Node):
    targets: list[Ident]
    memory: str  # "hbm" | "l2"
    stacks: list[int] | None


@dataclass(eq=False)
class BuffersDirective(Node):
    count: int


Directive = (TileDirective | SplitDirective | FuseDirective | PrecisionDirective
             | AccumulateDirective | PlaceDirective | BuffersDirective)


@dataclass(eq=False)
class Schedule(Node):
    kernel: str
    kernel_span: Span
    directives: list[Directive]


@dataclass(eq=False)
class Module(Node):
    kernels: list[Kernel] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
