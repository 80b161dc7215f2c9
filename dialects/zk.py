"""The `zk` dialect: the tensor-level program exactly as the `.zk` source says it.

Values are builtin `tensor<...>` types with concrete shapes. Elementwise ops take operands of one
element type (the front end inserts explicit `zk.cast`s for promotions) and broadcast like numpy.
Schedule directives ride along as `zk.tile`, `zk.precision`, `zk.place` attributes on the op (or
kernel argument) they name, and `zk.buffers` / `zk.accumulate` on the kernel.

The shape rules (`broadcast_shapes`, `matmul_shape`, ...) live here once and serve both the
verifiers and the front end's diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    FileLineColLoc,
    Float64Type,
    FloatAttr,
    FunctionType,
    IntAttr,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    TensorType,
    UnitAttr,
    UnknownLoc,
    i1,
    i64,
)
from xdsl.ir import (
    Attribute,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    AttrSizedResultSegments,
    IRDLOperation,
    VarConstraint,
    base,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    opt_result_def,
    param_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import IsolatedFromAbove, IsTerminator, Pure, SymbolOpInterface
from xdsl.utils.exceptions import VerifyException
from zhenwu_cc.dialects import dtypes
from zhenwu_cc.dialects.formats import (
    parse_kernel_arguments,
    parse_number,
    print_kernel_arguments,
    print_number,
)

Shape = tuple[int, ...]


# ---- shape rules (shared with the front end) ----------------------------------------------------
def broadcast_shapes(*shapes: Sequence[int]) -> Shape | None:
    """numpy broadcasting of several shapes, or None if they are incompatible."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def matmul_shape(lhs: Sequence[int], rhs: Sequence[int]) -> Shape | None:
    """`@` on [..., M, K] and [..., K, N]: [broadcast(...), M, N], or None if they do not fit."""
    if len(lhs) < 2 or len(rhs) < 2 or lhs[-1] != rhs[-2]:
        return None
    batch = broadcast_shapes(lhs[:-2], rhs[:-2])
    return None if batch is None else (*batch, lhs[-2], rhs[-1])


def reduce_shape(shape: Sequence[int], axes: Sequence[int], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def normalize_axis(axis: int, rank: int) -> int | None:
    """A possibly negative axis as an index into a shape of `rank`, or None if out of range."""
    if -rank <= axis < rank:
        return axis % rank
    return None


def _shape(v: SSAValue | Attribute) -> Shape:
    t = v.type if isinstance(v, SSAValue) else v
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def _elem(v: SSAValue) -> Attribute:
    assert isinstance(v.type, TensorType)
    return v.type.element_type


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise VerifyException(msg)


# ---- low-precision scaling -----------------------------------------------------------------------
# How each `precision ... scale MODE` holds its scales (docs/precision.md): the dtype of the scales,
# the scale-rounding options a mode takes (the first is the default), and the elements per scale
# along the contraction axis for the modes that block along it.
SCALE_DTYPES = {"tensor": "f32", "channel": "f32", "block": "f32", "mx": "f8E8M0FNU",
                "nvfp4": "f8E4M3FN"}
SCALE_OPTIONS = {"mx": ("floor", "rceil"), "nvfp4": ("up", "rne")}
AXIS_GROUPS = {"mx": 32, "nvfp4": 16}
AMAX_MODES = ("tensor", "channel", "nvfp4")  # modes that need an amax over more than one tile


def scale_blocks(mode: str, args: Sequence[int], shape: Sequence[int],
                 axis: int | None) -> Shape:
    """Elements sharing one scale along each dimension of a tensor of `shape`.

    Scales are held with the tensor's rank, dimension d having ceil(shape[d] / blocks[d])
    entries: a per-tensor scale is [1, 1], a per-row (`channel(0)`) one [M, 1], `block(1, 128)`
    [M, K/128], `mx` along K [M, K/32]. The same layout serves every level of the IR."""
    rank = len(shape)
    if mode == "tensor":
        return tuple(shape)
    if mode == "channel":
        a = normalize_axis(args[0], rank)
        return tuple(1 if d == a else n for d, n in enumerate(shape))
    if mode == "block":
        return (1,) * (rank - 2) + tuple(args)
    assert axis is not None, f"scale mode {mode} blocks along an axis"
    return tuple(AXIS_GROUPS[mode] if d == axis else 1 for d in range(rank))


def scale_shape(shape: Sequence[int], blocks: Sequence[int]) -> Shape:
    return tuple(-(-n // b) for n, b in zip(shape, blocks))


def blocks_of(shape: Sequence[int], scales: Sequence[int]) -> Shape | None:
    """The elements per scale that a scale tensor of shape `scales` implies for values of
    `shape`, or None when no block size gives that many scales."""
    if len(shape) != len(scales) or any(s < 1 for s in scales):
        return None
    blocks = tuple(-(-n // s) for n, s in zip(shape, scales))
    return blocks if scale_shape(shape, blocks) == tuple(scales) else None


# ---- schedule attributes -------------------------------------------------------------------------
def _print_ints(printer: Printer, values: Sequence[int]) -> None:
    printer.print_string("[" + ", ".join(str(v) for v in values) + "]")


def _parse_ints(parser: AttrParser) -> list[int]:
    return parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)


@irdl_attr_definition
class TileAttr(ParametrizedAttribute):
    """`tile NAME [sizes] split_k N`: `#zk.tile<[128, 128, 64], split_k 2>`.

    `loc` is the schedule line the directive came from, so that the `tile` pass can point at it
    when it refuses the directive (ZK0605, ZK0606); like an op's location it is printed (and
    parsed) only as debug info: `#zk.tile<[128, 128, 64], loc("a.zk":15:5)>`."""

    name = "zk.tile"
    sizes: ArrayAttr[IntAttr] = param_def()
    split_k: IntAttr = param_def()
    loc: FileLineColLoc | UnknownLoc = param_def()

    def __init__(self, sizes: Sequence[int], split_k: int = 1,
                 loc: FileLineColLoc | UnknownLoc | None = None):
        super().__init__(ArrayAttr([IntAttr(s) for s in sizes]), IntAttr(split_k),
                         loc or UnknownLoc())

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(s.data for s in self.sizes.data)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            start = parser.pos
            sizes = _parse_ints(parser)
            split = 1
            loc: Attribute = UnknownLoc()
            while parser.parse_optional_punctuation(","):
                if parser.parse_optional_keyword("split_k"):
                    split = parser.parse_integer()
                else:
                    found = parser.parse_optional_location()
                    if found is None:
                        parser.raise_error("expected `split_k` or `loc(...)`")
                    loc = found
            if not all(s >= 1 for s in sizes) or split < 1:  # tiling divides by them
                parser.raise_error("tile sizes and split_k must be >= 1", start, parser.pos)
        return (ArrayAttr([IntAttr(s) for s in sizes]), IntAttr(split), loc)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            _print_ints(printer, self.values)
            if self.split_k.data != 1:
                printer.print_string(f", split_k {self.split_k.data}")
            if printer.print_debuginfo and isinstance(self.loc, FileLineColLoc):
                printer.print_string(", ")
                printer.print_attribute(self.loc)


@irdl_attr_definition
class PrecisionAttr(ParametrizedAttribute):
    """`precision x as DTYPE scale MODE(args)`: `#zk.precision<f8E4M3FN, block [1, 128]>`.

    `option` picks a scale-rounding variant: `rceil` for `mx` (the default is the spec's floor),
    `rne` for `nvfp4` (the default rounds block scales up): `#zk.precision<f8E4M3FN, mx rceil>`."""

    name = "zk.precision"
    dtype: TypeAttribute = param_def()
    mode: StringAttr = param_def()
    args: ArrayAttr[IntAttr] = param_def()
    option: StringAttr = param_def()

    def __init__(self, dtype: TypeAttribute, mode: str, args: Sequence[int] = (),
                 option: str = ""):
        super().__init__(dtype, StringAttr(mode), ArrayAttr([IntAttr(a) for a in args]),
                         StringAttr(option))

    @property
    def mode_args(self) -> tuple[int, ...]:
        return tuple(a.data for a in self.args.data)

    @property
    def element(self) -> dtypes.DType:
        return dtypes.from_xdsl(self.dtype)

    @property
    def scaled(self) -> bool:
        return self.mode.data != "none"

    def verify(self) -> None:
        mode, option = self.mode.data, self.option.data
        _check(mode in SCALE_DTYPES or mode == "none", f"unknown scale mode {mode!r}")
        _check(option in SCALE_OPTIONS.get(mode, ()) or not option,
               f"scale mode {mode!r} has no option {option!r}")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            dtype = parser.parse_type()
            mode, args, option = "none", [], ""
            if parser.parse_optional_punctuation(","):
                mode = parser.parse_identifier()
                if parser.parse_optional_punctuation("[") is not None:
                    args = [parser.parse_integer()]
                    while parser.parse_optional_punctuation(","):
                        args.append(parser.parse_integer())
                    parser.parse_punctuation("]")
                option = parser.parse_optional_identifier() or ""
        return (dtype, StringAttr(mode), ArrayAttr([IntAttr(a) for a in args]),
                StringAttr(option))

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_attribute(self.dtype)
            if self.mode.data != "none":
                printer.print_string(f", {self.mode.data}")
                if self.args.data:
                    printer.print_string(" ")
                    _print_ints(printer, self.mode_args)
                if self.option.data:
                    printer.print_string(f" {self.option.data}")


@irdl_attr_definition
class PlaceAttr(ParametrizedAttribute):
    """`place NAME in hbm stacks(...)` / `in l2`: `#zk.place<hbm, stacks [0, 1]>`, `#zk.place<l2>`."""

    name = "zk.place"
    memory: StringAttr = param_def()
    stacks: ArrayAttr[IntAttr] = param_def()

    def __init__(self, memory: str, stacks: Sequence[int] = ()):
        super().__init__(StringAttr(memory), ArrayAttr([IntAttr(s) for s in stacks]))

    @property
    def stack_ids(self) -> tuple[int, ...]:
        return tuple(s.data for s in self.stacks.data)

    def verify(self) -> None:
        _check(self.memory.data in ("hbm", "l2"), f"unknown memory {self.memory.data!r}")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            memory = parser.parse_identifier()
            stacks = []
            if parser.parse_optional_punctuation(","):
                parser.parse_keyword("stacks")
                stacks = _parse_ints(parser)
        return (StringAttr(memory), ArrayAttr([IntAttr(s) for s in stacks]))

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(self.memory.data)
            if self.stacks.data:
                printer.print_string(", stacks ")
                _print_ints(printer, self.stack_ids)


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
            if isinstance(t, TensorType):  # tiling divides by extents: none may be 0
                _check(all(d >= 1 for d in t.get_shape()),
                       f"tensor dimensions must be >= 1, got {t}")
        ret = block.last_op
        _check(isinstance(ret, ReturnOp), "a kernel must end with zk.return")
        _check(tuple(v.type for v in ret.operands) == tuple(outputs),
               "zk.return operand types do not match the kernel's result types")

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
    name = "zk.return"
    values = var_operand_def(TensorType)
    traits = traits_def(IsTerminator())
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


_CONST = {"FLOAT_ONLY": ClassVar[bool]}  # how a generated subclass declares its class constant


# ---- elementwise ------------------------------------------------------------------------------
class UnaryElementwiseOp(IRDLOperation):
    """Base of the one-operand elementwise ops; result type equals operand type."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input)"
    FLOAT_ONLY: ClassVar[bool] = True

    def __init__(self, input: SSAValue):
        super().__init__(operands=[input], result_types=[input.type])

    def verify_(self) -> None:
        if self.FLOAT_ONLY:
            _check(dtypes.from_xdsl(_elem(self.input)).is_float,
                   f"{self.name} needs a float tensor")


def _unary(op_name: str, doc: str, float_only: bool = True) -> type[UnaryElementwiseOp]:
    cls = type(op_name.split(".")[1].title().replace("_", "") + "Op", (UnaryElementwiseOp,),
               {"name": op_name, "__doc__": doc, "FLOAT_ONLY": float_only, "__annotations__": _CONST})
    return irdl_op_definition(cls)


NegOp = _unary("zk.neg", "-x", float_only=False)
AbsOp = _unary("zk.abs", "|x|", float_only=False)
ExpOp = _unary("zk.exp", "e**x")
LogOp = _unary("zk.log", "natural logarithm")
TanhOp = _unary("zk.tanh", "hyperbolic tangent")
ErfOp = _unary("zk.erf", "the error function")
SqrtOp = _unary("zk.sqrt", "square root")
RsqrtOp = _unary("zk.rsqrt", "1 / sqrt(x)")
SigmoidOp = _unary("zk.sigmoid", "1 / (1 + exp(-x)); composite, expanded by `decompose`")
ReluOp = _unary("zk.relu", "max(x, 0); composite, expanded by `decompose`")
GeluOp = _unary("zk.gelu", "x * Phi(x), exact (erf-based); composite, expanded by `decompose`")
GeluTanhOp = _unary("zk.gelu_tanh", "the tanh approximation of gelu; composite")
SiluOp = _unary("zk.silu", "x * sigmoid(x); composite, expanded by `decompose`")
SoftplusOp = _unary("zk.softplus", "log(1 + exp(x)), stable; composite, expanded by `decompose`")

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
    FLOAT_ONLY: ClassVar[bool] = False

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
        if self.FLOAT_ONLY:
            _check(dtypes.from_xdsl(_elem(self.lhs)).is_float, f"{self.name} needs float tensors")


def _binary(op_name: str, doc: str, float_only: bool = False) -> type[BinaryElementwiseOp]:
    cls = type(op_name.split(".")[1].title() + "Op", (BinaryElementwiseOp,),
               {"name": op_name, "__doc__": doc, "FLOAT_ONLY": float_only, "__annotations__": _CONST})
    return irdl_op_definition(cls)


AddOp = _binary("zk.add", "x + y")
SubOp = _binary("zk.sub", "x - y")
MulOp = _binary("zk.mul", "x * y")
DivOp = _binary("zk.div", "x / y (true division; floats only)", float_only=True)
MaxOp = _binary("zk.max", "elementwise maximum (NaN-propagating)")
MinOp = _binary("zk.min", "elementwise minimum (NaN-propagating)")
PowOp = _binary("zk.pow", "x ** y (floats only)", float_only=True)

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


# ---- low precision (inserted by the `cast` pass) ------------------------------------------------
def quantized_types(shape: Sequence[int], precision: PrecisionAttr,
                    axis: int | None) -> list[TensorType]:
    """The types a tensor of `shape` is stored in when quantised: values, scales (one per block,
    with the tensor's rank) and, for NVFP4, the f32 tensor scale."""
    mode = precision.mode.data
    blocks = scale_blocks(mode, precision.mode_args, shape, axis)
    out = [TensorType(precision.dtype, shape),
           TensorType(dtypes.to_xdsl(dtypes.get(SCALE_DTYPES[mode])), scale_shape(shape, blocks))]
    if mode == "nvfp4":
        out.append(TensorType(dtypes.to_xdsl(dtypes.F32), (1,) * len(shape)))
    return out


@irdl_op_definition
class QuantizeOp(IRDLOperation):
    """Quantise a float tensor as `precision` says: low-precision values and their scales
    (`scale_blocks` gives the layout), plus NVFP4's f32 per-tensor scale.

    `amax` (the largest |x| per scaling group, or of the finite values for `nvfp4`) may come
    from a reduction when the scale groups span more than one tile; without it the op reduces
    its input itself. `axis` is the axis that `mx` and `nvfp4` block along (a matmul's
    contraction axis)."""

    name = "zk.quantize"
    input = operand_def(TensorType)
    amax = opt_operand_def(TensorType)
    precision = prop_def(PrecisionAttr)
    axis = opt_prop_def(IntegerAttr[i64])
    values = result_def(TensorType)
    scales = result_def(TensorType)
    tensor_scale = opt_result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True),
                    AttrSizedResultSegments(as_property=True))
    assembly_format = ("$input (`amax` $amax^)? `as` qualified($precision) (`axis` $axis^)? "
                       "attr-dict `:` type($input) (`,` type($amax)^)? `->` type($values) `,` "
                       "type($scales) (`,` type($tensor_scale)^)?")

    def __init__(self, input: SSAValue, precision: PrecisionAttr, axis: int | None = None,
                 amax: SSAValue | None = None):
        values, scales, *tensor_scale = quantized_types(_shape(input), precision, axis)
        props: dict[str, Attribute] = {"precision": precision}
        if axis is not None:
            props["axis"] = IntegerAttr(axis, 64)
        super().__init__(operands=[input, [amax] if amax else []], properties=props,
                         result_types=[values, scales, tensor_scale])

    @property
    def blocked_axis(self) -> int | None:
        return self.axis.value.data if self.axis is not None else None

    @property
    def blocks(self) -> Shape:
        p = self.precision
        return scale_blocks(p.mode.data, p.mode_args, _shape(self.input), self.blocked_axis)

    def verify_(self) -> None:
        p, shape = self.precision, _shape(self.input)
        mode, rank = p.mode.data, len(shape)
        _check(dtypes.from_xdsl(_elem(self.input)).is_float, "zk.quantize reads floats")
        _check(p.scaled and p.element.is_low_precision and p.element.name != "f8E8M0FNU",
               "zk.quantize makes FP8 or FP4 values with scales (f16/bf16 are plain casts)")
        _check((self.axis is not None) == (mode in AXIS_GROUPS),
               f"scale mode {mode} {'needs' if mode in AXIS_GROUPS else 'takes no'} `axis`")
        if self.axis is not None:
            _check(0 <= self.blocked_axis < rank, "zk.quantize axis out of range")
        if mode == "channel":
            _check(normalize_axis(p.mode_args[0], rank) is not None, "channel axis out of range")
        if mode == "block":
            _check(rank >= 2 and all(a >= 1 for a in p.mode_args)
                   and shape[-2] % p.mode_args[0] == 0 and shape[-1] % p.mode_args[1] == 0,
                   f"block {list(p.mode_args)} does not tile {list(shape)}")
        _check(mode != "nvfp4" or p.element.name == "f4E2M1FN", "nvfp4 makes f4E2M1FN values")
        _check(_shape(self.values) == shape and _elem(self.values) == p.dtype,
               "zk.quantize values keep the shape and take the precision's dtype")
        want = scale_shape(shape, self.blocks)
        _check(_shape(self.scales) == want, f"{mode} scales of {list(shape)} have the shape "
               f"{list(want)}, not {list(_shape(self.scales))}")
        _check(dtypes.from_xdsl(_elem(self.scales)).name == SCALE_DTYPES[mode],
               f"{mode} scales are {SCALE_DTYPES[mode]}")
        ones = (1,) * rank
        if mode == "nvfp4":
            _check(self.tensor_scale is not None and _shape(self.tensor_scale) == ones
                   and _elem(self.tensor_scale) == dtypes.to_xdsl(dtypes.F32),
                   f"nvfp4 also yields an f32 tensor scale of shape {list(ones)}")
        else:
            _check(self.tensor_scale is None, f"only nvfp4 has a tensor scale, not {mode}")
        if self.amax is not None:
            _check(mode in AMAX_MODES, f"scale mode {mode} takes no amax")
            _check(_elem(self.amax) == _elem(self.input), "amax has the input's element type")
            _check(_shape(self.amax) == (ones if mode == "nvfp4" else want),
                   "amax has one entry per scale (one for nvfp4)")


@irdl_op_definition
class DequantizeOp(IRDLOperation):
    """values x scales (x tensor scale), each scale repeated over its block, computed exactly
    and rounded once into the result type. The blocks follow from the shapes: a scale tensor
    of the values' rank with s entries along a dimension of n gives blocks of ceil(n / s)."""

    name = "zk.dequantize"
    values = operand_def(TensorType)
    scales = var_operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = ("$values `scales` `(` $scales `)` attr-dict `:` type($values) `,` "
                       "type($scales) `->` type($result)")

    def __init__(self, values: SSAValue, scales: Sequence[SSAValue], element_type: Attribute):
        super().__init__(operands=[values, list(scales)],
                         result_types=[TensorType(element_type, _shape(values))])

    def verify_(self) -> None:
        shape = _shape(self.values)
        _check(1 <= len(self.scales) <= 2, "zk.dequantize takes one or two scale tensors")
        _check(_shape(self.result) == shape, "zk.dequantize keeps the shape")
        for v in (self.values, self.result, *self.scales):
            _check(dtypes.from_xdsl(_elem(v)).is_float, "zk.dequantize works on floats")
        for s in self.scales:
            _check(blocks_of(shape, _shape(s)) is not None,
                   f"scales of shape {list(_shape(s))} do not block values of shape "
                   f"{list(shape)}")


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
    FLOAT_ONLY: ClassVar[bool] = False

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
        self.verify_dtypes()

    def verify_dtypes(self) -> None:
        _check(_elem(self.result) == _elem(self.input), f"{self.name} keeps the element type")
        if self.FLOAT_ONLY:
            _check(dtypes.from_xdsl(_elem(self.input)).is_float, f"{self.name} needs floats")


def _reduce(op_name: str, doc: str, float_only: bool = False) -> type[ReduceOp]:
    name = "Reduce" + op_name.split("_")[-1].title() + "Op"
    return irdl_op_definition(type(name, (ReduceOp,), {"name": op_name, "__doc__": doc,
                                                       "FLOAT_ONLY": float_only, "__annotations__": _CONST}))


ReduceSumOp = _reduce("zk.reduce_sum", "sum over axes (accumulated in f32 for floats)")
ReduceMaxOp = _reduce("zk.reduce_max", "maximum over axes")
ReduceMinOp = _reduce("zk.reduce_min", "minimum over axes")
ReduceMeanOp = _reduce("zk.reduce_mean", "mean over axes (floats only)", float_only=True)
LogSumExpOp = _reduce("zk.logsumexp", "log(sum(exp(x))) over axes, stable; composite",
                      float_only=True)

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
        _check(_prod(a) == _prod(b), f"zk.reshape from {list(a)} to {list(b)} changes the size")
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
    if not isinstance(op, ELEMENTWISE_OPS):
        return None
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
                found.append(owner)
            elif isinstance(owner, ELEMENTWISE_OPS):
                stack.append(owner)
    return found[0] if len({id(m) for m in found}) == 1 else None


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


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


ZK = Dialect(
    "zk",
    [KernelOp, ReturnOp, ConstantOp, IotaOp, *UNARY_OPS.values(), *BINARY_OPS.values(), CompareOp,
     SelectOp, CastOp, BitcastOp, QuantizeOp, DequantizeOp, MatmulOp, *REDUCE_OPS.values(), LogSumExpOp,
     ArgmaxOp, SoftmaxOp, LogSoftmaxOp, LayerNormOp, RMSNormOp, BroadcastOp, TransposeOp,
     ReshapeOp, SliceOp, ConcatOp],
    [TileAttr, PrecisionAttr, PlaceAttr],
)
