"""The Python API's tuner path: `retile` reuses the parsed kernel for new schedules."""

import re

import pytest

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError

SRC = """kernel mm<M = 512, N = 384, K = 256>(a: f16[M, K], b: f16[K, N]) -> f16[M, N] {
    c = f16(a @ b)
    return c
}
"""


def test_retile_changes_tiles_not_meaning():
    base = zhenwu_cc.compile(SRC)
    small = base.retile({"c": (32, 32, 32)})
    assert "tile [32, 32]" in small.ir("tile") and "tile [32, 32]" not in base.ir("tile")
    assert small.check(seed=1).passed
    assert small.cost().time != base.cost().time
    assert base.retile({"c": (32, 32, 32)}).cost().to_dict() == small.cost().to_dict()


def test_retile_buffers_and_split_k():
    base = zhenwu_cc.compile(SRC)
    one = base.retile({"c": (64, 64, 64)}, buffers=1)
    two = base.retile({"c": (64, 64, 64)}, buffers=2)
    assert set(re.findall(r"depth (\d+)", one.ir())) == {"1"}
    assert set(re.findall(r"depth (\d+)", two.ir())) == {"1", "2"}  # the K loop's operands
    assert one.cost().time > two.cost().time  # without double buffering DMA and compute serialise
    split = base.retile({"c": (64, 64, 64)}, split_k={"c": 2}).ir("tile")
    # f32 partial sums of 2 K halves, 2 K steps of 64 each, summed by the consumer grid
    assert "tile.empty : tensor<2x512x384xf32>" in split
    assert "tile.grid [2, 8, 6] (%b0, %i, %j)" in split and "%k = 0 to 2 iter" in split
    assert "arith.muli" in split  # the first K step of a split part


def test_retile_rejects_unknown_names_and_bad_arity():
    base = zhenwu_cc.compile(SRC)
    with pytest.raises(CompileError) as exc:
        base.retile({"d": (32, 32, 32)})
    assert exc.value.diagnostics[0].code == "ZK0402"
    with pytest.raises(CompileError) as exc:
        base.retile({"c": (32, 32)})
    assert exc.value.diagnostics[0].code == "ZK0403"
    with pytest.raises(CompileError) as exc:
        base.retile({"c": (1024, 1024, 1024)}).cost()
    assert exc.value.diagnostics[0].code == "ZK0604"
