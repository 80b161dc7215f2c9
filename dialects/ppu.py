"""The `ppu` dialect: the machine-level program of one kernel on the PPU model.

Global tensors are memrefs in HBM (`#ppu.space<hbm>`); a `ppu.launch` maps a grid of tiles onto
the compute units (tile t runs on CU t mod `cus`, in wave t div `cus`); inside it, buffers live in
the CU's SRAM (`ppu.alloc` at a byte offset, `depth` slots for multi-buffering), DMA moves tiles
between HBM and SRAM asynchronously (a token, then `ppu.wait`), the tensor engine multiplies
(`ppu.mma`, accumulating in place, with scaled low-precision operands), and the vector engine
does elementwise work, reductions, quantisation, fills and iotas. All compute ops write their
result into an explicit destination buffer.

Tile addressing in `ppu.dma_load` / `ppu.dma_store` is the `tile` dialect's (core/tiling.py): tile
index times tile size inside a window `base`/`bound`, edge tiles padded on load and clipped on
store.

This module holds the program structure, on-chip memory and data movement; the compute ops are
in ppu_compute.py, the attributes and types in ppu_types.py (all re-exported here). Ops declare
their memory effects (xDSL traits) so that cse, dce and canonicalize keep every program's
behaviour. The dialect imports neither `zk` nor `tile`: the executor and the cost model that
import it import neither.
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
    IntegerAttr,
    MemRefType,
    StringAttr,
    SymbolNameConstraint,
    i64,
)
from xdsl.ir import Attribute, Dialect, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import (
    HasParent,
    IsTerminator,
    MemoryAllocEffect,
    MemoryReadEffect,
    MemoryWriteEffect,
    Pure,
    RecursiveMemoryEffect,
    SymbolOpInterface,
)
from zhenwu_cc.core.shapes import prod
from zhenwu_cc.core.tiling import tile_bytes, window
from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.dialects.formats import Number, parse_kernel_arguments, print_kernel_arguments
from zhenwu_cc.dialects.ppu_compute import (  # noqa: F401  (re-exported: the code base says ppu.X)
    TRANSCENDENTAL,
    VMAP_BINARY,
    VMAP_TERNARY,
    VMAP_UNARY,
    VREDUCE_FNS,
    FillOp,
    MmaOp,
    VIotaOp,
    VMapOp,
    VQuantizeOp,
    VReduceOp,
    VTransposeOp,
)
from zhenwu_cc.dialects.ppu_types import SPACES, HbmAttr, SpaceAttr, TokenType  # noqa: F401
from zhenwu_cc.dialects.ppu_types import check as _check
from zhenwu_cc.dialects.ppu_types import ints as _ints
from zhenwu_cc.dialects.ppu_types import memref, space_of  # noqa: F401
from zhenwu_cc.dialects.ppu_types import mshape as _mshape
from zhenwu_cc.dialects.ppu_types import space_is as _space_is

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
    """Ends a ppu.kernel (its outputs are written in place)."""

    name = "ppu.return"
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(KernelOp), Pure()))
    assembly_format = "attr-dict"


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Ends the body of a ppu.launch or ppu.loop."""

    name = "ppu.yield"
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(LaunchOp, LoopOp), Pure()))
    assembly_format = "attr-dict"


@irdl_op_definition
class GlobalOp(IRDLOperation):
    """An intermediate tensor materialised in HBM (placement attributes say where)."""

    name = "ppu.global"
    traits = traits_def(MemoryAllocEffect())  # a new HBM tensor: never merged with another
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
    traits = traits_def(Pure())
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
        _check(prod(a) == prod(b), "ppu.view keeps the element count")
        _check(self.source.type.element_type == self.result.type.element_type
               and self.source.type.memory_space == self.result.type.memory_space,
               "ppu.view keeps the element type and memory space")


@irdl_op_definition
class LaunchOp(IRDLOperation):
    """Run the body once per tile of `shape`, spread over `cus` compute units in waves.

    `ppu.launch [16, 16] (%i, %j) cus 128 role matmul { ... ppu.yield }`"""

    name = "ppu.launch"
    traits = traits_def(RecursiveMemoryEffect())
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
        return prod(self.grid_shape)

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
    traits = traits_def(RecursiveMemoryEffect())
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
        problem = attrs.check_live_steps(self, LaunchOp, self.trip_count)
        _check(problem is None, problem or "")

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
    traits = traits_def(MemoryAllocEffect())  # a new SRAM buffer: never merged with another
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
        return tile_bytes(dtypes.from_xdsl(t.element_type), t.get_shape())

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
    traits = traits_def(Pure())
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
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())
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
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())
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
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())  # orders the DMAs: never dropped
    tokens = var_operand_def(TokenType)
    assembly_format = "$tokens attr-dict"

    def __init__(self, tokens: Sequence[SSAValue]):
        super().__init__(operands=[list(tokens)])


PPU = Dialect(
    "ppu",
    [KernelOp, ReturnOp, YieldOp, GlobalOp, ViewOp, LaunchOp, LoopOp, AllocOp, SlotOp, DmaLoadOp,
     DmaStoreOp, WaitOp, MmaOp, VQuantizeOp, VMapOp, VReduceOp, VTransposeOp, FillOp, VIotaOp],
    [SpaceAttr, HbmAttr, TokenType],
)
