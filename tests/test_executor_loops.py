"""The executor's stepped loops (flash attention's key/value loop) change time and memory, never
a bit: products keep their buffers from step to step (products.py), and a step a mask hides
from some query tiles runs on the range of tiles it does not hide (window.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES

import zhenwu_cc
from zhenwu_cc.runtime.executor import compute, products, window
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


def test_a_product_into_its_accumulators_array_changes_no_output_bit(monkeypatch):
    """Q K^T, added to the zero fill of a fresh score tile, is computed in the array that sum
    goes into (products.target) from the second step on, and added there in place: the same
    bytes as through the kept product buffer."""
    k = zhenwu_cc.compile(EXAMPLES / "attention.zk", defines={"B": 1, "H": 2, "S": 320, "D": 64})
    inputs = k.inputs(seed=11)
    found = []
    target = products.target

    def counted(*args):
        found.append(target(*args))
        return found[-1]

    monkeypatch.setattr(products, "target", counted)
    into = _bytes(k, inputs)
    assert sum(t is not None for t in found) == 320 // 64 - 1, found  # every step but the first (nothing spare yet)
    monkeypatch.setattr(products, "target", lambda *args: None)
    assert _bytes(k, inputs) == into


def test_a_sum_in_place_is_the_sum_into_another_array():
    """`accumulate` into the product's own array (where `target` had it computed) gives the
    bits of the sum into a third array: -0 + 0 is +0, NaN and infinities pass."""
    from xdsl.dialects.builtin import f32

    from zhenwu_cc.dialects import ppu
    from zhenwu_cc.dialects.ppu_types import memref
    from zhenwu_cc.runtime.executor.buffers import Alloc, Ref

    special = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45],
                       np.float32)
    prod = np.random.default_rng(12).standard_normal((1, 2, 4, 8)).astype(np.float32)
    prod[0, 0, 0] = special
    for fill in (0.0, -0.0, 1.5):
        acc = np.broadcast_to(np.float32(fill), (1, 1, 4, 8))
        alloc = Alloc(ppu.AllocOp(memref(f32, [4, 8], "sram"), 0), 2, [np.empty((1, 2, 4, 8),
                                                                              np.float32)])
        ref = Ref(alloc, None, (4, 8))
        into = products.target(ref, acc, False, prod.shape)
        assert into is not None
        np.copyto(into, prod)
        in_place = products.accumulate(ref, acc, False, into)
        assert products._address(in_place) == products._address(into)
        plain = products.accumulate(Ref(Alloc(alloc.op, 2), None, (4, 8)), acc, False, prod)
        assert in_place.tobytes() == plain.tobytes() == np.add(acc, prod).tobytes()
    assert products.target(ref, prod, True, prod.shape) is None  # an owned one adds into itself


def test_a_kernel_run_again_reads_its_ir_once(monkeypatch):
    """The API keeps what the executor read from the IR for the compiled kernel's next runs:
    they skip store coverage and op facts, and give the same bytes. A run with another SRAM
    size is checked again (sram.check_allocations keeps which sizes a launch passed)."""
    from zhenwu_cc.core.diagnostics import CompileError
    from zhenwu_cc.runtime.executor import coverage, execute, run

    k = zhenwu_cc.compile(EXAMPLES / "attention_causal.zk",
                          defines={"B": 1, "H": 2, "S": 192, "D": 64})
    inputs = k.inputs(seed=13)
    first = _bytes(k, inputs)
    calls = []
    for module, name in ((coverage, "unmasked_stores"), (run, "stored_inputs"),
                         (run, "carried")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name: (
            calls.append(_n), _f(*a))[1])
    assert _bytes(k, inputs) == first
    assert calls == []
    with pytest.raises(CompileError) as exc:
        execute(k.module("ppu").ops.first, k.kernel_inputs(inputs), sram_bytes=1024,
                facts=k._executor_facts)
    assert exc.value.diagnostics[0].code == "ZK0611"


def test_bf16_widened_by_bits_is_ml_dtypes_conversion_for_every_code():
    """A transposed bfloat16 tile widens by shifting its bits (products.widen_bf16_into): the
    float32 bits of ml_dtypes' conversion for all 65,536 codes (NaN payloads, subnormals, ±0,
    ±Inf), into a strided destination too."""
    import ml_dtypes

    codes = np.arange(1 << 16, dtype=np.uint16).view(ml_dtypes.bfloat16).reshape(256, 256)
    for x in (codes, codes.T, codes[::2, 1::3].T):
        dest = np.full((x.shape[1], x.shape[0]), 7, np.float32).T
        products.widen_bf16_into(x, dest)
        assert dest.view(np.uint32).tobytes() == x.astype(np.float32).view(np.uint32).tobytes()


def test_a_transposed_bf16_operand_widened_by_bits_changes_no_output_bit(monkeypatch):
    """attention's K^T takes the bit-shift widening every step; turned off, the same bytes."""
    k = zhenwu_cc.compile(EXAMPLES / "attention.zk", defines={"B": 1, "H": 2, "S": 192, "D": 64})
    inputs = k.inputs(seed=14)
    widened = []
    widen = products.widen_bf16_into
    monkeypatch.setattr(products, "widen_bf16_into",
                        lambda x, dest: (widened.append(x.shape), widen(x, dest)))
    fast = _bytes(k, inputs)
    assert len(widened) == 192 // 64
    monkeypatch.setattr(products, "_strided_bf16", lambda x: False)
    assert _bytes(k, inputs) == fast
