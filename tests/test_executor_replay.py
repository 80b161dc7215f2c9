"""Row blocks replayed from a tape (runtime/executor/replay.py) give the interpreted blocks' bits,
and the checks of loads and stores still fire in replayed blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zhenwu_cc
from zhenwu_cc.core import dtypes
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor import execute, replay, rowblocks
from test_executor import code_of, f32, parse
from test_executor_forward import adversarial, adversarial_inputs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def replays(monkeypatch):
    """How many row blocks ran from a tape."""
    count = [0]
    original = replay.Tape.run

    def counted(tape):
        count[0] += 1
        original(tape)
    monkeypatch.setattr(replay.Tape, "run", counted)
    return count


def both(monkeypatch, kernel_of, inputs, **options):
    """The outputs with the tape, then with every block interpreted (`kernel_of()` gives a fresh
    kernel: the plain run must not see what the first one cached)."""
    taped = execute(kernel_of(), inputs, **options)
    monkeypatch.setattr(replay, "ENABLED", False)
    plain = execute(kernel_of(), inputs, **options)
    monkeypatch.setattr(replay, "ENABLED", True)
    return taped, plain


def assert_same_bits(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in got:
        assert got[key].dtype == want[key].dtype, key
        assert got[key].tobytes() == want[key].tobytes(), key


@pytest.mark.parametrize("name, defines", [
    ("layernorm", {"T": 100, "D": 384}),  # 25 tiles of 4 rows
    ("layernorm", {"T": 64, "D": 4096}),
    ("rmsnorm", {"T": 252, "D": 256}),  # 63 tiles: a shorter last row block
    ("rmsnorm", {"T": 250, "D": 256}),  # edge tiles: stores through a staging copy
    ("softmax", {"M": 100, "N": 300}),  # f16 results, subnormals, exp
    ("l2_normalize", {"N": 96, "D": 768}),
    ("softmax", {"M": 301, "N": 40}),  # ragged rows: 76 tiles, blocks of 25
    ("rotary_embedding", {"B": 2, "S": 40, "H": 4, "D": 64}),  # blocks along a second axis
])
def test_replayed_blocks_have_the_interpreted_bits(monkeypatch, replays, name, defines):
    def kernel_of():
        return zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines).module("ppu").ops.first
    kernel = kernel_of()
    inputs = adversarial_inputs(kernel, np.random.default_rng(5))
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", 1 << 14)  # many row blocks
    taped, plain = both(monkeypatch, kernel_of, inputs)
    assert replays[0] > 0, name
    assert_same_bits(taped, plain)


def test_which_launches_replay():
    gemm = zhenwu_cc.compile(EXAMPLES / "gemm.zk", defines={"M": 256, "N": 256, "K": 256})
    attention = zhenwu_cc.compile(EXAMPLES / "attention.zk",
                                  defines={"B": 1, "H": 2, "S": 256, "D": 64})
    norm = zhenwu_cc.compile(EXAMPLES / "layernorm.zk", defines={"T": 64, "D": 4096})

    def launches(k):
        return [replay.straight(op) for op in k.module("ppu").ops.first.body.block.ops
                if isinstance(op, ppu.LaunchOp)]
    assert launches(norm) == [True]
    assert not any(launches(gemm))  # tensor-engine work
    assert not any(launches(attention))  # loops


ROWS = """
!x = memref<16x8xf32, #ppu.space<hbm>>
!t = memref<2x8xf32, #ppu.space<sram>>
!s = memref<f32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @rows(%x: !x) -> (%y: !x) {
    %c0 = arith.constant 0 : index
    %g = ppu.global : !x
    ppu.launch [STORED] (%i) cus 2 role vector {
      %b = ppu.alloc offset 0 depth 1 : !t
      %t0 = ppu.dma_load %x[%i, %c0] tile [2, 8] -> %b : !x, !t
      %t1 = ppu.dma_store %b -> %g[%i, %c0] tile [2, 8] : !t, !x
      ppu.yield
    }
    ppu.launch [GRID] (%i) cus 2 role vector {
      %b = ppu.alloc offset 0 depth 1 : !t
      %z = ppu.alloc offset 64 depth 1 : !t
      %one = ppu.alloc offset 128 depth 1 : !s
      ppu.fill 1.0 -> %one : !s
      %t0 = ppu.dma_load %g[%i, %c0] tile [2, 8] -> %b : !x, !t
      ppu.vmap "add"(%b, %one) -> %b : (!t, !s) -> !t
      ppu.vmap "mul"(%b, %z) -> %z : (!t, !t) -> !t
      ppu.vmap "add"(%b, %z) -> %b : (!t, !t) -> !t
      %t1 = ppu.dma_store %b -> %y[%i, %c0] tile [2, 8] : !t, !x
      ppu.yield
    }
    ppu.return
  }
}
"""


def rows(stored: int, grid: int, zeroed: bool = True) -> str:
    text = ROWS.replace("STORED", str(stored)).replace("GRID", str(grid))
    if zeroed:  # %z written before it is read
        text = text.replace('      ppu.vmap "mul"', '      ppu.fill 0.0 -> %z : !t\n'
                            '      ppu.vmap "mul"')
    return text


def test_a_small_kernel_replays_to_the_same_bits(monkeypatch, replays):
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", 64)  # two grid points a block
    x = f32(16, 8)
    x[3, 2], x[9, 1], x[14, 7] = np.nan, np.inf, 1e-40
    taped, plain = both(monkeypatch, lambda: parse(rows(8, 8)), {"x": x})
    assert replays[0] == 3 * 2  # blocks 1..3 of each launch
    assert_same_bits(taped, plain)
    b = x + np.float32(1)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(taped["y"], b + b * np.float32(0))  # inf * 0: NaN


def test_an_unwritten_buffer_read_unchecked_replays_its_zeros(monkeypatch, replays):
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", 64)
    x = f32(16, 8)
    with pytest.raises(CompileError) as exc:
        execute(parse(rows(8, 8, zeroed=False)), {"x": x})
    assert code_of(exc) == "ZK0613"
    taped, plain = both(monkeypatch, lambda: parse(rows(8, 8, zeroed=False)), {"x": x},
                        check_uninitialised=False)
    assert replays[0] > 0
    assert_same_bits(taped, plain)
    b = x + np.float32(1)
    np.testing.assert_array_equal(taped["y"], b + b * np.float32(0))


@pytest.mark.parametrize("stored, grid, code", [
    (2, 8, "ZK0614"),  # the second block reads rows no store wrote
    (8, 10, "ZK0610"),  # the fifth block addresses tile 8 of 8
])
def test_checks_fire_in_replayed_blocks(monkeypatch, replays, stored, grid, code):
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", 64)
    x = f32(16, 8)
    messages = []
    for enabled in (True, False):
        monkeypatch.setattr(replay, "ENABLED", enabled)
        with pytest.raises(CompileError) as exc:
            execute(parse(rows(stored, grid)), {"x": x})
        assert code_of(exc) == code
        messages.append(str(exc.value))
    assert replays[0] > 0
    assert messages[0] == messages[1]


FEEDBACK = """
!x = memref<16x8xf32, #ppu.space<hbm>>
!t = memref<2x8xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @feedback(%x: !x) -> (%y: !x) {
    %c0 = arith.constant 0 : index
    ppu.launch [8] (%i) cus 2 role vector {
      %a = ppu.alloc offset 0 depth 1 : !t
      %b = ppu.alloc offset 64 depth 1 : !t
      %t0 = ppu.dma_load %y[%c0, %c0] tile [2, 8] -> %a : !x, !t
      %t1 = ppu.dma_load %x[%i, %c0] tile [2, 8] -> %b : !x, !t
      ppu.vmap "add"(%a, %b) -> %b : (!t, !t) -> !t
      %t2 = ppu.dma_store %b -> %y[%i, %c0] tile [2, 8] : !t, !x
      ppu.yield
    }
    ppu.return
  }
}
"""


@pytest.mark.parametrize("rows", [16, 15])  # 15: loads through a padded copy of `y`
def test_a_tile_the_launch_stores_into_is_loaded_again_every_block(monkeypatch, replays, rows):
    """Tile 0 of `y` does not move with the blocks, but the first block stores it: later
    blocks read what it stored (unchecked; checked, the first load is ZK0614)."""
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", 64)
    text = FEEDBACK.replace("16x8xf32", f"{rows}x8xf32")
    x = f32(rows, 8)
    with pytest.raises(CompileError) as exc:
        execute(parse(text), {"x": x})
    assert code_of(exc) == "ZK0614"
    taped, plain = both(monkeypatch, lambda: parse(text), {"x": x}, check_uninitialised=False)
    assert replays[0] == 3
    assert_same_bits(taped, plain)
    want = x.copy()  # the first block read tile 0 before storing it: zeros
    want[4:] += np.tile(x[:2], (6, 1))[:rows - 4]
    np.testing.assert_array_equal(taped["y"], want)


@pytest.mark.parametrize("fn", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("dest", ["f32", "bf16", "f16"])
def test_a_row_written_out_over_the_tile_gives_the_same_bits(fn, dest):
    """compute._rows widens a row broadcast over a tile's rows before a rounded-once op: the
    same bits as the broadcast, on Inf, NaN, +-0, subnormals and values that overflow f16."""
    from zhenwu_cc.runtime.executor import compute
    rng = np.random.default_rng(11)
    x = adversarial((6, 1, 4, 512), np.float32, rng)
    row = adversarial((1, 1, 1, 512), np.float32, rng)
    assert compute._rows(row, x.shape).shape == (1, 1, 4, 512)
    short = row[..., :8]
    assert compute._rows(short, x[..., :8].shape) is short  # rows too short to matter
    d = dtypes.get(dest)
    with np.errstate(all="ignore"):
        got = compute.vmap(fn, [x, row], d, np.empty(x.shape, d.np_dtype), fused=True)
        want = compute._UFUNCS[fn](x, row, dtype=np.float32).astype(d.np_dtype)
    assert got.tobytes() == want.tobytes()

