"""Static checks of a launch's SRAM plan: every buffer inside the SRAM, no two live ones sharing
bytes. They need no data, so the executor runs them before a launch touches any."""

from __future__ import annotations

import weakref

from xdsl.ir import Operation
from zhenwu_cc.dialects import ppu
from zhenwu_cc.dialects.loc import span_of

from zhenwu_cc.core.diagnostics import Note, error


def _name(op: ppu.AllocOp) -> str:
    return f"`%{op.result.name_hint}`" if op.result.name_hint else "a buffer"


def _ancestors(op: Operation) -> list[Operation]:
    out = []
    while (op := op.parent_op()) is not None:
        out.append(op)
    return out


def _live_range(alloc: ppu.AllocOp, launch: ppu.LaunchOp, pos: dict[Operation, int],
                end: dict[Operation, int]) -> tuple[int, int]:
    """Walk positions from the alloc to its last use; a use inside a loop that does not also
    hold the alloc keeps it live until that loop ends (the next step uses it again)."""
    holders = set(_ancestors(alloc))
    values = [alloc.result]
    for v in values:  # the buffer and its slots and views
        values += [u.operation.result for u in v.uses
                   if isinstance(u.operation, (ppu.SlotOp, ppu.ViewOp))]
    last = pos[alloc]
    for v in values:
        for use in v.uses:
            far = pos[use.operation]
            for q in _ancestors(use.operation):
                if q is launch:
                    break
                if isinstance(q, ppu.LoopOp) and q not in holders:
                    far = max(far, end[q])
            last = max(last, far)
    return pos[alloc], last


_PASSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # launch -> SRAM sizes


def check_allocations(launch: ppu.LaunchOp, sram_bytes: int | None) -> None:
    """ZK0611 for a buffer past `sram_bytes` (skipped when None), ZK0612 for live buffers whose
    byte ranges overlap. A launch that passed is not checked again for the same SRAM size (the
    checks read the IR alone; every run asks them)."""
    passed = _PASSED.setdefault(launch, set())
    if sram_bytes in passed:
        return
    _check(launch, sram_bytes)
    passed.add(sram_bytes)


def _check(launch: ppu.LaunchOp, sram_bytes: int | None) -> None:
    ops = list(launch.body.walk())
    pos = {op: i for i, op in enumerate(ops)}
    end = {}
    for op in reversed(ops):
        end[op] = max([pos[op], *(end[c] for r in op.regions for b in r.blocks for c in b.ops)])
    allocs = [op for op in ops if isinstance(op, ppu.AllocOp)]
    extent = {a: (a.byte_offset, a.byte_offset + a.nbytes) for a in allocs}  # read once
    for a in allocs:
        top = extent[a][1]
        if sram_bytes is not None and top > sram_bytes:
            raise error("ZK0611", f"{_name(a)} takes SRAM bytes [{a.byte_offset}, {top}), beyond "
                        f"the {sram_bytes} bytes of a compute unit's SRAM", span_of(a),
                        help="use smaller tiles or fewer buffers (schedule `tile`, `buffers`)")
    ranges = [(a, _live_range(a, launch, pos, end)) for a in allocs]
    for i, (a, (a0, a1)) in enumerate(ranges):
        for b, (b0, b1) in ranges[:i]:
            lo, hi = max(extent[a][0], extent[b][0]), min(extent[a][1], extent[b][1])
            if lo < hi and a0 <= b1 and b0 <= a1:
                raise error("ZK0612", f"{_name(a)} and {_name(b)} are live at the same time and "
                            f"share SRAM bytes [{lo}, {hi})", span_of(a),
                            notes=[Note(f"{_name(b)} is allocated here", span_of(b))],
                            help="the SRAM allocation of the lowered program is wrong; report "
                            "it with the IR (--emit ppu)")
