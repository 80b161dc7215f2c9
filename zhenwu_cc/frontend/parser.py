"""Source text -> `ast.Module`, with lark's LALR parser and spans on every node.

The lark tree is turned into the AST by a non-recursive transformer, so a long expression cannot
overflow Python's stack; lark errors become ZK01xx diagnostics.
"""

from __future__ import annotations

import math
import re
from functools import cache

import lark
from lark import Token, v_args
from lark.visitors import Transformer_NonRecursive

from zhenwu_cc.core.diagnostics import CompileError, Span, did_you_mean, error
from zhenwu_cc.frontend import ast

MAX_DEPTH = 1000  # deeper expressions get ZK0104 instead of straining every later stage
I64_MAX = 2**63 - 1  # compile-time integers are i64; larger literals get ZK0105
DIRECTIVES = ("tile", "split", "fuse", "precision", "accumulate", "place", "buffers")
_DIRECTIVE_TERMINALS = {"_" + d.upper() for d in DIRECTIVES}
_TERMINAL_WORDS = {"NAME": "a name", "INT": "an integer", "FLOAT": "a number",
                   "SIGNED_INT": "an integer", "COMPOP": "a comparison", "ADDOP": "`+` or `-`",
                   "MULOP": "`*`, `/` or `@`", "$END": "end of input"}


@cache
def _lark() -> lark.Lark:
    """The parser, from the tables `make parser` generates (gen_tables.py says why): plain data,
    no pickle, no analysis at start-up; its contextual lexer is lexer.py's (one regex, not one a
    parser state)."""
    from zhenwu_cc.frontend import _tables
    from zhenwu_cc.frontend.lexer import ZkLexer

    return lark.Lark._load_from_dict(_tables.TABLES["data"], _tables.TABLES["memo"],
                                     _plugins={"ContextualLexer": ZkLexer})


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


class _ToAst(Transformer_NonRecursive):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, meta) -> Span:
        return _span(self.file, meta)

    def _int(self, tok: Token) -> int:
        """An integer literal, at most i64 (past 4300 digits Python's int() refuses it anyway)."""
        digits = tok.lstrip("-").lstrip("0") or "0"  # int() counts leading zeros against its limit
        value = (-int(digits) if tok.startswith("-") else int(digits)) if len(digits) <= 19 else None
        if value is not None and -I64_MAX - 1 <= value <= I64_MAX:
            return value
        shown = tok if len(tok) <= 24 else tok[:20] + "..."
        raise error("ZK0105", f"integer literal `{shown}` does not fit in 64 bits",
                    _tok_span(self.file, tok),
                    help="for a large number write a float literal, e.g. `1e20`")

    # expressions
    @v_args(meta=True)
    def name(self, meta, c):
        return ast.Name(self._s(meta), str(c[0]))

    @v_args(meta=True)
    def int_lit(self, meta, c):
        return ast.Number(self._s(meta), self._int(c[0]), str(c[0]))

    @v_args(meta=True)
    def float_lit(self, meta, c):
        value = float(c[0])
        if math.isinf(value):
            shown = c[0] if len(c[0]) <= 24 else c[0][:20] + "..."
            raise error("ZK0107", f"number literal `{shown}` is beyond the range of f64 (about "
                        "1.8e308)", _tok_span(self.file, c[0]),
                        help="write a smaller number, or `inf` if infinity is meant")
        return ast.Number(self._s(meta), value, str(c[0]))

    @v_args(meta=True)
    def neg(self, meta, c):
        return ast.Neg(self._s(meta), c[0])

    @v_args(meta=True)
    def binop(self, meta, c):
        return ast.BinOp(self._s(meta), str(c[1]), c[0], c[2])

    compare = binop

    @v_args(meta=True)
    def call(self, meta, c):
        func, rest = c[0], [x for x in c[1:] if x is not None]
        for before, after in zip(rest, rest[1:]):
            if isinstance(before, ast.Kwarg) and not isinstance(after, ast.Kwarg):
                raise error("ZK0305", f"positional argument after the keyword argument "
                            f"`{before.name}=` in `{func}(...)`", after.span,
                            help="put positional arguments first, as in Python")
        args = [a for a in rest if not isinstance(a, ast.Kwarg)]
        kwargs = [a for a in rest if isinstance(a, ast.Kwarg)]
        return ast.Call(self._s(meta), str(func), _tok_span(self.file, func), args, kwargs)

    @v_args(meta=True)
    def kwarg(self, meta, c):
        return ast.Kwarg(self._s(meta), str(c[0]), c[1])

    @v_args(meta=True)
    def seq(self, meta, c):
        return ast.Seq(self._s(meta), [x for x in c if x is not None])

    @v_args(meta=True)
    def index(self, meta, c):
        return ast.Index(self._s(meta), c[0], list(c[1:]))

    @v_args(meta=True)
    def sub_index(self, meta, c):
        return ast.SubIndex(self._s(meta), c[0])

    @v_args(meta=True)
    def sub_slice(self, meta, c):
        return ast.SubSlice(self._s(meta), c[0], c[1])

    # kernels
    @v_args(meta=True)
    def tensor_type(self, meta, c):
        dims = [d for d in c[1:] if d is not None]
        return ast.TensorType(self._s(meta), str(c[0]), _tok_span(self.file, c[0]), dims)

    @v_args(meta=True)
    def shape_param(self, meta, c):
        return ast.ShapeParam(self._s(meta), str(c[0]), self._int(c[1]))

    def shape_params(self, c):
        return [x for x in c if x is not None]

    params = shape_params

    @v_args(meta=True)
    def param(self, meta, c):
        return ast.Param(self._s(meta), str(c[0]), c[1])

    @v_args(meta=True)
    def result(self, meta, c):
        return ast.Result(self._s(meta), str(c[0]) if c[0] is not None else None, c[1])

    @v_args(meta=True)
    def results_one(self, meta, c):
        return [ast.Result(self._s(meta), None, c[0])]

    def results_many(self, c):
        return list(c)

    @v_args(meta=True)
    def assign(self, meta, c):
        return ast.Assign(self._s(meta), str(c[0]), _tok_span(self.file, c[0]), c[1])

    @v_args(meta=True)
    def ret(self, meta, c):
        return ast.Return(self._s(meta), list(c))

    @v_args(meta=True)
    def kernel(self, meta, c):
        name, shape_params, params, results, *body = c
        return ast.Kernel(self._s(meta), str(name), _tok_span(self.file, name),
                          shape_params or [], params, results, body)

    # schedules
    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(_tok_span(self.file, tok), str(tok))

    def name_list(self, c):
        return [self._ident(t) for t in c]

    @v_args(meta=True)
    def int_list(self, meta, c):
        return (self._s(meta), [self._int(x) for x in c if x is not None])

    @v_args(meta=True)
    def tile_dir(self, meta, c):
        sizes_span, sizes = c[1]
        return ast.TileDirective(self._s(meta), self._ident(c[0]), sizes, sizes_span,
                                 self._int(c[2]) if c[2] is not None else None)

    @v_args(meta=True)
    def split_dir(self, meta, c):
        return ast.SplitDirective(self._s(meta), self._ident(c[0]), self._int(c[1]),
                                  _tok_span(self.file, c[1]))

    @v_args(meta=True)
    def fuse_dir(self, meta, c):
        return ast.FuseDirective(self._s(meta), self._ident(c[0]), self._ident(c[1]))

    @v_args(meta=True)
    def scale_mode(self, meta, c):
        args = [x for x in c[1:] if x is not None]
        options = [self._ident(x) for x in args if x.type == "NAME"]
        return (self._ident(c[0]), [self._int(x) for x in args if x.type != "NAME"],
                options[0] if options else None)

    @v_args(meta=True)
    def precision_dir(self, meta, c):
        mode, args, option = c[2] if c[2] is not None else (None, [], None)
        return ast.PrecisionDirective(self._s(meta), c[0], self._ident(c[1]), mode, args, option)

    @v_args(meta=True)
    def accumulate_dir(self, meta, c):
        return ast.AccumulateDirective(self._s(meta), self._ident(c[0]),
                                       self._ident(c[1]) if c[1] is not None else None)

    def place_hbm(self, c):
        stacks = [self._int(x) for x in c if x is not None]
        return ("hbm", stacks or None)

    def place_l2(self, c):
        return ("l2", None)

    @v_args(meta=True)
    def place_dir(self, meta, c):
        memory, stacks = c[1]
        return ast.PlaceDirective(self._s(meta), c[0], memory, stacks)

    @v_args(meta=True)
    def buffers_dir(self, meta, c):
        return ast.BuffersDirective(self._s(meta), self._int(c[0]))

    @v_args(meta=True)
    def schedule(self, meta, c):
        return ast.Schedule(self._s(meta), str(c[0]), _tok_span(self.file, c[0]), list(c[1:]))

    @v_args(meta=True)
    def start(self, meta, c):
        span = self._s(meta) if not meta.empty else Span(self.file, 1, 1, 1, 1)
        return ast.Module(span, [x for x in c if isinstance(x, ast.Kernel)],
                          [x for x in c if isinstance(x, ast.Schedule)])


def _describe_expected(expected: set[str]) -> str:
    parser = _lark()
    words = []
    for term in sorted(expected):
        if term in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[term])
            continue
        try:
            pattern = parser.get_terminal(term).pattern
        except KeyError:
            words.append(term)
            continue
        if pattern.type == "str":
            words.append(f"`{pattern.value}`")
        else:  # a keyword: _TILE matches /tile\b/
            words.append(f"`{term.lstrip('_').lower()}`")
    words = sorted(set(words))
    if len(words) > 8:
        return ", ".join(words[:8]) + ", ..."
    return ", ".join(words)


def _end_of_input(expected: set[str]) -> str:
    """Name what was expected only when it is a short list: mid-expression, LALR's expected set
    is every token that could continue, which reads as noise."""
    words = _describe_expected(expected)
    return "unexpected end of input" + (f"; expected {words}" if words.count(",") < 3 else "")


def _syntax_error(file: str, exc: lark.exceptions.UnexpectedInput):
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        span = Span.point(file, exc.line, exc.column)
        char = exc.char
        help = "use pow(x, y) for powers" if char == "*" else None
        return error("ZK0101", f"unexpected character {char!r}", span, help=help)
    if isinstance(exc, lark.exceptions.UnexpectedEOF):
        return error("ZK0103", _end_of_input(set(exc.expected)),
                     help="check for an unclosed `{`, `(` or `[`")
    assert isinstance(exc, lark.exceptions.UnexpectedToken)
    tok = exc.token
    if tok.type == "$END":
        lines = max(1, exc.line if exc.line and exc.line > 0 else 1)
        return error("ZK0103", _end_of_input(exc.expected),
                     Span.point(file, lines, max(1, exc.column)),
                     help="check for an unclosed `{`, `(` or `[`")
    span = _tok_span(file, tok)
    if tok.type == "NAME" and exc.expected & _DIRECTIVE_TERMINALS:
        keywords = [t.lstrip("_").lower() for t in exc.expected if t.startswith("_")]
        guess = did_you_mean(str(tok), keywords)
        return error("ZK0408", f"unknown schedule directive `{tok}`", span,
                     help=f"did you mean `{guess}`?" if guess else
                     "directives are: " + ", ".join(DIRECTIVES))
    help = None
    if str(tok) == "*" and exc.expected and "MINUS" in exc.expected:
        help = "`**` is not an operator: use pow(x, y)"
    elif str(tok) == "=" and "COMPOP" in exc.expected:
        help = "bindings are `name = expr` statements; compare with `==`"
    return error("ZK0102", f"unexpected `{tok}`; expected " + _describe_expected(exc.expected),
                 span, help=help)


def _check_depth(file: str, module: ast.Module) -> None:
    """Reject absurdly deep expressions (iteratively, so the check itself cannot overflow)."""
    stack: list[tuple[object, int]] = []
    for k in module.kernels:
        stack.extend((s, 1) for s in k.body)
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error("ZK0104", f"expression nested more than {MAX_DEPTH} levels deep",
                        node.span, help="split the expression into named bindings")
        for child in ast.children(node):
            # a left operand stays level: `x + x + ... + x` is flat source however long it is
            level = isinstance(node, ast.BinOp) and child is node.lhs
            stack.append((child, depth if level else depth + 1))


# A run of characters that starts like a number (`1e`, `1.5.3`, `0x10`, `2x`); valid ones match
# the grammar's FLOAT or INT in full. Only consulted once parsing has failed.
_NUMBER_RUN = re.compile(r"(?<![\w.])(?:\d|\.\d)[\w.]*(?:(?<=[eE])[+-][\w.]*)?")
_VALID_NUMBER = re.compile(r"(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+"
                           r"|[0-9]+")


def _bad_number(file: str, text: str, exc: lark.exceptions.UnexpectedInput):
    """ZK0105 for the first malformed number literal at or before the syntax error, if any."""
    code = re.sub(r"//[^\n]*", lambda m: " " * len(m.group(0)), text)  # keep offsets
    at = getattr(exc, "pos_in_stream", None)
    for m in _NUMBER_RUN.finditer(code):
        if at is not None and m.start() > at:
            return None
        if not _VALID_NUMBER.fullmatch(m.group(0)):
            line = code.count("\n", 0, m.start()) + 1
            col = m.start() - (code.rfind("\n", 0, m.start()) + 1) + 1
            return error("ZK0105", f"invalid number literal `{m.group(0)}`",
                         Span.point(file, line, col, len(m.group(0))),
                         help="numbers are integers (`128`) or decimals with an optional exponent "
                         "(`0.5`, `.5`, `1e-5`); write `2 * x`, not `2x`")
    return None


def parse(text: str, file: str = "<input>") -> ast.Module:
    """Parse `.zk` source into an AST; raises CompileError (ZK01xx) on bad syntax."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark, as Python and clang accept
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise (_bad_number(file, text, exc) or _syntax_error(file, exc)) from None
    try:
        module = _ToAst(file).transform(tree)
    except lark.exceptions.VisitError as exc:  # lark wraps what the callbacks raise
        if isinstance(exc.orig_exc, CompileError):
            raise exc.orig_exc from None
        raise
    _check_depth(file, module)
    return module
