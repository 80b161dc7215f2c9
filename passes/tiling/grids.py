"""Grid construction in the `tile` pass: `Grid` builds one `tile.grid` (its index arguments,
the tiles of values inside it, loops, masks, stores), computing inlined values in each tile
from their operands' tiles and loading materialised ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xdsl.dialects import arith
from xdsl.dialects.builtin import (
    DenseArrayBase,
    DictionaryAttr,
    IndexType,
    IntegerAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from zhenwu_cc.core import attrs
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.passes.tiling.fusion import has_own_grid
from zhenwu_cc.passes.tiling.requests import (
    Req,
    dtype_of,
    operand_req,
    shape_of,
    transposed_req,
    unpadded,
)
from zhenwu_cc.passes.tiling.scales import scale_plan
from zhenwu_cc.passes.tiling.sizes import tile_budget
from zhenwu_cc.passes.tiling.split import split_parts

if TYPE_CHECKING:
    from zhenwu_cc.passes.tiling.kernel import KernelTiler

F32 = dtypes.to_xdsl(dtypes.F32)


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class _Scope:
    """A block being filled, with the values already emitted in it (memo)."""

    block: Block
    memo: dict = field(default_factory=dict)
    loop_var: SSAValue | None = None


class Grid:
    """Builds one tile.grid: its block, its ins, and the tiles of values inside it."""

    def __init__(self, tiler: KernelTiler, rank: int, loc, root: SSAValue | None = None):
        self.tiler = tiler
        self.loc = loc
        self.rank = rank
        self.root = root  # the value whose grid this is (None for copies)
        self.block = Block(arg_types=[IndexType()] * rank)
        for arg, name in zip(self.block.args, _index_names(rank)):
            arg.name_hint = name
        self.ins: list[SSAValue] = []  # kernel-level tensors read by this grid
        self.in_args: dict[SSAValue, SSAValue] = {}
        self.scopes = [_Scope(self.block)]
        # matmuls whose accumulator tile the grid holds: their epilogues are computed from it
        self.anchors: dict[zk.MatmulOp, tuple[Req, SSAValue]] = {}
        self.tile_elems = 0  # elements of the grid's result tile, set by its builder
        self.counts: tuple[int, ...] = ()  # tiles per dimension, set by `matrix_grid`
        self.zero = self.emit(arith.ConstantOp(IntegerAttr(0, IndexType())), loc)

    @property
    def index_args(self) -> Sequence[SSAValue]:
        return self.block.args[: self.rank]

    def tile_index(self, counts: Sequence[int]) -> tuple[SSAValue, ...]:
        """The grid's indices, with the constant 0 along dimensions of a single tile, so that
        the same tile reached two ways (e.g. a whole row for a reduction) is built once."""
        return tuple(self.zero if c == 1 else i for i, c in zip(self.index_args, counts))

    # -- emission --
    def emit(self, op: Operation, loc, scope: _Scope | None = None) -> SSAValue | None:
        op.location = loc
        (scope or self.scopes[-1]).block.add_op(op)
        return op.results[0] if op.results else None

    def scope_for(self, req: Req) -> _Scope:
        """The innermost scope that defines one of the tile's indices: tiles that do not
        depend on a loop's variable are hoisted out of the loop."""
        for scope in reversed(self.scopes[1:]):
            if any(_defined_in(i, scope.block) for i in req.idx):
                return scope
        return self.scopes[0]

    def global_arg(self, tensor: SSAValue) -> SSAValue:
        if tensor not in self.in_args:
            self.ins.append(tensor)
            arg = self.block.insert_arg(tensor.type, len(self.block.args))
            if tensor.name_hint:
                arg.name_hint = tensor.name_hint
            self.in_args[tensor] = arg
        return self.in_args[tensor]

    def index_const(self, value: int, scope: _Scope) -> SSAValue:
        key = ("const", value)
        if key not in scope.memo:
            scope.memo[key] = self.emit(arith.ConstantOp(IntegerAttr(value, IndexType())),
                                        self.loc, scope)
        return scope.memo[key]

    # -- tiles of values --
    def tile_of(self, v: SSAValue, req: Req, user=None) -> SSAValue:
        """The tile `req` of `v`, built once per scope. `user` is the location of the op that
        needs it: loads are charged to their consumer, not to the kernel's signature.

        Chains of inlined ops (thousands of `y1 = y0 + 1.0`) are walked with an explicit stack,
        operands first, so `_generate` finds their tiles built and Python's stack stays shallow.
        """
        stack: list[tuple[SSAValue, Req, object, bool]] = [(v, req, user, False)]
        out = None
        while stack:  # the root is at the bottom, so it is built last
            x, r, u, expanded = stack.pop()
            r = unpadded(r)
            out = self._built(x, r)
            if out is not None:
                continue
            inputs = [] if expanded else self._inline_inputs(x, r, u)
            if inputs:
                stack.append((x, r, u, True))
                stack.extend((o, ro, uo, False) for o, ro, uo in reversed(inputs))
                continue
            out = self._tile_of_one(x, r, u)
        return out

    def _built(self, v: SSAValue, req: Req) -> SSAValue | None:
        key = (id(v), req.key())
        for s in self.scopes:
            if key in s.memo:
                return s.memo[key]
        return None

    def _inline_inputs(self, v: SSAValue, req: Req, user) -> list[tuple[SSAValue, Req, object]]:
        """The operand tiles `_generate` asks for when it computes `v` inline, as it asks."""
        op = v.owner
        if not isinstance(op, Operation) or v in self.tiler.materialized or op in self.anchors:
            return []
        if attrs.TILE in op.attributes and v is not self.root and has_own_grid(
                v, self.anchors, self.tiler.partials):
            return []  # `_generate` loads it from the grid its directive sizes
        if v is not self.root and (self.tiler.joint_root(v) or self.tiler.epilogue.stores(v)):
            return []  # `_generate` loads it from its joint (or online-reduction) matmul grid
        if isinstance(op, zk.ELEMENTWISE_OPS):
            return [(x, operand_req(req, shape_of(v), shape_of(x), 0.0, self.zero), op.location)
                    for x in op.operands]
        if isinstance(op, zk.BroadcastOp):
            return [(op.input, operand_req(req, shape_of(v), shape_of(op.input), req.pad,
                                            self.zero), op.location)]
        if isinstance(op, zk.TransposeOp):
            return [(op.input, transposed_req(req, op.permutation), op.location)]
        if isinstance(op, zk.SliceOp):
            start = tuple(op.start.get_values())
            return [(op.input, Req(req.idx, req.sizes, tuple(b + s for b, s in
                                                             zip(req.base, start)),
                                   req.bound, req.pad), user)]
        return []

    def _tile_of_one(self, v: SSAValue, req: Req, user) -> SSAValue:
        scope = self.scope_for(req)
        key = (id(v), req.key())
        saved = self.scopes
        self.scopes = self.scopes[: self.scopes.index(scope) + 1]
        try:
            out = self._generate(v, req, user)
        finally:
            self.scopes = saved
        scope.memo[key] = out
        return out

    def load(self, tensor: SSAValue, req: Req, loc) -> SSAValue:
        arg = self.global_arg(tensor)
        return self.emit(tile.LoadOp(arg, req.idx, req.sizes, req.base, req.bound, req.pad), loc)

    def _generate(self, v: SSAValue, req: Req, user) -> SSAValue:
        tiler = self.tiler
        if v.owner in tiler.partials:
            return self._combine_partials(v.owner, req)
        if v in tiler.materialized:
            return self.load(tiler.materialized[v], req, user or tiler.loc_of(v))
        op = v.owner
        loc = op.location
        held = self.anchors.get(op)
        if held is not None and req.key() == held[0].key():
            return held[1]
        if v is not self.root and (tiler.joint_root(v) or tiler.epilogue.stores(v)):
            return self.load(tiler.ensure(v), req, user or loc)
        if attrs.TILE in op.attributes:
            if v is not self.root and has_own_grid(v, self.anchors, tiler.partials):
                return self.load(tiler.ensure(v), req, user or loc)
            tiler.directives.computed_in.setdefault(op, []).append(self.root)
        if isinstance(op, zk.ConstantOp):
            shape = () if not shape_of(v) else req.sizes
            return self.emit(zk.ConstantOp(op.number, TensorType(v.type.element_type, shape)), loc)
        if isinstance(op, zk.IotaOp):
            return self._iota(op, req)
        if isinstance(op, zk.ELEMENTWISE_OPS):
            tiles = [self.tile_of(x, operand_req(req, shape_of(v), shape_of(x), 0.0, self.zero),
                                  loc) for x in op.operands]
            return self.emit(_clone_elementwise(op, tiles), loc)
        if isinstance(op, zk.BroadcastOp):
            t = self.tile_of(op.input, operand_req(req, shape_of(v), shape_of(op.input), req.pad,
                                                  self.zero), loc)
            if shape_of(t) == req.sizes:
                return t
            return self.emit(zk.BroadcastOp(t, req.sizes), loc)
        if isinstance(op, zk.TransposeOp):
            sub = transposed_req(req, op.permutation)
            return self.emit(zk.TransposeOp(self.tile_of(op.input, sub, loc), op.permutation),
                             loc)
        if isinstance(op, zk.DequantizeOp) and (t := self._dequantize(op, req)) is not None:
            return t
        if isinstance(op, zk.SliceOp):
            start = tuple(op.start.get_values())
            sub = Req(req.idx, req.sizes, tuple(b + s for b, s in zip(req.base, start)),
                      req.bound, req.pad)
            return self.tile_of(op.input, sub, user)
        if isinstance(op, zk.ReduceOp) and self._inlinable(op, req):
            return self._inline_reduce(op, req)
        if isinstance(op, zk.ArgmaxOp) and self._inlinable(op, req):
            return self._inline_argmax(op, req)
        return self.load(tiler.ensure(v), req, user or loc)

    def _combine_partials(self, op: Operation, req: Req) -> SSAValue:
        """A tile of a value computed in parts (a split-K matmul's f32 partial sums, a split
        reduction's partial results): the parts combined by the op's reduction (a mean's sum
        scaled once; an online sum's parts rescaled to the shift of the largest of their maxima
        first: tiling.online, tiling.epilogue), in the op's result type."""
        partials, split = self.tiler.partials[op]
        loc = op.location
        sub = Req((self.zero, *req.idx), (split, *req.sizes), (0, *req.base),
                  (split, *req.bound), 0.0)
        if isinstance(op, zk.ArgmaxOp):
            return self._combine_argmax(op, self.load(partials, sub, loc), sub, req)
        kind = "sum" if isinstance(op, zk.MatmulOp) else reduce_kind(op)
        parts = self.load(partials, sub, loc)
        if op in self.tiler.online:  # each part's sum of exp(x - finite(its max)): rescaled
            held, guarded = self.tiler.online[op]  # to the row's shift, the sum's own
            maxima = self.load(held, sub, loc)
            top = self.emit(zk.ReduceMaxOp(maxima, [0], True), loc)
            shift = self.finite(top, loc) if guarded else top
            rescale = self.emit(zk.ExpOp(self.emit(zk.SubOp(self.finite(maxima, loc), shift),
                                                   loc)), loc)
            parts = self.emit(zk.MulOp(parts, rescale), loc)
        total = self.emit(reduce_op(kind, parts, [0]), loc)
        total = self.emit(zk.ReshapeOp(total, req.sizes), loc)
        if isinstance(op, zk.ReduceMeanOp):
            n = math.prod(shape_of(op.input)[a] for a in op.axis_list)
            total = self.scale(total, 1.0 / n, loc)
        if total.type.element_type != op.results[0].type.element_type:
            total = self.emit(zk.CastOp(total, op.results[0].type.element_type), loc)
        return total

    def _combine_argmax(self, op: zk.ArgmaxOp, maxima: SSAValue, sub: Req, req: Req
                        ) -> SSAValue:
        """A split argmax's tile: the position found by the first part holding the largest
        maximum (parts follow the axis in order, so ties keep the first position)."""
        loc = op.location
        positions = self.load(self.tiler.partial_positions[op], sub, loc)
        best = self.emit(zk.ArgmaxOp(maxima, 0, True), loc)
        i32 = positions.type.element_type
        parts = self.emit(tile.IotaOp(sub.idx, sub.sizes, 0, best.type.element_type), loc)
        chosen = self.emit(zk.CompareOp("eq", parts, best), loc)
        zero = self.emit(zk.ConstantOp(0, TensorType(i32, [])), loc)
        picked = self.emit(zk.SelectOp(chosen, positions, zero), loc)
        total = self.emit(zk.ReduceSumOp(picked, [0], True), loc)
        return self.emit(zk.ReshapeOp(total, req.sizes), loc)

    def _iota(self, op: zk.IotaOp, req: Req) -> SSAValue:
        axis = op.axis.value.data
        t = self.emit(tile.IotaOp(req.idx, req.sizes, axis, op.result.type.element_type),
                      op.location)
        if req.base[axis]:
            c = self.emit(zk.ConstantOp(req.base[axis], TensorType(op.result.type.element_type,
                                                                   [])), op.location)
            t = self.emit(zk.AddOp(t, c), op.location)
        return t

    # -- low precision: scale tiles follow their blocks --
    def scale_req(self, req: Req, shape: Sequence[int], scales: Sequence[int]) -> Req | None:
        """The tile of a scale tensor (blocking values of `shape`) that the values' tile `req`
        needs, or None when the tile cuts a block: along each dimension the tile must hold
        whole blocks, or lie inside one, starting on a block boundary."""
        plan = scale_plan(req, shape, scales)
        if plan is None:
            return None
        idx = []
        for d, (kind, block) in enumerate(plan):
            if kind == "one":
                idx.append(self.zero)
            elif kind == "within":
                idx.append(self.index_div(req.idx[d], block // req.sizes[d]))
            else:
                idx.append(req.idx[d])
        sizes = tuple(1 if kind != "whole" else req.sizes[d] // b
                      for d, (kind, b) in enumerate(plan))
        base = tuple(0 if k == "one" else o // b for o, (k, b) in zip(req.base, plan))
        bound = tuple(-(-e // b) if k != "one" else 1 for e, (k, b) in zip(req.bound, plan))
        return Req(tuple(idx), sizes, base, bound, 1.0)

    def index_div(self, index: SSAValue, divisor: int) -> SSAValue:
        """index // divisor, emitted once in the scope that defines `index`."""
        if divisor == 1:
            return index
        scope = next((s for s in reversed(self.scopes) if _defined_in(index, s.block)),
                     self.scopes[0])
        key = ("div", id(index), divisor)
        if key not in scope.memo:
            c = self.index_const(divisor, scope)
            scope.memo[key] = self.emit(arith.FloorDivSIOp(index, c), self.loc, scope)
        return scope.memo[key]

    def _dequantize(self, op: zk.DequantizeOp, req: Req) -> SSAValue | None:
        """values x scales on the vector engine, when the tile holds whole blocks (or lies in
        one); None sends the consumer to a materialised copy."""
        shape = shape_of(op.values)
        if any(scale_plan(req, shape, shape_of(s)) is None for s in op.scales):
            return None
        loc = op.location
        out = self.tile_of(op.values, Req(req.idx, req.sizes, req.base, req.bound), loc)
        out = self.emit(zk.CastOp(out, F32), loc)
        for s in op.scales:
            st = self.tile_of(s, self.scale_req(req, shape, shape_of(s)), loc)
            if st.type.element_type != F32:
                st = self.emit(zk.CastOp(st, F32), loc)
            out = self.blocked_mul(out, st, loc)
        if op.result.type.element_type != F32:
            out = self.emit(zk.CastOp(out, op.result.type.element_type), loc)
        return out

    def blocked_mul(self, x: SSAValue, s: SSAValue, loc) -> SSAValue:
        """x times s repeated over its blocks: dimensions that hold several blocks are split
        (views), so the multiply broadcasts."""
        t, st = shape_of(x), shape_of(s)
        split = [d for d in range(len(t)) if st[d] > 1 and t[d] > st[d]]
        if not split:
            return self.emit(zk.MulOp(x, s), loc)
        xs: list[int] = []
        ss: list[int] = []
        for d in range(len(t)):
            xs += [st[d], t[d] // st[d]] if d in split else [t[d]]
            ss += [st[d], 1] if d in split else [st[d]]
        xr = self.emit(zk.ReshapeOp(x, xs), loc)
        sr = self.emit(zk.ReshapeOp(s, ss), loc)
        return self.emit(zk.ReshapeOp(self.emit(zk.MulOp(xr, sr), loc), t), loc)

    def scaled_tile(self, v: SSAValue, req: Req) -> tuple[SSAValue, list[SSAValue]]:
        """A matmul operand's low-precision values tile and scale tiles, through transposes
        of a `zk.dequantize` (when `fusable`)."""
        op = v.owner
        if isinstance(op, zk.TransposeOp):
            perm = op.permutation
            t, scales = self.scaled_tile(op.input, transposed_req(req, perm))
            return (self.emit(zk.TransposeOp(t, perm), op.location),
                    [self.emit(zk.TransposeOp(x, perm), op.location) for x in scales])
        assert isinstance(op, zk.DequantizeOp)
        shape = shape_of(op.values)
        values = self.tile_of(op.values, req, op.location)
        return values, [self.tile_of(s, self.scale_req(req, shape, shape_of(s)), op.location)
                        for s in op.scales]

    # -- reductions inside a tile --
    def _reduced_axes(self, op) -> tuple[int, ...]:
        return op.axis_list if isinstance(op, zk.ReduceOp) else (op.axis.value.data,)

    def _input_req(self, op, req: Req, pad: float) -> Req:
        """Map a request on a reduction's output to its input, whole along the reduced axes."""
        shape = shape_of(op.input)
        axes = self._reduced_axes(op)
        keep = op.keepdims is not None
        idx, sizes, base, bound, k = [], [], [], [], 0
        zero = self.index_const(0, self.scopes[0])
        for d, extent in enumerate(shape):
            if d in axes:
                idx.append(zero), sizes.append(extent), base.append(0), bound.append(extent)
                k += 1 if keep else 0
                continue
            idx.append(req.idx[k]), sizes.append(req.sizes[k])
            base.append(req.base[k]), bound.append(req.bound[k])
            k += 1
        return Req(tuple(idx), tuple(sizes), tuple(base), tuple(bound), pad)

    def _inlinable(self, op, req: Req) -> bool:
        """A reduction can be computed inside this tile if its whole input tile is no bigger
        than the grid's own tiles (whole rows of a row-wise kernel) or the tile budget, and no
        `split NAME S` asks for a split grid."""
        if (split_parts(op) or 1) > 1:
            return False
        sub = self._input_req(op, req, 0.0)
        limit = max(self.tile_elems, tile_budget(self.tiler.target))
        return math.prod(sub.sizes) <= limit

    def _inline_reduce(self, op: zk.ReduceOp, req: Req) -> SSAValue:
        kind = reduce_kind(op)
        ident = identity(kind, dtype_of(op.input))
        x = self.tile_of(op.input, self._input_req(op, req, ident), op.location)
        r = self.emit(reduce_op(kind, x, op.axis_list), op.location)
        if isinstance(op, zk.ReduceMeanOp):
            n = math.prod(shape_of(op.input)[a] for a in op.axis_list)
            r = self.scale(r, 1.0 / n, op.location)
        return self._drop_kept(r, op, req, op.location)

    def _inline_argmax(self, op: zk.ArgmaxOp, req: Req) -> SSAValue:
        x = self.tile_of(op.input, self._input_req(op, req, -math.inf), op.location)
        r = self.emit(zk.ArgmaxOp(x, op.axis.value.data, True), op.location)
        return self._drop_kept(r, op, req, op.location)

    def _drop_kept(self, r: SSAValue, op, req: Req, loc) -> SSAValue:
        if op.keepdims is not None or shape_of(r) == req.sizes:
            return r
        return self.emit(zk.ReshapeOp(r, req.sizes), loc)

    def scale(self, t: SSAValue, factor: float, loc) -> SSAValue:
        c = self.emit(zk.ConstantOp(factor, TensorType(t.type.element_type, [])), loc)
        return self.emit(zk.MulOp(t, c), loc)

    def online_step(self, x: SSAValue, m_run: SSAValue, s_run: SSAValue, axis: int, loc
                    ) -> tuple[SSAValue, SSAValue, SSAValue, SSAValue]:
        """One step of online softmax over `axis` of `x` (flash attention's key/value step, a
        split softmax's chunk): (the running max, exp(x - shift), the rescale exp(old max -
        shift) of what came before, the running sum), the shift the new max where finite."""
        m_new = self.emit(zk.MaxOp(m_run, self.emit(zk.ReduceMaxOp(x, [axis], True), loc)), loc)
        shift = self.finite(m_new, loc)  # 0 while a row has seen only -inf: no inf - inf
        e = self.emit(zk.ExpOp(self.emit(zk.SubOp(x, shift), loc)), loc)
        alpha = self.emit(zk.ExpOp(self.emit(zk.SubOp(m_run, shift), loc)), loc)
        s_new = self.emit(zk.AddOp(self.emit(zk.MulOp(s_run, alpha), loc),
                                   self.emit(zk.ReduceSumOp(e, [axis], True), loc)), loc)
        return m_new, e, alpha, s_new

    def finite(self, m: SSAValue, loc) -> SSAValue:
        """m where it is finite, else 0: the shift of a running max that has seen only -inf
        (no inf - inf) or holds +inf, as `decompose`'s guarded max."""
        inf = self.emit(zk.ConstantOp(math.inf, TensorType(F32, [])), loc)
        ok = self.emit(zk.CompareOp("lt", self.emit(zk.AbsOp(m), loc), inf), loc)
        zero = self.emit(zk.ConstantOp(0.0, TensorType(F32, [])), loc)
        return self.emit(zk.SelectOp(ok, m, zero), loc)

    def mask(self, t: SSAValue, req: Req, dim: int, fill: float, loc) -> SSAValue:
        """Replace the overhang of edge tiles along `dim` by `fill`."""
        i32 = dtypes.to_xdsl(dtypes.I32)
        pos = self.emit(tile.IotaOp(req.idx, req.sizes, dim, i32), loc)
        lim = self.emit(zk.ConstantOp(req.bound[dim], TensorType(i32, [])), loc)
        inside = self.emit(zk.CompareOp("lt", pos, lim), loc)
        f = self.emit(zk.ConstantOp(fill, TensorType(t.type.element_type, [])), loc)
        return self.emit(zk.SelectOp(inside, t, f), loc)

    # -- loops --
    def loop(self, trips: int, inits: Sequence[SSAValue], body_fn, loc) -> list[SSAValue]:
        """A tile.loop whose body `body_fn(k, accs) -> next accs` runs in a new scope."""
        body = Block(arg_types=[IndexType()] + [v.type for v in inits])
        body.args[0].name_hint = "k"
        for acc in body.args[1:]:
            acc.name_hint = "acc"
        self.scopes.append(_Scope(body, loop_var=body.args[0]))
        try:
            nxt = body_fn(body.args[0], list(body.args[1:]))
            self.emit(tile.YieldOp(nxt), loc)
        finally:
            self.scopes.pop()
        op = tile.LoopOp(trips, inits, Region(body))
        self.emit(op, loc)
        return list(op.res)

    def finish(self, outs: Sequence[SSAValue], role: str, shape: Sequence[int],
               stores, step: int | None = None, parts: int = 1) -> tile.GridOp:
        """Add the outs, store the result tiles, and build the grid op. `tile.sizes` on it
        records the tiles it uses for reports: the result tile, `step` (the K tile of a
        matmul, the chunk of a reduced axis) where it loops, and the `parts` a split-K matmul
        or split reduction cuts its loop into (their leading grid dimension)."""
        out_args = [self.block.insert_arg(o.type, len(self.block.args)) for o in outs]
        for value, arg_index, idx, base in stores:
            self.emit(tile.StoreOp(value, out_args[arg_index], idx, base), self.loc, self.scopes[0])
        self.emit(tile.YieldOp(), self.loc, self.scopes[0])
        n = len(shape)
        block = self.block
        # The block was built with index args then ins; outs come last, as tile.grid wants.
        assert len(block.args) == n + len(self.ins) + len(outs)
        grid = tile.GridOp(shape, role, self.ins, outs, Region(block))
        result_tile = list(shape_of(stores[0][0]))[1 if parts > 1 else 0:]
        used: dict[str, Attribute] = {"tile": DenseArrayBase.from_list(i64, result_tile)}
        if step is not None:
            used["step"] = IntegerAttr(step, 64)
        if parts > 1:
            used["parts"] = IntegerAttr(parts, 64)
        grid.attributes[attrs.TILE_SIZES] = DictionaryAttr(used)
        return grid


def _index_names(rank: int) -> list[str]:
    """Readable grid index names: ..., b1, b0, i, j (the last two are rows and columns)."""
    tail = ["i", "j"][-rank:] if rank else []
    return [f"b{rank - len(tail) - 1 - d}" for d in range(rank - len(tail))] + tail


def _defined_in(v: SSAValue, block: Block) -> bool:
    owner = v.owner
    return owner is block if isinstance(owner, Block) else owner.parent is block


def _clone_elementwise(op: Operation, tiles: list[SSAValue]) -> Operation:
    if isinstance(op, zk.UnaryElementwiseOp):
        return type(op)(tiles[0])
    if isinstance(op, zk.BinaryElementwiseOp):
        return type(op)(tiles[0], tiles[1])
    if isinstance(op, zk.CompareOp):
        return zk.CompareOp(op.predicate.data, tiles[0], tiles[1])
    if isinstance(op, zk.SelectOp):
        return zk.SelectOp(*tiles)
    assert isinstance(op, (zk.CastOp, zk.BitcastOp))
    return type(op)(tiles[0], op.result.type.element_type)


def reduce_kind(op) -> str:
    return {zk.ReduceSumOp: "sum", zk.ReduceMeanOp: "sum", zk.ReduceMaxOp: "max",
            zk.ReduceMinOp: "min"}[type(op)]


def identity(kind: str, dt: dtypes.DType) -> float:
    if kind == "sum":
        return 0.0
    if dt.is_float:
        return -math.inf if kind == "max" else math.inf
    return float(dt.finite_min if kind == "max" else dt.finite_max)


def reduce_op(kind: str, x: SSAValue, axes: Sequence[int]) -> Operation:
    cls = {"sum": zk.ReduceSumOp, "max": zk.ReduceMaxOp, "min": zk.ReduceMinOp}[kind]
    return cls(x, axes, True)


def combine(kind: str, a: SSAValue, b: SSAValue) -> Operation:
    return {"sum": zk.AddOp, "max": zk.MaxOp, "min": zk.MinOp}[kind](a, b)
