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
