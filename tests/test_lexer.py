"""lexer.py's contextual lexer against lark's own (`lark.lexer.ContextualLexer`), loaded from the
same tables: every parser state's terminals, then tokens, trees, lark's errors and our ZK01xx
diagnostics on a corpus (the examples, every kernel source in tests/, edge cases, every prefix of
an example and seeded mutations). A lark upgrade that changes how lark lexes fails here."""

from __future__ import annotations

import ast as pyast
import random
from pathlib import Path

import lark
import pytest
from lark.exceptions import UnexpectedInput

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.frontend import _tables, parser
from zhenwu_cc.frontend.lexer import ZkLexer

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.zk"))


def _stock() -> lark.Lark:
    return lark.Lark._load_from_dict(_tables.TABLES["data"], _tables.TABLES["memo"])


STOCK = _stock()
OURS = parser._lark()

EDGE_CASES = [
    "",
    "   \n\t\r\n\f ",
    "// only a comment",
    "// a comment at the end, no newline\nkernel k(x: f32[4]) -> f32[4] { return x } // end",
    # keywords as names, and names that start like keywords
    "kernel k(tile: f32[4], in: f32[4]) -> f32[4] { split = tile + in\n return split }",
    "kernel tile(x: f32[4]) -> f32[4] { tiles = x\n as = tiles\n return as }",
    "kernel k(x: f32[4]) -> f32[4] { return split_k(x, l2=hbm, stacks=scale) }",
    "schedule s { tile tile [4, 4] split_k 2\n split split 2\n fuse fuse off\n place in in hbm }",
    "schedule s { precision x as fp8 scale mx(-1, 32, rceil)\n place a, b in hbm stacks(0, 1,) }",
    "schedule s { precision x as fp8 scale block(-1 -2)\n accumulate f32 fp8_fast; buffers 3; }",
    # signs: SIGNED_INT vs ADDOP vs MINUS
    "kernel k(x: f32[4]) -> f32[4] { y = x-1\n z = x - -1\n w = -x--1\n return -(y+-2)*z }",
    "kernel k<N=-4>(x: f32[N]) -> f32[N] { return x }",
    "kernel k(x: f32[4]) -> f32[4] { y = x[-1:, :-2]\n return y }",
    # comparisons, arrows, angle brackets
    "kernel k<M=4,>(x: f32[M]) -> f32[M] { y = x<=1\n z = x < -1 > 2\n return where(x>=y, x, z) }",
    "kernel k(x: f32[4]) - > f32[4] { return x }",
    "kernel k(x: f32[4]) => f32[4] { return x }",
    # numbers
    "kernel k(x: f32[4]) -> f32[4] { return x * 1.5e-3 + .5 + 5. + 1e5 + 007 }",
    "kernel k(x: f32[4]) -> f32[4] { return x * 1e }",
    "kernel k(x: f32[4]) -> f32[4] { return x * 1.5.3 + 0x10 }",
    "kernel k(x: f32[4]) -> f32[4] { return 2x }",
    # bad characters and unexpected tokens
    "kernel k(x: f32[4]) -> f32[4] { return x ** 2 }",
    "kernel k(x: f32[4]) -> f32[4] { return x $ 2 }",
    "kernel k(x: f32[4]) -> f32[4] { return x # 2 }",
    "kernel k(x: f32[4]) -> f32[4] { return é }",
    "kernel k(x: f32[4]) -> f32[4] { return x\x00 }",
    "kernel kernel(x: f32[4]) -> f32[4] { return x }",
    "kernel k(x: f32[4]) -> f32[4] { tile = x\n return x }",
    "kernel k(x: f32[4]) -> f32[4] { y = = x\n return y }",
    "kernel k(x: f32[4]) -> f32[4] { if x == 1 { return x } }",
    "schedule s { tiling c [4] }",
    "schedule s { tile c [4, x] }",
    "schedule s { tile c [-4] }",
    "schedule s { buffers -2 }",
    "return x",
    "kernel k(x: f32[4]) -> f32[4] { return x }}",
    # unterminated input
    "kernel",
    "kernel k(",
    "kernel k(x: f32[4]) -> f32[4] {",
    "kernel k(x: f32[4]) -> f32[4] { return (x + ",
    "schedule s {",
    "schedule s { tile c [4,",
    "kernel k(x: f32[4]) -> f32[4] { return x } schedule",
]


def _test_sources() -> list[str]:
    """Every string literal in tests/*.py that holds a kernel or a schedule."""
    found = []
    for path in sorted((REPO / "tests").glob("*.py")):
        for node in pyast.walk(pyast.parse(path.read_text("utf-8"))):
            if (isinstance(node, pyast.Constant) and isinstance(node.value, str)
                    and ("kernel" in node.value or "schedule" in node.value)
                    and len(node.value) < 20_000):
                found.append(node.value)
    return sorted(set(found))


def _mutations(count: int) -> list[str]:
    """Seeded edits of the examples: characters the grammar cares about, inserted, deleted or
    swapped in, so most of them fail somewhere."""
    rng = random.Random(16)
    texts = [p.read_text("utf-8") for p in EXAMPLES]
    alphabet = list("-+*/<>=!@:;,.()[]{}0123456789eE_ \n\t$#\"") + ["tile", "in", "//", "->"]
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        at = rng.randrange(len(text) + 1)
        edit = rng.randrange(3)
        if edit == 0:
            text = text[:at] + rng.choice(alphabet) + text[at:]
        elif edit == 1:
            text = text[:at] + text[at + rng.randrange(1, 4):]
        else:
            text = text[:at] + rng.choice(alphabet) + text[at + 1:]
        out.append(text)
    return out


def _prefixes(text: str) -> list[str]:
    return [text[:n] for n in range(len(text) + 1)]


CORPUS = ([p.read_text("utf-8") for p in EXAMPLES]
          + [p.read_text("utf-8") for p in sorted((REPO / "tests").rglob("*.zk"))]
          + _test_sources() + EDGE_CASES
          + _prefixes((REPO / "examples" / "gemm.zk").read_text("utf-8"))
          + _mutations(500))


def _token(t) -> tuple | None:
    if t is None:
        return None
    return (t.type, t.value, t.start_pos, t.line, t.column, t.end_line, t.end_column, t.end_pos)


def _error(e: UnexpectedInput) -> tuple:
    return (type(e).__name__, e.line, e.column, e.pos_in_stream,
            sorted(e.expected) if hasattr(e, "expected") else None,
            sorted(e.allowed) if getattr(e, "allowed", None) is not None else None,
            getattr(e, "char", None), _token(getattr(e, "token", None)),
            [_token(t) for t in e.token_history or ()],
            getattr(e, "considered_rules", None), getattr(e.state, "position", None))


def _tokens(p: lark.Lark, text: str) -> list:
    """The tokens the parser is fed, one by one, then its error if it fails."""
    out = []
    interactive = p.parse_interactive(text)
    try:
        for token in interactive.iter_parse():
            out.append(_token(token))
        interactive.feed_eof()
    except UnexpectedInput as e:
        out.append(_error(e))
    return out


def _tree(p: lark.Lark, text: str):
    """The parse tree, every node with its position, or lark's error."""
    try:
        tree = p.parse(text)
    except UnexpectedInput as e:
        return _error(e)
    out = []
    for sub in tree.iter_subtrees_topdown():
        m = sub.meta
        out.append((sub.data, None if m.empty else (m.line, m.column, m.end_line, m.end_column,
                                                    m.start_pos, m.end_pos)))
        out.extend(_token(c) for c in sub.children if isinstance(c, lark.Token))
    return out


def _diagnostics(text: str) -> list:
    try:
        parser.parse(text, "t.zk")
    except CompileError as e:
        return [(d.code, d.message, d.help, d.span and d.span.to_dict()) for d in e.diagnostics]
    return []


def test_the_parser_uses_our_lexer():
    assert type(OURS.parser.lexer) is ZkLexer
    assert type(STOCK.parser.lexer) is lark.lexer.ContextualLexer


def test_every_parser_state_scans_the_terminals_lark_would():
    """For each state: the terminals tried, in lark's order, what an error names as allowed, and
    which string a regex terminal's match turns into."""
    stock, ours = STOCK.parser.lexer, OURS.parser.lexer
    states = OURS.parser.parser._parse_table.states
    pairs = [(stock.lexers[s], ours._state(s)) for s in states] + [(stock.root_lexer, ours._root)]
    assert len(pairs) == len(states) + 1 > 200
    order = _tables.LEXER["order"]
    for theirs, mine in pairs:
        scanner = theirs.scanner
        assert [t.name for t in scanner.terminals] == [n for n in order if n in mine.terms]
        assert (scanner.allowed_types - theirs.ignore_types or {"<END-OF-FILE>"}) == mine.allowed
        assert {name: {t.pattern.value: t.name for t in callback.scanner.terminals}
                for name, callback in theirs.callback.items()} == mine.unless
        assert theirs.newline_types == ours._newline & {t.name for t in theirs.terminals}


def test_the_corpus_is_broad():
    """The corpus reaches lark's error paths (a bad character, a token a state does not accept,
    the end of input too early), not only clean parses."""
    kinds = set()
    for text in CORPUS:
        result = _tree(STOCK, text)
        if isinstance(result, tuple):
            kinds.add((result[0], result[7] and result[7][0] == "$END"))
    assert {("UnexpectedCharacters", None), ("UnexpectedToken", False),
            ("UnexpectedToken", True)} <= kinds
    assert len(CORPUS) > 1000


@pytest.mark.parametrize("chunk", range(4))
def test_tokens_trees_and_errors_match_lark(chunk):
    for text in CORPUS[chunk::4]:
        assert _tokens(OURS, text) == _tokens(STOCK, text), text
        assert _tree(OURS, text) == _tree(STOCK, text), text


def test_diagnostics_match_lark(monkeypatch):
    """Our ZK01xx diagnostics on each source lark rejects (on the others the trees match)."""
    failing = [text for text in CORPUS if isinstance(_tree(STOCK, text), tuple)]
    ours = [_diagnostics(text) for text in failing]
    monkeypatch.setattr(parser, "_lark", lambda: STOCK)
    stock = [_diagnostics(text) for text in failing]
    assert ours == stock
    assert {d[0][0] for d in ours if d} >= {"ZK0101", "ZK0102", "ZK0103", "ZK0105"}

