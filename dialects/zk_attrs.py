"""The `zk` dialect's schedule attributes: `#zk.tile<...>`, `#zk.split<...>`, `#zk.fuse<...>` and
`#zk.place<...>` (`#zk.precision`
lives in precision.py, where `ppu` can use it without the `zk` ops)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import ArrayAttr, FileLineColLoc, IntAttr, StringAttr, UnknownLoc
from xdsl.ir import Attribute, ParametrizedAttribute
from xdsl.irdl import irdl_attr_definition, param_def
from zhenwu_cc.core import attrs
from zhenwu_cc.dialects.formats import parse_ints as _parse_ints
from zhenwu_cc.dialects.formats import print_ints as _print_ints
from zhenwu_cc.dialects.zk_common import check as _check

if TYPE_CHECKING:  # annotations only: defining the ops imports no parser or printer
    from xdsl.parser import AttrParser
    from xdsl.printer import Printer


@irdl_attr_definition
class TileAttr(ParametrizedAttribute):
    """`tile NAME [sizes] split_k N`: `#zk.tile<[128, 128, 64], split_k 2>`.

    `loc` is the schedule line the directive came from, so that the `tile` pass can point at it
    when it refuses the directive (ZK0605, ZK0606); like an op's location it is printed (and
    parsed) only as debug info: `#zk.tile<[128, 128, 64], loc("a.zk":15:5)>`."""

    name = attrs.TILE
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
            _print_loc(printer, self.loc)



@irdl_attr_definition
class SplitAttr(ParametrizedAttribute):
    """`split NAME S`: `#zk.split<NAME, S>` on the reduction (or matmul) it splits, with the name
    as the directive wrote it (reports say "from `split NAME S`", also on the reductions a
    composite expands to). `loc` is the schedule line, printed only as debug info (as
    `#zk.tile`'s), so that the `tile` pass can point at it when no grid can take the split
    (ZK0607)."""

    name = attrs.SPLIT
    target: StringAttr = param_def()
    parts: IntAttr = param_def()
    loc: FileLineColLoc | UnknownLoc = param_def()

    def __init__(self, target: str, parts: int,
                 loc: FileLineColLoc | UnknownLoc | None = None):
        super().__init__(StringAttr(target), IntAttr(parts), loc or UnknownLoc())

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            target = parser.parse_identifier()
            parser.parse_punctuation(",")
            start = parser.pos
            parts = parser.parse_integer()
            if parts < 1:  # tiling divides by it
                parser.raise_error("split parts must be >= 1", start, parser.pos)
            loc = _parse_loc(parser)
        return (StringAttr(target), IntAttr(parts), loc)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(f"{self.target.data}, {self.parts.data}")
            _print_loc(printer, self.loc)


@irdl_attr_definition
class FuseAttr(ParametrizedAttribute):
    """`fuse NAME off`: `#zk.fuse<off>` on the op NAME binds, which the `tile` pass then leaves
    out of every fused group; `loc` is the schedule line (debug info, as `#zk.tile`'s), for
    ZK0608 when the value is part of no fused group."""

    name = attrs.FUSE
    loc: FileLineColLoc | UnknownLoc = param_def()

    def __init__(self, loc: FileLineColLoc | UnknownLoc | None = None):
        super().__init__(loc or UnknownLoc())

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            parser.parse_keyword("off")
            loc = _parse_loc(parser)
        return (loc,)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string("off")
            _print_loc(printer, self.loc)


@irdl_attr_definition
class PlaceAttr(ParametrizedAttribute):
    """`place NAME in hbm stacks(...)` / `in l2`: `#zk.place<hbm, stacks [0, 1]>`, `#zk.place<l2>`."""

    name = attrs.PLACE
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


def _parse_loc(parser: AttrParser) -> Attribute:
    """A directive attribute's optional trailing `, loc(...)` (its schedule line)."""
    found = parser.parse_optional_location() if parser.parse_optional_punctuation(",") else None
    return found or UnknownLoc()


def _print_loc(printer: Printer, loc: Attribute) -> None:
    """The schedule line, printed only as debug info."""
    if printer.print_debuginfo and isinstance(loc, FileLineColLoc):
        printer.print_string(", ")
        printer.print_attribute(loc)
