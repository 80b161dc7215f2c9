"""The `ppu` dialect's compute ops: the tensor engine (`ppu.mma`) and the vector engine
(`ppu.vquantize`, `ppu.vmap`, `ppu.vreduce`, `ppu.vtranspose`, `ppu.fill`, `ppu.viota`).

All write an explicit SRAM destination, so each declares its memory effects (it reads its
inputs and writes its destination): xDSL's cse and dce then neither merge nor drop them."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    MemRefType,
    StringAttr,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import MemoryReadEffect, MemoryWriteEffect
from zhenwu_cc.core.quant import blocks_of
from zhenwu_cc.core.shapes import broadcast_shapes, matmul_shape
from zhenwu_cc.dialects.formats import Number
from zhenwu_cc.dialects.ppu_types import check as _check
from zhenwu_cc.dialects.ppu_types import in_sram as _sram
from zhenwu_cc.dialects.ppu_types import ints as _ints
from zhenwu_cc.dialects.ppu_types import mshape as _mshape
from zhenwu_cc.dialects.precision import PrecisionAttr, verify_scales


# Vector-engine functions of `ppu.vmap` by arity, and which of them are transcendental (they run
# at the target's transcendental rate in the cost model).
VMAP_UNARY = ("neg", "abs", "exp", "log", "tanh", "erf", "sqrt", "rsqrt", "copy", "cast",
              "bitcast")
VMAP_BINARY = ("add", "sub", "mul", "div", "max", "min", "pow", "eq", "ne", "lt", "le", "gt", "ge")
VMAP_TERNARY = ("select",)
TRANSCENDENTAL = frozenset({"exp", "log", "tanh", "erf", "sqrt", "rsqrt", "pow"})
VREDUCE_FNS = ("sum", "max", "min", "argmax")

@irdl_op_definition
class MmaOp(IRDLOperation):
    """Tensor engine: `acc += a @ b` (batched over leading dims), accumulating in acc's dtype.

    Scaled low-precision operands and `fp8_fast` as in `tile.mma`: each scale has the operand's
    rank and one entry per block."""

    name = "ppu.mma"
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())
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
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())
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
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())
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
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())
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
    traits = traits_def(MemoryReadEffect(), MemoryWriteEffect())
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
    traits = traits_def(MemoryWriteEffect())
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
    traits = traits_def(MemoryWriteEffect())
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
