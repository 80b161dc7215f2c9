"""The builtins written as compositions (leaky_relu, hardtanh, mish, group_norm, softmax and the
norms over a tuple of axes): each against an independent numpy formula, through the float64
reference and through the lowered program on the executor."""

import numpy as np
import pytest
from scipy.special import log_softmax as np_log_softmax
from scipy.special import softmax as np_softmax

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError


def _kernel(body: str, params: str, result: str):
    return zhenwu_cc.compile(f"kernel k({params}) -> {result} {{\n    return {body}\n}}\n")


def _both(k, inputs, want, rtol=1e-6, atol=1e-6):
    """The f64 reference matches the formula tightly; the executor within f32 rounding."""
    ref = next(iter(k.reference(inputs).values()))
    np.testing.assert_allclose(ref, want, rtol=1e-12, atol=1e-12)
    got = next(iter(k.run(inputs).values()))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol)


RNG = np.random.default_rng(7)
X = RNG.standard_normal((4, 6, 5)).astype(np.float32)
Y = RNG.standard_normal((8, 16)).astype(np.float32)
Y64 = Y.astype(np.float64)


def test_leaky_relu_default_and_given_slope():
    _both(_kernel("leaky_relu(y)", "y: f32[8, 16]", "f32[8, 16]"), {"y": Y},
          np.where(Y64 > 0, Y64, 0.01 * Y64))
    _both(_kernel("leaky_relu(y, slope=0.2)", "y: f32[8, 16]", "f32[8, 16]"), {"y": Y},
          np.where(Y64 > 0, Y64, 0.2 * Y64))


def test_hardtanh_bounds():
    _both(_kernel("hardtanh(y)", "y: f32[8, 16]", "f32[8, 16]"), {"y": Y}, np.clip(Y64, -1, 1))
    _both(_kernel("hardtanh(y, -0.5, hi=2)", "y: f32[8, 16]", "f32[8, 16]"), {"y": Y},
          np.clip(Y64, -0.5, 2))


def test_hardtanh_refuses_crossed_bounds():
    with pytest.raises(CompileError) as e:
        _kernel("hardtanh(y, lo=1, hi=-1)", "y: f32[8, 16]", "f32[8, 16]")
    assert e.value.diagnostics[0].code == "ZK0306"


def test_mish_is_x_tanh_softplus():
    want = Y64 * np.tanh(np.logaddexp(0, Y64))
    _both(_kernel("mish(y)", "y: f32[8, 16]", "f32[8, 16]"), {"y": Y}, want)


def test_mish_of_f16_rounds_once():
    y16 = Y.astype(np.float16)
    y = y16.astype(np.float64)
    k = _kernel("mish(y)", "y: f16[8, 16]", "f16[8, 16]")
    got = next(iter(k.run({"y": y16}).values()))
    assert np.array_equal(got, (y * np.tanh(np.logaddexp(0, y))).astype(np.float16))


def test_softmax_over_two_axes():
    x = X.astype(np.float64)
    _both(_kernel("softmax(x, axis=(0, 2))", "x: f32[4, 6, 5]", "f32[4, 6, 5]"), {"x": X},
          np_softmax(x, axis=(0, 2)))
    _both(_kernel("log_softmax(x, axis=(-2, -1))", "x: f32[4, 6, 5]", "f32[4, 6, 5]"), {"x": X},
          np_log_softmax(x, axis=(1, 2)))


def _layernorm(x, axes, eps):
    d = x - x.mean(axis=axes, keepdims=True)
    return d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + eps)


def test_layernorm_and_rmsnorm_over_two_axes_with_scale_and_bias():
    x = X.astype(np.float64)
    s = RNG.standard_normal(5).astype(np.float32)
    k = _kernel("layernorm(x, s, s, axis=(1, 2))", "x: f32[4, 6, 5], s: f32[5]", "f32[4, 6, 5]")
    _both(k, {"x": X, "s": s}, _layernorm(x, (1, 2), 1e-5) * s + s, rtol=1e-5, atol=1e-5)
    k = _kernel("rmsnorm(x, axis=(0, 2), eps=1e-3)", "x: f32[4, 6, 5]", "f32[4, 6, 5]")
    _both(k, {"x": X}, x / np.sqrt((x * x).mean(axis=(0, 2), keepdims=True) + 1e-3),
          rtol=1e-5, atol=1e-5)


def test_one_axis_in_a_tuple_is_the_plain_op():
    one = _kernel("softmax(x, axis=(2,))", "x: f32[4, 6, 5]", "f32[4, 6, 5]").ir("zk")
    plain = _kernel("softmax(x, axis=2)", "x: f32[4, 6, 5]", "f32[4, 6, 5]").ir("zk")
    assert one == plain


def test_group_norm_matches_torch_formula():
    x = X.astype(np.float64)  # N=4, C=6, L=5
    s = RNG.standard_normal(6).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    grouped = x.reshape(4, 3, 10)
    want = _layernorm(grouped, (2,), 1e-5).reshape(4, 6, 5) * s[:, None] + b[:, None]
    k = _kernel("group_norm(x, 3, s, b)", "x: f32[4, 6, 5], s: f32[6], b: f32[6]",
                "f32[4, 6, 5]")
    _both(k, {"x": X, "s": s, "b": b}, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, code", [("group_norm(x, 4)", "ZK0313"),
                                        ("group_norm(x, 3, s)", "ZK0302"),
                                        ("group_norm(x, 0)", "ZK0313"),
                                        ("softmax(x, axis=(0, 0))", "ZK0304"),
                                        ("softmax(x, axis=())", "ZK0304"),
                                        ("layernorm(x, axis=(1, 3))", "ZK0304")])
def test_bad_calls_are_located_diagnostics(call, code):
    with pytest.raises(CompileError) as e:
        _kernel(call, "x: f32[4, 6, 5], s: f32[5]", "f32[4, 6, 5]")
    assert e.value.diagnostics[0].code == code
    assert e.value.diagnostics[0].span.line == 2


# ---- bitcast ------------------------------------------------------------------------------------
CODES = np.array([[0], [1], [126], [127], [128], [200], [254], [255]], np.uint8)


def test_bitcast_reads_codes_as_e8m0_scales_bit_for_bit():
    import ml_dtypes

    k = _kernel("x * f32(bitcast(s, f8E8M0FNU))", "x: f32[8, 4], s: ui8[8, 1]", "f32[8, 4]")
    x = np.ones((8, 4), np.float32)
    want = np.broadcast_to(CODES.view(ml_dtypes.float8_e8m0fnu).astype(np.float64), (8, 4))
    np.testing.assert_array_equal(next(iter(k.reference({"x": x, "s": CODES}).values())), want)
    got = next(iter(k.run({"x": x, "s": CODES}).values()))
    np.testing.assert_array_equal(got, want.astype(np.float32))  # code 0 is 2**-127, not NaN
    assert np.isnan(got[-1]).all() and got[0, 0] == 2.0**-127


def test_bitcast_between_signed_and_unsigned_bytes():
    k = _kernel("bitcast(s, i8)", "s: ui8[8, 1]", "i8[8, 1]")
    np.testing.assert_array_equal(next(iter(k.run({"s": CODES}).values())), CODES.view(np.int8))


@pytest.mark.parametrize("call, code", [("bitcast(s, f16)", "ZK0308"),
                                        ("bitcast(s, f4E2M1FN)", "ZK0308"),
                                        ("bitcast(s, 3)", "ZK0306"),
                                        ("f8E8M0FNU(s)", "ZK0308"),
                                        ("s + f32", "ZK0312")])
def test_bitcast_misuse_is_located(call, code):
    with pytest.raises(CompileError) as e:
        _kernel(call, "s: ui8[8, 1]", "f32[8, 1]")
    assert e.value.diagnostics[0].code == code
    assert e.value.diagnostics[0].span.line == 2
