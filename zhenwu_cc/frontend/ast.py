"""The `.zk` syntax tree: plain classes with a source span on every node.

The parser builds it; irgen gives it meaning. Nodes compare by identity, so that a deep expression
never recurses through an `__eq__`, and have no `__repr__` (nothing prints a node). They are not
dataclasses: Python 3.11's `dataclass` compiles each generated `__init__` at every start-up
(~0.7M instructions a class, 28 classes on every `check`); one `__init__` on `Node` serves all.
"""

from __future__ import annotations

from typing import ClassVar

from zhenwu_cc.core.diagnostics import Span


class Node:
    """Every node has the source span it came from. A node class lists its fields as annotations
    after its base's (`_fields`), and is built from their values in that order."""

    _fields: ClassVar[tuple[str, ...]] = ("span",)
    span: Span

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._fields = cls._fields + tuple(vars(cls).get("__annotations__", ()))

    def __init__(self, *values) -> None:
        if len(values) != len(self._fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} values "
                            f"({', '.join(self._fields)}), got {len(values)}")
        for name, value in zip(self._fields, values):
            setattr(self, name, value)


# ---- expressions -------------------------------------------------------------------------------
class Name(Node):
    """A use of a parameter, binding or shape parameter: `x`."""

    id: str


class Number(Node):
    """A literal, with its source text: `0.5`, `128`."""

    value: int | float
    text: str


class Neg(Node):
    """Unary minus: `-x`."""

    operand: Node


class BinOp(Node):
    """`lhs op rhs`: arithmetic, matmul or comparison."""

    op: str  # + - * / @ == != < <= > >=
    lhs: Node
    rhs: Node


class Kwarg(Node):
    """A keyword argument of a call: `axis=-1`."""

    name: str
    value: Node


class Call(Node):
    """A builtin applied to arguments: `softmax(x, axis=-1)`."""

    func: str
    func_span: Span
    args: list[Node]
    kwargs: list[Kwarg]


class SubIndex(Node):
    """One integer subscript: the `0` of `x[0, :]`."""

    index: Node


class SubSlice(Node):
    """One slice subscript: `a:b`, either bound optional."""

    start: Node | None
    stop: Node | None


class Index(Node):
    """A subscripted value: `x[0, 1:4]`."""

    base: Node
    subs: list[SubIndex | SubSlice]


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
class TensorType(Node):
    """A parameter's or result's type: `f16[M, K]`."""

    dtype: str
    dtype_span: Span
    dims: list[Node]


class ShapeParam(Node):
    """A shape parameter with its default: `M = 4096`."""

    name: str
    default: int


class Param(Node):
    """A kernel parameter: `a: f16[M, K]`."""

    name: str
    type: TensorType


class Result(Node):
    """A declared kernel result, named or not."""

    name: str | None
    type: TensorType


class Assign(Node):
    """`name = value`."""

    name: str
    name_span: Span
    value: Node


class Return(Node):
    """`return a, b`."""

    values: list[Node]


class Kernel(Node):
    """`kernel name<shape params>(params) -> results { body }`."""

    name: str
    name_span: Span
    shape_params: list[ShapeParam]
    params: list[Param]
    results: list[Result]
    body: list[Assign | Return]


# ---- schedules ---------------------------------------------------------------------------------
class Ident(Node):
    """A name inside a schedule directive (it refers to a parameter or binding of the kernel)."""

    id: str


class TileDirective(Node):
    """`tile NAME [sizes] (split_k S)`."""

    target: Ident
    sizes: list[int]
    sizes_span: Span
    split_k: int | None


class SplitDirective(Node):
    """`split NAME S`."""

    target: Ident
    parts: int
    parts_span: Span


class FuseDirective(Node):
    """`fuse NAME off`."""

    target: Ident
    setting: Ident  # `off`, the one setting


class PrecisionDirective(Node):
    """`precision NAMES as DTYPE (scale MODE(args))`."""

    targets: list[Ident]
    dtype: Ident
    mode: Ident | None  # tensor | channel | block | mx | nvfp4
    mode_args: list[int]
    mode_option: Ident | None  # a scale-rounding option: mx(rceil), nvfp4(rne)


class AccumulateDirective(Node):
    """`accumulate DTYPE (OPTION)`."""

    dtype: Ident
    option: Ident | None  # fp8_fast: emulate FP8 tensor-core accumulation


class PlaceDirective(Node):
    """`place NAMES in hbm|l2 (stacks ...)`."""

    targets: list[Ident]
    memory: str  # "hbm" | "l2"
    stacks: list[int] | None


class BuffersDirective(Node):
    """`buffers N`."""

    count: int


Directive = (TileDirective | SplitDirective | FuseDirective | PrecisionDirective
             | AccumulateDirective | PlaceDirective | BuffersDirective)


class Schedule(Node):
    """`schedule KERNEL { directives }`."""

    kernel: str
    kernel_span: Span
    directives: list[Directive]


class Module(Node):
    """A whole source file: its kernels and schedules."""

    kernels: list[Kernel]
    schedules: list[Schedule]
