"""Attribute names that one layer writes and a later one reads, each with its owner.

A pass records what a later pass or the runtime needs in the IR it hands on; these names (and
the readers of their formats) live here so that the reader imports neither the pass that wrote
the attribute nor anything above the core layer.
"""

from __future__ import annotations

from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, StringAttr
from xdsl.ir import Operation

# On a kernel argument the host fills by quantising a parameter: written by `cast`, read by the
# host (runtime/precision.py) and the sampled check.
HOST_ATTR = "zk.quantized_from"

# The useful FLOPs of a kernel's source-level matmuls by operand dtype ({dtype: i64}): written by
# `tile` on the `zk.kernel` (tiles compute padding too, so the lowered program overstates them),
# carried by `lower-ppu` onto the `ppu.kernel`, read by the cost model for achieved TFLOP/s.
USEFUL_FLOPS = "zk.flops"

# The tiles a grid runs ({tile, step?, directive?, directive_sizes?}): written by `tile` on each
# `tile.grid`, carried by `lower-ppu` onto its `ppu.launch`, read by reports and the cost model
# through `used_tiles`.
TILE_SIZES = "tile.sizes"


def used_tiles(grid: Operation) -> dict | None:
    """The tiles a `tile.grid` (or the `ppu.launch` lowered from it) runs, from its `tile.sizes`:
    {"sizes": result tile, "step": K tile or reduction chunk (None without a loop),
    "directive": the binding whose `tile` directive gave them (None: chosen by the compiler),
    "directive_sizes": that directive's sizes as written}."""
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
            "directive_sizes": list(asked.get_values()) if asked is not None else None}
