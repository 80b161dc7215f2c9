"""`zhenwu-cc opt`: an mlir-opt-like driver over our dialects, for pass tests and debugging.

It parses MLIR text, runs a pass pipeline, and prints the result. `--split-input-file` runs each
`// -----` chunk on its own; `--verify-diagnostics` prints diagnostics to stdout instead of
failing, so lit + filecheck tests can check error messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zhenwu_cc.core.diagnostics import CompileError, Diagnostic, Span, error

SPLIT_MARKER = "// -----"


@dataclass
class OptResult:
    text: str  # the printed IR of every chunk (and diagnostics under --verify-diagnostics)
    timing: str = ""


# xDSL parses, verifies and prints nested attributes and regions recursively: deeper input would
# end in RecursionError (at ~130 levels), so it gets ZK1003. Our own IR nests ~10 levels.
MAX_NESTING = 64
# Brackets that nest, skipping string literals, comments and the `>` of `->`.
_NESTING = re.compile(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*|->|[{}\[\]()<>]')


def _check_nesting(text: str, file: str, line_offset: int) -> None:
    depth = 0
    for m in _NESTING.finditer(text):
        tok = m.group()
        if tok in ("{", "[", "(", "<"):
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, m.start()) + 1
                col = m.start() - text.rfind("\n", 0, m.start())
                raise error("ZK1003", f"IR nested more than {MAX_NESTING} levels deep (brackets, "
                            "attributes and regions)", Span.point(file, line + line_offset, col),
                            help="flatten the IR; `compile --emit` never nests this deep")
        elif tok in ("}", "]", ")", ">"):
            depth = max(0, depth - 1)


def _parse(ctx, text: str, file: str, line_offset: int):
    import struct

    from xdsl.parser import Parser
    from xdsl.utils.exceptions import ParseError, VerifyException

    _check_nesting(text, file, line_offset)
    parser = None
    try:
        parser = Parser(ctx, text, file)  # it reads the first token already
        return parser.parse_module()
    except ParseError as exc:
        loc = exc.span.get_location()
        raise error("ZK1001", exc.msg, Span.point(file, loc.line + line_offset, loc.col)) from None
    except (VerifyException, struct.error, OverflowError, ValueError) as exc:
        # An attribute or type is verified as it is parsed; xDSL packs a dense array of
        # out-of-range integers with `struct` (struct.error), or refuses one in
        # `DenseArrayBase.from_list` (ValueError), rather than reporting it.
        pos = min(parser.pos, len(text)) if parser is not None else 0
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise error("ZK1001", str(exc), Span.point(file, line + line_offset, col)) from None


def _verify_input(module) -> None:
    """Verify parsed IR op by op, so the diagnostic points at the first op that fails."""
    from xdsl.utils.exceptions import VerifyException

    from zhenwu_cc.dialects.loc import span_of

    for op in module.walk():  # first: verifiers of an op may look at its nested ops' operands
        _check_operands_defined(op)
    for op in module.walk():
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException as exc:
            raise error("ZK1002", f"`{op.name}`: {exc}", span_of(op),
                        help="fix the IR so that the op verifies") from None


def _check_operands_defined(op) -> None:
    """Each operand is defined before `op`, in its block or an enclosing one (ZK1002): xDSL's
    parser accepts a name used across regions or never defined, and the passes rely on it."""
    from xdsl.ir import BlockArgument, OpResult

    from zhenwu_cc.dialects.loc import span_of

    enclosing = []
    block = op.parent_block()
    while block is not None:
        enclosing.append(block)
        parent = block.parent_op()
        block = parent.parent_block() if parent is not None else None
    for i, v in enumerate(op.operands):
        if isinstance(v, BlockArgument):
            ok = v.block in enclosing
        elif isinstance(v, OpResult):
            owner = v.op
            ok = owner.parent_block() in enclosing and (
                owner.parent_block() is not op.parent_block() or owner.is_before_in_block(op))
        else:  # a name the parser saw used but never defined
            ok = False
        if not ok:
            raise error("ZK1002", f"`{op.name}`: operand {i} is not defined before it in this "
                        "region or an enclosing one", span_of(op),
                        help="define each value before its uses, in the same region or an "
                        "enclosing one")


def _render_for_check(diags: list[Diagnostic]) -> str:
    out = []
    for d in diags:
        where = f"{d.span.line}:{d.span.col}: " if d.span else ""
        out.append(f"{where}error[{d.code}]: {d.message}")
        out.extend(f"note: {n.message}" for n in d.notes)
    return "\n".join(out) + "\n"


def run_opt(text: str, file: str, pipeline: str, *, split: bool = False,
            verify_diagnostics: bool = False, inst=None, generic: bool = False,
            debuginfo: bool = False) -> OptResult:
    """Parse `text`, run `pipeline` on it (per chunk with `split`), and print the result."""
    import io

    from xdsl.printer import Printer

    from zhenwu_cc.pipeline import (
        format_timing,
        make_context,
        parse_pipeline,
        run_pipeline,
    )

    passes = parse_pipeline(pipeline)
    chunks, offsets = [text], [0]
    if split:
        chunks, offsets, line = [], [], 0
        for piece in text.split("\n" + SPLIT_MARKER):
            chunks.append(piece)
            offsets.append(line)
            line += piece.count("\n") + 1
    outputs, timings = [], []
    for chunk, offset in zip(chunks, offsets):
        ctx = make_context()
        try:
            module = _parse(ctx, chunk, file, offset)
            _verify_input(module)
            run = run_pipeline(ctx, module, passes, inst)
        except CompileError as exc:
            if not verify_diagnostics:
                raise
            outputs.append(_render_for_check(exc.diagnostics))
            continue
        timings.append(format_timing(run))
        buf = io.StringIO()
        Printer(stream=buf, print_generic_format=generic, print_debuginfo=debuginfo).print_op(
            module)
        outputs.append(buf.getvalue() + "\n")
    return OptResult(f"{SPLIT_MARKER}\n".join(outputs), "".join(timings))
