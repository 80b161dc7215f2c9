"""The ppu executor against numpy on hand-written ppu IR: tiling with edge tiles, loops, vector and
tensor engine numerics, merged reduction loops, each safety check, and determinism."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import scipy.special
from xdsl.dialects.builtin import StringAttr
from xdsl.parser import Parser
from zhenwu_cc import api
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor import merge as executor_merge
from zhenwu_cc.runtime.executor import run as executor
from zhenwu_cc.runtime.executor import estimate_host_bytes, execute
from zhenwu_cc.runtime.numerics import round_to
from zhenwu_cc.core.target import load_target

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.pipeline import make_context
from zhenwu_cc.core import attrs

RNG = np.random.default_rng(7)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def parse(text: str) -> ppu.KernelOp:
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module.ops.first


def run(text: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    return execute(parse(text), inputs)


def code_of(exc: pytest.ExceptionInfo) -> str:
    return exc.value.diagnostics[0].code


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture
def stepped(monkeypatch):
    """Run every loop step by step (no merged reduction loops)."""
    monkeypatch.setattr(executor, "mergeable", lambda loop: False)


# ---- GEMM with bias (/tmp/ppu1.mlir with type aliases): 100x64 @ 64x48, 32x32x32 tiles -------
GEMM = """
!a = memref<100x64xf16, #ppu.space<hbm>>
!b = memref<64x48xf16, #ppu.space<hbm>>
!bias = memref<48xf32, #ppu.space<hbm>>
!c = memref<100x48xf32, #ppu.space<hbm>>
!acc = memref<32x32xf32, #ppu.space<sram>>
!buf = memref<2x32x32xf16, #ppu.space<sram>>
!t = memref<32x32xf16, #ppu.space<sram>>
!row = memref<32xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @gemm(%a: !a, %b: !b, %bias: !bias) -> (%c: !c) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    ppu.launch [GRID] (%i, %j) cus 128 role matmul {
      %acc = ppu.alloc offset 0 depth 1 : !acc
      %abuf = ppu.alloc offset 4096 depth 2 : !buf
      %bbuf = ppu.alloc offset BOFF depth 2 : !buf
      %biasbuf = ppu.alloc offset 12288 depth 1 : !row
      FILL
      ppu.loop %k = 0 to 2 {
        %as = ppu.slot %abuf[%k] : !buf -> !t
        %bs = ppu.slot %bbuf[%k] : !buf -> !t
        AINDEX
        %t0 = ppu.dma_load %a[%ai, %ak] tile [32, 32] -> %as : !a, !t
        %t1 = ppu.dma_load %b[%k, %j] tile [32, 32] -> %bs : !b, !t
        ppu.wait %t0, %t1
        ppu.mma %as, %bs, %acc : !t, !t, !acc
        ppu.yield
      }
      %t2 = ppu.dma_load %bias[%j] tile [32] -> %biasbuf : !bias, !row
      ppu.wait %t2
      ppu.vmap "add"(%acc, %biasbuf) -> %acc : (!acc, !row) -> !acc
      %t3 = ppu.dma_store %acc -> %c[%i, STOREJ] tile [32, 32] : !acc, !c
      ppu.wait %t3
      ppu.yield
    }
    ppu.return
  }
}
"""
GEMM_PARTS = {"GRID": "4, 2", "BOFF": "8192", "FILL": "ppu.fill 0.0 -> %acc : !acc",
              "AINDEX": "%ai = arith.addi %i, %c0 : index\n"
                        "        %ak = arith.addi %k, %c0 : index",
              "STOREJ": "%j"}


def gemm_text(**parts: str) -> str:
    """The GEMM with some of its parts replaced (to break it on purpose)."""
    text = GEMM
    for key, value in {**GEMM_PARTS, **parts}.items():
        text = text.replace(key, value)
    return text


def gemm_inputs() -> dict[str, np.ndarray]:
    return {"a": f32(100, 64).astype(np.float16), "b": f32(64, 48).astype(np.float16),
            "bias": f32(48)}


def gemm_expected(x: dict[str, np.ndarray]) -> np.ndarray:
    return x["a"].astype(np.float32) @ x["b"].astype(np.float32) + x["bias"]


def test_gemm_with_bias_and_edge_tiles():
    x = gemm_inputs()
    (c,) = run(gemm_text(), **x).values()
    assert c.dtype == np.float32 and c.shape == (100, 48)
    np.testing.assert_allclose(c, gemm_expected(x), rtol=1e-5, atol=1e-5)


def test_gemm_stepped_matches_merged(monkeypatch):
    x = gemm_inputs()
    merged = run(gemm_text(), **x)["c"]
    monkeypatch.setattr(executor, "mergeable", lambda loop: False)
    np.testing.assert_allclose(run(gemm_text(), **x)["c"], merged, rtol=1e-5, atol=1e-5)


def test_gemm_loop_is_merged():
    kernel = parse(gemm_text())
    loop = next(op for op in kernel.walk() if isinstance(op, ppu.LoopOp))
    assert executor_merge.mergeable(loop)


def test_non_affine_tile_indices_gather_and_scatter():
    """Indices made by divui / remui are not affine: fancy-index gathers and scatters."""
    text = gemm_text(AINDEX="%ai = arith.divui %i, %c1 : index\n"
                     "        %ak = arith.remui %k, %c2 : index",
                     STOREJ="%jj").replace(
        "%c1 = arith.constant 1 : index",
        "%c1 = arith.constant 1 : index\n    %c2 = arith.constant 2 : index").replace(
        "%t3 =", "%jj = arith.maxui %j, %c0 : index\n      %t3 =")
    x = gemm_inputs()
    np.testing.assert_allclose(run(text, **x)["c"], gemm_expected(x), rtol=1e-5, atol=1e-5)


def _record_merges(monkeypatch) -> list[bool]:
    """Whether each loop the executor meets is run merged (True) or stepped (False)."""
    results: list[bool] = []

    def spy(interp, loop):
        results.append(executor_merge.run_merged(interp, loop))
        return results[-1]

    monkeypatch.setattr(executor, "run_merged", spy)
    return results


def test_merged_loop_falls_back_when_the_slot_differs_between_tiles(monkeypatch):
    """Slots chosen by i + k: the loop has the merged shape, but only stepping is right."""
    text = gemm_text().replace("%as = ppu.slot %abuf[%k]", "%ik = arith.addi %i, %k : index\n"
                               "        %as = ppu.slot %abuf[%ik]")
    results = _record_merges(monkeypatch)
    x = gemm_inputs()
    np.testing.assert_allclose(run(text, **x)["c"], gemm_expected(x), rtol=1e-5, atol=1e-5)
    assert results == [False]


def test_merged_loop_falls_back_when_two_loads_share_a_slot(monkeypatch):
    """Two loads into one slot in the same step: the mma sees the second."""
    text = gemm_text().replace(
        "ppu.wait %t0, %t1",
        "%again = ppu.slot %abuf[%k] : !buf -> !t\n"
        "        %t9 = ppu.dma_load %a[%ai, %ak] tile [32, 32] pad 1.0 -> %again : !a, !t\n"
        "        ppu.wait %t0, %t1")
    results = _record_merges(monkeypatch)
    x = gemm_inputs()
    np.testing.assert_allclose(run(text, **x)["c"], gemm_expected(x), rtol=1e-5, atol=1e-5)
    assert results == [False]


def test_sram_view_reshapes_a_buffer():
    """Row sums [4, 1] seen as [4] through ppu.view, stored into a rank-1 output."""
    text = """
!x = memref<8x8xf32, #ppu.space<hbm>>
!y = memref<8xf32, #ppu.space<hbm>>
!t = memref<4x8xf32, #ppu.space<sram>>
!r = memref<4x1xf32, #ppu.space<sram>>
!v = memref<4xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @v(%x: !x) -> (%y: !y) {
    ppu.launch [2] (%i) cus 2 role vector {
      %c0 = arith.constant 0 : index
      %xb = ppu.alloc offset 0 depth 1 : !t
      %rb = ppu.alloc offset 128 depth 1 : !r
      %t0 = ppu.dma_load %x[%i, %c0] tile [4, 8] -> %xb : !x, !t
      ppu.vreduce "sum" %xb axes [1] -> %rb : !t -> !r
      %rv = ppu.view %rb : !r -> !v
      ppu.vmap "neg"(%rv) -> %rv : (!v) -> !v
      %t1 = ppu.dma_store %rv -> %y[%i] tile [4] : !v, !y
      ppu.yield
    }
    ppu.return
  }
}
"""
    x = f32(8, 8)
    np.testing.assert_allclose(run(text, x=x)["y"], -x.sum(axis=1), rtol=1e-6)


def test_software_pipelined_gemm_steps_through_slots():
    """Prefetch tile k+1 into the other slot while multiplying slot k: run step by step."""
    text = """
!a = memref<40x24xf32, #ppu.space<hbm>>
!b = memref<24x16xf32, #ppu.space<hbm>>
!c = memref<40x16xf32, #ppu.space<hbm>>
!acc = memref<16x16xf32, #ppu.space<sram>>
!abuf = memref<2x16x8xf32, #ppu.space<sram>>
!bbuf = memref<2x8x16xf32, #ppu.space<sram>>
!at = memref<16x8xf32, #ppu.space<sram>>
!bt = memref<8x16xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @g(%a: !a, %b: !b) -> (%c: !c) {
    ppu.launch [3, 1] (%i, %j) cus 2 role matmul {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %last = arith.constant 2 : index
      %acc = ppu.alloc offset 0 depth 1 : !acc
      %abuf = ppu.alloc offset 1024 depth 2 : !abuf
      %bbuf = ppu.alloc offset 2048 depth 2 : !bbuf
      ppu.fill 0.0 -> %acc : !acc
      %a0 = ppu.slot %abuf[%c0] : !abuf -> !at
      %b0 = ppu.slot %bbuf[%c0] : !bbuf -> !bt
      %t0 = ppu.dma_load %a[%i, %c0] tile [16, 8] -> %a0 : !a, !at
      %t1 = ppu.dma_load %b[%c0, %j] tile [8, 16] -> %b0 : !b, !bt
      ppu.loop %k = 0 to 3 {
        %k1 = arith.addi %k, %c1 : index
        %kn = arith.minui %k1, %last : index
        %an = ppu.slot %abuf[%k1] : !abuf -> !at
        %bn = ppu.slot %bbuf[%k1] : !bbuf -> !bt
        %t2 = ppu.dma_load %a[%i, %kn] tile [16, 8] -> %an : !a, !at
        %t3 = ppu.dma_load %b[%kn, %j] tile [8, 16] -> %bn : !b, !bt
        %ac = ppu.slot %abuf[%k] : !abuf -> !at
        %bc = ppu.slot %bbuf[%k] : !bbuf -> !bt
        ppu.mma %ac, %bc, %acc : !at, !bt, !acc
        ppu.yield
      }
      %t4 = ppu.dma_store %acc -> %c[%i, %j] tile [16, 16] : !acc, !c
      ppu.yield
    }
    ppu.return
  }
}
"""
    kernel = parse(text)
    assert not executor_merge.mergeable(next(op for op in kernel.walk()
                                             if isinstance(op, ppu.LoopOp)))
    a, b = f32(40, 24), f32(24, 16)
    np.testing.assert_allclose(execute(kernel, {"a": a, "b": b})["c"], a @ b, rtol=1e-5,
                               atol=1e-5)


# ---- split-K: a third grid dimension s, K tile index s * 4 + k, partial sums in a global --------
SPLIT_K = """
!a = memref<8x32xf16, #ppu.space<hbm>>
!b = memref<32x12xf16, #ppu.space<hbm>>
!c = memref<8x12xf32, #ppu.space<hbm>>
!c3 = memref<1x8x12xf32, #ppu.space<hbm>>
!p = memref<2x8x12xf32, #ppu.space<hbm>>
!acc = memref<1x4x4xf32, #ppu.space<sram>>
!buf = memref<2x4x4xf16, #ppu.space<sram>>
!t = memref<4x4xf16, #ppu.space<sram>>
builtin.module {
  ppu.kernel @splitk(%a: !a, %b: !b) -> (%c: !c) {
    %p = ppu.global : !p
    ppu.launch [2, 3, 2] (%i, %j, %s) cus 8 role matmul {
      %steps = arith.constant 4 : index
      %acc = ppu.alloc offset 0 depth 1 : !acc
      %abuf = ppu.alloc offset 64 depth 2 : !buf
      %bbuf = ppu.alloc offset 128 depth 2 : !buf
      ppu.fill 0.0 -> %acc : !acc
      ppu.loop %k = 0 to 4 {
        %first = arith.muli %s, %steps : index
        %kk = arith.addi %first, %k : index
        %as = ppu.slot %abuf[%k] : !buf -> !t
        %bs = ppu.slot %bbuf[%k] : !buf -> !t
        %t0 = ppu.dma_load %a[%i, %kk] tile [4, 4] -> %as : !a, !t
        %t1 = ppu.dma_load %b[%kk, %j] tile [4, 4] -> %bs : !b, !t
        ppu.wait %t0, %t1
        ppu.mma %as, %bs, %acc : !t, !t, !acc
        ppu.yield
      }
      %t2 = ppu.dma_store %acc -> %p[%s, %i, %j] tile [1, 4, 4] : !acc, !p
      ppu.wait %t2
      ppu.yield
    }
    %cv = ppu.view %c : !c -> !c3
    ppu.launch [2, 3] (%i, %j) cus 8 role reduce {
      %c0 = arith.constant 0 : index
      %sum = ppu.alloc offset 0 depth 1 : !acc
      %part = ppu.alloc offset 64 depth 1 : !acc
      ppu.fill 0.0 -> %sum : !acc
      ppu.loop %s = 0 to 2 {
        %t0 = ppu.dma_load %p[%s, %i, %j] tile [1, 4, 4] -> %part : !p, !acc
        ppu.wait %t0
        ppu.vmap "add"(%sum, %part) -> %sum : (!acc, !acc) -> !acc
        ppu.yield
      }
      %t1 = ppu.dma_store %sum -> %cv[%c0, %i, %j] tile [1, 4, 4] : !acc, !c3
      ppu.wait %t1
      ppu.yield
    }
    ppu.return
  }
}
"""


def split_k_inputs():
    return {"a": f32(8, 32).astype(np.float16), "b": f32(32, 12).astype(np.float16)}


def test_split_k_with_global_partials_and_view():
    x = split_k_inputs()
    (c,) = run(SPLIT_K, **x).values()
    np.testing.assert_allclose(c, x["a"].astype(np.float32) @ x["b"].astype(np.float32),
                               rtol=1e-5, atol=1e-5)


def test_split_k_stepped_matches_merged(stepped):
    x = split_k_inputs()
    np.testing.assert_allclose(run(SPLIT_K, **x)["c"],
                               x["a"].astype(np.float32) @ x["b"].astype(np.float32),
                               rtol=1e-5, atol=1e-5)


def test_runs_are_bit_identical():
    x = split_k_inputs()
    first, second = run(SPLIT_K, **x)["c"], run(SPLIT_K, **x)["c"]
    assert first.tobytes() == second.tobytes()
    y = gemm_inputs()
    assert run(gemm_text(), **y)["c"].tobytes() == run(gemm_text(), **y)["c"].tobytes()


def test_a_run_keeps_no_reference_cycles():
    """Everything but the outputs is freed when `execute` returns, without waiting for the
    garbage collector (a cycle would hold every array of the run until it ran)."""
    import gc

    kernel, x = parse(SPLIT_K), split_k_inputs()
    gc.collect()
    gc.disable()
    try:
        execute(kernel, x)
        alive = [o for o in gc.get_objects() if isinstance(o, executor.Interpreter)]
    finally:
        gc.enable()
    assert not alive


# ---- accumulators that are not float32: stepped, rounded every step ------------------------------
def _gemm_acc(acc: str, operand: str) -> str:
    return f"""
!a = memref<8x16x{operand}, #ppu.space<hbm>>
!b = memref<16x8x{operand}, #ppu.space<hbm>>
!c = memref<8x8x{acc}, #ppu.space<hbm>>
!acc = memref<4x4x{acc}, #ppu.space<sram>>
!t = memref<4x4x{operand}, #ppu.space<sram>>
builtin.module {{
  ppu.kernel @g(%a: !a, %b: !b) -> (%c: !c) {{
    ppu.launch [2, 2] (%i, %j) cus 4 role matmul {{
      %acc = ppu.alloc offset 0 depth 1 : !acc
      %at = ppu.alloc offset 256 depth 1 : !t
      %bt = ppu.alloc offset 512 depth 1 : !t
      ppu.fill 0.0 -> %acc : !acc
      ppu.loop %k = 0 to 4 {{
        %t0 = ppu.dma_load %a[%i, %k] tile [4, 4] -> %at : !a, !t
        %t1 = ppu.dma_load %b[%k, %j] tile [4, 4] -> %bt : !b, !t
        ppu.mma %at, %bt, %acc : !t, !t, !acc
        ppu.yield
      }}
      %t2 = ppu.dma_store %acc -> %c[%i, %j] tile [4, 4] : !acc, !c
      ppu.yield
    }}
    ppu.return
  }}
}}
"""


def test_f16_accumulator_rounds_every_step():
    a = RNG.integers(-64, 65, (8, 16)).astype(np.float16)
    b = RNG.integers(-64, 65, (16, 8)).astype(np.float16)
    kernel = parse(_gemm_acc("f16", "f16"))
    assert not executor_merge.mergeable(next(op for op in kernel.walk()
                                             if isinstance(op, ppu.LoopOp)))
    acc = np.zeros((8, 8), np.float16)
    for k in range(4):
        part = a[:, 4 * k:4 * k + 4].astype(np.float32) @ b[4 * k:4 * k + 4].astype(np.float32)
        acc = round_to(acc.astype(np.float32) + part, "f16")
    got = execute(kernel, {"a": a, "b": b})["c"]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, acc)
    once = round_to(a.astype(np.float32) @ b.astype(np.float32), "f16")
    assert not np.array_equal(got, once)  # the per-step rounding is visible


def test_int8_gemm_accumulates_in_i32():
    a = RNG.integers(-128, 128, (8, 16)).astype(np.int8)
    b = RNG.integers(-128, 128, (16, 8)).astype(np.int8)
    kernel = parse(_gemm_acc("i32", "i8"))
    assert executor_merge.mergeable(next(op for op in kernel.walk()
                                         if isinstance(op, ppu.LoopOp)))
    got = execute(kernel, {"a": a, "b": b})["c"]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int32) @ b.astype(np.int32))


# ---- row reductions over a loop of column tiles --------------------------------------------------
ROWS = """
!x = memref<20x50xf32, #ppu.space<hbm>>
!col = memref<20x1xf32, #ppu.space<hbm>>
!xb = memref<2x8x16xf32, #ppu.space<sram>>
!t = memref<8x16xf32, #ppu.space<sram>>
!r = memref<8x1xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @rows(%x: !x) -> (%sum: !col, %max: !col) {
    ppu.launch [3] (%i) cus 4 role vector {
      %c0 = arith.constant 0 : index
      %xb = ppu.alloc offset 0 depth 2 : !xb
      %xm = ppu.alloc offset 1024 depth 1 : !t
      %part = ppu.alloc offset 1536 depth 1 : !r
      %acc = ppu.alloc offset 1600 depth 1 : !r
      %macc = ppu.alloc offset 1664 depth 1 : !r
      ppu.fill 0.0 -> %acc : !r
      ppu.fill -inf -> %macc : !r
      ppu.loop %c = 0 to 4 {
        %xs = ppu.slot %xb[%c] : !xb -> !t
        %t0 = ppu.dma_load %x[%i, %c] tile [8, 16] -> %xs : !x, !t
        %t1 = ppu.dma_load %x[%i, %c] tile [8, 16] pad -inf -> %xm : !x, !t
        ppu.wait %t0, %t1
        ppu.vreduce "sum" %xs axes [1] -> %part : !t -> !r
        ppu.vmap "add"(%acc, %part) -> %acc : (!r, !r) -> !r
        ppu.vreduce "max" %xm axes [1] -> %part : !t -> !r
        ppu.vmap "max"(%macc, %part) -> %macc : (!r, !r) -> !r
        ppu.yield
      }
      %t2 = ppu.dma_store %acc -> %sum[%i, %c0] tile [8, 1] : !r, !col
      %t3 = ppu.dma_store %macc -> %max[%i, %c0] tile [8, 1] : !r, !col
      ppu.yield
    }
    ppu.return
  }
}
"""


def test_row_reduction_loop_with_padded_edges():
    """Two loads of the same tiles with different pads: zeros for the sum, -inf for the max
    (all values are negative, so a zero pad would show in the max)."""
    x = -np.abs(f32(20, 50)) - np.float32(1)
    out = run(ROWS, x=x)
    np.testing.assert_allclose(out["sum"][:, 0], x.sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["max"][:, 0], x.max(axis=1))


# ---- elementwise: broadcasting, rank-0 fills, compare / select, casts ----------------------------
ELEMENTWISE = """
!x = memref<12x10xf32, #ppu.space<hbm>>
!row = memref<10xf32, #ppu.space<hbm>>
!col = memref<12x1xf32, #ppu.space<hbm>>
!y = memref<12x10xf16, #ppu.space<hbm>>
!m = memref<12x10xi1, #ppu.space<hbm>>
!t = memref<4x8xf32, #ppu.space<sram>>
!th = memref<4x8xf16, #ppu.space<sram>>
!tb = memref<4x8xi1, #ppu.space<sram>>
!r = memref<8xf32, #ppu.space<sram>>
!c = memref<4x1xf32, #ppu.space<sram>>
!s = memref<f32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @ew(%x: !x, %row: !row, %col: !col) -> (%y: !y, %mask: !m) {
    ppu.launch [3, 2] (%i, %j) cus 6 role vector {
      %c0 = arith.constant 0 : index
      %xb = ppu.alloc offset 0 depth 1 : !t
      %rb = ppu.alloc offset 128 depth 1 : !r
      %cb = ppu.alloc offset 160 depth 1 : !c
      %half = ppu.alloc offset 176 depth 1 : !s
      %tenth = ppu.alloc offset 180 depth 1 : !s
      %zero = ppu.alloc offset 184 depth 1 : !s
      %p = ppu.alloc offset 192 depth 1 : !tb
      %lo = ppu.alloc offset 256 depth 1 : !t
      %yb = ppu.alloc offset 384 depth 1 : !th
      ppu.fill 0.5 -> %half : !s
      ppu.fill 0.1 -> %tenth : !s
      ppu.fill 0.0 -> %zero : !s
      %t0 = ppu.dma_load %x[%i, %j] tile [4, 8] -> %xb : !x, !t
      %t1 = ppu.dma_load %row[%j] tile [8] -> %rb : !row, !r
      %t2 = ppu.dma_load %col[%i, %c0] tile [4, 1] -> %cb : !col, !c
      ppu.wait %t0, %t1, %t2
      ppu.vmap "add"(%xb, %rb) -> %xb : (!t, !r) -> !t
      ppu.vmap "mul"(%xb, %half) -> %xb : (!t, !s) -> !t
      ppu.vmap "sub"(%xb, %cb) -> %xb : (!t, !c) -> !t
      ppu.vmap "gt"(%xb, %zero) -> %p : (!t, !s) -> !tb
      ppu.vmap "mul"(%xb, %tenth) -> %lo : (!t, !s) -> !t
      ppu.vmap "select"(%p, %xb, %lo) -> %xb : (!tb, !t, !t) -> !t
      ppu.vmap "cast"(%xb) -> %yb : (!t) -> !th
      %t3 = ppu.dma_store %yb -> %y[%i, %j] tile [4, 8] : !th, !y
      %t4 = ppu.dma_store %p -> %mask[%i, %j] tile [4, 8] : !tb, !m
      ppu.yield
    }
    ppu.return
  }
}
"""


def test_elementwise_broadcasting_fill_select_and_cast():
    x, row, col = f32(12, 10), f32(10), f32(12, 1)
    out = run(ELEMENTWISE, x=x, row=row, col=col)
    h = (x + row) * np.float32(0.5) - col
    mask = h > 0
    want = np.where(mask, h, h * np.float32(0.1))
    assert out["y"].dtype == np.float16 and out["mask"].dtype == np.bool_
    np.testing.assert_array_equal(out["mask"], mask)
    np.testing.assert_array_equal(out["y"], round_to(want, "f16"))


def _unary_kernel(fn: str, src: str, dst: str, n: int = 6) -> str:
    return f"""
!x = memref<{n}x{n}x{src}, #ppu.space<hbm>>
!y = memref<{n}x{n}x{dst}, #ppu.space<hbm>>
!tx = memref<4x4x{src}, #ppu.space<sram>>
!ty = memref<4x4x{dst}, #ppu.space<sram>>
builtin.module {{
  ppu.kernel @u(%x: !x) -> (%y: !y) {{
    ppu.launch [2, 2] (%i, %j) cus 4 role vector {{
      %xb = ppu.alloc offset 0 depth 1 : !tx
      %yb = ppu.alloc offset 64 depth 1 : !ty
      %t0 = ppu.dma_load %x[%i, %j] tile [4, 4] -> %xb : !x, !tx
      ppu.vmap "{fn}"(%xb) -> %yb : (!tx) -> !ty
      %t1 = ppu.dma_store %yb -> %y[%i, %j] tile [4, 4] : !ty, !y
      ppu.yield
    }}
    ppu.return
  }}
}}
"""


UNARY = {"neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "tanh": np.tanh,
         "erf": scipy.special.erf, "sqrt": np.sqrt, "rsqrt": lambda x: np.float32(1) / np.sqrt(x),
         "copy": lambda x: x}


@pytest.mark.parametrize("fn", sorted(UNARY))
def test_unary_vector_functions_compute_in_f32(fn):
    x = np.abs(f32(6, 6)) + np.float32(0.1)
    out = run(_unary_kernel(fn, "f32", "f32"), x=x)["y"]
    np.testing.assert_array_equal(out, UNARY[fn](x))


def test_bf16_vector_op_computes_in_f32_and_rounds_once():
    x = f32(6, 6).astype(ml_dtypes.bfloat16)
    out = run(_unary_kernel("exp", "bf16", "bf16"), x=x)["y"]
    assert out.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(out, round_to(np.exp(x.astype(np.float32)), "bf16"))


@pytest.mark.parametrize("dst", ["f16", "bf16", "f8E4M3FN", "i32"])
def test_casts_round_and_saturate(dst):
    x = f32(6, 6) * np.float32(3)
    x[0, :5] = [1000.0, -1000.0, 2.5, np.nan, 1e10]
    out = run(_unary_kernel("cast", "f32", dst), x=x)["y"]
    if dst == "i32":
        x = np.where(np.isnan(x), 0.0, x.astype(np.float64))
    with np.errstate(over="ignore"):  # 1e10 overflows f16 to inf, as it should
        want = round_to(x, dst)
    assert out.dtype == want.dtype
    np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))
    if dst == "f8E4M3FN":
        assert float(out[0, 0]) == 448.0 and float(out[0, 1]) == -448.0
    if dst == "i32":
        assert out[0, 2] == 2 and out[0, 3] == 0 and out[0, 4] == 2**31 - 1


BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "max": np.maximum, "min": np.minimum, "pow": np.power, "eq": np.equal,
          "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
          "ge": np.greater_equal}


@pytest.mark.parametrize("fn", sorted(BINARY))
def test_binary_vector_functions(fn):
    dst = "i1" if fn in ("eq", "ne", "lt", "le", "gt", "ge") else "f32"
    text = f"""
!x = memref<6x6xf32, #ppu.space<hbm>>
!y = memref<6x6x{dst}, #ppu.space<hbm>>
!t = memref<4x4xf32, #ppu.space<sram>>
!ty = memref<4x4x{dst}, #ppu.space<sram>>
builtin.module {{
  ppu.kernel @b(%x: !x, %z: !x) -> (%y: !y) {{
    ppu.launch [2, 2] (%i, %j) cus 4 role vector {{
      %xb = ppu.alloc offset 0 depth 1 : !t
      %zb = ppu.alloc offset 64 depth 1 : !t
      %yb = ppu.alloc offset 128 depth 1 : !ty
      %t0 = ppu.dma_load %x[%i, %j] tile [4, 4] -> %xb : !x, !t
      %t1 = ppu.dma_load %z[%i, %j] tile [4, 4] -> %zb : !x, !t
      ppu.vmap "{fn}"(%xb, %zb) -> %yb : (!t, !t) -> !ty
      %t2 = ppu.dma_store %yb -> %y[%i, %j] tile [4, 4] : !ty, !y
      ppu.yield
    }}
    ppu.return
  }}
}}
"""
    x, z = np.abs(f32(6, 6)) + np.float32(0.5), f32(6, 6)
    z[0, 0] = x[0, 0]
    np.testing.assert_array_equal(run(text, x=x, z=z)["y"], BINARY[fn](x, z))


# ---- iota masks, transposes, argmax --------------------------------------------------------------
def test_iota_causal_mask():
    text = """
!x = memref<10x10xf32, #ppu.space<hbm>>
!t = memref<4x4xf32, #ppu.space<sram>>
!ti = memref<4x4xi32, #ppu.space<sram>>
!tb = memref<4x4xi1, #ppu.space<sram>>
!s = memref<f32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @causal(%x: !x) -> (%y: !x) {
    ppu.launch [3, 3] (%i, %j) cus 9 role vector {
      %xb = ppu.alloc offset 0 depth 1 : !t
      %rows = ppu.alloc offset 64 depth 1 : !ti
      %cols = ppu.alloc offset 128 depth 1 : !ti
      %p = ppu.alloc offset 192 depth 1 : !tb
      %neg = ppu.alloc offset 208 depth 1 : !s
      ppu.fill -inf -> %neg : !s
      %t0 = ppu.dma_load %x[%i, %j] tile [4, 4] -> %xb : !x, !t
      ppu.viota [%i, %j] tile [4, 4] axis 0 -> %rows : !ti
      ppu.viota [%i, %j] tile [4, 4] axis 1 -> %cols : !ti
      ppu.vmap "le"(%cols, %rows) -> %p : (!ti, !ti) -> !tb
      ppu.vmap "select"(%p, %xb, %neg) -> %xb : (!tb, !t, !s) -> !t
      %t1 = ppu.dma_store %xb -> %y[%i, %j] tile [4, 4] : !t, !x
      ppu.yield
    }
    ppu.return
  }
}
"""
    x = f32(10, 10)
    n = np.arange(10)
    want = np.where(n[None, :] <= n[:, None], x, np.float32(-np.inf))
    np.testing.assert_array_equal(run(text, x=x)["y"], want)


def test_transpose_tiles_with_clipped_edges():
    text = """
!x = memref<10x6xf32, #ppu.space<hbm>>
!y = memref<6x10xf32, #ppu.space<hbm>>
!t = memref<4x4xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @tr(%x: !x) -> (%y: !y) {
    ppu.launch [3, 2] (%i, %j) cus 6 role vector {
      %xb = ppu.alloc offset 0 depth 1 : !t
      %yb = ppu.alloc offset 64 depth 1 : !t
      %t0 = ppu.dma_load %x[%i, %j] tile [4, 4] -> %xb : !x, !t
      ppu.vtranspose %xb perm [1, 0] -> %yb : !t -> !t
      %t1 = ppu.dma_store %yb -> %y[%j, %i] tile [4, 4] : !t, !y
      ppu.yield
    }
    ppu.return
  }
}
"""
    x = f32(10, 6)
    np.testing.assert_array_equal(run(text, x=x)["y"], x.T)


def test_argmax_first_index_within_the_tile():
    text = """
!x = memref<6x12xf32, #ppu.space<hbm>>
!y = memref<6x1xi32, #ppu.space<hbm>>
!t = memref<2x12xf32, #ppu.space<sram>>
!r = memref<2x1xi32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @am(%x: !x) -> (%y: !y) {
    ppu.launch [3] (%i) cus 3 role vector {
      %c0 = arith.constant 0 : index
      %xb = ppu.alloc offset 0 depth 1 : !t
      %rb = ppu.alloc offset 96 depth 1 : !r
      %t0 = ppu.dma_load %x[%i, %c0] tile [2, 12] -> %xb : !x, !t
      ppu.vreduce "argmax" %xb axes [1] -> %rb : !t -> !r
      %t1 = ppu.dma_store %rb -> %y[%i, %c0] tile [2, 1] : !r, !y
      ppu.yield
    }
    ppu.return
  }
}
"""
    x = f32(6, 12)
    x[1, 3] = x[1, 9] = 100.0  # a tie: the first index wins
    y = run(text, x=x)["y"]
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y[:, 0], np.argmax(x, axis=1))
    assert y[1, 0] == 3


def test_f16_sum_accumulates_in_f32():
    text = """
!x = memref<2x4096xf16, #ppu.space<hbm>>
!y = memref<2x1xf16, #ppu.space<hbm>>
!t = memref<2x4096xf16, #ppu.space<sram>>
!r = memref<2x1xf16, #ppu.space<sram>>
builtin.module {
  ppu.kernel @s(%x: !x) -> (%y: !y) {
    ppu.launch [1] (%i) cus 1 role vector {
      %xb = ppu.alloc offset 0 depth 1 : !t
      %rb = ppu.alloc offset 16384 depth 1 : !r
      %t0 = ppu.dma_load %x[%i, %i] tile [2, 4096] -> %xb : !x, !t
      ppu.vreduce "sum" %xb axes [1] -> %rb : !t -> !r
      %t1 = ppu.dma_store %rb -> %y[%i, %i] tile [2, 1] : !r, !y
      ppu.yield
    }
    ppu.return
  }
}
"""
    x = np.full((2, 4096), 1.0, np.float16)
    y = run(text, x=x)["y"]
    np.testing.assert_array_equal(y[:, 0], np.float16(4096))  # f16 accumulation would stop at 2048


# ---- a global intermediate and a view ------------------------------------------------------------
TWO_LAUNCHES = """
!x = memref<8x8xf32, #ppu.space<hbm>>
!v = memref<4x16xf32, #ppu.space<hbm>>
!t = memref<4x8xf32, #ppu.space<sram>>
!tv = memref<2x16xf32, #ppu.space<sram>>
!s = memref<f32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @two(%x: !x) -> (%y: !v) {
    %c0 = arith.constant 0 : index
    %g = ppu.global : !x
    ppu.launch [FIRST] (%i) cus 2 role vector {
      %xb = ppu.alloc offset 0 depth 1 : !t
      %two = ppu.alloc offset 128 depth 1 : !s
      ppu.fill 2.0 -> %two : !s
      %t0 = ppu.dma_load %x[%i, %c0] tile [4, 8] -> %xb : !x, !t
      ppu.vmap "mul"(%xb, %two) -> %xb : (!t, !s) -> !t
      %t1 = ppu.dma_store %xb -> %g[%i, %c0] tile [4, 8] : !t, !x
      ppu.yield
    }
    %gv = ppu.view %g : !x -> !v
    ppu.launch [2] (%i) cus 2 role vector {
      %vb = ppu.alloc offset 0 depth 1 : !tv
      %one = ppu.alloc offset 128 depth 1 : !s
      ppu.fill 1.0 -> %one : !s
      %t0 = ppu.dma_load %gv[%i, %c0] tile [2, 16] -> %vb : !v, !tv
      ppu.vmap "add"(%vb, %one) -> %vb : (!tv, !s) -> !tv
      %t1 = ppu.dma_store %vb -> %y[%i, %c0] tile [2, 16] : !tv, !v
      ppu.yield
    }
    ppu.return
  }
}
"""


def test_global_intermediate_through_a_view():
    x = f32(8, 8)
    y = run(TWO_LAUNCHES.replace("FIRST", "2"), x=x)["y"]
    np.testing.assert_array_equal(y, (x * np.float32(2)).reshape(4, 16) + np.float32(1))


def test_windowed_load_base_and_bound():
    """A view as base/bound: tiles of x[2:9, 3:8], padded past the bound (not past the tensor)."""
    text = """
!x = memref<10x10xf32, #ppu.space<hbm>>
!y = memref<8x6xf32, #ppu.space<hbm>>
!t = memref<4x3xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @w(%x: !x) -> (%y: !y) {
    ppu.launch [2, 2] (%i, %j) cus 4 role vector {
      %xb = ppu.alloc offset 0 depth 1 : !t
      %t0 = ppu.dma_load %x[%i, %j] tile [4, 3] base [2, 3] bound [7, 5] pad 7.0 -> %xb : !x, !t
      %t1 = ppu.dma_store %xb -> %y[%i, %j] tile [4, 3] : !t, !y
      ppu.yield
    }
    ppu.return
  }
}
"""
    x = f32(10, 10)
    want = np.full((8, 6), 7.0, np.float32)
    want[:7, :5] = x[2:9, 3:8]
    np.testing.assert_array_equal(run(text, x=x)["y"], want)


def test_clipped_stores_keep_what_other_tiles_wrote():
    """Two launches store the tiles of one output with a partial edge tile: each keeps the
    other's data."""
    text = """
!y = memref<10x4xf32, #ppu.space<hbm>>
!t = memref<4x4xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @halves() -> (%y: !y) {
    %c0 = arith.constant 0 : index
    %c2 = arith.constant 2 : index
    ppu.launch [2] (%i) cus 2 role vector {
      %b = ppu.alloc offset 0 depth 1 : !t
      ppu.fill 1.0 -> %b : !t
      %t0 = ppu.dma_store %b -> %y[%i, %c0] tile [4, 4] : !t, !y
      ppu.yield
    }
    ppu.launch [1] (%i) cus 1 role vector {
      %b = ppu.alloc offset 0 depth 1 : !t
      ppu.fill 2.0 -> %b : !t
      %last = arith.addi %i, %c2 : index
      %t0 = ppu.dma_store %b -> %y[%last, %c0] tile [4, 4] : !t, !y
      ppu.yield
    }
    ppu.return
  }
}
"""
    want = np.ones((10, 4), np.float32)
    want[8:] = 2
    np.testing.assert_array_equal(run(text)["y"], want)


def test_slot_chosen_per_tile():
    """A slot index that differs between tiles: slot i mod 2 per grid point."""
    text = """
!x = memref<16xf32, #ppu.space<hbm>>
!buf = memref<2x4xf32, #ppu.space<sram>>
!t = memref<4xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @s(%x: !x) -> (%y: !x) {
    ppu.launch [4] (%i) cus 4 role vector {
      %c1 = arith.constant 1 : index
      %buf = ppu.alloc offset 0 depth 2 : !buf
      %out = ppu.alloc offset 32 depth 1 : !t
      %s = ppu.slot %buf[%i] : !buf -> !t
      %t0 = ppu.dma_load %x[%i] tile [4] -> %s : !x, !t
      %r = READ
      ppu.vmap "neg"(%r) -> %out : (!t) -> !t
      %t1 = ppu.dma_store %out -> %y[%i] tile [4] : !t, !x
      ppu.yield
    }
    ppu.return
  }
}
"""
    x = f32(16)
    same = text.replace("READ", "ppu.slot %buf[%i] : !buf -> !t")
    np.testing.assert_array_equal(run(same, x=x)["y"], -x)
    other = text.replace("READ", "ppu.slot %buf[%i1] : !buf -> !t").replace(
        "%s = ppu.slot", "%i1 = arith.addi %i, %c1 : index\n      %s = ppu.slot")
    with pytest.raises(CompileError) as exc:
        run(other, x=x)
    assert code_of(exc) == "ZK0613"


# ---- safety checks -------------------------------------------------------------------------------
def test_tile_index_past_the_edge_is_zk0610():
    text = gemm_text(AINDEX="%ai = arith.addi %i, %c0 : index\n"
                     "        %ak = arith.addi %k, %c1 : index")
    with pytest.raises(CompileError) as exc:
        run(text, **gemm_inputs())
    assert code_of(exc) == "ZK0610"
    assert "k=1" in exc.value.diagnostics[0].message


def test_tile_index_past_the_edge_in_a_stepped_loop(stepped):
    text = gemm_text(AINDEX="%ai = arith.addi %i, %c0 : index\n"
                     "        %ak = arith.addi %k, %c1 : index")
    with pytest.raises(CompileError) as exc:
        run(text, **gemm_inputs())
    assert code_of(exc) == "ZK0610" and "(at k=1)" in exc.value.diagnostics[0].message


def test_alloc_beyond_sram_is_zk0611():
    with pytest.raises(CompileError) as exc:
        execute(parse(gemm_text()), gemm_inputs(), sram_bytes=8192)
    assert code_of(exc) == "ZK0611"


def test_recorded_target_bounds_the_sram():
    """A kernel that records its target (`ppu.target`, as `lower-ppu` writes it) is checked
    against that target's SRAM; hand-written IR that records none runs unchecked."""
    sram = load_target("m890").sram_per_cu
    past = gemm_text(BOFF=str(sram))  # %bbuf starts where m890's SRAM ends
    recorded = past.replace("-> (%c: !c) {", '-> (%c: !c) attributes {ppu.target = "m890"} {')
    x = gemm_inputs()
    with pytest.raises(CompileError) as exc:
        run(recorded, **x)
    assert code_of(exc) == "ZK0611" and f"the {sram} bytes" in exc.value.diagnostics[0].message
    np.testing.assert_allclose(run(past, **x)["c"], gemm_expected(x), rtol=1e-5, atol=1e-5)
    inside = gemm_text().replace("-> (%c: !c) {", '-> (%c: !c) attributes {ppu.target = "m890"} {')
    np.testing.assert_allclose(run(inside, **x)["c"], gemm_expected(x), rtol=1e-5, atol=1e-5)
    for bad in ('"m8900"', "7"):  # an unknown target, or none at all, is a diagnostic
        text = gemm_text().replace("-> (%c: !c) {",
                                   f"-> (%c: !c) attributes {{ppu.target = {bad}}} {{")
        with pytest.raises(CompileError) as exc:
            run(text, **x)
        assert code_of(exc) == "ZK0701"


def test_run_checks_the_sram_of_the_target_lowered_for():
    """The product path records its target, and `run` checks the SRAM plan against it: a plan
    that fits m890 (192 KiB) but not 810e (164 KiB) is refused once it says 810e."""
    k = api.compile(EXAMPLES / "gemm.zk", defines={"M": 256, "N": 256, "K": 256})
    k = k.retile({"c": [128, 128, 128]})
    kernel = k.module("ppu").ops.first
    assert kernel.attributes[attrs.TARGET] == StringAttr("m890")
    top = max(a.byte_offset + a.nbytes for a in kernel.walk() if isinstance(a, ppu.AllocOp))
    assert load_target("810e").sram_per_cu < top <= load_target("m890").sram_per_cu
    k.run()
    kernel.attributes[attrs.TARGET] = StringAttr("810e")
    with pytest.raises(CompileError) as exc:
        k.run()
    assert code_of(exc) == "ZK0611"
    assert api.compile(EXAMPLES / "gemm.zk", target="h100").module("ppu").ops.first.attributes[
        attrs.TARGET] == StringAttr("h100")
    execute(parse(gemm_text()), gemm_inputs(), sram_bytes=12288 + 128)


def test_overlapping_live_allocs_is_zk0612():
    with pytest.raises(CompileError) as exc:
        run(gemm_text(BOFF="6144"), **gemm_inputs())
    assert code_of(exc) == "ZK0612"


def test_sram_plan_checked_once_per_launch_and_size(monkeypatch):
    """The SRAM checks read the IR alone: a launch that passed is not checked again for the
    same SRAM size (every run asks), while a size it does not fit is refused every time."""
    from zhenwu_cc.runtime.executor import sram
    checked = []
    original = sram._check
    monkeypatch.setattr(sram, "_check", lambda *a: checked.append(a[1]) or original(*a))
    kernel, x = parse(gemm_text()), gemm_inputs()
    for _ in range(2):
        execute(kernel, x, sram_bytes=1 << 20)
        with pytest.raises(CompileError) as exc:
            execute(kernel, x, sram_bytes=8192)
        assert code_of(exc) == "ZK0611"
    assert checked == [1 << 20, 8192, 8192]


def test_accumulator_never_filled_is_zk0613():
    with pytest.raises(CompileError) as exc:
        run(gemm_text(FILL=""), **gemm_inputs())
    assert code_of(exc) == "ZK0613"
    assert "%acc" in exc.value.diagnostics[0].message


def test_unchecked_run_reads_zeros():
    x = gemm_inputs()
    c = execute(parse(gemm_text(FILL="")), x, check_uninitialised=False)["c"]
    np.testing.assert_allclose(c, gemm_expected(x), rtol=1e-5, atol=1e-5)


def test_reading_a_global_before_it_is_stored_is_zk0614():
    with pytest.raises(CompileError) as exc:
        run(TWO_LAUNCHES.replace("FIRST", "1"), x=f32(8, 8))
    assert code_of(exc) == "ZK0614"


def test_output_not_covered_is_zk0615():
    with pytest.raises(CompileError) as exc:
        run(gemm_text(GRID="3, 2"), **gemm_inputs())
    assert code_of(exc) == "ZK0615"
    assert "[96, 0]" in exc.value.diagnostics[0].message


def test_tiles_storing_to_one_place_is_zk0616():
    with pytest.raises(CompileError) as exc:
        run(gemm_text(STOREJ="%c0"), **gemm_inputs())
    assert code_of(exc) == "ZK0616"


def test_division_by_zero_in_index_arithmetic_is_zk0617():
    text = gemm_text(AINDEX="%z = arith.subi %c1, %c1 : index\n"
                     "        %ai = arith.divui %i, %z : index\n"
                     "        %ak = arith.addi %k, %c0 : index")
    with pytest.raises(CompileError) as exc:
        run(text, **gemm_inputs())
    assert code_of(exc) == "ZK0617"


def test_host_memory_refusal_is_zk0505(monkeypatch):
    kernel = parse(gemm_text())
    need = estimate_host_bytes(kernel)
    x = gemm_inputs()
    assert need >= sum(v.nbytes for v in x.values()) + 100 * 48 * 4
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", str(need - 1))
    with pytest.raises(CompileError) as exc:
        execute(kernel, x)
    assert code_of(exc) == "ZK0505"
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", str(need))
    execute(kernel, x)


def test_host_memory_estimate_follows_grid_dependence():
    """A GEMM's A tiles depend on the row index only and are held once per row of tiles; an
    index that also mentions the column index (numerically the same) makes them per tile."""
    plain = estimate_host_bytes(parse(gemm_text()))
    per_tile = estimate_host_bytes(parse(gemm_text(
        AINDEX="%jz = arith.muli %j, %c0 : index\n"
               "        %ai = arith.addi %i, %jz : index\n"
               "        %ak = arith.addi %k, %c0 : index")))
    assert per_tile > plain


def test_input_errors():
    x = gemm_inputs()
    with pytest.raises(CompileError) as exc:
        run(gemm_text(), a=x["a"], b=x["b"])
    assert code_of(exc) == "ZK0501"
    with pytest.raises(CompileError) as exc:
        run(gemm_text(), **x, bais=x["bias"])
    assert code_of(exc) == "ZK0501" and "bias" in exc.value.diagnostics[0].help
    with pytest.raises(CompileError) as exc:
        run(gemm_text(), **{**x, "a": x["a"][:50]})
    assert code_of(exc) == "ZK0502"


def test_inputs_of_another_float_type_are_rounded_and_not_modified():
    x = gemm_inputs()
    wide = {k: v.astype(np.float64) for k, v in x.items()}
    before = {k: v.copy() for k, v in wide.items()}
    np.testing.assert_array_equal(run(gemm_text(), **wide)["c"], run(gemm_text(), **x)["c"])
    for k in wide:
        np.testing.assert_array_equal(wide[k], before[k])


# ---- end to end: .zk -> ppu through the compiler, against the reference evaluator ----------------
E2E = [
    ("gemm.zk", {"M": 200, "N": 136, "K": 96}),
    ("gemm_batched.zk", {"B": 2, "M": 200, "N": 136, "K": 96}),
    ("gemm_bias_gelu.zk", {"M": 200, "N": 300, "K": 96}),
    ("gemm_int8.zk", {"M": 200, "N": 136, "K": 256}),
    ("gemm_mxfp8.zk", {"M": 200, "N": 136, "K": 256}),
    ("gemm_nvfp4.zk", {"M": 200, "N": 136, "K": 256}),
    ("mlp_swiglu.zk", {"T": 100, "D": 64, "F": 300}),
    ("l2_normalize.zk", {"N": 100, "D": 96}),
    ("layernorm.zk", {"T": 20, "D": 64}),
    ("rmsnorm.zk", {"T": 20, "D": 64}),
    ("rotary_embedding.zk", {"B": 1, "S": 70, "H": 2, "D": 64}),
    ("softmax.zk", {"M": 20, "N": 64}),
    ("row_reductions.zk", {"M": 20, "N": 300}),
    ("cross_entropy.zk", {"N": 20, "C": 300}),
    ("attention_causal.zk", {"B": 1, "H": 2, "S": 200, "D": 64}),
]


def _tolerance(dtype: np.dtype) -> float:
    """Two units in the last place of the output type; float32 sums may differ by more."""
    if dtype.kind in "biu":
        return 0.0
    return max(1e-4, 2 * float(ml_dtypes.finfo(dtype).eps))


@pytest.mark.parametrize("example,defines", E2E)
def test_compiled_examples_match_the_reference(cli, tmp_path, example, defines):
    from zhenwu_cc.passes.cast import CastPass
    from zhenwu_cc.runtime.precision import host_inputs
    from zhenwu_cc.runtime.reference import evaluate, random_inputs

    from zhenwu_cc.frontend import build

    path = Path(__file__).resolve().parent.parent / "examples" / example
    args = [a for k, v in defines.items() for a in ("-D", f"{k}={v}")]
    out = tmp_path / "k.mlir"
    r = cli("compile", path, *args, "--emit", "ppu", "-o", out)
    assert r.code == 0, r.err
    module = Parser(make_context(), out.read_text()).parse_module()
    source = build(path.read_text(), str(path), defines)
    cast = source.clone()
    CastPass().apply(make_context(), cast)  # precision directives, as the compiler applies them
    zk_kernel = cast.ops.first
    kernel = next(op for op in module.walk() if isinstance(op, ppu.KernelOp))
    inputs = host_inputs(zk_kernel, random_inputs(source.ops.first, seed=3))
    want = evaluate(zk_kernel, inputs, mode="typed")
    got = execute(kernel, inputs)
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype
        tol = _tolerance(value.dtype)
        np.testing.assert_allclose(got[name].astype(np.float64), value.astype(np.float64),
                                   rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("name, defines", [
    ("rmsnorm", {"T": 64, "D": 256}),  # replayed row blocks, an untracked output
    ("attention_causal", {"B": 1, "H": 2, "S": 128, "D": 64}),  # loops, kept products
])
def test_a_kernel_run_and_dropped_is_freed(name, defines):
    """What the executor keeps between runs lives with the compiled kernel (or refers to it
    weakly): nothing module-level keeps a dropped kernel's IR alive (a server compiles
    thousands)."""
    import gc
    import weakref

    import zhenwu_cc

    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
    k.run(seed=0)
    kernel = weakref.ref(k.module("ppu").ops.first)
    del k
    gc.collect()
    assert kernel() is None
