"""Vector ops computed straight into the HBM tensor their result is stored to.

A row kernel's last vector op (the cast of its float32 result to bf16, say) writes an SRAM
buffer that a `ppu.dma_store` then copies to HBM: on the host, one more pass over the output.
Where the IR shows that the copy can change nothing, the executor computes the op into the
store's tiles of the tensor itself, and the store only checks and records:

- the store is one of `coverage.unmasked_stores` (it writes its whole tensor once, the launch
  loads nothing of that tensor, so no SRAM buffer sees its bytes), and both ops sit directly in
  the launch's body (each runs once per grid point);
- the op's destination is a single-slot buffer, and from the op to the store nothing writes that
  buffer (its other uses are inputs of vector ops and reductions) and nothing else stores to
  the tensor.

Only ops whose bits do not depend on how numpy walks the memory qualify (the executor checks at
run time: plain casts and the operations rounded once, into a C-contiguous view, compute.py).
"""

from __future__ import annotations

from xdsl.ir import Operation, SSAValue
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor.coverage import unmasked_stores


def forwarded(launch: ppu.LaunchOp) -> dict[ppu.VMapOp, ppu.DmaStoreOp]:
    """The vector ops of `launch` that may compute into the tensor a later store writes."""
    ops = list(launch.body.block.ops)
    found: dict[ppu.VMapOp, ppu.DmaStoreOp] = {}
    for store in unmasked_stores(launch):
        buffer = store.source
        if not (isinstance(buffer.owner, ppu.AllocOp) and buffer.owner.slots == 1):
            continue
        at = ops.index(store)
        writer = next((op for op in reversed(ops[:at]) if _writes(op, buffer)), None)
        if (isinstance(writer, ppu.VMapOp) and writer.out is buffer
                and not any(isinstance(op, ppu.DmaStoreOp) and op.dest is store.dest
                            for between in ops[ops.index(writer) + 1:at]
                            for op in between.walk())):
            found[writer] = store
    return found


def _writes(op: Operation, buffer: SSAValue) -> bool:
    """Whether `op` (or an op inside it) may write `buffer`: any use other than as a vector
    op's or a reduction's input, or a store's source."""
    return any(not _reads(inner, buffer) for inner in op.walk() if buffer in inner.operands)


def _reads(op: Operation, buffer: SSAValue) -> bool:
    if isinstance(op, ppu.VMapOp):
        return op.out is not buffer
    if isinstance(op, ppu.VReduceOp):
        return op.input is buffer and op.out is not buffer
    return isinstance(op, ppu.DmaStoreOp) and op.source is buffer and op.dest is not buffer
