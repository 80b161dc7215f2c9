"""Masks that skip work: which key/value blocks of a flash-attention grid a mask hides wholly.

A score tensor `x = where(cond, s, -inf)` whose `cond` is computed from `iota`s and constants
alone (causal `col <= row`, a sliding window, a prefix) is evaluated here at compile time, one
query block of rows at a time. A key/value block whose every score is -inf for every row of the
query block adds nothing to the online softmax (the running max, sum and accumulator come out
unchanged, bit for bit), so the loop skips it: per query block, the steps from the first block
with a visible score to the last (`loop.live_steps`). Blocks in between that are wholly masked
run anyway, correct but not skipped; partial blocks apply the mask as before. A `cond` read from
a tensor (a padding mask) is not known at compile time: every block runs."""

from __future__ import annotations

import functools
import operator

from xdsl.ir import Operation, SSAValue
from zhenwu_cc.dialects import zk
from zhenwu_cc.passes.tiling.requests import shape_of

_COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
            "eq": operator.eq, "ne": operator.ne}
_BINARY = {zk.AddOp: "add", zk.SubOp: "subtract", zk.MulOp: "multiply", zk.MaxOp: "maximum",
           zk.MinOp: "minimum"}  # numpy's names: numpy is imported only when a mask is seen
_OPAQUE = ("opaque",)  # a value `_evaluate` cannot compute at compile time


def live_blocks(x: SSAValue, bq: int, bkv: int
                ) -> tuple[list[int], list[int], float] | None:
    """Per query block of `bq` rows, the [lo, hi) key/value blocks of `bkv` columns holding a
    score the mask lets through, and the fraction of all scores it lets through; None when
    nothing can be skipped (or nothing is known)."""
    conds = _conditions(x)
    if not conds:
        return None
    live = _live_blocks(tuple(_expression(c) for c in conds), *shape_of(x)[-2:], bq, bkv)
    return None if live is None else (list(live[0]), list(live[1]), live[2])


# A tuner compiles one mask with many blocks, and each evaluation walks every score: results
# are kept by the conditions' expressions (plain data, not the IR), rows, columns and blocks.
@functools.lru_cache(maxsize=1024)
def _live_blocks(conds: tuple[tuple, ...], m: int, n: int, bq: int, bkv: int):
    """`live_blocks` of the conditions' expressions on scores of `m` rows and `n` columns (the
    lists as tuples)."""
    import numpy as np

    nb = -(-n // bkv)
    lo, hi = [], []
    seen = 0
    for r0 in range(0, m, bq):
        r1 = min(m, r0 + bq)
        visible = np.ones((r1 - r0, n), np.bool_)
        for cond in conds:
            value = _evaluate(cond, r0, r1, n)
            if value is None:
                return None
            visible &= np.broadcast_to(value.astype(np.bool_), visible.shape)
        seen += int(visible.sum())
        cols = np.zeros(nb * bkv, np.bool_)
        cols[:n] = visible.any(axis=0)
        live = np.flatnonzero(cols.reshape(nb, bkv).any(axis=1))
        lo.append(int(live[0]) if live.size else 0)
        hi.append(int(live[-1]) + 1 if live.size else 0)
    if all(a == 0 and b == nb for a, b in zip(lo, hi)):
        return None
    return tuple(lo), tuple(hi), seen / (m * n)


def _expression(v: SSAValue) -> tuple:
    """All that `_evaluate` reads of `v`, as plain data: (kind, shape, detail, operands), or
    `_OPAQUE` for a value not made of iotas, constants and integer arithmetic on them (or with
    a leading dimension other than 1)."""
    op = v.owner
    shape = shape_of(v)
    if not isinstance(op, Operation) or any(d != 1 for d in shape[:-2]):
        return _OPAQUE
    if isinstance(op, zk.ConstantOp):
        return _OPAQUE if shape else ("constant", shape, op.number, ())
    if isinstance(op, zk.IotaOp):
        return ("iota", shape, op.axis.value.data, ())
    if isinstance(op, zk.CompareOp):
        kind, detail = "compare", op.predicate.data
    elif isinstance(op, zk.SelectOp):
        kind, detail = "select", None
    elif type(op) in _BINARY:
        kind, detail = _BINARY[type(op)], None
    elif isinstance(op, zk.BroadcastOp):
        kind, detail = "broadcast", len(shape_of(op.input))
    else:
        return _OPAQUE
    return kind, shape, detail, tuple(_expression(o) for o in op.operands)


def _conditions(x: SSAValue) -> list[SSAValue]:
    """The conditions of `where(c1, where(c2, s, -inf), -inf)`: x is -inf unless all hold."""
    conds = []
    while isinstance(x.owner, zk.SelectOp):
        op = x.owner
        cond, yes, no = op.operands
        if not _is_minus_inf(no):
            break
        conds.append(cond)
        x = yes
    return conds


def _is_minus_inf(v: SSAValue) -> bool:
    op = v.owner
    return (isinstance(op, zk.ConstantOp) and not shape_of(v)
            and float(op.number) == float("-inf"))


def _evaluate(e: tuple, r0: int, r1: int, n: int):
    """The expression `e` (`_expression`) on rows r0..r1 and all n columns of its last two dims
    (a broadcastable array), or None when it is opaque."""
    import numpy as np

    if e == _OPAQUE:
        return None
    kind, shape, detail, operands = e
    if kind == "constant":
        return np.asarray(detail)
    if kind == "iota":
        axis = detail - len(shape)
        rows, cols = (shape[-2] if len(shape) > 1 else 1), shape[-1]
        if axis == -2 and rows > 1:
            return np.arange(r0, r1, dtype=np.int64)[:, None]
        if axis == -1 and cols > 1:
            return np.arange(n, dtype=np.int64)[None, :]
        return np.zeros((1, 1), np.int64)
    args = [_evaluate(o, r0, r1, n) for o in operands]
    if any(a is None for a in args):
        return None
    if kind == "compare":
        return _COMPARE[detail](*args)
    if kind == "select":
        return np.where(*args)
    if kind == "broadcast":
        return args[0] if detail >= 1 else None
    return getattr(np, kind)(*args)
