"""Differential test: random kernels through the whole pipeline agree with the reference.

Hypothesis builds random expression trees over the elementwise, reduction, normalisation and
matmul builtins, with random shapes (odd ones included) and random legal tile sizes; each kernel
is compiled to `ppu`, executed, and checked against the float64 reference with the same
dtype-aware tolerance `zhenwu-cc run --check` uses.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import zhenwu_cc

UNARY = ["exp({})", "tanh({})", "sigmoid({})", "abs({})", "-{}", "relu({})", "silu({})",
         "gelu({})", "sqrt(abs({}) + 1.0)", "{} * 0.5"]
BINARY = ["{} + {}", "{} - {}", "{} * {}", "max({}, {})", "min({}, {})",
          "where({} > {}, {}, {})"]
ROWWISE = ["softmax({}, axis=-1)", "softmax({}, axis=0)", "layernorm({}, axis=-1)",
           "rmsnorm({}, axis=-1)", "{} - max({}, axis=-1, keepdims=true)",
           "{} / (sum(abs({}), axis=0, keepdims=true) + 1.0)", "log_softmax({}, axis=-1)"]


@st.composite
def expressions(draw, leaves, depth):
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(leaves))
    kind = draw(st.sampled_from(["unary", "binary", "rowwise"]))
    a = draw(expressions(leaves, depth - 1))
    if kind == "unary":
        return draw(st.sampled_from(UNARY)).format(a)
    if kind == "rowwise":
        tmpl = draw(st.sampled_from(ROWWISE))
        return tmpl.format(*([a] * tmpl.count("{}")))
    b = draw(expressions(leaves, depth - 1))
    tmpl = draw(st.sampled_from(BINARY))
    return tmpl.format(a, b, a, b) if tmpl.startswith("where") else tmpl.format(a, b)


@st.composite
def kernels(draw):
    m = draw(st.integers(1, 40))
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 48))
    dtype = draw(st.sampled_from(["f32", "f16"]))
    use_matmul = draw(st.booleans())
    leaves = ["xf", "yf", "r", "c"] + (["mm"] if use_matmul else [])
    body = draw(expressions(leaves, 3))
    lines = ["    xf = f32(x)", "    yf = f32(y)"]
    if use_matmul:
        lines.append("    mm = f32(a) @ f32(w)")
    lines.append(f"    out = broadcast_to({body}, (M, N))")
    params = [f"x: {dtype}[M, N]", f"y: {dtype}[M, N]", "r: f32[M, 1]", "c: f32[N]"]
    if use_matmul:
        params += [f"a: {dtype}[M, K]", f"w: {dtype}[K, N]"]
    src = (f"kernel k<M = {m}, N = {n}, K = {k}>({', '.join(params)}) -> f32[M, N] {{\n"
           + "\n".join(lines) + "\n    return out\n}\n")
    if draw(st.booleans()):
        tm = draw(st.integers(1, max(1, m)))
        tn = draw(st.integers(1, max(1, n)))
        src += f"schedule k {{ tile out [{tm}, {tn}] }}\n"
    return src


@settings(max_examples=25)
@given(kernels(), st.integers(0, 2**16))
def test_random_kernels_agree_with_the_reference(src, seed):
    result = zhenwu_cc.compile(src).check(seed=seed)
    assert result.passed, f"{src}\n{result}"


MATMUL = """kernel mm<M = {m}, N = {n}, K = {k}>(a: {dt}[M, K], b: {dt}[K, N], bias: f32[N])
    -> f32[M, N] {{
    c = a @ b + bias
    return c
}}
schedule mm {{ tile c [{tm}, {tn}, {tk}] }}
"""


@settings(max_examples=25)
@given(st.integers(1, 96), st.integers(1, 96), st.integers(1, 200), st.sampled_from(["f32", "f16",
                                                                                     "bf16"]),
       st.sampled_from([1, 3, 8, 16, 32, 64]), st.sampled_from([1, 5, 16, 32, 64]),
       st.sampled_from([1, 7, 16, 32, 64]))
def test_random_matmul_tilings_agree_with_the_reference(m, n, k, dt, tm, tn, tk):
    src = MATMUL.format(m=m, n=n, k=k, dt=dt, tm=tm, tn=tn, tk=tk)
    result = zhenwu_cc.compile(src).check(seed=m * n + k)
    assert result.passed, f"{src}\n{result}"
