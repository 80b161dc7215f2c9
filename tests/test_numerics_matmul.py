"""Matmul helpers: exact float32 upcast, and the FP8 tensor-core accumulation emulation."""

from __future__ import annotations

import numpy as np
import pytest
from zhenwu_cc.runtime.numerics import matmul_f32, matmul_fp8_accumulate, round_to


def fp8(shape, seed: int, name: str = "f8E4M3FN") -> np.ndarray:
    return round_to(np.random.default_rng(seed).standard_normal(shape), name)


def exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in float64: exact for E4M3 operands and these sizes."""
    return np.matmul(*(m.astype(np.float32).astype(np.float64) for m in (a, b)))


def test_matmul_f32_upcasts_exactly():
    a, b = fp8((8, 64), 0), fp8((64, 4), 1)
    got = matmul_f32(a, b)
    assert got.dtype == np.float32
    assert np.allclose(got, exact(a, b), rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="float32"):
        matmul_f32(np.ones((2, 2)), np.ones((2, 2), np.float32))


def test_wide_accumulator_is_plain_float32_matmul():
    a, b = fp8((2, 16, 300), 2), fp8((300, 24), 3)
    wide = matmul_fp8_accumulate(a, b, mantissa_bits=52)
    assert wide.dtype == np.float32 and wide.shape == (2, 16, 24)
    assert np.allclose(wide, matmul_f32(a, b), rtol=1e-5, atol=1e-5)
    # One chunk and an exact accumulator: the exact product rounded once to float32.
    one_chunk = matmul_fp8_accumulate(a, b, chunk=300, mantissa_bits=52)
    assert np.array_equal(one_chunk, exact(a, b).astype(np.float32))
    # Small integers: every partial sum is exact, so all paths agree bit for bit.
    ints_a = round_to(np.random.default_rng(4).integers(-4, 5, (8, 256)), "f8E4M3FN")
    ints_b = round_to(np.random.default_rng(5).integers(-4, 5, (256, 8)), "f8E4M3FN")
    assert np.array_equal(matmul_fp8_accumulate(ints_a, ints_b), matmul_f32(ints_a, ints_b))


def test_error_grows_as_mantissa_bits_shrink():
    a, b = fp8((64, 512), 6), np.abs(fp8((512, 64), 7))
    ref = exact(a, b)
    def error(**kwargs) -> float:
        return np.linalg.norm(matmul_fp8_accumulate(a, b, **kwargs) - ref) / np.linalg.norm(ref)

    errors = [error(mantissa_bits=m) for m in (23, 13, 8, 4)]
    assert errors == sorted(errors) and errors[0] < 1e-6 < errors[1] < 1e-2 < errors[3]
    # Truncation biases toward zero; nearest-even rounding is more accurate.
    assert error(mantissa_bits=8, rounding="even") < error(mantissa_bits=8)


def test_chunk_boundary_promotes_the_running_sum():
    # 128 * 128 = 2**14, then ones: at 13 mantissa bits 2**14 + 1 is cut back to 2**14, so the
    # ones vanish until a new chunk starts its running sum at 0.
    a = round_to(np.r_[128.0, np.ones(255)][None, :], "f8E4M3FN")
    b = round_to(np.r_[128.0, np.ones(255)][:, None], "f8E4M3FN")
    assert matmul_fp8_accumulate(a, b, chunk=256)[0, 0] == 2**14
    assert matmul_fp8_accumulate(a, b, chunk=128)[0, 0] == 2**14 + 128
    assert matmul_fp8_accumulate(a, b, chunk=64)[0, 0] == 2**14 + 192
    assert matmul_fp8_accumulate(a, b, chunk=128, mantissa_bits=14)[0, 0] == 2**14 + 255
    assert matmul_f32(a, b)[0, 0] == 2**14 + 255
    # One MMA instruction sums its k products before the cut (the ulp at 2**14 is 2): the first
    # gives 2**14 + 31 -> 2**14 + 30, the next seven add 32 each.
    assert matmul_fp8_accumulate(a, b, chunk=256, mma_k=32)[0, 0] == 2**14 + 30 + 7 * 32


@pytest.mark.parametrize("sign", [1, -1])
def test_accumulator_rounding_modes_at_ties(sign):
    # At 13 bits the ulp at 2**14 is 2. One product at a time: 2**14 + 1 is a tie, and both
    # modes keep 2**14. Four at a time: 2**14 + 3 lies between 2**14 + 2 (odd last bit) and
    # 2**14 + 4 (even): truncation gives the first, nearest-even the second.
    a = round_to(np.array([[sign * 128.0, sign, sign, sign]]), "f8E4M3FN")
    b = round_to(np.array([[128.0], [1], [1], [1]]), "f8E4M3FN")
    for mode in ("zero", "even"):
        assert matmul_fp8_accumulate(a, b, rounding=mode)[0, 0] == sign * 2**14
    assert matmul_fp8_accumulate(a, b, mma_k=4)[0, 0] == sign * (2**14 + 2)
    assert matmul_fp8_accumulate(a, b, mma_k=4, rounding="even")[0, 0] == sign * (2**14 + 4)


def test_accumulator_keeps_nan_and_inf():
    a = np.array([[np.nan, 1], [np.inf, 1]], np.float32)
    b = np.ones((2, 1), np.float32)
    for mode in ("zero", "even"):
        got = matmul_fp8_accumulate(a, b, mantissa_bits=1, rounding=mode)
        assert np.isnan(got[0, 0]) and got[1, 0] == np.inf


def test_partial_last_chunk_and_broadcast_batches():
    a, b = fp8((3, 1, 5, 200), 8), fp8((2, 200, 7), 9)
    got = matmul_fp8_accumulate(a, b, chunk=64)
    assert got.shape == (3, 2, 5, 7)
    for i in range(3):
        for j in range(2):
            assert np.array_equal(got[i, j], matmul_fp8_accumulate(a[i, 0], b[j], chunk=64))
    assert np.allclose(got, exact(a, b), rtol=1e-2, atol=1e-2)


def test_rejects_bad_arguments():
    a, b = fp8((4, 8), 10), fp8((8, 4), 11)
    for kwargs in ({"chunk": 0}, {"chunk": 128, "mma_k": 3}, {"mantissa_bits": 60},
                   {"mantissa_bits": 0}, {"rounding": "up"}):
        with pytest.raises(ValueError):
            matmul_fp8_accumulate(a, b, **kwargs)
    with pytest.raises(ValueError):
        matmul_fp8_accumulate(a, fp8((7, 4), 12))
    with pytest.raises(TypeError):
        matmul_fp8_accumulate(a.astype(np.float64), b)
