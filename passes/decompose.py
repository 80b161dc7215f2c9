"""`decompose`: expand the composite `zk` ops into `zk` primitives.

Later passes (tile, lower-ppu) and the executor then only see primitives. A composite computes
internally in f32 and rounds once to its result dtype, so for a narrower input (f16, bf16, FP8, ...)
the expansion casts the operands to f32 and the result back; f32 inputs expand directly.
Every new op carries the composite's location; the value that replaces the composite keeps its
name hint, and the op that produces it takes over the composite's discardable attributes
(`zk.tile`, `zk.precision`, `zk.place`, `zk.fuse` from the schedule), except `zk.split`, which
goes to each reduction of the expansion (`split p 8` on `p = softmax(x)` splits its max and sum).

Special values follow the reference evaluator (`zhenwu_cc.runtime.reference`): softmax subtracts
the plain row maximum, so a row of all -inf or one holding +inf gives NaN. logsumexp and log_softmax
shift by the maximum only where it is finite (by 0 otherwise, as scipy and torch do): logsumexp of
an all -inf row is -inf and of a row holding +inf is +inf; log_softmax of an all -inf row is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType, f32
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from zhenwu_cc.core import attrs
from zhenwu_cc.dialects import zk

GELU_TANH_COEFF = 0.044715


class _Expansion:
    """Collects the primitive ops that replace one composite, all at the composite's location."""

    def __init__(self, op: Operation):
        self.op = op
        self.ops: list[Operation] = []
        self.consts: dict[float, SSAValue] = {}

    def __call__(self, new: Operation) -> SSAValue:
        new.location = self.op.location
        self.ops.append(new)
        return new.results[0]

    def const(self, value: float) -> SSAValue:
        """A rank-0 f32 scalar (one per value); the binary ops broadcast it."""
        if value not in self.consts:
            self.consts[value] = self(zk.ConstantOp(value, TensorType(f32, [])))
        return self.consts[value]

    def to_f32(self, v: SSAValue) -> SSAValue:
        assert isinstance(v.type, TensorType)
        return v if v.type.element_type == f32 else self(zk.CastOp(v, f32))

    def replace(self, rewriter: PatternRewriter, value: SSAValue) -> None:
        """Round `value` to the composite's result type and let it stand in for the composite."""
        result = self.op.results[0]
        assert isinstance(result.type, TensorType)
        if result.type.element_type != f32:
            value = self(zk.CastOp(value, result.type.element_type))
        assert isinstance(value.owner, Operation)
        split = self.op.attributes.get(attrs.SPLIT)  # `split NAME S` splits the reductions
        value.owner.attributes |= {k: a for k, a in self.op.attributes.items() if k != attrs.SPLIT}
        for new in self.ops:
            if split is not None and isinstance(new, zk.ReduceOp):
                new.attributes[attrs.SPLIT] = split
        value.name_hint = result.name_hint
        # Inserted apart from `replace`, which would hand the name hint to every new op too.
        rewriter.insert(self.ops)
        rewriter.replace(self.op, [], [value])


def _axis(op: zk.AxisOp | zk.NormOp) -> tuple[int]:
    return (op.axis.value.data,)


def _softmax(e: _Expansion, op: zk.SoftmaxOp) -> SSAValue:
    x = e.to_f32(op.input)
    ex = e(zk.ExpOp(e(zk.SubOp(x, e(zk.ReduceMaxOp(x, _axis(op), True))))))
    return e(zk.DivOp(ex, e(zk.ReduceSumOp(ex, _axis(op), True))))


def _finite_max(e: _Expansion, x: SSAValue, axes: tuple[int, ...]) -> SSAValue:
    """The max over `axes` (kept), or 0 where it is not finite, as the reference evaluator shifts:
    then x - max is never inf - inf, and an all -inf row sums to 0 rather than to NaN."""
    m = e(zk.ReduceMaxOp(x, axes, True))
    finite = e(zk.CompareOp("lt", e(zk.AbsOp(m)), e.const(math.inf)))
    return e(zk.SelectOp(finite, m, e.const(0.0)))


def _log_softmax(e: _Expansion, op: zk.LogSoftmaxOp) -> SSAValue:
    x = e.to_f32(op.input)
    d = e(zk.SubOp(x, _finite_max(e, x, _axis(op))))
    total = e(zk.ReduceSumOp(e(zk.ExpOp(d)), _axis(op), True))
    return e(zk.SubOp(d, e(zk.LogOp(total))))


def _logsumexp(e: _Expansion, op: zk.ReduceOp) -> SSAValue:
    x = e.to_f32(op.input)
    axes = op.axis_list
    m = _finite_max(e, x, axes)
    total = e(zk.ReduceSumOp(e(zk.ExpOp(e(zk.SubOp(x, m)))), axes, True))
    out = e(zk.AddOp(e(zk.LogOp(total)), m))
    if op.keepdims is None:
        out = e(zk.ReshapeOp(out, zk.reduce_shape(op.input.type.get_shape(), axes, False)))
    return out


# Start-up: __init__ and __eq__ only (tests compare matches; nothing prints or hashes one).
@dataclass(repr=False)
class ExpSum:
    """The parts of `sum(exp(x - shift))` as `_softmax`, `_log_softmax` and `_logsumexp` leave
    it, `shift` the max of x over the sum's axes (kept), or `_finite_max`'s guarded max. The one
    matcher of that shape: `cast` (`scale unit`) and the `tile` pass's fusions (tiling/flash.py,
    epilogue.py, online.py) each add their own conditions (axis, uses, plain max)."""

    x: SSAValue
    mx: zk.ReduceMaxOp
    shift: tuple[Operation, ...]  # _finite_max's abs, compare, select; empty: the max itself
    sub: zk.SubOp
    exp: zk.ExpOp
    total: zk.ReduceSumOp


def exp_sum(total: Operation | Block) -> ExpSum | None:
    """The parts when `total` is such a sum, else None."""
    if not isinstance(total, zk.ReduceSumOp):
        return None
    exp = total.input.owner
    if not isinstance(exp, zk.ExpOp):
        return None
    sub = exp.input.owner
    if not isinstance(sub, zk.SubOp):
        return None
    found = _shift_of(sub.rhs, sub.lhs)
    if found is None or found[0].axis_list != total.axis_list:
        return None
    return ExpSum(sub.lhs, *found, sub, exp, total)


def normalised(e: SSAValue, total: SSAValue) -> ExpSum | None:
    """The parts of the softmax `e / total`: `total` such a sum of exactly `e`, else None."""
    found = exp_sum(total.owner)
    return found if found is not None and found.exp.result is e else None


def exp_sums_of(mx: zk.ReduceMaxOp) -> Iterator[ExpSum]:
    """Every such sum shifted by `mx` itself (unguarded), in the order of `mx`'s uses."""
    for sub in _readers(mx):
        for exp in _readers(sub):
            for total in _readers(exp):
                found = exp_sum(total)
                if found is not None and found.mx is mx and not found.shift:
                    yield found


def _readers(op: Operation) -> list[Operation]:
    """The ops reading `op`'s first result, one per use."""
    return [use.operation for r in op.results[:1] for use in r.uses]


def _shift_of(shift: SSAValue, x: SSAValue
              ) -> tuple[zk.ReduceMaxOp, tuple[Operation, ...]] | None:
    """(the max, the ops between it and `shift`) when `shift` is `max(x)`, or `_finite_max`'s
    `select(abs(max) < inf, max, 0)`; else None."""
    op = shift.owner
    if isinstance(op, zk.ReduceMaxOp):
        return (op, ()) if op.input is x else None
    if not isinstance(op, zk.SelectOp):
        return None
    cond, m, zero = op.operands
    cmp = cond.owner
    if not (isinstance(cmp, zk.CompareOp) and cmp.predicate.data == "lt"
            and isinstance(cmp.lhs.owner, zk.AbsOp) and cmp.lhs.owner.input is m
            and _scalar(cmp.rhs) == math.inf and _scalar(zero) == 0.0):
        return None
    inner = _shift_of(m, x)
    if inner is None or inner[1]:
        return None
    return inner[0], (cmp.lhs.owner, cmp, op)


def _scalar(v: SSAValue) -> float | None:
    """The value of a rank-0 constant (`_Expansion.const`), else None."""
    op = v.owner
    return op.number if isinstance(op, zk.ConstantOp) and not v.type.get_shape() else None


def _scale_bias(e: _Expansion, op: zk.NormOp, y: SSAValue) -> SSAValue:
    if op.scale is not None:
        y = e(zk.MulOp(y, e.to_f32(op.scale)))
    if op.bias is not None:
        y = e(zk.AddOp(y, e.to_f32(op.bias)))
    return y


def _rsqrt_plus_eps(e: _Expansion, op: zk.NormOp, mean_square: SSAValue) -> SSAValue:
    return e(zk.RsqrtOp(e(zk.AddOp(mean_square, e.const(op.eps.value.data)))))


def _layernorm(e: _Expansion, op: zk.LayerNormOp) -> SSAValue:
    x = e.to_f32(op.input)
    d = e(zk.SubOp(x, e(zk.ReduceMeanOp(x, _axis(op), True))))
    var = e(zk.ReduceMeanOp(e(zk.MulOp(d, d)), _axis(op), True))
    return _scale_bias(e, op, e(zk.MulOp(d, _rsqrt_plus_eps(e, op, var))))


def _rmsnorm(e: _Expansion, op: zk.RMSNormOp) -> SSAValue:
    x = e.to_f32(op.input)
    mean_square = e(zk.ReduceMeanOp(e(zk.MulOp(x, x)), _axis(op), True))
    return _scale_bias(e, op, e(zk.MulOp(x, _rsqrt_plus_eps(e, op, mean_square))))


def _half_x_times_one_plus(e: _Expansion, x: SSAValue, t: SSAValue) -> SSAValue:
    """0.5 * x * (1 + t), the shape both gelus share."""
    half_x = e(zk.MulOp(e.const(0.5), x))
    return e(zk.MulOp(half_x, e(zk.AddOp(e.const(1.0), t))))


def _gelu(e: _Expansion, op: zk.UnaryElementwiseOp) -> SSAValue:
    x = e.to_f32(op.input)
    return _half_x_times_one_plus(e, x, e(zk.ErfOp(e(zk.MulOp(x, e.const(1.0 / math.sqrt(2.0)))))))


def _gelu_tanh(e: _Expansion, op: zk.UnaryElementwiseOp) -> SSAValue:
    x = e.to_f32(op.input)
    cube = e(zk.MulOp(e(zk.MulOp(x, x)), x))
    inner = e(zk.AddOp(x, e(zk.MulOp(e.const(GELU_TANH_COEFF), cube))))
    scaled = e(zk.MulOp(e.const(math.sqrt(2.0 / math.pi)), inner))
    return _half_x_times_one_plus(e, x, e(zk.TanhOp(scaled)))


def _one_plus_exp_neg(e: _Expansion, x: SSAValue) -> SSAValue:
    """1 + exp(-x): exp overflows to inf for very negative x, and 1/inf = 0 is the right limit."""
    return e(zk.AddOp(e.const(1.0), e(zk.ExpOp(e(zk.NegOp(x))))))


def _sigmoid(e: _Expansion, op: zk.UnaryElementwiseOp) -> SSAValue:
    x = e.to_f32(op.input)
    return e(zk.DivOp(e.const(1.0), _one_plus_exp_neg(e, x)))


def _silu(e: _Expansion, op: zk.UnaryElementwiseOp) -> SSAValue:
    x = e.to_f32(op.input)
    return e(zk.DivOp(x, _one_plus_exp_neg(e, x)))


def _log1p(e: _Expansion, u: SSAValue) -> SSAValue:
    """log(1 + u) to a few ulp without a log1p primitive (Kahan): with w = 1 + u rounded,
    log(w) * u / (w - 1) cancels the rounding of w; where w rounds to 1, log1p(u) is u."""
    w = e(zk.AddOp(e.const(1.0), u))
    corrected = e(zk.MulOp(e(zk.LogOp(w)), e(zk.DivOp(u, e(zk.SubOp(w, e.const(1.0)))))))
    return e(zk.SelectOp(e(zk.CompareOp("eq", w, e.const(1.0))), u, corrected))


def _softplus(e: _Expansion, op: zk.UnaryElementwiseOp) -> SSAValue:
    """max(x, 0) + log1p(exp(-|x|)): exp never overflows, and the tail for x < 0 keeps its
    relative precision (log(1 + exp(x)) in f32 would lose it, entirely below x = -17)."""
    x = e.to_f32(op.input)
    tail = _log1p(e, e(zk.ExpOp(e(zk.NegOp(e(zk.AbsOp(x)))))))
    return e(zk.AddOp(e(zk.MaxOp(x, e.const(0.0))), tail))


def _relu(e: _Expansion, op: zk.UnaryElementwiseOp) -> SSAValue:
    return e(zk.MaxOp(e.to_f32(op.input), e.const(0.0)))


_EXPANSIONS: dict[type[Operation], Callable[[_Expansion, Operation], SSAValue]] = {
    zk.SoftmaxOp: _softmax,
    zk.LogSoftmaxOp: _log_softmax,
    zk.LogSumExpOp: _logsumexp,
    zk.LayerNormOp: _layernorm,
    zk.RMSNormOp: _rmsnorm,
    zk.GeluOp: _gelu,
    zk.GeluTanhOp: _gelu_tanh,
    zk.SiluOp: _silu,
    zk.SigmoidOp: _sigmoid,
    zk.SoftplusOp: _softplus,
    zk.ReluOp: _relu,
}

COMPOSITES: tuple[type[Operation], ...] = tuple(_EXPANSIONS)
"""The composite op classes; none survives `decompose`."""


def expand_in_place(op: Operation) -> SSAValue:
    """Expand the composite `op` where it stands and return the value now standing for its
    result (the `cast` pass, which also runs on undecomposed programs, needs a softmax's parts)."""
    e = _Expansion(op)
    value = _EXPANSIONS[type(op)](e, op)
    e.replace(PatternRewriter(op), value)
    return e.ops[-1].results[0]


class ExpandComposite(RewritePattern):
    """Replace one composite op by its primitive expansion."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        expand = _EXPANSIONS.get(type(op))
        if expand is not None:
            e = _Expansion(op)
            e.replace(rewriter, expand(e, op))


# No options: ModulePass's own dataclass methods serve (start-up: none generated here).
class DecomposePass(ModulePass):
    """zk -> zk: no composite op remains."""

    name = "decompose"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(ExpandComposite(), apply_recursively=False).rewrite_module(op)
