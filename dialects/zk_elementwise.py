"""The `zk` dialect's elementwise ops: unary and binary arithmetic (numpy broadcasting),
comparison, select, cast and bitcast. Each op is a named class; its base class says which
element types it takes (`FloatUnaryOp`, `FloatBinaryOp`: floats only), an IRDL constraint and
trait that a unary op keeps its operand's type, and `verify_` the broadcasting rules."""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import StringAttr, TensorType, i1
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    VarConstraint,
    base,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure, SameOperandsAndResultType
from zhenwu_cc.core.shapes import broadcast_shapes
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects.zk_common import check as _check
from zhenwu_cc.dialects.zk_common import elem as _elem
from zhenwu_cc.dialects.zk_common import shape as _shape


class UnaryElementwiseOp(IRDLOperation):
    """Base of the one-operand elementwise ops on any element type; result type equals operand
    type."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure(), SameOperandsAndResultType())
    assembly_format = "$input attr-dict `:` type($input)"

    def __init__(self, input: SSAValue):
        super().__init__(operands=[input], result_types=[input.type])


class FloatUnaryOp(UnaryElementwiseOp):
    """Base of the unary ops defined on floats only (checked in `verify_`, not as an IRDL
    constraint, so that the diagnostic names the op and the rule)."""

    def verify_(self) -> None:
        _check(dtypes.from_xdsl(_elem(self.input)).is_float, f"{self.name} needs a float tensor")


@irdl_op_definition
class NegOp(UnaryElementwiseOp):
    """-x"""

    name = "zk.neg"


@irdl_op_definition
class AbsOp(UnaryElementwiseOp):
    """|x|"""

    name = "zk.abs"


@irdl_op_definition
class ExpOp(FloatUnaryOp):
    """e**x"""

    name = "zk.exp"


@irdl_op_definition
class LogOp(FloatUnaryOp):
    """Natural logarithm"""

    name = "zk.log"


@irdl_op_definition
class TanhOp(FloatUnaryOp):
    """Hyperbolic tangent"""

    name = "zk.tanh"


@irdl_op_definition
class ErfOp(FloatUnaryOp):
    """The error function"""

    name = "zk.erf"


@irdl_op_definition
class SqrtOp(FloatUnaryOp):
    """Square root"""

    name = "zk.sqrt"


@irdl_op_definition
class RsqrtOp(FloatUnaryOp):
    """1 / sqrt(x)"""

    name = "zk.rsqrt"


@irdl_op_definition
class SigmoidOp(FloatUnaryOp):
    """1 / (1 + exp(-x)); composite, expanded by `decompose`"""

    name = "zk.sigmoid"


@irdl_op_definition
class ReluOp(FloatUnaryOp):
    """Max(x, 0); composite, expanded by `decompose`"""

    name = "zk.relu"


@irdl_op_definition
class GeluOp(FloatUnaryOp):
    """x * Phi(x), exact (erf-based); composite, expanded by `decompose`"""

    name = "zk.gelu"


@irdl_op_definition
class GeluTanhOp(FloatUnaryOp):
    """The tanh approximation of gelu; composite"""

    name = "zk.gelu_tanh"


@irdl_op_definition
class SiluOp(FloatUnaryOp):
    """x * sigmoid(x); composite, expanded by `decompose`"""

    name = "zk.silu"


@irdl_op_definition
class SoftplusOp(FloatUnaryOp):
    """Log(1 + exp(x)), stable; composite, expanded by `decompose`"""

    name = "zk.softplus"


UNARY_OPS: dict[str, type[UnaryElementwiseOp]] = {
    c.name.split(".")[1]: c for c in (NegOp, AbsOp, ExpOp, LogOp, TanhOp, ErfOp, SqrtOp, RsqrtOp,
                                      SigmoidOp, ReluOp, GeluOp, GeluTanhOp, SiluOp, SoftplusOp)
}


class BinaryElementwiseOp(IRDLOperation):
    """Base of the two-operand elementwise ops: one element type, numpy broadcasting."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: TensorType | None = None):
        if result_type is None:
            shape = broadcast_shapes(_shape(lhs), _shape(rhs))
            assert shape is not None, "operands do not broadcast"
            result_type = TensorType(_elem(lhs), shape)
        super().__init__(operands=[lhs, rhs], result_types=[result_type])

    def verify_(self) -> None:
        _check(_elem(self.lhs) == _elem(self.rhs) == _elem(self.result),
               f"{self.name} operands and result must share one element type")
        _check(broadcast_shapes(_shape(self.lhs), _shape(self.rhs)) == _shape(self.result),
               f"{self.name} result shape must be the broadcast of the operand shapes")


class FloatBinaryOp(BinaryElementwiseOp):
    """Base of the binary ops defined on floats only."""

    def verify_(self) -> None:
        super().verify_()
        _check(dtypes.from_xdsl(_elem(self.lhs)).is_float, f"{self.name} needs float tensors")


@irdl_op_definition
class AddOp(BinaryElementwiseOp):
    """x + y"""

    name = "zk.add"


@irdl_op_definition
class SubOp(BinaryElementwiseOp):
    """x - y"""

    name = "zk.sub"


@irdl_op_definition
class MulOp(BinaryElementwiseOp):
    """x * y"""

    name = "zk.mul"


@irdl_op_definition
class DivOp(FloatBinaryOp):
    """x / y (true division; floats only)"""

    name = "zk.div"


@irdl_op_definition
class MaxOp(BinaryElementwiseOp):
    """Elementwise maximum (NaN-propagating)"""

    name = "zk.max"


@irdl_op_definition
class MinOp(BinaryElementwiseOp):
    """Elementwise minimum (NaN-propagating)"""

    name = "zk.min"


@irdl_op_definition
class PowOp(FloatBinaryOp):
    """x ** y (floats only)"""

    name = "zk.pow"


BINARY_OPS: dict[str, type[BinaryElementwiseOp]] = {
    c.name.split(".")[1]: c for c in (AddOp, SubOp, MulOp, DivOp, MaxOp, MinOp, PowOp)
}

COMPARE_PREDICATES = ("eq", "ne", "lt", "le", "gt", "ge")


@irdl_op_definition
class CompareOp(IRDLOperation):
    """Elementwise comparison with numpy broadcasting; yields i1."""

    name = "zk.compare"
    predicate = prop_def(StringAttr)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = ("$predicate `,` $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) "
                       "`->` type($result)")

    def __init__(self, predicate: str, lhs: SSAValue, rhs: SSAValue):
        shape = broadcast_shapes(_shape(lhs), _shape(rhs))
        assert shape is not None
        super().__init__(properties={"predicate": StringAttr(predicate)}, operands=[lhs, rhs],
                         result_types=[TensorType(i1, shape)])

    def verify_(self) -> None:
        _check(self.predicate.data in COMPARE_PREDICATES,
               f"unknown predicate {self.predicate.data!r}")
        _check(_elem(self.lhs) == _elem(self.rhs), "compared tensors must share an element type")
        _check(_elem(self.result) == i1, "zk.compare yields i1")
        _check(broadcast_shapes(_shape(self.lhs), _shape(self.rhs)) == _shape(self.result),
               "result shape must be the broadcast of the operand shapes")


@irdl_op_definition
class SelectOp(IRDLOperation):
    """`where(cond, a, b)` with numpy broadcasting of all three."""

    name = "zk.select"
    cond = operand_def(TensorType)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = ("$cond `,` $lhs `,` $rhs attr-dict `:` type($cond) `,` type($lhs) `,` "
                       "type($rhs) `->` type($result)")

    def __init__(self, cond: SSAValue, lhs: SSAValue, rhs: SSAValue):
        shape = broadcast_shapes(_shape(cond), _shape(lhs), _shape(rhs))
        assert shape is not None
        super().__init__(operands=[cond, lhs, rhs], result_types=[TensorType(_elem(lhs), shape)])

    def verify_(self) -> None:
        _check(_elem(self.cond) == i1, "zk.select condition must be i1")
        _check(_elem(self.lhs) == _elem(self.rhs) == _elem(self.result),
               "zk.select branches and result must share an element type")
        _check(broadcast_shapes(_shape(self.cond), _shape(self.lhs), _shape(self.rhs))
               == _shape(self.result), "result shape must be the broadcast of the operand shapes")


@irdl_op_definition
class CastOp(IRDLOperation):
    """Convert the element type (round to nearest even, saturating for low-precision floats)."""

    name = "zk.cast"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `to` type($result)"

    def __init__(self, input: SSAValue, element_type: Attribute):
        super().__init__(operands=[input],
                         result_types=[TensorType(element_type, _shape(input))])

    def verify_(self) -> None:
        _check(_shape(self.input) == _shape(self.result), "zk.cast keeps the shape")


@irdl_op_definition
class BitcastOp(IRDLOperation):
    """Reinterpret each element's bits as another type of the same width (ui8 codes as E8M0
    scales, say): no rounding, no value conversion."""

    name = "zk.bitcast"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `to` type($result)"

    def __init__(self, input: SSAValue, element_type: Attribute):
        super().__init__(operands=[input],
                         result_types=[TensorType(element_type, _shape(input))])

    def verify_(self) -> None:
        _check(_shape(self.input) == _shape(self.result), "zk.bitcast keeps the shape")
        src, dst = (dtypes.from_xdsl(_elem(v)) for v in (self.input, self.result))
        _check(bitcast_compatible(src, dst),
               f"zk.bitcast needs two types of one storage width, got {src.name} and {dst.name}")


def bitcast_compatible(src: dtypes.DType, dst: dtypes.DType) -> bool:
    """Same bits per element, neither a 1-bit mask nor a sub-byte format (held a byte each)."""
    return (src.bits == dst.bits and src.bits >= 8
            and "bool" not in (src.kind, dst.kind))


