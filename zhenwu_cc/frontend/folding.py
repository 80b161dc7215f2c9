"""Constant folding of compile-time scalars: IEEE results in f64, integers kept within i64, and
no silent overflow of finite constants into inf (ZK0107)."""

from __future__ import annotations

import math
from collections.abc import Callable

from zhenwu_cc.core.diagnostics import Span, error
from zhenwu_cc.core import dtypes

I64 = dtypes.DTYPES["i64"]  # the range of every compile-time integer


def fold(fn: Callable, *args) -> float:
    """IEEE results for constant folding (overflow -> inf, domain errors -> nan), with `math`
    rather than numpy so that the front end starts fast."""
    try:
        return float(fn(*(float(a) for a in args)))
    except OverflowError:
        return math.inf
    except (ValueError, ZeroDivisionError):
        return math.nan


def _exp(x: float) -> float:
    return math.exp(x) if x < 710 else math.inf


def _log(x: float) -> float:
    return -math.inf if x == 0 else math.log(x)


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: float) -> float:
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + _exp(-x))


SCALAR_UNARY: dict[str, Callable] = {
    "exp": _exp, "log": _log, "tanh": math.tanh, "erf": math.erf, "sqrt": math.sqrt,
    "rsqrt": lambda x: math.inf if x == 0 else 1.0 / math.sqrt(x), "abs": abs,
    "sigmoid": _sigmoid, "relu": lambda x: max(x, 0.0), "gelu": _gelu, "gelu_tanh": _gelu_tanh,
    "silu": lambda x: x * _sigmoid(x), "softplus": lambda x: max(x, 0.0) + math.log1p(_exp(-abs(x))),
}
SCALAR_BINARY: dict[str, Callable] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "max": max, "min": min, "pow": lambda a, b: fold(math.pow, a, b),
}
SCALAR_COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
                  "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}


def fold_binary(kind: str, a, b, span: Span):
    """`a kind b` of two scalar literals (`kind` as in OPERATOR_KIND's values)."""
    if isinstance(a, bool) or isinstance(b, bool):
        raise error("ZK0308", "`true`/`false` are not numbers", span)
    if kind == "div":
        if b == 0:
            raise error("ZK0311", "division by zero in a constant expression", span)
        if isinstance(a, int) and isinstance(b, int) and a % b == 0:
            return within_i64(a // b, span)
        return finite(a / b, (a, b), span)
    return finite(within_i64(SCALAR_BINARY[kind](a, b), span), (a, b), span)


def finite(num, operands, span: Span):
    """Folding finite constants must not overflow f64 into inf silently (ZK0107)."""
    if isinstance(num, float) and math.isinf(num) and all(math.isfinite(x) for x in operands):
        raise error("ZK0107", "this constant expression overflows f64 (beyond about 1.8e308)",
                    span, help="use smaller constants, or write `inf` if infinity is meant")
    return num


def within_i64(num, span: Span):
    """Integer constants stay within i64, as their literals do: the IR holds no more, and
    float() of a bigger one overflows."""
    if isinstance(num, int) and not I64.finite_min <= num <= I64.finite_max:
        raise error("ZK0311", f"the integer constant {num} does not fit in i64", span,
                    help="for a large number use a float, e.g. `1e20`")
    return num
