"""Low-precision work of the executor: `ppu.vquantize` on the vector engine and the tensor
engine's scaled products (`ppu.mma` with scales, optionally with `fp8_fast` accumulation).

Arrays are `[grid..., tile...]` as everywhere in the executor (compute.py). Scales have
their operand's tile rank, one entry per block (runtime/precision.py), so a merged reduction loop
can concatenate them along K with the operands.

A scaled product dequantises each operand exactly (`precision.dequantize`: values x scales,
rounded once to float32, as `numerics.dequantize`) and multiplies in float32: the numbers of the
`cast` program's matmul of dequantised values, up to the float32 summation order.

`fp8_fast` emulates an FP8 tensor core whose accumulator keeps ~13 mantissa bits
(`numerics.matmul_fp8_accumulate`): products of the low-precision values are summed in that
accumulator and promoted to float32 every 128 elements of K, and at the end of each K step (a
shorter step promotes at its end). Scales in E8M0 or E4M3 (MX, NVFP4 blocks) multiply the values
before the products, as block-scaled MMAs do, exactly; float32 scales (tensor, channel, block,
NVFP4's tensor scale) multiply each promoted partial sum, as DeepSeek-V3 and DeepGEMM do; a
float32 scale whose block along K is shorter than a chunk promotes at each of its blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from zhenwu_cc.core.quant import FP8_CHUNK
from zhenwu_cc.runtime import numerics, precision
from zhenwu_cc.runtime.executor.compute import align, grid_matmul

FP8_MANTISSA_BITS = 13  # Hopper's FP8 accumulator, hardware-numerics §3.5


def _exact_scale(s: np.ndarray) -> bool:
    """Scales whose products with FP8/FP4 values are exact: E8M0 and E4M3 block scales."""
    return s.dtype != np.float32


def scaled_product(lhs: np.ndarray, lhs_scales: Sequence[np.ndarray], rhs: np.ndarray,
                   rhs_scales: Sequence[np.ndarray], r: int, rank: int, fast: bool
                   ) -> np.ndarray:
    """`(lhs x lhs_scales) @ (rhs x rhs_scales)` for grid-batched tiles, as float32 brought to
    the accumulator's tile `rank`: exact dequantisation and float32 sums, or with `fast` the
    FP8 tensor core's narrow accumulator (see the module docstring)."""
    a_rank, b_rank = lhs.ndim - r, rhs.ndim - r
    if not fast:
        a = precision.dequantize(lhs, lhs_scales, a_rank)
        b = precision.dequantize(rhs, rhs_scales, b_rank)
        return grid_matmul(align(a, r, rank), align(b, r, rank), np.dtype(np.float32))
    a_in = [s for s in lhs_scales if _exact_scale(s)]
    b_in = [s for s in rhs_scales if _exact_scale(s)]
    a_out = [s for s in lhs_scales if not _exact_scale(s)]
    b_out = [s for s in rhs_scales if not _exact_scale(s)]
    k = lhs.shape[-1]
    segment = math.gcd(k, *(_k_block(s, k, -1) for s in a_out),
                       *(_k_block(s, k, -2) for s in b_out))
    a = precision.dequantize(lhs, a_in, a_rank)
    b = precision.dequantize(rhs, b_in, b_rank)
    total = None
    for start in range(0, k, segment):
        part = numerics.matmul_fp8_accumulate(
            align(a[..., start:start + segment], r, rank),
            align(b[..., start:start + segment, :], r, rank),
            chunk=FP8_CHUNK, mantissa_bits=FP8_MANTISSA_BITS)
        for s in a_out:
            part = part * align(_row_scale(s, start, lhs.shape[r:], -1), r, rank)
        for s in b_out:
            part = part * align(_row_scale(s, start, rhs.shape[r:], -2), r, rank)
        total = part if total is None else total + part
    return total


def dequantize_factors(values: np.ndarray, scales: Sequence[np.ndarray], rank: int
                       ) -> list[np.ndarray] | None:
    """The float32 factors `precision.dequantize(values, scales, rank)` multiplies FP8/FP4
    codes by, in its order (`precision.scale_factors`); None where it takes another path
    (other values, several float32 scales) or a factor spans more than values."""
    if values.dtype.kind != "V":
        return None
    factors = precision.scale_factors(values, scales, rank)
    if factors is None or any(np.broadcast_shapes(values.shape, f.shape) != values.shape
                              for f in factors):
        return None
    return factors


def dequantize_into(values: np.ndarray, factors: Sequence[np.ndarray], into: np.ndarray
                    ) -> None:
    """`precision.dequantize` of `values` by its `dequantize_factors`, written into `into` (a
    float32 array of values' shape, any layout: a stepped product's kept operand buffer,
    products.py), the same bits: the codes widened exactly (by bit arithmetic where `into` is
    C-contiguous, else by numpy's conversion, the same values), then multiplied in place by
    each factor in float32."""
    if into.flags.c_contiguous:
        numerics.widen(values, into)
    else:
        np.copyto(into, values, casting="unsafe")
    with np.errstate(over="ignore", invalid="ignore"):
        for f in factors:
            np.multiply(into, f, out=into)


def _k_block(s: np.ndarray, k: int, axis: int) -> int:
    """Elements of K that share one entry of scale `s` (all of K for one entry)."""
    return -(-k // s.shape[axis])


def _row_scale(s: np.ndarray, start: int, tile: Sequence[int], axis: int) -> np.ndarray:
    """Scale `s` for the K segment starting at `start`, spread over the operand's other tile
    axes with K kept as 1: [grid..., m, 1] for the lhs (axis -1), [grid..., 1, n] for the rhs."""
    part = np.take(s, [start // _k_block(s, tile[axis], axis)], axis=axis).astype(np.float32)
    target = list(tile)
    target[axis] = 1
    return precision.expand(part, target)

