"""A caller's array checked against a kernel argument, and where to point when it is wrong.

Works on the argument's type alone (a `zk` tensor or a `ppu` memref: element type and shape), so
the reference evaluator and the executor check their inputs by one rule without either importing
the other's dialect.
"""

from __future__ import annotations

import numpy as np
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import dtypes
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.dialects.loc import span_at
from zhenwu_cc.runtime.numerics import round_to

from zhenwu_cc.core.diagnostics import Span, error


def _dtype(v: SSAValue) -> DType:
    return dtypes.from_xdsl(v.type.element_type)


def _shape(v: SSAValue) -> tuple[int, ...]:
    return tuple(v.type.get_shape())


def arg_span(arg: SSAValue, name: str) -> Span | None:
    """Where parameter `name` is declared."""
    return span_at(getattr(arg, "location", None), len(name))


def kernel_span(kernel: Operation) -> Span | None:
    """Where a kernel (`zk.kernel` or `ppu.kernel`) is declared: its name."""
    return span_at(kernel.location, len(kernel.sym_name.data))


def refuse_nan(x: np.ndarray, d: DType, what: str, span: Span | None) -> None:
    """ZK0507 when NaN would be stored in a format without NaN (FP4): `round_to` refuses it,
    and the user needs to know where it arose, not a stack trace."""
    if d.is_float and not d.has_nan and x.dtype.kind in "fV" and np.isnan(x).any():
        raise error("ZK0507", f"{what} gives {int(np.isnan(x).sum())} NaN value(s), but "
                    f"{d.name} has no NaN", span,
                    help="find where the NaN comes from (`run --mode f64` counts NaN per output), "
                    "or keep the value in a format that has NaN")


def is_float_array(dt: np.dtype) -> bool:
    """Whether `dt` is a real float type, numpy's or one of ml_dtypes' (ours)."""
    return dt.kind == "f" or any(dt == d.np_dtype for d in dtypes.DTYPES.values() if d.is_float)


def shape_error(name: str, arg: SSAValue, shape: tuple[int, ...]):
    """ZK0502 for an array of `shape` given for parameter `name`."""
    d, want = _dtype(arg), _shape(arg)
    return error("ZK0502", f"input `{name}` has shape {list(shape)} but the parameter is "
                 f"{d.name}[{', '.join(map(str, want))}]", arg_span(arg, name),
                 help=f"give `{name}` the shape {list(want)} (after -D definitions), or change "
                 "the shape parameters with -D")


def checked(name: str, arg: SSAValue, value) -> np.ndarray:
    """`value` for parameter `name`, rounded into its dtype, or ZK0502 / ZK0503 / ZK0507 saying
    why not. An array already in the declared dtype and shape is returned as it is (no copy).

    The dtype rule: a float parameter takes any real float array (numpy or ml_dtypes), whose values
    are rounded into the declared dtype (RNE, saturating); an integer or i1 parameter takes integer
    or bool arrays whose values all lie in the declared range (i1: 0 and 1). Anything else (floats
    for an integer parameter, integers for a float one, complex, strings, the raw `V` arrays that
    ml_dtypes types become in .npz files) is refused rather than guessed at.
    """
    d, shape = _dtype(arg), _shape(arg)
    x = np.asarray(value)
    if x.shape == shape and x.dtype == d.np_dtype:
        return x  # already held in its dtype: rounding is the identity, and costs a copy
    span = arg_span(arg, name)
    want = f"{d.name}[{', '.join(map(str, shape))}]"
    if x.shape != shape:
        raise shape_error(name, arg, x.shape)
    if d.is_float:
        if not is_float_array(x.dtype):
            hint = ("ml_dtypes arrays lose their type in .npz files; store the values as float32 "
                    "and they are rounded into the parameter's dtype" if x.dtype.kind == "V"
                    else f"convert it to a float array, e.g. .astype(np.float32); values are "
                    f"rounded into {d.name}")
            raise error("ZK0503", f"input `{name}` is {x.dtype} but the parameter is {want}",
                        span, help=hint)
        refuse_nan(x, d, f"input `{name}`", span)
        return round_to(x, d)
    if x.dtype.kind not in "biu":
        raise error("ZK0503", f"input `{name}` is {x.dtype} but the parameter is {want}; "
                    "an integer parameter takes only integer or bool values", span,
                    help=f"convert it with .astype(np.{d.np_dtype}) if its values are whole "
                    f"numbers in {d.name}'s range")
    lo, hi = int(d.finite_min), int(d.finite_max)
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        bad = int(x.min()) if int(x.min()) < lo else int(x.max())
        raise error("ZK0503", f"input `{name}` has the value {bad}, outside {d.name}'s range "
                    f"{lo}..{hi}", span, help=f"give `{name}` values in {lo}..{hi}")
    return round_to(x, d)
