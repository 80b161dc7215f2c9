"""User-facing diagnostics: stable codes, source spans, notes, fix-its; text and JSON renderings.

Every user error anywhere in the toolchain is raised as `CompileError` carrying one or more
`Diagnostic`s. The CLI renders them as `file:line:col: error[ZKnnnn]: message` plus an excerpt
with a caret, or as JSON records. `CODES` is the registry; docs/errors.md documents each entry and
a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DIAGNOSTIC_SCHEMA = "zhenwu-cc.diagnostic/1"

# code -> short title. Ranges: 00xx command line and files, 01xx syntax, 02xx names,
# 03xx types and shapes, 04xx schedule, 05xx run inputs, 06xx lowering and on-chip memory,
# 07xx targets and cost, 08xx low precision, 09xx HBM placement, 10xx IR files (`opt`).
CODES: dict[str, str] = {
    "ZK0001": "cannot read input file",
    "ZK0002": "bad -D definition",
    "ZK0003": "kernel not found",
    "ZK0004": "several kernels: choose one",
    "ZK0005": "cannot write output file",
    "ZK0006": "unknown pipeline stage or pass",
    "ZK0007": "output would overwrite an input",
    "ZK0008": "bad IR dump directory",
    "ZK0101": "unexpected character",
    "ZK0102": "unexpected token",
    "ZK0103": "unexpected end of input",
    "ZK0104": "expression nested too deeply",
    "ZK0105": "invalid number literal",
    "ZK0106": "source is not valid UTF-8",
    "ZK0107": "number beyond the range of f64",
    "ZK0201": "undefined name",
    "ZK0202": "name bound twice",
    "ZK0203": "unknown function",
    "ZK0204": "unknown dtype",
    "ZK0205": "duplicate kernel",
    "ZK0206": "duplicate parameter",
    "ZK0207": "unknown shape parameter",
    "ZK0208": "name shadows a builtin or parameter",
    "ZK0209": "missing return",
    "ZK0210": "statement after return",
    "ZK0301": "matmul shapes do not match",
    "ZK0302": "shapes cannot be broadcast",
    "ZK0303": "mixed dtypes without a common type",
    "ZK0304": "axis out of range",
    "ZK0305": "wrong number of arguments",
    "ZK0306": "unknown or bad keyword argument",
    "ZK0307": "result does not match the declared type",
    "ZK0308": "operation not defined for this dtype",
    "ZK0309": "reshape changes the element count",
    "ZK0310": "slice out of range",
    "ZK0311": "literal not representable in the dtype",
    "ZK0312": "scalar where a tensor is needed",
    "ZK0313": "bad shape",
    "ZK0314": "bad permutation",
    "ZK0315": "concat shapes do not match",
    "ZK0316": "dimension expression is not an exact integer",
    "ZK0317": "wrong number of results",
    "ZK0318": "tensor size beyond i64",
    "ZK0319": "operation count beyond i64",
    "ZK0401": "schedule for unknown kernel",
    "ZK0402": "schedule names an unknown value",
    "ZK0403": "bad tile sizes",
    "ZK0404": "bad precision directive",
    "ZK0405": "bad placement directive",
    "ZK0406": "bad buffers directive",
    "ZK0407": "directive given twice",
    "ZK0408": "unknown schedule directive",
    "ZK0409": "bad accumulate directive",
    "ZK0410": "duplicate schedule block",
    "ZK0501": "missing or extra input",
    "ZK0502": "input has the wrong shape",
    "ZK0503": "input has the wrong dtype",
    "ZK0504": "cannot read inputs file",
    "ZK0505": "run needs too much host memory",
    "ZK0506": "bad ZHENWU_MAX_HOST_BYTES",
    "ZK0507": "NaN in a dtype without NaN",
    "ZK0508": "numerics check failed",
    "ZK0509": "numerics check inconclusive",
    "ZK0510": "numerics check needs too much host memory",
    "ZK0511": "bad input range",
    "ZK0512": "bad argument to a Python API function",
    "ZK0513": "inputs file member disagrees with its header",
    "ZK0601": "on-chip buffers exceed the SRAM of a compute unit",
    "ZK0602": "tile IR without SRAM buffers",
    "ZK0603": "composite op reaches tiling",
    "ZK0604": "tile does not fit on chip",
    "ZK0605": "tile directive cannot apply",
    "ZK0606": "tile directive overridden by another",
    "ZK0607": "split directive cannot apply",
    "ZK0608": "fuse directive has no effect",
    "ZK0609": "bad fuse directive",
    "ZK0610": "tile index outside the tensor",
    "ZK0611": "SRAM buffer beyond the SRAM capacity",
    "ZK0612": "live SRAM buffers overlap",
    "ZK0613": "read of an uninitialised SRAM buffer",
    "ZK0614": "read of HBM data never stored",
    "ZK0615": "output elements never stored",
    "ZK0616": "tiles store different data to one place",
    "ZK0617": "index arithmetic divides by zero",
    "ZK0618": "directives of one fused grid disagree",
    "ZK0619": "scale unit on a value that is not a softmax's result",
    "ZK0701": "unknown target",
    "ZK0702": "malformed target file",
    "ZK0703": "dtype not supported by the target's tensor engine",
    "ZK0801": "contraction-axis scaling of a value used elsewhere",
    "ZK0802": "fp8_fast accumulation without an FP8 or FP4 matmul",
    "ZK0803": "tile cuts the scale blocks of a quantised value",
    "ZK0901": "kernel exceeds the target's HBM capacity",
    "ZK0902": "HBM stack over its capacity",
    "ZK0903": "placement names an HBM stack the target lacks",
    "ZK0904": "L2-resident tensors exceed the persisting L2",
    "ZK1001": "cannot parse IR",
    "ZK1002": "IR does not verify",
    "ZK1003": "IR nested too deeply",
    "ZK1004": "pass run on IR of the wrong stage",
    "ZK1101": "serve: request is not a JSON object",
    "ZK1102": "serve: unknown command",
    "ZK1103": "serve: missing or ill-typed request field",
    "ZK1104": "serve: request line too long",
    "ZK1105": "serve: command not available yet",
    "ZK1106": "eval: outputs over the default error budget",
    "ZK1201": "tune: bad search option",
    "ZK1202": "tune: bad Dask scheduler address",
    "ZK1203": "tune: cannot reach the Dask scheduler",
    "ZK1204": "tune: unsafe cache directory",
    "ZK1205": "tune: no candidate passed verification",
}


# Python 3.11's `dataclass` compiles each method it generates at every start-up (~0.6M
# instructions each), so these records generate only what is used: `__init__` and `__eq__`
# (diagnostics are compared: fast_cost.py, tests), `__hash__` for spans (values, kept in sets), no
# `__repr__` (nothing prints them; the CLI and the API render `to_dict()` or `render_text`).
@dataclass(frozen=True, repr=False)
class Span:
    """A region of a source file; lines and columns count from 1, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def point(file: str, line: int, col: int, width: int = 1) -> Span:
        return Span(file, line, col, line, col + max(width, 1))

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "col": self.col,
                "end_line": self.end_line, "end_col": self.end_col}


@dataclass(repr=False)
class Note:
    """A secondary message, at its own span if it has one."""

    message: str
    span: Span | None = None


@dataclass(repr=False)
class FixIt:
    """Replace the text at `span` with `replacement` (an agent can apply it mechanically)."""

    span: Span
    replacement: str


@dataclass(repr=False)
class Diagnostic:
    """One error or warning: its code, message, span, notes, fix-its and help."""

    code: str
    message: str
    span: Span | None = None
    notes: tuple[Note, ...] = ()
    fixits: tuple[FixIt, ...] = ()
    help: str | None = None
    severity: str = "error"

    def __post_init__(self):
        if self.code not in CODES:
            raise ValueError(f"unregistered diagnostic code {self.code}")

    def to_dict(self) -> dict:
        rec: dict = {"schema": DIAGNOSTIC_SCHEMA, "severity": self.severity, "code": self.code,
                     "title": CODES[self.code], "message": self.message}
        rec["span"] = self.span.to_dict() if self.span else None
        rec["notes"] = [{"message": n.message, "span": n.span.to_dict() if n.span else None}
                        for n in self.notes]
        rec["help"] = self.help
        rec["fixits"] = [{"span": f.span.to_dict(), "replacement": f.replacement}
                         for f in self.fixits]
        return rec

    def to_json(self) -> str:
        """`to_dict()` as JSON text: keys in the same order, indented as the CLI prints them."""
        import json  # here: a clean `check` prints no JSON and so never loads it

        return json.dumps(self.to_dict(), indent=2)


class CompileError(Exception):
    """A user error: one or more diagnostics. Never a bug in the compiler."""

    def __init__(self, diagnostics: Diagnostic | Sequence[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(f"{d.code}: {d.message}" for d in self.diagnostics))


def error(code: str, message: str, span: Span | None = None, *, notes: Iterable[Note] = (),
          fixits: Iterable[FixIt] = (), help: str | None = None) -> CompileError:
    """Build a CompileError for one diagnostic (raise the result)."""
    return CompileError(Diagnostic(code, message, span, tuple(notes), tuple(fixits), help))


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt `word`, if one is close enough to suggest."""
    import difflib  # here: only a misspelling pays for it, not every start-up

    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
    adjacent characters each count 1."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def is_typo(word: str, guess: str) -> bool:
    """Whether `word` is a misspelling of `guess` (the same thing mistyped), so replacing it is
    safe to apply mechanically, rather than a different name that merely looks alike.

    A typo differs by case, by one swap of adjacent letters, by one doubled letter, by one letter
    left out, or, for names of 5 letters or more, by at most one edit per 4 letters of `guess`
    (`softmx`, `sigmod`, `layernrom`). Never a typo: `guess` plus a prefix or suffix
    (`hardsigmoid`, `relu6`, `exp2`, `y2`: a variant is another function or value, not `sigmoid`,
    `relu`, `exp`, `y`), and a changed letter in a short name (`selu` is not `silu`).
    """
    a, b = word.lower(), guess.lower()
    if a == b:
        return True
    if len(a) == len(b) + 1 and any(a[:i] + a[i + 1:] == b and a[i] == a[i - 1]
                                    for i in range(1, len(a))):
        return True  # one doubled letter: `xx`, `expp`
    if a.startswith(b) or a.endswith(b):
        return False
    distance = _edit_distance(a, b)
    if distance == 1 and len(a) == len(b) and sorted(a) == sorted(b):
        return True  # one swap of adjacent letters: `tahn`
    if len(b) < 5:
        return distance == 1 and len(a) == len(b) - 1  # one letter left out: `rlu`
    return distance <= len(b) // 4


def typo_fixits(span: Span, word: str, guess: str | None) -> tuple[FixIt, ...]:
    """A fix-it replacing `word` with `guess` when that is a typo fix (`is_typo`); otherwise
    none: a "did you mean" for a different name belongs in `help`, for a person to judge."""
    return (FixIt(span, guess),) if guess and is_typo(word, guess) else ()


class SourceMap:
    """Source texts by file name, so diagnostics can quote the offending line. A plain class:
    nothing compares or prints one, and it is built at every start-up."""

    def __init__(self, texts: dict[str, str] | None = None):
        self.texts = {} if texts is None else texts

    def add(self, file: str, text: str) -> None:
        self.texts[file] = text

    def line(self, file: str, line: int) -> str | None:
        text = self.texts.get(file)
        if text is None:
            return None
        lines = text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else None


EXCERPT_WIDTH = 120


def _excerpt(span: Span, sources: SourceMap) -> list[str]:
    text = sources.line(span.file, span.line)
    if text is None:
        return []
    text = text.expandtabs(1)
    col = span.col
    width = (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
    if len(text) > EXCERPT_WIDTH:  # a window around the caret, not a thousand-column line
        start = max(0, min(col - 1 - EXCERPT_WIDTH // 4, len(text) - EXCERPT_WIDTH))
        text = ("..." if start else "") + text[start:start + EXCERPT_WIDTH] + (
            "..." if start + EXCERPT_WIDTH < len(text) else "")
        col = col - start + (3 if start else 0)
    width = max(1, min(width, max(1, len(text) - col + 1)))
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) + col - 1) + "^" + "~" * (width - 1)]


def _loc(span: Span | None) -> str:
    return f"{span.file}:{span.line}:{span.col}: " if span else ""


def render_text(diag: Diagnostic, sources: SourceMap) -> str:
    out = [f"{_loc(diag.span)}{diag.severity}[{diag.code}]: {diag.message}"]
    if diag.span:
        out += _excerpt(diag.span, sources)
    for note in diag.notes:
        out.append(f"{_loc(note.span)}note: {note.message}")
        if note.span:
            out += _excerpt(note.span, sources)
    if diag.help:
        out.append(f"help: {diag.help}")
    for fix in diag.fixits:
        out.append(f"fix-it: replace {fix.span.line}:{fix.span.col}-{fix.span.end_line}:"
                   f"{fix.span.end_col} with `{fix.replacement}`")
    return "\n".join(out)
