"""The executor's stepped loops (flash attention's key/value loop) change time and memory, never
a bit: products keep their buffers from step to step (products.py), and a step a mask hides
from some query tiles runs on the range of tiles it does not hide (window.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES

import zhenwu_cc
from zhenwu_cc.runtime.executor import compute, window
from zhenwu_cc.runtime.executor.run import Interpreter

CAUSAL = """kernel attn<B = 1, H = 3, S = 200, D = 64>(q: f16[B, H, S, D], k: f16[B, H, S, D],
                                             v: f16[B, H, S, D]) -> f16[B, H, S, D] {
    row = iota((S, S), axis=0)
    col = iota((S, S), axis=1)
    s = q @ transpose(k) * rsqrt(D)
    p = softmax(where(MASK, s, -inf), axis=-1)
    o = f16(p) @ v
    return f16(o)
}
schedule attn {
    tile o [BQ, 64, BKV]
}
"""
WINDOW = "col <= row, where(col > row - 48, s, -inf)"


def _source(mask: str, bq: int, bkv: int) -> str:
    return (CAUSAL.replace("where(MASK, s, -inf)", f"where({mask}, -inf)" if "," in mask
                           else f"where({mask}, s, -inf)")
            .replace("BQ", str(bq)).replace("BKV", str(bkv)))


def _bytes(k, inputs) -> dict[str, bytes]:
    return {name: np.ascontiguousarray(x).tobytes() for name, x in k.run(inputs).items()}


@pytest.mark.parametrize("name, defines", [
    ("attention", {"B": 1, "H": 2, "S": 200, "D": 64}),
    ("attention_causal", {"B": 2, "H": 2, "S": 256, "D": 64}),
    ("attention_gqa", {"B": 1, "H": 4, "G": 2, "S": 192, "D": 64}),
])
def test_kept_products_change_no_output_bit(monkeypatch, name, defines):
    """Against products made afresh every step (compute.product and compute.accumulate), and
    with narrowed steps off too: those need the kept buffers to keep their BLAS calls."""
    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
    inputs = k.inputs(seed=7)
    kept = _bytes(k, inputs)
    monkeypatch.setattr(Interpreter, "_kept", lambda self, op: False)
    monkeypatch.setattr(window.Narrowed, "run", lambda self, *args: False)
    assert _bytes(k, inputs) == kept


@pytest.mark.parametrize("mask", ["col <= row", WINDOW, "col >= row"])
@pytest.mark.parametrize("bq, bkv", [(64, 32), (32, 64), (64, 64)])
def test_a_step_on_a_range_of_tiles_changes_no_output_bit(monkeypatch, mask, bq, bkv):
    """Causal, sliding-window and anti-causal masks, ragged S, ranges of one tile (run whole,
    undone where hidden) and of several: the same bytes as running every tile and undoing."""
    k = zhenwu_cc.compile(_source(mask, bq, bkv))
    inputs = k.inputs(seed=8)
    ranges = []
    run = window.Narrowed.run

    def counted(self, env, allocs, products, r, n, a, b, body):
        ranges.append((a, b))
        return run(self, env, allocs, products, r, n, a, b, body)

    monkeypatch.setattr(window.Narrowed, "run", counted)
    narrowed = _bytes(k, inputs)
    assert ranges, "some step must run on a range of query tiles"
    monkeypatch.setattr(window.Narrowed, "run", lambda self, *args: False)
    assert _bytes(k, inputs) == narrowed


def test_narrowed_steps_pass_the_check():
    result = zhenwu_cc.compile(_source(WINDOW, 32, 32)).check(seed=9)
    assert result.passed, str(result)


def test_a_read_only_operand_is_converted_once(monkeypatch):
    """Q's tile, loaded before the key/value loop, is converted to float32 for the first step
    only; P, computed every step, every step."""
    k = zhenwu_cc.compile(EXAMPLES / "attention.zk", defines={"B": 1, "H": 2, "S": 256, "D": 64})
    inputs = k.inputs(seed=10)
    k.run(inputs)
    calls = []
    lhs = compute.GridMatmul.lhs

    def counted(self, a, dtype, into=None):
        calls.append(a.shape)
        return lhs(self, a, dtype, into)

    monkeypatch.setattr(compute.GridMatmul, "lhs", counted)
    k.run(inputs)
    steps = 256 // 64
    assert len(calls) == steps + 1, calls


def test_an_undone_step_restores_a_buffer_that_does_not_vary_where_the_step_does():
    """A partial step run everywhere is undone in place (no third copy of the loop's state),
    except where the grid points it runs on vary along an axis the buffer does not: there the
    restored contents are a new, wider array."""
    from xdsl.dialects.builtin import f32

    from zhenwu_cc.dialects import ppu
    from zhenwu_cc.dialects.ppu_types import memref
    from zhenwu_cc.runtime.executor.buffers import Alloc

    alloc = Alloc(ppu.AllocOp(memref(f32, [4], "sram"), 0), 2)
    for value, runs in ((np.zeros((1, 2, 4), np.float32), np.array([[True, False]])),
                        (np.zeros((1, 1, 4), np.float32), np.array([[True, False]]))):
        alloc.put(0, value, owned=True)
        before = alloc.snapshot()
        value[...] = 1  # what the step wrote, everywhere
        alloc.restore(runs, before)
        assert alloc.values[0].shape == (1, 2, 4)
        assert (alloc.values[0][0, 0] == 1).all() and (alloc.values[0][0, 1] == 0).all()
    assert alloc.owned[0]
