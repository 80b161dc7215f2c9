"""The names of the discardable attributes that carry facts between stages: one owner each.

A stage records what a later stage or the runtime needs in the IR it hands on; these names (and
the readers of their formats) live here, so that the reader imports neither the stage that wrote
the attribute nor anything above the core layer.

Schedule directives (the front end writes them, the passes read them; docs/language.md):"""

from __future__ import annotations

from xdsl.dialects.builtin import DenseArrayBase, DictionaryAttr, IntegerAttr, StringAttr, i64
from xdsl.ir import Operation

TILE = "zk.tile"  # `#zk.tile<...>` on the op a `tile` directive names
# `#zk.split<NAME, S>` from `split NAME S`: on the reduction or matmul NAME binds (`decompose` moves it
# from a composite onto the reductions it expands to)
SPLIT = "zk.split"
FUSE = "zk.fuse"  # `#zk.fuse<off>` from `fuse NAME off`, on the op NAME binds
PRECISION = "zk.precision"  # `#zk.precision<...>` on the op or kernel argument it names
PLACE = "zk.place"  # `#zk.place<...>` on the op or kernel argument it names
BUFFERS = "zk.buffers"  # on the kernel: SRAM buffering depth, 1..MAX_BUFFERS
ACCUMULATE = "zk.accumulate"  # on the kernel: the matmul accumulator type (dtypes.ACCUMULATORS)
ACCUMULATE_MODE = "zk.accumulate_mode"  # on the kernel: one of ACCUMULATE_MODES
MAX_BUFFERS = 8
ACCUMULATE_MODES = ("fp8_fast",)

# Facts a pass records for later stages and reports:
# The useful FLOPs of the source's matmuls by operand dtype ({dtype: i64}): written by `tile` on
# the `zk.kernel` (tiles compute padding too, so the lowered program overstates them), carried by
# `lower-ppu` onto the `ppu.kernel`, read by the cost model for achieved TFLOP/s.
FLOPS = "zk.flops"
# On a kernel argument the host fills by quantising a parameter: written by `cast`, read by the
# host (runtime/precision.py) and the sampled check.
QUANTIZED_FROM = "zk.quantized_from"
# The tiles a grid runs ({tile, step?, directive?, directive_sizes?, parts?, split?}): written by `tile` on each
# `tile.grid`, carried by `lower-ppu` onto its `ppu.launch`, read through `used_tiles`.
TILE_SIZES = "tile.sizes"
HBM = "ppu.hbm"  # `#ppu.hbm<...>` (place-hbm) on arguments and tile.empty / ppu.global
# On a `tile.loop` (carried by `lower-ppu` onto its `ppu.loop`): the steps that run at each value
# of one grid index, {dim: i64, lo: array<i64>, hi: array<i64>}: at grid index `dim` = r only
# steps lo[r] <= k < hi[r] run, the others leave the loop's state unchanged (tiles a mask
# wholly hides: docs/language.md, "Flash attention"). Read through `live_steps`.
LIVE_STEPS = "loop.live_steps"
# On a flash grid's `zk.constant` that starts its loop's accumulator: `cse` may then not replace
# the zero fill that starts a key/value step's scores with it where both have one shape (BD ==
# BKV), which would keep that fill live across the loop in an SRAM buffer of its own.
LOOP_INIT = "loop.init"
# On a `ppu.kernel`: the target (name or file) `lower-ppu` lowered it for; the executor checks
# the kernel's SRAM plan against that target's SRAM (ZK0611).
TARGET = "ppu.target"

# The SRAM placement contract between alloc-sram (writes) and lower-ppu (reads), on tile values:
SRAM_BUFFER = "sram.buffer"  # which of the grid's buffers
SRAM_OFFSET = "sram.offset"  # byte offset in the CU's SRAM
SRAM_DEPTH = "sram.depth"  # slots (multi-buffering)
SRAM_PLACEMENT = (SRAM_BUFFER, SRAM_OFFSET, SRAM_DEPTH)
SRAM_PEAK = "sram.peak"  # on a tile.grid: its peak SRAM bytes


def used_tiles(grid: Operation) -> dict | None:
    """The tiles a `tile.grid` (or the `ppu.launch` lowered from it) runs, from its `tile.sizes`:
    {"sizes": result tile, "step": K tile or reduction chunk (None without a loop),
    "directive": the binding whose `tile` directive gave them (None: chosen by the compiler),
    "directive_sizes": that directive's sizes as written, "parts": how many parts a split-K
    matmul or split reduction cuts its loop into (1: not split), "split": the binding whose
    `split NAME S` directive gave the parts (None: the compiler chose)}; a flash-attention grid
    sized by two directives that agree adds "agreeing" and "agreeing_sizes" for the second."""
    attr = grid.attributes.get(TILE_SIZES)
    if not isinstance(attr, DictionaryAttr):
        return None
    d = attr.data
    step = d.get("step")
    name = d.get("directive")
    asked = d.get("directive_sizes")
    return {"sizes": list(d["tile"].get_values()),
            "step": step.value.data if isinstance(step, IntegerAttr) else None,
            "directive": name.data if isinstance(name, StringAttr) else None,
            "directive_sizes": list(asked.get_values()) if asked is not None else None,
            "parts": d["parts"].value.data if isinstance(d.get("parts"), IntegerAttr) else 1,
            "split": d["split"].data if isinstance(d.get("split"), StringAttr) else None,
            **({"agreeing": d["agreeing"].data,
                "agreeing_sizes": list(d["agreeing_sizes"].get_values())}
               if isinstance(d.get("agreeing"), StringAttr) else {})}


def live_steps(loop: Operation) -> tuple[int, tuple[int, ...], tuple[int, ...]] | None:
    """A loop's `loop.live_steps` as (grid dim, lo, hi), or None: every step runs everywhere."""
    attr = loop.attributes.get(LIVE_STEPS)
    if not isinstance(attr, DictionaryAttr):
        return None
    d = attr.data
    return (d["dim"].value.data, tuple(d["lo"].get_values()), tuple(d["hi"].get_values()))


def live_steps_attr(dim: int, lo, hi) -> DictionaryAttr:
    return DictionaryAttr({"dim": IntegerAttr(dim, 64),
                           "lo": DenseArrayBase.from_list(i64, list(lo)),
                           "hi": DenseArrayBase.from_list(i64, list(hi))})


def check_live_steps(loop: Operation, grid_kind: type, trips: int) -> str | None:
    """What is wrong with a loop's `loop.live_steps` (its enclosing `grid_kind` op, a tile.grid
    or ppu.launch, gives the grid), or None."""
    attr = loop.attributes.get(LIVE_STEPS)
    if attr is None:
        return None
    grid = loop.parent_op()
    while grid is not None and not isinstance(grid, grid_kind):
        grid = grid.parent_op()
    if grid is None:
        return f"`{LIVE_STEPS}` needs an enclosing {grid_kind.name}"
    grid_shape = grid.grid_shape
    d = attr.data if isinstance(attr, DictionaryAttr) else {}
    try:
        dim, lo, hi = live_steps(loop)
    except (KeyError, AttributeError):
        return f"`{LIVE_STEPS}` must be {{dim, lo, hi}}"
    if not 0 <= dim < len(grid_shape) or set(d) != {"dim", "lo", "hi"}:
        return f"`{LIVE_STEPS}` names grid dimension {dim} of {len(grid_shape)}"
    if len(lo) != grid_shape[dim] or len(hi) != grid_shape[dim]:
        return f"`{LIVE_STEPS}` needs {grid_shape[dim]} bounds, one per grid index"
    if not all(0 <= a <= b <= trips for a, b in zip(lo, hi)):
        return f"`{LIVE_STEPS}` bounds must satisfy 0 <= lo <= hi <= {trips}"
    return None
