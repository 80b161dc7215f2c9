"""What an expression evaluates to during irgen: a tensor, a weak scalar, or a sequence."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.ir import SSAValue

from zhenwu_cc.core.diagnostics import Span
from zhenwu_cc.core import dtypes
from zhenwu_cc.core.dtypes import DType


class Value:
    """What an expression evaluates to: a tensor, a weak scalar, or a sequence (shapes, axes).
    A plain class, not a dataclass: nothing compares or prints one, and a generated `__init__`
    would be compiled at every start-up."""

    def __init__(self, span: Span, ssa: SSAValue | None = None,
                 num: int | float | bool | None = None, items: list[Value] | None = None,
                 dtype_arg: DType | None = None):
        self.span = span
        self.ssa = ssa
        self.num = num
        self.items = items
        self.dtype_arg = dtype_arg  # a dtype named as an argument: `bitcast(x, f8E8M0FNU)`

    @property
    def is_tensor(self) -> bool:
        return self.ssa is not None

    @property
    def is_scalar(self) -> bool:
        return self.num is not None

    @property
    def dtype(self) -> DType:
        return dtypes.from_xdsl(self.ssa.type.element_type)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.ssa.type.get_shape())

    def describe(self) -> str:
        if self.is_tensor:
            return type_str(self.dtype, self.shape)
        if self.is_scalar:
            return f"scalar {self.num!r}"
        if self.dtype_arg is not None:
            return f"the dtype `{self.dtype_arg.name}`"
        return "a sequence"


def type_str(dtype: DType, shape: Sequence[int]) -> str:
    return f"{dtype.name}[{', '.join(str(d) for d in shape)}]"
