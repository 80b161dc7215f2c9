"""The `decompose` pass: composites become primitives, keep their meaning (checked against the
reference evaluator of the composite itself), their locations, names and schedule attributes."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, f32, i1
from zhenwu_cc.dialects import zk
from zhenwu_cc.passes.decompose import (
    COMPOSITES,
    DecomposePass,
    exp_sum,
    exp_sums_of,
    normalised,
)
from zhenwu_cc.runtime import reference

from zhenwu_cc.frontend import build
from zhenwu_cc.pipeline import make_context, parse_pipeline

# (case id, parameters, result type, expression): every composite, in f32 and narrower types.
CASES = [
    ("softmax", "x: f32[6, 10]", "f32[6, 10]", "softmax(x)"),
    ("softmax_axis0", "x: f32[6, 10]", "f32[6, 10]", "softmax(x, axis=0)"),
    ("softmax_f16", "x: f16[6, 10]", "f16[6, 10]", "softmax(x)"),
    ("log_softmax", "x: f32[6, 10]", "f32[6, 10]", "log_softmax(x)"),
    ("log_softmax_bf16", "x: bf16[3, 4, 5]", "bf16[3, 4, 5]", "log_softmax(x, axis=1)"),
    ("logsumexp", "x: f32[6, 10]", "f32[6]", "logsumexp(x)"),
    ("logsumexp_axes_keepdims", "x: f32[3, 4, 5]", "f32[1, 4, 1]",
     "logsumexp(x, axis=(0, 2), keepdims=true)"),
    ("logsumexp_bf16", "x: bf16[6, 10]", "bf16[10]", "logsumexp(x, axis=0)"),
    ("layernorm", "x: f32[6, 10], g: f32[10], b: f32[10]", "f32[6, 10]", "layernorm(x, g, b)"),
    ("layernorm_plain", "x: f32[6, 10]", "f32[6, 10]", "layernorm(x, axis=0, eps=1e-3)"),
    ("layernorm_f16", "x: f16[6, 10], g: f16[10], b: f16[10]", "f16[6, 10]",
     "layernorm(x, g, b)"),
    ("rmsnorm", "x: f32[6, 10], g: f32[10]", "f32[6, 10]", "rmsnorm(x, g)"),
    ("rmsnorm_bias", "x: f32[6, 10], b: f32[6, 1]", "f32[6, 10]", "rmsnorm(x, bias=b)"),
    ("rmsnorm_bf16", "x: bf16[6, 10], g: bf16[10]", "bf16[6, 10]", "rmsnorm(x, g)"),
    ("gelu", "x: f32[6, 10]", "f32[6, 10]", "gelu(x)"),
    ("gelu_f16", "x: f16[6, 10]", "f16[6, 10]", "gelu(x)"),
    ("gelu_tanh", "x: f32[6, 10]", "f32[6, 10]", "gelu_tanh(x)"),
    ("silu", "x: f32[6, 10]", "f32[6, 10]", "silu(x)"),
    ("silu_f8", "x: f8E4M3FN[6, 10]", "f8E4M3FN[6, 10]", "silu(x)"),
    ("sigmoid", "x: f32[6, 10]", "f32[6, 10]", "sigmoid(x)"),
    ("softplus", "x: f32[6, 10]", "f32[6, 10]", "softplus(x)"),
    ("softplus_f16", "x: f16[6, 10]", "f16[6, 10]", "softplus(x)"),
    ("relu", "x: f32[6, 10]", "f32[6, 10]", "relu(x)"),
    ("relu_bf16", "x: bf16[6, 10]", "bf16[6, 10]", "relu(x)"),
]
IDS = [c[0] for c in CASES]
NARROW = {"f16": 2.0**-10, "bf16": 2.0**-7, "f8E4M3FN": 2.0**-3}  # one ulp, relative


def _source(params: str, result: str, expr: str, schedule: str = "") -> str:
    return f"kernel k({params}) -> {result} {{\n    y = {expr}\n    return y\n}}\n{schedule}"


def _kernel(params: str, result: str, expr: str, schedule: str = "") -> zk.KernelOp:
    module = build(_source(params, result, expr, schedule), "t.zk", {})
    kernel = module.ops.first
    assert isinstance(kernel, zk.KernelOp)
    return kernel


def _decompose(kernel: zk.KernelOp) -> None:
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(zk.ZK)
    module = kernel.parent_op()
    DecomposePass().apply(ctx, module)
    module.verify()


def _composite(kernel: zk.KernelOp):
    (op,) = [op for op in kernel.walk() if isinstance(op, COMPOSITES)]
    return op


def _before_after(case, seed: int = 0, mode: str = "f64", scale: float = 1.0):
    """The kernel's results from the composite and from its expansion, on the same inputs."""
    kernel = _kernel(*case[1:])
    inputs = {k: v * scale for k, v in reference.random_inputs(kernel, seed).items()}
    before = reference.evaluate(kernel, inputs, mode=mode)["y"]
    _decompose(kernel)
    return before, reference.evaluate(kernel, inputs, mode=mode)["y"], kernel


def _close(after: np.ndarray, before: np.ndarray, rtol: float) -> None:
    after, before = after.astype(np.float64), before.astype(np.float64)
    atol = rtol * float(np.max(np.abs(before[np.isfinite(before)]), initial=1.0))
    np.testing.assert_allclose(after, before, rtol=rtol, atol=atol)


# ---- structure -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_leaves_only_primitives_at_the_composites_location(case):
    kernel = _kernel(*case[1:])
    composite = _composite(kernel)
    loc, before = composite.location, set(kernel.walk()) - {composite}
    _decompose(kernel)
    new = [op for op in kernel.walk() if op not in before]
    assert new and not any(isinstance(op, COMPOSITES) for op in kernel.walk())
    assert all(op.location == loc for op in new)
    returned = kernel.body.block.last_op.operands[0]
    assert returned.name_hint == "y" and returned.owner is new[-1]
    assert [op for op in new if op.results and op.results[0].name_hint == "y"] == [new[-1]]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_narrow_inputs_compute_in_f32_and_round_once(case):
    kernel = _kernel(*case[1:])
    dtype = _composite(kernel).results[0].type.element_type
    _decompose(kernel)
    ops = [op for op in kernel.body.block.ops if not isinstance(op, zk.ReturnOp)]
    casts_to_f32 = [op for op in ops
                    if isinstance(op, zk.CastOp) and op.result.type.element_type == f32]
    if dtype == f32:
        assert not any(isinstance(op, zk.CastOp) for op in ops)
        return
    assert isinstance(ops[-1], zk.CastOp) and ops[-1].result.type.element_type == dtype
    assert len(casts_to_f32) == len(kernel.body.block.args)  # each operand, once
    computed = [op for op in ops if op not in casts_to_f32 and op is not ops[-1]]
    assert all(op.results[0].type.element_type in (f32, i1) for op in computed)


def test_schedule_attributes_move_to_the_final_op():
    kernel = _kernel("x: f16[8, 16]", "f16[8]", "logsumexp(x, axis=1)",
                     "schedule k {\n    tile y [4]\n}\n")
    _decompose(kernel)
    final = kernel.body.block.last_op.operands[0].owner
    assert isinstance(final, zk.CastOp)
    attr = final.attributes["zk.tile"]
    assert (attr.values, attr.split_k.data, attr.loc.line.data) == ((4,), 1, 6)  # + its line
    tiled = [op for op in kernel.walk() if "zk.tile" in op.attributes]
    assert tiled == [final]


def test_composite_of_composite_and_unnamed_results():
    kernel = _kernel("x: f16[4, 8]", "f16[4, 8]", "gelu(softmax(x)) + relu(x)")
    before = reference.evaluate(kernel, reference.random_inputs(kernel, 3), mode="f64")["y"]
    _decompose(kernel)
    after = reference.evaluate(kernel, reference.random_inputs(kernel, 3), mode="f64")["y"]
    _close(after, before, 1e-12)
    assert not any(isinstance(op, COMPOSITES) for op in kernel.walk())


def test_every_composite_has_a_case():
    """CASES exercises every op `decompose` expands: a new composite needs a case here."""
    assert {type(_composite(_kernel(*case[1:]))) for case in CASES} == set(COMPOSITES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_idempotent_and_registered(case):
    """`decompose` as the pipeline names it: one run expands everything, a second is a no-op."""
    (decompose,) = parse_pipeline("decompose")
    module = _kernel(*case[1:]).parent_op()
    before = str(module)
    decompose.apply(make_context(), module)
    once = str(module)
    assert once != before
    assert not any(isinstance(op, COMPOSITES) for op in module.walk())
    decompose.apply(make_context(), module)
    assert str(module) == once


# ---- numerics ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_exact_math_is_preserved(case, seed):
    before, after, _ = _before_after(case, seed)
    _close(after, before, 1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_typed_results_agree_to_the_result_precision(case):
    """The expansion rounds every step to f32 where the composite rounds only its result, so f32
    results agree to a few ulp and narrow results to one ulp of their type."""
    before, after, kernel = _before_after(case, mode="typed")
    name = str(kernel.function_type.outputs.data[0].element_type)
    _close(after, before, NARROW.get(name, 1e-5))


@pytest.mark.parametrize("mode", ["f64", "typed"])
@pytest.mark.parametrize("expr, result", [
    ("softmax(x)", "f32[6, 10]"), ("log_softmax(x)", "f32[6, 10]"),
    ("logsumexp(x)", "f32[6]"), ("logsumexp(x, axis=0, keepdims=true)", "f32[1, 10]"),
])
def test_huge_inputs_stay_finite(expr, result, mode):
    """1e4 * randn: exp(x) alone overflows even float64; the max subtraction keeps it finite."""
    before, after, _ = _before_after(("", "x: f32[6, 10]", result, expr), mode=mode, scale=1e4)
    assert np.all(np.isfinite(after))
    _close(after, before, 1e-12 if mode == "f64" else 1e-5)


@pytest.mark.parametrize("mode", ["f64", "typed"])
@pytest.mark.parametrize("expr, result", [
    ("softmax(x)", "f32[4, 3]"), ("log_softmax(x)", "f32[4, 3]"), ("logsumexp(x)", "f32[4]"),
])
def test_infinite_rows_match_the_reference(expr, result, mode):
    """Rows of all -inf, with +inf, with NaN, and ordinary: same infinities and NaNs as the
    composite (logsumexp: -inf, +inf, NaN; softmax: NaN for the first two)."""
    inf, nan = np.inf, np.nan
    x = np.array([[-inf, -inf, -inf], [1.0, inf, 2.0], [1.0, nan, 2.0], [1.0, 2.0, 3.0]],
                 dtype=np.float32)
    kernel = _kernel("x: f32[4, 3]", result, expr)
    before = reference.evaluate(kernel, {"x": x}, mode=mode)["y"]
    _decompose(kernel)
    after = reference.evaluate(kernel, {"x": x}, mode=mode)["y"]
    np.testing.assert_array_equal(np.isnan(after), np.isnan(before))
    _close(after, before, 1e-12 if mode == "f64" else 1e-6)
    if expr.startswith("logsumexp"):
        assert after[0] == -inf and after[1] == inf and np.isnan(after[2])


@pytest.mark.parametrize("mode", ["f64", "typed"])
@pytest.mark.parametrize("expr", ["sigmoid(x)", "silu(x)", "softplus(x)", "gelu(x)",
                                  "gelu_tanh(x)", "relu(x)"])
def test_unary_extremes(expr, mode):
    """exp(-x) overflowing to inf gives the right limits (sigmoid 0, silu -0); softplus keeps its
    tail precise where log(1 + exp(x)) would round it to 0."""
    x = np.array([-1e4, -100.0, -30.0, -17.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 30.0, 1e4],
                 dtype=np.float32)
    kernel = _kernel("x: f32[11]", "f32[11]", expr)
    before = reference.evaluate(kernel, {"x": x}, mode=mode)["y"]
    _decompose(kernel)
    after = reference.evaluate(kernel, {"x": x}, mode=mode)["y"]
    assert np.all(np.isfinite(after))
    np.testing.assert_allclose(after, before, rtol=1e-12 if mode == "f64" else 1e-6, atol=0)


def _sums(kernel: zk.KernelOp) -> list[zk.ReduceSumOp]:
    return [op for op in kernel.walk() if isinstance(op, zk.ReduceSumOp)]


@pytest.mark.parametrize("expr, result, guarded", [
    ("softmax(x)", "f32[6, 10]", False),
    ("softmax(x, axis=0)", "f32[6, 10]", False),
    ("log_softmax(x)", "f32[6, 10]", True),
    ("logsumexp(x, axis=(0, 1), keepdims=true)", "f32[1, 1]", True),
])
def test_exp_sum_matches_what_each_expansion_leaves(expr, result, guarded):
    """The one matcher of sum(exp(x - shift)) (cast, flash, epilogue and online fusions use it)
    finds every expansion's parts: the plain max, or `_finite_max`'s guard and the max in it."""
    kernel = _kernel("x: f32[6, 10]", result, expr)
    _decompose(kernel)
    (total,) = _sums(kernel)
    found = exp_sum(total)
    assert found is not None
    x = kernel.body.block.args[0]
    assert (found.x, found.mx.input, found.sub.lhs) == (x, x, x)
    assert (found.exp.result, found.total) == (total.input, total)
    assert found.mx.axis_list == total.axis_list
    shift = found.shift[-1] if guarded else found.mx
    assert found.sub.rhs is shift.results[0]
    assert [type(op) for op in found.shift] == ([zk.AbsOp, zk.CompareOp, zk.SelectOp]
                                                if guarded else [])
    assert list(exp_sums_of(found.mx)) == ([] if guarded else [found])
    div = [use.operation for use in found.exp.result.uses if isinstance(use.operation, zk.DivOp)]
    assert [normalised(d.lhs, d.rhs) for d in div] == ([] if guarded else [found])


@pytest.mark.parametrize("body, parts", [
    ("m = max(x, axis=1, keepdims=true)\n"
     "    y = sum(exp(x - where(abs(m) < inf, m, 0.0)), axis=1, keepdims=true)", 3),
    ("m = max(x, axis=1, keepdims=true)\n"
     "    y = sum(exp(x - where(abs(m) < inf, m, 1.0)), axis=1, keepdims=true)", None),
    ("y = sum(exp(x - max(x, axis=0, keepdims=true)), axis=1, keepdims=true)", None),
    ("y = sum(exp(x - max(z, axis=1, keepdims=true)), axis=1, keepdims=true)", None),
    ("y = sum(exp(z - max(x, axis=1, keepdims=true)), axis=1, keepdims=true)", None),
    ("y = sum(exp(x) - max(x, axis=1, keepdims=true), axis=1, keepdims=true)", None),
])
def test_exp_sum_refuses_near_misses(body, parts):
    """Only a shift by the max of the same value over the sum's own axes, or that max guarded
    to 0 where not finite, is the shape."""
    kernel = build(f"kernel k(x: f32[6, 10], z: f32[6, 10]) -> f32[6, 1] {{\n    {body}\n"
                   "    return y\n}\n", "t.zk", {}).ops.first
    (total,) = _sums(kernel)
    found = exp_sum(total)
    assert (None if found is None else len(found.shift)) == parts


def test_normalised_needs_the_sum_of_the_numerator_itself():
    """`e / sum(e')` with e' an equal but separate exp is not a softmax's division."""
    kernel = build("kernel k(x: f32[6, 10]) -> f32[6, 10] {\n"
                   "    m = max(x, axis=1, keepdims=true)\n"
                   "    y = exp(x - m) / sum(exp(x - m), axis=1, keepdims=true)\n"
                   "    return y\n}\n", "t.zk", {}).ops.first
    (div,) = [op for op in kernel.walk() if isinstance(op, zk.DivOp)]
    assert exp_sum(div.rhs.owner) is not None
    assert normalised(div.lhs, div.rhs) is None
