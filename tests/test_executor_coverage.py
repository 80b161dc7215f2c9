"""Stores the IR proves to write their whole tensor once keep no written-mask
(runtime/executor/coverage.py); the uninitialised-read and unwritten-output checks still fire
wherever nothing is proven, or before the proven store has run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor import coverage, execute
from zhenwu_cc.runtime.executor.memory import estimate_host_bytes
from zhenwu_cc.runtime.executor import run as executor_run
from test_executor import TWO_LAUNCHES, code_of, f32, gemm_inputs, gemm_text, parse, run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FIRST = """    ppu.launch [FIRST] (%i) cus 2 role vector {"""
VIEW = """    %gv = ppu.view %g : !x -> !v
"""


def proven(kernel: ppu.KernelOp) -> list[list[str]]:
    return [[s.dest.name_hint for s in coverage.covering_stores(launch)]
            for launch in kernel.body.block.ops if isinstance(launch, ppu.LaunchOp)]


def test_row_kernels_and_a_gemm_are_proven():
    for name, defines in (("rmsnorm", {"T": 250, "D": 256}), ("layernorm", {"T": 99, "D": 384})):
        kernel = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines).module("ppu").ops.first
        assert all(proven(kernel)) and proven(kernel)[0], name
    assert proven(parse(gemm_text())) == [["c"]]


def test_grids_that_miss_or_repeat_tiles_are_not_proven():
    assert proven(parse(gemm_text(GRID="3, 2"))) == [[]]  # a row of tiles missed
    assert proven(parse(TWO_LAUNCHES.replace("FIRST", "1"))) == [[], ["y"]]
    # one tile index for both grid axes: the grid's points would share tiles
    assert proven(parse(gemm_text(STOREJ="%c0"))) == [[]]


def test_a_proven_store_records_no_mask_and_changes_no_bit(monkeypatch):
    text = TWO_LAUNCHES.replace("FIRST", "2")
    x = f32(8, 8)
    masked = []
    original = executor_run.Interpreter._store

    def spy(self, op):
        original(self, op)
        masked.append(self.env[op.dest].mask is not None and op not in self.launch.unmasked)

    monkeypatch.setitem(executor_run._RULES, ppu.DmaStoreOp, spy)
    y = run(text, x=x)["y"]
    assert masked and not any(masked)
    assert y.tobytes() == execute(parse(text), {"x": x}, check_uninitialised=False)["y"].tobytes()


def test_a_view_taken_before_the_proven_store_sees_it_written():
    text = TWO_LAUNCHES.replace(VIEW, "").replace(FIRST, VIEW + FIRST)
    x = f32(8, 8)
    y = run(text.replace("FIRST", "2"), x=x)["y"]
    np.testing.assert_array_equal(y, (x * np.float32(2)).reshape(4, 16) + np.float32(1))
    with pytest.raises(CompileError) as exc:  # the first launch writes half of %g
        run(text.replace("FIRST", "1"), x=x)
    assert code_of(exc) == "ZK0614"


def test_reading_before_the_proven_store_runs_is_still_zk0614():
    text = TWO_LAUNCHES.replace("FIRST", "2")
    first, second = text.index("    ppu.launch [2] (%i) cus 2 role vector {\n      %xb"), \
        text.index(VIEW)
    end = text.index("    ppu.return")
    swapped = text[:first] + text[second:end] + text[first:second] + text[end:]
    assert proven(parse(swapped)) == [["y"], ["g"]]
    with pytest.raises(CompileError) as exc:
        run(swapped, x=f32(8, 8))
    assert code_of(exc) == "ZK0614"


def test_an_output_no_store_covers_is_still_zk0615():
    with pytest.raises(CompileError) as exc:
        run(gemm_text(GRID="3, 2"), **gemm_inputs())
    assert code_of(exc) == "ZK0615"


def test_the_memory_estimate_counts_a_mask_only_where_one_is_kept():
    two = parse(TWO_LAUNCHES.replace("FIRST", "2"))
    assert {v.name_hint for v in coverage.unmasked_tensors(two)} == {"g", "y"}
    half = parse(TWO_LAUNCHES.replace("FIRST", "1"))
    assert {v.name_hint for v in coverage.unmasked_tensors(half)} == {"y"}
    assert estimate_host_bytes(half) - estimate_host_bytes(two) == 8 * 8  # %g's bool mask


READ_FIRST = """
!x = memref<8x8xf32, #ppu.space<hbm>>
!t = memref<4x8xf32, #ppu.space<sram>>
builtin.module {
  ppu.kernel @read_first(%x: !x) -> (%y: !x, %z: !x) {
    %c0 = arith.constant 0 : index
    ppu.launch [2] (%i) cus 2 role vector {
      %b = ppu.alloc offset 0 depth 1 : !t
      %t0 = ppu.dma_load %y[%i, %c0] tile [4, 8] -> %b : !x, !t
      %t1 = ppu.dma_store %b -> %z[%i, %c0] tile [4, 8] : !t, !x
      ppu.yield
    }
    ppu.launch [2] (%i) cus 2 role vector {
      %b = ppu.alloc offset 0 depth 1 : !t
      %t0 = ppu.dma_load %x[%i, %c0] tile [4, 8] -> %b : !x, !t
      %t1 = ppu.dma_store %b -> %y[%i, %c0] tile [4, 8] : !t, !x
      ppu.yield
    }
    ppu.return
  }
}
"""


def test_outputs_whose_mask_no_one_reads_get_none(monkeypatch):
    """An output whose every store is proven and that no launch loads before one stores it
    needs no written-mask at all; one loaded first keeps it, and ZK0614 still fires."""
    norm = zhenwu_cc.compile(EXAMPLES / "rmsnorm.zk", defines={"T": 64, "D": 256})
    kernel = norm.module("ppu").ops.first
    assert coverage.untracked_tensors(kernel) == set(kernel.outputs)
    read_first = parse(READ_FIRST)
    y, z = read_first.outputs
    assert coverage.untracked_tensors(read_first) == {z}
    masks = []
    original = np.zeros
    monkeypatch.setattr(np, "zeros", lambda shape, dtype=float: masks.append(
        np.dtype(dtype) == np.bool_) or original(shape, dtype))
    execute(kernel, norm.inputs(seed=0))
    assert masks and not any(masks)  # the two outputs' arrays, no mask
    masks.clear()
    with pytest.raises(CompileError) as exc:
        run(READ_FIRST, x=f32(8, 8))
    assert code_of(exc) == "ZK0614"
    assert masks.count(True) == 1  # y's
