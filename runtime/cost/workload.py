"""What a lowered kernel asks of the machine, as plain data: the cost model's input.

`workload_of(ppu_module)` (in `extract.py`) reads a `ppu` program and produces a `Workload`; the
cost model (`model.py`) turns a `Workload` and a `Target` into time. Keeping this contract as
data lets the model be tested and calibrated on its own, and keeps it free of IR details.

Amounts are totals over the whole phase (every tile, every step, edge tiles counted exactly);
`tiles` and `steps` say how the phase is spread over the compute units and pipelined.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENGINES = ("dma", "tensor", "vector")
# Start-up: the classes below generate __init__ and __eq__ only (fast_cost compares a mapped
# workload with its template's; nothing prints or hashes one): each generated method is
# compiled at every `cost`.


@dataclass(repr=False)
class Work:
    """One kind of work from one source op, summed over a phase.

    kind:   "load" | "store"      bytes moved between HBM (or L2) and SRAM, `tensor` names which
            "mma"                 tensor-engine FLOPs (2 per multiply-add); `dtype` = operand dtype
            "vector"              vector-engine element operations; `dtype` = compute dtype
            "transcendental"      exp / log / erf / tanh / rsqrt ... element operations
            "quantize"            elements scaled and cast to a low-precision format (vector engine)
    where:  "body" (every step), "prologue" (once per tile, before the steps) or "epilogue"
            (once per tile, after the steps).
    """

    kind: str
    amount: int
    where: str = "body"
    dtype: str = ""
    tensor: str = ""
    loc: str = ""  # "file:line:col" of the .zk source op this work comes from
    op: str = ""  # the ppu op name, e.g. "ppu.mma"


@dataclass(repr=False)
class TileSizes:
    """The tiles a phase runs, as the `tile` pass chose them: the result tile, the step of its
    loop (a matmul's K tile, a reduction's chunk; None without one), and the binding whose
    schedule `tile` directive gave them with its sizes as written (None: the compiler chose)."""

    sizes: tuple[int, ...]
    step: int | None = None
    directive: str | None = None
    directive_sizes: tuple[int, ...] | None = None
    parts: int = 1  # a split-K matmul's or split reduction's parts (its leading grid dimension)
    split: str | None = None  # the binding whose `split NAME S` gave the parts (None: the compiler)

    def to_dict(self) -> dict:
        return {"sizes": list(self.sizes), "step": self.step, "directive": self.directive,
                "directive_sizes": (list(self.directive_sizes)
                                    if self.directive_sizes is not None else None),
                "parts": self.parts, "split": self.split}


@dataclass(repr=False)
class Phase:
    """One grid of tiles run over the compute units; phases run one after another."""

    name: str
    tiles: int  # independent work items (output tiles x split-K parts)
    steps: int  # pipelined steps per tile (the reduction loop), >= 1
    buffers: int  # multi-buffering depth: how many steps' loads may be in flight
    sram_bytes: int  # peak SRAM one compute unit uses
    work: tuple[Work, ...]
    # For L2 reuse: distinct bytes of each tensor this phase reads. Loads beyond these are
    # re-reads of tiles that other tiles (on other CUs) also read.
    unique_load_bytes: dict[str, int] = field(default_factory=dict)
    # For L2 reuse: the grid dims (of more than one point) along which each loaded tensor's
    # tiles are shared, i.e. which none of its loads' indices depend on.
    shared_dims: dict[str, tuple[int, ...]] = field(default_factory=dict)
    loc: str = ""
    tile: TileSizes | None = None  # None for programs the `tile` pass did not make
    # How far into a tile the next tile's prologue loads wait, because they load into a buffer
    # with one slot: "" (they run ahead into the next tile as the others), "loop" (this tile
    # reads the buffer until its loop ends: a flash grid's Q tile), "epilogue" (its epilogue
    # uses the same SRAM until its stores drain).
    reload_waits: str = ""


@dataclass(repr=False)
class Tensor:
    """A global tensor: where it lives decides the bandwidth its traffic gets."""

    name: str
    bytes: int
    role: str  # "input" | "output" | "intermediate"
    stacks: tuple[int, ...] = ()  # HBM stacks it is interleaved over; () = all
    l2_resident: bool = False  # pinned in L2 (`place NAME in l2`)


@dataclass(repr=False)
class Workload:
    """What a kernel asks of the chip: its phases and HBM tensors."""

    kernel: str
    phases: tuple[Phase, ...]
    tensors: dict[str, Tensor]
    flops_by_dtype: dict[str, int] = field(default_factory=dict)  # useful FLOPs, for TFLOP/s
