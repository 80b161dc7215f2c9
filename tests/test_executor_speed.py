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
from zhenwu_cc.runtime.executor import compute
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
    (first,) = launches(rms)  # h is stored by y's grid (tiling/costore.py)
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
    tiles = np.resize(x, (4, 16, 32))[:, ::2, 1::3].transpose(2, 0, 1)  # a strided tile view
    assert numerics.widen(tiles).tobytes() == tiles.astype(np.float32).tobytes()


def test_bf16_stores_keep_their_bits():
    """Tiles of an ml_dtypes type are stored as raw bytes: NaN payloads and -0 survive."""
    source = "kernel k<M = 8, N = 16>(x: bf16[M, N]) -> bf16[M, N] { return x + x }\n"
    k = zhenwu_cc.compile(source)
    x = np.arange(128, dtype=np.float32).reshape(8, 16).astype(ml_dtypes.bfloat16)
    x[0, 0], x[0, 1] = -0.0, np.nan
    (y,) = k.run(x=x).values()
    assert y.view(np.uint16)[0, 0] == 0x8000 and np.isnan(np.float32(y[0, 1]))
    assert np.array_equal(y[1:].astype(np.float32), 2 * x[1:].astype(np.float32))


def _f32_edge_cases() -> np.ndarray:
    """float32 values where a rounding into float16 can go wrong: every float16 value, the
    midpoints between neighbours (ties) and one float32 ulp either side of them, float16's
    subnormals and the float32 ones, the edge of overflow (65504, the 65520 tie, 2**16), zeros,
    Inf, NaN with payloads that do and do not survive the narrowing, and random bit patterns."""
    codes = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    mids = (codes[:-1] + codes[1:]) / 2  # exact in float32: one more bit than float16
    tie = np.concatenate([codes, mids, [65520.0, 65536.0, 2.0**-25, 3 * 2.0**-26]])
    near = tie.astype(np.float32)
    bits = np.concatenate([near.view(np.uint32).astype(np.int64) + d for d in (0, 1, -1)])
    near = bits.astype(np.uint32).view(np.float32)
    special = np.array([0x7F800000, 0x7F800001, 0x7F801FFF, 0x7F802000, 0x7FC00000, 0x7FFFFFFF,
                        0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x477FEFFF, 0x477FF000,
                        0x477FF001, 0x47800000], np.uint32).view(np.float32)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2**32, 1 << 18, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([near, special, noise])
    return np.concatenate([x, -x])


def test_float16_narrowing_is_numpys_cast_bit_for_bit():
    """`numerics.f16_from_f32` (vectorised, in chunks) against numpy's own conversion, on
    values chosen to break it; also into a given array, on a 0-d value and through round_to."""
    x = _f32_edge_cases()
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert numerics.f16_from_f32(x).view(np.uint16).tolist() == want.view(np.uint16).tolist()
    out = np.empty(x.shape, np.float16)
    assert numerics.f16_from_f32(x, out) is out
    assert numerics.round_to(x, "f16").tobytes() == want.tobytes()
    assert numerics.f16_from_f32(np.float32(65519.0)).shape == ()
    assert numerics.round_to(np.float64(1 + 2.0**-11 + 2.0**-40), "f16") == 1 + 2.0**-10


def test_float16_widening_is_numpys_cast_for_every_code():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    want = h.astype(np.float32)
    assert numerics.f32_from_f16(h).view(np.uint32).tolist() == want.view(np.uint32).tolist()
    assert numerics.f32_from_f16(h[:, ::3]).tobytes() == want[:, ::3].tobytes()
    assert numerics.widen(h).tobytes() == want.tobytes()


@pytest.mark.parametrize("fn", sorted(compute._ROUNDED_ONCE))
@pytest.mark.parametrize("src, dest", [("bf16", "bf16"), ("f16", "f16"), ("bf16", "f32"),
                                       ("f32", "bf16"), ("f32", "f16"), ("f16", "bf16")])
def test_one_call_vector_ops_are_the_widened_ones(fn, src, dest):
    """A vector op computed by one numpy call from narrow operands into a narrow destination
    (no float32 copies) gives the bits of float32 copies computed then rounded, on ties,
    subnormals, Inf, NaN and the formats' largest values, with a broadcast operand."""
    x = _f32_edge_cases()[::7]
    n = x.size // 2
    with np.errstate(all="ignore"):  # as the executor runs
        a = numerics.round_to(x[: 2 * n], src).reshape(2, n)
        b = numerics.round_to(np.random.default_rng(1).permutation(x)[: 2 * n], src)
        b = b.reshape(2, n)
        b[0, :2] = numerics.round_to(np.float32(dtypes.get(src).finite_max), src)
        d = dtypes.get(dest)
        ins = [a] if fn in ("neg", "abs", "sqrt") else [a, b[:1]]
        assert compute.one_call(fn, ins, d)
        out = np.empty(a.shape, d.np_dtype)
        got = compute.vmap(fn, ins, d, out, fused=True)
        want = compute.vmap(fn, ins, d, None)
    assert got is out and got.dtype == want.dtype
    assert got.view(np.uint8).tobytes() == want.view(np.uint8).tobytes()


def test_one_call_only_for_ops_rounded_once_on_float_operands():
    f32, bf16 = np.zeros(4, np.float32), np.zeros(4, ml_dtypes.bfloat16)
    assert not compute.one_call("exp", [bf16], dtypes.get("bf16"))
    assert not compute.one_call("max", [bf16, bf16], dtypes.get("bf16"))
    assert not compute.one_call("add", [f32, np.zeros(4, np.int32)], dtypes.get("f32"))
    assert not compute.one_call("add", [f32, f32], dtypes.get("f8E4M3FN"))


@pytest.mark.parametrize("name", ["f8E4M3FN", "f8E5M2", "f4E2M1FN"])
def test_fp8_and_fp4_rounding_is_ml_dtypes_cast_bit_for_bit(name):
    """`round_to` into FP8/FP4 (vectorised bit arithmetic) against ml_dtypes' own conversion
    of the saturated values: every code's value, the ties between neighbours and one float32 ulp
    either side, subnormals, the largest value and beyond it, Inf, NaN, random bit patterns."""
    d = dtypes.get(name)
    codes = np.arange(256 if d.bits == 8 else 16, dtype=np.uint8).view(d.np_dtype)
    values = np.unique(codes.astype(np.float64))
    values = values[np.isfinite(values)]
    ties = np.concatenate([values, (values[:-1] + values[1:]) / 2, [d.finite_max * 1.1]])
    bits = ties.astype(np.float32).view(np.uint32).astype(np.int64)
    near = np.concatenate([bits + k for k in (0, 1, -1)]).astype(np.uint32).view(np.float32)
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 2**32, 1 << 17, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([near, noise, np.float32([np.inf, -np.inf, 2.0**-149, 3e38])])
    if not d.has_nan:
        x = x[~np.isnan(x)]
    with np.errstate(all="ignore"):
        want = numerics._saturate(x, d).astype(d.np_dtype)
        got = numerics.round_to(x, d)
    assert got.dtype == want.dtype
    assert got.view(np.uint8).tolist() == want.view(np.uint8).tolist()


@pytest.mark.parametrize("name", ["f8E4M3FN", "f8E5M2", "f4E2M1FN"])
def test_per_tensor_quantisation_in_chunks_is_the_general_path(name):
    """Quotients by one float32 scale rounded chunk by chunk (midpoints redone from float64)
    against the general path, on values whose quotients land on the format's ties, just beside
    them, on subnormals and past the largest value; and the amax without an |x| copy."""
    d = dtypes.get(name)
    codes = np.arange(256 if d.bits == 8 else 16, dtype=np.uint8).view(d.np_dtype)
    values = np.unique(codes.astype(np.float64))
    values = values[np.isfinite(values)]
    ties = np.concatenate([values, (values[:-1] + values[1:]) / 2, [d.finite_max * 1.2]])
    rng = np.random.default_rng(2)
    for scale in (np.float32(1), np.float32(0.37), np.float32(3e-3), np.float32(2.0**-140)):
        near = (ties * np.float64(scale)).astype(np.float32)
        bits = near.view(np.uint32).astype(np.int64)
        x = np.concatenate([bits + k for k in (0, 1, -1)]).astype(np.uint32).view(np.float32)
        x = np.concatenate([x, -x, rng.standard_normal(70_000).astype(np.float32) * scale])
        x = rng.permutation(x[np.isfinite(x)])  # (a per-tensor scale is NaN for them)
        fast = numerics._divide_round(x, scale, d)
        general = numerics._divide_round(x, scale.reshape(1), d)
        assert fast.view(np.uint8).tolist() == general.view(np.uint8).tolist(), scale
    x = rng.standard_normal((64, 96)).astype(np.float32)
    x[3, 5] = -7.5
    q = numerics.quantize_tensor(x, d)
    assert q.scales == np.float32(7.5) / np.float32(d.finite_max)
    x[0, 0] = np.nan
    assert np.isnan(numerics.quantize_tensor(x, d).scales)


def test_tile_bounds_from_the_affine_form_are_the_elementwise_check():
    """dma.check_tiles skips the elementwise test where an index's affine form keeps it in
    bounds; it must raise ZK0610 exactly where some grid point is out of bounds."""
    from zhenwu_cc.runtime.executor import dma
    from zhenwu_cc.runtime.executor.index import Affine, Index

    op = launches(zhenwu_cc.compile(EXAMPLES / "rmsnorm.zk", defines={"T": 8, "D": 256}))[0]
    rng = np.random.default_rng(5)
    for _ in range(300):
        rows, cols = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        const, a, b = (int(v) for v in rng.integers(-6, 7, 3))
        value = const + a * np.arange(rows, dtype=np.int64)[:, None] + b * np.arange(cols)
        ix = Index(value, Affine(const, tuple((axis, c) for axis, c in ((-2, a), (-1, b)) if c)))
        count = int(rng.integers(1, 9))
        outside = bool(((value < 0) | (value >= count)).any())
        try:
            dma.check_tiles(op, [ix], [count], {-2: "i", -1: "j"}, "", {})
            raised = False
        except CompileError as exc:
            raised = exc.diagnostics[0].code == "ZK0610"
        assert raised == outside, (const, a, b, rows, cols, count)
