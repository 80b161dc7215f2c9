"""The MLIR-style dialects: `zk` (tensors), `tile` (tiles of a grid), `ppu` (the machine).

Importing this package makes xDSL build each op's declarative assembly-format program (and the
custom directives it uses, formats.LazyDirective) on the op's first parse or print instead of at
class definition: `zhenwu-cc check` defines every `zk` op but prints none, and building the ~100
programs and importing xDSL's format machinery were a third of its start-up.
"""

from xdsl.irdl import operations as _operations

_eager_accessors = _operations.get_accessors_from_op_def


def _lazy_format_accessors(op_def, custom_verify):
    """xDSL's accessors for `op_def`, with `parse`/`print` building the format program once,
    when first called (a malformed format is still a PyRDLOpDefinitionError, raised then)."""
    text = op_def.assembly_format
    if text is None:
        return _eager_accessors(op_def, custom_verify)
    op_def.assembly_format = None
    try:
        accessors = _eager_accessors(op_def, custom_verify)
    finally:
        op_def.assembly_format = text
    program = []

    def format_program():
        if not program:
            from xdsl.irdl.declarative_assembly_format import FormatProgram
            from xdsl.utils.exceptions import ParseError, PyRDLOpDefinitionError

            op_def.custom_directives = {  # formats.LazyDirective: the class, built now
                name: d.resolve() if hasattr(d, "resolve") else d
                for name, d in op_def.custom_directives.items()}
            try:
                program.append(FormatProgram.from_str(text, op_def))
            except ParseError as e:
                raise PyRDLOpDefinitionError(
                    "Error during the parsing of the assembly format: ", e.args) from e
        return program[0]

    @classmethod
    def parse_with_format(cls, parser):
        return format_program().parse(parser, cls)

    def print_with_format(self, printer):
        return format_program().print(printer, self)

    accessors["parse"] = parse_with_format
    accessors["print"] = print_with_format
    return accessors


_operations.get_accessors_from_op_def = _lazy_format_accessors
