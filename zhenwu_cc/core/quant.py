"""The quantisation scheme (docs/precision.md): how each `precision ... scale MODE` holds its
scales. Pure arithmetic, shared by the `zk`, `tile` and `ppu` verifiers, the passes, the
reference evaluator and the executor."""

from __future__ import annotations

from collections.abc import Sequence

from zhenwu_cc.core.shapes import Shape, normalize_axis

# The dtype of the scales, the scale-rounding options a mode takes (the first is the default),
# and the elements per scale along the contraction axis for the modes that block along it.
# `unit` (a softmax's probabilities only) is one per-tensor scale fixed by the amax 1: the `cast`
# pass makes it a `tensor` quantisation of exp(x - max) with a constant amax.
SCALE_DTYPES = {"tensor": "f32", "channel": "f32", "block": "f32", "mx": "f8E8M0FNU",
                "nvfp4": "f8E4M3FN", "unit": "f32"}
SCALE_OPTIONS = {"mx": ("floor", "rceil"), "nvfp4": ("up", "rne")}
AXIS_GROUPS = {"mx": 32, "nvfp4": 16}
AMAX_MODES = ("tensor", "channel", "nvfp4")  # modes that need an amax over more than one tile
FP8_CHUNK = 128  # K elements an FP8 tensor core sums before promoting to f32 (`fp8_fast`)
# The formats a `precision` directive may store a value in, and those MX blocks may hold.
PRECISION_DTYPES = ("f8E4M3FN", "f8E5M2", "f4E2M1FN", "f16", "bf16")
MX_ELEMENTS = ("f8E4M3FN", "f8E5M2", "f4E2M1FN")


def scale_blocks(mode: str, args: Sequence[int], shape: Sequence[int],
                 axis: int | None) -> Shape:
    """Elements sharing one scale along each dimension of a tensor of `shape`.

    Scales are held with the tensor's rank, dimension d having ceil(shape[d] / blocks[d])
    entries: a per-tensor scale is [1, 1], a per-row (`channel(0)`) one [M, 1], `block(1, 128)`
    [M, K/128], `mx` along K [M, K/32]. The same layout serves every level of the IR."""
    rank = len(shape)
    if mode in ("tensor", "unit"):
        return tuple(shape)
    if mode == "channel":
        a = normalize_axis(args[0], rank)
        return tuple(1 if d == a else n for d, n in enumerate(shape))
    if mode == "block":
        return (1,) * (rank - 2) + tuple(args)
    assert axis is not None, f"scale mode {mode} blocks along an axis"
    return tuple(AXIS_GROUPS[mode] if d == axis else 1 for d in range(rank))


def scale_shape(shape: Sequence[int], blocks: Sequence[int]) -> Shape:
    return tuple(-(-n // b) for n, b in zip(shape, blocks))


def blocks_of(shape: Sequence[int], scales: Sequence[int]) -> Shape | None:
    """The elements per scale that a scale tensor of shape `scales` implies for values of
    `shape`, or None when no block size gives that many scales."""
    if len(shape) != len(scales) or any(s < 1 for s in scales):
        return None
    blocks = tuple(-(-n // s) for n, s in zip(shape, scales))
    return blocks if scale_shape(shape, blocks) == tuple(scales) else None
