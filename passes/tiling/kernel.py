"""The kernel in the `tile` pass: `KernelTiler` materialises the values that need a grid of
their own (kernel results, anchors, inputs of views and concats) and builds each kind of grid
(elementwise, quantise, reduction, matmul with split-K, concat and copy), shrinking tiles until
the grid's buffers fit the target's SRAM (ZK0604)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import arith
from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.ir import Attribute, Operation, SSAValue
from zhenwu_cc.core import attrs
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.core.diagnostics import CompileError, Note, error
from zhenwu_cc.passes.sram_plan import DEFAULT_BUFFERS, plan_grid
from zhenwu_cc.passes.tiling.directives import Directives, record_directive
from zhenwu_cc.passes.tiling.flash import (
    FlashMatch,
    build_flash,
    discount_masked_flops,
    flash_sizes,
    match_flash,
    shrink_flash,
)
from zhenwu_cc.passes.tiling.epilogue import EpilogueReductions, epilogue_grid
from zhenwu_cc.passes.tiling.fuse_control import FuseControl
from zhenwu_cc.passes.tiling import costore, joint
from zhenwu_cc.passes.tiling.fusion import MatmulCones, matmul_grid_of
from zhenwu_cc.passes.tiling.grids import Grid, combine, identity, reduce_kind, reduce_op
from zhenwu_cc.passes.tiling.online import online_grid
from zhenwu_cc.passes.tiling.requests import (
    Req,
    dtype_of,
    matmul_operand_req,
    shape_of,
    zero_padded,
)
from zhenwu_cc.passes.tiling.scales import block_multiples, fused_dtype, fusable, k_multiple
from zhenwu_cc.passes.tiling.split import Splits, split_parts
from zhenwu_cc.passes.tiling.sizes import (
    align_up,
    equal_parts,
    grid_sizes,
    halve_largest,
    halve_matmul,
    k_steps,
    keep_last,
    matmul_sizes,
    parts_kept,
    pow2_floor,
    reduction_sizes,
    reduction_split,
    shrink_aligned,
    tile_budget,
)

MAX_NESTED_GRIDS = 32  # grid builds on Python's stack at once (see ensure_from_top)


class _Deeper(Exception):
    """Raised by `ensure` past MAX_NESTED_GRIDS: build `value` first (never leaves the pass)."""

    def __init__(self, value: SSAValue):
        super().__init__()
        self.value = value


class KernelTiler:
    """Cuts one `zk.kernel` into `tile.grid`s (see passes/tile.py's docstring)."""

    def __init__(self, kernel: zk.KernelOp, target, fuse: bool = True):
        self.kernel = kernel
        self.target = target
        self.block = kernel.body.block
        self.materialized: dict[SSAValue, SSAValue] = {a: a for a in self.block.args}
        # split-K matmuls and split reductions: their partials tensor and part count
        self.partials: dict[Operation, tuple[SSAValue, int]] = {}
        self.partial_positions: dict[zk.ArgmaxOp, SSAValue] = {}  # a split argmax's indices
        self.online: dict[Operation, tuple[SSAValue, bool]] = {}  # sum -> (maxima, guarded)
        # the fraction of scores a flash grid's mask lets through, where it skips blocks
        self.visible: dict[zk.MatmulOp, float] = {}
        self.cones = MatmulCones()  # what each elementwise op is computed from (tiling.joint)
        self.new_ops: list[Operation] = []
        self.buffers = (kernel.attributes[attrs.BUFFERS].value.data
                        if attrs.BUFFERS in kernel.attributes else DEFAULT_BUFFERS)
        acc = kernel.attributes.get(attrs.ACCUMULATE)
        self.acc_type = acc if acc is not None else dtypes.to_xdsl(dtypes.F32)
        mode = kernel.attributes.get(attrs.ACCUMULATE_MODE)
        self.fp8_fast = isinstance(mode, StringAttr) and mode.data == "fp8_fast"
        self.directives = Directives()
        self.splits = Splits()
        self.fusion = FuseControl(kernel, fuse)  # the fusions ask it (`fuse NAME off`, --no-fuse)
        self.epilogue = EpilogueReductions(self.block, self.fusion, tile_budget(target))
        self.nesting = 0  # grids being built, one inside another (see ensure_from_top)
        self.co_stored: tuple = (None, {})  # the last elementwise grid's other results (costore)

    def loc_of(self, v: SSAValue):
        return v.owner.location if isinstance(v.owner, Operation) else self.kernel.location

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
            out = self.add(zk.ReshapeOp(src, shape_of(v)), op.location)
        elif isinstance(op, zk.ConcatOp):
            out = self.concat(op)
        else:
            out = self.grid_for(v)
            self.materialized.update(costore.taken(self, out))
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
        t = TensorType(element_type or v.type.element_type, list(shape or shape_of(v)))
        e = tile.EmptyOp(t)
        e.location = self.loc_of(v)
        if isinstance(v.owner, Operation) and attrs.PLACE in v.owner.attributes:
            e.attributes[attrs.PLACE] = v.owner.attributes[attrs.PLACE]
        return e

    def grid_for(self, v: SSAValue) -> SSAValue:
        op = v.owner
        mms = self.joint_of(v)
        if mms is not None:
            return joint.joint_grid(self, v, mms)
        if (group := self.epilogue.match(v)) is not None:
            return epilogue_grid(self, v, group)
        mm = matmul_grid_of(op, self.partials) if isinstance(op, Operation) else None
        if mm is not None:
            flash = match_flash(mm)
            if (flash is not None and not flash.asks_split(v)
                    and self.fusion.allows_all(flash.group())):
                self.epilogue.claim(flash.group())
                return self.flash_grid(v, flash)
            return self.matmul_grid(v, mm)
        if isinstance(op, (zk.ReduceOp, zk.ArgmaxOp)):
            return self.reduction_grid(v, op)
        return self.elementwise_grid(v)

    # -- fused operand chains (tiling.joint) --
    def joint_of(self, v: SSAValue) -> list[zk.MatmulOp] | None:
        return joint.joint_of(self, v)

    def joint_root(self, v: SSAValue) -> bool:
        return joint.joint_root(self, v)

    # -- tile sizes (tiling.sizes), from the directive that sizes each grid --
    def directive(self, v: SSAValue, mm: zk.MatmulOp | None = None) -> Operation | None:
        return self.directives.sizing(v, mm)

    def sizes_for(self, v: SSAValue) -> tuple[int, ...]:
        return grid_sizes(v, self.directive(v), tile_budget(self.target))

    def reduction_sizes(self, v: SSAValue, axis: int, keep: bool) -> tuple[int, ...]:
        return reduction_sizes(v, axis, keep, self.directive(v))

    def matmul_sizes(self, v: SSAValue, mm: zk.MatmulOp) -> tuple[int, int, int, int]:
        return matmul_sizes(mm, self.directive(v, mm), self.target, self.buffers,
                            self.k_multiple(mm))

    def k_multiple(self, mm: zk.MatmulOp) -> int:
        return k_multiple(mm, self.fp8_fast)

    # -- grids --
    def new_grid(self, rank: int, loc, root: SSAValue | None = None) -> Grid:
        return Grid(self, rank, loc, root)

    def fit(self, v: SSAValue, build, sizes: tuple[int, ...], shrink,
            directive: Operation | None, what: str, spell=list) -> SSAValue:
        """Build a grid with `sizes`, shrinking them until its buffers fit in SRAM.

        `build(sizes) -> (ops, result, grid)`. Sizes the schedule gave (the `directive` on that
        op) are never changed silently: if they do not fit, the error names the buffers and
        sizes that would (as `spell` writes them in the directive). The grid's `tile.sizes` names the directive it took its sizes from."""
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
                raise self.overflow(v, what, too_big, capacity, None, directive, spell)
            sizes = smaller
        if too_big is not None and directive is not None:
            raise self.overflow(v, what, too_big, capacity, (sizes, plan.peak), directive,
                                spell)
        record_directive(grid, directive)
        for op in ops:
            self.new_ops.append(op)
        return result

    def overflow(self, v: SSAValue, what: str, too_big, capacity: int, fits,
                 carrier: Operation | None, spell=list):
        sizes, plan, grid = too_big
        buffers = [(dtypes.from_xdsl(buf.first.value.type.element_type),
                    buf.first.value.type.get_shape(), buf.first.nbytes, buf.first.depth)
                   for buf in sorted(plan.buffers, key=lambda b: b.offset)]
        name = (carrier.results[0].name_hint if carrier is not None else None) or v.name_hint \
            or "this value"
        return sram_overflow(name, what, sizes, plan.peak, buffers, self.target, capacity,
                             span_of(v.owner) if isinstance(v.owner, Operation) else None, fits,
                             spell)

    def elementwise_grid(self, v: SSAValue) -> SSAValue:
        shape = shape_of(v)
        loc = self.loc_of(v)
        role = "copy" if v in self.block.args else "elementwise"
        need = block_multiples(v.owner) if isinstance(v.owner, zk.DequantizeOp) else None

        def build(sizes):  # with other results it computes at its tiles (tiling.costore)
            return costore.build(self, v, sizes, role, loc)

        if need is None:
            return self.fit(v, build, self.sizes_for(v), halve_largest, self.directive(v),
                            "tile")
        return self.fit(v, build, align_up(self.sizes_for(v), need),
                        lambda sz: shrink_aligned(sz, need), None, "tile")

    def quantize_grid(self, op: zk.QuantizeOp) -> list[SSAValue]:
        """Global values and scales of a quantised binding: a grid whose tiles hold whole scale
        blocks runs `tile.quantize` on the vector engine (padding masked to 0, which moves no
        amax); groups wider than a tile take their amax from the reduction the `cast` pass
        built."""
        x, loc = op.input, op.location
        shape = shape_of(x)
        need = block_multiples(op)
        carrier = self.directive(x)
        attr = carrier.attributes[attrs.TILE] if carrier is not None else None
        given = attr is not None
        if given:
            sizes = tuple(min(t, n) for t, n in zip(attr.values, shape))
            if any(t % m for t, m in zip(sizes, need)):
                name = x.name_hint or "this value"
                raise error("ZK0803", f"`tile {name} {list(attr.values)}` cuts the scale blocks "
                            f"of `precision {name}`: its tiles must be multiples of "
                            f"{list(need)}", span_of(carrier),
                            help=f"`tile {name} {list(align_up(sizes, need))}` holds whole "
                            "blocks")
        else:
            sizes = align_up(self.sizes_for(x), need)

        def build(sizes):
            counts = tile.tile_counts(shape, sizes)
            g = self.new_grid(len(shape), loc, x)
            g.tile_elems = math.prod(sizes)
            idx = g.tile_index(counts)
            req = Req(idx, sizes, (0,) * len(shape), shape)
            xt = g.tile_of(x, req, loc)
            for d in range(len(shape)):
                if req.ragged(d) and not zero_padded(xt):
                    xt = g.mask(xt, req, d, 0.0, loc)
            amax = None
            if op.amax is not None:
                amax = g.tile_of(op.amax, g.scale_req(req, shape, shape_of(op.amax)), loc)
            sreqs = [g.scale_req(req, shape, shape_of(r)) for r in op.results[1:]]
            q = tile.QuantizeOp(xt, amax, op.precision, op.blocked_axis,
                                [TensorType(r.type.element_type, list(sr.sizes))
                                 for r, sr in zip(op.results[1:], sreqs)])
            g.emit(q, loc)
            outs = [self.empty(r) for r in op.results]
            if isinstance(x.owner, Operation) and attrs.PLACE in x.owner.attributes:
                outs[0].attributes[attrs.PLACE] = x.owner.attributes[attrs.PLACE]
            stores = [(q.values, 0, idx, None)] + [
                (r, i, sr.idx, None) for i, (r, sr) in enumerate(zip(q.results[1:], sreqs), 1)]
            grid = g.finish([o.result for o in outs], "quantize", counts, stores)
            grid.location = loc
            return [*outs, grid], grid.res[0], grid

        first = self.fit(x, build, sizes, lambda sz: shrink_aligned(sz, need),
                         carrier, "tile")
        return list(first.owner.res)

    def reduction_grid(self, v: SSAValue, op) -> SSAValue:
        """A grid over the kept dims that loops over chunks of the (single) reduced axis."""
        in_shape = shape_of(op.input)
        axes = op.axis_list if isinstance(op, zk.ReduceOp) else (op.axis.value.data,)
        assert len(axes) == 1, "multi-axis reductions are split before tiling"
        axis = axes[0]
        keep = op.keepdims is not None
        out_sizes = self.reduction_sizes(v, axis, keep)
        kept = list(out_sizes)
        if not keep:
            kept.insert(axis, 1)
        budget = tile_budget(self.target)
        other = math.prod(s for d, s in enumerate(kept) if d != axis)
        chunk = max(1, min(in_shape[axis], budget // max(other, 1)))
        if in_shape[axis] > chunk:
            chunk = pow2_floor(chunk)
        tiles = math.prod(tile.tile_counts(shape_of(v), out_sizes))
        split = reduction_split(tiles, -(-in_shape[axis] // chunk), self.target.compute_units)
        shrink = parts_kept(halve_largest, in_shape[axis], split, 1) if split > 1 \
            else halve_largest
        if split_parts(op) is not None:  # `split NAME S`: exactly S parts, the chunk kept
            split = split_parts(op)
            chunk = self.splits.chunk(op, in_shape[axis], chunk)
            shrink = keep_last(halve_largest)
        both = online_grid(self, v, op, (*out_sizes, chunk), split, shrink) if split > 1 else None
        if both is not None:  # a softmax's max and sum in one grid (tiling.online)
            return both
        if split > 1:
            built = []

            def build(sizes):
                ops, result, grid = self._reduction(v, op, axis, sizes[:-1], sizes[-1], split)
                built[:] = [grid]
                return ops, result, grid

            self.partials[op] = self.fit(v, build, (*out_sizes, chunk), shrink,
                                         self.directive(v), "tile (and reduction chunk)"), split
            self.splits.record(built[0], op)
            if isinstance(op, zk.ArgmaxOp):  # each part's maximum, then its position
                self.partial_positions[op] = built[0].res[1]
            return self.elementwise_grid(v)
        result = self.fit(v, lambda sizes: self._reduction(v, op, axis, sizes[:-1], sizes[-1]),
                          (*out_sizes, chunk), shrink, self.directive(v),
                          "tile (and reduction chunk)")
        self.splits.record(result.owner, op)
        return result

    def _reduction(self, v: SSAValue, op, axis: int, out_sizes, chunk: int, split: int = 1):
        """The reduction's grid; with `split` > 1 a leading grid dimension cuts the chunks into
        equal parts whose partial results go to a tensor [split, *out] that consumers combine
        inside their own tiles (`Grid.combine_partials`, as split-K's partial sums)."""
        in_shape = shape_of(op.input)
        keep = op.keepdims is not None
        out_shape = shape_of(v)
        kept_sizes = list(out_sizes)
        if not keep:
            kept_sizes.insert(axis, 1)
        trips = -(-in_shape[axis] // chunk)
        loc = op.location
        g = self.new_grid(len(out_shape) + (split > 1), loc, v)
        counts = tile.tile_counts(out_shape, out_sizes)
        if split > 1:
            part, *out_idx = g.index_args
            per_part = g.index_const(trips // split, g.scopes[0])
            first = g.emit(arith.MuliOp(part, per_part), loc)
            trips //= split
        else:
            out_idx = list(g.tile_index(counts))
        kept_idx = list(out_idx)
        if not keep:
            kept_idx.insert(axis, g.zero)

        def chunk_at(k: SSAValue) -> SSAValue:
            return g.emit(arith.AddiOp(first, k), loc) if split > 1 else k
        kind = "argmax" if isinstance(op, zk.ArgmaxOp) else reduce_kind(op)
        dt = dtype_of(op.input)
        ident = identity("max" if kind == "argmax" else kind, dt)
        acc_shape = [s if d != axis else 1 for d, s in enumerate(kept_sizes)]

        def chunk_tile(k: SSAValue) -> SSAValue:
            k = chunk_at(k)
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
                at = chunk_at(k)
                off = g.emit(tile.IotaOp([at if d == axis else g.zero for d in range(len(in_shape))],
                                         [1] * len(in_shape), axis, i32), loc)
                step = g.emit(zk.ConstantOp(chunk, TensorType(i32, [])), loc)
                base = g.emit(zk.MulOp(off, step), loc)
                garg = g.emit(zk.AddOp(targ, base), loc)
                better = g.emit(zk.CompareOp("gt", tmax, accs[0]), loc)
                return [g.emit(zk.MaxOp(accs[0], tmax), loc),
                        g.emit(zk.SelectOp(better, garg, accs[1]), loc)]

            maxima, result = g.loop(trips, [init_m, init_i], body, loc)
        else:
            init = g.emit(zk.ConstantOp(ident, TensorType(op.result.type.element_type, acc_shape)),
                          loc)

            def body(k, accs):
                part = g.emit(reduce_op(kind, chunk_tile(k), [axis]), loc)
                return [g.emit(combine(kind, accs[0], part), loc)]

            result = g.loop(trips, [init], body, loc)[0]
            if isinstance(op, zk.ReduceMeanOp) and split == 1:  # partial sums are scaled after
                result = g.scale(result, 1.0 / in_shape[axis], loc)
        if not keep:
            result = g.emit(zk.ReshapeOp(result, out_sizes), loc)
        if split > 1:
            parts = [result]
            outs = [self.empty(v, (split, *out_shape))]
            if kind == "argmax":  # the maxima decide which part's position wins
                parts.insert(0, maxima if keep else g.emit(zk.ReshapeOp(maxima, out_sizes), loc))
                outs.insert(0, self.empty(v, (split, *out_shape), op.input.type.element_type))
            stores = [(g.emit(zk.ReshapeOp(t, (1, *out_sizes)), loc), i, (part, *out_idx), None)
                      for i, t in enumerate(parts)]
            grid = g.finish([o.result for o in outs], "reduction", (split, *counts), stores,
                            chunk, split)
            grid.location = loc
            return [*outs, grid], grid.res[0], grid
        else:
            out = self.empty(v)
            grid = g.finish([out.result], "reduction", counts,
                            [(result, 0, tuple(out_idx), None)], chunk)
        grid.location = loc
        return [out, grid], grid.res[0], grid

    def matmul_grid(self, v: SSAValue, mm: zk.MatmulOp) -> SSAValue:
        tm, tn, tk, split = self.matmul_sizes(v, mm)
        directive = self.directive(v, mm)
        split = equal_parts(mm, tk, split)
        multiple = self.k_multiple(mm)

        def shrink(sizes):
            return halve_matmul(sizes, multiple)

        if split > 1:  # the parts divide the K steps of this K tile: keep it so
            shrink = parts_kept(lambda mn: halve_matmul((*mn, tk), multiple)[:2]
                                 if max(mn) > 16 else None, shape_of(mm.lhs)[-1], split, multiple)

        if split_parts(mm) is not None:  # `split NAME S`: split_k S exactly, the K tile kept
            split = split_parts(mm)
            tk = self.splits.k_tile(mm, directive, tk, multiple)
            shrink = keep_last(lambda mn: halve_matmul((*mn, tk), multiple)[:2]
                                if max(mn) > 16 else None)
        if split > 1:
            self.partials[mm] = self.fit(
                mm.result, lambda sz: self._split_k(mm, *sz, split), (tm, tn, tk),
                shrink, directive, "tile [M, N, K]"), split
            self.splits.record(self.partials[mm][0].owner, mm)
            return self.elementwise_grid(v)
        result = self.fit(v, lambda sz: self._matmul(v, mm, *sz), (tm, tn, tk), shrink,
                          directive, "tile [M, N, K]")
        self.splits.record(result.owner, mm)
        return result

    def flash_grid(self, v: SSAValue, f: FlashMatch) -> SSAValue:
        """softmax(S) @ V in one grid with online softmax (`tiling.flash`)."""
        sizes, carrier, spell = flash_sizes(self, v, f)
        out = self.fit(v, lambda sz: build_flash(self, v, f, *sz), sizes, shrink_flash,
                       carrier, "flash-attention tile", spell)
        record_directive(out.owner, carrier, self.directive(f.x, f.qk))
        if f.pv in self.visible:
            discount_masked_flops(self.kernel, f, self.visible.pop(f.pv))
        return out

    def _matmul(self, v: SSAValue, mm: zk.MatmulOp, tm: int, tn: int, tk: int):
        g, req = self.matrix_grid(v, shape_of(mm.result), tm, tn, mm.location)
        acc = self.accumulate(g, mm, req, lambda kk: kk, k_steps(mm, tk), tk, mm.location)
        g.anchors[mm] = (req, acc)
        return self.store_root(g, v, req, "matmul", tk, mm.location)

    def matrix_grid(self, v: SSAValue, out_shape, tm: int, tn: int, loc) -> tuple[Grid, Req]:
        """A grid computing `v` in [tm, tn] tiles of the last two dimensions of `out_shape`
        (one batch index per tile), and the request for its tile."""
        sizes = (1,) * (len(out_shape) - 2) + (tm, tn)
        g = self.new_grid(len(out_shape), loc, v)
        g.tile_elems = math.prod(sizes)
        g.counts = tile.tile_counts(out_shape, sizes)
        idx = g.tile_index(g.counts)
        return g, Req(idx, sizes, (0,) * len(out_shape), out_shape)

    def store_root(self, g: Grid, v: SSAValue, req: Req, role: str, step: int, loc):
        """Finish a `matrix_grid`: compute `v`'s tile, store it, as `fit`'s `build` returns."""
        t = g.tile_of(v, req)
        out = self.empty(v)
        grid = g.finish([out.result], role, g.counts, [(t, 0, req.idx, None)], step)
        grid.location = loc
        return [out, grid], grid.res[0], grid

    def accumulate(self, g: Grid, mm: zk.MatmulOp, req: Req, k_index, trips: int, tk: int,
                   loc, unrolled: bool = False) -> SSAValue:
        """The K loop of a matmul tile: loads (or computed prologue tiles) and tile.mma. With
        `unrolled` the K steps are emitted one after another without a loop (a flash grid's
        scores, inside its key/value loop: loops do not nest, and tiles that do not depend on
        the key/value step, the query tile's slices, stay outside that loop)."""
        return self.accumulate_all(g, [mm], req, k_index, trips, tk, loc, unrolled)[0]

    def accumulate_all(self, g: Grid, mms: list[zk.MatmulOp], req: Req, k_index, trips: int,
                       tk: int, loc, unrolled: bool = False) -> list[SSAValue]:
        """`accumulate` for matmuls of one output shape and K in one loop, an accumulator
        each; a shared operand's tile is loaded once per step (tiles are built once)."""
        out_shape = shape_of(mms[0].result)
        k = shape_of(mms[0].lhs)[-1]
        acc_elems = [self.acc_type if dtype_of(mm.lhs).is_float  # integers accumulate exactly
                     else mm.result.type.element_type for mm in mms]
        inits = [g.emit(zk.ConstantOp(0.0, TensorType(e, list(req.sizes))), loc)
                 for e in acc_elems]

        def body(kv, accs):
            kk = k_index(kv)
            out = []
            for mm, acc in zip(mms, accs):
                lhs_req = matmul_operand_req(req, out_shape, shape_of(mm.lhs), kk, tk, "lhs",
                                             g.zero)
                rhs_req = matmul_operand_req(req, out_shape, shape_of(mm.rhs), kk, tk, "rhs",
                                             g.zero)
                a, sa, b, sb = self.operand_tiles(g, mm, lhs_req, rhs_req, loc)
                if k % tk and not zero_padded(a):
                    a = g.mask(a, lhs_req, len(lhs_req.sizes) - 1, 0.0, loc)
                if k % tk and not zero_padded(b):
                    b = g.mask(b, rhs_req, len(rhs_req.sizes) - 2, 0.0, loc)
                fast = self.fp8_fast and dtype_of(a).is_low_precision
                out.append(g.emit(tile.MmaOp(a, b, acc, sa, sb, fast), loc))
            return out

        if unrolled:
            accs = inits
            for kv in range(trips):
                accs = body(g.index_const(kv, g.scopes[0]), accs)
        else:
            accs = g.loop(trips, inits, body, loc)
        return [g.emit(zk.CastOp(acc, mm.result.type.element_type), loc)
                if e != mm.result.type.element_type else acc
                for mm, acc, e in zip(mms, accs, acc_elems)]

    def operand_tiles(self, g: Grid, mm: zk.MatmulOp, lhs_req: Req, rhs_req: Req, loc):
        """(a, a's scales, b, b's scales) for one K step: the low-precision values and scale
        tiles when both operands are dequantised and the tiles hold whole scale blocks (the
        narrower format widened to the other's, exactly), else the operands' own tiles."""
        wide = fused_dtype(mm)
        if wide is None or not (fusable(mm.lhs, lhs_req) and fusable(mm.rhs, rhs_req)):
            return g.tile_of(mm.lhs, lhs_req, loc), [], g.tile_of(mm.rhs, rhs_req, loc), []
        (a, sa), (b, sb) = g.scaled_tile(mm.lhs, lhs_req), g.scaled_tile(mm.rhs, rhs_req)
        a, b = (g.emit(zk.CastOp(t, dtypes.to_xdsl(wide)), loc) if dtype_of(t) != wide else t
                for t in (a, b))
        return a, sa, b, sb

    def _split_k(self, mm: zk.MatmulOp, tm: int, tn: int, tk: int, split: int):
        """Partial sums over `split` equal slices of K, one grid dimension, into an f32 tensor
        [split, *out]; consumers sum the partials inside their own tiles (`_sum_partials`)."""
        out_shape = shape_of(mm.result)
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
                        [(acc, 0, (s, *out_idx), None)], tk, split)
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
            shape = shape_of(x)
            sizes = self.sizes_for(x)
            g = self.new_grid(len(shape), op.location)
            counts = tile.tile_counts(shape, sizes)
            idx = g.tile_index(counts)
            t = g.tile_of(x, Req(idx, sizes, (0,) * len(shape), shape))
            base = [offset if d == axis else 0 for d in range(len(shape))]
            grid = g.finish([dest], "copy", counts, [(t, 0, idx, base)])
            record_directive(grid, self.directive(x))
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
        self.directives.check(list(self.block.ops))
        self.splits.check(list(self.block.ops), ret.values)
        self.fusion.check(list(self.block.ops))
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
        shape = shape_of(t)
        loc = self.loc_of(v)
        g = self.new_grid(len(shape), loc)
        sizes = self.sizes_for(v)  # a `tile` on the result (a reshape, say) sizes its copy
        counts = tile.tile_counts(shape, sizes)
        idx = g.tile_index(counts)
        tt = g.load(t, Req(idx, sizes, (0,) * len(shape), shape), loc)
        out = self.empty(t)
        self.new_ops.append(out)
        grid = g.finish([out.result], "copy", counts, [(tt, 0, idx, None)])
        record_directive(grid, self.directive(v))
        return self.add(grid, loc)


def sram_overflow(name: str, what: str, sizes, peak: int, buffers, target, capacity: int,
                  span, fits, spell=list) -> CompileError:
    """ZK0604 for tiles of `name` that need `peak` bytes of SRAM: `buffers` (dtype, shape,
    bytes, slots) by offset, and the smaller tiles that `fits` as (sizes, peak), if any, written
    as the directive spells them (`spell`). The fast cost path (zhenwu_cc/fast_cost.py) raises
    it too."""
    notes = [Note(f"{dtype.name}{list(shape)}: {nbytes} bytes"
                  + (f" x {depth} slots" if depth > 1 else ""))
             for dtype, shape, nbytes, depth in buffers]
    help = (f"`tile {name} {spell(fits[0])}` fits ({fits[1]} bytes)" if fits else
            "even the smallest tiles do not fit: this target's SRAM is too small for it")
    return error("ZK0604", f"tiles of `{name}` ({what} {spell(sizes)}) need {peak} bytes "
                 f"of SRAM per compute unit; target `{target.name}` has {capacity}", span,
                 notes=notes, help=help)


def _is_fresh(t: SSAValue) -> bool:
    """Results must be written by a grid (a view of a grid result also counts)."""
    op = t.owner
    while isinstance(op, zk.ReshapeOp):
        op = op.input.owner
    return isinstance(op, tile.GridOp)

