"""Source locations on ops: the `.zk` position every pass carries forward, as a diagnostic Span."""

from __future__ import annotations

from xdsl.dialects.builtin import FileLineColLoc
from xdsl.ir import Operation

from zhenwu_cc.diagnostics import Span


def span_of(op: Operation) -> Span | None:
    """The source position an op came from, or None for ops without one."""
    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return Span.point(loc.filename.data, loc.line.data, loc.column.data)
    return None


def loc_text(op: Operation) -> str:
    """`file:line:col` for reports and traces ("" when unknown)."""
    span = span_of(op)
    return f"{span.file}:{span.line}:{span.col}" if span else ""
