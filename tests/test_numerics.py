"""Element casts, E8M0 construction and FP4 packing against an independent, exact reference.

`ref_code` rounds with Fractions over the list of a format's values (nearest, ties to the even
code, saturating), so it shares nothing with runtime/numerics.py but ml_dtypes' decoding of codes.
The other numerics test files import it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from fractions import Fraction
from functools import cache

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from zhenwu_cc.core import dtypes
from zhenwu_cc.runtime.numerics import e8m0_from_exponent, pack_fp4, round_to, unpack_fp4

CODES = {"f8E4M3FN": 256, "f8E5M2": 256, "f4E2M1FN": 16}
SIGN_BIT = {"f8E4M3FN": 0x80, "f8E5M2": 0x80, "f4E2M1FN": 0x08}
NAN_CODES = {"f8E4M3FN": 2, "f8E5M2": 6, "f4E2M1FN": 0}


def all_codes(name: str) -> np.ndarray:
    return np.arange(CODES[name], dtype=np.uint8)


def decode(name: str, codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes, np.uint8).view(dtypes.get(name).np_dtype).astype(np.float32)


@cache
def positive_grid(name: str) -> tuple[Fraction, ...]:
    """The finite non-negative values of a format, in code order (which is value order)."""
    values = decode(name, all_codes(name)[: SIGN_BIT[name]])
    return tuple(Fraction(float(v)) for v in values if np.isfinite(v))


def ref_code(x, name: str) -> int | None:
    """The code a saturating RNE cast must give for the exact value `x` (None: NaN)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    negative = x < 0 or (isinstance(x, float) and math.copysign(1.0, x) < 0)
    sign = SIGN_BIT[name] if negative else 0
    if isinstance(x, float) and math.isinf(x):
        if dtypes.get(name).has_inf:
            return sign | len(positive_grid(name))  # the code after the largest finite one
        return sign | (len(positive_grid(name)) - 1)
    grid = positive_grid(name)
    mag = abs(Fraction(x))
    if mag >= grid[-1]:
        return sign | (len(grid) - 1)
    lo = bisect_right(grid, mag) - 1
    if grid[lo] == mag:
        return sign | lo
    below, above = mag - grid[lo], grid[lo + 1] - mag
    if below == above:
        return sign | (lo if lo % 2 == 0 else lo + 1)
    return sign | (lo if below < above else lo + 1)


def assert_codes(got: np.ndarray, xs, name: str) -> None:
    """`got` (values in the format) holds exactly the reference codes of `xs` (NaN as a class)."""
    got_codes = got.view(np.uint8).ravel()
    got_nan = np.isnan(got.astype(np.float32)).ravel()
    for x, code, nan in zip(xs, got_codes, got_nan, strict=True):
        want = ref_code(x, name)
        if want is None:
            assert nan, f"{x!r} should be NaN in {name}, got code {code:#x}"
        else:
            assert not nan and code == want, f"{x!r} -> {code:#x}, want {want:#x} in {name}"


# -- every code

@pytest.mark.parametrize("name", CODES)
@pytest.mark.parametrize("source", [np.float32, np.float64])
@pytest.mark.parametrize("saturate", [True, False])
def test_every_code_round_trips(name, source, saturate):
    codes = all_codes(name)
    values = decode(name, codes).astype(source)
    nan = np.isnan(values)
    back = round_to(values, name, saturate=saturate)
    assert back.dtype == dtypes.get(name).np_dtype
    assert nan.sum() == NAN_CODES[name]
    assert np.array_equal(back.view(np.uint8)[~nan], codes[~nan])  # includes -0 and E5M2 +-Inf
    assert np.isnan(back.astype(np.float32)[nan]).all()


# -- values across and beyond the range

def probe_values(name: str) -> np.ndarray:
    """Midpoints and their float32 neighbours, +-max and beyond, specials, subnormals and the
    half of the smallest one, float32's smallest subnormal; with both signs. No NaN for FP4,
    which raises (tested on its own)."""
    grid = np.array([float(v) for v in positive_grid(name)], np.float64)
    top, step = grid[-1], grid[-1] - grid[-2]
    points = [(grid[:-1] + grid[1:]) / 2, grid, [top + step / 2, 2 * top, 1e30, 3.4028235e38],
              [grid[1] / 2, grid[1], grid[1] * 1.5, 2.0**-149, 0.0]]
    base = np.concatenate([np.asarray(p, np.float64) for p in points]).astype(np.float32)
    with np.errstate(over="ignore"):
        up, down = np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(-np.inf))
    special = np.array([np.inf, np.nan] if dtypes.get(name).has_nan else [np.inf], np.float32)
    xs = np.concatenate([base, up, down, special])
    return np.concatenate([xs, -xs])


@pytest.mark.parametrize("name", CODES)
def test_casts_match_reference_and_ml_dtypes_after_clipping(name):
    d = dtypes.get(name)
    xs = probe_values(name)
    got = round_to(xs, name)
    assert_codes(got, [float(x) for x in xs], name)
    # The same as ml_dtypes once the documented clipping is applied.
    clip = np.clip(xs, -d.finite_max, d.finite_max)
    want = (np.where(np.isinf(xs), xs, clip) if d.has_inf else clip).astype(d.np_dtype)
    same = got.view(np.uint8) == want.view(np.uint8)
    both_nan = np.isnan(got.astype(np.float32)) & np.isnan(want.astype(np.float32))
    assert np.all(same | both_nan)


@pytest.mark.parametrize("name", CODES)
def test_saturate_false_is_ml_dtypes(name):
    d = dtypes.get(name)
    xs = probe_values(name)
    got = round_to(xs, name, saturate=False).astype(np.float32)
    want = xs.astype(d.np_dtype).astype(np.float32)
    assert np.array_equal(got, want, equal_nan=True)


def test_documented_special_values():
    e4m3 = round_to(np.array([464, 465, 1e6, np.inf, -np.inf, np.nan], np.float32), "f8E4M3FN")
    assert e4m3.astype(np.float32)[:5].tolist() == [448, 448, 448, 448, -448]
    assert np.isnan(e4m3.astype(np.float32)[5])
    e5m2 = round_to(np.array([61440, 1e9, np.inf, -np.inf], np.float32), "f8E5M2")
    assert e5m2.astype(np.float32).tolist() == [57344, 57344, np.inf, -np.inf]
    raw = round_to(np.array([465, np.inf], np.float32), "f8E4M3FN", saturate=False)
    assert np.isnan(raw.astype(np.float32)).all()
    assert round_to(np.float32(61440), "f8E5M2", saturate=False).astype(np.float32) == np.inf
    assert round_to(np.array([np.inf, -7.0]), "f4E2M1FN").astype(np.float32).tolist() == [6, -6]


def test_fp4_nan_raises_instead_of_becoming_zero():
    with pytest.raises(ValueError, match="NaN"):
        round_to(np.array([1.0, np.nan]), "f4E2M1FN")
    # ml_dtypes' own behaviour on request: NaN -> zero with the sign inverted.
    raw = round_to(np.array([np.nan], np.float32), "f4E2M1FN", saturate=False)
    assert raw.view(np.uint8)[0] == 0x8


def test_float64_input_is_rounded_once():
    # Each value sits a hair past a midpoint of the E2M1 grid, closer than float32 can resolve:
    # rounding through float32 first would land on the midpoint and tie to even.
    x = np.array([0.2500000001, 2.5000001, -0.7499999999])
    assert round_to(x, "f4E2M1FN").astype(np.float32).tolist() == [0.5, 3, -0.5]
    over = round_to(np.array([464.00000001]), "f8E4M3FN", saturate=False)
    assert np.isnan(over.astype(np.float32)[0])  # above the 464 tie: rounds up, overflows


@given(st.lists(st.floats(-1e5, 1e5, allow_subnormal=True), min_size=1, max_size=40),
       st.sampled_from(sorted(CODES)))
def test_float64_rounding_matches_exact_reference(xs, name):
    assert_codes(round_to(np.array(xs, np.float64), name), xs, name)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=40), st.integers(-60, -12))
def test_float64_near_midpoints_rounds_once(xs, offset):
    # Values a hair off a midpoint: float32 RNE would land exactly on the midpoint.
    grid = np.array([float(v) for v in positive_grid("f8E4M3FN")])
    mids = (grid[:-1] + grid[1:]) / 2
    base = mids[np.abs(np.array(xs)).astype(np.int64) % len(mids)] * np.sign(np.array(xs) + 0.5)
    probes = list(base * (1 + 2.0**offset)) + list(base * (1 - 2.0**offset))
    assert_codes(round_to(np.array(probes), "f8E4M3FN"), probes, "f8E4M3FN")


def test_f16_and_bf16_from_float64_round_once():
    rng = np.random.default_rng(1)
    halves = rng.integers(1, 2**10, 4096) * 2.0**-11 + 1  # f16 midpoints in [1, 2)
    x = np.concatenate([halves * (1 + 2.0**-40), halves * (1 - 2.0**-40)])
    assert np.array_equal(round_to(x, "f16"), x.astype(np.float16))
    bf_mid = 1 + 2.0**-8
    got = round_to(np.array([bf_mid * (1 + 2.0**-40)]), "bf16")
    assert got.astype(np.float32)[0] == 1 + 2.0**-7


def test_f32_and_integer_targets_keep_their_behaviour():
    assert round_to(np.array([1e300, 0.1]), "f32").tolist() == [np.inf, np.float32(0.1)]
    assert round_to(np.array([-300.0, 2.5, 3.5, 300.0]), "i8").tolist() == [-128, 2, 4, 127]
    assert round_to(np.array([0, 2]), "i1").tolist() == [False, True]


# -- E8M0

def test_e8m0_from_exponent_builds_codes():
    e = np.arange(-140, 141)
    scales = e8m0_from_exponent(e)
    codes = scales.view(np.uint8).astype(np.int64)
    assert np.array_equal(codes[e <= 127], np.clip(e[e <= 127], -127, 127) + 127)
    assert np.all(codes[e > 127] == 0xFF)
    values = scales.astype(np.float32)
    inside = (e >= -127) & (e <= 127)
    assert np.array_equal(values[inside], np.ldexp(np.float32(1), e[inside]))
    # Exact powers of two agree with ml_dtypes' own conversion.
    powers = np.ldexp(np.float32(1), e[inside].astype(np.int32))
    assert np.array_equal(powers.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8), codes[inside])


def test_e8m0_special_inputs():
    got = e8m0_from_exponent(np.array([np.nan, np.inf, -np.inf, 3.0, -500.0])).view(np.uint8)
    assert got.tolist() == [0xFF, 0xFF, 0x00, 130, 0x00]
    assert e8m0_from_exponent(np.array([127, -128], np.int8)).view(np.uint8).tolist() == [254, 0]
    assert e8m0_from_exponent(np.uint8(200)).view(np.uint8) == 0xFF
    with pytest.raises(ValueError):
        e8m0_from_exponent(np.array([1.5]))
    with pytest.raises(TypeError):
        e8m0_from_exponent(np.array([True]))


# -- FP4 packing

@pytest.mark.parametrize("n", [1, 2, 7, 16, 33])
def test_pack_unpack_round_trip(n):
    rng = np.random.default_rng(n)
    codes = rng.integers(0, 16, (3, 2, n)).astype(np.uint8)
    values = codes.view(ml_dtypes.float4_e2m1fn)
    packed = pack_fp4(values)
    assert packed.dtype == np.uint8 and packed.shape == (3, 2, (n + 1) // 2)
    assert packed.nbytes == 6 * dtypes.get("f4E2M1FN").nbytes(n)
    assert np.array_equal(unpack_fp4(packed, n).view(np.uint8), codes)
    assert np.array_equal(packed & 0x0F, codes[..., 0::2])  # low nibble: even elements
    if n % 2:
        assert np.all(packed[..., -1] >> 4 == 0)  # the pad is +0


def test_pack_layout_and_errors():
    values = round_to(np.array([0.5, 1.0, -6.0]), "f4E2M1FN")
    assert pack_fp4(values).tolist() == [0x21, 0x0F]
    with pytest.raises(TypeError):
        pack_fp4(np.array([0.5], np.float32))
    with pytest.raises(ValueError):
        unpack_fp4(np.zeros(2, np.uint8), 5)
