"""Flash attention in the `tile` pass: `softmax(S) @ V` with `S` computed per tile (a matmul and
its elementwise epilogue: scaling, masks, biases) becomes one grid over (batch..., query tiles,
value-column tiles) whose loop streams key/value tiles with a running max, a running sum and a
rescaled f32 accumulator (online softmax, the FlashAttention-2 dataflow): `S` and `P` never
reach HBM.

The match is on the dataflow `decompose` leaves for `softmax` followed by a matmul, never on a
kernel's name: `o = cast*(e / sum(e)) @ V` where `e = exp(x - max(x))`, both reductions over x's
last axis (the matmul's K axis), `x` an elementwise function of a matmul `q @ kT` of its own
shape, and every value on the way used only there (otherwise `S` is materialised anyway and the
unfused grids are the better program).

Online softmax divides by the running sum once, after the loop, so `P` is cast to the matmul's
operand type unnormalised (values in [0, 1], as FlashAttention does): the result differs from the
unfused program's in the last bits of that cast, and both are checked against the exact math.
A row whose every score is -inf (fully masked) is NaN in both.

FP8 probabilities (`precision p as f8E4M3FN scale unit`, FlashAttention-3): the `cast` pass leaves
`o = (dequantize(quantize(e, amax 1)) @ V) / sum(e)`, which is matched too. The grid quantises
each key/value block's `exp(x - running max)` with that fixed scale (`tile.quantize` on the
vector engine), multiplies it with V's FP8 tile on the tensor engine (a scaled `tile.mma`), and
divides by the running sum after the loop. The unfused program quantises `exp(x - row max)`
instead: the two differ where the running max is below the row's max (earlier blocks' products
are rescaled by exp(old max - new max) after their rounding)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, TensorType, UnitAttr
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import attrs, dtypes
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.passes.decompose import normalised
from zhenwu_cc.passes.tiling.directives import disagree, split_k_asked
from zhenwu_cc.passes.tiling.fusion import exclusive, path_ops
from zhenwu_cc.passes.tiling.grids import F32
from zhenwu_cc.passes.tiling.masks import live_blocks
from zhenwu_cc.passes.tiling.requests import (
    Req,
    dtype_of,
    matmul_operand_req,
    reduces_last_axis,
    shape_of,
    zero_padded,
)
from zhenwu_cc.passes.tiling.scales import fusable, fused_dtype, mma_dtype
from zhenwu_cc.passes.tiling.split import split_parts

DEFAULT_BLOCK = 128  # query and key/value block of the heuristic (FlashAttention-2's choice)


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class FlashMatch:
    """The values of one `softmax(x) @ V` (see the module docstring)."""

    pv: zk.MatmulOp  # cast*(p) @ V
    qk: zk.MatmulOp  # the matmul x is computed from
    x: SSAValue  # the scores softmax normalises
    casts: tuple[zk.CastOp, ...]  # between p and the matmul's lhs, in order
    quant: zk.QuantizeOp | None = None  # `scale unit`: e quantised with the amax 1 (docstring)
    norm: zk.DivOp | None = None  # then the division of pv by the row sums

    @property
    def kv_len(self) -> int:
        return shape_of(self.x)[-1]

    def group(self) -> list[Operation]:
        """The ops the flash grid fuses (what `fuse NAME off` on any of them keeps apart):
        both matmuls, the softmax's ops, the casts and the scores' epilogue."""
        if self.quant is not None:
            exp, total = self.quant.input.owner, self.norm.rhs.owner
            head = [self.quant, self.quant.amax.owner, self.quant.values.get_user_of_unique_use()]
            tail = [*head, *self.casts, self.pv, self.norm]
        else:
            div = (self.casts[0].input if self.casts else self.pv.lhs).owner
            exp, total = div.lhs.owner, div.rhs.owner
            tail = [div, *self.casts, self.pv]
        sub = exp.input.owner
        return [self.qk, *path_ops(self.x.owner, self.qk), sub.rhs.owner, sub, exp, total,
                *tail]

    def asks_split(self, v: SSAValue) -> bool:
        """Whether the schedule splits one of the group's loops (`split NAME S` on the softmax
        or a matmul, `split_k` on `tile s` or `tile o`): the flash loop has no parts, so the
        unfused grids honour the split instead."""
        return (any(split_parts(op) is not None for op in self.group())
                or split_k_asked(v, self.pv) or split_k_asked(self.x, self.qk))


def match_flash(pv: zk.MatmulOp) -> FlashMatch | None:
    """The flash attention `pv` heads, or None."""
    casts: list[zk.CastOp] = []
    cur = pv.lhs
    while isinstance(cur.owner, zk.CastOp) and cur.has_one_use():
        casts.insert(0, cur.owner)
        cur = cur.owner.input
    quant = norm = None
    if isinstance(cur.owner, zk.DequantizeOp):
        quant, norm = _unit_quantized(cur.owner, pv)
        if quant is None:
            return None
        e, l_, div = quant.input, norm.rhs, quant
    else:
        div = cur.owner
        if not (isinstance(div, zk.DivOp) and div.result.has_one_use()):
            return None
        e, l_ = div.lhs, div.rhs
    soft = normalised(e, l_)
    if soft is None or soft.shift:  # softmax shifts by the plain max
        return None
    x, sub, mx = soft.x, soft.sub, soft.mx
    if not (reduces_last_axis(soft.total) and _uses(e) == {id(div), id(soft.total)}
            and l_.has_one_use() and sub.result.has_one_use() and reduces_last_axis(mx)
            and mx.results[0].has_one_use() and _uses(x) == {id(sub), id(mx)}):
        return None
    if not isinstance(x.owner, Operation):
        return None
    qk = zk.matmul_feeding(x.owner)
    if qk is None or shape_of(qk.result) != shape_of(x) or not _exclusive_to(qk, x, {sub, mx}):
        return None
    if shape_of(x)[-1] != shape_of(pv.lhs)[-1] or shape_of(x)[:-1] != shape_of(pv.lhs)[:-1]:
        return None
    return FlashMatch(pv, qk, x, tuple(casts), quant, norm)


def _unit_quantized(deq: zk.DequantizeOp, pv: zk.MatmulOp
                    ) -> tuple[zk.QuantizeOp, zk.DivOp] | tuple[None, None]:
    """The `scale unit` form the `cast` pass leaves (module docstring): `deq` dequantises a
    per-tensor quantisation with the constant amax 1, read only here, and `pv`'s only reader
    divides it by row sums; else (None, None)."""
    q = deq.values.owner
    if not (isinstance(q, zk.QuantizeOp) and q.precision.mode.data == "tensor"
            and list(deq.scales) == [q.scales] and q.values.has_one_use()
            and q.scales.has_one_use() and deq.result.has_one_use()
            and isinstance(q.amax.owner if q.amax is not None else None, zk.ConstantOp)
            and q.amax.owner.number == 1.0 and q.amax.has_one_use()
            and pv.result.has_one_use()):
        return None, None
    norm = pv.result.get_user_of_unique_use()
    if not (isinstance(norm, zk.DivOp) and norm.lhs is pv.result):
        return None, None
    return q, norm


def _exclusive_to(qk: zk.MatmulOp, x: SSAValue, readers: set) -> bool:
    """The matmul and its epilogue up to `x` are used only on the way to `x`, and `x` only by
    the softmax (`readers`)."""
    if not exclusive(qk, x.owner):
        return False
    return all(use.operation in readers for use in x.uses)


def _uses(v: SSAValue) -> set[int]:
    return {id(u.operation) for u in v.uses}


def flash_sizes(tiler, v: SSAValue, f: FlashMatch):
    """((query block, value-column tile, key/value block, K tile of the scores), the directive
    that gave them, how it spells them): from `tile o [BQ, BD, BKV]` and `tile s [BQ, BKV, K]`,
    which must agree (ZK0618), else 128 x 128 blocks with whole value rows and the whole head
    dim, shrunk to fit."""
    o_dir = tiler.directive(v, f.pv)
    s_dir = tiler.directive(f.x, f.qk)
    sizes = flash_tiles(f, *(None if d is None else tuple(d.attributes[attrs.TILE].values)
                             for d in (o_dir, s_dir)))
    if sizes is None:
        raise _disagree(o_dir, s_dir)
    return sizes, o_dir if o_dir is not None else s_dir, flash_spell(o_dir is not None)


def flash_tiles(f: FlashMatch, o_sizes: tuple | None, s_sizes: tuple | None
                ) -> tuple[int, int, int, int] | None:
    """The flash grid's (query block, value-column tile, key/value block, K tile of the scores)
    from the sizes of `tile o [BQ, BD, BKV]` and `tile s [BQ, BKV, K]` (None: no directive),
    or None when the two disagree. The fast cost path (zhenwu_cc/fast_cost.py) calls it too."""
    m, dv = shape_of(f.pv.result)[-2:]
    n, d = f.kv_len, shape_of(f.qk.lhs)[-1]
    bq = bkv = DEFAULT_BLOCK
    bd, tk = dv, d
    if o_sizes is not None:
        bq, bd, bkv = o_sizes
    if s_sizes is not None:
        sq, skv, tk = s_sizes
        if o_sizes is not None and (min(sq, m), min(skv, n)) != (min(bq, m), min(bkv, n)):
            return None
        bq, bkv = sq, skv
    return min(bq, m), min(bd, dv), min(bkv, n), min(tk, d)


def flash_spell(by_o: bool):
    """How the directive that sizes a flash grid writes its sizes: `tile o [BQ, BD, BKV]`,
    else `tile s [BQ, BKV, K]`."""
    return (lambda sz: [sz[0], sz[1], sz[2]]) if by_o else (lambda sz: [sz[0], sz[2], sz[3]])


def kv_steps(f: FlashMatch, bkv: int) -> int:
    """Steps of the flash grid's loop: one per key/value block."""
    return -(-f.kv_len // bkv)


def score_steps(f: FlashMatch, tk: int) -> int:
    """K steps of the scores' matmul, unrolled inside each key/value step."""
    return -(-shape_of(f.qk.lhs)[-1] // tk)


def flash_live(f: FlashMatch, bq: int, bkv: int
               ) -> tuple[int, list[int], list[int], float] | None:
    """(grid dimension, first and end key/value step per query block, fraction of scores seen)
    of the steps a mask lets the flash loop skip (`tiling.masks`), or None."""
    live = live_blocks(f.x, bq, bkv)
    return None if live is None else (len(shape_of(f.pv.result)) - 2, *live)


def _disagree(o_dir: Operation, s_dir: Operation):
    o_name = o_dir.results[0].name_hint or "o"
    s_name = s_dir.results[0].name_hint or "s"
    ov = list(o_dir.attributes[attrs.TILE].values)
    sv = list(s_dir.attributes[attrs.TILE].values)
    return disagree(o_dir, s_dir, "they size one flash-attention grid, whose query block is M "
                    f"of both and whose key/value block is N of `{s_name}` and K of `{o_name}`",
                    f"`tile {s_name} [{sv[0]}, {sv[1]}, {sv[2]}]` with "
                    f"`tile {o_name} [{sv[0]}, {ov[1]}, {sv[1]}]`")


def shrink_flash(sizes: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Halve the key/value block, then the query block, down to 16."""
    bq, bd, bkv, tk = sizes
    if bkv > 16:
        return bq, bd, bkv // 2, tk
    if bq > 16:
        return bq // 2, bd, bkv, tk
    return None


def build_flash(tiler, v: SSAValue, f: FlashMatch, bq: int, bd: int, bkv: int, tk: int):
    """The flash grid for `v` (the matmul `f.pv` and its epilogue up to `v`)."""
    pv, qk = f.pv, f.qk
    out_shape = shape_of(pv.result)
    s_shape = shape_of(f.x)
    loc = pv.location
    g, req = tiler.matrix_grid(v, out_shape, bq, bd, loc)
    idx, sizes = req.idx, req.sizes
    row = (*(1,) * (len(out_shape) - 2), bq, 1)
    init_m = g.emit(zk.ConstantOp(-math.inf, TensorType(F32, list(row))), loc)
    init_l = g.emit(zk.ConstantOp(0.0, TensorType(F32, list(row))), loc)
    init_acc = g.emit(zk.ConstantOp(0.0, TensorType(F32, list(sizes))), loc)
    init_acc.owner.attributes[attrs.LOOP_INIT] = UnitAttr()
    last = len(s_shape) - 1
    n = f.kv_len

    def body(j, accs):
        m_run, l_run, acc = accs
        s_req = Req((*idx[:-1], j), (*sizes[:-1], bkv), (0,) * len(s_shape), s_shape)
        scores = tiler.accumulate(g, qk, s_req, lambda kk: kk, score_steps(f, tk), tk,
                                  qk.location, unrolled=True)
        g.anchors[qk] = (s_req, scores)
        x = g.tile_of(f.x, s_req, f.x.owner.location)
        if n % bkv:
            x = g.mask(x, s_req, last, -math.inf, loc)
        m_new, e, alpha, l_new = g.online_step(x, m_run, l_run, last, loc)
        v_req = matmul_operand_req(req, out_shape, shape_of(pv.rhs), j, bkv, "rhs", g.zero)
        p, sp, vt, sv = e, [], None, []
        if f.quant is not None:
            p, sp, vt, sv = _unit_operands(g, f, e, s_req, v_req)
        for c in f.casts:
            p = g.emit(zk.CastOp(p, c.result.type.element_type), c.location)
        if vt is None:
            vt = g.tile_of(pv.rhs, v_req, loc)
        if n % bkv and not zero_padded(vt):
            vt = g.mask(vt, v_req, len(v_req.sizes) - 2, 0.0, loc)
        scaled = g.emit(zk.MulOp(acc, alpha), loc)
        fast = bool(sp) and tiler.fp8_fast
        return [m_new, l_new, g.emit(tile.MmaOp(p, vt, scaled, sp, sv, fast), pv.location)]

    _, l_fin, acc = g.loop(kv_steps(f, bkv), [init_m, init_l, init_acc], body, loc)
    live = flash_live(f, bq, bkv)
    if live is not None:  # key/value blocks a mask hides wholly are skipped (tiling.masks)
        acc.owner.attributes[attrs.LIVE_STEPS] = attrs.live_steps_attr(*live[:3])
        tiler.visible[pv] = live[3]
    out = g.emit(zk.DivOp(acc, l_fin), loc)
    if out.type.element_type != pv.result.type.element_type:
        out = g.emit(zk.CastOp(out, pv.result.type.element_type), loc)
    g.anchors[f.norm or pv] = (req, out)
    return tiler.store_root(g, v, req, "attention", bkv, loc)


def _unit_operands(g, f: FlashMatch, e: SSAValue, s_req: Req, v_req: Req):
    """(P's values, their scales, V's tile, its scales) of one key/value step with `scale unit`:
    the block's exp(x - running max) quantised with the amax 1 (`tile.quantize`), and V's
    low-precision values and scales when V is dequantised too (a scaled mma), else P dequantised
    on the vector engine for V's own tile."""
    q, loc = f.quant, f.quant.location
    shape = shape_of(q.input)
    amax = g.tile_of(q.amax, g.scale_req(s_req, shape, shape_of(q.amax)), loc)
    sreq = g.scale_req(s_req, shape, shape_of(q.scales))
    tq = g.emit(tile.QuantizeOp(e, amax, q.precision, None,
                                [TensorType(F32, list(sreq.sizes))]), loc)
    values, scale = tq.owner.values, tq.owner.scales
    wide = fused_dtype(f.pv)
    if wide is not None and fusable(f.pv.rhs, v_req):
        vt, sv = g.scaled_tile(f.pv.rhs, v_req)
        values, vt = (g.emit(zk.CastOp(t, dtypes.to_xdsl(wide)), loc)
                      if dtype_of(t) != wide else t for t in (values, vt))
        return values, [scale], vt, sv
    p = g.blocked_mul(g.emit(zk.CastOp(values, F32), loc), scale, loc)
    return p, [], g.tile_of(f.pv.rhs, v_req, loc), []


def discount_masked_flops(kernel: zk.KernelOp, f: FlashMatch, visible: float) -> None:
    """Count as useful only the FLOPs of scores the mask lets through (`zk.flops`, the
    achieved-TFLOP/s figures): half of them for causal attention, as FlashAttention reports."""
    flops = kernel.attributes.get(attrs.FLOPS)
    if not isinstance(flops, DictionaryAttr):
        return
    counts = {k: v.value.data for k, v in flops.data.items()}
    for mm in (f.qk, f.pv):
        name = mma_dtype(mm).name
        full = 2 * math.prod(shape_of(mm.result)) * shape_of(mm.lhs)[-1]
        counts[name] -= round(full * (1 - visible))
    kernel.attributes[attrs.FLOPS] = DictionaryAttr(
        {k: IntegerAttr(v, 64) for k, v in sorted(counts.items())})
