"""The reference evaluator: the `zk` dialect run directly with numpy, the oracle for every lowering.

It is written to be obviously right rather than fast: one small rule per op, whole-array numpy
calls, a value freed once no later op reads it. Two modes:

- "f64": the exact math. Floats are float64, integers int64, i1 bool; float->float casts are the
  identity; casts to an integer type round half to even, then clip to that type's range.
- "typed": what the source's dtypes say. Inputs are rounded into their declared dtypes; each op
  computes from its operands in float32 (integers in int64, integer matmul in int32) and its result
  is rounded into the op's element type with `numerics.round_to` (RNE; low-precision floats and
  integers saturate). Values are held in the declared numpy / ml_dtypes types.

Schedule attributes (tiles, precision, placement, accumulate) are ignored: they say how to compute,
and the oracle computes what the source means. Casting NaN to an integer gives 0 in both modes.
What a precision directive does is explicit after the `cast` pass (`zk.quantize`, `zk.dequantize`,
evaluated with `runtime.precision` in both modes): that program, run "typed", is the yardstick of
a low-precision kernel's numerics check.

The same module prepares the inputs of a `zk` kernel's run and guards the oracle's host memory.
Its public API, what the driver and the check use: `evaluate` (with `MODES` and the op `RULES`),
`random_inputs`, `input_roles`, `check_ranges` and `check_inputs` (random or checked user arrays;
the checking rule itself is `inputs.checked`, which the executor shares), `estimate_host_bytes`
and `ensure_host_memory` (the limit is `units.host_memory_limit`), `InputsFile`, `npz_bytes`
and `summarize`. The executor does not import this module.
"""

from __future__ import annotations

import io
import lzma
import math
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Mapping

import numpy as np
import scipy.special
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.runtime import precision
from zhenwu_cc.runtime.inputs import (
    arg_span,
    checked,
    kernel_span,
    refuse_nan,
    shape_error,
)
from zhenwu_cc.runtime.numerics import round_to
from zhenwu_cc.runtime.units import MAX_HOST_BYTES_ENV, format_bytes, host_memory_limit

from zhenwu_cc.core.diagnostics import did_you_mean, error

MODES = ("f64", "typed")


# ---- how a mode holds and computes values --------------------------------------------------------
class _Mode:
    def __init__(self, name: str):
        if name not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {name!r}")
        self.typed = name == "typed"
        self.float = np.float32 if self.typed else np.float64

    def up(self, x: np.ndarray) -> np.ndarray:
        """An operand as computed on: float32/float64 for floats, int64 for integers, bool kept."""
        if x.dtype == np.bool_:
            return x
        if x.dtype.kind in "iu":
            return x.astype(np.int64, copy=False)
        return x.astype(self.float, copy=False)

    def hold(self, x: np.ndarray, d: DType) -> np.ndarray:
        """A computed value as this mode stores an element of type `d`."""
        if self.typed:
            return x if x.dtype == d.np_dtype else round_to(x, d)
        held = np.float64 if d.is_float else np.bool_ if d.kind == "bool" else np.int64
        return x.astype(held, copy=False)

    def element_bytes(self, d: DType) -> int:
        if self.typed:
            return d.np_dtype.itemsize
        return 1 if d.kind == "bool" else 8


def _dtype(v: SSAValue) -> DType:
    return dtypes.from_xdsl(v.type.element_type)


def _shape(v: SSAValue) -> tuple[int, ...]:
    return tuple(v.type.get_shape())


# ---- the rules, one per op or op family ----------------------------------------------------------
Rule = Callable[[Operation, list[np.ndarray], _Mode], np.ndarray]


def _gelu(x):
    return 0.5 * x * (1.0 + scipy.special.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


_UNARY: dict[type, Callable[[np.ndarray], np.ndarray]] = {
    zk.NegOp: np.negative, zk.AbsOp: np.abs, zk.ExpOp: np.exp, zk.LogOp: np.log,
    zk.TanhOp: np.tanh, zk.ErfOp: scipy.special.erf, zk.SqrtOp: np.sqrt,
    zk.RsqrtOp: lambda x: 1.0 / np.sqrt(x), zk.SigmoidOp: scipy.special.expit,
    zk.ReluOp: lambda x: np.maximum(x, 0.0), zk.GeluOp: _gelu, zk.GeluTanhOp: _gelu_tanh,
    zk.SiluOp: lambda x: x * scipy.special.expit(x), zk.SoftplusOp: _softplus,
}
_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    zk.AddOp: np.add, zk.SubOp: np.subtract, zk.MulOp: np.multiply, zk.DivOp: np.true_divide,
    zk.MaxOp: np.maximum, zk.MinOp: np.minimum, zk.PowOp: np.power,
}
_COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
            "gt": np.greater, "ge": np.greater_equal}
_REDUCE: dict[type, Callable] = {
    zk.ReduceSumOp: np.sum, zk.ReduceMaxOp: np.max, zk.ReduceMinOp: np.min,
    zk.ReduceMeanOp: np.mean,
}


def _unary(op, args, m):
    return _UNARY[type(op)](m.up(args[0]))


def _binary(op, args, m):
    return _BINARY[type(op)](m.up(args[0]), m.up(args[1]))


def _compare(op, args, m):
    return _COMPARE[op.predicate.data](m.up(args[0]), m.up(args[1]))


def _select(op, args, m):
    return np.where(args[0], args[1], args[2])


def _to_int(x: np.ndarray, d: DType) -> np.ndarray:
    """Round half to even and clip into `d`'s range, as int64 (NaN -> 0)."""
    lo, hi = int(d.finite_min), int(d.finite_max)
    if x.dtype.kind in "biu":
        return np.clip(x.astype(np.int64), lo, hi)
    r = np.rint(np.where(np.isnan(x), 0.0, x))
    # float(hi) of i64 rounds up to 2**63, which int64 cannot hold: pin the top explicitly.
    return np.where(r >= hi, hi, np.clip(r, lo, hi).astype(np.int64))


def _cast(op, args, m):
    x, to = m.up(args[0]), _dtype(op.result)
    if to.kind == "bool":
        return x != 0
    if to.is_int:
        return _to_int(x, to)
    return x  # a float target: f64 keeps the value, typed rounds it in `hold`


def _bitcast(op, args, m):
    """The bits of each element held in the source type, read as the result type."""
    src, to = _dtype(op.input), _dtype(op.result)
    return m.up(round_to(args[0], src).view(to.np_dtype))


def _matmul(op, args, m):
    a, b = args
    if _dtype(op.lhs).is_int:
        acc = np.int32 if m.typed else np.int64  # int32 wraps on overflow, as an accumulator does
        return np.matmul(a.astype(acc), b.astype(acc))
    return np.matmul(m.up(a), m.up(b))


def _keepdims(op) -> bool:
    return op.keepdims is not None


def _reduce(op, args, m):
    return _REDUCE[type(op)](m.up(args[0]), axis=op.axis_list, keepdims=_keepdims(op))


def _logsumexp_of(x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """log(sum(exp(x))) with the max subtracted; an infinite max shifts by 0 instead."""
    top = np.max(x, axis=axes, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.sum(np.exp(x - top), axis=axes, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axes)


def _logsumexp(op, args, m):
    return _logsumexp_of(m.up(args[0]), op.axis_list, _keepdims(op))


def _argmax(op, args, m):
    return np.argmax(m.up(args[0]), axis=op.axis.value.data, keepdims=_keepdims(op))


def _softmax(op, args, m):
    x, axis = m.up(args[0]), op.axis.value.data
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(op, args, m):
    x = m.up(args[0])
    return x - _logsumexp_of(x, (op.axis.value.data,), True)


def _affine(op, args, m, y):
    """Apply a norm's optional scale and bias (operands after the input, in that order)."""
    rest = iter(args[1:])
    if op.scale is not None:
        y = y * m.up(next(rest))
    if op.bias is not None:
        y = y + m.up(next(rest))
    return y


def _layernorm(op, args, m):
    x, axis, eps = m.up(args[0]), op.axis.value.data, op.eps.value.data
    centred = x - np.mean(x, axis=axis, keepdims=True)
    var = np.mean(centred * centred, axis=axis, keepdims=True)
    return _affine(op, args, m, centred / np.sqrt(var + eps))


def _rmsnorm(op, args, m):
    x, axis, eps = m.up(args[0]), op.axis.value.data, op.eps.value.data
    return _affine(op, args, m, x / np.sqrt(np.mean(x * x, axis=axis, keepdims=True) + eps))


def _constant(op, args, m):
    d = _dtype(op.result)
    value = np.asarray(op.number if d.is_float else bool(op.number) if d.kind == "bool"
                       else int(op.number))
    if m.typed:
        refuse_nan(value, d, "this constant", span_of(op))
    # the float64 literal rounded once, then splatted as a view
    return np.broadcast_to(m.hold(value, d), _shape(op.result))


def _iota(op, args, m):
    shape, axis = _shape(op.result), op.axis.value.data
    ramp = np.arange(shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return np.broadcast_to(m.hold(ramp, _dtype(op.result)), shape)


def _broadcast(op, args, m):
    return np.broadcast_to(args[0], _shape(op.result))


def _transpose(op, args, m):
    return np.transpose(args[0], op.permutation)


def _reshape(op, args, m):
    return np.reshape(args[0], _shape(op.result))


def _slice(op, args, m):
    window = zip(op.start.get_values(), op.limit.get_values())
    return args[0][tuple(slice(lo, hi) for lo, hi in window)]


def _concat(op, args, m):
    return np.concatenate(args, axis=op.axis.value.data)


def _quantize(op, args, m):
    """The tensor's values and scales as `numerics` makes them. A given amax is the one this
    input implies (the `cast` pass reduces it from the same tensor), so it is not needed here."""
    return tuple(precision.quantize(args[0], precision.Spec.of(op.precision, op.blocked_axis)))


def _dequantize(op, args, m):
    """values x scales, exact (float64): "f64" keeps it, "typed" rounds it once in `hold`."""
    values, *scales = args
    with np.errstate(over="ignore", invalid="ignore"):
        exact = np.asarray(values, np.float64)
        for s in scales:
            exact = exact * precision.expand(np.asarray(s, np.float64), values.shape)
    return exact


RULES: dict[type, Rule] = {
    **dict.fromkeys(_UNARY, _unary), **dict.fromkeys(_BINARY, _binary),
    **dict.fromkeys(_REDUCE, _reduce),
    zk.CompareOp: _compare, zk.SelectOp: _select, zk.CastOp: _cast, zk.BitcastOp: _bitcast,
    zk.MatmulOp: _matmul,
    zk.LogSumExpOp: _logsumexp, zk.ArgmaxOp: _argmax, zk.SoftmaxOp: _softmax,
    zk.LogSoftmaxOp: _log_softmax, zk.LayerNormOp: _layernorm, zk.RMSNormOp: _rmsnorm,
    zk.ConstantOp: _constant, zk.IotaOp: _iota, zk.BroadcastOp: _broadcast,
    zk.TransposeOp: _transpose, zk.ReshapeOp: _reshape, zk.SliceOp: _slice,
    zk.ConcatOp: _concat, zk.QuantizeOp: _quantize, zk.DequantizeOp: _dequantize,
}


# ---- evaluation ----------------------------------------------------------------------------------
def evaluate(kernel: zk.KernelOp, inputs: Mapping[str, np.ndarray], *,
             mode: str = "f64") -> dict[str, np.ndarray]:
    """Run `kernel` on `inputs` (one array per parameter) and return its results by name.

    Inputs are checked and rounded into their declared dtypes in both modes (see
    `inputs.checked`), so the two modes differ only in how the ops compute. Raises CompileError:
    ZK0501-ZK0503 and ZK0507 for bad inputs, ZK0505 / ZK0506 for the host-memory guard, ZK0507
    when a typed run would store NaN in FP4. An op without a rule is a compiler bug (TypeError).
    """
    m = _Mode(mode)
    ensure_host_memory(kernel, mode)
    block = kernel.body.block
    _reject_unknown(kernel, inputs)
    env: dict[SSAValue, np.ndarray] = {}
    for name, arg in zip(kernel.arg_names, block.args):
        if name not in inputs:
            raise error("ZK0501", f"missing input `{name}` for kernel `{kernel.sym_name.data}`",
                        arg_span(arg, name), help="pass one array per parameter, or fill the rest "
                        "with check_inputs(kernel, inputs, seed=...)")
        env[arg] = m.hold(checked(name, arg, inputs[name]), _dtype(arg))
    last_use = {v: i for i, op in enumerate(block.ops) for v in op.operands}
    with np.errstate(all="ignore"):  # IEEE results (inf, nan) are the semantics, not accidents
        for i, op in enumerate(block.ops):
            if isinstance(op, zk.ReturnOp):
                return {name: np.array(env[v], order="C")
                        for name, v in zip(kernel.names_of_results, op.operands)}
            rule = RULES.get(type(op))
            if rule is None:
                raise TypeError(f"the reference evaluator has no rule for {op.name}")
            outs = rule(op, [env[v] for v in op.operands], m)
            for result, out in zip(op.results, outs if isinstance(outs, tuple) else (outs,)):
                out = np.asarray(out)
                assert not (m.typed and out.dtype == np.float64
                            and not isinstance(op, zk.DequantizeOp)), f"{op.name} in float64"
                assert out.shape == _shape(result), f"{op.name} gave shape {out.shape}"
                if m.typed:
                    refuse_nan(out, _dtype(result), f"the {op.name} here",
                                span_of(op))
                env[result] = m.hold(out, _dtype(result))
            for v in op.operands:  # free what no later op reads
                if last_use[v] == i:
                    env.pop(v, None)
    raise AssertionError("a zk.kernel ends with zk.return")


# ---- inputs --------------------------------------------------------------------------------------
def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


SCALE_BIAS = 127  # E8M0's exponent bias: an integer code `e` scales by 2**(e - 127)
POSITIVE = (0.01, 1.0)  # the default range of a float input that reaches log / sqrt / rsqrt / pow
_DOMAIN_OPS = (zk.LogOp, zk.SqrtOp, zk.RsqrtOp)
_VIEWS = (zk.CastOp, zk.BroadcastOp, zk.ReshapeOp, zk.TransposeOp, zk.SliceOp, zk.ConcatOp)
_SIGN_KEEPING = (*_VIEWS, zk.ReduceMaxOp, zk.ReduceMinOp)


def _constant_value(v: SSAValue) -> float | None:
    return v.owner.number if isinstance(v.owner, zk.ConstantOp) else None


def input_roles(kernel: zk.KernelOp) -> dict[str, str]:
    """The role of each parameter that random values must respect, by name: "positive" for a
    parameter that reaches the operand of log, sqrt, rsqrt or pow's base (unless the
    exponent is a whole-number constant) through ops that keep the sign (casts, views, max/min,
    adding or multiplying a constant >= 0), so that the math is defined; "scale_code" for an
    unsigned 8-bit parameter that reaches an add or subtract of the constant 127 (a biased
    E8M0 exponent) through casts and views."""
    roles = {}
    for name, arg in zip(kernel.arg_names, kernel.body.block.args):
        d = _dtype(arg)
        if d.kind != "bool" and _reaches(arg, _positive_use):
            roles[name] = "positive"
        elif d.is_int and d.finite_min == 0 and d.np_dtype.itemsize == 1 and _reaches(
                arg, _biased_exponent_use):
            roles[name] = "scale_code"
    return roles


def _reaches(arg: SSAValue, found: Callable[[Operation, SSAValue], bool | None]) -> bool:
    """Whether a use that `found` accepts (True) is reachable from `arg` through uses that
    `found` passes through (None); False stops the walk along that use."""
    seen, todo = set(), [arg]
    while todo:
        v = todo.pop()
        for use in v.uses:
            verdict = found(use.operation, v)
            if verdict:
                return True
            if verdict is None and use.operation not in seen:
                seen.add(use.operation)
                todo.extend(use.operation.results)
    return False


def _positive_use(op: Operation, v: SSAValue) -> bool | None:
    if isinstance(op, zk.PowOp) and op.operands[0] is v:
        exponent = _constant_value(op.operands[1])
        return exponent is None or not float(exponent).is_integer()  # x**2: any x
    if isinstance(op, _DOMAIN_OPS):
        return True
    if isinstance(op, _SIGN_KEEPING):
        return None
    if isinstance(op, (zk.AddOp, zk.MulOp, zk.MaxOp)):
        other = _constant_value(op.operands[1] if op.operands[0] is v else op.operands[0])
        return None if other is not None and other >= 0 else False
    return False


def _biased_exponent_use(op: Operation, v: SSAValue) -> bool | None:
    if isinstance(op, (zk.AddOp, zk.SubOp)):
        other = op.operands[1] if op.operands[0] is v else op.operands[0]
        return abs(_constant_value(other) or 0.0) == SCALE_BIAS
    return None if isinstance(op, _VIEWS) else False


def _random_values(rng: np.random.Generator, d: DType, shape: tuple[int, ...],
                   role: str | None = None, bounds: tuple[float, float] | None = None
                   ) -> np.ndarray:
    if bounds is not None:
        lo, hi = bounds
        if d.kind == "bool":
            return rng.integers(int(lo), int(hi) + 1, shape).astype(bool)
        if d.is_int:
            return rng.integers(int(lo), int(hi) + 1, shape)
        return rng.uniform(lo, hi, shape)
    if d.kind == "bool":
        return rng.random(shape) < 0.5
    if role == "scale_code":
        return rng.integers(SCALE_BIAS - 4, SCALE_BIAS + 5, shape)
    if d.is_int and role == "positive":
        return rng.integers(1, 8, shape)
    if d.is_int:
        return rng.integers(0 if d.finite_min == 0 else -8, 8, shape)
    if d.name == "f8E8M0FNU":  # a scale format: powers of two, no zero or sign
        return np.exp2(rng.integers(-4, 5, shape)).astype(np.float32)
    if role == "positive":
        return rng.uniform(*POSITIVE, shape)
    return rng.standard_normal(shape, dtype=np.float32)


def random_inputs(kernel: zk.KernelOp, seed: int = 0,
                  ranges: Mapping[str, tuple[float, float]] | None = None
                  ) -> dict[str, np.ndarray]:
    """Deterministic inputs in the declared dtypes, one generator per (seed, parameter name), so
    adding or renaming one parameter leaves the others' values alone.

    Floats are standard normal (well inside even FP4's range of +-6, so few saturate), or uniform
    in [0.01, 1) where the math needs them positive (`input_roles`); E8M0 scales are powers of
    two 2**-4..2**4; signed integers -8..7, unsigned 0..7, except 1..7 where the math needs them
    positive and unsigned 8-bit scale codes 123..131 (2**-4..2**4 after the bias of 127); i1
    fair coin flips. `ranges` (checked with
    `check_ranges`) overrides a parameter's: uniform in [lo, hi) for floats, lo..hi for integers.
    """
    out, roles, ranges = {}, input_roles(kernel), ranges or {}
    for name, arg in zip(kernel.arg_names, kernel.body.block.args):
        d = _dtype(arg)
        out[name] = round_to(_random_values(_rng(seed, name), d, _shape(arg), roles.get(name),
                                            ranges.get(name)), d)
    return out


def check_ranges(kernel: zk.KernelOp, ranges: Mapping[str, tuple[float, float]]) -> None:
    """ZK0511 unless every range names a parameter and is a finite `lo < hi` (`lo <= hi` for
    integers, which must be whole) inside the parameter's dtype."""
    args = dict(zip(kernel.arg_names, kernel.body.block.args))
    for name, bounds in ranges.items():
        if name not in args:
            guess = did_you_mean(name, args)
            raise error("ZK0511", f"input range for `{name}`, which is not a parameter of kernel "
                        f"`{kernel.sym_name.data}` (parameters: {', '.join(args) or 'none'})",
                        kernel_span(kernel), help=f"did you mean `{guess}`?" if guess else
                        "name a parameter: NAME=LO:HI")
        d, (lo, hi) = _dtype(args[name]), bounds
        span = arg_span(args[name], name)
        if not (math.isfinite(lo) and math.isfinite(hi)) or not (lo <= hi if d.is_int or
                                                                 d.kind == "bool" else lo < hi):
            raise error("ZK0511", f"input range {lo:g}:{hi:g} for `{name}` is empty or not "
                        "finite", span, help="give finite bounds LO:HI with LO < HI")
        if (d.is_int or d.kind == "bool") and not (lo == int(lo) and hi == int(hi)):
            raise error("ZK0511", f"input range {lo:g}:{hi:g} for the {d.name} parameter "
                        f"`{name}` has a fraction", span, help="give whole-number bounds")
        if not (float(d.finite_min) <= lo and hi <= float(d.finite_max)):
            raise error("ZK0511", f"input range {lo:g}:{hi:g} for `{name}` leaves {d.name}'s "
                        f"range {d.finite_min:g}..{d.finite_max:g}", span,
                        help=f"give bounds inside {d.finite_min:g}..{d.finite_max:g}")


def _reject_unknown(kernel: zk.KernelOp, inputs: Mapping[str, np.ndarray]) -> None:
    names = kernel.arg_names
    for name in inputs:
        if name not in names:
            guess = did_you_mean(name, names)
            raise error("ZK0501", f"input `{name}` is not a parameter of kernel "
                        f"`{kernel.sym_name.data}` (parameters: {', '.join(names) or 'none'})",
                        kernel_span(kernel),
                        help=f"did you mean `{guess}`?" if guess else
                        "rename the array to a parameter's name, or drop it")


def check_inputs(kernel: zk.KernelOp, inputs: Mapping[str, np.ndarray],
                 seed: int = 0, ranges: Mapping[str, tuple[float, float]] | None = None
                 ) -> dict[str, np.ndarray]:
    """User-supplied arrays checked against the kernel's parameters (see `inputs.checked` for
    the dtype rule) and rounded into their dtypes; parameters not supplied come from
    `random_inputs(seed, ranges)`.

    ZK0501: a name that is no parameter; ZK0502: a wrong shape; ZK0503: a dtype that cannot hold
    the parameter's values; ZK0507: NaN for an FP4 parameter; ZK0511: a bad range.
    """
    _reject_unknown(kernel, inputs)
    check_ranges(kernel, ranges or {})
    out = {}
    filled = None
    for name, arg in zip(kernel.arg_names, kernel.body.block.args):
        if name in inputs:
            out[name] = checked(name, arg, inputs[name])
        else:
            filled = filled if filled is not None else random_inputs(kernel, seed, ranges)
            out[name] = filled[name]
    return out


# ---- host memory ---------------------------------------------------------------------------------
_SCRATCH_ARRAYS = 3  # temporaries one rule makes at most, each as large as its biggest operand
# in the mode's working float (measured with tracemalloc, tests/test_host_memory.py)


def estimate_host_bytes(kernel: zk.KernelOp, mode: str) -> int:
    """An upper bound on the host memory a reference run takes, following `evaluate`: the
    caller's inputs and their copies in the mode's representation, then op by op the values
    alive (each freed after its last use) plus the running op's result and scratch (working
    floats as large as its largest operand or result), and the copied outputs at the end."""
    m = _Mode(mode)
    block = kernel.body.block

    def size(v: SSAValue) -> int:
        return math.prod(_shape(v)) * m.element_bytes(_dtype(v))

    callers = sum(math.prod(_shape(a)) * _dtype(a).np_dtype.itemsize for a in block.args)
    held = {a: size(a) for a in block.args}
    last_use = {v: i for i, op in enumerate(block.ops) for v in op.operands}
    peak = live = sum(held.values())
    for i, op in enumerate(block.ops):
        values = [*op.operands, *op.results]
        largest = max((math.prod(_shape(v)) for v in values), default=0)
        made = sum(size(v) for v in (op.operands if isinstance(op, zk.ReturnOp) else op.results))
        scratch = _SCRATCH_ARRAYS * np.dtype(m.float).itemsize * largest
        peak = max(peak, live + made + scratch)
        for v in op.results:
            held[v] = size(v)
        live += sum(size(v) for v in op.results)
        for v in op.operands:
            if last_use[v] == i and v in held:
                live -= held.pop(v)
    return callers + peak


def results_bytes(kernel: zk.KernelOp, mode: str) -> int:
    """Bytes of a run's results in the mode's representation (what a caller keeps)."""
    m = _Mode(mode)
    return sum(math.prod(t.get_shape()) * m.element_bytes(dtypes.from_xdsl(t.element_type))
               for t in kernel.function_type.outputs.data)


def ensure_host_memory(kernel: zk.KernelOp, mode: str) -> None:
    """Refuse (ZK0505) before allocating when the run's upper-bound estimate exceeds the limit."""
    need, limit = estimate_host_bytes(kernel, mode), host_memory_limit()
    if limit is not None and need > limit:
        raise error("ZK0505", f"running kernel `{kernel.sym_name.data}` in {mode} mode needs up "
                    f"to {format_bytes(need)} ({need} bytes) of host memory, more than the limit "
                    f"of {format_bytes(limit)} ({limit} bytes)", kernel_span(kernel),
                    help="use smaller shapes (-D NAME=VALUE), "
                    + ("--mode typed (fewer bytes per element), " if mode == "f64" else "")
                    + f"or raise the limit with {MAX_HOST_BYTES_ENV}=<bytes>")


# ---- .npz files of a run ------------------------------------------------------------------------
# What a damaged or hostile archive raises from zipfile and the decompressors: a bad header,
# an unsupported zip version or compression method (NotImplementedError), an encrypted entry
# (RuntimeError), a broken stream (zlib.error, lzma.LZMAError, OSError for bz2, EOFError).
ZIP_ERRORS = (ValueError, EOFError, OSError, NotImplementedError, RuntimeError,
              zipfile.BadZipFile, zlib.error, lzma.LZMAError,
              tokenize.TokenError, SyntaxError)  # numpy tokenises a .npy header's dict


class InputsFile:
    """An .npz archive of a run's inputs, checked from its members' .npy headers before a byte of
    array data is read, so that a lying header or a zip bomb costs nothing.

    Each member must be an .npy array (no object arrays: nothing is unpickled) named after a
    parameter of `kernel` (ZK0501) with its shape (ZK0502), and hold exactly the bytes its header
    implies (ZK0513); the arrays together must fit the host-memory limit (ZK0505). Anything that
    is no readable .npz archive is ZK0504. `nbytes` is what `read()` will allocate.
    """

    def __init__(self, path: str, kernel: zk.KernelOp):
        self.path, self.kernel = path, kernel
        with self._open() as zf:
            self.members = self._headers(zf)
        self.nbytes = sum(dtype.itemsize * math.prod(shape)
                          for _, dtype, shape in self.members.values())
        limit = host_memory_limit()
        if limit is not None and self.nbytes > limit:
            raise error("ZK0505", f"the arrays of {path} take {format_bytes(self.nbytes)} "
                        f"({self.nbytes} bytes), more than the host-memory limit of "
                        f"{format_bytes(limit)} ({limit} bytes)", kernel_span(kernel),
                        help=f"use smaller inputs, or raise the limit with {MAX_HOST_BYTES_ENV}"
                        "=<bytes>")

    def fail(self, reason: str):
        return error("ZK0504", f"cannot read inputs {self.path}: {reason}",
                     help="give an .npz archive written by numpy.savez, one array per parameter")

    def _open(self) -> zipfile.ZipFile:
        try:
            with open(self.path, "rb") as f:
                if f.read(6) == b"\x93NUMPY":
                    raise self.fail("a single .npy array, not an .npz archive of named arrays")
            return zipfile.ZipFile(self.path)
        except OSError as exc:
            raise self.fail(exc.strerror or str(exc)) from None
        except ZIP_ERRORS:
            raise self.fail("not an .npz archive") from None

    def _headers(self, zf: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, np.dtype, tuple]]:
        """Every member's (zip entry, dtype, shape), checked; no array data is read."""
        params = dict(zip(self.kernel.arg_names, self.kernel.body.block.args))
        out = {}
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if name in out:
                raise self.fail(f"it holds two arrays named `{name}`")
            dtype, shape, header = self._header(zf, info)
            _reject_unknown(self.kernel, {name: None})
            if shape != _shape(params[name]):
                raise shape_error(name, params[name], shape)
            data, need = info.file_size - header, dtype.itemsize * math.prod(shape)
            if data != need:
                raise error("ZK0513", f"array `{name}` in {self.path} has {data} bytes of data, "
                            f"but its header ({dtype}, shape {list(shape)}) declares {need}",
                            help="the file is damaged or was not written by numpy; write it "
                            "again with numpy.savez")
            out[name] = (info, dtype, shape)
        return out

    def _header(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[np.dtype, tuple, int]:
        """A member's dtype, shape and header length, read from its first bytes alone."""
        fmt = np.lib.format
        if info.flag_bits & 0x1:
            raise self.fail(f"`{info.filename}` is encrypted")
        try:
            with zf.open(info) as f:
                version = fmt.read_magic(f)
                read = fmt.read_array_header_1_0 if version == (1, 0) else \
                    fmt.read_array_header_2_0
                shape, _, dtype = read(f)
                header = f.tell()
        except ZIP_ERRORS as exc:
            raise self.fail(f"`{info.filename}` is not an .npy array ({exc})") from None
        if dtype.hasobject:
            raise self.fail(f"`{info.filename}` holds Python objects, which are not read "
                            "(pickled data could run code)")
        return dtype, tuple(shape), header

    def read(self) -> dict[str, np.ndarray]:
        """The arrays by name, each member read in bounded chunks after its header is checked
        again (the file may have changed since)."""
        out = {}
        with self._open() as zf:
            members = self._headers(zf)
            if _summary(members) != _summary(self.members):
                raise self.fail("it changed while being read")
            for name, (info, _, _) in members.items():
                try:
                    with zf.open(info) as f:
                        out[name] = np.lib.format.read_array(f, allow_pickle=False)
                except ZIP_ERRORS as exc:
                    raise self.fail(f"corrupt archive ({exc})") from None
        return out


def _summary(members: dict) -> dict:
    return {name: (info.file_size, info.CRC, dtype, shape)
            for name, (info, dtype, shape) in members.items()}


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz archive of `arrays` with fixed timestamps (same arrays, same bytes). ml_dtypes
    values are stored as float32, which holds them exactly, since .npz files cannot name those
    types."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            if arr.dtype.kind == "V":
                arr = arr.astype(np.float32)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def summarize(x: np.ndarray) -> dict:
    """Statistics of the finite values (None when there are none) and counts of NaN and Inf."""
    v = np.asarray(x).astype(np.float64)
    finite = v[np.isfinite(v)]
    stats: dict = dict.fromkeys(("min", "max", "mean", "std"))
    if finite.size:
        stats = {"min": float(finite.min()), "max": float(finite.max()),
                 "mean": float(finite.mean()), "std": float(finite.std())}
    return {**stats, "nan": int(np.isnan(v).sum()), "inf": int(np.isinf(v).sum())}

