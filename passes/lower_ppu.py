"""`lower-ppu`: the tile program as the machine runs it (`tile` + `zk` → `ppu`).

Each `zk.kernel` becomes a `ppu.kernel` of the same name whose arguments are the input tensors
and then the output tensors, as HBM memrefs. The `tile.empty` behind a returned value (followed
through the grids that fill it and kernel-level reshapes) becomes that output argument (viewed in
the empty's shape if a reshape intervenes; its attributes, such as an HBM placement, become the
argument's); any other becomes a `ppu.global`. Each `tile.grid` becomes a `ppu.launch` over the
target's compute units; its body allocates each SRAM buffer that `alloc-sram` decided where the
buffer's life starts (a `ppu.slot` per step for multi-buffered ones), moves tiles with DMA and
computes into those buffers. Consecutive loads share one `ppu.wait`, placed before the first op
that needs them. Every op made carries the location of the op it comes from.

What the cost model needs from the compiler is in the program it reads (core/attrs.py): the
`ppu.kernel` keeps the `zk.kernel`'s attributes, among them `FLOPS` (the source matmuls'
FLOPs that `tile` counted), and each `ppu.launch` its grid's `TILE_SIZES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import (
    DenseArrayBase,
    IndexType,
    MemRefType,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from zhenwu_cc.core import attrs
from zhenwu_cc.dialects import ppu, tile, zk
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.dialects.tile import Placement, placement_of, root_of

from zhenwu_cc.core.diagnostics import error
from zhenwu_cc.core.target import DEFAULT_TARGET, load_target

REDUCTIONS = {zk.ReduceSumOp: "sum", zk.ReduceMaxOp: "max", zk.ReduceMinOp: "min"}


def _hbm(t: Attribute) -> MemRefType:
    assert isinstance(t, TensorType)
    return ppu.memref(t.element_type, t.get_shape(), "hbm")


def _ints(values: DenseArrayBase | None) -> tuple[int, ...] | None:
    return tuple(values.get_values()) if values is not None else None


def _vmap_fn(op: Operation) -> str:
    """The vector function of a `zk` elementwise op."""
    if isinstance(op, zk.CompareOp):
        return op.predicate.data
    fn = op.name.split(".")[1]
    assert fn in ppu.VMAP_UNARY + ppu.VMAP_BINARY + ppu.VMAP_TERNARY, (
        f"`{op.name}` is a composite: `decompose` expands it before tiling")
    return fn


def _returned_empties(kernel: zk.KernelOp) -> dict[tile.EmptyOp, int]:
    """The tile.empty each kernel result is written into, with the result's index."""
    ret = kernel.body.block.last_op
    assert isinstance(ret, zk.ReturnOp)
    out: dict[tile.EmptyOp, int] = {}
    for index, value in enumerate(ret.values):
        while not isinstance(value.owner, tile.EmptyOp):
            owner = value.owner
            if isinstance(owner, zk.ReshapeOp):
                value = owner.input
            else:
                assert isinstance(owner, tile.GridOp), (
                    "every kernel result is filled by a tile.grid (the `tile` pass)")
                value = owner.outs[value.index]
        assert value.owner not in out, "each kernel result has a tile.empty of its own"
        out[value.owner] = index
    return out


def _path(op: Operation, grid: tile.GridOp) -> list[Operation]:
    """`op` and the ops around it inside `grid`, outermost first."""
    path = [op]
    while (parent := path[-1].parent_op()) is not grid:
        path.append(parent)
    return path[::-1]


def _anchors(grid: tile.GridOp) -> dict[Operation, list[tuple[Placement, SSAValue]]]:
    """Where each buffer's ppu.alloc goes: before the op that starts the buffer's life, in the
    innermost block holding all its values, so that a buffer is live exactly while alloc-sram
    planned it (the executor checks liveness from the alloc on). A multi-buffered load's buffer
    starts before its loop: the DMA of a step runs during the one before."""
    first: dict[int, tuple[Placement, SSAValue]] = {}
    paths: dict[int, list[list[Operation]]] = {}
    for op in grid.body.walk():
        for value in op.results:
            if not isinstance(value.type, TensorType) or isinstance(op, zk.ReshapeOp):
                continue
            place = placement_of(value)
            if place is None:
                raise error("ZK0602", f"`{op.name}` inside a tile.grid has no SRAM buffer",
                            span_of(op), help="run `alloc-sram` before `lower-ppu`")
            # A load multi-buffered across steps starts its life before its loop.
            start = op.parent_op() if place.depth > 1 and op.parent_op() is not grid else op
            first.setdefault(place.buffer, (place, value))
            paths.setdefault(place.buffer, []).append(_path(start, grid))
    anchors: dict[Operation, list[tuple[Placement, SSAValue]]] = {}
    for buffer, ps in paths.items():
        common = 0
        while all(len(p) > common and p[common] is ps[0][common] for p in ps):
            common += 1
        # A loop that defines one of the values holds the others: the alloc goes before it.
        around = any(len(p) == common for p in ps)
        anchor = ps[0][common - 1] if around else ps[0][common]
        anchors.setdefault(anchor, []).append(first[buffer])
    return anchors


class _Lowering:
    """Lowers one kernel; `values` maps tile-level values to their ppu counterparts."""

    def __init__(self, cus: int):
        self.cus = cus
        self.values: dict[SSAValue, SSAValue] = {}
        self.allocs: dict[int, SSAValue] = {}  # buffer number -> ppu.alloc, in the current launch
        self.anchors: dict[Operation, list[tuple[Placement, SSAValue]]] = {}
        self.pending: list[SSAValue] = []  # tokens of loads not yet waited for
        self.turn: SSAValue | None = None  # the current launch's tile's turn on its CU
        self.grid_args: tuple[tuple[SSAValue, int], ...] = ()  # (index arg, extent)
        self.b: Builder

    def emit(self, new: Operation, source: Operation) -> Operation:
        new.location = source.location
        return self.b.insert(new)

    # ---- kernel level -----------------------------------------------------------------------
    def kernel(self, k: zk.KernelOp) -> ppu.KernelOp:
        ins = [_hbm(t) for t in k.function_type.inputs.data]
        outs = [_hbm(t) for t in k.function_type.outputs.data]
        block = Block(arg_types=[*ins, *outs])
        for arg, name in zip(block.args, [*k.arg_names, *k.names_of_results]):
            arg.name_hint = name
        for old, new in zip(k.body.block.args, block.args):
            new.location = old.location
            self.values[old] = new
        self.b = Builder(InsertPoint.at_end(block))
        outputs = block.args[len(ins):]
        returned = _returned_empties(k)
        for op in k.body.block.ops:
            if isinstance(op, tile.EmptyOp):
                self.empty(op, outputs[returned[op]] if op in returned else None)
            elif isinstance(op, tile.GridOp):
                self.grid(op)
            elif isinstance(op, zk.ReshapeOp):
                if all(isinstance(use.operation, zk.ReturnOp) for use in op.result.uses):
                    continue  # the data is already in the output argument
                self.values[op.result] = self.emit(
                    ppu.ViewOp(self.values[op.input], op.result.type.get_shape()), op).result
            else:
                assert isinstance(op, zk.ReturnOp), f"`{op.name}` outside a tile.grid"
                self.emit(ppu.ReturnOp(), op)
        arg_attrs = [a.data for a in k.arg_attrs.data] if k.arg_attrs else [{}] * len(ins)
        out_attrs: list[dict[str, Attribute]] = [{}] * len(outs)
        for e, index in returned.items():  # an output's placement sits on its tile.empty
            out_attrs[index] = dict(e.attributes)
        new = ppu.KernelOp(k.sym_name.data, ins, outs, Region(block),
                           arg_attrs=[*arg_attrs, *out_attrs],
                           attributes=dict(k.attributes))
        new.location = k.location
        return new

    def empty(self, op: tile.EmptyOp, output: SSAValue | None) -> None:
        if output is None:
            new = self.emit(ppu.GlobalOp(_hbm(op.result.type)), op)
            new.attributes |= op.attributes
            value = new.result
            value.name_hint = op.result.name_hint
        elif output.type.get_shape() != op.result.type.get_shape():
            value = self.emit(ppu.ViewOp(output, op.result.type.get_shape()), op).result
        else:
            value = output
        self.values[op.result] = value

    def grid(self, g: tile.GridOp) -> None:
        body = Block(arg_types=[IndexType()] * len(g.grid_shape))
        for old, new in zip(g.index_args, body.args):
            new.name_hint, new.location = old.name_hint, old.location
            self.values[old] = new
        for arg, value in zip([*g.in_args, *g.out_args], [*g.ins, *g.outs]):
            self.values[arg] = self.values[value]
        for res, value in zip(g.res, g.outs):
            self.values[res] = self.values[value]
        launch = self.emit(ppu.LaunchOp(g.grid_shape, self.cus, g.role.data, Region(body)), g)
        if attrs.TILE_SIZES in g.attributes:  # the tiles it runs, for reports
            launch.attributes[attrs.TILE_SIZES] = g.attributes[attrs.TILE_SIZES]
        outer, self.b = self.b, Builder(InsertPoint.at_end(body))
        self.allocs = {}
        self.anchors = _anchors(g)
        self.turn, self.grid_args = None, tuple(zip(body.args, g.grid_shape))
        self.block(g.body.block, None)
        self.emit(ppu.YieldOp(), g.body.block.last_op)
        self.b = outer

    def alloc(self, place: Placement, value: SSAValue) -> None:
        t = value.type
        assert isinstance(t, TensorType)
        shape = [*([place.depth] if place.depth > 1 else []), *t.get_shape()]
        new = self.emit(ppu.AllocOp(ppu.memref(t.element_type, shape, "sram"), place.offset,
                                    place.depth), value.owner)
        new.result.name_hint = value.name_hint
        self.allocs[place.buffer] = new.result

    def buffer(self, value: SSAValue, iv: SSAValue | None) -> SSAValue:
        """The SRAM memref a tile value is written into: if multi-buffered, its slot of this
        step, or of this tile's turn on its CU outside a loop (`turn_of`)."""
        place = placement_of(value)
        buf = self.allocs[place.buffer]
        if place.depth == 1:
            return buf
        return self.emit(ppu.SlotOp(buf, iv if iv is not None else self.turn_of(value.owner)),
                         value.owner).result

    def turn_of(self, source: Operation) -> SSAValue:
        """The turn of this launch's tile on its CU (tile t runs in wave t // cus): the slot a
        load multi-buffered across the tiles a CU runs in turn (alloc-sram) fills, so that a
        CU's next tile loads into the other slot while this one computes."""
        if self.turn is None:
            (linear, _), *rest = self.grid_args
            for arg, extent in rest:
                size = self.emit(arith.ConstantOp.from_int_and_width(extent, IndexType()), source)
                linear = self.emit(arith.MuliOp(linear, size), source).result
                linear = self.emit(arith.AddiOp(linear, arg), source).result
            cus = self.emit(arith.ConstantOp.from_int_and_width(self.cus, IndexType()), source)
            self.turn = self.emit(arith.FloorDivSIOp(linear, cus), source).result
        return self.turn

    # ---- grid bodies --------------------------------------------------------------------------
    def block(self, block: Block, iv: SSAValue | None) -> None:
        """Lower the ops of a grid or loop body, all but its terminator."""
        for op in block.ops:
            if op is block.last_op:
                break
            if not isinstance(op, tile.LoadOp) and op.dialect_name() != "arith":
                self.wait()  # every other op but index math may read what the loads bring
            for place, value in self.anchors.get(op, ()):
                self.alloc(place, value)
            if isinstance(op, tile.LoopOp):
                self.loop(op)
                continue
            for value in op.results:
                if isinstance(value.type, TensorType) and not isinstance(op, zk.ReshapeOp):
                    self.values[value] = self.buffer(value, iv)
            self.lower(op)
        self.wait()

    def wait(self) -> None:
        if self.pending:
            first = self.pending[0].owner
            assert isinstance(first, Operation)
            self.emit(ppu.WaitOp(self.pending), first)
            self.pending = []

    def copy(self, src: SSAValue, dst: SSAValue, source: Operation) -> None:
        if src != dst:
            self.emit(ppu.VMapOp("copy", [src], dst), source)

    def loop(self, op: tile.LoopOp) -> None:
        carried = [self.buffer(r, None) for r in op.res]
        for init, dst in zip(op.inits, carried):
            if self.values[init] != dst and isinstance(root_of(init).owner, zk.ConstantOp):
                self.emit(ppu.FillOp(root_of(init).owner.number, dst), op)
            else:
                self.copy(self.values[init], dst, op)
        body = Block(arg_types=[IndexType()])
        iv = body.args[0]
        iv.name_hint, iv.location = op.induction_var.name_hint, op.induction_var.location
        self.values[op.induction_var] = iv
        self.values.update(zip(op.iter_args, carried))
        self.values.update(zip(op.res, carried))
        loop = ppu.LoopOp(op.trip_count, Region(body))
        if attrs.LIVE_STEPS in op.attributes:
            loop.attributes[attrs.LIVE_STEPS] = op.attributes[attrs.LIVE_STEPS]
        self.emit(loop, op)
        outer, self.b = self.b, Builder(InsertPoint.at_end(body))
        self.block(op.body.block, iv)
        end = op.body.block.last_op
        for value, dst in zip(end.operands, carried):
            self.copy(self.values[value], dst, end)
        self.emit(ppu.YieldOp(), end)
        self.b = outer

    def lower(self, op: Operation) -> None:
        v = self.values
        lowering = _LOWERINGS.get(type(op))
        if lowering is not None:
            lowering(self, op)
        elif isinstance(op, zk.ELEMENTWISE_OPS):
            self.emit(ppu.VMapOp(_vmap_fn(op), [v[o] for o in op.operands], v[op.result]), op)
        elif isinstance(op, tuple(REDUCTIONS)):
            assert op.keepdims is not None, "reductions inside grids keep their dims"
            self.emit(ppu.VReduceOp(REDUCTIONS[type(op)], v[op.input], op.axis_list,
                                    v[op.result]), op)
        else:
            assert op.dialect_name() == "arith", f"`{op.name}` cannot be lowered inside a grid"
            self.emit(op.clone(value_mapper=v), op)


def _load(lo: _Lowering, op: tile.LoadOp) -> None:
    v = lo.values
    b, e = _ints(op.base), _ints(op.bound)
    new = lo.emit(ppu.DmaLoadOp(v[op.source], [v[i] for i in op.indices], v[op.result],
                                b, e, op.pad_value), op)
    lo.pending.append(new.token)


def _store(lo: _Lowering, op: tile.StoreOp) -> None:
    v = lo.values
    new = lo.emit(ppu.DmaStoreOp(v[op.value], v[op.dest], [v[i] for i in op.indices],
                                 _ints(op.base), _ints(op.bound)), op)
    lo.emit(ppu.WaitOp([new.token]), op)


def _mma(lo: _Lowering, op: tile.MmaOp) -> None:
    v = lo.values
    start = root_of(op.acc).owner
    if v[op.acc] != v[op.result] and isinstance(start, zk.ConstantOp):
        lo.emit(ppu.FillOp(start.number, v[op.result]), op)  # a constant start: fill, not copy
    else:
        lo.copy(v[op.acc], v[op.result], op)
    lo.emit(ppu.MmaOp(v[op.lhs], v[op.rhs], v[op.result], [v[s] for s in op.lhs_scales],
                      [v[s] for s in op.rhs_scales], op.fp8_fast is not None), op)


def _quantize(lo: _Lowering, op: tile.QuantizeOp) -> None:
    v = lo.values
    axis = op.axis.value.data if op.axis is not None else None
    lo.emit(ppu.VQuantizeOp(v[op.input], v[op.amax] if op.amax else None,
                            [v[r] for r in op.results], op.precision, axis), op)


def _iota(lo: _Lowering, op: tile.IotaOp) -> None:
    v = lo.values
    lo.emit(ppu.VIotaOp([v[i] for i in op.indices], op.sizes.get_values(),
                        op.axis.value.data, v[op.result]), op)


def _constant(lo: _Lowering, op: zk.ConstantOp) -> None:
    lo.emit(ppu.FillOp(op.number, lo.values[op.result]), op)


def _argmax(lo: _Lowering, op: zk.ArgmaxOp) -> None:
    assert op.keepdims is not None, "reductions inside grids keep their dims"
    v = lo.values
    lo.emit(ppu.VReduceOp("argmax", v[op.input], [op.axis.value.data], v[op.result]), op)


def _transpose(lo: _Lowering, op: zk.TransposeOp) -> None:
    v = lo.values
    lo.emit(ppu.VTransposeOp(v[op.input], op.permutation, v[op.result]), op)


def _broadcast(lo: _Lowering, op: zk.BroadcastOp) -> None:
    lo.copy(lo.values[op.input], lo.values[op.result], op)


def _reshape(lo: _Lowering, op: zk.ReshapeOp) -> None:
    view = lo.emit(ppu.ViewOp(lo.values[op.input], op.result.type.get_shape()), op)
    lo.values[op.result] = view.result


_LOWERINGS: dict[type[Operation], Callable[[_Lowering, Operation], None]] = {
    tile.LoadOp: _load, tile.StoreOp: _store, tile.MmaOp: _mma, tile.QuantizeOp: _quantize,
    tile.IotaOp: _iota,
    zk.ConstantOp: _constant, zk.ArgmaxOp: _argmax, zk.TransposeOp: _transpose,
    zk.BroadcastOp: _broadcast, zk.ReshapeOp: _reshape,
}


# frozen: xDSL's ModulePass is; no repr (start-up: nothing prints a pass)
@dataclass(frozen=True, repr=False)
class LowerPpuPass(ModulePass):
    """Turn every tile-level `zk.kernel` into a `ppu.kernel` (run `alloc-sram` first)."""

    name = "lower-ppu"

    target: str = DEFAULT_TARGET
    cus: int = 0  # compute units a launch spreads over; 0 = the target's

    def __post_init__(self) -> None:
        if self.cus < 0:
            raise ValueError("lower-ppu needs cus >= 0")

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        cus = self.cus
        if not cus:

            cus = load_target(self.target).compute_units
        for kernel in [k for k in op.walk() if isinstance(k, zk.KernelOp)]:
            _check_tiled(kernel)
            lowered = _Lowering(cus).kernel(kernel)
            lowered.attributes[attrs.TARGET] = StringAttr(self.target)
            Rewriter.replace_op(kernel, lowered)


def _check_tiled(kernel: zk.KernelOp) -> None:
    """`lower-ppu` takes tiled IR: a `zk` op outside the grids is a diagnostic (ZK1004)."""
    for op in kernel.body.block.ops:
        if op.dialect_name() != "tile" and not isinstance(op, (zk.ReshapeOp, zk.ReturnOp)):
            raise error("ZK1004", f"the `lower-ppu` pass expects tiled IR, but kernel "
                        f"`{kernel.sym_name.data}` computes `{op.name}` outside a tile.grid",
                        span_of(op), help="run `tile`, `place-hbm` and `alloc-sram` first, or "
                        "start from `compile --emit tile`")
