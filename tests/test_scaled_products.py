"""A stepped loop's scaled (FP8) products run with kept buffers (products.py) and give the bits
that dequantising anew gives (lowp.scaled_product)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from conftest import EXAMPLES

import zhenwu_cc
from zhenwu_cc.runtime import numerics
from zhenwu_cc.runtime.executor import window
from zhenwu_cc.runtime.executor.lowp import scaled_product
from zhenwu_cc.runtime.executor.products import Products
from zhenwu_cc.runtime.executor.run import Interpreter

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)


def _codes(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """FP8 tiles holding every code (both NaNs, +-448, subnormals, both zeros) among random
    ones, read-only as a loaded tile is."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=shape, dtype=np.uint8).reshape(-1)
    codes[:256] = np.arange(256, dtype=np.uint8)[rng.permutation(256)]
    x = codes.reshape(shape).view(E4M3)
    x.flags.writeable = False
    return x


def _bits(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x).tobytes()


@pytest.mark.parametrize("kind", ["f32", "e8m0", "none"])
def test_kept_scaled_product_has_the_bits_of_a_fresh_one(kind):
    """Grid [2, 3]: the lhs varies along axis 1 (its buffer is in its own layout), the rhs along
    axis 0 (its buffer is transposed: widened through the scratch buffer). The lhs is the same
    read-only tile every step (converted once) until its scale changes; one step runs on rows
    [1, 3) of axis 1 (window.py's narrowing)."""
    lhs = _codes((1, 3, 16, 32), 1)
    rhs = [_codes((2, 1, 32, 8), 2 + step) for step in range(4)]

    def scales(step: int, side: int) -> list[np.ndarray]:
        """lhs (side 0): one value for two steps, then another; rhs: new each step."""
        if kind == "none":
            return []
        tensor = np.full((1, 1, 1, 1), [[1.0, 1.0, 2.0**-100, 2.0**-100],
                                        [1.0, 0.5, 2.0**-100, 3e38]][side][step], np.float32)
        if kind == "f32":
            return [tensor]
        # E8M0 per 16 of K (products reaching float32's subnormals and overflowing), then the
        # float32 tensor scale
        e = np.array([[-127, 120], [5 - step, -20]][side])
        block = numerics.e8m0_from_exponent(e).reshape([(1, 1, 1, 2), (1, 1, 2, 1)][side])
        return [block, tensor]

    products = Products()
    for step in range(4):
        ls, rs = scales(step, 0), scales(step, 1)
        with np.errstate(invalid="ignore"):  # NaN and Inf codes meet in the sums
            fresh = scaled_product(lhs, ls, rhs[step], rs, 2, 2, False)
            if step == 3:
                products.narrow = (1, 3, 1, 3)
                got = products.multiply("mma", lhs[:, 1:], rhs[step], 2, 2, ls, rs)
                fresh = fresh[:, 1:]
            else:
                got = products.multiply("mma", lhs, rhs[step], 2, 2, ls, rs)
        assert got.shape == fresh.shape
        assert _bits(got) == _bits(fresh), step
        assert np.isnan(fresh).any()


def test_a_read_only_fp8_operand_is_dequantised_once(monkeypatch):
    """FP8 attention's Q tile, loaded before the key/value loop, is widened for the first step
    only; P and K^T, computed every step, every step; V's tile, loaded every step, too."""
    k = zhenwu_cc.compile(EXAMPLES / "attention_fp8.zk", defines={"B": 1, "H": 2, "S": 256,
                                                                    "D": 64})
    inputs = k.inputs(seed=10)
    k.run(inputs)
    calls = []
    widen = numerics.widen

    def counted(x, out=None):
        if x.size > 1:
            calls.append(x.shape)
        return widen(x, out)

    monkeypatch.setattr(numerics, "widen", counted)
    k.run(inputs)
    steps = 256 // 64
    assert len(calls) == 3 * steps + 1, calls


CAUSAL_FP8 = ("schedule attention_causal {\n    precision q, k, v as f8E4M3FN scale tensor\n"
              "    precision p as f8E4M3FN scale unit")


@pytest.mark.parametrize("name, defines", [
    ("attention_fp8", {"B": 1, "H": 2, "S": 200, "D": 64}),
    ("attention_causal", {"B": 1, "H": 2, "S": 256, "D": 64}),
])
def test_kept_scaled_products_change_no_output_bit(monkeypatch, name, defines):
    """FP8 attention, and its causal form (whose partial steps now run narrowed), against
    products dequantised afresh every step with narrowing off."""
    src = (EXAMPLES / f"{name}.zk").read_text()
    if name == "attention_causal":
        src = src.replace("schedule attention_causal {", CAUSAL_FP8)
    k = zhenwu_cc.compile(src, defines=defines)
    inputs = k.inputs(seed=7)
    ranges = []
    run = window.Narrowed.run

    def counted(self, *args):
        ranges.append(args[5:7])
        return run(self, *args)

    monkeypatch.setattr(window.Narrowed, "run", counted)
    kept = {n: _bits(x) for n, x in k.run(inputs).items()}
    assert bool(ranges) == (name == "attention_causal")
    monkeypatch.setattr(Interpreter, "_kept", lambda self, op: False)
    monkeypatch.setattr(window.Narrowed, "run", lambda self, *args: False)
    assert {n: _bits(x) for n, x in k.run(inputs).items()} == kept
