"""What tile of a value a consumer needs: `Req` and how it maps through broadcasts,
transposes and matmul operands (the `tile` pass's tile requests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.ir import SSAValue
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import tile, zk


def shape_of(v: SSAValue) -> tuple[int, ...]:
    return tuple(v.type.get_shape())


def reduces_last_axis(op: zk.ReduceOp) -> bool:
    """A reduction over its input's last axis alone, the axis kept (a row statistic that
    online softmax can carry: tiling.flash, tiling.epilogue)."""
    return (op.keepdims is not None
            and tuple(op.axis_list) == (len(shape_of(op.input)) - 1,))


def dtype_of(v: SSAValue) -> dtypes.DType:
    return dtypes.from_xdsl(v.type.element_type)


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class Req:
    """A tile of a value: index, size, window (base, bound) per dimension, and the padding
    its consumer needs outside the window (0 for matmul operands, the identity for reductions)."""

    idx: tuple[SSAValue, ...]
    sizes: tuple[int, ...]
    base: tuple[int, ...]
    bound: tuple[int, ...]
    pad: float = 0.0

    def key(self) -> tuple:
        return (tuple(id(i) for i in self.idx), self.sizes, self.base, self.bound, self.pad)

    def ragged(self, d: int) -> bool:
        """Whether tiles along dim d overhang the window (edge tiles hold padding)."""
        return self.bound[d] % self.sizes[d] != 0


def operand_req(req: Req, out_shape: Sequence[int], in_shape: Sequence[int], pad: float,
                 zero: SSAValue) -> Req:
    """numpy broadcasting, in reverse: the tile of an operand that the output tile needs."""
    lead = len(out_shape) - len(in_shape)
    idx, sizes, base, bound = [], [], [], []
    for d, extent in enumerate(in_shape):
        o = d + lead
        if extent == 1 and out_shape[o] != 1:
            idx.append(zero), sizes.append(1), base.append(0), bound.append(1)
        else:
            idx.append(req.idx[o]), sizes.append(req.sizes[o])
            base.append(req.base[o]), bound.append(req.bound[o])
    return Req(tuple(idx), tuple(sizes), tuple(base), tuple(bound), pad)


def unpadded(req: Req) -> Req:
    """The request without padding when no tile reaches an edge (padding is then moot)."""
    if req.pad and not any(req.ragged(d) for d in range(len(req.sizes))):
        return Req(req.idx, req.sizes, req.base, req.bound)
    return req


def transposed_req(req: Req, perm: Sequence[int]) -> Req:
    """The request on a transpose's input that gives the tile `req` of its result."""
    inv = [perm.index(d) for d in range(len(perm))]
    return Req(*(tuple(f[inv[d]] for d in range(len(perm)))
                 for f in (req.idx, req.sizes, req.base, req.bound)), req.pad)


def matmul_operand_req(req: Req, out_shape, in_shape, k_idx: SSAValue, tk: int, side: str,
                        zero: SSAValue) -> Req:
    """The operand tile for output tile `req` at K step `k_idx` (batch dims broadcast)."""
    rank = len(in_shape)
    batch_out = len(out_shape) - 2
    idx, sizes, base, bound = [], [], [], []
    for d in range(rank - 2):
        o = batch_out - (rank - 2) + d
        if in_shape[d] == 1 and out_shape[o] != 1:
            idx.append(zero), sizes.append(1)
        else:
            idx.append(req.idx[o]), sizes.append(1)
        base.append(0), bound.append(in_shape[d])
    m_idx, n_idx = req.idx[-2], req.idx[-1]
    tm, tn = req.sizes[-2], req.sizes[-1]
    if side == "lhs":
        idx += [m_idx, k_idx]
        sizes += [tm, tk]
    else:
        idx += [k_idx, n_idx]
        sizes += [tk, tn]
    base += [0, 0]
    bound += [in_shape[-2], in_shape[-1]]
    return Req(tuple(idx), tuple(sizes), tuple(base), tuple(bound), 0.0)


def zero_padded(t: SSAValue) -> bool:
    """Tiles whose padding is certainly zero: loads with pad 0, and their transposes/casts."""
    op = t.owner
    while isinstance(op, (zk.TransposeOp, zk.CastOp)):
        op = op.input.owner
    return isinstance(op, tile.LoadOp) and op.pad_value == 0.0
