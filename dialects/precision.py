"""The `#zk.precision<...>` attribute and the scale checks the `zk`, `tile` and `ppu` verifiers
share. Its own module so that `ppu` (and through it the executor and the cost model) can use the
quantisation scheme without importing the `zk` ops; the `zk` dialect still registers it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import ArrayAttr, IntAttr, StringAttr
from xdsl.ir import Attribute, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import irdl_attr_definition, param_def
from xdsl.utils.exceptions import VerifyException
from zhenwu_cc.core import attrs
from zhenwu_cc.core.quant import SCALE_DTYPES, SCALE_OPTIONS, blocks_of
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects.formats import print_ints

if TYPE_CHECKING:  # annotations only: defining the ops imports no parser or printer
    from xdsl.parser import AttrParser
    from xdsl.printer import Printer


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise VerifyException(msg)


@irdl_attr_definition
class PrecisionAttr(ParametrizedAttribute):
    """`precision x as DTYPE scale MODE(args)`: `#zk.precision<f8E4M3FN, block [1, 128]>`.

    `option` picks a scale-rounding variant: `rceil` for `mx` (the default is the spec's floor),
    `rne` for `nvfp4` (the default rounds block scales up): `#zk.precision<f8E4M3FN, mx rceil>`."""

    name = attrs.PRECISION
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
                    print_ints(printer, self.mode_args)
                if self.option.data:
                    printer.print_string(f" {self.option.data}")


def verify_scales(name: str, operand: SSAValue, scales: Sequence[SSAValue]) -> None:
    """Scales of a low-precision operand (`tile.mma`, `ppu.mma`): at most two, each blocking
    the operand."""
    if not scales:
        return
    _check(len(scales) <= 2, f"{name} takes one or two scales per operand")
    _check(dtypes.from_xdsl(operand.type.element_type).is_low_precision,
           f"{name} scales apply to FP8/FP4 operands")
    for s in scales:
        _check(blocks_of(operand.type.get_shape(), s.type.get_shape()) is not None,
               f"{name}: scales {list(s.type.get_shape())} do not block an operand of "
               f"{list(operand.type.get_shape())}")
