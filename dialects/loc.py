"""Source locations on ops: the `.zk` position every pass carries forward, as a diagnostic Span."""

from __future__ import annotations

from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr
from xdsl.ir import Attribute, Operation

from zhenwu_cc.core.diagnostics import Span


def span_at(loc: Attribute | None, width: int = 1) -> Span | None:
    """A location (of an op, a block argument, a directive's attribute) as a Span `width`
    columns wide; None unless it is a `file:line:col` location. The one place a location
    becomes a Span."""
    if isinstance(loc, FileLineColLoc):
        return Span.point(loc.filename.data, loc.line.data, loc.column.data, width)
    return None


def span_of(op: Operation) -> Span | None:
    """The source position an op came from, or None for ops without one."""
    return span_at(op.location)


def location(span: Span) -> FileLineColLoc:
    """The location an op generated from source at `span` carries (the inverse of span_at)."""
    return FileLineColLoc(StringAttr(span.file), IntAttr(span.line), IntAttr(span.col))


def loc_text(op: Operation) -> str:
    """`file:line:col` for reports and traces ("" when unknown)."""
    span = span_of(op)
    return f"{span.file}:{span.line}:{span.col}" if span else ""
