"""The `tile` dialect: a kernel as grids of output tiles, still with value semantics.

A `tile.grid` iterates over the tiles of its outputs (parallel dimensions); a `tile.loop` inside
it walks a reduction dimension step by step, carrying accumulators. Tiles are small builtin
`tensor<...>` values; global tensors enter a grid as `ins` and leave through `outs`
(destination-passing, like `scf.forall`). Inside a grid, `zk`'s elementwise and reduction ops
work on tiles unchanged; this dialect adds only what tiling needs: tile loads and stores with
exact edge handling, the loop, the accumulating matmul (with scaled low-precision operands),
the vector engine's quantisation of a tile, and tile-relative iota.

Tile addressing: a load of `tile [t0, t1]` at tile index `[i0, i1]` reads element
`src[base0 + i0*t0 + r0, base1 + i1*t1 + r1]` when `i*t + r < bound` in every dimension, and
`pad` elsewhere. Edge tiles of sizes that do not divide the shape are therefore padded on load
and clipped on store: never dropped. `base` and `bound` express views (slices) without copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, BlockArgument, Dialect, Operation, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    VarConstraint,
    base,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException
from zhenwu_cc.core import attrs
from zhenwu_cc.core.tiling import tile_counts, window  # noqa: F401  (tile_counts re-exported)
from zhenwu_cc.dialects import zk
from zhenwu_cc.dialects.formats import Number, parse_bindings, print_bindings
from zhenwu_cc.dialects.precision import verify_scales
from zhenwu_cc.dialects.zk_quant import QuantizeBase


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise VerifyException(msg)


def _ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _shape(v: SSAValue) -> tuple[int, ...]:
    assert isinstance(v.type, TensorType)
    return tuple(v.type.get_shape())


class _WindowOp(IRDLOperation):
    """Shared accessors of loads and stores: tile sizes and the addressed window."""

    @property
    def tile_sizes(self) -> tuple[int, ...]:
        return tuple(self.sizes.get_values())

    @property
    def window(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return window(_shape(self.global_value),
                      tuple(self.base.get_values()) if self.base else None,
                      tuple(self.bound.get_values()) if self.bound else None)

    def verify_window(self) -> None:
        shape = _shape(self.global_value)
        rank = len(shape)
        _check(len(self.indices) == rank and len(self.tile_sizes) == rank,
               f"{self.name} needs one index and one tile size per dimension ({rank})")
        _check(all(isinstance(i.type, IndexType) for i in self.indices), "indices are `index`")
        _check(all(t >= 1 for t in self.tile_sizes), "tile sizes must be positive")
        b, e = self.window
        _check(len(b) == len(e) == rank, "base and bound need one entry per dimension")
        _check(all(0 <= o and 1 <= n and o + n <= d for o, n, d in zip(b, e, shape)),
               f"window base {list(b)} bound {list(e)} exceeds the tensor shape {list(shape)}")
        _check(self.tile_value.type.element_type == self.global_value.type.element_type,
               f"{self.name} keeps the element type")
        _check(_shape(self.tile_value) == self.tile_sizes,
               f"the tile type must have the shape {list(self.tile_sizes)}")


@irdl_op_definition
class LoadOp(_WindowOp):
    """Read one tile of a global tensor (edge tiles padded with `pad`)."""

    name = "tile.load"
    custom_directives = (Number,)
    source = operand_def(TensorType)
    indices = var_operand_def(IndexType)
    sizes = prop_def(DenseArrayBase.constr(i64))
    base = opt_prop_def(DenseArrayBase.constr(i64))
    bound = opt_prop_def(DenseArrayBase.constr(i64))
    pad = opt_prop_def(FloatAttr[Float64Type])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = ("$source `[` $indices `]` `tile` $sizes (`base` $base^)? (`bound` $bound^)?"
                       " (`pad` custom<Number>($pad)^)? attr-dict `:` type($source) `->` type($result)")

    def __init__(self, source: SSAValue, indices: Sequence[SSAValue], sizes: Sequence[int],
                 base: Sequence[int] | None = None, bound: Sequence[int] | None = None,
                 pad: float = 0.0):
        props: dict[str, Attribute] = {"sizes": _ints(sizes)}
        if base is not None and any(base):
            props["base"] = _ints(base)
        if bound is not None and tuple(bound) != window(_shape(source), base, None)[1]:
            props["bound"] = _ints(bound)
        if pad != 0.0:
            props["pad"] = FloatAttr(pad, 64)
        elem = source.type.element_type
        super().__init__(operands=[source, list(indices)], properties=props,
                         result_types=[TensorType(elem, list(sizes))])

    global_value = property(lambda self: self.source)
    tile_value = property(lambda self: self.result)

    @property
    def pad_value(self) -> float:
        return self.pad.value.data if self.pad else 0.0

    def verify_(self) -> None:
        self.verify_window()


@irdl_op_definition
class StoreOp(_WindowOp):
    """Write one tile into a grid output (clipped to the window at edges)."""

    name = "tile.store"
    value = operand_def(TensorType)
    dest = operand_def(TensorType)
    indices = var_operand_def(IndexType)
    sizes = prop_def(DenseArrayBase.constr(i64))
    base = opt_prop_def(DenseArrayBase.constr(i64))
    bound = opt_prop_def(DenseArrayBase.constr(i64))
    assembly_format = ("$value `,` $dest `[` $indices `]` `tile` $sizes (`base` $base^)? "
                       "(`bound` $bound^)? attr-dict `:` type($value) `,` type($dest)")

    def __init__(self, value: SSAValue, dest: SSAValue, indices: Sequence[SSAValue],
                 base: Sequence[int] | None = None, bound: Sequence[int] | None = None):
        props: dict[str, Attribute] = {"sizes": _ints(_shape(value))}
        if base is not None and any(base):
            props["base"] = _ints(base)
        if bound is not None and tuple(bound) != window(_shape(dest), base, None)[1]:
            props["bound"] = _ints(bound)
        super().__init__(operands=[value, dest, list(indices)], properties=props)

    global_value = property(lambda self: self.dest)
    tile_value = property(lambda self: self.value)

    def verify_(self) -> None:
        self.verify_window()
        grid = enclosing_grid(self)
        _check(grid is not None and self.dest in grid.out_args,
               "tile.store writes to an `outs` argument of its tile.grid")
        owner = self.value.owner
        where = owner if isinstance(owner, Operation) else owner.parent_op()
        _check(where is not None and grid.is_ancestor(where),
               "tile.store stores a tile computed inside its tile.grid")


@irdl_op_definition
class IotaOp(IRDLOperation):
    """Global indices along `axis` for the elements of the tile at `indices` (i32)."""

    name = "tile.iota"
    indices = var_operand_def(IndexType)
    sizes = prop_def(DenseArrayBase.constr(i64))
    axis = prop_def(IntegerAttr[i64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "`[` $indices `]` `tile` $sizes `axis` $axis attr-dict `:` type($result)"

    def __init__(self, indices: Sequence[SSAValue], sizes: Sequence[int], axis: int,
                 element_type: Attribute):
        super().__init__(operands=[list(indices)],
                         properties={"sizes": _ints(sizes), "axis": IntegerAttr(axis, 64)},
                         result_types=[TensorType(element_type, list(sizes))])

    def verify_(self) -> None:
        sizes = tuple(self.sizes.get_values())
        _check(len(self.indices) == len(sizes), "tile.iota needs one index per dimension")
        _check(0 <= self.axis.value.data < len(sizes), "tile.iota axis out of range")
        _check(_shape(self.result) == sizes, "tile.iota result shape must be the tile sizes")


@irdl_op_definition
class MmaOp(IRDLOperation):
    """`acc + a @ b` on tiles (batched over leading dims with broadcasting).

    The accumulator's element type is the accumulation precision (f32 unless the schedule says
    `accumulate ...`). Low-precision operands may carry scales, each with the operand's rank
    and one entry per block (a per-tensor scale is [1, 1]): the engine multiplies
    `a x lhs_scales` by `b x rhs_scales`, each scale repeated over its block, exact products
    summed in f32. `fp8_fast` emulates an FP8 tensor core's narrow accumulator (promoted to
    f32 every 128 elements of K, or every K step when the step is shorter)."""

    name = "tile.mma"
    T: ClassVar = VarConstraint("T", base(TensorType))
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    acc = operand_def(T)
    lhs_scales = var_operand_def(TensorType)
    rhs_scales = var_operand_def(TensorType)
    fp8_fast = opt_prop_def(UnitAttr)
    result = result_def(T)
    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = ("$lhs `,` $rhs `,` $acc (`lhs_scales` `(` $lhs_scales^ `)`)? "
                       "(`rhs_scales` `(` $rhs_scales^ `)`)? (`fp8_fast` $fp8_fast^)? "
                       "attr-dict `:` "
                       "type($lhs) `,` type($rhs) (`lhs_scales` `(` type($lhs_scales)^ `)`)? "
                       "(`rhs_scales` `(` type($rhs_scales)^ `)`)? `->` type($result)")

    def __init__(self, lhs: SSAValue, rhs: SSAValue, acc: SSAValue,
                 lhs_scales: Sequence[SSAValue] = (), rhs_scales: Sequence[SSAValue] = (),
                 fp8_fast: bool = False):
        super().__init__(operands=[lhs, rhs, acc, list(lhs_scales), list(rhs_scales)],
                         properties={"fp8_fast": UnitAttr()} if fp8_fast else {},
                         result_types=[acc.type])

    def verify_(self) -> None:
        shape = zk.matmul_shape(_shape(self.lhs), _shape(self.rhs))
        _check(shape is not None and zk.broadcast_shapes(shape, _shape(self.acc)) == _shape(self.acc),
               f"tile.mma shapes {list(_shape(self.lhs))} x {list(_shape(self.rhs))} do not "
               f"accumulate into {list(_shape(self.acc))}")
        _check(self.lhs.type.element_type == self.rhs.type.element_type,
               "tile.mma operands share an element type")
        verify_scales(self.name, self.lhs, self.lhs_scales)
        verify_scales(self.name, self.rhs, self.rhs_scales)


@irdl_op_definition
class QuantizeOp(QuantizeBase):
    """Vector engine: quantise a tile as `precision` says, into values and scale tiles whose
    blocks lie whole inside the tile (the scale tile's shape gives the blocks). `amax`,
    blocked like the scales, carries groups that span several tiles: per-tensor and
    per-channel maxima, and NVFP4's global amax."""

    name = "tile.quantize"

    def __init__(self, input: SSAValue, amax: SSAValue | None, precision: zk.PrecisionAttr,
                 axis: int | None, scale_types: Sequence[Attribute]):
        props: dict[str, Attribute] = {"precision": precision}
        if axis is not None:
            props["axis"] = IntegerAttr(axis, 64)
        super().__init__(operands=[input, [amax] if amax else []], properties=props,
                         result_types=[TensorType(precision.dtype, _shape(input)),
                                       scale_types[0], list(scale_types[1:])])

    def verify_(self) -> None:
        p, shape = self.precision, _shape(self.input)
        mode = p.mode.data
        _check(_shape(self.values) == shape and self.values.type.element_type == p.dtype,
               "tile.quantize values keep the tile's shape and take the precision's dtype")
        _check((self.tensor_scale is not None) == (mode == "nvfp4"),
               "only nvfp4 has a tensor scale")
        _check(mode not in zk.AMAX_MODES or self.amax is not None,
               f"a tile.quantize in mode {mode} needs the amax of groups beyond the tile")
        blocks = zk.blocks_of(shape, _shape(self.scales))
        _check(blocks is not None, "tile.quantize scales must block the tile")
        if mode in zk.AXIS_GROUPS:
            axis = self.axis.value.data if self.axis is not None else -1
            _check(blocks == zk.scale_blocks(mode, (), shape, axis),
                   f"{mode} groups of {zk.AXIS_GROUPS[mode]} along the axis lie whole in a tile")
        if mode == "block":
            _check(blocks[-2:] == p.mode_args, "block scales cover whole blocks of the tile")


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminates a tile.loop (the next accumulators) or a tile.grid (no values)."""

    name = "tile.yield"
    values = var_operand_def()
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(GridOp, LoopOp), Pure()))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, values: Sequence[SSAValue] = ()):
        super().__init__(operands=[list(values)])


@irdl_op_definition
class LoopOp(IRDLOperation):
    """`for k in range(trips)` over a reduction dimension, carrying accumulators.

    `tile.loop %k = 0 to 32 iter(%acc = %init : T) -> (T) { ... tile.yield %next : T }`"""

    name = "tile.loop"
    trips = prop_def(IntegerAttr[i64])
    inits = var_operand_def()
    res = var_result_def()
    body = region_def("single_block")

    def __init__(self, trips: int, inits: Sequence[SSAValue], body: Region):
        super().__init__(operands=[list(inits)], properties={"trips": IntegerAttr(trips, 64)},
                         result_types=[[v.type for v in inits]], regions=[body])

    @property
    def trip_count(self) -> int:
        return self.trips.value.data

    @property
    def induction_var(self) -> SSAValue:
        return self.body.block.args[0]

    @property
    def iter_args(self) -> Sequence[SSAValue]:
        return self.body.block.args[1:]

    def verify_(self) -> None:
        args = self.body.block.args
        _check(self.trip_count >= 1, "tile.loop runs at least once")
        _check(len(args) == 1 + len(self.inits) and isinstance(args[0].type, IndexType),
               "tile.loop block takes the index and one argument per accumulator")
        _check(all(a.type == v.type for a, v in zip(args[1:], self.inits)),
               "tile.loop accumulator types must match their initial values")
        y = self.body.block.last_op
        _check(isinstance(y, YieldOp) and tuple(v.type for v in y.values)
               == tuple(v.type for v in self.inits), "tile.loop must yield its accumulators")
        problem = attrs.check_live_steps(self, GridOp, self.trip_count)
        _check(problem is None, problem or "")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_ssa_value(self.induction_var)
        printer.print_string(f" = 0 to {self.trip_count}")
        if self.inits:
            printer.print_string(" iter")
            print_bindings(printer, self.iter_args, self.inits)
            printer.print_string(" -> (")
            printer.print_list(self.res, lambda r: printer.print_attribute(r.type))
            printer.print_string(")")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> LoopOp:
        iv = parser.parse_argument(expect_type=False)
        parser.parse_punctuation("=")
        if parser.parse_integer() != 0:
            parser.raise_error("tile.loop starts at 0")
        parser.parse_keyword("to")
        trips = parser.parse_integer()
        args, inits = [iv.resolve(IndexType())], []
        if parser.parse_optional_keyword("iter") is not None:
            for arg, value in parse_bindings(parser):
                args.append(arg)
                inits.append(value)
            parser.parse_punctuation("->")
            parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region(args)
        op = cls(trips, inits, body)
        if attrs:
            op.attributes |= attrs.data
        return op


@irdl_op_definition
class EmptyOp(IRDLOperation):
    """A global tensor with undefined contents: the destination a grid fills.

    Deliberately not Pure: two empties are two tensors, and CSE must not merge them."""

    name = "tile.empty"
    result = result_def(TensorType)
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, type: TensorType):
        super().__init__(result_types=[type])


@irdl_op_definition
class GridOp(IRDLOperation):
    """Run the body once per tile index in `shape` (in any order, as if in parallel).

    `%r = tile.grid [16, 16] (%i, %j) ins(%a_ = %a : T, ...) outs(%c_ = %e : T) -> (T) {...}`
    The body reads `ins` with tile.load and writes `outs` with tile.store; results are the
    filled `outs`. `role` names the kind of work for reports (matmul, reduction, elementwise,
    copy)."""

    name = "tile.grid"
    shape = prop_def(DenseArrayBase.constr(i64))
    role = prop_def(StringAttr)
    ins = var_operand_def(TensorType)
    outs = var_operand_def(TensorType)
    res = var_result_def(TensorType)
    body = region_def("single_block")
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(self, shape: Sequence[int], role: str, ins: Sequence[SSAValue],
                 outs: Sequence[SSAValue], body: Region):
        super().__init__(operands=[list(ins), list(outs)],
                         properties={"shape": _ints(shape), "role": StringAttr(role)},
                         result_types=[[v.type for v in outs]], regions=[body])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.shape.get_values())

    @property
    def index_args(self) -> Sequence[SSAValue]:
        return self.body.block.args[: len(self.grid_shape)]

    @property
    def in_args(self) -> Sequence[SSAValue]:
        n = len(self.grid_shape)
        return self.body.block.args[n: n + len(self.ins)]

    @property
    def out_args(self) -> Sequence[SSAValue]:
        return self.body.block.args[len(self.grid_shape) + len(self.ins):]

    def verify_(self) -> None:
        rank = len(self.grid_shape)
        args = self.body.block.args
        _check(all(g >= 1 for g in self.grid_shape), "grid dimensions must be positive")
        _check(len(args) == rank + len(self.ins) + len(self.outs),
               "tile.grid block takes one index per grid dim, then ins, then outs")
        _check(all(isinstance(a.type, IndexType) for a in args[:rank]), "grid indices are index")
        _check(all(a.type == v.type for a, v in zip(self.in_args, self.ins)), "ins types differ")
        _check(all(a.type == v.type for a, v in zip(self.out_args, self.outs)), "outs types differ")
        _check(tuple(r.type for r in self.res) == tuple(v.type for v in self.outs),
               "tile.grid results are its filled outs")
        y = self.body.block.last_op
        _check(isinstance(y, YieldOp) and not y.values, "tile.grid body ends with `tile.yield`")

    def print(self, printer: Printer) -> None:
        printer.print_string(" [" + ", ".join(str(g) for g in self.grid_shape) + "] (")
        printer.print_list(self.index_args, printer.print_ssa_value)
        printer.print_string(")")
        for word, args, vals in (("ins", self.in_args, self.ins), ("outs", self.out_args, self.outs)):
            printer.print_string(f" {word}")
            print_bindings(printer, args, vals)
        printer.print_string(f" role {self.role.data}")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> GridOp:
        shape = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
        idx = parser.parse_comma_separated_list(
            parser.Delimiter.PAREN, lambda: parser.parse_argument(expect_type=False))
        args = [a.resolve(IndexType()) for a in idx]
        operands: dict[str, list[SSAValue]] = {"ins": [], "outs": []}
        for word in ("ins", "outs"):
            parser.parse_keyword(word)
            for arg, value in parse_bindings(parser):
                args.append(arg)
                operands[word].append(value)
        parser.parse_keyword("role")
        role = parser.parse_identifier()
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region(args)
        op = cls(shape, role, operands["ins"], operands["outs"], body)
        if attrs:
            op.attributes |= attrs.data
        return op


def enclosing_grid(op: Operation) -> GridOp | None:
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, GridOp):
        parent = parent.parent_op()
    return parent


# ---- the SRAM placement contract ---------------------------------------------------------
# `alloc-sram` records where each tile value lives as `sram.buffer` / `sram.offset` /
# `sram.depth` attributes (core/attrs.py) on the op that defines it (dense arrays, one entry per
# result, where it has several); `lower-ppu` reads them back here.
class Placement(NamedTuple):
    """Where a tile value lives: `buffer` numbers the grid's buffers (values that share one
    follow each other in it), at byte `offset` of the SRAM, with `depth` slots."""

    buffer: int
    offset: int
    depth: int


def placement_of(value: SSAValue) -> Placement | None:
    """The placement alloc-sram recorded for a tile value, or None when it has none."""
    if isinstance(value, BlockArgument):  # a loop's iter arg lives in its result's buffer
        loop = value.owner.parent_op()
        assert isinstance(loop, LoopOp)
        value = loop.res[value.index - 1]
    op = value.owner
    assert isinstance(op, Operation)
    found = [op.attributes.get(name) for name in attrs.SRAM_PLACEMENT]
    if all(isinstance(a, DenseArrayBase) for a in found):
        return Placement(*(a.get_values()[value.index] for a in found))
    if all(isinstance(a, IntegerAttr) for a in found):
        return Placement(*(a.value.data for a in found))
    return None


def root_of(value: SSAValue) -> SSAValue:
    """The value whose buffer `value` names: a reshape inside a grid is a view of its input."""
    while isinstance(value.owner, zk.ReshapeOp):
        value = value.owner.input
    return value



TILE = Dialect("tile", [GridOp, LoopOp, YieldOp, LoadOp, StoreOp, MmaOp, QuantizeOp, IotaOp,
                        EmptyOp], [])
