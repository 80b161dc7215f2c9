"""How values become each element type, exactly as the chip's number formats would hold them.

Every rounding of a value into a dtype in the toolchain goes through here (the reference
evaluator's "as typed" mode, the executor, constant folding of low-precision values), via
ml_dtypes, with the behaviour made explicit: round to nearest even, and saturate finite overflow
to the largest finite value for the low-precision float formats (ml_dtypes itself turns E4M3FN
overflow into NaN and FP4 NaN into a signed zero; see docs/numerics.md).
"""

from __future__ import annotations

import numpy as np

from zhenwu_cc.dialects import dtypes
from zhenwu_cc.dialects.dtypes import DType


def round_to(x: np.ndarray, dtype: DType | str, *, saturate: bool = True) -> np.ndarray:
    """Round `x` into `dtype` (RNE) and return it stored in that dtype's numpy type.

    Floats are first brought to float32 (ml_dtypes casts from float64 through float32 anyway;
    doing it here makes the double rounding explicit). Low-precision formats saturate finite
    overflow unless `saturate=False`; NaN stays NaN where the format has one.
    """
    d = dtypes.get(dtype) if isinstance(dtype, str) else dtype
    x = np.asarray(x)
    if d.kind == "bool":
        return x.astype(np.bool_)
    if d.is_int:
        info = np.iinfo(d.np_dtype)
        if x.dtype.kind == "f":
            x = np.rint(x)
        return np.clip(x, info.min, info.max).astype(d.np_dtype)
    x32 = x.astype(np.float32)
    if saturate and d.is_low_precision and d.name != "f8E8M0FNU":
        x32 = np.where(np.isnan(x32), x32, np.clip(x32, -d.finite_max, d.finite_max))
    return x32.astype(d.np_dtype)
