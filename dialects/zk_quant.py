"""The `zk` dialect's low-precision ops, inserted by the `cast` pass: `zk.quantize` and
`zk.dequantize` (the scheme itself is core/quant.py)."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import IntegerAttr, TensorType, i64
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    AttrSizedResultSegments,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    opt_result_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import Pure
from zhenwu_cc.core.quant import (
    AMAX_MODES,
    AXIS_GROUPS,
    SCALE_DTYPES,
    blocks_of,
    scale_blocks,
    scale_shape,
)
from zhenwu_cc.core.shapes import Shape, normalize_axis
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects.precision import PrecisionAttr
from zhenwu_cc.dialects.zk_common import check as _check
from zhenwu_cc.dialects.zk_common import elem as _elem
from zhenwu_cc.dialects.zk_common import shape as _shape


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


class QuantizeBase(IRDLOperation):
    """The operands, properties, results and syntax `zk.quantize` (on tensors) and
    `tile.quantize` (on one tile) share: input, optional amax, precision, optional blocked axis
    -> values, scales, optional NVFP4 tensor scale."""

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


@irdl_op_definition
class QuantizeOp(QuantizeBase):
    """Quantise a float tensor as `precision` says: low-precision values and their scales
    (`scale_blocks` gives the layout), plus NVFP4's f32 per-tensor scale.

    `amax` (the largest |x| per scaling group, or of the finite values for `nvfp4`) may come
    from a reduction when the scale groups span more than one tile; without it the op reduces
    its input itself. `axis` is the axis that `mx` and `nvfp4` block along (a matmul's
    contraction axis)."""

    name = "zk.quantize"

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

