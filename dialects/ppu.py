"""The `ppu` dialect: the machine-level program of one kernel on the PPU model.

Global tensors are memrefs in HBM (`#ppu.space<hbm>`); a `ppu.launch` maps a grid of tiles onto
the compute units (tile t runs on CU t mod `cus`, in wave t div `cus`); inside it, buffers live in
the CU's SRAM (`ppu.alloc` at a byte offset, `depth` slots for multi-buffering), DMA moves tiles
between HBM and SRAM asynchronously (a token, then `ppu.wait`), the tensor engine multiplies
(`ppu.mma`, accumulating in place, with scaled low-precision operands), and the vector engine
does elementwise work, reductions, quantisation, fills and iotas. All compute ops write their result into an explicit destination buffer.

Tile addressing in `ppu.dma_load` / `ppu.dma_store` is the `tile` dialect's (see tile.py): tile
index times tile size inside a window `base`/`bound`, edge tiles padded on load and clipped on
store.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    Float64Type,
    FloatAttr,
    FunctionType,
    IndexType,
    IntAttr,
    IntegerAttr,
    MemRefType,
    StringAttr,
    SymbolNameConstraint,
    UnitAttr,
    i64,
)
from xdsl.ir import (
    Attribute,
    Dialect,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    param_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import IsTerminator, SymbolOpInterface
from xdsl.utils.exceptions import VerifyException
from zhenwu_cc.dialects import dtypes
from zhenwu_cc.dialects.formats import Number, parse_kernel_arguments, print_kernel_arguments
from zhenwu_cc.dialects.tile import window
from zhenwu_cc.dialects.zk import PrecisionAttr

SPACES = ("hbm", "l2", "sram")
# On a `ppu.kernel`: the target (name or file) `lower-ppu` lowered it for; the executor checks
# the kernel's SRAM plan against that target's SRAM (ZK0611).
TARGET_ATTR = "ppu.target"

# Vector-engine functions of `ppu.vmap` by arity, and which of them are transcendental (they run
# at the target's transcendental rate in the cost model).
VMAP_UNARY = ("neg", "abs", "exp", "log", "tanh", "erf", "sqrt", "rsqrt", "copy", "cast",
              "bitcast")
VMAP_BINARY = ("add", "sub", "mul", "div", "max", "min", "pow", "eq", "ne", "lt", "le", "gt", "ge")
VMAP_TERNARY = ("select",)
TRANSCENDENTAL = frozenset({"exp", "log", "tanh", "erf", "sqrt", "rsqrt", "pow"})
VREDUCE_FNS = ("sum", "max", "min", "argmax")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise VerifyException(msg)


def _ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _mshape(v: SSAValue) -> tuple[int, ...]:
    assert isinstance(v.type, MemRefType)
    return tuple(v.type.get_shape())


def space_of(v: SSAValue) -> str:
    t = v.type
    assert isinstance(t, MemRefType) and isinstance(t.memory_space, SpaceAttr)
    return t.memory_space.space.data


@irdl_attr_definition
class SpaceAttr(ParametrizedAttribute):
    """`#ppu.space<hbm|l2|sram>`: where a memref lives."""

    name = "ppu.space"
    space: StringAttr = param_def()

    def __init__(self, space: str):
        super().__init__(StringAttr(space))

    def verify(self) -> None:
        _check(self.space.data in SPACES, f"unknown memory space {self.space.data!r}")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            return (StringAttr(parser.parse_identifier()),)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(self.space.data)


@irdl_attr_definition
class HbmAttr(ParametrizedAttribute):
    """Where a global tensor lives (the `place-hbm` pass decides):
    `#ppu.hbm<stacks [0, 1, 2, 3, 4, 5], base 0x0, size 16777216, interleave 4096>`.

    `base` is the byte offset on each of its stacks (the same on every one) and `size` the
    tensor's packed bytes; they go round the stacks `interleave` bytes at a time (`interleave 0`:
    contiguous on its one stack). A trailing `, l2` marks a tensor also held in L2's persisting
    region (`place NAME in l2`)."""

    name = "ppu.hbm"
    stacks: ArrayAttr[IntAttr] = param_def()
    base: IntAttr = param_def()
    size: IntAttr = param_def()
    interleave: IntAttr = param_def()
    l2: IntAttr = param_def()

    def __init__(self, stacks: Sequence[int], base: int, size: int, interleave: int,
                 l2: bool = False):
        super().__init__(ArrayAttr([IntAttr(s) for s in stacks]), IntAttr(base), IntAttr(size),
                         IntAttr(interleave), IntAttr(int(l2)))

    @property
    def stack_ids(self) -> tuple[int, ...]:
        return tuple(s.data for s in self.stacks.data)

    @property
    def l2_resident(self) -> bool:
        return bool(self.l2.data)

    @property
    def per_stack_bytes(self) -> int:
        """The bytes the tensor occupies from `base` on each of its stacks (its last stripe may
        fill only some)."""
        size, g = self.size.data, self.interleave.data
        if g == 0:
            return size
        stripe = g * len(self.stacks.data)
        return -(-size // stripe) * g

    def verify(self) -> None:
        ids = self.stack_ids
        _check(bool(ids) and len(set(ids)) == len(ids) and min(ids) >= 0,
               "ppu.hbm needs distinct, non-negative stack ids")
        _check(self.base.data >= 0 and self.size.data >= 0 and self.interleave.data >= 0,
               "ppu.hbm base, size and interleave are non-negative")
        _check(self.interleave.data > 0 or len(ids) == 1,
               "a contiguous region (interleave 0) lies on one stack")
        _check(self.l2.data in (0, 1), "the l2 flag is 0 or 1")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            parser.parse_keyword("stacks")
            stacks = parser.parse_comma_separated_list(parser.Delimiter.SQUARE,
                                                       parser.parse_integer)
            fields = []
            for word in ("base", "size", "interleave"):
                parser.parse_punctuation(",")
                parser.parse_keyword(word)
                fields.append(parser.parse_integer(allow_negative=False))
            l2 = parser.parse_optional_punctuation(",") is not None
            if l2:
                parser.parse_keyword("l2")
        return (ArrayAttr([IntAttr(s) for s in stacks]), *(IntAttr(f) for f in fields),
                IntAttr(int(l2)))

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(f"stacks [{', '.join(map(str, self.stack_ids))}], "
                                 f"base {self.base.data:#x}, size {self.size.data}, "
                                 f"interleave {self.interleave.data}"
                                 + (", l2" if self.l2_resident else ""))


@irdl_attr_definition
class TokenType(ParametrizedAttribute, TypeAttribute):
    """`!ppu.token`: completion of an asynchronous DMA."""

    name = "ppu.token"


def memref(element_type: Attribute, shape: Sequence[int], space: str) -> MemRefType:
    return MemRefType(element_type, list(shape), memory_space=SpaceAttr(space))


def _space_is(v: SSAValue, *spaces: str) -> bool:
    t = v.type
    return (isinstance(t, MemRefType) and isinstance(t.memory_space, SpaceAttr)
            and t.memory_space.space.data in spaces)


# ---- kernel structure ------------------------------------------------------------------------
@irdl_op_definition
class KernelOp(IRDLOperation):
    """A kernel as the machine sees it: input and output buffers in HBM, no results.

    `ppu.kernel @gemm(%a: memref<..., #ppu.space<hbm>>, ...) -> (%c: memref<...>) {...}`"""

    name = "ppu.kernel"
    sym_name = prop_def(SymbolNameConstraint())
    function_type = prop_def(FunctionType)
    num_outputs = prop_def(IntegerAttr[i64])
    arg_attrs = opt_prop_def(ArrayAttr[DictionaryAttr])
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface())

    def __init__(self, name: str, input_types: Sequence[Attribute],
                 output_types: Sequence[Attribute], body: Region,
                 arg_attrs: Sequence[dict[str, Attribute]] | None = None,
                 attributes: dict[str, Attribute] | None = None):
        props: dict[str, Attribute] = {
            "sym_name": StringAttr(name),
            "function_type": FunctionType.from_lists([*input_types, *output_types], []),
            "num_outputs": IntegerAttr(len(output_types), 64),
        }
        if arg_attrs is not None and any(arg_attrs):
            props["arg_attrs"] = ArrayAttr([DictionaryAttr(a) for a in arg_attrs])
        super().__init__(properties=props, regions=[body], attributes=attributes or {})

    @property
    def n_outputs(self) -> int:
        return self.num_outputs.value.data

    @property
    def inputs(self) -> Sequence[SSAValue]:
        args = self.body.block.args
        return args[: len(args) - self.n_outputs]

    @property
    def outputs(self) -> Sequence[SSAValue]:
        args = self.body.block.args
        return args[len(args) - self.n_outputs:]

    def arg_attr(self, index: int, key: str) -> Attribute | None:
        if self.arg_attrs is None:
            return None
        return self.arg_attrs.data[index].data.get(key)

    def verify_(self) -> None:
        args = self.body.block.args
        _check(tuple(a.type for a in args) == tuple(self.function_type.inputs.data),
               "block arguments must match the kernel's buffer types")
        _check(all(_space_is(a, "hbm", "l2") for a in args), "kernel buffers live in HBM or L2")
        _check(0 <= self.n_outputs <= len(args), "num_outputs out of range")
        _check(isinstance(self.body.block.last_op, ReturnOp), "a ppu.kernel ends with ppu.return")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        attrs = self.arg_attrs.data if self.arg_attrs else [None] * len(self.body.block.args)
        args = self.body.block.args
        n_in = len(args) - self.n_outputs
        print_kernel_arguments(printer, args[:n_in], attrs[:n_in])
        printer.print_string(" -> ")
        print_kernel_arguments(printer, args[n_in:], attrs[n_in:])
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> KernelOp:
        name = parser.parse_symbol_name().data

        ins = parse_kernel_arguments(parser)
        parser.parse_punctuation("->")
        outs = parse_kernel_arguments(parser)
        attributes = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region([a for a, _ in ins + outs])
        return cls(name, [a.type for a, _ in ins], [a.type for a, _ in outs], body,
                   arg_attrs=[attrs for _, attrs in ins + outs],
                   attributes=attributes.data if attributes else None)


@irdl_op_definition
class ReturnOp(IRDLOperation):
    name = "ppu.return"
    traits = traits_def(IsTerminator())
    assembly_format = "attr-dict"


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Ends the body of a ppu.launch or ppu.loop."""

    name = "ppu.yield"
    traits = traits_def(IsTerminator())
    assembly_format = "attr-dict"


@irdl_op_definition
class GlobalOp(IRDLOperation):
    """An intermediate tensor materialised in HBM (placement attributes say where)."""

    name = "ppu.global"
    result = result_def(MemRefType)
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, type: MemRefType):
        super().__init__(result_types=[type])

    def verify_(self) -> None:
        _check(_space_is(self.result, "hbm", "l2"), "ppu.global lives in HBM or L2")


@irdl_op_definition
class ViewOp(IRDLOperation):
    """The same global bytes seen with another (row-major) shape: a reshape without copies."""

    name = "ppu.view"
    source = operand_def(MemRefType)
    result = result_def(MemRefType)
    assembly_format = "$source attr-dict `:` type($source) `->` type($result)"

    def __init__(self, source: SSAValue, shape: Sequence[int]):
        t = source.type
        super().__init__(operands=[source],
                         result_types=[MemRefType(t.element_type, list(shape),
                                                  memory_space=t.memory_space)])

    def verify_(self) -> None:
        a, b = _mshape(self.source), _mshape(self.result)
        _check(_prod(a) == _prod(b), "ppu.view keeps the element count")
        _check(self.source.type.element_type == self.result.type.element_type
               and self.source.type.memory_space == self.result.type.memory_space,
               "ppu.view keeps the element type and memory space")


@irdl_op_definition
class LaunchOp(IRDLOperation):
    """Run the body once per tile of `shape`, spread over `cus` compute units in waves.

    `ppu.launch [16, 16] (%i, %j) cus 128 role matmul { ... ppu.yield }`"""

    name = "ppu.launch"
    shape = prop_def(DenseArrayBase.constr(i64))
    cus = prop_def(IntegerAttr[i64])
    role = prop_def(StringAttr)
    body = region_def("single_block")

    def __init__(self, shape: Sequence[int], cus: int, role: str, body: Region):
        super().__init__(properties={"shape": _ints(shape), "cus": IntegerAttr(cus, 64),
                                     "role": StringAttr(role)}, regions=[body])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.shape.get_values())

    @property
    def tiles(self) -> int:
        return _prod(self.grid_shape)

    @property
    def compute_units(self) -> int:
        return self.cus.value.data

    @property
    def waves(self) -> int:
        return -(-self.tiles // self.compute_units)

    def verify_(self) -> None:
        args = self.body.block.args
        _check(len(args) == len(self.grid_shape) and all(isinstance(a.type, IndexType)
                                                          for a in args),
               "ppu.launch takes one index argument per grid dimension")
        _check(all(g >= 1 for g in self.grid_shape) and self.compute_units >= 1,
               "grid dimensions and cus must be positive")
        _check(isinstance(self.body.block.last_op, YieldOp), "ppu.launch body ends in ppu.yield")

    def print(self, printer: Printer) -> None:
        printer.print_string(" [" + ", ".join(str(g) for g in self.grid_shape) + "] (")
        printer.print_list(self.body.block.args, printer.print_ssa_value)
        printer.print_string(f") cus {self.compute_units} role {self.role.data}")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> LaunchOp:
        shape = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
        idx = parser.parse_comma_separated_list(
            parser.Delimiter.PAREN, lambda: parser.parse_argument(expect_type=False))
        parser.parse_keyword("cus")
        cus = parser.parse_integer()
        parser.parse_keyword("role")
        role = parser.parse_identifier()
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region([a.resolve(IndexType()) for a in idx])
        op = cls(shape, cus, role, body)
        if attrs:
            op.attributes |= attrs.data
        return op


@irdl_op_definition
class LoopOp(IRDLOperation):
    """`for k in range(trips)`: the steps of a reduction, in order (state lives in buffers)."""

    name = "ppu.loop"
    trips = prop_def(IntegerAttr[i64])
    body = region_def("single_block")

    def __init__(self, trips: int, body: Region):
        super().__init__(properties={"trips": IntegerAttr(trips, 64)}, regions=[body])

    @property
    def trip_count(self) -> int:
        return self.trips.value.data

    @property
    def induction_var(self) -> SSAValue:
        return self.body.block.args[0]

    def verify_(self) -> None:
        args = self.body.block.args
        _check(len(args) == 1 and isinstance(args[0].type, IndexType),
               "ppu.loop takes one index argument")
        _check(self.trip_count >= 1, "ppu.loop runs at least once")
        _check(isinstance(self.body.block.last_op, YieldOp), "ppu.loop body ends in ppu.yield")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_ssa_value(self.induction_var)
        printer.print_string(f" = 0 to {self.trip_count}")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> LoopOp:
        iv = parser.parse_argument(expect_type=False)
        parser.parse_punctuation("=")
        if parser.parse_integer() != 0:
            parser.raise_error("ppu.loop starts at 0")
        parser.parse_keyword("to")
        trips = parser.parse_integer()
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region([iv.resolve(IndexType())])
        op = cls(trips, body)
        if attrs:
            op.attributes |= attrs.data
        return op


# ---- on-chip memory ----------------------------------------------------------------------------
@irdl_op_definition
class AllocOp(IRDLOperation):
    """An SRAM buffer at a byte `offset` of the CU's SRAM, with `depth` slots.

    With depth > 1 the memref's leading dimension is the slot (`ppu.slot` picks one); a
    multi-buffered load lets the DMA of step k+1 run while step k computes."""

    name = "ppu.alloc"
    offset = prop_def(IntegerAttr[i64])
    depth = prop_def(IntegerAttr[i64])
    result = result_def(MemRefType)
    assembly_format = "`offset` $offset `depth` $depth attr-dict `:` type($result)"

    def __init__(self, type: MemRefType, offset: int, depth: int = 1):
        super().__init__(properties={"offset": IntegerAttr(offset, 64),
                                     "depth": IntegerAttr(depth, 64)}, result_types=[type])

    @property
    def byte_offset(self) -> int:
        return self.offset.value.data

    @property
    def slots(self) -> int:
        return self.depth.value.data

    @property
    def nbytes(self) -> int:
        t = self.result.type
        return dtypes.from_xdsl(t.element_type).nbytes(_prod(t.get_shape()))

    def verify_(self) -> None:
        _check(_space_is(self.result, "sram"), "ppu.alloc allocates SRAM")
        _check(self.byte_offset >= 0 and self.slots >= 1, "offset >= 0 and depth >= 1")
        if self.slots > 1:
            shape = _mshape(self.result)
            _check(len(shape) >= 1 and shape[0] == self.slots,
                   "a multi-buffered alloc's leading dimension is its depth")


@irdl_op_definition
class SlotOp(IRDLOperation):
    """Slot `index mod depth` of a multi-buffered allocation."""

    name = "ppu.slot"
    buffer = operand_def(MemRefType)
    index = operand_def(IndexType)
    result = result_def(MemRefType)
    assembly_format = "$buffer `[` $index `]` attr-dict `:` type($buffer) `->` type($result)"

    def __init__(self, buffer: SSAValue, index: SSAValue):
        t = buffer.type
        super().__init__(operands=[buffer, index],
                         result_types=[MemRefType(t.element_type, list(t.get_shape())[1:],
                                                  memory_space=t.memory_space)])

    def verify_(self) -> None:
        _check(isinstance(self.buffer.owner, AllocOp) and self.buffer.owner.slots > 1,
               "ppu.slot selects a slot of a multi-buffered ppu.alloc")
        _check(_mshape(self.result) == _mshape(self.buffer)[1:], "ppu.slot drops the slot dim")


# ---- data movement -----------------------------------------------------------------------------
class _DmaOp(IRDLOperation):
    @property
    def tile_sizes(self) -> tuple[int, ...]:
        return tuple(self.sizes.get_values())

    @property
    def window(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return window(_mshape(self.global_value),
                      tuple(self.base.get_values()) if self.base else None,
                      tuple(self.bound.get_values()) if self.bound else None)

    def verify_(self) -> None:
        shape = _mshape(self.global_value)
        _check(_space_is(self.global_value, "hbm", "l2"), f"{self.name}: global side is HBM/L2")
        _check(_space_is(self.local_value, "sram"), f"{self.name}: local side is SRAM")
        _check(len(self.indices) == len(shape) == len(self.tile_sizes),
               f"{self.name} needs one index and tile size per dimension")
        _check(_mshape(self.local_value) == self.tile_sizes,
               f"{self.name}: the SRAM buffer must have the tile's shape {list(self.tile_sizes)}")
        b, e = self.window
        _check(all(0 <= o and 1 <= n and o + n <= d for o, n, d in zip(b, e, shape)),
               f"{self.name}: window exceeds the tensor")
        _check(self.global_value.type.element_type == self.local_value.type.element_type,
               f"{self.name} keeps the element type")


def _window_props(sizes: Sequence[int], shape: Sequence[int], base: Sequence[int] | None,
                  bound: Sequence[int] | None) -> dict[str, Attribute]:
    props: dict[str, Attribute] = {"sizes": _ints(sizes)}
    if base is not None and any(base):
        props["base"] = _ints(base)
    if bound is not None and tuple(bound) != window(shape, base, None)[1]:
        props["bound"] = _ints(bound)
    return props


@irdl_op_definition
class DmaLoadOp(_DmaOp):
    """Start copying the tile at `indices` of a global buffer into SRAM (edges padded)."""

    name = "ppu.dma_load"
    custom_directives = (Number,)
    source = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    dest = operand_def(MemRefType)
    sizes = prop_def(DenseArrayBase.constr(i64))
    base = opt_prop_def(DenseArrayBase.constr(i64))
    bound = opt_prop_def(DenseArrayBase.constr(i64))
    pad = opt_prop_def(FloatAttr[Float64Type])
    token = result_def(TokenType)
    assembly_format = ("$source `[` $indices `]` `tile` $sizes (`base` $base^)? (`bound` $bound^)?"
                       " (`pad` custom<Number>($pad)^)? `->` $dest attr-dict `:` type($source) `,` type($dest)")

    def __init__(self, source: SSAValue, indices: Sequence[SSAValue], dest: SSAValue,
                 base: Sequence[int] | None = None, bound: Sequence[int] | None = None,
                 pad: float = 0.0):
        props = _window_props(_mshape(dest), _mshape(source), base, bound)
        if pad != 0.0:
            props["pad"] = FloatAttr(pad, 64)
        super().__init__(operands=[source, list(indices), dest], properties=props,
                         result_types=[TokenType()])

    global_value = property(lambda self: self.source)
    local_value = property(lambda self: self.dest)

    @property
    def pad_value(self) -> float:
        return self.pad.value.data if self.pad else 0.0


@irdl_op_definition
class DmaStoreOp(_DmaOp):
    """Start copying an SRAM tile to `indices` of a global buffer (clipped at edges)."""

    name = "ppu.dma_store"
    source = operand_def(MemRefType)
    dest = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    sizes = prop_def(DenseArrayBase.constr(i64))
    base = opt_prop_def(DenseArrayBase.constr(i64))
    bound = opt_prop_def(DenseArrayBase.constr(i64))
    token = result_def(TokenType)
    assembly_format = ("$source `->` $dest `[` $indices `]` `tile` $sizes (`base` $base^)? "
                       "(`bound` $bound^)? attr-dict `:` type($source) `,` type($dest)")

    def __init__(self, source: SSAValue, dest: SSAValue, indices: Sequence[SSAValue],
                 base: Sequence[int] | None = None, bound: Sequence[int] | None = None):
        props = _window_props(_mshape(source), _mshape(dest), base, bound)
        super().__init__(operands=[source, dest, list(indices)], properties=props,
                         result_types=[TokenType()])

    global_value = property(lambda self: self.dest)
    local_value = property(lambda self: self.source)


@irdl_op_definition
class WaitOp(IRDLOperation):
    """Block until the DMAs behind the tokens have completed."""

    name = "ppu.wait"
    tokens = var_operand_def(TokenType)
    assembly_format = "$tokens attr-dict"

    def __init__(self, tokens: Sequence[SSAValue]):
        super().__init__(operands=[list(tokens)])


# ---- compute -----------------------------------------------------------------------------------
def _sram(*values: SSAValue) -> None:
    _check(all(_space_is(v, "sram") for v in values), "compute operands live in SRAM")


@irdl_op_definition
class MmaOp(IRDLOperation):
    """Tensor engine: `acc += a @ b` (batched over leading dims), accumulating in acc's dtype.

    Scaled low-precision operands and `fp8_fast` as in `tile.mma`: each scale has the operand's
    rank and one entry per block."""

    name = "ppu.mma"
    lhs = operand_def(MemRefType)
    rhs = operand_def(MemRefType)
    acc = operand_def(MemRefType)
    lhs_scales = var_operand_def(MemRefType)
    rhs_scales = var_operand_def(MemRefType)
    fp8_fast = opt_prop_def(UnitAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = ("$lhs `,` $rhs `,` $acc (`lhs_scales` `(` $lhs_scales^ `)`)? "
                       "(`rhs_scales` `(` $rhs_scales^ `)`)? (`fp8_fast` $fp8_fast^)? "
                       "attr-dict `:` "
                       "type($lhs) `,` type($rhs) `,` type($acc) "
                       "(`lhs_scales` `(` type($lhs_scales)^ `)`)? "
                       "(`rhs_scales` `(` type($rhs_scales)^ `)`)?")

    def __init__(self, lhs: SSAValue, rhs: SSAValue, acc: SSAValue,
                 lhs_scales: Sequence[SSAValue] = (), rhs_scales: Sequence[SSAValue] = (),
                 fp8_fast: bool = False):
        super().__init__(operands=[lhs, rhs, acc, list(lhs_scales), list(rhs_scales)],
                         properties={"fp8_fast": UnitAttr()} if fp8_fast else {})

    def verify_(self) -> None:
        from zhenwu_cc.dialects.tile import verify_scales
        from zhenwu_cc.dialects.zk import broadcast_shapes, matmul_shape

        _sram(self.lhs, self.rhs, self.acc, *self.lhs_scales, *self.rhs_scales)
        shape = matmul_shape(_mshape(self.lhs), _mshape(self.rhs))
        _check(shape is not None and broadcast_shapes(shape, _mshape(self.acc)) == _mshape(self.acc),
               "ppu.mma shapes do not accumulate into the accumulator")
        _check(self.lhs.type.element_type == self.rhs.type.element_type,
               "ppu.mma operands share an element type")
        verify_scales(self.name, self.lhs, self.lhs_scales)
        verify_scales(self.name, self.rhs, self.rhs_scales)


@irdl_op_definition
class VQuantizeOp(IRDLOperation):
    """Vector engine: quantise a tile into value and scale buffers, as `tile.quantize`.

    `ppu.vquantize %x (amax %m)? as #zk.precision<...> (axis N)? -> %q, %s (, %t)?`"""

    name = "ppu.vquantize"
    input = operand_def(MemRefType)
    amax = opt_operand_def(MemRefType)
    outs = var_operand_def(MemRefType)
    precision = prop_def(PrecisionAttr)
    axis = opt_prop_def(IntegerAttr[i64])
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = ("$input (`amax` $amax^)? `as` qualified($precision) (`axis` $axis^)? `->` "
                       "$outs attr-dict `:` type($input) (`,` type($amax)^)? `->` type($outs)")

    def __init__(self, input: SSAValue, amax: SSAValue | None, outs: Sequence[SSAValue],
                 precision: PrecisionAttr, axis: int | None):
        props: dict[str, Attribute] = {"precision": precision}
        if axis is not None:
            props["axis"] = IntegerAttr(axis, 64)
        super().__init__(operands=[input, [amax] if amax else [], list(outs)], properties=props)

    @property
    def blocked_axis(self) -> int | None:
        return self.axis.value.data if self.axis is not None else None

    def verify_(self) -> None:
        from zhenwu_cc.dialects.zk import blocks_of

        _sram(self.input, *self.outs, *([self.amax] if self.amax else []))
        mode = self.precision.mode.data
        _check(len(self.outs) == (3 if mode == "nvfp4" else 2),
               "ppu.vquantize writes values and scales (and nvfp4's tensor scale)")
        _check(_mshape(self.outs[0]) == _mshape(self.input)
               and self.outs[0].type.element_type == self.precision.dtype,
               "ppu.vquantize values keep the tile's shape and take the precision's dtype")
        _check(blocks_of(_mshape(self.input), _mshape(self.outs[1])) is not None,
               "ppu.vquantize scales must block the tile")


@irdl_op_definition
class VMapOp(IRDLOperation):
    """Vector engine, elementwise: `out = fn(ins...)` with numpy broadcasting of the inputs.

    `fn` is one of VMAP_UNARY / VMAP_BINARY / VMAP_TERNARY; comparisons write i1, `cast`
    converts to the destination's element type (saturating), `select` takes (cond, a, b)."""

    name = "ppu.vmap"
    fn = prop_def(StringAttr)
    ins = var_operand_def(MemRefType)
    out = operand_def(MemRefType)
    assembly_format = "$fn `(` $ins `)` `->` $out attr-dict `:` `(` type($ins) `)` `->` type($out)"

    def __init__(self, fn: str, ins: Sequence[SSAValue], out: SSAValue):
        super().__init__(operands=[list(ins), out], properties={"fn": StringAttr(fn)})

    @property
    def function(self) -> str:
        return self.fn.data

    def verify_(self) -> None:
        from zhenwu_cc.dialects.zk import broadcast_shapes

        _sram(*self.ins, self.out)
        arity = {**{f: 1 for f in VMAP_UNARY}, **{f: 2 for f in VMAP_BINARY},
                 **{f: 3 for f in VMAP_TERNARY}}
        _check(self.function in arity, f"unknown vector function {self.function!r}")
        _check(len(self.ins) == arity[self.function],
               f"ppu.vmap {self.function} takes {arity[self.function]} inputs")
        out = _mshape(self.out)
        _check(broadcast_shapes(*[_mshape(v) for v in self.ins], out) == out,
               "ppu.vmap inputs must broadcast to the destination")


@irdl_op_definition
class VReduceOp(IRDLOperation):
    """Vector engine: reduce `axes` of the input into the destination (dims kept as 1)."""

    name = "ppu.vreduce"
    fn = prop_def(StringAttr)
    input = operand_def(MemRefType)
    axes = prop_def(DenseArrayBase.constr(i64))
    out = operand_def(MemRefType)
    assembly_format = ("$fn $input `axes` $axes `->` $out attr-dict `:` type($input) `->` "
                       "type($out)")

    def __init__(self, fn: str, input: SSAValue, axes: Sequence[int], out: SSAValue):
        super().__init__(operands=[input, out],
                         properties={"fn": StringAttr(fn), "axes": _ints(axes)})

    @property
    def function(self) -> str:
        return self.fn.data

    @property
    def axis_list(self) -> tuple[int, ...]:
        return tuple(self.axes.get_values())

    def verify_(self) -> None:
        _sram(self.input, self.out)
        _check(self.function in VREDUCE_FNS, f"unknown reduction {self.function!r}")
        shape = _mshape(self.input)
        expect = tuple(1 if i in self.axis_list else d for i, d in enumerate(shape))
        _check(_mshape(self.out) == expect, f"ppu.vreduce destination must be {list(expect)}")


@irdl_op_definition
class VTransposeOp(IRDLOperation):
    """Vector engine: permute a tile's dimensions into the destination."""

    name = "ppu.vtranspose"
    input = operand_def(MemRefType)
    perm = prop_def(DenseArrayBase.constr(i64))
    out = operand_def(MemRefType)
    assembly_format = "$input `perm` $perm `->` $out attr-dict `:` type($input) `->` type($out)"

    def __init__(self, input: SSAValue, perm: Sequence[int], out: SSAValue):
        super().__init__(operands=[input, out], properties={"perm": _ints(perm)})

    def verify_(self) -> None:
        _sram(self.input, self.out)
        perm = tuple(self.perm.get_values())
        shape = _mshape(self.input)
        _check(sorted(perm) == list(range(len(shape))), "perm is not a permutation")
        _check(tuple(shape[p] for p in perm) == _mshape(self.out), "ppu.vtranspose shape")


@irdl_op_definition
class FillOp(IRDLOperation):
    """Vector engine: set every element of the destination to `value`."""

    name = "ppu.fill"
    custom_directives = (Number,)
    value = prop_def(FloatAttr[Float64Type])
    out = operand_def(MemRefType)
    assembly_format = "custom<Number>($value) `->` $out attr-dict `:` type($out)"

    def __init__(self, value: float, out: SSAValue):
        super().__init__(operands=[out], properties={"value": FloatAttr(float(value), 64)})

    @property
    def number(self) -> float:
        return self.value.value.data

    def verify_(self) -> None:
        _sram(self.out)


@irdl_op_definition
class VIotaOp(IRDLOperation):
    """Vector engine: global indices along `axis` for the tile at `indices`."""

    name = "ppu.viota"
    indices = var_operand_def(IndexType)
    sizes = prop_def(DenseArrayBase.constr(i64))
    axis = prop_def(IntegerAttr[i64])
    out = operand_def(MemRefType)
    assembly_format = ("`[` $indices `]` `tile` $sizes `axis` $axis `->` $out attr-dict `:` "
                       "type($out)")

    def __init__(self, indices: Sequence[SSAValue], sizes: Sequence[int], axis: int,
                 out: SSAValue):
        super().__init__(operands=[list(indices), out],
                         properties={"sizes": _ints(sizes), "axis": IntegerAttr(axis, 64)})

    def verify_(self) -> None:
        _sram(self.out)
        _check(_mshape(self.out) == tuple(self.sizes.get_values()), "ppu.viota shape")


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


PPU = Dialect(
    "ppu",
    [KernelOp, ReturnOp, YieldOp, GlobalOp, ViewOp, LaunchOp, LoopOp, AllocOp, SlotOp, DmaLoadOp,
     DmaStoreOp, WaitOp, MmaOp, VQuantizeOp, VMapOp, VReduceOp, VTransposeOp, FillOp, VIotaOp],
    [SpaceAttr, HbmAttr, TokenType],
)
