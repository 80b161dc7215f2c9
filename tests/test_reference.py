"""The reference evaluator against hand-written numpy, in both modes, and its input helpers."""

from __future__ import annotations

import math
import os

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zhenwu_cc.dialects import zk
from zhenwu_cc.runtime import reference, units
from zhenwu_cc.runtime.reference import check_inputs, evaluate, random_inputs

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.frontend import build

RNG = np.random.default_rng(1234)


def kernel(src: str, **defines: int) -> zk.KernelOp:
    return build(src, "t.zk", defines).ops.first


def f32(*shape: int, low: float | None = None) -> np.ndarray:
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + low if low is not None else x


def run1(src: str, mode: str = "f64", **inputs: np.ndarray) -> np.ndarray:
    """Evaluate a one-result kernel."""
    (out,) = evaluate(kernel(src), inputs, mode=mode).values()
    return out


def code_of(exc: pytest.ExceptionInfo) -> str:
    return exc.value.diagnostics[0].code


def test_every_zk_op_has_a_rule():
    ops = set(zk.ZK.operations) - {zk.KernelOp, zk.ReturnOp}
    assert ops <= set(reference.RULES)


def test_unknown_op_is_an_internal_error(monkeypatch):
    monkeypatch.delitem(reference.RULES, zk.ExpOp)
    with pytest.raises(TypeError, match="zk.exp"):
        run1("kernel k(x: f32[2]) -> f32[2] { return exp(x) }", x=f32(2))


# ---- elementwise -----------------------------------------------------------------------------
_erf = np.vectorize(math.erf)
UNARY = {
    "exp": (np.exp, None), "log": (np.log, 0.1), "tanh": (np.tanh, None),
    "erf": (_erf, None), "sqrt": (np.sqrt, 0.0), "rsqrt": (lambda x: 1 / np.sqrt(x), 0.1),
    "abs": (lambda x: np.where(x < 0, -x, x), None),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), None),
    "relu": (lambda x: np.where(x > 0, x, 0.0), None),
    "gelu": (lambda x: x * 0.5 * (1 + _erf(x / math.sqrt(2))), None),
    "gelu_tanh": (lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                   * (x + 0.044715 * x**3))), None),
    "silu": (lambda x: x / (1 + np.exp(-x)), None),
    "softplus": (lambda x: np.log(1 + np.exp(x)), None),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name):
    fn, low = UNARY[name]
    x = f32(3, 5, low=low)
    got = run1(f"kernel k(x: f32[3, 5]) -> f32[3, 5] {{ return {name}(x) }}", x=x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, fn(x.astype(np.float64)), rtol=1e-12, atol=1e-300)


def test_neg_and_softplus_extremes():
    x = np.array([-1000.0, -1.0, 0.0, 30.0, 1000.0], np.float32)
    got = run1("kernel k(x: f32[5]) -> f32[5] { return softplus(-x) }", x=x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [1000.0, np.log1p(np.e), np.log(2), np.log1p(np.exp(-30)),
                                     0.0], rtol=1e-12, atol=0)


@pytest.mark.parametrize("op,fn", [("+", np.add), ("-", np.subtract), ("*", np.multiply),
                                   ("/", np.divide)])
def test_binary_operators_broadcast(op, fn):
    x, y = f32(2, 1, 4), f32(3, 1, low=0.5)
    got = run1(f"kernel k(x: f32[2, 1, 4], y: f32[3, 1]) -> f32[2, 3, 4] {{ return x {op} y }}",
               x=x, y=y)
    assert got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, fn(x.astype(np.float64), y.astype(np.float64)))


def _dims(shape) -> str:
    return ", ".join(map(str, shape))


@settings(max_examples=40)
@given(shapes=st.integers(0, 3).flatmap(lambda r: st.tuples(
    st.lists(st.integers(1, 3), min_size=r, max_size=r),
    st.lists(st.booleans(), min_size=r, max_size=r))), op=st.sampled_from(["+", "-", "*", "max"]),
    dtype=st.sampled_from(["f32", "f16", "i32"]), seed=st.integers(0, 9))
def test_binary_broadcasting_matches_numpy(shapes, op, dtype, seed):
    dims, ones = shapes
    a_shape = tuple(dims)
    b_shape = tuple(1 if one else d for d, one in zip(dims, ones))[1:]  # lower rank, some 1s
    expr = "max(a, b)" if op == "max" else f"a {op} b"
    k = kernel(f"kernel k(a: {dtype}[{_dims(a_shape)}], b: {dtype}[{_dims(b_shape)}]) "
               f"-> {dtype}[{_dims(a_shape)}] {{ return {expr} }}")
    ins = random_inputs(k, seed)
    fn = {"+": np.add, "-": np.subtract, "*": np.multiply, "max": np.maximum}[op]
    typed = evaluate(k, ins, mode="typed")["result0"]
    assert typed.dtype == ins["a"].dtype and typed.shape == a_shape
    np.testing.assert_array_equal(typed, fn(ins["a"], ins["b"]))
    exact = evaluate(k, ins)["result0"]
    wide = np.int64 if dtype == "i32" else np.float64
    np.testing.assert_array_equal(exact, fn(ins["a"].astype(wide), ins["b"].astype(wide)))


def test_max_min_pow_and_weak_scalars():
    x, y = f32(4, low=0.5), f32(4)
    src = ("kernel k(x: f32[4], y: f32[4]) -> f32[4] "
           "{ return max(x, y) * 2 + min(x, y) - pow(x, y) / 4.0 }")
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    want = np.maximum(x64, y64) * 2 + np.minimum(x64, y64) - x64**y64 / 4
    np.testing.assert_allclose(run1(src, x=x, y=y), want, rtol=1e-14)


def test_max_propagates_nan_and_clamp():
    x = np.array([np.nan, -3.0, 0.5, 9.0], np.float32)
    got = run1("kernel k(x: f32[4]) -> f32[4] { return clamp(x, -1, 1) }", x=x)
    np.testing.assert_array_equal(got, [np.nan, -1.0, 0.5, 1.0])


def test_compare_select_and_causal_mask():
    s = f32(5, 5)
    src = """kernel k<S = 5>(s: f32[S, S]) -> (m: i1[S, S], p: f32[S, S]) {
        m = iota((S, S), axis=1) <= iota((S, S), axis=0)
        p = softmax(where(m, s, -inf), axis=-1)
        return m, p
    }"""
    out = evaluate(kernel(src), {"s": s}, mode="f64")
    causal = np.tril(np.ones((5, 5), bool))
    assert out["m"].dtype == np.bool_
    np.testing.assert_array_equal(out["m"], causal)
    e = np.where(causal, np.exp(s - s.max(axis=1, keepdims=True, where=causal, initial=-np.inf)),
                 0.0)
    np.testing.assert_allclose(out["p"], e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    assert np.all(out["p"][~causal] == 0)


@pytest.mark.parametrize("pred,fn", [("==", np.equal), ("!=", np.not_equal), ("<", np.less),
                                     ("<=", np.less_equal), (">", np.greater),
                                     (">=", np.greater_equal)])
def test_comparisons(pred, fn):
    x = np.array([[1, 2, 3]], np.int32)
    y = np.array([[2], [2]], np.int32)
    got = run1(f"kernel k(x: i32[1, 3], y: i32[2, 1]) -> i1[2, 3] {{ return x {pred} y }}",
               x=x, y=y)
    np.testing.assert_array_equal(got, fn(x, y))


def test_iota_along_a_middle_axis():
    got = run1("kernel k() -> i32[2, 3, 4] { return iota((2, 3, 4), axis=1) }", mode="typed")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.broadcast_to(np.arange(3)[:, None], (2, 3, 4)))


# ---- reductions --------------------------------------------------------------------------------
def test_reductions_axes_keepdims_negative():
    x = f32(2, 3, 4)
    src = """kernel k(x: f32[2, 3, 4]) -> (a: f32[2, 3, 1], b: f32[3], c: f32[2, 4], d: f32[],
                                         e: f32[2, 1, 4], f: f32[2, 3]) {
        a = sum(x, axis=-1, keepdims=true)
        b = max(x, axis=(0, -1))
        c = min(x, axis=1)
        d = mean(x)
        e = logsumexp(x, axis=-2, keepdims=true)
        f = logsumexp(x)
        return a, b, c, d, e, f
    }"""
    out = evaluate(kernel(src), {"x": x})
    x = x.astype(np.float64)
    np.testing.assert_allclose(out["a"], x.sum(axis=2)[..., None], rtol=1e-14)
    np.testing.assert_array_equal(out["b"], x.max(axis=(0, 2)))
    np.testing.assert_array_equal(out["c"], x.min(axis=1))
    assert out["d"].shape == () and out["d"] == pytest.approx(x.mean(), rel=1e-14)
    np.testing.assert_allclose(out["e"], np.log(np.exp(x).sum(axis=1, keepdims=True)), rtol=1e-14)
    np.testing.assert_allclose(out["f"], np.log(np.exp(x).sum(axis=2)), rtol=1e-14)


def test_logsumexp_is_stable():
    x = np.array([[1000.0, 1000.0], [-np.inf, -np.inf]], np.float32)
    got = run1("kernel k(x: f32[2, 2]) -> f32[2] { return logsumexp(x, axis=1) }", x=x)
    np.testing.assert_allclose(got, [1000 + np.log(2), -np.inf])


def test_argmax_first_of_ties():
    x = np.array([[1, 3, 3], [5, 5, 0]], np.float32)
    src = "kernel k(x: f32[2, 3]) -> i32[2] { return argmax(x, axis=-1) }"
    np.testing.assert_array_equal(run1(src, x=x), [1, 0])
    typed = run1(src, "typed", x=x)
    assert typed.dtype == np.int32
    np.testing.assert_array_equal(typed, [1, 0])
    keep = run1("kernel k(x: f32[2, 3]) -> i32[1, 3] { return argmax(x, axis=0, keepdims=true) }",
                x=x)
    np.testing.assert_array_equal(keep, [[1, 1, 0]])


# ---- contraction ------------------------------------------------------------------------------
def test_batched_matmul_broadcasts():
    a, b = f32(2, 1, 3, 4), f32(5, 4, 2)
    got = run1("kernel k(a: f32[2, 1, 3, 4], b: f32[5, 4, 2]) -> f32[2, 5, 3, 2] "
               "{ return a @ b }", a=a, b=b)
    want = np.einsum("xmk,bkn->xbmn", a[:, 0].astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_integer_matmul_accumulates_in_i32_or_i64():
    a = np.full((1, 300), 127, np.int8)
    src = "kernel k(a: i8[1, 300], b: i8[300, 1]) -> i32[1, 1] { return a @ b }"
    assert run1(src, a=a, b=a.T).item() == 127 * 127 * 300
    typed = run1(src, "typed", a=a, b=a.T)
    assert typed.dtype == np.int32 and typed.item() == 127 * 127 * 300


def test_f16_matmul_typed_accumulates_in_f32():
    a = RNG.standard_normal((8, 64)).astype(np.float16)
    b = RNG.standard_normal((64, 4)).astype(np.float16)
    src = "kernel k(a: f16[8, 64], b: f16[64, 4]) -> f16[8, 4] { return f16(a @ b) }"
    got = run1(src, "typed", a=a, b=b)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, (a.astype(np.float32) @ b.astype(np.float32))
                                  .astype(np.float16))


# ---- data movement ---------------------------------------------------------------------------
def test_slices_index_and_negative_bounds():
    x = f32(4, 3, 5)
    src = """kernel k(x: f32[4, 3, 5]) -> (a: f32[2, 3, 2], b: f32[3, 5]) {
        a = x[1:3, :, -2:]
        b = x[-1]
        return a, b
    }"""
    out = evaluate(kernel(src), {"x": x})
    np.testing.assert_array_equal(out["a"], x[1:3, :, -2:])
    np.testing.assert_array_equal(out["b"], x[-1])


def test_concat_transpose_reshape_broadcast():
    a, b = f32(2, 3), f32(2, 1)
    src = """kernel k(a: f32[2, 3], b: f32[2, 1]) -> (c: f32[2, 4], t: f32[2, 2, 2],
                                                       u: f32[3, 2], r: f32[8],
                                                       z: f32[3, 2, 3], s: f32[2, 2]) {
        c = concat((a, b), axis=-1)
        t = transpose(reshape(c, (2, 2, 2)), (2, 0, 1))
        u = transpose(a)
        r = reshape(c, (-1,))
        z = broadcast_to(a, (3, 2, 3))
        s = broadcast_to(f32(2.5), (2, 2))
        return c, t, u, r, z, s
    }"""
    out = evaluate(kernel(src), {"a": a, "b": b})
    c = np.concatenate([a, b], axis=1)
    np.testing.assert_array_equal(out["c"], c)
    np.testing.assert_array_equal(out["t"], c.reshape(2, 2, 2).transpose(2, 0, 1))
    np.testing.assert_array_equal(out["u"], a.T)
    np.testing.assert_array_equal(out["r"], c.ravel())
    np.testing.assert_array_equal(out["z"], np.broadcast_to(a, (3, 2, 3)))
    np.testing.assert_array_equal(out["s"], np.full((2, 2), 2.5))
    assert all(v.flags.c_contiguous and v.flags.writeable for v in out.values())


# ---- normalisations ------------------------------------------------------------------------------
def test_layernorm_and_rmsnorm_with_scale_and_bias():
    x, g, b = f32(3, 6), f32(6), f32(1, 6)
    src = """kernel k(x: f32[3, 6], g: f32[6], b: f32[1, 6]) -> (l: f32[3, 6], r: f32[3, 6],
                                                                  l0: f32[3, 6], r0: f32[3, 6]) {
        l = layernorm(x, g, b, eps=0.01)
        r = rmsnorm(x, scale=g, bias=b)
        l0 = layernorm(x, axis=0)
        r0 = rmsnorm(x, eps=0.5, axis=-2)
        return l, r, l0, r0
    }"""
    out = evaluate(kernel(src), {"x": x, "g": g, "b": b})
    x, g, b = (v.astype(np.float64) for v in (x, g, b))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(out["l"], (x - mu) / np.sqrt(var + 0.01) * g + b, rtol=1e-12)
    rms = np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out["r"], x / rms * g + b, rtol=1e-12)
    np.testing.assert_allclose(out["l0"], (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(out["r0"], x / np.sqrt((x**2).mean(0) + 0.5), rtol=1e-12)


def test_softmax_and_log_softmax_along_axis_0():
    x = f32(4, 3) * 50
    src = """kernel k(x: f32[4, 3]) -> (s: f32[4, 3], l: f32[4, 3]) {
        s = softmax(x, axis=0)
        l = log_softmax(x, axis=0)
        return s, l
    }"""
    out = evaluate(kernel(src), {"x": x})
    x = x.astype(np.float64)
    e = np.exp(x - x.max(0))
    np.testing.assert_allclose(out["s"], e / e.sum(0), rtol=1e-12)
    np.testing.assert_allclose(out["l"], x - x.max(0) - np.log(e.sum(0)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["s"].sum(0), 1.0, rtol=1e-14)


# ---- integers and casts --------------------------------------------------------------------------
def test_integer_ops_saturate_when_typed():
    x = np.array([100, -100, 5, -128], np.int8)
    src = """kernel k(x: i8[4]) -> (s: i8[4], n: i8[4], a: i8[4], t: i8[]) {
        s = x + x
        n = -x
        a = abs(max(x, 0 - x) * 1)
        t = sum(x)
        return s, n, a, t
    }"""
    exact = evaluate(kernel(src), {"x": x})
    assert exact["s"].dtype == np.int64
    np.testing.assert_array_equal(exact["s"], [200, -200, 10, -256])
    np.testing.assert_array_equal(exact["n"], [-100, 100, -5, 128])
    assert exact["t"] == -123
    typed = evaluate(kernel(src), {"x": x}, mode="typed")
    assert typed["s"].dtype == np.int8
    np.testing.assert_array_equal(typed["s"], [127, -128, 10, -128])
    np.testing.assert_array_equal(typed["n"], [-100, 100, -5, 127])
    np.testing.assert_array_equal(typed["a"], [100, 100, 5, 127])
    assert typed["t"] == -123


def test_cast_to_int_rounds_half_even_and_clips():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 300.0, -300.0, np.nan, np.inf], np.float32)
    src = "kernel k(x: f32[9]) -> i8[9] { return i8(x) }"
    want = [0, 2, 2, 0, -2, 127, -128, 0, 127]
    np.testing.assert_array_equal(run1(src, x=x), want)
    np.testing.assert_array_equal(run1(src, "typed", x=x), want)
    big = np.array([1e30, -1e30], np.float32)
    got = run1("kernel k(x: f32[2]) -> i64[2] { return i64(x) }", x=big)
    np.testing.assert_array_equal(got, [2**63 - 1, -(2**63)])


def test_casts_between_bool_int_float():
    x = np.array([0.0, 2.0, -0.5], np.float32)
    src = """kernel k(x: f32[3]) -> (b: i1[3], f: f32[3], u: ui8[3]) {
        b = i1(x)
        f = f32(b)
        u = ui8(x)
        return b, f, u
    }"""
    for mode in ("f64", "typed"):
        out = evaluate(kernel(src), {"x": x}, mode=mode)
        np.testing.assert_array_equal(out["b"], [False, True, True])
        np.testing.assert_array_equal(out["f"], [0.0, 1.0, 1.0])
        np.testing.assert_array_equal(out["u"], [0, 2, 0])


# ---- typed versus exact --------------------------------------------------------------------------
def test_f16_typed_rounds_every_op_like_numpy_f16():
    x, y = (RNG.standard_normal(64).astype(np.float16) for _ in range(2))
    src = "kernel k(x: f16[64], y: f16[64]) -> f16[64] { return exp(x * y + x) / 3.0 }"
    typed = run1(src, "typed", x=x, y=y)
    assert typed.dtype == np.float16
    np.testing.assert_array_equal(typed, np.exp(x * y + x) / np.float16(3))
    exact = run1(src, x=x, y=y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    np.testing.assert_allclose(exact, np.exp(x64 * y64 + x64) / 3, rtol=1e-14)
    assert not np.array_equal(exact, typed.astype(np.float64))


def test_f8_cast_saturates_when_typed():
    x = np.array([1000.0, -1000.0, 3.3, np.nan], np.float32)
    src = "kernel k(x: f32[4]) -> f8E4M3FN[4] { return f8E4M3FN(x) }"
    typed = run1(src, "typed", x=x)
    assert typed.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(typed.astype(np.float32), [448.0, -448.0, 3.25, np.nan])
    np.testing.assert_array_equal(run1(src, x=x), x.astype(np.float64))


def test_f4_rounds_to_nearest_even_on_its_grid():
    x = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, -7.0], np.float32)
    src = "kernel k(x: f32[9]) -> f32[9] { return f32(f4E2M1FN(x)) }"
    got = run1(src, "typed", x=x)
    np.testing.assert_array_equal(got, [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, -6.0])


def test_typed_constants_are_rounded_once():
    got = run1("kernel k() -> f4E2M1FN[] { return 0.2500000001 }", "typed")
    assert got.dtype == ml_dtypes.float4_e2m1fn and float(got) == 0.5  # not 0 via float32
    assert float(run1("kernel k() -> f4E2M1FN[] { return 0.2500000001 }")) == 0.2500000001


def test_nan_into_fp4_is_a_diagnostic_when_typed():
    src = "kernel k(x: f32[3]) -> f4E2M1FN[3] {\n    return f4E2M1FN(log(x))\n}"
    x = np.array([-1.0, 1.0, 2.0], np.float32)
    assert np.isnan(run1(src, x=x)[0])
    with pytest.raises(CompileError) as exc:
        run1(src, "typed", x=x)
    diag = exc.value.diagnostics[0]
    assert diag.code == "ZK0507" and "1 NaN" in diag.message and diag.span.line == 2
    with pytest.raises(CompileError) as exc:
        check_inputs(kernel("kernel k(q: f4E2M1FN[2]) -> f4E2M1FN[2] { return q }"),
                     {"q": np.array([np.nan, 1.0])})
    assert code_of(exc) == "ZK0507" and "`q`" in exc.value.diagnostics[0].message


def test_bf16_typed_output_type_and_f32_compute():
    x = RNG.standard_normal((4, 16)).astype(ml_dtypes.bfloat16)
    src = "kernel k(x: bf16[4, 16]) -> bf16[4, 16] { return softmax(x) }"
    got = run1(src, "typed", x=x)
    assert got.dtype == ml_dtypes.bfloat16
    x32 = x.astype(np.float32)
    e = np.exp(x32 - x32.max(-1, keepdims=True))
    np.testing.assert_array_equal(got, (e / e.sum(-1, keepdims=True)).astype(ml_dtypes.bfloat16))


def test_typed_inputs_are_rounded_first():
    x = np.array([1.0 + 2**-12], np.float64)
    src = "kernel k(x: f16[1]) -> f32[1] { return f32(x) }"
    assert run1(src, "typed", x=x)[0] == 1.0
    assert run1(src, x=x)[0] == 1.0  # both modes see the value the parameter's dtype holds


# ---- inputs --------------------------------------------------------------------------------------
MIXED = ("kernel k(x: f16[3, 4], y: bf16[5], q: f8E4M3FN[8], s: f8E8M0FNU[2], n: i8[50], "
         "u: ui8[50], b: i1[40]) -> f16[3, 4] { return x }")


def test_random_inputs_dtypes_and_ranges():
    ins = random_inputs(kernel(MIXED), seed=3)
    assert [v.dtype for v in ins.values()] == [
        np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e8m0fnu,
        np.int8, np.uint8, np.bool_]
    assert ins["x"].shape == (3, 4) and ins["b"].shape == (40,)
    assert -8 <= ins["n"].min() < 0 <= ins["n"].max() <= 7
    assert 0 <= ins["u"].min() and ins["u"].max() <= 7
    assert ins["b"].any() and not ins["b"].all()
    scales = ins["s"].astype(np.float32)
    assert np.all(np.log2(scales) == np.round(np.log2(scales)))
    q = ins["q"].astype(np.float32)
    assert np.all(np.isfinite(q)) and np.abs(q).max() < 448


def test_random_inputs_deterministic_and_per_name():
    a = random_inputs(kernel(MIXED), seed=7)
    b = random_inputs(kernel(MIXED), seed=7)
    assert all(a[n].tobytes() == b[n].tobytes() for n in a)
    c = random_inputs(kernel(MIXED), seed=8)
    assert a["x"].tobytes() != c["x"].tobytes()
    wider = kernel("kernel k(z: f32[9], x: f16[3, 4], w: f16[3, 4]) -> f16[3, 4] { return x }")
    d = random_inputs(wider, seed=7)
    assert d["x"].tobytes() == a["x"].tobytes()
    assert d["w"].tobytes() != d["x"].tobytes()


SMALL = "kernel k(x: f16[2, 3], n: i8[3]) -> f16[2, 3] { return x }"


def test_check_inputs_rounds_and_fills():
    k = kernel(SMALL)
    got = check_inputs(k, {"x": np.full((2, 3), 1.0 + 2**-13)}, seed=5)
    assert got["x"].dtype == np.float16 and np.all(got["x"] == 1.0)
    np.testing.assert_array_equal(got["n"], random_inputs(k, seed=5)["n"])
    ints = check_inputs(k, {"n": np.array([-128, 0, 127], np.int64)})
    assert ints["n"].dtype == np.int8


@pytest.mark.parametrize("inputs,code,words", [
    ({"xx": np.zeros((2, 3))}, "ZK0501", ["`xx`", "did you mean `x`"]),
    ({"x": np.zeros((3, 2))}, "ZK0502", ["`x`", "[3, 2]", "f16[2, 3]"]),
    ({"n": np.zeros(3)}, "ZK0503", ["`n`", "float64"]),
    ({"n": np.array([0, 1, 300])}, "ZK0503", ["`n`", "300"]),
    ({"x": np.zeros((2, 3), np.int32)}, "ZK0503", ["`x`", "int32"]),
    ({"x": np.zeros((2, 3), "V2")}, "ZK0503", ["`x`", "float32"]),
])
def test_check_inputs_errors(inputs, code, words):
    with pytest.raises(CompileError) as exc:
        check_inputs(kernel(SMALL), inputs)
    diag = exc.value.diagnostics[0]
    assert diag.code == code
    text = diag.message + (diag.help or "")
    assert all(w in text for w in words), text


def test_evaluate_requires_every_input():
    with pytest.raises(CompileError) as exc:
        evaluate(kernel(SMALL), {"x": np.zeros((2, 3))})
    assert code_of(exc) == "ZK0501" and "`n`" in exc.value.diagnostics[0].message


def test_bad_mode_is_a_programming_error():
    with pytest.raises(ValueError, match="mode"):
        evaluate(kernel(SMALL), random_inputs(kernel(SMALL)), mode="f16")


# ---- host memory --------------------------------------------------------------------------------
def test_estimate_counts_every_value_and_mode_size():
    k = kernel("kernel k(x: f16[100, 10]) -> f16[100, 10] { return exp(x) * x }")
    f64, typed = reference.estimate_host_bytes(k, "f64"), reference.estimate_host_bytes(k, "typed")
    # the peak is at the mul: caller's input (2 B) + its copy, exp's result and the product
    # (8 B each in f64, 2 B typed), scratch 3 working floats (f64 8 B, typed f32 4 B); the
    # input copy and exp are freed after it
    assert f64 == 1000 * (2 + 8 + 8 + 8 + 3 * 8)
    assert typed == 1000 * (2 + 2 + 2 + 2 + 3 * 4)


def test_refuses_runs_over_the_limit(monkeypatch):
    k = kernel("kernel k<N = 1000>(x: f32[N, N]) -> f32[N, N] { return x }")
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "1M")
    with pytest.raises(CompileError) as exc:
        evaluate(k, {"x": np.zeros((1000, 1000), np.float32)})
    assert code_of(exc) == "ZK0505" and "ZHENWU_MAX_HOST_BYTES" in exc.value.diagnostics[0].help
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "1G")
    reference.ensure_host_memory(k, "f64")
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "lots")
    with pytest.raises(CompileError) as exc:
        reference.ensure_host_memory(k, "f64")
    assert code_of(exc) == "ZK0506"


def test_default_limit_is_a_share_of_physical_memory(monkeypatch):
    monkeypatch.delenv("ZHENWU_MAX_HOST_BYTES", raising=False)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert units.host_memory_limit() == int(0.6 * physical)
