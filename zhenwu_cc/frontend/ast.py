"""The `.zk` syntax tree: plain dataclasses with a source span on every node.

The parser builds it; irgen gives it meaning. Nodes compare by identity (`eq=False`) so that a
deep expression never recurses through a generated `__eq__`, and have no generated `__repr__`
(`repr=False`: nothing prints a node, and each generated method is compiled at every start-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zhenwu_cc.core.diagnostics import Span

node = dataclass(eq=False, repr=False)


@node
class Node:
    """Every node has the source span it came from."""

    span: Span


# ---- expressions -------------------------------------------------------------------------------
@node
class Name(Node):
    """A use of a parameter, binding or shape parameter: `x`."""

    id: str


@node
class Number(Node):
    """A literal, with its source text: `0.5`, `128`."""

    value: int | float
    text: str


@node
class Neg(Node):
    """Unary minus: `-x`."""

    operand: Node


@node
class BinOp(Node):
    """`lhs op rhs`: arithmetic, matmul or comparison."""

    op: str  # + - * / @ == != < <= > >=
    lhs: Node
    rhs: Node


@node
class Kwarg(Node):
    """A keyword argument of a call: `axis=-1`."""

    name: str
    value: Node


@node
class Call(Node):
    """A builtin applied to arguments: `softmax(x, axis=-1)`."""

    func: str
    func_span: Span
    args: list[Node]
    kwargs: list[Kwarg]


@node
class SubIndex(Node):
    """One integer subscript: the `0` of `x[0, :]`."""

    index: Node


@node
class SubSlice(Node):
    """One slice subscript: `a:b`, either bound optional."""

    start: Node | None
    stop: Node | None


@node
class Index(Node):
    """A subscripted value: `x[0, 1:4]`."""

    base: Node
    subs: list[SubIndex | SubSlice]


@node
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
@node
class TensorType(Node):
    """A parameter's or result's type: `f16[M, K]`."""

    dtype: str
    dtype_span: Span
    dims: list[Node]


@node
class ShapeParam(Node):
    """A shape parameter with its default: `M = 4096`."""

    name: str
    default: int


@node
class Param(Node):
    """A kernel parameter: `a: f16[M, K]`."""

    name: str
    type: TensorType


@node
class Result(Node):
    """A declared kernel result, named or not."""

    name: str | None
    type: TensorType


@node
class Assign(Node):
    """`name = value`."""

    name: str
    name_span: Span
    value: Node


@node
class Return(Node):
    """`return a, b`."""

    values: list[Node]


@node
class Kernel(Node):
    """`kernel name<shape params>(params) -> results { body }`."""

    name: str
    name_span: Span
    shape_params: list[ShapeParam]
    params: list[Param]
    results: list[Result]
    body: list[Assign | Return]


# ---- schedules ---------------------------------------------------------------------------------
@node
class Ident(Node):
    """A name inside a schedule directive (it refers to a parameter or binding of the kernel)."""

    id: str


@node
class TileDirective(Node):
    """`tile NAME [sizes] (split_k S)`."""

    target: Ident
    sizes: list[int]
    sizes_span: Span
    split_k: int | None


@node
class SplitDirective(Node):
    """`split NAME S`."""

    target: Ident
    parts: int
    parts_span: Span


@node
class FuseDirective(Node):
    """`fuse NAME off`."""

    target: Ident
    setting: Ident  # `off`, the one setting


@node
class PrecisionDirective(Node):
    """`precision NAMES as DTYPE (scale MODE(args))`."""

    targets: list[Ident]
    dtype: Ident
    mode: Ident | None  # tensor | channel | block | mx | nvfp4
    mode_args: list[int]
    mode_option: Ident | None = None  # a scale-rounding option: mx(rceil), nvfp4(rne)


@node
class AccumulateDirective(Node):
    """`accumulate DTYPE (OPTION)`."""

    dtype: Ident
    option: Ident | None = None  # fp8_fast: emulate FP8 tensor-core accumulation


@node
class PlaceDirective(Node):
    """`place NAMES in hbm|l2 (stacks ...)`."""

    targets: list[Ident]
    memory: str  # "hbm" | "l2"
    stacks: list[int] | None


@node
class BuffersDirective(Node):
    """`buffers N`."""

    count: int


Directive = (TileDirective | SplitDirective | FuseDirective | PrecisionDirective
             | AccumulateDirective | PlaceDirective | BuffersDirective)


@node
class Schedule(Node):
    """`schedule KERNEL { directives }`."""

    kernel: str
    kernel_span: Span
    directives: list[Directive]


@node
class Module(Node):
    """A whole source file: its kernels and schedules."""

    kernels: list[Kernel] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
