"""The `zk` dialect: the tensor-level program exactly as the `.zk` source says it.

Values are builtin `tensor<...>` types with concrete shapes. Elementwise ops take operands of one
element type (the front end inserts explicit `zk.cast`s for promotions) and broadcast like numpy.
Schedule directives ride along as `zk.tile`, `zk.precision`, `zk.place` attributes on the op (or
kernel argument) they name, and `zk.buffers` / `zk.accumulate` on the kernel.

This module holds the kernel, leaves, contraction, reductions, normalisations and data movement;
the elementwise ops are in zk_elementwise.py, quantisation in zk_quant.py, the attributes in
zk_attrs.py and precision.py. Every op and attribute is re-exported here (`zk.GeluOp`), as are
the shape rules (core/shapes.py) and the quantisation scheme (core/quant.py) the code base uses
as `zk.X`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    Float64Type,
    FloatAttr,
    FunctionType,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    TensorType,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    VarConstraint,
    base,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, Pure, SymbolOpInterface
from zhenwu_cc.core.quant import (  # noqa: F401  (re-exported: the code base says zk.X)
    AMAX_MODES,
    AXIS_GROUPS,
    SCALE_DTYPES,
    SCALE_OPTIONS,
    blocks_of,
    scale_blocks,
    scale_shape,
)
from zhenwu_cc.core.shapes import (  # noqa: F401  (re-exported)
    Shape,
    broadcast_shapes,
    matmul_shape,
    normalize_axis,
    prod,
    reduce_shape,
)
from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.dialects.formats import (
    parse_kernel_arguments,
    parse_number,
    print_kernel_arguments,
    print_number,
)
from zhenwu_cc.dialects.precision import PrecisionAttr
from zhenwu_cc.dialects.zk_attrs import FuseAttr, PlaceAttr, SplitAttr, TileAttr
from zhenwu_cc.dialects.zk_common import check as _check
from zhenwu_cc.dialects.zk_common import elem as _elem
from zhenwu_cc.dialects.zk_common import shape as _shape
from zhenwu_cc.dialects.zk_elementwise import (  # noqa: F401  (re-exported)
    BINARY_OPS,
    COMPARE_PREDICATES,
    UNARY_OPS,
    AbsOp,
    AddOp,
    BinaryElementwiseOp,
    BitcastOp,
    CastOp,
    CompareOp,
    DivOp,
    ErfOp,
    ExpOp,
    FloatBinaryOp,
    FloatUnaryOp,
    GeluOp,
    GeluTanhOp,
    LogOp,
    MaxOp,
    MinOp,
    MulOp,
    NegOp,
    PowOp,
    ReluOp,
    RsqrtOp,
    SelectOp,
    SigmoidOp,
    SiluOp,
    SoftplusOp,
    SqrtOp,
    SubOp,
    TanhOp,
    UnaryElementwiseOp,
    bitcast_compatible,
)
from zhenwu_cc.dialects.zk_quant import DequantizeOp, QuantizeOp, quantized_types  # noqa: F401

if TYPE_CHECKING:  # annotations only: defining the ops imports no parser or printer
    from xdsl.parser import Parser
    from xdsl.printer import Printer


# ---- the kernel ---------------------------------------------------------------------------------

@irdl_op_definition
class KernelOp(IRDLOperation):
    """A kernel: named tensor parameters (block arguments) and named results.

    `zk.kernel @gemm(%a: tensor<64x16xf16>, %b: tensor<16x32xf16>) -> (c: tensor<64x32xf32>)
    attributes {params = {M = 64 : i64}} { ... }`
    """

    name = "zk.kernel"
    sym_name = prop_def(SymbolNameConstraint())
    function_type = prop_def(FunctionType)
    result_names = prop_def(ArrayAttr[StringAttr])
    arg_attrs = opt_prop_def(ArrayAttr[DictionaryAttr])
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), IsolatedFromAbove())

    def __init__(self, name: str, arg_types: Sequence[Attribute], result_types: Sequence[Attribute],
                 result_names: Sequence[str], body: Region,
                 arg_attrs: Sequence[dict[str, Attribute]] | None = None,
                 attributes: dict[str, Attribute] | None = None):
        props: dict[str, Attribute] = {
            "sym_name": StringAttr(name),
            "function_type": FunctionType.from_lists(list(arg_types), list(result_types)),
            "result_names": ArrayAttr([StringAttr(n) for n in result_names]),
        }
        if arg_attrs is not None and any(arg_attrs):
            props["arg_attrs"] = ArrayAttr([DictionaryAttr(a) for a in arg_attrs])
        super().__init__(properties=props, regions=[body], attributes=attributes or {})

    @property
    def arg_names(self) -> list[str]:
        return [a.name_hint or f"arg{i}" for i, a in enumerate(self.body.block.args)]

    @property
    def names_of_results(self) -> list[str]:
        return [s.data for s in self.result_names.data]

    def arg_attr(self, index: int, key: str) -> Attribute | None:
        if self.arg_attrs is None:
            return None
        return self.arg_attrs.data[index].data.get(key)

    def verify_(self) -> None:
        block = self.body.block
        inputs = self.function_type.inputs.data
        outputs = self.function_type.outputs.data
        _check(tuple(a.type for a in block.args) == tuple(inputs),
               "block argument types do not match the kernel's function type")
        _check(len(self.result_names.data) == len(outputs), "one name per result is needed")
        if self.arg_attrs is not None:
            _check(len(self.arg_attrs.data) == len(inputs), "one attribute dict per argument")
        for t in (*inputs, *outputs, *(r.type for op in self.body.walk() for r in op.results)):
            # tiling divides by extents: none may be 0 (the message is printed only on failure:
            # printing a type is most of a passing verification's time)
            if isinstance(t, TensorType) and not all(d >= 1 for d in t.get_shape()):
                _check(False, f"tensor dimensions must be >= 1, got {t}")
        self._verify_schedule_attributes()
        ret = block.last_op
        _check(isinstance(ret, ReturnOp), "a kernel must end with zk.return")
        _check(tuple(v.type for v in ret.operands) == tuple(outputs),
               "zk.return operand types do not match the kernel's result types")

    def _verify_schedule_attributes(self) -> None:
        """What the schedule puts on the kernel, as the passes read it (hand-written IR may say
        anything: `zk.accumulate = index` once crashed `tile`)."""
        count = self.attributes.get(attrs.BUFFERS)
        if not (count is None or (isinstance(count, IntegerAttr)
                                  and 1 <= count.value.data <= attrs.MAX_BUFFERS)):
            _check(False, f"{attrs.BUFFERS} must be an integer in 1..{attrs.MAX_BUFFERS}, "
                   f"got {count}")
        acc = self.attributes.get(attrs.ACCUMULATE)
        if not (acc is None or (dtypes.is_known_xdsl(acc)
                                and dtypes.from_xdsl(acc).name in dtypes.ACCUMULATORS)):
            _check(False, f"{attrs.ACCUMULATE} must be one of the types "
                   f"{', '.join(dtypes.ACCUMULATORS)}, got {acc}")
        mode = self.attributes.get(attrs.ACCUMULATE_MODE)
        if not (mode is None or (isinstance(mode, StringAttr)
                                 and mode.data in attrs.ACCUMULATE_MODES)):
            _check(False, f"{attrs.ACCUMULATE_MODE} must be one of "
                   f"{', '.join(map(repr, attrs.ACCUMULATE_MODES))}, got {mode}")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        attrs = self.arg_attrs.data if self.arg_attrs else [None] * len(self.body.block.args)
        print_kernel_arguments(printer, self.body.block.args, attrs)
        printer.print_string(" -> (")
        printer.print_list(zip(self.names_of_results, self.function_type.outputs.data),
                           lambda t: (printer.print_identifier_or_string_literal(t[0]),
                                      printer.print_string(": "), printer.print_attribute(t[1])))
        printer.print_string(")")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> KernelOp:
        name = parser.parse_symbol_name().data

        args = parse_kernel_arguments(parser)
        parser.parse_punctuation("->")

        def parse_result():
            rname = parser.parse_optional_identifier() or parser.parse_str_literal()
            parser.parse_punctuation(":")
            return rname, parser.parse_type()

        results = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parse_result)
        attributes = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region([a for a, _ in args])
        op = cls(name, [a.type for a, _ in args], [t for _, t in results],
                 [n for n, _ in results], body,
                 arg_attrs=[attrs for _, attrs in args],
                 attributes=attributes.data if attributes else None)
        return op


@irdl_op_definition
class ReturnOp(IRDLOperation):
    """The kernel's results, in the order of its result names."""

    name = "zk.return"
    values = var_operand_def(TensorType)
    traits = traits_def(IsTerminator(), HasParent(KernelOp), Pure())
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, values: Sequence[SSAValue]):
        super().__init__(operands=[list(values)])


# ---- leaves -------------------------------------------------------------------------------------
@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A scalar literal, splatted to the result type (rank 0 for source literals)."""

    name = "zk.constant"
    value = prop_def(FloatAttr[Float64Type])
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, value: float, type: TensorType):
        super().__init__(properties={"value": FloatAttr(float(value), 64)}, result_types=[type])

    @property
    def number(self) -> float:
        return self.value.value.data

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        print_number(printer, self.number)
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser) -> ConstantOp:
        value = parse_number(parser)
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        op = cls(value, parser.parse_type())
        op.attributes |= attrs
        return op


@irdl_op_definition
class IotaOp(IRDLOperation):
    """Indices along `axis`, as i32: the building block of masks (e.g. causal attention)."""

    name = "zk.iota"
    axis = prop_def(IntegerAttr[i64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "`axis` $axis attr-dict `:` type($result)"

    def __init__(self, axis: int, type: TensorType):
        super().__init__(properties={"axis": IntegerAttr(axis, 64)}, result_types=[type])

    def verify_(self) -> None:
        _check(0 <= self.axis.value.data < len(_shape(self.result)), "iota axis out of range")
        _check(self.result.type.element_type == dtypes.to_xdsl(dtypes.I32), "iota yields i32")



# ---- contraction and reductions ---------------------------------------------------------------
@irdl_op_definition
class MatmulOp(IRDLOperation):
    """`@`: [..., M, K] x [..., K, N] -> [..., M, N], batched with broadcasting over leading dims.

    The result element type is the accumulator's (f32 for float operands, i32 for integers)."""

    name = "zk.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        shape = matmul_shape(_shape(lhs), _shape(rhs))
        assert shape is not None
        acc = dtypes.accumulator_for(dtypes.from_xdsl(_elem(lhs)))
        super().__init__(operands=[lhs, rhs], result_types=[TensorType(dtypes.to_xdsl(acc), shape)])

    def verify_(self) -> None:
        _check(_elem(self.lhs) == _elem(self.rhs), "zk.matmul operands must share an element type")
        shape = matmul_shape(_shape(self.lhs), _shape(self.rhs))
        _check(shape is not None and shape == _shape(self.result),
               f"zk.matmul shapes {list(_shape(self.lhs))} and {list(_shape(self.rhs))} "
               f"do not give {list(_shape(self.result))}")
        acc = dtypes.accumulator_for(dtypes.from_xdsl(_elem(self.lhs)))
        _check(_elem(self.result) == dtypes.to_xdsl(acc),
               f"zk.matmul yields the accumulator type {acc}")

class ReduceOp(IRDLOperation):
    """Base of the reductions over `axes` (sorted, non-negative), optionally keeping dims."""

    input = operand_def(TensorType)
    axes = prop_def(DenseArrayBase.constr(i64))
    keepdims = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = ("$input `axes` $axes (`keepdims` $keepdims^)? attr-dict `:` type($input) "
                       "`->` type($result)")

    def __init__(self, input: SSAValue, axes: Sequence[int], keepdims: bool,
                 element_type: Attribute | None = None):
        props: dict[str, Attribute] = {"axes": DenseArrayBase.from_list(i64, list(axes))}
        if keepdims:
            props["keepdims"] = UnitAttr()
        shape = reduce_shape(_shape(input), axes, keepdims)
        super().__init__(operands=[input], properties=props,
                         result_types=[TensorType(element_type or _elem(input), shape)])

    @property
    def axis_list(self) -> tuple[int, ...]:
        return tuple(self.axes.get_values())

    def verify_(self) -> None:
        rank = len(_shape(self.input))
        axes = self.axis_list
        _check(list(axes) == sorted(set(axes)) and all(0 <= a < rank for a in axes),
               f"{self.name} axes must be sorted, distinct and within rank {rank}")
        _check(bool(axes), f"{self.name} needs at least one axis (over none it is its input)")
        expected = reduce_shape(_shape(self.input), axes, self.keepdims is not None)
        _check(_shape(self.result) == expected, f"{self.name} result shape must be {list(expected)}")
        _check(_elem(self.result) == _elem(self.input), f"{self.name} keeps the element type")


class FloatReduceOp(ReduceOp):
    """Base of the reductions defined on floats only."""

    def verify_(self) -> None:
        super().verify_()
        _check(dtypes.from_xdsl(_elem(self.input)).is_float, f"{self.name} needs floats")


@irdl_op_definition
class ReduceSumOp(ReduceOp):
    """Sum over axes (accumulated in f32 for floats)."""

    name = "zk.reduce_sum"


@irdl_op_definition
class ReduceMaxOp(ReduceOp):
    """Maximum over axes."""

    name = "zk.reduce_max"


@irdl_op_definition
class ReduceMinOp(ReduceOp):
    """Minimum over axes."""

    name = "zk.reduce_min"


@irdl_op_definition
class ReduceMeanOp(FloatReduceOp):
    """Mean over axes (floats only)."""

    name = "zk.reduce_mean"


@irdl_op_definition
class LogSumExpOp(FloatReduceOp):
    """log(sum(exp(x))) over axes, stable; composite."""

    name = "zk.logsumexp"


REDUCE_OPS: dict[str, type[ReduceOp]] = {"sum": ReduceSumOp, "max": ReduceMaxOp,
                                         "min": ReduceMinOp, "mean": ReduceMeanOp}


@irdl_op_definition
class ArgmaxOp(IRDLOperation):
    """Index of the first maximum along `axis`, as i32."""

    name = "zk.argmax"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr[i64])
    keepdims = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = ("$input `axis` $axis (`keepdims` $keepdims^)? attr-dict `:` type($input) "
                       "`->` type($result)")

    def __init__(self, input: SSAValue, axis: int, keepdims: bool):
        props: dict[str, Attribute] = {"axis": IntegerAttr(axis, 64)}
        if keepdims:
            props["keepdims"] = UnitAttr()
        shape = reduce_shape(_shape(input), (axis,), keepdims)
        super().__init__(operands=[input], properties=props,
                         result_types=[TensorType(dtypes.to_xdsl(dtypes.I32), shape)])

    def verify_(self) -> None:
        axis = self.axis.value.data
        _check(0 <= axis < len(_shape(self.input)), "zk.argmax axis out of range")
        _check(_shape(self.result) == reduce_shape(_shape(self.input), (axis,),
                                                   self.keepdims is not None),
               "zk.argmax result shape is wrong")


# ---- normalisations (composites, expanded by `decompose`) ---------------------------------------
class AxisOp(IRDLOperation):
    """Base of softmax / log_softmax: one axis, result type equals operand type."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    axis = prop_def(IntegerAttr[i64])
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$input `axis` $axis attr-dict `:` type($input)"

    def __init__(self, input: SSAValue, axis: int):
        super().__init__(operands=[input], properties={"axis": IntegerAttr(axis, 64)},
                         result_types=[input.type])

    def verify_(self) -> None:
        _check(0 <= self.axis.value.data < len(_shape(self.input)), f"{self.name} axis out of range")
        _check(dtypes.from_xdsl(_elem(self.input)).is_float, f"{self.name} needs floats")


@irdl_op_definition
class SoftmaxOp(AxisOp):
    """exp(x - max) / sum(exp(x - max)) along `axis`."""

    name = "zk.softmax"


@irdl_op_definition
class LogSoftmaxOp(AxisOp):
    """x - logsumexp(x) along `axis`."""

    name = "zk.log_softmax"


class NormOp(IRDLOperation):
    """Base of layernorm / rmsnorm over one axis, with optional scale and bias that broadcast."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    scale = opt_operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    axis = prop_def(IntegerAttr[i64])
    eps = prop_def(FloatAttr[Float64Type])
    result = result_def(T)
    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = ("$input (`scale` $scale^)? (`bias` $bias^)? `axis` $axis `eps` $eps "
                       "attr-dict `:` type($input) (`,` `scale` type($scale)^)? "
                       "(`,` `bias` type($bias)^)?")

    def __init__(self, input: SSAValue, scale: SSAValue | None, bias: SSAValue | None, axis: int,
                 eps: float):
        super().__init__(operands=[input, [scale] if scale else [], [bias] if bias else []],
                         properties={"axis": IntegerAttr(axis, 64), "eps": FloatAttr(eps, 64)},
                         result_types=[input.type])

    def verify_(self) -> None:
        shape = _shape(self.input)
        _check(self.result.type == self.input.type, f"{self.name} keeps the input type")
        _check(0 <= self.axis.value.data < len(shape), f"{self.name} axis out of range")
        _check(dtypes.from_xdsl(_elem(self.input)).is_float, f"{self.name} needs floats")
        for v in (self.scale, self.bias):
            if v is not None:
                _check(_elem(v) == _elem(self.input), f"{self.name} scale/bias dtype must match")
                _check(broadcast_shapes(_shape(v), shape) == shape,
                       f"{self.name} scale/bias shape {list(_shape(v))} must broadcast to "
                       f"{list(shape)}")


@irdl_op_definition
class LayerNormOp(NormOp):
    """(x - mean) / sqrt(var + eps) * scale + bias along `axis`."""

    name = "zk.layernorm"


@irdl_op_definition
class RMSNormOp(NormOp):
    """x / sqrt(mean(x*x) + eps) * scale + bias along `axis`."""

    name = "zk.rmsnorm"


# ---- data movement ----------------------------------------------------------------------------
@irdl_op_definition
class BroadcastOp(IRDLOperation):
    """`broadcast_to(x, shape)` with numpy rules."""

    name = "zk.broadcast"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `to` type($result)"

    def __init__(self, input: SSAValue, shape: Sequence[int]):
        super().__init__(operands=[input], result_types=[TensorType(_elem(input), shape)])

    def verify_(self) -> None:
        _check(_elem(self.input) == _elem(self.result), "zk.broadcast keeps the element type")
        _check(broadcast_shapes(_shape(self.input), _shape(self.result)) == _shape(self.result),
               "zk.broadcast input must broadcast to the result shape")


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """Permute dimensions: result dim i is input dim perm[i]."""

    name = "zk.transpose"
    input = operand_def(TensorType)
    perm = prop_def(DenseArrayBase.constr(i64))
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input `perm` $perm attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, perm: Sequence[int]):
        shape = tuple(_shape(input)[p] for p in perm)
        super().__init__(operands=[input], properties={"perm": DenseArrayBase.from_list(i64, perm)},
                         result_types=[TensorType(_elem(input), shape)])

    @property
    def permutation(self) -> tuple[int, ...]:
        return tuple(self.perm.get_values())

    def verify_(self) -> None:
        shape, perm = _shape(self.input), self.permutation
        _check(sorted(perm) == list(range(len(shape))), "zk.transpose perm is not a permutation")
        _check(tuple(shape[p] for p in perm) == _shape(self.result), "zk.transpose result shape")
        _check(_elem(self.input) == _elem(self.result), "zk.transpose keeps the element type")


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """Same elements, new shape (row-major)."""

    name = "zk.reshape"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `to` type($result)"

    def __init__(self, input: SSAValue, shape: Sequence[int]):
        super().__init__(operands=[input], result_types=[TensorType(_elem(input), shape)])

    def verify_(self) -> None:
        a, b = _shape(self.input), _shape(self.result)
        _check(prod(a) == prod(b), f"zk.reshape from {list(a)} to {list(b)} changes the size")
        _check(_elem(self.input) == _elem(self.result), "zk.reshape keeps the element type")


@irdl_op_definition
class SliceOp(IRDLOperation):
    """A static window `x[start:limit]` per dimension (unit stride)."""

    name = "zk.slice"
    input = operand_def(TensorType)
    start = prop_def(DenseArrayBase.constr(i64))
    limit = prop_def(DenseArrayBase.constr(i64))
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = ("$input `start` $start `limit` $limit attr-dict `:` type($input) `->` "
                       "type($result)")

    def __init__(self, input: SSAValue, start: Sequence[int], limit: Sequence[int]):
        shape = [hi - lo for lo, hi in zip(start, limit)]
        super().__init__(operands=[input],
                         properties={"start": DenseArrayBase.from_list(i64, list(start)),
                                     "limit": DenseArrayBase.from_list(i64, list(limit))},
                         result_types=[TensorType(_elem(input), shape)])

    def verify_(self) -> None:
        shape = _shape(self.input)
        lo, hi = tuple(self.start.get_values()), tuple(self.limit.get_values())
        _check(len(lo) == len(hi) == len(shape), "zk.slice needs one bound per dimension")
        _check(all(0 <= a <= b <= d for a, b, d in zip(lo, hi, shape)),
               "zk.slice bounds must satisfy 0 <= start <= limit <= dim")
        _check(tuple(b - a for a, b in zip(lo, hi)) == _shape(self.result), "zk.slice result shape")


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Join tensors along `axis`; every other dimension must agree."""

    name = "zk.concat"
    inputs = var_operand_def(TensorType)
    axis = prop_def(IntegerAttr[i64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$inputs `axis` $axis attr-dict `:` type($inputs) `->` type($result)"

    def __init__(self, inputs: Sequence[SSAValue], axis: int):
        shapes = [_shape(v) for v in inputs]
        shape = list(shapes[0])
        shape[axis] = sum(s[axis] for s in shapes)
        super().__init__(operands=[list(inputs)], properties={"axis": IntegerAttr(axis, 64)},
                         result_types=[TensorType(_elem(inputs[0]), shape)])

    def verify_(self) -> None:
        axis = self.axis.value.data
        shapes = [_shape(v) for v in self.inputs]
        _check(len(shapes) >= 1, "zk.concat needs inputs")
        rank = len(shapes[0])
        _check(0 <= axis < rank, "zk.concat axis out of range")
        _check(all(len(s) == rank and all(s[i] == shapes[0][i] for i in range(rank) if i != axis)
                   for s in shapes), "zk.concat inputs must agree off the concat axis")
        _check(all(_elem(v) == _elem(self.result) for v in self.inputs),
               "zk.concat inputs must share the element type")
        expected = list(shapes[0])
        expected[axis] = sum(s[axis] for s in shapes)
        _check(tuple(expected) == _shape(self.result), "zk.concat result shape")


ELEMENTWISE_OPS = (UnaryElementwiseOp, BinaryElementwiseOp, CastOp, BitcastOp, SelectOp,
                   CompareOp)


def matmul_feeding(op: Operation) -> MatmulOp | None:
    """The one matmul whose result `op` computes, directly or through an elementwise epilogue
    (`gelu(x @ w + b)`), or None. This is what `tile NAME [M, N, K]` tiles."""
    if isinstance(op, MatmulOp):
        return op
    found = matmuls_feeding(op)
    return found[0] if len(found) == 1 else None


def matmuls_feeding(op: Operation) -> list[MatmulOp]:
    """The distinct matmuls of `op`'s result shape that an elementwise `op` combines, through
    elementwise ops, in the order found (two for SwiGLU's `silu(x @ w1) * (x @ w3)`)."""
    if not isinstance(op, ELEMENTWISE_OPS):
        return []
    found: list[MatmulOp] = []
    stack, seen = [op], set()
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        for operand in cur.operands:
            owner = operand.owner
            if isinstance(owner, MatmulOp) and _shape(owner.result) == _shape(op.results[0]):
                if all(owner is not m for m in found):
                    found.append(owner)
            elif isinstance(owner, ELEMENTWISE_OPS):
                stack.append(owner)
    return found


def contraction_axis(value: SSAValue) -> int | None:
    """The axis of `value` that a matmul contracts (through transposes and casts), or None."""
    axes = set()
    stack: list[tuple[SSAValue, tuple[int, ...]]] = [(value, tuple(range(len(_shape(value)))))]
    while stack:
        v, origin = stack.pop()  # origin[i]: the axis of `value` that axis i of v came from
        for use in v.uses:
            user = use.operation
            if isinstance(user, MatmulOp):
                axes.add(origin[-1] if use.index == 0 else origin[-2])
            elif isinstance(user, TransposeOp):
                stack.append((user.result, tuple(origin[p] for p in user.permutation)))
            elif isinstance(user, CastOp):
                stack.append((user.result, origin))
    return axes.pop() if len(axes) == 1 else None


def uses_besides_matmuls(value: SSAValue) -> list[Operation]:
    """The ops that use `value` other than as a matmul operand (through transposes and casts)."""
    out, stack = [], [value]
    while stack:
        for use in stack.pop().uses:
            user = use.operation
            if isinstance(user, (TransposeOp, CastOp)):
                stack.append(user.result)
            elif not isinstance(user, MatmulOp):
                out.append(user)
    return out


ZK = Dialect(
    "zk",
    [KernelOp, ReturnOp, ConstantOp, IotaOp, *UNARY_OPS.values(), *BINARY_OPS.values(), CompareOp,
     SelectOp, CastOp, BitcastOp, QuantizeOp, DequantizeOp, MatmulOp, *REDUCE_OPS.values(), LogSumExpOp,
     ArgmaxOp, SoftmaxOp, LogSoftmaxOp, LayerNormOp, RMSNormOp, BroadcastOp, TransposeOp,
     ReshapeOp, SliceOp, ConcatOp],
    [TileAttr, SplitAttr, FuseAttr, PrecisionAttr, PlaceAttr],
)
