"""What a `precision` directive does to numbers: quantise and dequantise by scale mode.

One module serves the host (which quantises a kernel's low-precision parameters before a run),
the reference evaluator (`zk.quantize`, `zk.dequantize`) and the executor (tile-level
quantisation on the vector engine, scaled operands of the tensor engine). Every element and scale
comes from `runtime/numerics.py`; this module maps the IR's modes onto it and holds scales in
the IR's layout: with the values' rank, dimension d having ceil(n / block) entries
(`quant.scale_blocks`; numerics keeps a per-tensor scale as shape () and per-channel ones as (n,)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from zhenwu_cc.core import attrs, quant
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.dialects.precision import PrecisionAttr
from zhenwu_cc.runtime import numerics



@dataclass(frozen=True)
class Spec:
    """A precision directive as the numerics need it: element dtype, mode, its arguments, the
    scale-rounding option ("" for the default) and the blocked axis of `mx` / `nvfp4`."""

    dtype: DType
    mode: str
    args: tuple[int, ...] = ()
    option: str = ""
    axis: int | None = None

    @staticmethod
    def of(attr: PrecisionAttr, axis: int | None = None) -> Spec:
        return Spec(attr.element, attr.mode.data, attr.mode_args, attr.option.data, axis)

    def blocks(self, shape: Sequence[int]) -> tuple[int, ...]:
        return quant.scale_blocks(self.mode, self.args, shape, self.axis)

    def rounding(self) -> str:
        return self.option or quant.SCALE_OPTIONS[self.mode][0]


def quantize(x: np.ndarray, spec: Spec) -> list[np.ndarray]:
    """[values, scales] (+ the NVFP4 tensor scale), scales in the IR's layout, exactly as
    `numerics.quantize_*` makes them."""
    x = np.asarray(x)
    shape, d = x.shape, spec.dtype
    if spec.mode == "tensor":
        q = numerics.quantize_tensor(x, d)
    elif spec.mode == "channel":
        q = numerics.quantize_channel(x, d, axis=spec.args[0])
    elif spec.mode == "block":
        q = numerics.quantize_block(x, d, block=spec.args)
    elif spec.mode == "mx":
        q = numerics.quantize_mx(x, d, axis=spec.axis, scale_rounding=spec.rounding())
    elif spec.mode == "nvfp4":
        q = numerics.quantize_nvfp4(x, axis=spec.axis, scale_rounding=spec.rounding())
    else:
        raise ValueError(f"scale mode {spec.mode!r} does not quantise")
    out = [q.values, q.scales.reshape(quant.scale_shape(shape, spec.blocks(shape)))]
    if q.tensor_scale is not None:
        out.append(np.full((1,) * len(shape), q.tensor_scale, np.float32))
    return out


def expand(scales: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Scales repeated over their blocks to cover the trailing `shape` (leading axes, such as
    the executor's grid axes, broadcast)."""
    s = np.asarray(scales)
    lead = s.ndim - len(shape)
    for i, n in enumerate(shape):
        axis = lead + i
        block = -(-n // s.shape[axis])
        if block > 1:
            s = np.repeat(s, block, axis=axis)
        if s.shape[axis] != n:
            s = s.take(np.arange(n), axis=axis)
    return s


def dequantize(values: np.ndarray, scales: Sequence[np.ndarray], rank: int | None = None
               ) -> np.ndarray:
    """values x scales (each repeated over its blocks of the last `rank` axes), the exact
    product rounded once to float32: `numerics.dequantize` for any mode and tile.

    In float32 when that is the same thing: products of FP8/FP4 values and E8M0/E4M3 scales
    (at most 8 significant bits, inside float32's range down to its subnormals) are exact, and
    one float32 scale applied last rounds once, as IEEE multiplication does. Else in float64."""
    values = np.asarray(values)
    shape = values.shape[values.ndim - (values.ndim if rank is None else rank):]
    scales = [np.asarray(s) for s in scales]
    with np.errstate(over="ignore", invalid="ignore"):
        factors = scale_factors(values, scales, rank)
        if factors is not None:
            out = numerics.widen(values)  # a new array: scaled in place where shapes allow
            for f in factors:
                if np.broadcast_shapes(out.shape, f.shape) == out.shape:
                    np.multiply(out, f, out=out)
                else:
                    out = out * f
            return out
        exact = numerics.widen(values).astype(np.float64)
        for s in scales:
            exact = exact * expand(numerics.widen(s).astype(np.float64), shape)
        return exact.astype(np.float32)


def scale_factors(values: np.ndarray, scales: Sequence[np.ndarray], rank: int | None = None
                  ) -> list[np.ndarray] | None:
    """The float32 factors `dequantize` multiplies the widened one-byte `values` by, in its
    order (one-byte scales, then the float32 one), each expanded over its blocks of the last
    `rank` axes (an axis it has one entry of left to broadcast); None where it works in float64
    instead (wider values, several wider scales). The executor's kept operands
    (`executor.lowp.dequantize_factors`) multiply by the same factors, so get the same bits."""
    shape = values.shape[values.ndim - (values.ndim if rank is None else rank):]
    wide = [s for s in scales if s.dtype.itemsize > 1]
    if not (values.dtype.itemsize == 1 and len(wide) <= 1):
        return None
    factors = []
    for s in [*(s for s in scales if s.dtype.itemsize == 1), *wide]:
        f = numerics.widen(s)
        tile = f.shape[f.ndim - len(shape):]
        factors.append(expand(f, [n if t > 1 else 1 for n, t in zip(shape, tile)]))
    return factors


# ---- tiles (the executor's vector-engine quantisation) ------------------------------------------
def _rows(x: np.ndarray, factors: Sequence[int]) -> tuple[np.ndarray, tuple]:
    """Tiles [grid..., t...] as rows [groups, elements]: one row per scale group of `factors`
    elements per axis; and what `_unrows` needs to undo it."""
    rank = len(factors)
    lead = x.shape[: x.ndim - rank]
    counts = tuple(t // f for t, f in zip(x.shape[x.ndim - rank:], factors))
    split = x.reshape(lead + tuple(v for c, f in zip(counts, factors) for v in (c, f)))
    n = len(lead)
    order = (*range(n), *(n + 2 * i for i in range(rank)), *(n + 2 * i + 1 for i in range(rank)))
    rows = split.transpose(order).reshape(-1, math.prod(factors))
    return rows, (lead, counts, factors, order)


def _unrows(rows: np.ndarray, layout: tuple) -> np.ndarray:
    lead, counts, factors, order = layout
    grouped = rows.reshape(lead + counts + tuple(factors))
    back = np.argsort(order)
    return grouped.transpose(back).reshape(lead + tuple(c * f for c, f in zip(counts, factors)))


def quantize_tiles(x: np.ndarray, spec: Spec, scale_tile: Sequence[int], rank: int,
                   amax: np.ndarray | None = None) -> list[np.ndarray]:
    """Quantise tiles [grid..., t...] whose scale groups are whole inside each tile, into
    [values, scales] (+ the NVFP4 tensor scale), bit-exact with `quantize` on the whole tensor.

    `scale_tile` is the scale tile's shape (groups per tile axis). `amax`, broadcast against the
    scale tiles, carries the largest |x| of groups that span several tiles (tensor, channel) or
    NVFP4's finite global amax: it joins each group as one extra element, so numerics derives
    the scale from it without a second formula. Scales that depend only on `amax` keep its grid
    axes (a per-tensor scale is the same for every tile)."""
    d, n = spec.dtype, x.ndim - rank
    tile = x.shape[n:]
    if spec.mode == "mx":
        q = numerics.quantize_mx(x, d, axis=n + spec.axis, scale_rounding=spec.rounding())
        return [q.values, q.scales]
    if spec.mode == "nvfp4":
        return _nvfp4_tiles(x, spec, n, amax)
    factors = tuple(t // s for t, s in zip(tile, scale_tile))
    rows, layout = _rows(x, factors)
    if amax is not None:
        grid_amax = np.broadcast_to(amax, x.shape[:n] + tuple(scale_tile))
        rows = np.concatenate([rows, grid_amax.reshape(-1, 1).astype(rows.dtype)], axis=1)
    q = numerics.quantize_block(rows, d, block=(1, rows.shape[1]))
    values = _unrows(q.values[:, : math.prod(factors)], layout)
    scales = q.scales.reshape(x.shape[:n] + tuple(scale_tile))
    if amax is not None:
        keep = tuple(slice(None) if a > 1 else slice(0, 1) for a in amax.shape[:n])
        scales = scales[keep]
    return [values, scales]


def _nvfp4_tiles(x: np.ndarray, spec: Spec, n: int, amax: np.ndarray | None
                 ) -> list[np.ndarray]:
    axis = n + spec.axis
    padded = x
    if amax is not None:  # one extra block holding the global amax sets the tensor scale
        extra = np.zeros(x.shape[:axis] + (quant.AXIS_GROUPS["nvfp4"],) + x.shape[axis + 1:],
                         x.dtype)
        extra[(slice(None),) * axis + (0,)] = np.max(amax).astype(x.dtype)
        padded = np.concatenate([x, extra], axis=axis)
    q = numerics.quantize_nvfp4(padded, axis=axis, scale_rounding=spec.rounding())
    length = x.shape[axis]
    groups = -(-length // quant.AXIS_GROUPS["nvfp4"])
    values = q.values.take(np.arange(length), axis=axis)
    scales = q.scales.take(np.arange(groups), axis=axis)
    return [values, scales, np.full((1,) * x.ndim, q.tensor_scale, np.float32)]


# ---- kernel inputs ------------------------------------------------------------------------------
def host_inputs(kernel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays a `cast` kernel (zk or ppu) takes, from the source program's inputs by
    parameter name: a parameter with a precision directive becomes its quantised values (and
    scales), as the host would store it in HBM before the launch; the rest pass through."""
    out: dict[str, np.ndarray] = {}
    made: dict[str, list[np.ndarray]] = {}
    args = kernel.body.block.args
    names = [a.name_hint or f"arg{i}" for i, a in enumerate(args)]
    for i, (name, arg) in enumerate(zip(names, args)):
        origin = kernel.arg_attr(i, attrs.QUANTIZED_FROM) if kernel.arg_attrs is not None else None
        if origin is None:
            if name in inputs:
                out[name] = inputs[name]
            continue
        param = origin.data["param"].data
        if param not in inputs:
            continue
        if param not in made:
            made[param] = host_quantize(inputs[param], origin)
        out[name] = made[param][origin.data["part"].value.data]
    return out


def host_quantize(x: np.ndarray, origin) -> list[np.ndarray]:
    """One parameter's stored parts as the `zk.quantized_from` attribute describes them: the
    values rounded into an f16/bf16 format, or quantised with scales."""
    p = origin.data["precision"]
    axis = origin.data.get("axis")
    x = np.asarray(x)
    if not p.scaled:
        return [numerics.round_to(x, p.element)]
    return quantize(x, Spec.of(p, axis.value.data if axis is not None else None))

