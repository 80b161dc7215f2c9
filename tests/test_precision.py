"""Precision directives end to end (docs/precision.md): host and in-kernel quantisation bit-exact
with `runtime/numerics.py`, scaled matmuls, `fp8_fast`, the numerics report on the FP8/FP4
examples, the cost of switching to FP8, and the low-precision errors (ZK08xx)."""

from __future__ import annotations

import re
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from zhenwu_cc.runtime import numerics, precision, reference
from zhenwu_cc.runtime.executor import execute
from zhenwu_cc.runtime.executor.lowp import scaled_product

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# (dtype, mode as written, numerics call on a [rows, K] operand whose contraction axis is 1)
MODES = [
    ("f8E4M3FN", "tensor", lambda x: numerics.quantize_tensor(x, "f8E4M3FN")),
    ("f8E5M2", "channel(0)", lambda x: numerics.quantize_channel(x, "f8E5M2", axis=0)),
    ("f8E4M3FN", "block(1, 32)", lambda x: numerics.quantize_block(x, "f8E4M3FN", block=(1, 32))),
    ("f4E2M1FN", "block(8, 32)", lambda x: numerics.quantize_block(x, "f4E2M1FN", block=(8, 32))),
    ("f8E4M3FN", "mx", lambda x: numerics.quantize_mx(x, "f8E4M3FN", axis=1)),
    ("f4E2M1FN", "mx(rceil)",
     lambda x: numerics.quantize_mx(x, "f4E2M1FN", axis=1, scale_rounding="rceil")),
    ("f4E2M1FN", "nvfp4", lambda x: numerics.quantize_nvfp4(x, axis=1)),
    ("f4E2M1FN", "nvfp4(rne)", lambda x: numerics.quantize_nvfp4(x, axis=1, scale_rounding="rne")),
]
IDS = [f"{d}-{m}" for d, m, _ in MODES]


def _gemm(dtype: str, mode: str, extra: str = "") -> str:
    return (f"kernel k<M = 40, K = 128, N = 32>(x: bf16[M, K], w: bf16[K, N]) -> f32[M, N] {{\n"
            f"    return x @ w\n}}\nschedule k {{\n    precision x, w as {dtype} scale {mode}\n"
            f"{extra}}}\n")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality of two arrays of one (ml_dtypes) type."""
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        a.view(np.uint8), b.view(np.uint8))


# ---- quantisation bit-exact with numerics -------------------------------------------------------
@pytest.mark.parametrize("dtype,mode,quantize", MODES, ids=IDS)
def test_host_quantises_parameters_exactly_as_numerics(dtype, mode, quantize):
    k = zhenwu_cc.compile(_gemm(dtype, mode))
    given = k.inputs(seed=4)
    stored = k.kernel_inputs(given)
    q = quantize(given["x"])
    assert _same(stored["x"], q.values)
    assert _same(stored["x_scale"], q.scales.reshape(stored["x_scale"].shape))
    assert (q.tensor_scale is not None) == mode.startswith("nvfp4")  # NVFP4's second level
    if q.tensor_scale is not None:
        assert stored["x_tensor_scale"].reshape(()) == q.tensor_scale
    assert set(stored) == {a.name_hint for a in k.cast.body.block.args}


@pytest.mark.parametrize("dtype,mode,quantize", MODES, ids=IDS)
def test_vector_engine_quantises_tiles_exactly_as_numerics(dtype, mode, quantize):
    """Tiles of a [grid, tile] layout quantised one by one (amax given for groups wider than a
    tile) reassemble to numerics' quantisation of the whole tensor."""
    x = np.random.default_rng(2).standard_normal((48, 128)).astype(np.float32)
    x[5, 17] = 40.0  # an outlier: per-tensor and per-row scales must come from the given amax
    spec = _spec_of(dtype, mode)
    name = spec.mode
    whole = precision.quantize(x, spec)
    tile = (16, 64)
    blocks = spec.blocks(x.shape)
    scale_tile = tuple(t // b if s > 1 else 1 for t, b, s in zip(tile, blocks,
                                                                  whole[1].shape))
    grid = x.reshape(3, 16, 2, 64).transpose(0, 2, 1, 3)  # [gi, gj, ti, tj]
    amax = None
    if name in ("tensor", "channel"):
        amax = np.abs(x).max(axis=tuple(d for d, b in enumerate(blocks) if b > 1), keepdims=True)
        amax = amax.reshape(3, 16, 1, 1).transpose(0, 2, 1, 3) if name == "channel" else amax
    elif name == "nvfp4":
        amax = np.abs(x).max().reshape(1, 1, 1, 1)
    parts = precision.quantize_tiles(grid, spec, scale_tile, 2, amax)
    values = parts[0].transpose(0, 2, 1, 3).reshape(x.shape)
    assert _same(values, whole[0])
    s = parts[1]
    if s.shape[:2] != (3, 2):  # one scale for every tile: stored once
        s = np.broadcast_to(s, (3, 2) + s.shape[2:])
    scales = s.transpose(0, 2, 1, 3).reshape(3 * s.shape[2], 2 * s.shape[3])
    assert _same(scales[: whole[1].shape[0], : whole[1].shape[1]], whole[1])
    if name == "nvfp4":
        assert parts[2].reshape(()) == whole[2].reshape(())


@pytest.mark.parametrize("dtype,mode,quantize", MODES, ids=IDS)
def test_dequantize_is_numerics(dtype, mode, quantize):
    x = np.random.default_rng(3).standard_normal((40, 128)).astype(np.float32) * 7
    values, *scales = precision.quantize(x, _spec_of(dtype, mode))
    assert _same(precision.dequantize(values, scales), numerics.dequantize(quantize(x)))


@pytest.mark.parametrize("dtype,mode,quantize", MODES, ids=IDS)
def test_dequantize_multiplies_by_its_scale_factors_in_order(dtype, mode, quantize):
    """`scale_factors` holds `dequantize`'s order of float32 multiplies (one-byte scales, then
    the float32 one; the executor's kept operands repeat it): the widened codes times each
    factor in turn are its bits, on tiles with a leading grid axis, whatever the scales' order,
    and the exact product rounded once (NVFP4's two scales the other way round would round
    twice)."""
    x = np.random.default_rng(5).standard_normal((2, 40, 128)).astype(np.float32) * 7
    values, *scales = (np.stack(p) for p in zip(*(precision.quantize(t, _spec_of(dtype, mode))
                                                   for t in x)))
    factors = precision.scale_factors(values, scales[::-1], 2)
    assert [f.dtype for f in factors] == [np.dtype(np.float32)] * len(scales)
    out = numerics.widen(values).copy()
    for f in factors:
        out = out * f
    exact = numerics.widen(values).astype(np.float64)
    for s in scales:
        exact = exact * precision.expand(numerics.widen(s).astype(np.float64), values.shape[1:])
    assert _same(out, exact.astype(np.float32))
    assert _same(precision.dequantize(values, scales[::-1], 2), out)
    assert _same(precision.dequantize(values, scales, 2), out)


def test_scale_factors_leave_wider_operands_to_float64():
    codes = np.ones((4, 8), np.float16)
    one = np.ones((1, 1), np.float32)
    assert precision.scale_factors(codes, [one], 2) is None
    fp8 = codes.astype(ml_dtypes.float8_e4m3fn)
    assert precision.scale_factors(fp8, [one, one], 2) is None
    assert len(precision.scale_factors(fp8, [one], 2)) == 1


def _spec_of(dtype: str, mode: str) -> precision.Spec:
    name, *args = re.findall(r"\w+", mode)
    return precision.Spec(numerics._dtype(dtype), name,
                          tuple(int(a) for a in args if a.isdigit()),
                          next((a for a in args if not a.isdigit()), ""),
                          1 if name in ("mx", "nvfp4") else None)


IN_KERNEL = [(d, m) for d, m, _ in MODES if not m.startswith(("mx", "nvfp4"))]


@pytest.mark.parametrize("dtype,mode", IN_KERNEL, ids=[f"{d}-{m}" for d, m in IN_KERNEL])
def test_in_kernel_quantisation_is_bit_exact_with_the_reference(dtype, mode):
    """A binding quantised on the vector engine and read back elementwise: the executor's
    output is the typed `cast` program's, bit for bit (ragged tiles included)."""
    src = (f"kernel k<M = 40, K = 96>(x: f32[M, K]) -> f32[M, K] {{\n    h = exp(x) - 1.0\n"
           f"    return h * 1.0\n}}\nschedule k {{\n    precision h as {dtype} scale {mode}\n"
           f"    tile h [16, 64]\n}}\n")
    k = zhenwu_cc.compile(src)
    given = k.inputs(seed=5)
    got = k.run(given)["result0"]
    want = reference.evaluate(k.cast, k.kernel_inputs(given), mode="typed")["result0"]
    assert _same(got, want)
    assert "ppu.vquantize" in k.ir("ppu")


@pytest.mark.parametrize("mode", ["mx", "mx(rceil)", "nvfp4", "nvfp4(rne)"])
def test_in_kernel_contraction_modes_feed_a_scaled_matmul(mode):
    src = ("kernel k<M = 40, K = 128, N = 24>(x: f32[M, K], w: bf16[K, N]) -> f32[M, N] {\n"
           "    h = exp(x) - 1.0\n    return h @ w\n}\nschedule k {\n"
           f"    precision h, w as f4E2M1FN scale {mode}\n}}\n")
    k = zhenwu_cc.compile(src)
    given = k.inputs(seed=6)
    got = k.run(given)["result0"]
    want = reference.evaluate(k.cast, k.kernel_inputs(given), mode="typed")["result0"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    ppu = k.ir("ppu")
    assert "ppu.vquantize" in ppu and "lhs_scales(" in ppu


# ---- scaled products and FP8 accumulation -------------------------------------------------------
def test_scaled_product_applies_scales_per_block():
    rng = np.random.default_rng(0)
    a = numerics.round_to(rng.standard_normal((32, 64)) * 8, "f8E4M3FN")
    b = numerics.round_to(rng.standard_normal((64, 16)) * 8, "f8E4M3FN")
    sa = rng.random((32, 2)).astype(np.float32) + 0.5  # block (1, 32)
    sb = rng.random((2, 1)).astype(np.float32) + 0.5  # block (32, 16)
    want = (np.repeat(sa, 32, 1) * a.astype(np.float64)) @ (np.repeat(sb, 32, 0)
                                                            * b.astype(np.float64))
    got = scaled_product(a, [sa], b, [sb], 0, 2, fast=False)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_fp8_fast_promotes_every_128_and_scales_the_partial_sums():
    rng = np.random.default_rng(1)
    a = numerics.round_to(rng.standard_normal((8, 256)), "f8E4M3FN")
    b = numerics.round_to(rng.standard_normal((256, 8)), "f8E4M3FN")
    sa, sb = np.full((1, 1), 0.25, np.float32), np.full((1, 1), 2.0, np.float32)
    got = scaled_product(a, [sa], b, [sb], 0, 2, fast=True)
    want = numerics.matmul_fp8_accumulate(a, b, chunk=128) * np.float32(0.25) * np.float32(2)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, numerics.matmul_f32(a, b) * np.float32(0.5))


def test_fp8_fast_kernel_matches_matmul_fp8_accumulate_bit_for_bit():
    src = ("kernel k<M = 24, K = 384, N = 40>(x: f8E4M3FN[M, K], w: f8E4M3FN[K, N]) "
           "-> f32[M, N] {\n    return x @ w\n}\nschedule k {\n    accumulate f32 fp8_fast\n}\n")
    k = zhenwu_cc.compile(src)
    given = k.inputs(seed=2)
    got = k.run(given)["result0"]
    assert np.array_equal(got, numerics.matmul_fp8_accumulate(given["x"], given["w"]))
    assert re.search(r"tile.load %x_1\[.*\] tile \[\d+, (128|256|384)\]", k.ir("tile"))
    assert "fp8_fast" in k.ir("ppu")


# ---- tiling -------------------------------------------------------------------------------------
def test_chosen_k_tiles_are_multiples_of_the_scale_blocks():
    """Without a `tile` directive the K tile is 64; block(1, 128) scales, and fp8_fast's
    128-element promotions, make it 128."""
    plain = re.sub(r"\s*tile y \[[^\]]*\]", "", (EXAMPLES / "gemm_fp8_block.zk").read_text())
    k = zhenwu_cc.compile(plain, defines={"M": 64, "N": 256, "K": 512})
    assert re.search(r"tile.load %x_1\[[^\]]*\] tile \[\d+, 128\]", k.ir("tile"))
    mx = re.sub(r"\s*tile y \[[^\]]*\]", "", (EXAMPLES / "gemm_mxfp8.zk").read_text())
    k = zhenwu_cc.compile(mx, defines={"M": 64, "N": 256, "K": 512})
    assert re.search(r"tile.load %x_1\[[^\]]*\] tile \[\d+, 64\]", k.ir("tile"))
    fast = mx.replace("scale mx\n", "scale mx\n    accumulate f32 fp8_fast\n")
    k = zhenwu_cc.compile(fast, defines={"M": 64, "N": 256, "K": 512})
    assert re.search(r"tile.load %x_1\[[^\]]*\] tile \[\d+, 128\]", k.ir("tile"))


def test_tiles_that_cut_scale_blocks_fall_back_to_f32_and_stay_correct():
    text = re.sub(r"tile y \[[^\]]*\]", "tile y [7, 33, 13]",
                  (EXAMPLES / "gemm_fp8_block.zk").read_text())
    k = zhenwu_cc.compile(text, defines={"M": 40, "N": 256, "K": 256})
    assert "lhs_scales(" not in k.ir("ppu")
    assert k.check(seed=1).passed


# ---- the numerics report on the examples --------------------------------------------------------
# Relative L2 error ranges on N(0, 1) inputs: about sqrt(2) x the elementwise error of each
# quantised operand (numerics.md: E4M3 2.6%, MXFP8 2.9%, MXFP4 11.5%, NVFP4 10.0%).
REPORT = {
    "gemm_fp8": ({"M": 96, "N": 80, "K": 256}, (0.025, 0.05)),
    "gemm_fp8_block": ({"M": 96, "N": 128, "K": 256}, (0.025, 0.05)),
    "gemm_mxfp8": ({"M": 96, "N": 80, "K": 256}, (0.03, 0.055)),
    "gemm_mxfp4": ({"M": 96, "N": 80, "K": 256}, (0.13, 0.19)),
    "gemm_nvfp4": ({"M": 96, "N": 80, "K": 256}, (0.11, 0.17)),
    "attention_fp8": ({"B": 1, "H": 2, "S": 64, "D": 64}, (0.03, 0.08)),
}


@pytest.mark.parametrize("name", sorted(REPORT))
def test_low_precision_examples_pass_with_errors_in_the_known_ranges(name):
    defines, (low, high) = REPORT[name]
    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
    result = k.check(seed=0)
    (c,) = result.checks
    assert result.passed, str(result)
    assert low <= c.rel_l2 <= high, c.rel_l2
    assert sum(c.histogram.values()) == np.prod(c.shape)
    names = re.findall(r"precision ([\w, ]+) as", (EXAMPLES / f"{name}.zk").read_text())
    assert len(c.attribution) == sum(len(n.split(",")) for n in names)
    assert all(a.cost > 0 and a.rel_l2_with == pytest.approx(c.rel_l2, rel=0.05)
               for a in c.attribution)
    assert "rel L2 error" in str(result) and "costs +" in str(result)


def test_a_lost_scale_fails_the_check():
    k = zhenwu_cc.compile(EXAMPLES / "gemm_fp8.zk", defines={"M": 64, "N": 64, "K": 128})
    given = k.inputs(seed=0)
    stored = k.kernel_inputs(given)
    stored["x_scale"] = np.ones_like(stored["x_scale"])
    (c,) = k.compare(given, execute(k.module("ppu").ops.first, stored))
    assert not c.passed and c.rel_l2 > 1


def test_blocks_scaled_with_the_wrong_block_fail_the_check():
    k = zhenwu_cc.compile(EXAMPLES / "gemm_fp8_block.zk", defines={"M": 64, "N": 128, "K": 256})
    given = k.inputs(seed=0)
    stored = k.kernel_inputs(given)
    stored["x_scale"] = np.ascontiguousarray(stored["x_scale"][::-1])  # rows swapped
    (c,) = k.compare(given, execute(k.module("ppu").ops.first, stored))
    assert not c.passed


def test_check_json_carries_the_report(cli):
    r = cli("run", EXAMPLES / "gemm_mxfp8.zk", "-D", "M=64", "-D", "N=64", "-D", "K=128",
            "--check", "--format", "json")
    assert r.code == 0, r.err
    (c,) = r.json["check"]
    assert c["passed"] and 0.02 < c["rel_l2_error"] < 0.06
    assert set(c["rel_error_histogram"]) == {"<1e-8", *(f"1e{e}" for e in range(-8, 0)), ">=1"}
    assert [a["directive"] for a in c["attribution"]] == [
        "precision x as f8E4M3FN scale mx", "precision w as f8E4M3FN scale mx"]


# ---- cost ---------------------------------------------------------------------------------------
GEMM = """kernel gemm<M = 4096, N = 4096, K = 4096>(a: f16[M, K], b: f16[K, N]) -> f32[M, N] {
    c = a @ b
    return c
}
"""
FP8 = GEMM + "schedule gemm {\n    precision a, b as f8E4M3FN scale tensor\n}\n"


def _tensor_time(est) -> float:
    return sum(p.terms["tensor"] for p in est.phases)


def test_fp8_halves_the_tensor_time_of_a_compute_bound_gemm():
    f16 = zhenwu_cc.compile(GEMM).cost("m890")
    f8 = zhenwu_cc.compile(FP8).cost("m890")
    assert f16.bound == f8.bound == "compute"
    assert _tensor_time(f8) / _tensor_time(f16) == pytest.approx(0.5, abs=0.03)
    assert 0.45 <= f8.time / f16.time <= 0.6
    assert f8.flops_by_dtype == {"f8E4M3FN": 2 * 4096**3}


def test_fp8_halves_the_bytes_of_a_memory_bound_gemm():
    shape = {"M": 16, "N": 8192, "K": 8192}
    f16 = zhenwu_cc.compile(GEMM, defines=shape).cost("m890")
    f8 = zhenwu_cc.compile(FP8, defines=shape).cost("m890")
    assert f16.bound == f8.bound == "hbm"
    assert f8.hbm_read_bytes / f16.hbm_read_bytes == pytest.approx(0.5, abs=0.01)
    assert 0.45 <= f8.time / f16.time <= 0.65


def test_fp4_is_costed_as_the_target_file_says():
    k = zhenwu_cc.compile(EXAMPLES / "gemm_mxfp4.zk", defines={"M": 256, "N": 256, "K": 256})
    assert k.cost("m890").dtype_support["f4E2M1FN"]["support"] == "native"
    assert "emulated:f4E2M1FN:via:f8E4M3FN" in k.cost("h20").flags
    assert "emulated:f4E2M1FN:via:f16" in k.cost("810e").flags


def test_fp4_bytes_are_packed_and_quantise_work_is_counted():
    from zhenwu_cc.runtime.cost.extract import workload_of

    src = ("kernel k<M = 256, K = 256>(x: f32[M, K]) -> f32[M, K] {\n    h = exp(x)\n"
           "    return h * 2.0\n}\nschedule k {\n"
           "    precision h as f4E2M1FN scale block(1, 32)\n}\n")
    k = zhenwu_cc.compile(src)
    work = [w for p in workload_of(k.module("ppu").ops.first).phases for w in p.work]
    assert sum(w.amount for w in work if w.kind == "quantize") == 256 * 256
    assert sum(w.amount for w in work if w.kind == "load" and w.dtype == "f4E2M1FN") == 256 * 128
    assert "emulated:f4E2M1FN:via:f8E4M3FN" in k.cost("h20").flags


# ---- front end and errors -----------------------------------------------------------------------
def test_scale_options_and_fp8_fast_reach_the_ir():
    k = zhenwu_cc.compile(_gemm("f8E4M3FN", "mx(rceil)", "    accumulate f32 fp8_fast\n"))
    text = k.ir("zk")
    assert "#zk.precision<f8E4M3FN, mx rceil>" in text and 'zk.accumulate_mode = "fp8_fast"' in text
    floor = zhenwu_cc.compile(_gemm("f8E4M3FN", "mx(floor)")).ir("zk")
    assert "#zk.precision<f8E4M3FN, mx>" in floor


@pytest.mark.parametrize("source,code,words", [
    (_gemm("f8E4M3FN", "mx(ceil)"), "ZK0404", "has no option `ceil`"),
    (_gemm("f8E4M3FN", "tensor(rceil)"), "ZK0404", "`tensor` has no option `rceil`"),
    (_gemm("f8E4M3FN", "block(32, 100)"), "ZK0404", "does not tile"),
    (_gemm("f8E4M3FN", "tensor", "    accumulate f32 fp8_fst\n"), "ZK0409",
     "unknown accumulate option `fp8_fst`"),
    (_gemm("f8E4M3FN", "tensor", "    accumulate bf16 fp8_fast\n"), "ZK0409",
     "promote partial sums to f32"),
    (("kernel k<M = 64, K = 128>(x: bf16[M, K], w: bf16[K, M]) -> f32[M, M] {\n"
      "    return x @ w + f32(x[:, 0:64])\n}\nschedule k {\n"
      "    precision x as f8E4M3FN scale mx\n}\n"), "ZK0801", "also used by `zk.slice`"),
])
def test_front_end_precision_errors(source, code, words):
    with pytest.raises(CompileError) as info:
        zhenwu_cc.compile(source)
    diag = info.value.diagnostics[0]
    assert diag.code == code and words in diag.message, diag.message


def test_zk0802_fp8_fast_without_an_fp8_matmul(cli, zk_file):
    path = zk_file("kernel k<M = 64, K = 128>(x: bf16[M, K], w: bf16[K, M]) -> f32[M, M] {\n"
                   "    return x @ w\n}\nschedule k {\n    precision x as bf16\n"
                   "    accumulate f32 fp8_fast\n}\n")
    r = cli("compile", path, "--format", "json")
    assert r.code == 1
    (d,) = r.json["diagnostics"]
    assert d["code"] == "ZK0802" and "fp8_fast" in d["message"]


def test_zk0803_tile_that_cuts_the_blocks_of_a_quantised_binding(cli, zk_file):
    path = zk_file("kernel k<M = 64, K = 256, N = 64>(x: f32[M, K], w: f32[K, N]) -> f32[M, N] {\n"
                   "    h = exp(x)\n    return h @ w\n}\nschedule k {\n"
                   "    precision h as f8E4M3FN scale block(1, 128)\n    tile h [16, 96]\n}\n")
    r = cli("compile", path, "--format", "json")
    assert r.code == 1
    (d,) = r.json["diagnostics"]
    assert d["code"] == "ZK0803" and d["help"] == "`tile h [16, 128]` holds whole blocks"
    assert d["span"]["line"] == 2


def test_bf16_down_casts_store_and_multiply_in_bf16():
    src = ("kernel k<M = 48, K = 64, N = 40>(x: f32[M, K], w: f32[K, N]) -> f32[M, N] {\n"
           "    return x @ w\n}\nschedule k {\n    precision x, w as bf16\n}\n")
    k = zhenwu_cc.compile(src)
    given = k.inputs(seed=3)
    stored = k.kernel_inputs(given)
    assert _same(stored["x"], numerics.round_to(given["x"], "bf16"))
    assert k.check(given).passed
    assert k.cost("m890").flops_by_dtype == {"bf16": 2 * 48 * 64 * 40}
    assert "tensor<48x64xbf16>" in k.ir("ppu").replace("memref", "tensor").replace(
        ", #ppu.space<hbm>", "")
