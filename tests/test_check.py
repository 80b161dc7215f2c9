"""The numerics check: dtype-aware tolerances, the largest error's location, the CLI verdict."""

import numpy as np
import pytest
from zhenwu_cc.runtime import check

import zhenwu_cc

SRC = """kernel k<M = 48, N = 40, K = 72>(a: f16[M, K], b: f16[K, N]) -> f16[M, N] {
    c = f16(softmax(a @ b, axis=-1))
    return c
}
"""


def test_executor_passes_and_reports_location():
    k = zhenwu_cc.compile(SRC)
    result = k.check(seed=3)
    (c,) = result.checks
    assert result.passed and c.passed
    assert c.dtype == "f16" and c.shape == (48, 40)
    assert c.max_abs <= c.tolerance and c.tolerance > 0
    assert len(c.where) == 2 and 0 <= c.where[0] < 48


def test_a_wrong_element_fails_and_is_found():
    k = zhenwu_cc.compile(SRC)
    inputs = k.inputs(seed=1)
    outputs = k.run(inputs)
    bad = np.asarray(outputs["c"], dtype=np.float32).copy()
    bad[7, 11] += 0.25
    (c,) = k.compare(inputs, {"c": bad})
    assert not c.passed and c.where == (7, 11)
    assert c.max_abs == pytest.approx(0.25, rel=0.1)


def test_nan_mismatch_fails():
    ref = np.ones(4)
    got = np.array([1.0, np.nan, 1.0, 1.0])
    c = check.compare("y", "f32", got, ref, ref)
    assert not c.passed and c.mismatched_nan == 1


def test_matching_infinities_pass():
    ref = np.array([np.inf, -np.inf, 2.0])
    c = check.compare("y", "f32", ref.copy(), ref, ref)
    assert c.passed and c.max_abs == 0.0


def test_tolerance_follows_the_output_dtype():
    ref = np.linspace(-4, 4, 64)
    f16 = check.compare("y", "f16", ref, ref, ref)
    f32 = check.compare("y", "f32", ref, ref, ref)
    assert f16.tolerance > 100 * f32.tolerance


def test_cli_exit_1_and_zk0508_when_the_check_fails(cli, zk_file, monkeypatch):
    from zhenwu_cc.api import CompiledKernel

    real_run = CompiledKernel.run

    def off_by_one(self, inputs=None, **kw):
        return {n: np.asarray(v, dtype=np.float32) + 1 for n, v in real_run(self, inputs,
                                                                            **kw).items()}

    monkeypatch.setattr(CompiledKernel, "run", off_by_one)
    r = cli("run", zk_file(SRC), "--check", "--format", "json")
    assert r.code == 1
    doc = r.json
    assert not doc["ok"] and doc["diagnostics"][0]["code"] == "ZK0508"
    assert doc["check"][0]["passed"] is False
