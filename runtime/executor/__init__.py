"""The executor: a `ppu` kernel run on numpy arrays as the PPU would run it (see run.py).

It imports the `ppu` dialect and the core layer only (never `zk`, `tile` or the reference
evaluator), one module an idea: run.py (the interpreter), state.py (what a run holds), dma.py,
index.py, buffers.py, compute.py, lowp.py, merge.py, sram.py, rowblocks.py (the blocks a launch
runs in), replay.py (a straight-line launch's later blocks replayed), dependence.py (what each
buffer varies along), memory.py (the host-memory estimate).
"""

from zhenwu_cc.runtime.executor.memory import estimate_host_bytes
from zhenwu_cc.runtime.executor.run import execute

__all__ = ["execute", "estimate_host_bytes"]
