"""The `tile` pass: `zk` tensors -> `tile` grids of output tiles.

How a kernel is cut into grids. A value is *materialised* (written to a global tensor by a grid
of its own) when it is a kernel result, an anchor (matmul, reduction, argmax, concat) that cannot
be computed inside the tile that needs it, or the input of a reshape (a view) or a concat.
Everything else is *inlined*: recomputed inside each consumer tile from tile loads — elementwise
ops, casts, transposes, broadcasts, slices, iotas and constants. So:

- a matmul grid runs the K loop and applies its elementwise epilogue (`gelu(x @ w + b)`) to the
  accumulator before the store: no round trip through HBM;
- a reduction is inlined into a consumer whose tile covers the whole reduced axis (a row-resident
  softmax or layernorm is one grid reading each row once); when the axis is too long for SRAM it
  gets a grid of its own that loops over chunks of the axis, and consumers load the result
  (multi-pass: a 65,536-column softmax runs as max, sum and normalise grids, never holding a
  whole row on chip);
- skinny GEMMs split K across compute units (a grid dimension for the split), writing f32
  partial sums that the consumer grid reduces before the epilogue.

Tile sizes come from the schedule's `tile NAME [...]` or from a heuristic that fits the target's
SRAM (and, for matmuls, fills its compute units). A directive is honoured or refused, never
dropped: `[M, N, K]` on a matmul's epilogue makes that value the matmul grid's result even where
its readers would recompute the epilogue (softmax(q @ k^T * scale)); a directive no grid takes
(its value recomputed in other grids' tiles, a view, unused) is ZK0605, and one whose value a
grid sized by another directive computes is ZK0606. Each grid records the tiles it runs, and the
directive they came from, in `tile.sizes` (for `compile` and `cost` reports).

Tiles at edges are padded on load and clipped on store; where padding could leak into a
reduction (a computed operand rather than a load with the identity as padding) it is masked with
`iota < extent`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import (
    DenseArrayBase,
    DictionaryAttr,
    FileLineColLoc,
    IndexType,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from zhenwu_cc.core.quant import FP8_CHUNK
from zhenwu_cc.dialects import dtypes, tile, zk
from zhenwu_cc.dialects.loc import span_of

from zhenwu_cc.diagnostics import Note, Span, error

DEFAULT_TK = 64
MIN_SPLIT_K_CHUNK = 256  # each split-K part reduces at least this many K elements
TILE_CHOICES = (256, 128, 64, 32, 16, 8, 4, 2, 1)
F32 = dtypes.to_xdsl(dtypes.F32)
MAX_NESTED_GRIDS = 32  # grid builds on Python's stack at once (see ensure_from_top)


class _Deeper(Exception):
    """Raised by `ensure` past MAX_NESTED_GRIDS: build `value` first (never leaves the pass)."""

    def __init__(self, value: SSAValue):
        super().__init__()
        self.value = value


def _shape(v: SSAValue) -> tuple[int, ...]:
    return tuple(v.type.get_shape())


def _dtype(v: SSAValue) -> dtypes.DType:
    return dtypes.from_xdsl(v.type.element_type)


@dataclass(frozen=True)
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


@dataclass
class _Scope:
    block: Block
    memo: dict = field(default_factory=dict)
    loop_var: SSAValue | None = None


class _Grid:
    """Builds one tile.grid: its block, its ins, and the tiles of values inside it."""

    def __init__(self, tiler: _KernelTiler, rank: int, loc, root: SSAValue | None = None):
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
        self.anchor: tuple[zk.MatmulOp, Req, SSAValue] | None = None
        self.tile_elems = 0  # elements of the grid's result tile, set by its builder
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
            r = _unpadded(r)
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
        if not isinstance(op, Operation) or v in self.tiler.materialized or (
                self.anchor is not None and op is self.anchor[0]):
            return []
        if isinstance(op, (zk.UnaryElementwiseOp, zk.BinaryElementwiseOp, zk.CompareOp,
                           zk.SelectOp, zk.CastOp)):
            return [(x, _operand_req(req, _shape(v), _shape(x), 0.0, self.zero), op.location)
                    for x in op.operands]
        if isinstance(op, zk.BroadcastOp):
            return [(op.input, _operand_req(req, _shape(v), _shape(op.input), req.pad,
                                            self.zero), op.location)]
        if isinstance(op, zk.TransposeOp):
            return [(op.input, _transposed_req(req, op.permutation), op.location)]
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

    def _load(self, tensor: SSAValue, req: Req, loc) -> SSAValue:
        arg = self.global_arg(tensor)
        return self.emit(tile.LoadOp(arg, req.idx, req.sizes, req.base, req.bound, req.pad), loc)

    def _generate(self, v: SSAValue, req: Req, user) -> SSAValue:
        tiler = self.tiler
        if isinstance(v.owner, zk.MatmulOp) and v.owner in tiler.partials:
            return self._sum_partials(v.owner, req)
        if v in tiler.materialized:
            return self._load(tiler.materialized[v], req, user or tiler.loc_of(v))
        op = v.owner
        loc = op.location
        if self.anchor is not None and op is self.anchor[0] and req.key() == self.anchor[1].key():
            return self.anchor[2]
        if "zk.tile" in op.attributes:
            if v is not self.root and self._has_own_grid(v):
                return self._load(tiler.ensure(v), req, user or loc)
            tiler.computed_in.setdefault(op, []).append(self.root)
        if isinstance(op, zk.ConstantOp):
            shape = () if not _shape(v) else req.sizes
            return self.emit(zk.ConstantOp(op.number, TensorType(v.type.element_type, shape)), loc)
        if isinstance(op, zk.IotaOp):
            return self._iota(op, req)
        if isinstance(op, zk.ELEMENTWISE_OPS):
            tiles = [self.tile_of(x, _operand_req(req, _shape(v), _shape(x), 0.0, self.zero),
                                  loc) for x in op.operands]
            return self.emit(_clone_elementwise(op, tiles), loc)
        if isinstance(op, zk.BroadcastOp):
            t = self.tile_of(op.input, _operand_req(req, _shape(v), _shape(op.input), req.pad,
                                                  self.zero), loc)
            if _shape(t) == req.sizes:
                return t
            return self.emit(zk.BroadcastOp(t, req.sizes), loc)
        if isinstance(op, zk.TransposeOp):
            sub = _transposed_req(req, op.permutation)
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
        return self._load(tiler.ensure(v), req, user or loc)

    def _has_own_grid(self, v: SSAValue) -> bool:
        """Whether `v`, which carries a `tile [M, N, K]` directive, is computed by its matmul's
        grid (the epilogue up to `v` on the accumulator) and loaded here, rather than recomputed
        in this grid from the matmul's bare result: the matmul is materialised anyway, so
        honouring the directive moves no more data. Not when this grid is that matmul's."""
        mm = zk.matmul_feeding(v.owner)
        if mm is None or mm is v.owner or (self.anchor is not None and self.anchor[0] is mm):
            return False
        return mm not in self.tiler.partials and _exclusive(mm, v.owner)

    def _sum_partials(self, mm: zk.MatmulOp, req: Req) -> SSAValue:
        """A split-K matmul's tile: the sum of its f32 partial tiles."""
        partials, split = self.tiler.partials[mm]
        loc = mm.location
        sub = Req((self.zero, *req.idx), (split, *req.sizes), (0, *req.base),
                  (split, *req.bound), 0.0)
        total = self.emit(zk.ReduceSumOp(self._load(partials, sub, loc), [0], True), loc)
        total = self.emit(zk.ReshapeOp(total, req.sizes), loc)
        if total.type.element_type != mm.result.type.element_type:
            total = self.emit(zk.CastOp(total, mm.result.type.element_type), loc)
        return total

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
        plan = _scale_plan(req, shape, scales)
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
        shape = _shape(op.values)
        if any(_scale_plan(req, shape, _shape(s)) is None for s in op.scales):
            return None
        loc = op.location
        out = self.tile_of(op.values, Req(req.idx, req.sizes, req.base, req.bound), loc)
        out = self.emit(zk.CastOp(out, F32), loc)
        for s in op.scales:
            st = self.tile_of(s, self.scale_req(req, shape, _shape(s)), loc)
            if st.type.element_type != F32:
                st = self.emit(zk.CastOp(st, F32), loc)
            out = self.blocked_mul(out, st, loc)
        if op.result.type.element_type != F32:
            out = self.emit(zk.CastOp(out, op.result.type.element_type), loc)
        return out

    def blocked_mul(self, x: SSAValue, s: SSAValue, loc) -> SSAValue:
        """x times s repeated over its blocks: dimensions that hold several blocks are split
        (views), so the multiply broadcasts."""
        t, st = _shape(x), _shape(s)
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
        of a `zk.dequantize` (when `_fusable`)."""
        op = v.owner
        if isinstance(op, zk.TransposeOp):
            perm = op.permutation
            t, scales = self.scaled_tile(op.input, _transposed_req(req, perm))
            return (self.emit(zk.TransposeOp(t, perm), op.location),
                    [self.emit(zk.TransposeOp(x, perm), op.location) for x in scales])
        assert isinstance(op, zk.DequantizeOp)
        shape = _shape(op.values)
        values = self.tile_of(op.values, req, op.location)
        return values, [self.tile_of(s, self.scale_req(req, shape, _shape(s)), op.location)
                        for s in op.scales]

    # -- reductions inside a tile --
    def _reduced_axes(self, op) -> tuple[int, ...]:
        return op.axis_list if isinstance(op, zk.ReduceOp) else (op.axis.value.data,)

    def _input_req(self, op, req: Req, pad: float) -> Req:
        """Map a request on a reduction's output to its input, whole along the reduced axes."""
        shape = _shape(op.input)
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
        than the grid's own tiles (whole rows of a row-wise kernel) or the tile budget."""
        sub = self._input_req(op, req, 0.0)
        limit = max(self.tile_elems, self.tiler.tile_budget(_dtype(op.input)))
        return math.prod(sub.sizes) <= limit

    def _inline_reduce(self, op: zk.ReduceOp, req: Req) -> SSAValue:
        kind = _reduce_kind(op)
        ident = _identity(kind, _dtype(op.input))
        x = self.tile_of(op.input, self._input_req(op, req, ident), op.location)
        r = self.emit(_reduce_op(kind, x, op.axis_list), op.location)
        if isinstance(op, zk.ReduceMeanOp):
            n = math.prod(_shape(op.input)[a] for a in op.axis_list)
            r = self._scale(r, 1.0 / n, op.location)
        return self._drop_kept(r, op, req, op.location)

    def _inline_argmax(self, op: zk.ArgmaxOp, req: Req) -> SSAValue:
        x = self.tile_of(op.input, self._input_req(op, req, -math.inf), op.location)
        r = self.emit(zk.ArgmaxOp(x, op.axis.value.data, True), op.location)
        return self._drop_kept(r, op, req, op.location)

    def _drop_kept(self, r: SSAValue, op, req: Req, loc) -> SSAValue:
        if op.keepdims is not None or _shape(r) == req.sizes:
            return r
        return self.emit(zk.ReshapeOp(r, req.sizes), loc)

    def _scale(self, t: SSAValue, factor: float, loc) -> SSAValue:
        c = self.emit(zk.ConstantOp(factor, TensorType(t.type.element_type, [])), loc)
        return self.emit(zk.MulOp(t, c), loc)

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
               stores, step: int | None = None) -> tile.GridOp:
        """Add the outs, store the result tiles, and build the grid op. `tile.sizes` on it
        records the tiles it uses for reports: the result tile, and `step` (the K tile of a
        matmul, the chunk of a reduced axis) where it loops."""
        out_args = [self.block.insert_arg(o.type, len(self.block.args)) for o in outs]
        for value, arg_index, idx, base in stores:
            self.emit(tile.StoreOp(value, out_args[arg_index], idx, base), self.loc, self.scopes[0])
        self.emit(tile.YieldOp(), self.loc, self.scopes[0])
        n = len(shape)
        block = self.block
        # The block was built with index args then ins; outs come last, as tile.grid wants.
        assert len(block.args) == n + len(self.ins) + len(outs)
        grid = tile.GridOp(shape, role, self.ins, outs, Region(block))
        used: dict[str, Attribute] = {"tile": _ints_attr(_shape(stores[0][0]))}
        if step is not None:
            used["step"] = IntegerAttr(step, 64)
        grid.attributes["tile.sizes"] = DictionaryAttr(used)
        return grid


def _index_names(rank: int) -> list[str]:
    """Readable grid index names: ..., b1, b0, i, j (the last two are rows and columns)."""
    tail = ["i", "j"][-rank:] if rank else []
    return [f"b{rank - len(tail) - 1 - d}" for d in range(rank - len(tail))] + tail


def _operand_req(req: Req, out_shape: Sequence[int], in_shape: Sequence[int], pad: float,
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


def _unpadded(req: Req) -> Req:
    """The request without padding when no tile reaches an edge (padding is then moot)."""
    if req.pad and not any(req.ragged(d) for d in range(len(req.sizes))):
        return Req(req.idx, req.sizes, req.base, req.bound)
    return req


def _transposed_req(req: Req, perm: Sequence[int]) -> Req:
    """The request on a transpose's input that gives the tile `req` of its result."""
    inv = [perm.index(d) for d in range(len(perm))]
    return Req(*(tuple(f[inv[d]] for d in range(len(perm)))
                 for f in (req.idx, req.sizes, req.base, req.bound)), req.pad)


def _fusable(v: SSAValue, req: Req) -> bool:
    """Whether the tile `req` of a matmul operand can go to the tensor engine as low-precision
    values and scales: a dequantise (through transposes) whose scale blocks the tile respects."""
    while isinstance(v.owner, zk.TransposeOp):
        req = _transposed_req(req, v.owner.permutation)
        v = v.owner.input
    op = v.owner
    return isinstance(op, zk.DequantizeOp) and all(
        _scale_plan(req, _shape(op.values), _shape(s)) is not None for s in op.scales)


def _fused_dtype(mm: zk.MatmulOp) -> dtypes.DType | None:
    """The format a scaled mma of `mm` runs in: both operands dequantised from formats one of
    which holds the other exactly; else None."""
    sources = [_dequantized(v) for v in mm.operands]
    if not all(sources):
        return None
    a, b = (dtypes.from_xdsl(s.values.type.element_type) for s in sources)
    return dtypes.promote(a, b)


def _scale_plan(req: Req, shape: Sequence[int], scales: Sequence[int]
                ) -> list[tuple[str, int]] | None:
    """How a values tile `req` meets the blocks of a scale tensor, per dimension: ("one", 1) for
    a single scale along it, ("whole", block) when the tile holds whole blocks, ("within",
    block) when it lies inside one; None when it cuts a block."""
    blocks = zk.blocks_of(shape, scales)
    if blocks is None:
        return None
    plan = []
    for d, (s, b) in enumerate(zip(scales, blocks)):
        t, base = req.sizes[d], req.base[d]
        if s == 1:
            plan.append(("one", 1))
        elif base % b:
            return None
        elif t % b == 0:
            plan.append(("whole", b))
        elif b % t == 0:
            plan.append(("within", b))
        else:
            return None
    return plan


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


def _reduce_kind(op) -> str:
    return {zk.ReduceSumOp: "sum", zk.ReduceMeanOp: "sum", zk.ReduceMaxOp: "max",
            zk.ReduceMinOp: "min"}[type(op)]


def _identity(kind: str, dt: dtypes.DType) -> float:
    if kind == "sum":
        return 0.0
    if dt.is_float:
        return -math.inf if kind == "max" else math.inf
    return float(dt.finite_min if kind == "max" else dt.finite_max)


def _reduce_op(kind: str, x: SSAValue, axes: Sequence[int]) -> Operation:
    cls = {"sum": zk.ReduceSumOp, "max": zk.ReduceMaxOp, "min": zk.ReduceMinOp}[kind]
    return cls(x, axes, True)


def _combine(kind: str, a: SSAValue, b: SSAValue) -> Operation:
    return {"sum": zk.AddOp, "max": zk.MaxOp, "min": zk.MinOp}[kind](a, b)


# ---- the kernel ---------------------------------------------------------------------------------
class _KernelTiler:
    def __init__(self, kernel: zk.KernelOp, target):
        self.kernel = kernel
        self.target = target
        self.block = kernel.body.block
        self.materialized: dict[SSAValue, SSAValue] = {a: a for a in self.block.args}
        self.partials: dict[zk.MatmulOp, tuple[SSAValue, int]] = {}
        self.new_ops: list[Operation] = []
        self.buffers = (kernel.attributes["zk.buffers"].value.data
                        if "zk.buffers" in kernel.attributes else 2)
        acc = kernel.attributes.get("zk.accumulate")
        self.acc_type = acc if acc is not None else dtypes.to_xdsl(dtypes.F32)
        mode = kernel.attributes.get("zk.accumulate_mode")
        self.fp8_fast = isinstance(mode, StringAttr) and mode.data == "fp8_fast"
        # `tile` directives: the ops whose directive sized a grid, the roots of the grids that
        # compute each directive's value, and the directive that sized each grid root.
        self.applied: set[Operation] = set()
        self.computed_in: dict[Operation, list[SSAValue | None]] = {}
        self.sized_by: dict[SSAValue, Operation] = {}
        self.nesting = 0  # grids being built, one inside another (see ensure_from_top)

    def loc_of(self, v: SSAValue):
        return v.owner.location if isinstance(v.owner, Operation) else self.kernel.location

    def tile_budget(self, dt: dtypes.DType) -> int:
        """Elements one tile may hold: SRAM shared by ~8 live tiles of 4-byte values."""
        return _pow2_floor(max(1024, self.target.sram_per_cu // (4 * 8)))

    # -- materialisation --
    def ensure_from_top(self, v: SSAValue) -> SSAValue:
        """`ensure(v)` with a shallow Python stack: when a grid needs a grid that needs a grid ...
        (a chain of matmuls) more than MAX_NESTED_GRIDS deep, the deepest one is built first, on
        its own, and the abandoned outer builds start again (they find it built)."""
        pending = [v]
        while pending:
            try:
                self.ensure(pending[-1])
                pending.pop()
            except _Deeper as deeper:
                if any(deeper.value is p for p in pending):  # v's grid needs v: not a zk op
                    op = deeper.value.owner
                    raise error("ZK1004", f"the `tile` pass cannot compute `{op.name}`",
                                span_of(op) if isinstance(op, Operation) else None,
                                help="`tile` takes the `zk` IR that `compile --emit zk` prints")
                pending.append(deeper.value)
        return self.materialized[v]

    def ensure(self, v: SSAValue) -> SSAValue:
        """The kernel-level tensor holding `v`, building the grid that computes it if needed."""
        if v in self.materialized:
            return self.materialized[v]
        if self.nesting >= MAX_NESTED_GRIDS:
            raise _Deeper(v)
        self.nesting += 1
        try:
            return self._materialize(v)
        finally:
            self.nesting -= 1

    def _materialize(self, v: SSAValue) -> SSAValue:
        op = v.owner
        if isinstance(op, zk.QuantizeOp):
            for r, out in zip(op.results, self.quantize_grid(op)):
                out.name_hint = out.name_hint or r.name_hint
                self.materialized[r] = out
            return self.materialized[v]
        if isinstance(op, zk.ReshapeOp):
            src = self.ensure(op.input)
            out = self.add(zk.ReshapeOp(src, _shape(v)), op.location)
        elif isinstance(op, zk.ConcatOp):
            out = self.concat(op)
        else:
            out = self.grid_for(v)
        if v.name_hint and not out.name_hint:
            out.name_hint = v.name_hint
        self.materialized[v] = out
        return out

    def add(self, op: Operation, loc) -> SSAValue:
        op.location = loc
        self.new_ops.append(op)
        return op.results[0]

    def empty(self, v: SSAValue, shape: Sequence[int] | None = None,
              element_type: Attribute | None = None) -> tile.EmptyOp:
        """A destination for `v` (not yet added: a grid that does not fit is discarded)."""
        t = TensorType(element_type or v.type.element_type, list(shape or _shape(v)))
        e = tile.EmptyOp(t)
        e.location = self.loc_of(v)
        if isinstance(v.owner, Operation) and "zk.place" in v.owner.attributes:
            e.attributes["zk.place"] = v.owner.attributes["zk.place"]
        return e

    def grid_for(self, v: SSAValue) -> SSAValue:
        op = v.owner
        mm = zk.matmul_feeding(op) if isinstance(op, Operation) else None
        if mm is not None and mm not in self.partials and _exclusive(mm, op):
            return self.matmul_grid(v, mm)
        if isinstance(op, (zk.ReduceOp, zk.ArgmaxOp)):
            return self.reduction_grid(v, op)
        return self.elementwise_grid(v)

    # -- tile sizes --
    def sizes_for(self, v: SSAValue) -> tuple[int, ...]:
        """Tile sizes for a grid over `v`: the directive's, else whole rows that fit."""
        directive = self.directive(v)
        shape = _shape(v)
        if directive is not None:
            sizes = directive.attributes["zk.tile"].values
            return tuple(min(s, d) for s, d in zip(sizes, shape))
        if not shape:
            return ()
        budget = self.tile_budget(_dtype(v))
        sizes = [1] * len(shape)
        sizes[-1] = min(shape[-1], budget)
        if len(shape) >= 2:
            rows = max(1, budget // sizes[-1])
            sizes[-2] = min(shape[-2], _pow2_floor(rows))
        return tuple(sizes)

    def reduction_sizes(self, v: SSAValue, axis: int, keep: bool) -> tuple[int, ...]:
        """Output tiles of a reduction grid: a few rows (or a run of columns when the reduced
        axis is not the last), leaving the tile budget to long chunks of the reduced axis."""
        directive = self.directive(v)
        shape = _shape(v)
        if directive is not None:
            sizes = directive.attributes["zk.tile"].values
            return tuple(min(s, d) for s, d in zip(sizes, shape))
        in_rank = len(shape) + (0 if keep else 1)
        kept = [d for d in range(in_rank) if d != axis]
        sizes = [1] * in_rank
        if kept:
            inner = kept[-1]
            sizes[inner] = min(_shape(v.owner.input)[inner], 8 if axis == in_rank - 1 else 64)
        if not keep:
            del sizes[axis]
        return tuple(sizes)

    def matmul_sizes(self, v: SSAValue, mm: zk.MatmulOp) -> tuple[int, int, int, int]:
        """(tm, tn, tk, split) from the directive, or chosen to fit SRAM and fill the chip."""
        m, n = _shape(mm.result)[-2:]
        k = _shape(mm.lhs)[-1]
        carrier = self.directive(v, mm)
        if carrier is not None:
            attr = carrier.attributes["zk.tile"]
            tm, tn, tk = attr.values
            return min(tm, m), min(tn, n), min(tk, k), attr.split_k.data
        elem = max(mma_dtype(mm).nbytes(1), 1)
        tk = min(k, _align_up([DEFAULT_TK], [self.k_multiple(mm)])[0])
        sram = self.target.sram_per_cu
        best = None
        for tm in TILE_CHOICES:
            for tn in TILE_CHOICES:
                tm_, tn_ = min(tm, _pow2_ceil(m)), min(tn, _pow2_ceil(n))
                need = (tm_ * tk + tk * tn_) * elem * self.buffers + tm_ * tn_ * 4 * 2
                if need <= sram and (best is None or tm_ * tn_ > best[0] * best[1]):
                    best = (tm_, tn_)
        tm, tn = best or (16, 16)
        tm, tn = min(tm, m), min(tn, n)
        batch = math.prod(_shape(mm.result)[:-2])
        tiles = batch * -(-m // tm) * -(-n // tn)
        split = 1
        cus = self.target.compute_units
        if tiles < cus and k >= 2 * MIN_SPLIT_K_CHUNK:
            split = max(1, min(-(-cus // tiles), k // MIN_SPLIT_K_CHUNK))
        return tm, tn, tk, split

    def directive(self, v: SSAValue, mm: zk.MatmulOp | None = None) -> Operation | None:
        """The `tile` directive that sizes a grid over `v` (see `_directive_op`): `[M, N, K]`
        of `mm` when the grid is that matmul's, else one size per dimension of `v`. Recorded
        as applied: every other directive is refused when tiling ends (`check_directives`)."""
        op = _directive_op(v, mm)
        if op is not None:
            self.applied.add(op)
            self.sized_by[v] = op
        return op

    def check_directives(self, ops: Sequence[Operation]) -> None:
        """Refuse each `tile` directive among `ops` that sized no grid, saying why (ZK0605),
        or which directive sized the grid that computes its value instead (ZK0606)."""
        for op in ops:
            if "zk.tile" not in op.attributes or op in self.applied:
                continue
            attr = op.attributes["zk.tile"]
            name = op.results[0].name_hint or "this value"
            written = f"`tile {name} {list(attr.values)}`"
            span = _loc_span(attr.loc) or span_of(op)
            notes = [Note(f"`{name}` is computed here", span_of(op))] if span_of(op) else []
            roots = self.computed_in.get(op, [])
            others = [self.sized_by[r] for r in roots if r in self.sized_by]
            if others:
                other = others[0]
                oname = other.results[0].name_hint or "another value"
                raise error("ZK0606", f"{written} cannot apply: `{name}` is computed inside the "
                            f"grid that `tile {oname} {list(other.attributes['zk.tile'].values)}`"
                            " sizes, and a grid takes its tiles from one directive", span,
                            notes=notes, help=f"keep one of `tile {name}` and `tile {oname}`")
            raise error("ZK0605", f"{written} cannot apply: " + _why_unused(op, roots), span,
                        notes=notes, help=_what_applies(op, name))

    def k_multiple(self, mm: zk.MatmulOp) -> int:
        """What a chosen K tile must be a multiple of: the scale blocks along K of a scaled mma's
        operands, and the 128-element promotion interval of `fp8_fast` accumulation."""
        out = 1
        if _fused_dtype(mm) is not None:
            rank = len(_shape(mm.lhs))
            for v, axis in ((mm.lhs, rank - 1), (mm.rhs, len(_shape(mm.rhs)) - 2)):
                op, a = _contraction_source(v, axis)
                for s in op.scales:
                    if _shape(s)[a] > 1:
                        out = math.lcm(out, zk.blocks_of(_shape(op.values), _shape(s))[a])
        if self.fp8_fast and mma_dtype(mm).is_low_precision:
            out = math.lcm(out, FP8_CHUNK)
        return out

    # -- grids --
    def new_grid(self, rank: int, loc, root: SSAValue | None = None) -> _Grid:
        return _Grid(self, rank, loc, root)

    def fit(self, v: SSAValue, build, sizes: tuple[int, ...], shrink,
            directive: Operation | None, what: str) -> SSAValue:
        """Build a grid with `sizes`, shrinking them until its buffers fit in SRAM.

        `build(sizes) -> (ops, result, grid)`. Sizes the schedule gave (the `directive` on that
        op) are never changed silently: if they do not fit, the error names the buffers and
        sizes that would. The grid's `tile.sizes` names the directive it took its sizes from."""
        from zhenwu_cc.passes.alloc_sram import plan_grid

        capacity = self.target.sram_per_cu
        too_big = None
        while True:
            ops, result, grid = build(sizes)
            plan = plan_grid(grid, self.buffers)
            if plan.peak <= capacity:
                break
            too_big = too_big or (sizes, plan, grid)
            smaller = shrink(sizes)
            if smaller is None:
                raise self.overflow(v, what, too_big, capacity, None, directive)
            sizes = smaller
        if too_big is not None and directive is not None:
            raise self.overflow(v, what, too_big, capacity, (sizes, plan.peak), directive)
        _record_directive(grid, directive)
        for op in ops:
            self.new_ops.append(op)
        return result

    def overflow(self, v: SSAValue, what: str, too_big, capacity: int, fits,
                 carrier: Operation | None):
        sizes, plan, grid = too_big
        notes = []
        for buf in sorted(plan.buffers, key=lambda b: b.offset):
            t = buf.first.value.type
            slots = f" x {buf.first.depth} slots" if buf.first.depth > 1 else ""
            notes.append(Note(f"{_shape_text(t)}: {buf.first.nbytes} bytes{slots}"))
        name = (carrier.results[0].name_hint if carrier is not None else None) or v.name_hint \
            or "this value"
        help = (f"`tile {name} {list(fits[0])}` fits ({fits[1]} bytes)" if fits else
                "even the smallest tiles do not fit: this target's SRAM is too small for it")
        return error("ZK0604", f"tiles of `{name}` ({what} {list(sizes)}) need {plan.peak} bytes "
                     f"of SRAM per compute unit; target `{self.target.name}` has {capacity}",
                     span_of(v.owner) if isinstance(v.owner, Operation) else None,
                     notes=notes, help=help)

    def elementwise_grid(self, v: SSAValue) -> SSAValue:
        shape = _shape(v)
        loc = self.loc_of(v)
        role = "copy" if v in self.block.args else "elementwise"
        need = _block_multiples(v.owner) if isinstance(v.owner, zk.DequantizeOp) else None

        def build(sizes):
            counts = tile.tile_counts(shape, sizes)
            g = self.new_grid(len(shape), loc, v)
            g.tile_elems = math.prod(sizes)
            idx = g.tile_index(counts)
            t = g.tile_of(v, Req(idx, sizes, (0,) * len(shape), shape))
            out = self.empty(v)
            grid = g.finish([out.result], role, counts, [(t, 0, idx, None)])
            grid.location = loc
            return [out, grid], grid.res[0], grid

        if need is None:
            return self.fit(v, build, self.sizes_for(v), _halve_largest, self.directive(v),
                            "tile")
        return self.fit(v, build, _align_up(self.sizes_for(v), need),
                        lambda sz: _shrink_aligned(sz, need), None, "tile")

    def quantize_grid(self, op: zk.QuantizeOp) -> list[SSAValue]:
        """Global values and scales of a quantised binding: a grid whose tiles hold whole scale
        blocks runs `tile.quantize` on the vector engine (padding masked to 0, which moves no
        amax); groups wider than a tile take their amax from the reduction the `cast` pass
        built."""
        x, loc = op.input, op.location
        shape = _shape(x)
        need = _block_multiples(op)
        carrier = self.directive(x)
        attr = carrier.attributes["zk.tile"] if carrier is not None else None
        given = attr is not None
        if given:
            sizes = tuple(min(t, n) for t, n in zip(attr.values, shape))
            if any(t % m for t, m in zip(sizes, need)):
                name = x.name_hint or "this value"
                raise error("ZK0803", f"`tile {name} {list(attr.values)}` cuts the scale blocks "
                            f"of `precision {name}`: its tiles must be multiples of "
                            f"{list(need)}", span_of(carrier),
                            help=f"`tile {name} {list(_align_up(sizes, need))}` holds whole "
                            "blocks")
        else:
            sizes = _align_up(self.sizes_for(x), need)

        def build(sizes):
            counts = tile.tile_counts(shape, sizes)
            g = self.new_grid(len(shape), loc, x)
            g.tile_elems = math.prod(sizes)
            idx = g.tile_index(counts)
            req = Req(idx, sizes, (0,) * len(shape), shape)
            xt = g.tile_of(x, req, loc)
            for d in range(len(shape)):
                if req.ragged(d) and not _zero_padded(xt):
                    xt = g.mask(xt, req, d, 0.0, loc)
            amax = None
            if op.amax is not None:
                amax = g.tile_of(op.amax, g.scale_req(req, shape, _shape(op.amax)), loc)
            sreqs = [g.scale_req(req, shape, _shape(r)) for r in op.results[1:]]
            q = tile.QuantizeOp(xt, amax, op.precision, op.blocked_axis,
                                [TensorType(r.type.element_type, list(sr.sizes))
                                 for r, sr in zip(op.results[1:], sreqs)])
            g.emit(q, loc)
            outs = [self.empty(r) for r in op.results]
            if isinstance(x.owner, Operation) and "zk.place" in x.owner.attributes:
                outs[0].attributes["zk.place"] = x.owner.attributes["zk.place"]
            stores = [(q.values, 0, idx, None)] + [
                (r, i, sr.idx, None) for i, (r, sr) in enumerate(zip(q.results[1:], sreqs), 1)]
            grid = g.finish([o.result for o in outs], "quantize", counts, stores)
            grid.location = loc
            return [*outs, grid], grid.res[0], grid

        first = self.fit(x, build, sizes, lambda sz: _shrink_aligned(sz, need),
                         carrier, "tile")
        return list(first.owner.res)

    def reduction_grid(self, v: SSAValue, op) -> SSAValue:
        """A grid over the kept dims that loops over chunks of the (single) reduced axis."""
        in_shape = _shape(op.input)
        axes = op.axis_list if isinstance(op, zk.ReduceOp) else (op.axis.value.data,)
        assert len(axes) == 1, "multi-axis reductions are split before tiling"
        axis = axes[0]
        keep = op.keepdims is not None
        out_sizes = self.reduction_sizes(v, axis, keep)
        kept = list(out_sizes)
        if not keep:
            kept.insert(axis, 1)
        budget = self.tile_budget(_dtype(op.input))
        other = math.prod(s for d, s in enumerate(kept) if d != axis)
        chunk = max(1, min(in_shape[axis], budget // max(other, 1)))
        if in_shape[axis] > chunk:
            chunk = _pow2_floor(chunk)
        return self.fit(v, lambda sizes: self._reduction(v, op, axis, sizes[:-1], sizes[-1]),
                        (*out_sizes, chunk), _halve_largest, self.directive(v),
                        "tile (and reduction chunk)")

    def _reduction(self, v: SSAValue, op, axis: int, out_sizes, chunk: int):
        in_shape = _shape(op.input)
        keep = op.keepdims is not None
        out_shape = _shape(v)
        kept_sizes = list(out_sizes)
        if not keep:
            kept_sizes.insert(axis, 1)
        trips = -(-in_shape[axis] // chunk)
        loc = op.location
        g = self.new_grid(len(out_shape), loc, v)
        counts = tile.tile_counts(out_shape, out_sizes)
        out_idx = list(g.tile_index(counts))
        kept_idx = list(out_idx)
        if not keep:
            kept_idx.insert(axis, g.zero)
        kind = "argmax" if isinstance(op, zk.ArgmaxOp) else _reduce_kind(op)
        dt = _dtype(op.input)
        ident = _identity("max" if kind == "argmax" else kind, dt)
        acc_shape = [s if d != axis else 1 for d, s in enumerate(kept_sizes)]

        def chunk_tile(k: SSAValue) -> SSAValue:
            idx = [k if d == axis else kept_idx[d] for d in range(len(in_shape))]
            sizes = [chunk if d == axis else kept_sizes[d] for d in range(len(in_shape))]
            req = Req(tuple(idx), tuple(sizes), (0,) * len(in_shape), in_shape, ident)
            x = g.tile_of(op.input, req, loc)
            if req.ragged(axis) and not isinstance(x.owner, tile.LoadOp):
                x = g.mask(x, req, axis, ident, loc)
            return x

        if kind == "argmax":
            init_m = g.emit(zk.ConstantOp(ident, TensorType(op.input.type.element_type, acc_shape)),
                            loc)
            i32 = dtypes.to_xdsl(dtypes.I32)
            init_i = g.emit(zk.ConstantOp(0, TensorType(i32, acc_shape)), loc)

            def body(k, accs):
                x = chunk_tile(k)
                tmax = g.emit(zk.ReduceMaxOp(x, [axis], True), loc)
                targ = g.emit(zk.ArgmaxOp(x, axis, True), loc)
                off = g.emit(tile.IotaOp([k if d == axis else g.zero for d in range(len(in_shape))],
                                         [1] * len(in_shape), axis, i32), loc)
                step = g.emit(zk.ConstantOp(chunk, TensorType(i32, [])), loc)
                base = g.emit(zk.MulOp(off, step), loc)
                garg = g.emit(zk.AddOp(targ, base), loc)
                better = g.emit(zk.CompareOp("gt", tmax, accs[0]), loc)
                return [g.emit(zk.MaxOp(accs[0], tmax), loc),
                        g.emit(zk.SelectOp(better, garg, accs[1]), loc)]

            result = g.loop(trips, [init_m, init_i], body, loc)[1]
        else:
            init = g.emit(zk.ConstantOp(ident, TensorType(op.result.type.element_type, acc_shape)),
                          loc)

            def body(k, accs):
                part = g.emit(_reduce_op(kind, chunk_tile(k), [axis]), loc)
                return [g.emit(_combine(kind, accs[0], part), loc)]

            result = g.loop(trips, [init], body, loc)[0]
            if isinstance(op, zk.ReduceMeanOp):
                result = g._scale(result, 1.0 / in_shape[axis], loc)
        if not keep:
            result = g.emit(zk.ReshapeOp(result, out_sizes), loc)
        out = self.empty(v)
        grid = g.finish([out.result], "reduction", counts, [(result, 0, tuple(out_idx), None)],
                        chunk)
        grid.location = loc
        return [out, grid], grid.res[0], grid

    def matmul_grid(self, v: SSAValue, mm: zk.MatmulOp) -> SSAValue:
        tm, tn, tk, split = self.matmul_sizes(v, mm)
        directive = self.directive(v, mm)
        split = _divisor_at_most(k_steps(mm, tk), split)
        multiple = self.k_multiple(mm)

        def shrink(sizes):
            return _halve_matmul(sizes, multiple)

        if split > 1:
            self.partials[mm] = self.fit(
                mm.result, lambda sz: self._split_k(mm, *sz, split), (tm, tn, tk),
                shrink, directive, "tile [M, N, K]"), split
            return self.elementwise_grid(v)
        return self.fit(v, lambda sz: self._matmul(v, mm, *sz), (tm, tn, tk), shrink,
                        directive, "tile [M, N, K]")

    def _matmul(self, v: SSAValue, mm: zk.MatmulOp, tm: int, tn: int, tk: int):
        out_shape = _shape(mm.result)
        loc = mm.location
        sizes = (1,) * (len(out_shape) - 2) + (tm, tn)
        g = self.new_grid(len(out_shape), loc, v)
        g.tile_elems = math.prod(sizes)
        counts = tile.tile_counts(out_shape, sizes)
        idx = g.tile_index(counts)
        req = Req(idx, sizes, (0,) * len(out_shape), out_shape)
        acc = self.accumulate(g, mm, req, lambda kk: kk, k_steps(mm, tk), tk, loc)
        g.anchor = (mm, req, acc)
        t = g.tile_of(v, req)
        out = self.empty(v)
        grid = g.finish([out.result], "matmul", counts, [(t, 0, idx, None)], tk)
        grid.location = loc
        return [out, grid], grid.res[0], grid

    def accumulate(self, g: _Grid, mm: zk.MatmulOp, req: Req, k_index, trips: int, tk: int,
                   loc) -> SSAValue:
        """The K loop of a matmul tile: loads (or computed prologue tiles) and tile.mma."""
        out_shape = _shape(mm.result)
        k = _shape(mm.lhs)[-1]
        acc_elem = (self.acc_type if _dtype(mm.lhs).is_float  # integers accumulate exactly
                    else mm.result.type.element_type)
        acc_t = TensorType(acc_elem, list(req.sizes))
        init = g.emit(zk.ConstantOp(0.0, acc_t), loc)

        def body(kv, accs):
            kk = k_index(kv)
            lhs_req = _matmul_operand_req(req, out_shape, _shape(mm.lhs), kk, tk, "lhs", g.zero)
            rhs_req = _matmul_operand_req(req, out_shape, _shape(mm.rhs), kk, tk, "rhs", g.zero)
            a, sa, b, sb = self.operand_tiles(g, mm, lhs_req, rhs_req, loc)
            if k % tk and not _zero_padded(a):
                a = g.mask(a, lhs_req, len(lhs_req.sizes) - 1, 0.0, loc)
            if k % tk and not _zero_padded(b):
                b = g.mask(b, rhs_req, len(rhs_req.sizes) - 2, 0.0, loc)
            fast = self.fp8_fast and _dtype(a).is_low_precision
            return [g.emit(tile.MmaOp(a, b, accs[0], sa, sb, fast), loc)]

        acc = g.loop(trips, [init], body, loc)[0]
        if acc_elem != mm.result.type.element_type:
            acc = g.emit(zk.CastOp(acc, mm.result.type.element_type), loc)
        return acc

    def operand_tiles(self, g: _Grid, mm: zk.MatmulOp, lhs_req: Req, rhs_req: Req, loc):
        """(a, a's scales, b, b's scales) for one K step: the low-precision values and scale
        tiles when both operands are dequantised and the tiles hold whole scale blocks (the
        narrower format widened to the other's, exactly), else the operands' own tiles."""
        wide = _fused_dtype(mm)
        if wide is None or not (_fusable(mm.lhs, lhs_req) and _fusable(mm.rhs, rhs_req)):
            return g.tile_of(mm.lhs, lhs_req, loc), [], g.tile_of(mm.rhs, rhs_req, loc), []
        (a, sa), (b, sb) = g.scaled_tile(mm.lhs, lhs_req), g.scaled_tile(mm.rhs, rhs_req)
        a, b = (g.emit(zk.CastOp(t, dtypes.to_xdsl(wide)), loc) if _dtype(t) != wide else t
                for t in (a, b))
        return a, sa, b, sb

    def _split_k(self, mm: zk.MatmulOp, tm: int, tn: int, tk: int, split: int):
        """Partial sums over `split` equal slices of K, one grid dimension, into an f32 tensor
        [split, *out]; consumers sum the partials inside their own tiles (`_sum_partials`)."""
        out_shape = _shape(mm.result)
        per_split = k_steps(mm, tk) // split
        loc = mm.location
        sizes = (1,) * (len(out_shape) - 2) + (tm, tn)
        g = self.new_grid(len(out_shape) + 1, loc, mm.result)
        s, *out_idx = g.index_args
        req = Req(tuple(out_idx), sizes, (0,) * len(out_shape), out_shape)
        steps = g.index_const(per_split, g.scopes[0])
        first = g.emit(arith.MuliOp(s, steps), loc)
        acc = self.accumulate(g, mm, req, lambda kv: g.emit(arith.AddiOp(first, kv), loc),
                              per_split, tk, loc)
        partials = self.empty(mm.result, (split, *out_shape), dtypes.to_xdsl(dtypes.F32))
        if acc.type.element_type != partials.result.type.element_type:
            acc = g.emit(zk.CastOp(acc, partials.result.type.element_type), loc)
        acc = g.emit(zk.ReshapeOp(acc, (1, *sizes)), loc)
        grid = g.finish([partials.result], "matmul",
                        (split, *tile.tile_counts(out_shape, sizes)),
                        [(acc, 0, (s, *out_idx), None)], tk)
        grid.location = loc
        return [partials, grid], grid.res[0], grid

    def concat(self, op: zk.ConcatOp) -> SSAValue:
        """One copy grid per input, each storing at its offset along the axis."""
        axis = op.axis.value.data
        empty = self.empty(op.result)
        self.new_ops.append(empty)
        dest = empty.result
        offset = 0
        for x in op.inputs:
            shape = _shape(x)
            sizes = self.sizes_for(x)
            g = self.new_grid(len(shape), op.location)
            counts = tile.tile_counts(shape, sizes)
            idx = g.tile_index(counts)
            t = g.tile_of(x, Req(idx, sizes, (0,) * len(shape), shape))
            base = [offset if d == axis else 0 for d in range(len(shape))]
            grid = g.finish([dest], "copy", counts, [(t, 0, idx, base)])
            _record_directive(grid, self.directive(x))
            dest = self.add(grid, op.location)
            offset += shape[axis]
        return dest

    # -- the whole kernel --
    def run(self) -> None:
        ret = self.block.last_op
        assert isinstance(ret, zk.ReturnOp)
        results: list[SSAValue] = []
        for v in ret.values:
            t = self.ensure_from_top(v)
            if t in results or not _is_fresh(t):
                t = self.copy_of(v, t)
            results.append(t)
        self.check_directives(list(self.block.ops))
        for op in self.new_ops:
            self.block.insert_op_before(op, ret)
        for i, t in enumerate(results):
            ret.operands[i] = t
        new = {id(op) for op in self.new_ops}
        for op in reversed(list(self.block.ops)):
            if op is not ret and id(op) not in new:
                op.detach()
                op.erase(safe_erase=False)

    def copy_of(self, v: SSAValue, t: SSAValue) -> SSAValue:
        """A fresh tensor for a result that is an input, a view, or returned twice."""
        shape = _shape(t)
        loc = self.loc_of(v)
        g = self.new_grid(len(shape), loc)
        sizes = self.sizes_for(v)  # a `tile` on the result (a reshape, say) sizes its copy
        counts = tile.tile_counts(shape, sizes)
        idx = g.tile_index(counts)
        tt = g._load(t, Req(idx, sizes, (0,) * len(shape), shape), loc)
        out = self.empty(t)
        self.new_ops.append(out)
        grid = g.finish([out.result], "copy", counts, [(tt, 0, idx, None)])
        _record_directive(grid, self.directive(v))
        return self.add(grid, loc)


def _block_multiples(op: zk.QuantizeOp | zk.DequantizeOp) -> tuple[int, ...]:
    """What the tiles of a grid over a (de)quantised tensor must be multiples of, per dim:
    the scale blocks where a dimension holds several of them."""
    values = op.input if isinstance(op, zk.QuantizeOp) else op.values
    shape = _shape(values)
    scales = op.results[1:] if isinstance(op, zk.QuantizeOp) else op.scales
    need = [1] * len(shape)
    for s in scales:
        for d, (n, b) in enumerate(zip(_shape(s), zk.blocks_of(shape, _shape(s)))):
            if n > 1:
                need[d] = math.lcm(need[d], b)
    return tuple(need)


def _align_up(sizes: Sequence[int], need: Sequence[int]) -> tuple[int, ...]:
    """Each size rounded down to a multiple of its `need` (at least one multiple)."""
    return tuple(max(m, t - t % m) for t, m in zip(sizes, need))


def _shrink_aligned(sizes: tuple[int, ...], need: Sequence[int]) -> tuple[int, ...] | None:
    """Halve the largest size that can shrink and stay a multiple of its `need`."""
    for d in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        half = _align_up([-(-sizes[d] // 2)], [need[d]])[0]
        if half < sizes[d]:
            return sizes[:d] + (half,) + sizes[d + 1:]
    return None


def _halve_largest(sizes: tuple[int, ...]) -> tuple[int, ...] | None:
    if max(sizes, default=1) <= 1:
        return None
    d = max(range(len(sizes)), key=lambda i: (sizes[i], -i))
    return tuple(-(-s // 2) if i == d else s for i, s in enumerate(sizes))


def _halve_matmul(sizes: tuple[int, int, int], k_multiple: int = 1
                  ) -> tuple[int, int, int] | None:
    """Shrink output tiles first (down to 16), then the K step (down to 16, keeping it a
    multiple of `k_multiple`)."""
    tm, tn, tk = sizes
    if max(tm, tn) > 16:
        return (-(-tm // 2), tn, tk) if tm >= tn else (tm, -(-tn // 2), tk)
    if tk > 16 and -(-tk // 2) % k_multiple == 0:
        return tm, tn, -(-tk // 2)
    return None


def _shape_text(t) -> str:
    return f"{dtypes.from_xdsl(t.element_type).name}{list(t.get_shape())}"


def _directive_op(v: SSAValue, mm: zk.MatmulOp | None = None) -> Operation | None:
    """The op whose `tile` directive sizes a grid over `v`: v's op, or an elementwise producer of
    the same shape that the grid computes inline (`tile y [...]` where the root is `f16(y)`).
    For the grid of matmul `mm` (with its epilogue up to `v`), a directive `[M, N, K]` of `mm`;
    for any other grid, a directive with one size per dimension (not a matmul's)."""
    stack, seen = [v], set()
    while stack:
        cur = stack.pop()
        op = cur.owner
        if not isinstance(op, Operation) or id(op) in seen or _shape(cur) != _shape(v):
            continue
        seen.add(id(op))
        if "zk.tile" in op.attributes:
            feeding = zk.matmul_feeding(op)
            if (feeding is mm) if mm is not None else feeding is None:
                return op
        if isinstance(op, zk.ELEMENTWISE_OPS):
            stack.extend(op.operands)
    return None


def _record_directive(grid: tile.GridOp, directive: Operation | None) -> None:
    """Name the directive a grid took its tiles from in its `tile.sizes`, for reports."""
    if directive is None:
        return
    used = dict(grid.attributes["tile.sizes"].data)
    used["directive"] = StringAttr(directive.results[0].name_hint or "")
    used["directive_sizes"] = _ints_attr(directive.attributes["zk.tile"].values)
    grid.attributes["tile.sizes"] = DictionaryAttr(used)


def _ints_attr(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _loc_span(loc) -> Span | None:
    """The schedule line a directive came from (unknown for IR written by hand)."""
    if isinstance(loc, FileLineColLoc):
        return Span.point(loc.filename.data, loc.line.data, loc.column.data)
    return None


def _why_unused(op: Operation, roots: Sequence[SSAValue | None]) -> str:
    """Why no grid took its tiles from the directive on `op` (whose value is computed inside
    the grids of `roots`, if any)."""
    name = op.results[0].name_hint or "this value"
    if isinstance(op, zk.ReshapeOp):
        return f"`{name}` is a reshape, a view of another tensor: no grid computes it"
    if isinstance(op, zk.ConcatOp):
        return f"`{name}` is a concat: each input is copied in with its own tiles"
    if not roots:
        return f"no kernel result depends on `{name}`, so no grid computes it"
    if zk.matmul_feeding(op) is not None:
        return (f"the matmul that feeds `{name}` has other uses, so it gets a grid of its own "
                f"and `{name}` is computed from its stored result")
    where = ", ".join(sorted({_grid_text(r) for r in roots}))
    return f"`{name}` gets no grid of its own; it is recomputed inside the tiles of {where}"


def _grid_text(root: SSAValue | None) -> str:
    if root is None:
        return "a copy grid"
    span = span_of(root.owner) if isinstance(root.owner, Operation) else None
    if root.name_hint:
        return f"the grid of `{root.name_hint}`" + (f" (line {span.line})" if span else "")
    return f"the grid at line {span.line}" if span else "another grid"


def _what_applies(op: Operation, name: str) -> str:
    if zk.matmul_feeding(op) is not None and not isinstance(op, zk.MatmulOp):
        return ("bind the matmul to a name of its own and tile that (`t = a @ b`, "
                f"`tile t [M, N, K]`), or drop `tile {name}`")
    return (f"drop `tile {name}`: `tile` sizes the grid of a value that gets one (a kernel "
            "result, a matmul and its epilogue, a reduction too long for its consumer's tile, "
            "the input of a reshape or concat); tile the value whose grid computes it")


def _is_fresh(t: SSAValue) -> bool:
    """Results must be written by a grid (a view of a grid result also counts)."""
    op = t.owner
    while isinstance(op, zk.ReshapeOp):
        op = op.input.owner
    return isinstance(op, tile.GridOp)


def _exclusive(mm: zk.MatmulOp, root: Operation) -> bool:
    """The matmul's value, and every value between it and `root`, is used only on the way to
    `root`: then computing the epilogue on the accumulator serves every use."""
    if root is mm:
        return True
    path = _path_ops(root, mm)
    inside = {id(op) for op in path}
    return all(id(use.operation) in inside
               for op in [mm, *path] if op is not root
               for use in op.results[0].uses)


def _path_ops(root: Operation, mm: zk.MatmulOp) -> list[Operation]:
    """The elementwise ops on paths from `mm` to `root` (root included)."""
    out, stack, seen = [], [root], set()
    while stack:
        op = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        out.append(op)
        for operand in op.operands:
            owner = operand.owner
            if isinstance(owner, zk.ELEMENTWISE_OPS) and _reaches(owner, mm):
                stack.append(owner)
    return out


def _reaches(op: Operation, target: Operation) -> bool:
    stack, seen = [op], set()
    while stack:
        cur = stack.pop()
        if cur is target:
            return True
        if id(cur) in seen or not isinstance(cur, zk.ELEMENTWISE_OPS):
            continue
        seen.add(id(cur))
        stack.extend(o.owner for o in cur.operands if isinstance(o.owner, Operation))
    return False


def _matmul_operand_req(req: Req, out_shape, in_shape, k_idx: SSAValue, tk: int, side: str,
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


def k_steps(mm: zk.MatmulOp, tk: int) -> int:
    return -(-_shape(mm.lhs)[-1] // tk)


def _divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n not above limit (split-K parts must be equal)."""
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _dequantized(v: SSAValue) -> zk.DequantizeOp | None:
    """The `zk.dequantize` a matmul operand is, through transposes."""
    while isinstance(v.owner, zk.TransposeOp):
        v = v.owner.input
    return v.owner if isinstance(v.owner, zk.DequantizeOp) else None


def _contraction_source(v: SSAValue, axis: int) -> tuple[zk.DequantizeOp, int] | None:
    """The dequantise behind a matmul operand and which of its axes `axis` of the operand is."""
    while isinstance(v.owner, zk.TransposeOp):
        axis = v.owner.permutation[axis]
        v = v.owner.input
    return (v.owner, axis) if isinstance(v.owner, zk.DequantizeOp) else None


def mma_dtype(mm: zk.MatmulOp) -> dtypes.DType:
    """The operand dtype the tensor engine runs a matmul in: the low-precision format when both
    operands are dequantised from compatible formats, else the operands' own."""
    return _fused_dtype(mm) or _dtype(mm.lhs)


def _zero_padded(t: SSAValue) -> bool:
    """Tiles whose padding is certainly zero: loads with pad 0, and their transposes/casts."""
    op = t.owner
    while isinstance(op, (zk.TransposeOp, zk.CastOp)):
        op = op.input.owner
    return isinstance(op, tile.LoadOp) and op.pad_value == 0.0


def _pow2_floor(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def _pow2_ceil(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


def used_tiles(grid: Operation) -> dict | None:
    """The tiles a `tile.grid` (or the `ppu.launch` lowered from it) runs, from its `tile.sizes`:
    {"sizes": result tile, "step": K tile or reduction chunk (None without a loop),
    "directive": the binding whose `tile` directive gave them (None: chosen by the compiler),
    "directive_sizes": that directive's sizes as written}."""
    attr = grid.attributes.get("tile.sizes")
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


def split_multi_axis_reductions(kernel: zk.KernelOp) -> None:
    """sum(x, (0, 1)) -> sum(sum(x, 1), 0): tiling handles one reduced axis per grid."""
    for op in list(kernel.body.walk()):
        if not isinstance(op, zk.ReduceOp) or len(op.axis_list) < 2:
            continue
        keep = op.keepdims is not None
        cur = op.input
        kind = type(op)
        inner = zk.ReduceSumOp if kind is zk.ReduceMeanOp else kind
        axes = sorted(op.axis_list, reverse=True)
        new_ops = []
        for i, a in enumerate(axes):
            cls = kind if (i == len(axes) - 1 and kind is not zk.ReduceMeanOp) else inner
            r = cls(cur, [a], True)
            r.location = op.location
            new_ops.append(r)
            cur = r.result
        if kind is zk.ReduceMeanOp:
            n = math.prod(_shape(op.input)[a] for a in op.axis_list)
            c = zk.ConstantOp(1.0 / n, TensorType(op.result.type.element_type, []))
            m = zk.MulOp(cur, c.result)
            c.location = m.location = op.location
            new_ops += [c, m]
            cur = m.result
        if not keep:
            r = zk.ReshapeOp(cur, _shape(op.result))
            r.location = op.location
            new_ops.append(r)
            cur = r.result
        for new in new_ops:
            kernel.body.block.insert_op_before(new, op)
        if op.result.name_hint:
            cur.name_hint = op.result.name_hint
        new_ops[-1].attributes.update(op.attributes)
        op.result.replace_all_uses_with(cur)
        op.detach()
        op.erase()


@dataclass(frozen=True)
class TilePass(ModulePass):
    """Cut every `zk.kernel` into `tile.grid`s (see the module docstring)."""

    name = "tile"
    target: str = "m890"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from zhenwu_cc.runtime.target import load_target

        target = load_target(self.target)
        for kernel in list(op.walk()):
            if isinstance(kernel, zk.KernelOp):
                _check_untiled(kernel)
                _check_primitives(kernel)
                _record_flops(kernel)
                split_multi_axis_reductions(kernel)
                _KernelTiler(kernel, target).run()


def _record_flops(kernel: zk.KernelOp) -> None:
    """Useful FLOPs of the source's matmuls by operand dtype (`zk.flops`), for achieved-TFLOP/s
    figures: tiles compute padding too, so the lowered program overstates them."""
    flops: dict[str, int] = {}
    for op in kernel.body.walk():
        if isinstance(op, zk.MatmulOp):
            name = mma_dtype(op).name
            flops[name] = flops.get(name, 0) + 2 * math.prod(_shape(op.result)) * _shape(op.lhs)[-1]
    if flops:
        kernel.attributes["zk.flops"] = DictionaryAttr(
            {k: IntegerAttr(v, 64) for k, v in sorted(flops.items())})


def _check_untiled(kernel: zk.KernelOp) -> None:
    """`tile` takes `zk` IR: a kernel it has already cut into grids is a diagnostic (ZK1004)."""
    for op in kernel.body.block.ops:
        if op.dialect_name() in ("tile", "ppu"):
            raise error("ZK1004", f"the `tile` pass expects `zk` IR, but kernel "
                        f"`{kernel.sym_name.data}` is already tiled (it holds `{op.name}`)",
                        span_of(op), help="run `tile` once, on the IR that `compile --emit zk` "
                        "prints")


def _check_primitives(kernel: zk.KernelOp) -> None:
    from zhenwu_cc.passes.decompose import COMPOSITES

    for op in kernel.body.walk():
        if isinstance(op, COMPOSITES):
            raise error("ZK0603", f"`{op.name}` must be expanded by `decompose` before `tile`",
                        span_of(op), help="run the pipeline `decompose,tile`",
                        notes=[Note("the default pipelines do this")])
