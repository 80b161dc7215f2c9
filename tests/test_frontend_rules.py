"""Front-end rules added after the first error-code sweep: each is a diagnostic with a
location, never a silent choice."""

import pytest

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.frontend import build


def _code(src: str) -> tuple[str, int, int]:
    with pytest.raises(CompileError) as exc:
        build(src, "k.zk")
    d = exc.value.diagnostics[0]
    return d.code, d.span.line, d.span.col


def test_positional_argument_after_keyword():
    assert _code("kernel k(x: f32[4]) -> f32[] { return sum(axis=0, x) }") == ("ZK0305", 1, 51)


def test_duplicate_result_names():
    src = "kernel k(x: f32[4]) -> (y: f32[4], y: f32[4]) { return x, x }"
    assert _code(src)[0] == "ZK0206"


def test_literal_casts_must_fit():
    assert _code("kernel k() -> f16[] { return f16(1e30) }")[0] == "ZK0311"
    assert _code("kernel k() -> ui8[] { return ui8(-1) }")[0] == "ZK0311"


def test_true_and_false_are_i1_literals():
    module = build("kernel k(m: i1[4]) -> i1[4] { return m == false }\n"
                   "kernel j() -> i1[] { return true }", "k.zk")
    assert len(list(module.ops)) == 2
    assert _code("kernel k(x: f32[4]) -> f32[4] { return x * true }")[0] == "ZK0308"


def test_i64_matmul_stays_i64():
    src = "kernel k(a: i64[4, 4], b: i64[4, 4]) -> i32[4, 4] { return a @ b }"
    assert _code(src)[0] == "ZK0307"


def test_define_given_twice(cli, zk_file):
    path = zk_file("kernel k<M = 4>(x: f32[M]) -> f32[M] { return x }")
    r = cli("check", path, "-D", "M=3", "-D", "M=5", "--format", "json")
    assert r.code == 1 and r.json["diagnostics"][0]["code"] == "ZK0002"
    assert cli("check", path, "-D", "M=3", "-D", "M=3").code == 0
