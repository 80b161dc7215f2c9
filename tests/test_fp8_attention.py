"""FP8 attention through the flash path (`precision p as f8E4M3FN scale unit`, docs/precision.md):
the probabilities exp(s - max) are quantised with the fixed scale of the amax 1 and the row sums
divide after the second matmul, unfused (the `cast` program) and in the flash grid (per
key/value block, with the running max); anything but a softmax is refused (ZK0619)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES

import zhenwu_cc
from zhenwu_cc.core.attrs import used_tiles
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.runtime import numerics, reference


def _src(schedule: str, s: int = 256, p_mode: str = "unit") -> str:
    return f"""kernel attn<S = {s}, D = 64>(q: bf16[2, S, D], k: bf16[2, S, D],
                                 v: bf16[2, S, D]) -> bf16[2, S, D] {{
    s = q @ transpose(k) * rsqrt(D)
    p = softmax(s, axis=-1)
    o = p @ f32(v)
    return bf16(o)
}}
schedule attn {{
    precision q, k, v as f8E4M3FN scale tensor
    precision p as f8E4M3FN scale {p_mode}
{schedule}
}}
"""


def _roles(k) -> list[str]:
    kernel = k.module("tile").ops.first
    return [op.role.data for op in kernel.body.block.ops if used_tiles(op) is not None]


def test_unit_is_refused_on_a_value_that_is_not_a_softmax():
    src = """kernel g<S = 128, D = 64>(q: f32[S, D], k: f32[S, D]) -> f32[S, S] {
    s = q @ transpose(k) * rsqrt(D)
    return s
}
schedule g {
    precision s as f8E4M3FN scale unit
}
"""
    with pytest.raises(CompileError) as exc:
        zhenwu_cc.compile(src)
    (d,) = exc.value.diagnostics
    assert d.code == "ZK0619" and (d.span.line, d.span.col) == (6, 15)
    assert "not the result of `softmax(...)`" in d.message
    assert [n.span.line for n in d.notes] == [2] and "softmax" in d.help


def test_unit_on_a_wrapped_softmax_is_refused():
    """`bf16(softmax(s))` is a cast of a softmax, not one: its values are not exp(s - max)."""
    src = _src("").replace("p = softmax(s, axis=-1)", "p = bf16(softmax(s, axis=-1))")
    with pytest.raises(CompileError) as exc:
        zhenwu_cc.compile(src)
    assert exc.value.diagnostics[0].code == "ZK0619"


def test_unit_is_fused_into_the_flash_grid_and_the_unfused_program_stays():
    fused = zhenwu_cc.compile(_src("    tile o [64, 64, 64]"))
    unfused = zhenwu_cc.compile(_src("    tile o [64, 64, 64]"), fuse=False)
    assert _roles(fused) == ["attention"]
    assert "quantize" in _roles(unfused) and "attention" not in _roles(unfused)
    # both matmuls run at FP8 rate in both programs: every tensor-engine FLOP is an FP8 one
    for k in (fused, unfused):
        mma = {w.dtype for ph in k.costing(k.target).workload.phases for w in ph.work
               if w.kind == "mma"}
        assert mma == {"f8E4M3FN"}, mma


def test_per_tensor_p_scale_keeps_the_unfused_grids():
    """`scale tensor` needs the amax of all of P, which a streaming kernel cannot know."""
    k = zhenwu_cc.compile(_src("    tile o [64, 64, 64]", p_mode="tensor"))
    assert "attention" not in _roles(k)
    assert k.check(seed=0).passed


def test_unfused_program_is_the_typed_cast_program():
    """`--no-fuse` quantises exp(s - row max) with the amax 1 and divides after the FP8
    matmul, exactly as the `cast` program the check evaluates as typed."""
    k = zhenwu_cc.compile(_src("    tile o [64, 64, 64]", s=200), fuse=False)
    inputs = k.inputs(seed=4)
    typed = reference.evaluate(k.cast, k.kernel_inputs(inputs), mode="typed")["result0"]
    np.testing.assert_array_equal(k.run(inputs)["result0"], typed)
    assert k.check(seed=4).passed


def test_one_key_value_block_is_bit_identical_to_the_typed_cast_program():
    """With a key/value block covering the row the running max is the row max: the flash
    grid's casts are then the `cast` program's, bit for bit, as are the unfused kernel's."""
    src = _src("    tile o [64, 64, 256]")
    fused, unfused = zhenwu_cc.compile(src), zhenwu_cc.compile(src, fuse=False)
    inputs = fused.inputs(seed=3)
    typed = reference.evaluate(fused.cast, fused.kernel_inputs(inputs), mode="typed")["result0"]
    a, b = fused.run(inputs)["result0"], unfused.run(inputs)["result0"]
    assert _roles(fused) == ["attention"]
    np.testing.assert_array_equal(a, typed)
    np.testing.assert_array_equal(b, typed)


def _flash_fp8(q, k, v, scale, bkv):
    """FlashAttention-3's FP8 forward in numpy: per key/value block, exp(s - running max)
    quantised with the amax 1, its products with FP8 V rescaled as the max moves."""
    m = np.full(q.shape[:-1] + (1,), -np.inf, np.float32)
    ell = np.zeros_like(m)
    acc = np.zeros(q.shape[:-1] + (v.shape[-1],), np.float32)
    for j in range(0, k.shape[-2], bkv):
        s = (q @ np.swapaxes(k[..., j:j + bkv, :], -1, -2)).astype(np.float32) * scale
        m_new = np.maximum(m, s.max(-1, keepdims=True))
        e = np.exp(s - m_new)
        alpha = np.exp(m - m_new)
        ell = ell * alpha + e.sum(-1, keepdims=True)
        qe = numerics.quantize_tensor(np.append(e.ravel(), np.float32(1.0)), "f8E4M3FN")
        p = (numerics.dequantize(qe)[:-1].reshape(e.shape)).astype(np.float32)
        acc = acc * alpha + p @ v[..., j:j + bkv, :]
        m = m_new
    return acc / ell


def test_fused_kernel_quantises_each_block_with_the_running_max():
    """The executor runs the FP8 casts of P per key/value block, in the flash grid: it agrees
    with a numpy FlashAttention-3 to the f32 summation order, and differs from the unfused
    program (whose casts see the row max) by FP8 roundings."""
    src = _src("    tile o [64, 64, 64]")
    fused, unfused = zhenwu_cc.compile(src), zhenwu_cc.compile(src, fuse=False)
    inputs = fused.inputs(seed=1)
    args = fused.kernel_inputs(inputs)
    q, k, v = (numerics.dequantize(numerics.Quantized(args[n], args[f"{n}_scale"].reshape(()),
                                                       "tensor")).astype(np.float32)
               for n in ("q", "k", "v"))
    want = _flash_fp8(q, k, v, np.float32(64 ** -0.5), 64)
    got = fused.run(inputs)["result0"].astype(np.float32)
    other = unfused.run(inputs)["result0"].astype(np.float32)
    ulp = np.abs(want) * 2.0 ** -8 + 1e-6  # one bf16 rounding of the output
    assert np.all(np.abs(got - want) <= ulp)
    off = np.count_nonzero(np.abs(other - want) > ulp)
    assert off > want.size // 4  # 65% of them at seed 1


@pytest.mark.parametrize("schedule", ["    tile o [64, 64, 64]", "    tile s [32, 64, 32]",
                                      "    tile o [64, 32, 128]"])
def test_fused_and_unfused_pass_the_check_at_ragged_shapes(schedule):
    """S = 200: the last key/value block is masked, its quantised zeros add nothing."""
    for fuse in (True, False):
        k = zhenwu_cc.compile(_src(schedule, s=200), fuse=fuse)
        result = k.check(seed=2)
        assert result.passed, str(result)
        said = result.checks[0].yardstick
        assert ("running max" in said) == fuse, said


def test_fuse_p_off_keeps_the_unfused_grids():
    k = zhenwu_cc.compile(_src("    tile o [64, 64, 64]\n    fuse p off"))
    assert "attention" not in _roles(k)


def test_a_tile_directive_on_p_keeps_its_name():
    """`p`'s directives move to exp(s - max), the value `scale unit` quantises: a refusal still
    names `p`."""
    with pytest.raises(CompileError) as exc:
        zhenwu_cc.compile(_src("    tile o [64, 64, 64]\n    tile p [1, 32, 256]")).module("tile")
    (d,) = exc.value.diagnostics
    assert d.code == "ZK0605" and "`tile p [1, 32, 256]`" in d.message, d.message


def test_causal_fp8_example_shape_skips_masked_blocks_and_passes():
    src = (EXAMPLES / "attention_causal.zk").read_text().replace(
        "schedule attention_causal {",
        "schedule attention_causal {\n    precision q, k, v as f8E4M3FN scale tensor\n"
        "    precision p as f8E4M3FN scale unit")
    k = zhenwu_cc.compile(src, defines=dict(B=1, H=2, S=256, D=64))
    assert _roles(k) == ["attention"]
    result = k.check(seed=0)
    assert result.passed, str(result)
