"""The grammar's safety: no LALR conflict resolved behind our back, no recursion limit on long or
deep expressions, and keywords that never steal a name."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import lark
import pytest

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.frontend import build
from zhenwu_cc.frontend.parser import DIRECTIVES, MAX_DEPTH

GRAMMAR = resources.files("zhenwu_cc.frontend").joinpath("grammar.lark").read_text()


# ---- LALR conflicts ------------------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _lark_log():
    """lark's log at DEBUG level; with debug=True it reports each shift/reduce conflict that
    LALR would otherwise resolve silently (as a shift)."""
    handler, level = _Records(), lark.logger.level
    lark.logger.addHandler(handler)
    lark.logger.setLevel(logging.DEBUG)
    try:
        yield handler.messages
    finally:
        lark.logger.removeHandler(handler)
        lark.logger.setLevel(level)


def conflicts(grammar: str) -> list[str]:
    """The conflicts lark reports while building an LALR(1) parser for `grammar` (uncached)."""
    with _lark_log() as messages:
        lark.Lark(grammar, parser="lalr", debug=True)
    return [m for m in messages if "conflict" in m.lower() or "collision" in m.lower()]


def test_the_grammar_has_no_lalr_conflicts():
    assert conflicts(GRAMMAR) == []


def test_the_conflict_check_catches_an_ambiguous_grammar():
    """The same capture on `e: e "+" e`: without it LALR would quietly pick a shift."""
    found = conflicts('start: e\ne: e "+" e | "x"\n')
    assert found and "Shift/Reduce" in found[0] and "PLUS" in found[0]


def test_the_conflict_check_catches_an_ambiguity_added_to_our_grammar():
    """Chained comparisons (`a < b < c`) made ambiguous: `expr COMPOP expr` instead of arith."""
    rule = "| arith COMPOP arith"
    assert GRAMMAR.count(rule) == 1
    found = conflicts(GRAMMAR.replace(rule, "| expr COMPOP expr"))
    assert any("COMPOP" in m for m in found)


def test_reduce_reduce_conflicts_are_errors_in_lark():
    """Reduce/reduce collisions are never silent: lark raises, so building the grammar at all
    (as the test above does) rules them out."""
    with pytest.raises(lark.exceptions.GrammarError, match="Reduce/Reduce"):
        conflicts('start: a | b\na: "x"\nb: "x"\n')


# ---- long and deep expressions -------------------------------------------------------------------
def _kernel(expr: str) -> str:
    return f"kernel k(x: f32[4, 4]) -> f32[4, 4] {{\n    y = {expr}\n    return y\n}}\n"


def _ops(module) -> Counter:
    (kernel,) = module.ops
    return Counter(op.name for op in kernel.body.block.ops)


@pytest.mark.parametrize("terms", [500, 2000])
def test_a_long_flat_sum_builds(terms):
    ops = _ops(build(_kernel(" + ".join(["x"] * terms))))
    assert ops == Counter({"zk.add": terms - 1, "zk.return": 1})


def test_a_500_deep_mix_of_operators_and_calls_builds():
    wraps = ["exp({})", "-({})", "({} * x)", "tanh({})", "({} - x)"] * 100
    expr = "x"
    for w in wraps:
        expr = w.format(expr)
    ops = _ops(build(_kernel(expr)))
    assert ops == Counter({"zk.exp": 100, "zk.neg": 100, "zk.mul": 100, "zk.tanh": 100,
                           "zk.sub": 100, "zk.return": 1})


def test_redundant_parentheses_add_no_depth():
    ops = _ops(build(_kernel("(" * 5000 + "x" + ")" * 5000)))
    assert ops == Counter({"zk.return": 1})


@pytest.mark.parametrize("wrap", ["(x + {})", "-({})", "exp({})", "[{}][0]"])
def test_nesting_beyond_the_limit_is_zk0104(wrap):
    expr = "x"
    for _ in range(MAX_DEPTH + 10):
        expr = wrap.format(expr)
    with pytest.raises(CompileError) as info:
        build(_kernel(expr))
    assert [d.code for d in info.value.diagnostics] == ["ZK0104"]


def test_nesting_just_under_the_limit_builds():
    expr = "x"
    for _ in range(MAX_DEPTH - 5):
        expr = f"(x + {expr})"
    assert _ops(build(_kernel(expr)))["zk.add"] == MAX_DEPTH - 5


def test_nesting_beyond_the_limit_through_the_cli(cli, zk_file):
    path = zk_file(_kernel("-(" * (MAX_DEPTH * 3) + "x" + ")" * (MAX_DEPTH * 3)))
    result = cli("check", path)
    assert result.code == 1
    assert "error[ZK0104]" in result.err and "Traceback" not in result.err


# ---- keywords and names --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiles", "returns", "scale", "as_", "in2", "kernel_x",
                                  "return_x", "schedule1", "hbm2", "split_kx", "_tile"])
def test_names_that_start_with_keywords_bind(name):
    module = build(f"kernel k(x: f32[4]) -> f32[4] {{ {name} = x * 2\n return {name} }}")
    assert _ops(module)["zk.mul"] == 1


@pytest.mark.parametrize("name", ["tile", "precision", "accumulate", "place", "buffers", "as",
                                  "in", "hbm", "l2", "stacks", "split_k", "schedule", "kernel",
                                  "split", "fuse", "off"])
def test_keywords_bind_as_names_inside_kernels(name):
    module = build(f"kernel k(x: f32[4]) -> f32[4] {{ {name} = x * 2\n return {name} }}")
    assert _ops(module)["zk.mul"] == 1


def test_keywords_as_names_in_a_schedule():
    src = ("kernel k(x: f32[4, 4], w: f32[4, 4]) -> f32[4, 4] {\n"
           "    tile = x @ w\n    l2 = tile * 2\n    as = l2 + 1\n    return as\n}\n"
           "schedule k {\n    tile tile [4, 4, 4] split_k 2\n    place l2 in l2\n"
           "    precision as as f16\n}\n")
    (kernel,) = build(src).ops
    ops = {op.name: op for op in kernel.body.block.ops}
    assert ops["zk.matmul"].attributes["zk.tile"].split_k.data == 2
    assert ops["zk.mul"].attributes["zk.place"].memory.data == "l2"
    assert "zk.precision" in ops["zk.add"].attributes


def test_return_is_still_a_keyword():
    with pytest.raises(CompileError) as info:
        build("kernel k(x: f32[4]) -> f32[4] { return = x\n return x }")
    assert info.value.diagnostics[0].code == "ZK0102"


@pytest.mark.parametrize("directive, guess", [
    ("tiles y [4, 4, 4]", "tile"), ("bufers 2", "buffers"), ("precison x as f16", "precision"),
    ("acumulate f32", "accumulate"), ("placement x in l2", "place"),
    ("tile y [4, 4, 4] splitk 2", "split_k"), ("splt y 2", "split"), ("fues y off", "fuse"),
])
def test_an_unknown_directive_is_zk0408_with_a_guess(directive, guess):
    src = ("kernel k(x: f32[4, 4], w: f32[4, 4]) -> f32[4, 4] { y = x @ w\n return y }\n"
           f"schedule k {{\n    {directive}\n}}\n")
    with pytest.raises(CompileError) as info:
        build(src)
    (diag,) = info.value.diagnostics
    assert diag.code == "ZK0408"
    assert diag.help == f"did you mean `{guess}`?"


def test_an_unknown_directive_far_from_any_lists_the_directives():
    with pytest.raises(CompileError) as info:
        build("kernel k(x: f32[4]) -> f32[4] { return x }\nschedule k { xyz 3 }")
    (diag,) = info.value.diagnostics
    assert diag.code == "ZK0408" and diag.span.line == 2
    assert all(d in diag.help for d in DIRECTIVES)


# ---- generated tables ----------------------------------------------------------------------------
def test_the_generated_tables_match_the_grammar():
    """`make parser` was run after the last grammar edit: regenerating gives the same bytes."""
    from zhenwu_cc.frontend import _tables, gen_tables

    assert _tables.GRAMMAR_SHA256 == hashlib.sha256(GRAMMAR.encode()).hexdigest()
    assert gen_tables.render(GRAMMAR) == gen_tables.OUTPUT.read_text("utf-8")


def test_generating_the_tables_is_deterministic():
    """lark numbers LALR states in set-iteration order; the generator renumbers them, so two
    interpreters with different hash seeds write the same file."""
    script = "import sys; from zhenwu_cc.frontend import gen_tables as g; " \
             "sys.stdout.write(g.render(g.grammar_text()))"
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")}
    assert len(outs) == 1


def test_parsing_writes_nothing_to_the_temp_dir(tmp_path):
    """No parser cache in the shared temp dir, where another user could plant a pickle."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "zhenwu_cc", "check", "examples/gemm.zk"], env=env,
                   cwd=Path(__file__).resolve().parent.parent, check=True, capture_output=True)
    assert list(tmp_path.iterdir()) == []
