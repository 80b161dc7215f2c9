"""What a run holds while it executes, and what helpers may ask of the interpreter running it.

The interpreter (run.py) keeps a `Launch` per running launch and a `Global` per tensor; the
loop merger (merge.py) drives the interpreter through the `Machine` protocol. Both import this
module, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.dialects import ppu
from zhenwu_cc.core.dtypes import DType
from zhenwu_cc.runtime.executor.buffers import Alloc
from zhenwu_cc.runtime.executor.products import Products


@dataclass
class Global:
    """A global tensor (or a view of one): its array, the root array it shares memory with, and
    which elements a store has written (None: all, as for inputs, or not tracked)."""

    array: np.ndarray
    root: np.ndarray
    mask: np.ndarray | None


@dataclass
class Launch:
    """What one launch keeps while it runs: per row block (rowblocks.py) its first grid index
    along each blocked axis and its allocations; for the whole launch the block views of its
    sources, the arrays of the last block's allocations, reused by the next (`spare`), the
    buffers of its stepped products (products.py), the stores that keep no written-mask and
    the vector ops that compute into a store's tiles."""

    rank: int
    names: dict[int, str]
    offsets: dict[int, int] = field(default_factory=dict)
    allocs: dict[ppu.AllocOp, Alloc] = field(default_factory=dict)
    spare: dict[ppu.AllocOp, list[np.ndarray | None]] = field(default_factory=dict)
    blocks: dict[int, dict[tuple, np.ndarray]] = field(default_factory=dict)  # by id(root)
    viewed: set[int] = field(default_factory=set)  # id(root) of sources SRAM may alias
    products: Products = field(default_factory=Products)  # stepped products' buffers
    # stores proven to write their whole tensor once (coverage.py): no written-mask kept
    unmasked: dict[ppu.DmaStoreOp, Global] = field(default_factory=dict)
    # vector ops computing into the tensor a store writes (forward.py), and the stores whose
    # tiles they have written in this row block
    forwards: dict[ppu.VMapOp, ppu.DmaStoreOp] = field(default_factory=dict)
    forwarded: set[ppu.DmaStoreOp] = field(default_factory=set)


class Machine(Protocol):
    """The interpreter as the loop merger uses it: its state, and running, loading, reading and
    writing with the interpreter's own checks."""

    env: dict[SSAValue, object]
    launch: Launch | None

    def run_op(self, op: Operation) -> None: ...

    def dtype(self, v: SSAValue) -> DType: ...

    def load_tiles(self, op: ppu.DmaLoadOp, naxes: int) -> np.ndarray: ...

    def read(self, v: SSAValue, op: Operation) -> np.ndarray: ...

    def read_owned(self, v: SSAValue, op: Operation) -> tuple[np.ndarray, bool]: ...

    def write(self, v: SSAValue, value: np.ndarray, owned: bool) -> None: ...
