"""Fix-its are applied mechanically (docs/agent-guide.md), so one is offered only where the
replacement means the same thing: a typo or a dtype alias. A look-alike that is a different
function or value (`hardsigmoid` is not `sigmoid`) gets at most a `help:`."""

from __future__ import annotations

import pytest

from zhenwu_cc.core.diagnostics import is_typo


def _call(func: str) -> str:
    return f"kernel k(x: f32[4, 8]) -> f32[4, 8] {{\n    return {func}(x)\n}}\n"


@pytest.mark.parametrize("func, guess, fixit", [
    ("hardsigmoid", "sigmoid", False),  # a different function that ends in a builtin's name
    ("relu6", "relu", False),
    ("exp2", "exp", False),
    ("softmx", "softmax", True),  # a letter left out
    ("sigmod", "sigmoid", True),
    ("tahn", "tanh", True),  # two letters swapped
    ("float32", "f32", True),  # a dtype alias: the same thing by another name
])
def test_unknown_function_fixit_only_for_typos(cli, zk_file, func, guess, fixit):
    r = cli("check", zk_file(_call(func)), "--format", "json")
    assert r.code == 1
    (diag,) = r.json["diagnostics"]
    assert diag["code"] == "ZK0203" and diag["help"] == f"did you mean `{guess}`?"
    expected = [{"span": diag["span"], "replacement": guess}] if fixit else []
    assert diag["fixits"] == expected
    text = cli("check", zk_file(_call(func)))
    assert ("fix-it: replace" in text.err) is fixit


@pytest.mark.parametrize("body, code, fixit", [
    ("y = exp(x)\n    return yy", "ZK0201", "y"),  # a doubled letter
    ("y = exp(x)\n    return y2", "ZK0201", None),  # another value, not `y`
])
def test_undefined_name_fixit_only_for_typos(cli, zk_file, body, code, fixit):
    src = f"kernel k(x: f32[4]) -> f32[4] {{\n    {body}\n}}\n"
    (diag,) = cli("check", zk_file(src), "--format", "json").json["diagnostics"]
    assert diag["code"] == code
    assert [f["replacement"] for f in diag["fixits"]] == ([fixit] if fixit else [])


@pytest.mark.parametrize("word, guess, typo", [
    ("Exp", "exp", True), ("expp", "exp", True), ("rlu", "relu", True),
    ("layernrom", "layernorm", True), ("logsoftmax", "log_softmax", True),
    ("decompse", "decompose", True),
    ("selu", "silu", False),  # one letter changed in a short name: another function
    ("tiles", "tile", False), ("hardsigmoid", "sigmoid", False), ("xs", "x", False),
    ("softmax_v2", "softmax", False), ("gemm", "gelu", False),
])
def test_what_counts_as_a_typo(word, guess, typo):
    assert is_typo(word, guess) is typo
