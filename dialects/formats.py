"""Assembly-format pieces shared by our dialects.

`custom<Number>($value)` prints an f64 FloatAttr as a plain number, with `inf`, `-inf` and `nan`
spelled out: xDSL's float parser does not read back the hex form MLIR prints for them, and
padding and fill values of -inf are common (max reductions, masks).
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING

from xdsl.dialects.builtin import Float64Type, FloatAttr

if TYPE_CHECKING:  # imported where used: defining the ops needs neither (`check` parses none)
    from xdsl.irdl.declarative_assembly_format import ParsingState, PrintingState
    from xdsl.irdl.operations import IRDLOperation
    from xdsl.parser import AttrParser, Parser
    from xdsl.printer import Printer


def parse_kernel_arguments(parser: Parser) -> list[tuple[Parser.Argument, dict]]:
    """`(%a: T {attrs} loc(...), ...)`: a kernel's arguments, as zk.kernel and ppu.kernel
    print them (the func.func argument syntax)."""

    def one():
        arg = parser.parse_argument()
        attrs = parser.parse_optional_dictionary_attr_dict()
        if (loc := parser.parse_optional_location()) is not None:
            arg.location = loc
        return arg, attrs

    return parser.parse_comma_separated_list(parser.Delimiter.PAREN, one)


def print_kernel_arguments(printer: Printer, args, attrs) -> None:
    # xdsl.dialects.utils is imported here: ~85 ms of start-up that `check` never needs.
    from xdsl.dialects.utils import print_func_argument

    printer.print_string("(")
    printer.print_list(zip(args, attrs), lambda t: print_func_argument(printer, t[0], t[1]))
    printer.print_string(")")


def parse_bindings(parser: Parser) -> list[tuple]:
    """`(%arg = %value : T, ...)`: region arguments bound to operands, as tile.grid and tile.loop
    print them (scf.forall style). Returns (block argument, operand) pairs."""

    def one():
        arg = parser.parse_argument(expect_type=False)
        parser.parse_punctuation("=")
        operand = parser.parse_unresolved_operand()
        parser.parse_punctuation(":")
        t = parser.parse_type()
        return arg.resolve(t), parser.resolve_operand(operand, t)

    return parser.parse_comma_separated_list(parser.Delimiter.PAREN, one)


def print_bindings(printer: Printer, args, values) -> None:
    printer.print_string("(")
    printer.print_list(zip(args, values), lambda t: (
        printer.print_ssa_value(t[0]), printer.print_string(" = "),
        printer.print_ssa_value(t[1]), printer.print_string(" : "),
        printer.print_attribute(t[1].type)))
    printer.print_string(")")


def print_ints(printer: Printer, values) -> None:
    """`[1, 2, 3]`: an attribute's integer list parameter."""
    printer.print_string("[" + ", ".join(str(v) for v in values) + "]")


def parse_ints(parser: AttrParser) -> list[int]:
    return parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)


def print_number(printer: Printer, value: float) -> None:
    if math.isnan(value) or math.isinf(value):
        printer.print_string(str(value))
    else:
        printer.print_float(value, Float64Type())


def parse_number(parser: Parser) -> float:
    negative = parser.parse_optional_punctuation("-") is not None
    word = parser.parse_optional_identifier()
    if word is not None:
        if word not in ("inf", "nan"):
            parser.raise_error("expected a number, `inf` or `nan`")
        value = float(word)
    else:
        value = float(parser.parse_number())
    return -value if negative else value


class LazyDirective:
    """A custom directive as an op's `custom_directives` names it; the directive class is built
    with the op's assembly format, on its first parse or print (dialects/__init__.py), so that
    defining the ops does not import xDSL's format machinery."""

    def __init__(self, name: str, methods: type, parameters: dict[str, str]):
        self.__name__, self._methods, self._parameters = name, methods, parameters
        self._built: type | None = None

    def resolve(self) -> type:
        if self._built is None:
            from xdsl.irdl import declarative_assembly_format as daf

            annotations = {k: getattr(daf, v) for k, v in self._parameters.items()}
            cls = type(self.__name__, (self._methods, daf.CustomDirective),
                       {"__annotations__": annotations, "__module__": __name__,
                        "__qualname__": self.__name__, "__doc__": self._methods.__doc__})
            self._built = daf.irdl_custom_directive(cls)
        return self._built


class _Number:
    """An f64 number attribute: `2.5`, `-inf`, `nan`."""

    def is_anchorable(self) -> bool:
        return True

    def is_present(self, op: IRDLOperation) -> bool:
        return self.value.is_present(op)

    def set_empty(self, state: ParsingState) -> None:
        return

    def parse(self, parser: Parser, state: ParsingState) -> None:
        self.value.set(state, FloatAttr(parse_number(parser), 64))

    def print(self, printer: Printer, state: PrintingState, op: IRDLOperation) -> None:
        attr = self.value.get(op)
        if attr is None:
            return
        state.print_whitespace(printer)
        assert isinstance(attr, FloatAttr)
        print_number(printer, attr.value.data)


Number = LazyDirective("Number", _Number, {"value": "AttributeVariable"})
