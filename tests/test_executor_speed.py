"""The executor's fast paths change time and memory, never a bit: inputs in their dtype pass
through uncopied, launches run in row blocks whose size cannot change an output, integer GEMMs
run exactly on float BLAS, one-byte formats widen by table lookup."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from xdsl.parser import Parser

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.dialects import ppu
from zhenwu_cc.pipeline import make_context
from zhenwu_cc.runtime import numerics
from zhenwu_cc.runtime.executor import execute, rowblocks
from zhenwu_cc.runtime.executor.compute import product
from zhenwu_cc.core import dtypes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def outputs_with_blocks(monkeypatch, k, block_bytes: int, inputs) -> dict[str, np.ndarray]:
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", block_bytes)
    return execute(k.module("ppu").ops.first, inputs)


def launches(k) -> list[ppu.LaunchOp]:
    return [op for op in k.module("ppu").ops.first.body.block.ops if isinstance(op, ppu.LaunchOp)]


@pytest.mark.parametrize("name, defines", [
    ("rmsnorm", {"T": 250, "D": 256}),       # 250 rows of 4-row tiles: a shorter last block
    ("layernorm", {"T": 99, "D": 384}),
    ("softmax", {"M": 101, "N": 300}),
    ("cross_entropy", {"N": 96, "C": 1000}),  # reduction loops, padded loads and stores
    ("row_reductions", {"M": 200, "N": 700}),
    ("rotary_embedding", {"B": 2, "S": 64, "H": 4, "D": 64}),
    ("l2_normalize", {"N": 333, "D": 96}),
])
def test_row_block_size_never_changes_an_output_bit(monkeypatch, name, defines):
    """Blocks of 2 grid points, of a few, and the whole grid at once (the executor before row
    blocks) give the same bytes."""
    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
    inputs = k.kernel_inputs(k.inputs(seed=1))
    def blocked() -> bool:
        return any(rowblocks.plan(op)[1] < max(op.grid_shape) for op in launches(k)
                   if op.grid_shape)

    whole = outputs_with_blocks(monkeypatch, k, 1 << 40, inputs)
    assert not blocked()
    for block_bytes in (1, 1 << 14):
        got = outputs_with_blocks(monkeypatch, k, block_bytes, inputs)
        assert blocked(), "the kernel must run in several blocks"
        for key in whole:
            assert got[key].dtype == whole[key].dtype
            assert got[key].tobytes() == whole[key].tobytes(), key


def test_row_blocks_come_from_the_ir_and_skip_products():
    """A row kernel runs in blocks of about BLOCK_BYTES; a GEMM's launch in one block (BLAS
    sums in a shape-dependent order)."""
    rms = zhenwu_cc.compile(EXAMPLES / "rmsnorm.zk", defines={"T": 4096, "D": 4096})
    (first, _) = launches(rms)
    axis, size = rowblocks.plan(first)
    # [4, 4096] tiles: 64 KiB of float32 a grid point, 64 points in 4 MiB
    assert (axis, size) == (0, rowblocks.BLOCK_BYTES // (4 * 4096 * 4))
    gemm = zhenwu_cc.compile(EXAMPLES / "gemm.zk", defines={"M": 1024, "N": 1024, "K": 1024})
    (launch,) = launches(gemm)
    assert rowblocks.plan(launch) == (0, launch.grid_shape[0])


def test_a_bad_tile_index_names_its_grid_point_in_a_later_block(monkeypatch):
    """ZK0610 names the grid index of the whole launch, not the position inside a row block."""
    source = ("kernel k<M = 64, N = 32>(x: f32[M, N]) -> f32[M, N] {\n    y = exp(x)\n"
              "    return y\n}\nschedule k {\n    tile y [2, 32]\n}\n")
    text = str(zhenwu_cc.compile(source).module("ppu"))
    load = "%2 = ppu.dma_load %x[%i, %0]"
    assert load in text
    bad = text.replace(load, "%c9 = arith.constant 9 : index\n      "
                       "%late = arith.addi %i, %c9 : index\n      "
                       "%2 = ppu.dma_load %x[%late, %0]")
    kernel = Parser(make_context(), bad).parse_module().ops.first
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", 1)  # blocks of 2 of the 32 grid rows
    x = np.zeros((64, 32), np.float32)
    with pytest.raises(CompileError) as exc:
        execute(kernel, {"x": x})
    d = exc.value.diagnostics[0]
    assert d.code == "ZK0610" and "at i=23" in d.message, d.message


def test_inputs_in_their_dtype_pass_through_uncopied_and_unchanged():
    """`k.inputs` hands back the caller's array when it already has the declared dtype; the
    outputs are those of the same values given as float32 (rounded into bf16 on the way)."""
    k = zhenwu_cc.compile(EXAMPLES / "rmsnorm.zk", defines={"T": 64, "D": 128})
    given = k.inputs(seed=3)
    again = k.inputs({name: x for name, x in given.items()})
    assert all(again[n] is given[n] for n in given)
    as_f32 = {n: x.astype(np.float32) for n, x in given.items()}
    a, b = k.run(**given), k.run(**as_f32)
    assert all(a[n].tobytes() == b[n].tobytes() for n in a)


@pytest.mark.parametrize("k_len", [7, 1024, 1025, 3000])
def test_integer_products_on_float_blas_are_exact(k_len):
    """int8 x int8 summed over K on float32 BLAS in slices of 1024 (every partial sum below
    2**24), int32 operands in numpy's int64 loop: equal to int64 arithmetic, extremes included."""
    rng = np.random.default_rng(k_len)
    a = rng.integers(-128, 128, (1, 2, 5, k_len), dtype=np.int8)
    b = rng.integers(-128, 128, (1, 1, k_len, 3), dtype=np.int8)
    a[..., 0, :] = -128
    b[..., 0] = -128
    got = product(a, b, 1, 2, dtypes.get("i32"))
    assert got.dtype == np.int64
    assert np.array_equal(got, np.matmul(a.astype(np.int64), b.astype(np.int64)))
    wide = rng.integers(-2**31, 2**31, (4, k_len), dtype=np.int32)
    assert np.array_equal(product(wide[None], wide.T[None].copy(), 1, 2, dtypes.get("i32")),
                          (wide.astype(np.int64) @ wide.T.astype(np.int64))[None])


@pytest.mark.parametrize("name", ["f8E4M3FN", "f8E5M2", "f4E2M1FN", "f8E8M0FNU", "i8"])
def test_widening_by_table_is_ml_dtypes_conversion(name):
    """Every code (NaN and the E8M0 extremes included) widens to the same float32 bits."""
    dt = dtypes.get(name).np_dtype
    codes = np.arange(256, dtype=np.uint8) if dt.kind == "V" else np.arange(-128, 128)
    x = codes.astype(np.int8).view(dt) if dt.kind != "V" else codes.view(dt)
    if name == "f4E2M1FN":
        x = (codes & 0x0F).astype(np.uint8).view(dt)
    assert numerics.widen(x).dtype == np.float32
    assert numerics.widen(x).tobytes() == x.astype(np.float32).tobytes()


def test_bf16_stores_keep_their_bits():
    """Tiles of an ml_dtypes type are stored as raw bytes: NaN payloads and -0 survive."""
    source = "kernel k<M = 8, N = 16>(x: bf16[M, N]) -> bf16[M, N] { return x + x }\n"
    k = zhenwu_cc.compile(source)
    x = np.arange(128, dtype=np.float32).reshape(8, 16).astype(ml_dtypes.bfloat16)
    x[0, 0], x[0, 1] = -0.0, np.nan
    (y,) = k.run(x=x).values()
    assert y.view(np.uint16)[0, 0] == 0x8000 and np.isnan(np.float32(y[0, 1]))
    assert np.array_equal(y[1:].astype(np.float32), 2 * x[1:].astype(np.float32))
