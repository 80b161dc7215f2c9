"""Schedule edits as source text: the line a hint proposes, applied to the `.zk` file so that
`eval` can compile and cost the edited kernel before proposing it (an edit that does not compile
or does not help is never shown).
"""

from __future__ import annotations

from dataclasses import dataclass, field

INDENT = "    "


@dataclass(frozen=True)
class Directive:
    """A schedule directive as written: its text and where it is (1-based, end exclusive)."""

    text: str
    line: int
    col: int
    end_line: int
    end_col: int


@dataclass(frozen=True)
class Edit:
    """Add `line` to kernel `kernel`'s schedule, or replace `old` with it (`line` "" removes
    `old`)."""

    kernel: str
    line: str
    old: Directive | None = None
    # a `tile` edit as `CompiledKernel.retile()` arguments (binding, sizes, split_k): the same
    # kernel without parsing it again
    retile: tuple[str, tuple[int, ...], int] | None = field(default=None, compare=False)

    @property
    def action(self) -> str:
        return "add" if self.old is None else ("remove" if not self.line else "replace")

    def to_dict(self) -> dict:
        return {"action": self.action, "kernel": self.kernel, "line": self.line or None,
                "old": None if self.old is None else self.old.text,
                "at_line": None if self.old is None else self.old.line}

    def text(self) -> str:
        """The edit as a person would say it."""
        if self.old is None:
            return f"add `{self.line}` to `schedule {self.kernel}`"
        if not self.line:
            return f"remove `{self.old.text}` (line {self.old.line})"
        return f"change `{self.old.text}` (line {self.old.line}) to `{self.line}`"

    def apply(self, source: str) -> str:
        """`source` with this edit made (source as read: a leading byte-order mark is dropped)."""
        source = source.removeprefix("\ufeff")
        if self.old is not None:
            start = _offset(source, self.old.line, self.old.col)
            end = _offset(source, self.old.end_line, self.old.end_col)
            return source[:start] + self.line + source[end:]
        close = _schedule_close(source, self.kernel)
        if close is None:
            sep = "" if source.endswith("\n") or not source else "\n"
            return f"{source}{sep}\nschedule {self.kernel} {{\n{INDENT}{self.line}\n}}\n"
        line_start = source.rfind("\n", 0, close) + 1
        if source[line_start:close].strip():
            return f"{source[:close]}\n{INDENT}{self.line}\n{source[close:]}"
        return f"{source[:line_start]}{INDENT}{self.line}\n{source[line_start:]}"


def directives(source: str, file: str, kernel: str) -> list[Directive]:
    """The directives of kernel `kernel`'s schedule blocks, in order."""
    from zhenwu_cc.frontend.parser import parse

    source = source.removeprefix("\ufeff")
    out = []
    for sched in parse(source, file).schedules:
        if sched.kernel != kernel:
            continue
        for d in sched.directives:
            s = d.span
            text = source[_offset(source, s.line, s.col):_offset(source, s.end_line, s.end_col)]
            out.append(Directive(" ".join(text.split()), s.line, s.col, s.end_line, s.end_col))
    return out


def _schedule_close(source: str, kernel: str) -> int | None:
    """The offset of the closing brace of kernel `kernel`'s last schedule block, if it has one."""
    from zhenwu_cc.frontend.parser import parse

    found = [s.span for s in parse(source, "<edit>").schedules if s.kernel == kernel]
    if not found:
        return None
    s = found[-1]
    return _offset(source, s.end_line, s.end_col) - 1


def _offset(source: str, line: int, col: int) -> int:
    """The string offset of 1-based (line, col)."""
    start = 0
    for _ in range(line - 1):
        start = source.index("\n", start) + 1
    return start + col - 1
