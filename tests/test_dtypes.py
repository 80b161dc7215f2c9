"""The element-type table (`zhenwu_cc/core/dtypes.py`) against ml_dtypes / numpy: ranges, special
values, storage, the xDSL spellings, and the widening table, checked exhaustively on every value
of each format of 16 bits or fewer."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
from xdsl.dialects.builtin import f64
from zhenwu_cc.core import dtypes

ALL = list(dtypes.DTYPES.values())
NAMES = list(dtypes.DTYPES)
FLOATS = [d for d in ALL if d.is_float]
PAIRS = [(a, b) for a, b in itertools.product(ALL, ALL) if a != b]


def _every_value(d: dtypes.DType) -> np.ndarray:
    """All values of a float format of 16 bits or fewer, as float64 (f4 uses 4 of its byte)."""
    if d.bits == 4:
        raw = np.arange(16, dtype=np.uint8)
    else:
        raw = np.arange(2**d.bits, dtype=np.uint8 if d.bits == 8 else np.uint16)
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        return raw.view(d.np_dtype).astype(np.float64)


def _float_values(d: dtypes.DType) -> np.ndarray:
    """Every value of `d`; for f32, every value of the narrower formats and 1 + 2**-23, which
    none of them holds (so f32 widening to one of them would show)."""
    if d.bits <= 16:
        return _every_value(d)
    narrower = [_every_value(x) for x in FLOATS if x.bits <= 16]
    with np.errstate(invalid="ignore"):
        return np.concatenate([*narrower, [1.0 + 2.0**-23]]).astype(np.float32).astype(np.float64)


def _holds_exactly(values: np.ndarray, d: dtypes.DType) -> bool:
    """Whether `d` holds each of `values` exactly (NaN as NaN, infinities as themselves)."""
    with np.errstate(over="ignore", invalid="ignore"):
        back = values.astype(d.np_dtype).astype(np.float64)
    return bool(np.array_equal(back, values, equal_nan=True))


def _int_range(d: dtypes.DType) -> tuple[int, int]:
    if d.kind == "bool":
        return 0, 1
    info = np.iinfo(d.np_dtype)
    return int(info.min), int(info.max)


# ---- the table itself ------------------------------------------------------------------------------
def test_names_and_lookup():
    assert NAMES == [d.name for d in ALL] and len(set(NAMES)) == len(NAMES)
    assert all(dtypes.get(d.name) is d for d in ALL)
    assert (dtypes.F32, dtypes.I1, dtypes.I32) == (dtypes.get("f32"), dtypes.get("i1"),
                                                    dtypes.get("i32"))
    with pytest.raises(KeyError):
        dtypes.get("f64")


@pytest.mark.parametrize("d", FLOATS, ids=str)
def test_float_ranges_and_bits_are_ml_dtypes(d):
    info = ml_dtypes.finfo(d.np_dtype)
    assert (d.finite_max, d.finite_min) == (float(info.max), float(info.min))
    assert d.bits == info.bits


@pytest.mark.parametrize("d", [d for d in ALL if not d.is_float], ids=str)
def test_integer_ranges_and_bits_are_numpy(d):
    assert (d.finite_min, d.finite_max) == _int_range(d)
    assert d.is_int and not d.is_float and not d.is_low_precision
    if d.kind == "bool":
        assert d.np_dtype == np.bool_ and d.bits == 1
    else:
        assert d.bits == np.iinfo(d.np_dtype).bits


@pytest.mark.parametrize("d", FLOATS, ids=str)
def test_special_values_are_ml_dtypes(d):
    with np.errstate(over="ignore", invalid="ignore"):
        specials = np.array([np.inf, np.nan]).astype(d.np_dtype).astype(np.float64)
    assert d.has_inf == bool(np.isinf(specials[0]))
    assert d.has_nan == bool(np.isnan(specials[1]))


def test_integers_have_no_special_values():
    assert not any(d.has_inf or d.has_nan for d in ALL if not d.is_float)


def test_low_precision_formats():
    assert {d.name for d in ALL if d.is_low_precision} == {
        "f8E4M3FN", "f8E5M2", "f4E2M1FN", "f8E8M0FNU"}


@pytest.mark.parametrize("d", ALL, ids=str)
def test_packed_storage(d):
    """nbytes is the packed size: two f4 values a byte, one byte an i1, else the numpy size."""
    if d.name == "f4E2M1FN":
        assert [d.nbytes(n) for n in (0, 1, 2, 3, 4, 1001)] == [0, 1, 1, 2, 2, 501]
        assert d.np_dtype.itemsize == 1  # held in a whole byte on the host
    else:
        assert [d.nbytes(n) for n in (0, 1, 3, 1001)] == [
            n * d.np_dtype.itemsize for n in (0, 1, 3, 1001)]


# ---- xDSL spellings ----------------------------------------------------------------------------
@pytest.mark.parametrize("d", ALL, ids=str)
def test_xdsl_types_round_trip_and_print_as_the_name(d):
    t = dtypes.to_xdsl(d)
    assert dtypes.from_xdsl(t) is d
    assert str(t) == d.name


def test_xdsl_types_are_distinct_and_unknown_ones_raise():
    assert len({dtypes.to_xdsl(d) for d in ALL}) == len(ALL)
    with pytest.raises(KeyError):
        dtypes.from_xdsl(f64)


# ---- widening and promotion ----------------------------------------------------------------------
@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_widening_is_exactly_value_preservation(a, b):
    """a widens to b if and only if b holds every value of a; never across floats and integers."""
    if a.is_float != b.is_float:
        assert not dtypes.widens_to(a, b)
    elif a.is_float:
        assert dtypes.widens_to(a, b) == _holds_exactly(_float_values(a), b)
    else:
        (alo, ahi), (blo, bhi) = _int_range(a), _int_range(b)
        assert dtypes.widens_to(a, b) == (blo <= alo and ahi <= bhi)


@pytest.mark.parametrize("d", ALL, ids=str)
def test_every_type_widens_to_itself(d):
    assert dtypes.widens_to(d, d) and dtypes.promote(d, d) is d


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_promote_is_the_one_that_holds_the_other(a, b):
    p = dtypes.promote(a, b)
    assert p is dtypes.promote(b, a)
    if p is None:
        assert not dtypes.widens_to(a, b) and not dtypes.widens_to(b, a)
    else:
        assert p in (a, b) and dtypes.widens_to(a, p) and dtypes.widens_to(b, p)


@pytest.mark.parametrize("a,b,want", [
    ("f8E4M3FN", "bf16", "bf16"), ("f4E2M1FN", "f8E5M2", "f8E5M2"), ("f16", "bf16", None),
    ("f8E4M3FN", "f8E5M2", None), ("f8E8M0FNU", "f16", None), ("i1", "ui8", "ui8"),
    ("i8", "ui8", None), ("i32", "f32", None), ("ui8", "i64", "i64"),
])
def test_promote_examples(a, b, want):
    p = dtypes.promote(dtypes.get(a), dtypes.get(b))
    assert (p.name if p else None) == want


def test_accumulators():
    got = {d.name: dtypes.accumulator_for(d).name for d in ALL}
    assert got == {**{d.name: "f32" for d in FLOATS}, "i1": "i32", "i8": "i32", "ui8": "i32",
                   "i32": "i32", "i64": "i64"}


@pytest.mark.parametrize("d", ALL, ids=NAMES)
def test_a_pickled_or_copied_dtype_is_the_table_instance(d):
    """Dtypes compare by identity (one instance each), so a copy must be that instance."""
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(d)) is d
    assert copy.deepcopy(d) is d and copy.copy(d) is d
    assert pickle.loads(pickle.dumps([d, d])) == [d, d]
