"""How values become each element type, exactly as the chip's number formats would hold them.

Every rounding of a value into a dtype in the toolchain goes through here (the reference
evaluator's "as typed" mode, the executor, constant folding of low-precision values, the casting
passes), via ml_dtypes, with the behaviour made explicit: round to nearest even, saturate finite
overflow to the largest finite value for the low-precision float formats (ml_dtypes itself turns
E4M3FN overflow into NaN and FP4 NaN into a signed zero), scales built from integer exponents,
and FP8 tensor-core accumulation emulated on request. The rules and measured errors are in
docs/numerics.md. Everything is vectorised numpy and bit-reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
from zhenwu_cc.core import dtypes, quant
from zhenwu_cc.core.dtypes import DType

ScaleRounding = Literal["floor", "rceil"]
BlockScaleRounding = Literal["up", "rne"]
AccumulatorRounding = Literal["zero", "even"]

_F32_TINY = np.float32(2.0**-149)  # smallest positive float32: floor for FP32 scales


def _dtype(d: DType | str) -> DType:
    return dtypes.get(d) if isinstance(d, str) else d


def _f32_round_to_odd(x64: np.ndarray) -> np.ndarray:
    """`x64` in float32 rounded to odd: an inexact result gets an odd last bit.

    Rounding to odd at 24 bits and then to nearest even at p <= 22 bits equals a single rounding
    to p bits (Boldo & Melquiond), so float64 data reaches the 4- to 16-bit formats without the
    double rounding ml_dtypes does through float32 (0.2500000001 -> E2M1 is 0.5, not 0).
    """
    with np.errstate(over="ignore"):
        y = x64.astype(np.float32)
    inexact = (y.astype(np.float64) != x64) & ~np.isnan(x64)
    even = (y.view(np.uint32) & 1) == 0
    toward_x = np.where(x64 > y, np.float32(np.inf), np.float32(-np.inf))
    return np.where(inexact & even, np.nextafter(y, toward_x), y)


def _narrowing_f32(x: np.ndarray) -> np.ndarray:
    """`x` as float32 for a further rounding: exact for types float32 holds, round-to-odd else."""
    if x.dtype == np.float16:
        return f32_from_f16(x)
    if np.can_cast(x.dtype, np.float32, "safe"):
        return x.astype(np.float32, copy=False)
    return _f32_round_to_odd(x.astype(np.float64))


def _saturate(x32: np.ndarray, d: DType) -> np.ndarray:
    """Clip finite overflow to +-max; Inf stays Inf where `d` has it, else becomes +-max.

    NaN stays NaN where `d` has NaN; FP4 has none, and silently storing a zero (what ml_dtypes
    does) would hide the fault, so it is a ValueError for the caller to turn into a diagnostic.
    """
    if not d.has_nan and np.isnan(x32).any():
        raise ValueError(f"{np.isnan(x32).sum()} NaN value(s) cannot be represented in {d.name}, "
                         "which has no NaN")
    top = np.float32(d.finite_max)
    clipped = np.clip(x32, -top, top)
    return np.where(np.isinf(x32), x32, clipped) if d.has_inf else clipped


def round_to(x: np.ndarray, dtype: DType | str, *, saturate: bool = True) -> np.ndarray:
    """Round `x` into `dtype` (RNE) and return it stored in that dtype's numpy type.

    Floats reach the format through float32 explicitly: exactly when float32 holds the input
    type, by rounding to odd otherwise (float64), so the result is one correct rounding.
    With `saturate` (the default) the FP8/FP4 formats clip finite overflow to +-max, and Inf to
    +-max in formats without Inf (E4M3FN, E2M1FN); E5M2 keeps +-Inf; NaN stays NaN where the
    format has NaN and raises ValueError for E2M1FN. `saturate=False` gives ml_dtypes' own
    special values (E4M3FN overflow/Inf -> NaN, E5M2 overflow -> Inf, E2M1FN NaN -> -+0).
    E8M0 keeps ml_dtypes' rounding (ties up; 0 and negatives -> NaN): build scales with
    `e8m0_from_exponent` instead.
    """
    d = _dtype(dtype)
    x = np.asarray(x)
    if d.kind == "bool":
        return x.astype(np.bool_)
    if d.is_int:
        info = np.iinfo(d.np_dtype)
        if x.dtype.kind == "f":
            x = np.rint(x.astype(np.float64))  # clip in f64: int32's max is not an f32
        return np.clip(x, info.min, info.max).astype(d.np_dtype)
    if d.name == "f32":
        with np.errstate(over="ignore"):
            return x.astype(np.float32)
    x32 = _narrowing_f32(x)
    if d.name == "f16":
        return f16_from_f32(x32)
    if saturate and d.is_low_precision and d.name != "f8E8M0FNU":
        return _small_float_from_f32(_saturate(x32, d), d)
    return x32.astype(d.np_dtype)


def _small_float_from_f32(x32: np.ndarray, d: DType) -> np.ndarray:
    """Saturated float32 `x32` (finite values within +-d's max, or Inf/NaN) as FP8/FP4 `d`: the
    bits of ml_dtypes' conversion (RNE) at a third of its time (`_SmallFloat`). Inf and NaN go
    through ml_dtypes."""
    x32 = np.asarray(x32, np.float32)
    x32 = x32 if x32.flags.c_contiguous else x32.copy()
    out = np.empty(x32.shape, d.np_dtype)
    src, dst = x32.reshape(-1).view(np.uint32), out.reshape(-1).view(np.uint8)
    rounder = _SmallFloat(d, min(src.size, F16_CHUNK))
    with np.errstate(over="ignore", invalid="ignore"):
        for lo in range(0, src.size, F16_CHUNK):
            s = src[lo:lo + F16_CHUNK]
            rounder.codes(s, dst[lo:lo + s.size])
            if rounder.exponent[:s.size].max() == 0x7F800000:
                special = np.flatnonzero(rounder.exponent[:s.size] == 0x7F800000)
                dst[lo + special] = s[special].view(np.float32).astype(d.np_dtype).view(np.uint8)
    return out


class _SmallFloat:
    """Finite float32 values within +-max of FP8/FP4 format `d`, chunk by chunk, into d's codes.
    One float32 addition rounds at d's step, as in `f16_from_f32`: |x| plus 2**(e + 23 - m), e
    the exponent of x but at least d's smallest normal one, m d's mantissa bits, leaves
    round(|x| / step) (RNE) as the sum's low bits, and the code is that count plus
    (e - emin) * 2**m (a count of 2 * 2**m carries into the exponent), and the sign."""

    def __init__(self, d: DType, n: int):
        import ml_dtypes

        info = ml_dtypes.finfo(d.np_dtype)
        self.m, self.low = int(info.nmant), int(info.minexp) + 127  # the smallest normal's
        self.bits = d.bits
        self.magnitude, self.exponent, self.magic = (np.empty(n, np.uint32) for _ in range(3))

    def codes(self, s: np.ndarray, dst: np.ndarray) -> None:
        """Codes of the float32 bits `s` into the bytes `dst`; leaves s's exponent bits (in
        place) in `self.exponent` for the caller to find Inf and NaN."""
        k = s.size
        a, e, w = self.magnitude[:k], self.exponent[:k], self.magic[:k]
        np.bitwise_and(s, np.uint32(0x7FFFFFFF), out=a)
        np.right_shift(a, 23, out=e)
        np.maximum(e, np.uint32(self.low), out=e)
        np.add(e, np.uint32(23 - self.m), out=w)
        np.left_shift(w, 23, out=w)  # 2**(e + 23 - m)
        np.add(a.view(np.float32), w.view(np.float32), out=a.view(np.float32))
        np.subtract(a, w, out=a)  # round(|x| / step)
        np.subtract(e, np.uint32(self.low), out=e)
        np.left_shift(e, self.m, out=e)
        np.add(a, e, out=a)
        np.right_shift(s, 32 - self.bits, out=e)
        np.bitwise_and(e, np.uint32(1 << (self.bits - 1)), out=e)  # the sign
        np.bitwise_or(a, e, out=a)
        np.copyto(dst, a, casting="unsafe")
        np.bitwise_and(s, np.uint32(0x7F800000), out=e)


F16_CHUNK = 1 << 16  # elements f16_from_f32 converts at a time: its working arrays stay in cache


def _destination(x, src, dst, out: np.ndarray | None, name: str):
    """(x as `src`, the array to convert it into, whether that is done already): where x is
    not C-contiguous numpy's own cast has done it (rather than a contiguous copy first); else
    `out`, which must be a C-contiguous array of x's shape, or a new one."""
    x = np.asarray(x, dtype=src)
    if not x.flags.c_contiguous:
        if out is None:
            return x, x.astype(dst), True
        np.copyto(out, x, casting="unsafe")
        return x, out, True
    if out is None:
        return x, np.empty(x.shape, dst), False
    if not out.flags.c_contiguous or out.shape != x.shape:
        raise ValueError(f"{name} writes into a C-contiguous array of the input's shape")
    return x, out, False


def f16_from_f32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 `x` as float16, bit for bit numpy's cast (RNE, overflow to Inf, NaN keeping the
    top bits of its payload), into `out` (a C-contiguous float16 array of x's shape) or anew.

    numpy converts element by element in C, ~4 ns each and ~20 ns for a result that is
    subnormal (softmax outputs); here vectorised integer and float32 passes over cache-sized
    chunks do it in ~3 ns whatever the values. One float32 addition rounds at the float16 step
    (Maratyszcza's FP16 method): |x| * 4 plus 2**(e + 15), e the exponent of x but at least
    -14, so the sum's last bit weighs what float16's last bit does there (2**-24 for subnormals)
    and its bits hold the float16 exponent and mantissa. Elements at or past 2**16 (overflow, Inf,
    NaN) are few and go through numpy's own cast."""
    x, out, done = _destination(x, np.float32, np.float16, out, "f16_from_f32")
    if done:
        return out
    src, dst = x.reshape(-1).view(np.uint32), out.reshape(-1).view(np.uint16)
    m = min(src.size, F16_CHUNK)
    twice, magic, work = (np.empty(m, np.uint32) for _ in range(3))
    with np.errstate(over="ignore", invalid="ignore"):
        for lo in range(0, src.size, F16_CHUNK):
            s = src[lo:lo + F16_CHUNK]
            k = s.size
            w, b, a = twice[:k], magic[:k], work[:k]
            np.add(s, s, out=w)  # the bits without the sign
            np.bitwise_and(w, np.uint32(0xFF000000), out=b)
            np.maximum(b, np.uint32(0x71000000), out=b)  # exponent -14 at least
            np.right_shift(b, 1, out=b)
            np.add(b, np.uint32(0x07800000), out=b)  # 2**(e + 15)
            np.right_shift(w, 1, out=a)
            np.multiply(a.view(np.float32), np.float32(4), out=a.view(np.float32))
            np.add(b.view(np.float32), a.view(np.float32), out=b.view(np.float32))
            np.bitwise_and(b, np.uint32(0xFFF), out=a)
            np.right_shift(b, 13, out=b)
            np.bitwise_and(b, np.uint32(0x7C00), out=b)
            np.add(b, a, out=b)  # exponent and mantissa (a carry bumps the exponent)
            if w.max() >= np.uint32(0x8F000000):  # |x| >= 2**16, Inf or NaN
                big = np.flatnonzero(w >= np.uint32(0x8F000000))
                b[big] = s[big].view(np.float32).astype(np.float16).view(np.uint16) & 0x7FFF
            np.right_shift(s, 16, out=a)
            np.bitwise_and(a, np.uint32(0x8000), out=a)
            np.bitwise_or(b, a, out=b)
            np.copyto(dst[lo:lo + k], b, casting="unsafe")
    return out


def f32_from_f16(h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float16 `h` as float32 (exact), bit for bit numpy's cast, into `out` (a C-contiguous
    float32 array of h's shape) or anew: four vectorised passes instead of numpy's conversion
    element by element. The float16 bits shifted into float32 place (sign, then the 5-bit
    exponent and the mantissa) are the value times 2**-112, subnormals included; one multiply
    by 2**112 rescales them exactly, and Inf and NaN (2**16 and up then) get float32's top
    exponent."""
    h, out, done = _destination(h, np.float16, np.float32, out, "f32_from_f16")
    if done:
        return out
    bits, f = out.reshape(-1).view(np.uint32), out.reshape(-1)
    np.left_shift(h.reshape(-1).view(np.uint16), 16, out=bits, dtype=np.uint32, casting="unsafe")
    np.right_shift(bits.view(np.int32), 3, out=bits.view(np.int32))  # the sign fills 3 bits
    np.bitwise_and(bits, np.uint32(0x8FFFE000), out=bits)  # ... which are cleared again
    np.multiply(f, np.float32(2.0**112), out=f)
    if f.size and (f.max() >= 65536 or f.min() <= -65536):
        special = np.flatnonzero(np.abs(f) >= 65536)
        bits[special] |= np.uint32(0x7F800000)
    return out


def e8m0_from_exponent(e: np.ndarray) -> np.ndarray:
    """E8M0 scales 2**e built from the bits (code = e + 127), as the OCP MX spec stores them.

    Exponents below -127 clamp to 2**-127 (code 0x00); above 127, NaN or +Inf give the NaN code
    0xFF. Float input must hold integers (or NaN/+-Inf). `astype` would round to the nearest
    power of two with ties up and turn 0 into NaN, which is not the spec's construction.
    """
    e = np.asarray(e)
    if e.dtype.kind == "f":
        invalid = np.isnan(e) | (e > 127)
        e = np.where(invalid, 0.0, e)
        if np.any(e != np.floor(e)):
            raise ValueError("E8M0 exponents must be integers")
        e = np.maximum(e, -127.0)
    elif e.dtype.kind in "iu":
        invalid = e > 127
    else:
        raise TypeError(f"E8M0 exponents must be integers, not {e.dtype}")
    codes = np.where(invalid, 0xFF, np.clip(e, -127, 127).astype(np.int64) + 127)
    return codes.astype(np.uint8).view(dtypes.get("f8E8M0FNU").np_dtype)


@dataclass(frozen=True, eq=False)
class Quantized:
    """Low-precision elements and the scales that bring them back: x ~ values * scales.

    `mode` says how `scales` lines up with `values` (whose shape is the input's):
    "tensor": one float32 scale, shape (); "channel": float32, shape (x.shape[axis],);
    "block": float32, x.shape[:-2] + (rows // block[0], cols // block[1]);
    "mx": E8M0, and "nvfp4": E4M3, both x.shape with `axis` replaced by ceil(n / block[0]) —
    NVFP4 also multiplies by the float32 `tensor_scale`. A scaling group holding NaN or Inf has a
    NaN scale and zero elements, so it dequantizes to NaN.
    """

    values: np.ndarray
    scales: np.ndarray
    mode: str
    axis: int | None = None
    block: tuple[int, ...] | None = None
    tensor_scale: np.float32 | None = None

    @property
    def dtype(self) -> DType:
        return next(d for d in dtypes.DTYPES.values() if d.np_name == self.values.dtype.name)

    @property
    def nbytes(self) -> int:
        """Stored bytes: elements packed (two FP4 per byte along the last axis) plus scales."""
        shape = self.values.shape or (1,)
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        extra = 4 if self.tensor_scale is not None else 0
        return rows * self.dtype.nbytes(shape[-1]) + self.scales.nbytes + extra


def _check_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-d tensor")
    return axis % ndim


def _element_dtype(dtype: DType | str, allowed: tuple[str, ...] | None = None) -> DType:
    d = _dtype(dtype)
    ok = d.is_low_precision and d.name != "f8E8M0FNU" if allowed is None else d.name in allowed
    if not ok:
        raise ValueError(f"{d.name} is not an element format for this scaling mode")
    return d


def _group_amax(groups: np.ndarray, axis) -> np.ndarray:
    """Largest |x| over `axis`, NaN for a group holding NaN or Inf."""
    amax = np.max(np.abs(groups), axis=axis)
    return np.where(np.isfinite(amax), amax, np.float32(np.nan))


def _fp32_scale(amax: np.ndarray, top: float) -> np.ndarray:
    """float32 scale amax / top (one rounding); 1 for an all-zero group; 2**-149, not 0, when
    the division underflows."""
    s = np.asarray(amax, np.float32) / np.float32(top)
    return np.where(amax == 0, np.float32(1), np.maximum(s, _F32_TINY)).astype(np.float32)


def _midpoints(y32: np.ndarray, d: DType) -> np.ndarray:
    """Where float32 `y32` lies exactly halfway between two neighbours of format `d` (FP8/FP4):
    the only values whose rounding into `d` can differ from that of a number they were rounded
    from. Normal range: the bits below `d`'s last mantissa bit are 100...0; below `d`'s smallest
    normal: an odd multiple of half its smallest subnormal (scaling by a power of two is exact)."""
    import ml_dtypes

    info = ml_dtypes.finfo(d.np_dtype)
    mant, emin = int(info.nmant), int(info.minexp)
    bits = y32.view(np.uint32)
    found = (bits & np.uint32((1 << (23 - mant)) - 1)) == np.uint32(1 << (22 - mant))
    tiny = np.flatnonzero(np.abs(y32) < np.float32(2.0**emin))
    halves = y32.reshape(-1)[tiny] * np.float32(2.0 ** (mant - emin + 1))  # |halves| < 2**(mant+1)
    whole = halves.astype(np.int32)
    found.reshape(-1)[tiny] = (whole == halves) & (whole % 2 != 0)
    return found


def _divide_round_by_one(x32: np.ndarray, s: np.ndarray, d: DType) -> np.ndarray:
    """`_divide_round` by one finite positive float32 scale (a per-tensor one), chunk by chunk
    so that the quotient, its midpoint test, the saturation and the rounding stay in cache:
    the same steps on the same float32 quotients, in a third of the time."""
    import ml_dtypes

    info = ml_dtypes.finfo(d.np_dtype)
    mant, emin = int(info.nmant), int(info.minexp)
    low_bits, half = np.uint32((1 << (23 - mant)) - 1), np.uint32(1 << (22 - mant))
    tiny = np.float32(2.0**emin).view(np.uint32)
    top = np.float32(d.finite_max)
    out = np.empty(x32.shape, d.np_dtype)
    src, dst = x32.reshape(-1), out.reshape(-1).view(np.uint8)
    n = min(src.size, F16_CHUNK)
    rounder = _SmallFloat(d, n)
    quotient, work, found = np.empty(n, np.float32), np.empty(n, np.uint32), np.empty(n, np.bool_)
    redo: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for lo in range(0, src.size, F16_CHUNK):
            x = src[lo:lo + F16_CHUNK]
            k = x.size
            q, w, f = quotient[:k], work[:k], found[:k]
            np.divide(x, s, out=q)
            bits = q.view(np.uint32)
            np.bitwise_and(bits, low_bits, out=w)
            np.equal(w, half, out=f)  # a midpoint in d's normal range (`_midpoints`)
            np.bitwise_and(bits, np.uint32(0x7FFFFFFF), out=w)
            if w.min() < tiny:  # below d's smallest normal: odd multiples of half a subnormal
                small = np.flatnonzero(w < tiny)
                halves = q[small] * np.float32(2.0 ** (mant - emin + 1))
                whole = halves.astype(np.int32)
                f[small] = (whole == halves) & (whole % 2 != 0)
            if f.any():
                redo.append(lo + np.flatnonzero(f))
            special = w.max() >= np.uint32(0x7F800000)  # Inf or NaN: round_to's own rules
            if special:
                odd = np.flatnonzero(w >= np.uint32(0x7F800000))
                kept = round_to(q[odd], d).view(np.uint8)
            np.clip(q, -top, top, out=q)
            rounder.codes(bits, dst[lo:lo + k])
            if special:
                dst[lo + odd] = kept
    if redo:
        where = np.concatenate(redo)
        exact = src[where].astype(np.float64) / np.float64(s)
        out.reshape(-1)[where] = round_to(exact, d)
    return out


def _divide_round(x: np.ndarray, scale: np.ndarray, d: DType) -> np.ndarray:
    """Elements round_to(x / scale) with one rounding of the exact quotient; 0 where the scale
    is NaN or 0 (a non-finite or empty group).

    Fast and exact: the quotient is computed in float32 (float64 for a scale float32 cannot
    hold) and rounded once more to float32, then cast into `d`. Each rounding is monotone onto a
    grid holding every value and midpoint of `d`, so the result equals the single rounding of
    the exact quotient unless the float32 quotient is itself a midpoint of `d` (`_midpoints`);
    those few elements are redone from the float64 quotient, rounded to odd (`round_to`)."""
    s = np.asarray(scale)
    exact_f32 = s.dtype == np.float32
    ok = np.isfinite(s) & (s > 0)
    x32 = np.asarray(x, np.float32)
    if exact_f32 and s.ndim == 0 and ok and x32.flags.c_contiguous:
        return _divide_round_by_one(x32, s, d)
    with np.errstate(all="ignore"):
        if exact_f32:
            q32 = x32 / np.where(ok, s, np.float32(1))
        else:
            q32 = (x32.astype(np.float64) / np.where(ok, s, 1.0)).astype(np.float32)
    if not ok.all():
        q32 = np.where(ok, q32, np.float32(0))
    out = round_to(q32, d)
    redo = _midpoints(q32, d)
    if redo.any():
        s64 = np.broadcast_to(np.where(ok, s, 1).astype(np.float64), q32.shape)[redo]
        out[redo] = round_to(np.broadcast_to(x32, q32.shape)[redo].astype(np.float64) / s64, d)
    return out


@cache
def _widening_table(dt: np.dtype) -> np.ndarray:
    """float32 value of each of the 256 codes of an 8-bit (or FP4-in-a-byte) format, made by
    ml_dtypes' own conversion."""
    return np.arange(256, dtype=np.uint8).view(dt).astype(np.float32)


def widen(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`x` as float32 exactly (every format here fits): FP8/FP4 by bit arithmetic, E8M0 by table
    lookup, the same values as ml_dtypes' conversion at a fraction of its time; float16 by
    `f32_from_f16`; float32 itself not copied. Into `out` (a C-contiguous float32 array of x's
    shape) when given, so that a loop's steps reuse one buffer."""
    x = np.asarray(x)
    if x.dtype.itemsize == 1 and x.dtype.kind == "V":
        if x.dtype.name == "float8_e8m0fnu":
            return np.take(_widening_table(x.dtype), x.view(np.uint8), out=out)
        return _widen_small_float(x, out)
    if x.dtype == np.float16:
        return f32_from_f16(x, out)
    if out is None:
        return x.astype(np.float32, copy=False)
    np.copyto(out, x, casting="unsafe")
    return out


def _widen_small_float(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """FP8/FP4 codes as float32, as `f32_from_f16` widens float16: the code shifted so that its
    sign lands on float32's and its exponent and mantissa fields just below (an arithmetic shift
    spreads the sign over the bits between, which are cleared) is the value times 2**-(127 -
    bias), subnormals included, and one exact multiply rescales it. Inf and NaN codes (past the
    largest value then) come from ml_dtypes' table."""
    import ml_dtypes

    info = ml_dtypes.finfo(x.dtype)
    m, e, bits = int(info.nmant), int(info.nexp), int(info.bits)
    codes = np.ascontiguousarray(x.view(np.uint8))  # a strided tile's bytes: one cheap copy
    out = np.empty(x.shape, np.float32) if out is None else out
    u = out.reshape(-1).view(np.uint32)
    np.left_shift(codes.reshape(-1), 32 - bits, out=u, dtype=np.uint32, casting="unsafe")
    np.right_shift(u.view(np.int32), 8 - e, out=u.view(np.int32))
    np.bitwise_and(u, np.uint32(0x80000000 | (((1 << (e + m)) - 1) << (23 - m))), out=u)
    f = u.view(np.float32)
    np.multiply(f, np.float32(2.0 ** (127 - (2 ** (e - 1) - 1))), out=f)
    top = np.float32(info.max)  # Inf and NaN codes widen past it
    if f.size and (f.max() > top or f.min() < -top):
        special = np.flatnonzero(np.abs(f) > top)
        f[special] = _widening_table(x.dtype)[codes.reshape(-1)[special]]
    return out


def _f32_input(x: np.ndarray) -> np.ndarray:
    """Quantizers read float32 data (the executor's type); wider data is rounded to it once.
    Float32 data is read in place (no quantiser writes to its input)."""
    x = np.asarray(x)
    return x if x.dtype == np.float32 else round_to(x, "f32")


def quantize_tensor(x: np.ndarray, dtype: DType | str = "f8E4M3FN") -> Quantized:
    """One float32 scale amax / max_elem for the whole tensor (1 when amax is 0)."""
    d = _element_dtype(dtype)
    x32 = _f32_input(x)
    amax = np.maximum(x32.max(), -x32.min())  # max |x| without an |x| copy; NaN if any is NaN
    amax = np.where(np.isfinite(amax), amax, np.float32(np.nan))
    scale = _fp32_scale(amax, d.finite_max)
    return Quantized(_divide_round(x32, scale, d), scale, "tensor")


def quantize_channel(x: np.ndarray, dtype: DType | str = "f8E4M3FN", *,
                     axis: int = 0) -> Quantized:
    """One float32 scale amax / max_elem per index along `axis` (e.g. per output channel)."""
    d = _element_dtype(dtype)
    x32 = _f32_input(x)
    axis = _check_axis(axis, x32.ndim)
    others = tuple(i for i in range(x32.ndim) if i != axis)
    scale = _fp32_scale(_group_amax(x32, others), d.finite_max)
    values = _divide_round(x32, np.expand_dims(scale, others), d)
    return Quantized(values, scale, "channel", axis=axis)


def quantize_block(x: np.ndarray, dtype: DType | str = "f8E4M3FN", *,
                   block: tuple[int, int] = (1, 128)) -> Quantized:
    """One float32 scale amax / max_elem per (rows x cols) block of the last two dims, as
    DeepSeek-V3 does (1x128 activations, 128x128 weights). The block must tile the tensor."""
    d = _element_dtype(dtype)
    x32 = _f32_input(x)
    br, bc = block
    if x32.ndim < 2 or br <= 0 or bc <= 0 or x32.shape[-2] % br or x32.shape[-1] % bc:
        raise ValueError(f"block {br}x{bc} does not tile a tensor of shape {x32.shape}")
    *lead, rows, cols = x32.shape
    groups = x32.reshape(*lead, rows // br, br, cols // bc, bc)
    scale = _fp32_scale(_group_amax(groups, (-3, -1)), d.finite_max)
    values = _divide_round(groups, scale[..., :, None, :, None], d).reshape(x32.shape)
    return Quantized(values, scale, "block", block=(br, bc))


def _blocks(x32: np.ndarray, axis: int, k: int) -> np.ndarray:
    """`x32` with `axis` last, zero-padded to a multiple of k, split into (..., n_blocks, k)."""
    if k <= 0:
        raise ValueError(f"block size must be positive, not {k}")
    moved = np.moveaxis(x32, axis, -1)
    pad = -moved.shape[-1] % k
    moved = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(0, pad)])
    return moved.reshape(*moved.shape[:-1], -1, k)


def _unblock(groups: np.ndarray, n: int, axis: int) -> np.ndarray:
    return np.moveaxis(groups.reshape(*groups.shape[:-2], -1)[..., :n], -1, axis)


def _mx_exponent(amax: np.ndarray, d: DType, rounding: ScaleRounding) -> np.ndarray:
    """Shared exponents (float64, NaN for non-finite blocks), computed exactly with frexp.

    "floor" (OCP MX): floor(log2 amax) - emax_elem. "rceil" (cuDNN, Blackwell cvt.rp.ue8m0):
    ceil(log2(amax / max_elem)), found by comparing mantissas instead of dividing.
    An all-zero block gets -127, the smallest scale, as the spec's reference code does.
    """
    m, k = np.frexp(amax.astype(np.float64))  # amax = m * 2**k, 0.5 <= m < 1
    top_m, top_k = np.frexp(d.finite_max)  # emax_elem = top_k - 1
    if rounding == "floor":
        e = (k - 1) - (top_k - 1)
    elif rounding == "rceil":
        e = k - top_k + (m > top_m)
    else:
        raise ValueError(f"MX scale rounding must be 'floor' or 'rceil', not {rounding!r}")
    e = np.where(amax == 0, -127, e).astype(np.float64)
    return np.where(np.isnan(amax), np.nan, e)


def quantize_mx(x: np.ndarray, dtype: DType | str = "f8E4M3FN", *, axis: int = -1,
                block: int = 32, scale_rounding: ScaleRounding = "floor") -> Quantized:
    """OCP MX v1.0: one E8M0 scale 2**e per `block` consecutive elements along `axis`, elements
    the saturating RNE cast of x / 2**e (exact: ldexp). A partial last block is zero-padded."""
    d = _element_dtype(dtype, quant.MX_ELEMENTS)
    x32 = _f32_input(x)
    axis = _check_axis(axis, x32.ndim)
    groups = _blocks(x32, axis, block)
    e = _mx_exponent(_group_amax(groups, -1), d, scale_rounding)
    valid = ~np.isnan(e)
    shift = np.where(valid, -np.clip(e, -127, 127), 0).astype(np.int32)
    # Exact: a quotient that falls into float32's subnormal range is < 2**-126 and rounds to 0
    # in every element format either way.
    scaled = np.where(valid[..., None], np.ldexp(groups, shift[..., None]), np.float32(0))
    values = _unblock(round_to(scaled, d), x32.shape[axis], axis)
    scales = np.moveaxis(e8m0_from_exponent(e), -1, axis)
    return Quantized(values, scales, "mx", axis=axis, block=(block,))


def _e4m3_scale(target: np.ndarray, rounding: BlockScaleRounding) -> np.ndarray:
    """Non-negative float64 `target` as E4M3 (saturating at 448): nearest-even or rounded up."""
    e4m3 = dtypes.get("f8E4M3FN")
    nearest = round_to(target, e4m3)
    if rounding == "rne":
        return nearest
    if rounding != "up":
        raise ValueError(f"NVFP4 scale rounding must be 'up' or 'rne', not {rounding!r}")
    codes = nearest.view(np.uint8)
    largest = round_to(np.float32(e4m3.finite_max), e4m3).view(np.uint8)
    # Non-negative E4M3 codes are ordered like their values: the next value up is code + 1.
    step = (nearest.astype(np.float64) < target) & (codes < largest)
    return (codes + step.astype(np.uint8)).view(e4m3.np_dtype)


def quantize_nvfp4(x: np.ndarray, *, axis: int = -1, block: int = 16,
                   scale_rounding: BlockScaleRounding = "up") -> Quantized:
    """NVIDIA NVFP4: E2M1 elements, one E4M3 scale per `block` along `axis`, one float32
    tensor scale global_amax / (6 * 448). Block scale = E4M3(block_amax / 6 / tensor_scale),
    rounded up by default (cuDNN: no element saturates) or to nearest even ("rne", ModelOpt);
    elements are the saturating RNE cast of x / (block_scale * tensor_scale). An all-zero block
    has scale 0; the tensor scale ignores NaN/Inf, whose blocks get a NaN scale."""
    f4, e4m3 = dtypes.get("f4E2M1FN"), dtypes.get("f8E4M3FN")
    x32 = _f32_input(x)
    axis = _check_axis(axis, x32.ndim)
    groups = _blocks(x32, axis, block)
    magnitude = np.abs(groups)
    finite_amax = np.max(np.where(np.isfinite(magnitude), magnitude, 0), initial=0)
    tensor_scale = _fp32_scale(finite_amax, f4.finite_max * e4m3.finite_max)[()]
    amax = _group_amax(groups, -1).astype(np.float64)
    scales = _e4m3_scale(amax / (f4.finite_max * np.float64(tensor_scale)), scale_rounding)
    # scale * tensor_scale is exact in float64 (4 + 24 significant bits).
    per_block = scales.astype(np.float32).astype(np.float64) * np.float64(tensor_scale)
    values = _unblock(_divide_round(groups, per_block[..., None], f4), x32.shape[axis], axis)
    return Quantized(values, np.moveaxis(scales, -1, axis), "nvfp4", axis=axis, block=(block,),
                     tensor_scale=np.float32(tensor_scale))


def _expanded_scales(q: Quantized) -> np.ndarray:
    """`q.scales` as float64, broadcastable against `q.values`."""
    s = q.scales.astype(np.float32).astype(np.float64)
    if q.mode == "tensor":
        return s
    if q.mode == "channel":
        return np.expand_dims(s, tuple(i for i in range(q.values.ndim) if i != q.axis))
    if q.mode == "block":
        return np.repeat(np.repeat(s, q.block[0], axis=-2), q.block[1], axis=-1)
    n = q.values.shape[q.axis]
    s = np.repeat(np.moveaxis(s, q.axis, -1), q.block[0], axis=-1)[..., :n]
    s = np.moveaxis(s, -1, q.axis)
    return s * np.float64(q.tensor_scale) if q.tensor_scale is not None else s


def dequantize(q: Quantized) -> np.ndarray:
    """values * scales (* tensor_scale) as float32: the product is exact in float64 and rounded
    once (it is already exact in float32 for MX)."""
    with np.errstate(over="ignore", invalid="ignore"):
        exact = q.values.astype(np.float32).astype(np.float64) * _expanded_scales(q)
        return exact.astype(np.float32)


_FP4_DTYPE = "f4E2M1FN"


def pack_fp4(values: np.ndarray) -> np.ndarray:
    """Two E2M1 codes per byte along the last axis: low nibble = even element, high = odd.

    An odd length is padded with a +0 code; the result has shape (..., ceil(n / 2)), the
    checkpoint layout of NVFP4/MXFP4 weights and `DType.nbytes` per row.
    """
    values = np.asarray(values)
    if values.dtype != dtypes.get(_FP4_DTYPE).np_dtype:
        raise TypeError(f"pack_fp4 takes float4_e2m1fn values, not {values.dtype}")
    if values.ndim == 0:
        raise ValueError("pack_fp4 needs at least one axis")
    codes = values.view(np.uint8) & 0x0F
    codes = np.pad(codes, [(0, 0)] * (codes.ndim - 1) + [(0, codes.shape[-1] % 2)])
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def unpack_fp4(packed: np.ndarray, n: int) -> np.ndarray:
    """The first `n` E2M1 values along the last axis of bytes made by `pack_fp4`."""
    packed = np.asarray(packed, np.uint8)
    if not 0 <= n <= 2 * packed.shape[-1]:
        raise ValueError(f"{packed.shape[-1]} bytes do not hold {n} FP4 values")
    codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)
    return codes[..., :n].view(dtypes.get(_FP4_DTYPE).np_dtype)


def _exact_f32(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if not np.can_cast(a.dtype, np.float32, "safe"):
        raise TypeError(f"{a.dtype} does not convert exactly to float32; round it first")
    return a.astype(np.float32)


def matmul_f32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b, operands upcast exactly to float32, float32 accumulation (numpy/BLAS order)."""
    return np.matmul(_exact_f32(a), _exact_f32(b))


def _round_mantissa(y: np.ndarray, bits: int, mode: AccumulatorRounding,
                    scratch: np.ndarray) -> None:
    """Keep `bits` explicit mantissa bits of float64 `y`, in place (exponent range unlimited).

    Works on the bit pattern because frexp/ldexp, though exact too, are ~20x slower and this
    runs once per K step: clearing the low 52 - bits bits truncates the magnitude; adding half
    an ulp less one, plus the kept last bit, first rounds to nearest even (a carry correctly
    bumps the exponent). `scratch` is an int64 buffer of y's shape.
    """
    drop = 52 - bits
    if drop == 0:
        return
    v = y.view(np.int64)
    if mode == "even":
        np.right_shift(v, drop, out=scratch)
        np.bitwise_and(scratch, 1, out=scratch)
        np.add(scratch, (1 << (drop - 1)) - 1, out=scratch)
        np.add(v, scratch, out=v)
    np.bitwise_and(v, ~((1 << drop) - 1), out=v)


def matmul_fp8_accumulate(a: np.ndarray, b: np.ndarray, *, chunk: int = 128,
                          mantissa_bits: int = 13, rounding: AccumulatorRounding = "zero",
                          mma_k: int = 1) -> np.ndarray:
    """a @ b (leading dims broadcast) as an FP8 tensor core with a narrow accumulator does it.

    K is cut into `chunk`s. Within a chunk a running sum starts at 0; every `mma_k` products
    (one MMA instruction's k; 1 = after every product) are summed in float64 (exact for E4M3 and
    FP4 operands), added to it, and the sum is cut to `mantissa_bits` explicit bits, toward zero
    by default (Hopper's ~e8m13, hardware-numerics §3.5) or to nearest even. Each chunk's sum is
    then promoted into a float32 accumulator (float32 adds, RNE), as DeepSeek-V3/DeepGEMM do
    every 128 elements. Cost: ceil(K / mma_k) vectorised passes over the batch x M x N plane.
    """
    a64 = _exact_f32(a).astype(np.float64)
    b64 = _exact_f32(b).astype(np.float64)
    if a64.ndim < 2 or b64.ndim < 2 or a64.shape[-1] != b64.shape[-2]:
        raise ValueError(f"cannot multiply shapes {a64.shape} and {b64.shape}")
    if chunk <= 0 or mma_k <= 0 or chunk % mma_k:
        raise ValueError(f"mma_k ({mma_k}) must be positive and divide chunk ({chunk})")
    if not 1 <= mantissa_bits <= 52:
        raise ValueError(f"mantissa_bits must be in [1, 52], not {mantissa_bits}")
    if rounding not in ("zero", "even"):
        raise ValueError(f"accumulator rounding must be 'zero' or 'even', not {rounding!r}")
    k = a64.shape[-1]
    shape = np.broadcast_shapes(a64.shape[:-2], b64.shape[:-2]) + (a64.shape[-2], b64.shape[-1])
    out = np.zeros(shape, np.float32)
    running, step, scratch = np.empty(shape), np.empty(shape), np.empty(shape, np.int64)
    for start in range(0, k, chunk):
        running.fill(0)
        for lo in range(start, min(start + chunk, k), mma_k):
            hi = min(lo + mma_k, k)  # mma_k divides chunk: never crosses it
            if hi - lo == 1:  # an outer product: much faster than matmul with k = 1
                np.multiply(a64[..., :, lo, None], b64[..., None, lo, :], out=step)
            else:
                np.matmul(a64[..., lo:hi], b64[..., lo:hi, :], out=step)
            np.add(running, step, out=running)
            _round_mantissa(running, mantissa_bits, rounding, scratch)
        with np.errstate(over="ignore"):
            out += running.astype(np.float32)
    return out
