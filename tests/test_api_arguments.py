"""The Python API validates its arguments: a wrong type or value is a `CompileError` (ZK0512 for
the argument itself), never an exception from inside the compiler; numpy integers are integers,
`bool` is not. A hypothesis test throws junk at every entry point."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError

SRC = """kernel mm<M = 64, N = 32, K = 16>(a: f16[M, K], b: f16[K, N]) -> f16[M, N] {
    c = f16(a @ b)
    return c
}
"""


@pytest.fixture(scope="module")
def k():
    return zhenwu_cc.compile(SRC)


def code_of(call) -> str:
    with pytest.raises(CompileError) as exc:
        call()
    return exc.value.diagnostics[0].code


@pytest.mark.parametrize("source, code", [("", "ZK0003"), ("// nothing here\n", "ZK0003"),
                                          (123, "ZK0512"), (None, "ZK0512"), (b"x", "ZK0512"),
                                          ("a\x00.zk", "ZK0001")])
def test_compile_sources(source, code):
    assert code_of(lambda: zhenwu_cc.compile(source)) == code


@pytest.mark.parametrize("value", ["64", None, 64.0, True, np.float32(64), [64], np.bool_(True)])
def test_defines_must_be_integers(value):
    assert code_of(lambda: zhenwu_cc.compile(SRC, defines={"M": value})) == "ZK0512"


@pytest.mark.parametrize("value", [np.int64(128), np.int32(128), np.uint16(128), 128])
def test_numpy_integers_are_integers(value):
    k = zhenwu_cc.compile(SRC, defines={"M": value})
    assert k.signature["params"]["M"] == 128
    assert k.run(seed=np.uint8(1))["c"].shape == (128, 32)


@pytest.mark.parametrize("call", [
    lambda: zhenwu_cc.compile(SRC, kernel=123),
    lambda: zhenwu_cc.compile(SRC, target=123),
    lambda: zhenwu_cc.compile(SRC, defines=[("M", 64)]),
    lambda: zhenwu_cc.compile(SRC, defines={1: 64}),
    lambda: zhenwu_cc.compile(SRC, fuse=1),
])
def test_compile_arguments(call):
    assert code_of(call) == "ZK0512"


@pytest.mark.parametrize("call", [
    lambda k: k.run(seed=-1), lambda k: k.run(seed=1.5), lambda k: k.run(seed=True),
    lambda k: k.inputs(seed="0"), lambda k: k.check(seed=-3), lambda k: k.reference(seed=None),
    lambda k: k.reference(mode="f32"), lambda k: k.reference(mode=64),
    lambda k: k.inputs([1, 2]), lambda k: k.run("a"), lambda k: k.inputs({1: np.zeros(3)}),
    lambda k: k.inputs({"a": [[1], [1, 2]]}),
    lambda k: k.retile(None), lambda k: k.retile({"c": "32"}), lambda k: k.retile({"c": 32}),
    lambda k: k.retile({"c": (32, 32.0, 16)}), lambda k: k.retile({"c": (32, 32, True)}),
    lambda k: k.retile({}, split_k={"c": 0}), lambda k: k.retile({}, split_k={"c": 2}),
    lambda k: k.retile({"c": (32, 32, 16)}, split_k={"c": 1025}),
    lambda k: k.retile({"c": (32, 32, 16)}, buffers=0),
    lambda k: k.retile({"c": (32, 32, 16)}, buffers=10**20),
    lambda k: k.retile({"c": (32, 32, 16)}, verify="yes"),
    lambda k: k.cost(123), lambda k: k.ir(123), lambda k: k.ir(debuginfo=1),
    lambda k: k.module(None), lambda k: k.module("ppu", 3),
    lambda k: k.kernel_inputs(None),
    lambda k: k.compare(k.inputs(), {}),
    lambda k: k.compare(k.inputs(), {"c": np.zeros((2, 2))}),
    lambda k: k.compare(k.inputs(), {"c": np.full((64, 32), "x")}),
])
def test_method_arguments(k, call):
    assert code_of(lambda: call(k)) == "ZK0512"


def test_messages_name_the_call_and_the_argument(k):
    with pytest.raises(CompileError) as exc:
        k.run(seed=-1)
    d = exc.value.diagnostics[0]
    assert d.message == "run(): `seed` must be an integer >= 0, got int -1"
    assert d.span is None and "seed" in d.help
    with pytest.raises(CompileError) as exc:
        zhenwu_cc.compile(SRC, defines={"M": "256"})
    assert "`defines['M']` must be an integer, got str '256'" in exc.value.diagnostics[0].message


def test_valid_calls_still_work(k):
    assert k.retile({"c": np.array([32, 32, 16])}).ir("tile")
    assert k.retile({"c": [32, 32, 16]}, split_k={"c": np.int64(2)}, buffers=np.int8(1),
                    verify=np.bool_(False)).ir("tile", debuginfo=np.bool_(True))
    assert k.reference(mode="typed", seed=np.int64(3))["c"].shape == (64, 32)
    assert k.compare(k.inputs(), k.run())[0].passed


# ---- junk at every entry point ------------------------------------------------------------------
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=12), st.binary(max_size=4),
    st.integers(-2**31, 2**31 - 1).map(np.int64), st.integers(0, 255).map(np.uint8),
    st.floats(width=32).map(np.float32), st.booleans().map(np.bool_),
    st.lists(st.integers(-4, 300), max_size=4), st.dictionaries(st.text(max_size=3), st.integers()),
)

CALLS = {
    "compile source": lambda k, j: zhenwu_cc.compile(j),
    "compile kernel": lambda k, j: zhenwu_cc.compile(SRC, kernel=j),
    "compile define": lambda k, j: zhenwu_cc.compile(SRC, defines={"K": j}),
    "compile defines": lambda k, j: zhenwu_cc.compile(SRC, defines=j),
    "compile target": lambda k, j: zhenwu_cc.compile(SRC, target=j).cost(),
    "inputs given": lambda k, j: k.inputs(j),
    "inputs array": lambda k, j: k.inputs({"a": j}),
    "run seed": lambda k, j: k.run(seed=j),
    "run array": lambda k, j: k.run(b=j),
    "reference mode": lambda k, j: k.reference(mode=j),
    "check seed": lambda k, j: k.check(seed=j),
    "retile tiles": lambda k, j: k.retile(j),
    "retile sizes": lambda k, j: k.retile({"c": j}),
    "retile size": lambda k, j: k.retile({"c": (32, j, 16)}),
    "retile split_k": lambda k, j: k.retile({"c": (32, 32, 16)}, split_k={"c": j}),
    "retile buffers": lambda k, j: k.retile({"c": (32, 32, 16)}, buffers=j),
    "retile verify": lambda k, j: k.retile({}, verify=j),
    "ir stage": lambda k, j: k.ir(j),
    "ir debuginfo": lambda k, j: k.ir("zk", debuginfo=j),
    "module target": lambda k, j: k.module("tile", j),
    "cost target": lambda k, j: k.cost(j),
    "kernel_inputs": lambda k, j: k.kernel_inputs(j),
    "compare outputs": lambda k, j: k.compare(k.inputs(), j),
    "compare output": lambda k, j: k.compare(k.inputs(), {"c": j}),
}


@given(call=st.sampled_from(sorted(CALLS)), junk=JUNK)
def test_junk_arguments_give_compile_errors_only(k, call, junk):
    try:
        CALLS[call](k, junk)
    except CompileError as exc:
        assert exc.diagnostics and exc.diagnostics[0].code.startswith("ZK")
