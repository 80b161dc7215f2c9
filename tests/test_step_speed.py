"""What keeps an agent's step fast, pinned by structure rather than by timings (those are
benchmarks/startup.py's and benchmarks/serve.py's)."""

from __future__ import annotations

import pytest

import zhenwu_cc
from conftest import EXAMPLES

KERNELS = [("gemm_bias_gelu", {"M": 64, "N": 64, "K": 64}),
           ("attention_causal", {"B": 1, "H": 2, "S": 128, "D": 64}),
           ("gemm_mxfp8", {"M": 64, "N": 64, "K": 64})]


@pytest.mark.parametrize("name, defines", KERNELS)
def test_a_passing_verification_prints_nothing(monkeypatch, name, defines):
    """Verifiers format their messages only when they fail: printing the tensor types of every
    op was half of a passing `zk.kernel` verification, paid after every pass (--verify-each)."""
    from xdsl.printer import Printer

    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
    modules = [k.module(stage) for stage in ("zk", "tile", "ppu")]

    def printed(*args, **kwargs):
        raise AssertionError("a passing verification printed an attribute")

    monkeypatch.setattr(Printer, "print_attribute", printed)
    for module in modules:
        module.verify()


def test_a_kernel_evaluated_again_reuses_its_numerics_check(monkeypatch):
    """`serve` keeps compiled kernels: evaluating one again with the same seed, sample, budget
    and host memory limit gives the record of the first check without running it again (the
    check was most of a repeated eval); any of those changed runs it anew."""
    from zhenwu_cc.api import CompiledKernel
    from zhenwu_cc.evaluate import evaluate

    k = zhenwu_cc.compile(EXAMPLES / "gemm.zk", defines={"M": 64, "N": 64, "K": 64})
    runs = []
    check = CompiledKernel.check

    def counted(self, *args, **kwargs):
        runs.append(kwargs.get("seed"))
        return check(self, *args, **kwargs)

    monkeypatch.setattr(CompiledKernel, "check", counted)
    first = evaluate(k, with_hints=False)
    again = evaluate(k, with_hints=False)
    assert runs == [0]
    assert again.record == first.record and again.text == first.text
    again.record["numerics"]["outputs"].clear()  # a caller's edit stays in its own record
    assert evaluate(k, with_hints=False).record == first.record
    evaluate(k, seed=1, with_hints=False)
    assert runs == [0, 1]
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "1K")
    small = evaluate(k, with_hints=False)
    assert runs == [0, 1, 0]
    assert small.record["numerics"]["status"] == "skipped"
    assert [d.code for d in small.diagnostics] == ["ZK0505"]  # the run does not fit 1 KiB
