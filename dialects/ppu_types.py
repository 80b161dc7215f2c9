"""The `ppu` dialect's attributes and types (`#ppu.space`, `#ppu.hbm`, `!ppu.token`) and the
verifier helpers its op modules (ppu.py, ppu_compute.py) share."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, IntAttr, MemRefType, StringAttr, i64
from xdsl.ir import Attribute, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import irdl_attr_definition, param_def
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException
from zhenwu_cc.core import attrs

SPACES = ("hbm", "l2", "sram")


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise VerifyException(msg)


def ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def mshape(v: SSAValue) -> tuple[int, ...]:
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
        check(self.space.data in SPACES, f"unknown memory space {self.space.data!r}")

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

    name = attrs.HBM
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
        check(bool(ids) and len(set(ids)) == len(ids) and min(ids) >= 0,
               "ppu.hbm needs distinct, non-negative stack ids")
        check(self.base.data >= 0 and self.size.data >= 0 and self.interleave.data >= 0,
               "ppu.hbm base, size and interleave are non-negative")
        check(self.interleave.data > 0 or len(ids) == 1,
               "a contiguous region (interleave 0) lies on one stack")
        check(self.l2.data in (0, 1), "the l2 flag is 0 or 1")

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


def space_is(v: SSAValue, *spaces: str) -> bool:
    t = v.type
    return (isinstance(t, MemRefType) and isinstance(t.memory_space, SpaceAttr)
            and t.memory_space.space.data in spaces)



def in_sram(*values: SSAValue) -> None:
    """Compute ops read and write SRAM buffers only."""
    check(all(space_is(v, "sram") for v in values), "compute operands live in SRAM")
