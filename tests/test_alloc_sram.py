"""The `alloc-sram` pass: buffers of values live at the same time never overlap (checked by
running each grid body symbolically), dead buffers and in-place updates are reused, loads in
loops are multi-buffered as the schedule says, and a grid that does not fit is a ZK0601."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Block, Operation, SSAValue
from xdsl.parser import Parser
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.dialects.tile import placement_of, root_of
from zhenwu_cc.passes.alloc_sram import AllocSramPass
from zhenwu_cc.passes.sram_plan import value_bytes
from zhenwu_cc.passes.registry import get_passes

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.pipeline import make_context

# ---- tile programs (shared with test_lower_ppu.py) ----------------------------------------------
GEMM = """
zk.kernel @gemm(%a: tensor<100x64xf16>, %b: tensor<64x48xf16>, %bias: tensor<48xf32>) -> (c: tensor<100x48xf32>) {
  %e = tile.empty : tensor<100x48xf32>
  %c = tile.grid [4, 2] (%i, %j) ins(%ta = %a : tensor<100x64xf16>, %tb = %b : tensor<64x48xf16>, %tbias = %bias : tensor<48xf32>) outs(%tc = %e : tensor<100x48xf32>) role matmul {
    %c0 = arith.constant 0 : index
    %zero = zk.constant 0.0 : tensor<32x32xf32>
    %acc = tile.loop %k = 0 to 2 iter(%acc_in = %zero : tensor<32x32xf32>) -> (tensor<32x32xf32>) {
      %x = tile.load %ta[%i, %k] tile [32, 32] : tensor<100x64xf16> -> tensor<32x32xf16>
      %y = tile.load %tb[%k, %j] tile [32, 32] : tensor<64x48xf16> -> tensor<32x32xf16>
      %r = tile.mma %x, %y, %acc_in : tensor<32x32xf16>, tensor<32x32xf16> -> tensor<32x32xf32>
      tile.yield %r : tensor<32x32xf32>
    }
    %bt = tile.load %tbias[%j] tile [32] pad 1.5 : tensor<48xf32> -> tensor<32xf32>
    %o = zk.add %acc, %bt : tensor<32x32xf32>, tensor<32xf32> -> tensor<32x32xf32>
    tile.store %o, %tc[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<100x48xf32>
    tile.yield
  }
  zk.return %c : tensor<100x48xf32>
}
"""

# A row maximum: the loop carries a max accumulator; kept dims are dropped before the store.
ROWMAX = """
zk.kernel @rowmax(%x: tensor<64x100xf32>) -> (m: tensor<64xf32>) {
  %e = tile.empty : tensor<64xf32>
  %m = tile.grid [4] (%i) ins(%tx = %x : tensor<64x100xf32>) outs(%tm = %e : tensor<64xf32>) role reduction {
    %init = zk.constant -3.0e+38 : tensor<16x1xf32>
    %acc = tile.loop %k = 0 to 4 iter(%a = %init : tensor<16x1xf32>) -> (tensor<16x1xf32>) {
      %t = tile.load %tx[%i, %k] tile [16, 32] pad -3.0e+38 : tensor<64x100xf32> -> tensor<16x32xf32>
      %r = zk.reduce_max %t axes [1] keepdims : tensor<16x32xf32> -> tensor<16x1xf32>
      %n = zk.max %a, %r : tensor<16x1xf32>, tensor<16x1xf32> -> tensor<16x1xf32>
      tile.yield %n : tensor<16x1xf32>
    }
    %flat = zk.reshape %acc : tensor<16x1xf32> to tensor<16xf32>
    tile.store %flat, %tm[%i] tile [16] : tensor<16xf32>, tensor<64xf32>
    tile.yield
  }
  zk.return %m : tensor<64xf32>
}
"""

# Elementwise, with a rank-0 constant used through broadcasting.
SCALE = """
zk.kernel @scale(%x: tensor<50x40xf16>) -> (y: tensor<50x40xf16>) {
  %e = tile.empty : tensor<50x40xf16>
  %y = tile.grid [2, 2] (%i, %j) ins(%tx = %x : tensor<50x40xf16>) outs(%ty = %e : tensor<50x40xf16>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [32, 32] : tensor<50x40xf16> -> tensor<32x32xf16>
    %w = zk.cast %t : tensor<32x32xf16> to tensor<32x32xf32>
    %two = zk.constant 0.5 : tensor<f32>
    %m = zk.mul %w, %two : tensor<32x32xf32>, tensor<f32> -> tensor<32x32xf32>
    %x2 = zk.exp %m : tensor<32x32xf32>
    %o = zk.cast %x2 : tensor<32x32xf32> to tensor<32x32xf16>
    tile.store %o, %ty[%i, %j] tile [32, 32] : tensor<32x32xf16>, tensor<50x40xf16>
    tile.yield
  }
  zk.return %y : tensor<50x40xf16>
}
"""

# Two grids: the first one's result is an intermediate tensor the second reads.
TWO_GRIDS = """
zk.kernel @two(%x: tensor<64x64xf32>, %b: tensor<64xf32>) -> (y: tensor<64x64xf32>) {
  %e0 = tile.empty : tensor<64x64xf32>
  %h = tile.grid [2, 2] (%i, %j) ins(%tx = %x : tensor<64x64xf32>) outs(%th = %e0 : tensor<64x64xf32>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [32, 32] : tensor<64x64xf32> -> tensor<32x32xf32>
    %u = zk.exp %t : tensor<32x32xf32>
    tile.store %u, %th[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<64x64xf32>
    tile.yield
  }
  %e1 = tile.empty : tensor<64x64xf32>
  %y = tile.grid [2, 2] (%i, %j) ins(%th = %h : tensor<64x64xf32>, %tb = %b : tensor<64xf32>) outs(%ty = %e1 : tensor<64x64xf32>) role elementwise {
    %t = tile.load %th[%i, %j] tile [32, 32] : tensor<64x64xf32> -> tensor<32x32xf32>
    %bt = tile.load %tb[%j] tile [32] : tensor<64xf32> -> tensor<32xf32>
    %u = zk.add %t, %bt : tensor<32x32xf32>, tensor<32xf32> -> tensor<32x32xf32>
    tile.store %u, %ty[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<64x64xf32>
    tile.yield
  }
  zk.return %y : tensor<64x64xf32>
}
"""

# The kernel returns a reshape of a grid's result: the grid writes a view of the output.
RESHAPED = """
zk.kernel @flat(%x: tensor<8x16xf32>) -> (y: tensor<128xf32>) {
  %e = tile.empty : tensor<8x16xf32>
  %g = tile.grid [1, 1] (%i, %j) ins(%tx = %x : tensor<8x16xf32>) outs(%tg = %e : tensor<8x16xf32>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [8, 16] : tensor<8x16xf32> -> tensor<8x16xf32>
    %n = zk.neg %t : tensor<8x16xf32>
    tile.store %n, %tg[%i, %j] tile [8, 16] : tensor<8x16xf32>, tensor<8x16xf32>
    tile.yield
  }
  %y = zk.reshape %g : tensor<8x16xf32> to tensor<128xf32>
  zk.return %y : tensor<128xf32>
}
"""

# Two grids fill the two halves of one output: the destination chain leads back to one empty.
HALVES = """
zk.kernel @halves(%x: tensor<8x32xf32>) -> (y: tensor<8x32xf32>) {
  %e = tile.empty : tensor<8x32xf32>
  %a = tile.grid [1] (%i) ins(%tx = %x : tensor<8x32xf32>) outs(%ta = %e : tensor<8x32xf32>) role elementwise {
    %t = tile.load %tx[%i, %i] tile [8, 16] : tensor<8x32xf32> -> tensor<8x16xf32>
    %n = zk.neg %t : tensor<8x16xf32>
    tile.store %n, %ta[%i, %i] tile [8, 16] : tensor<8x16xf32>, tensor<8x32xf32>
    tile.yield
  }
  %b = tile.grid [1] (%i) ins(%tx = %x : tensor<8x32xf32>) outs(%tb = %a : tensor<8x32xf32>) role elementwise {
    %t = tile.load %tx[%i, %i] tile [8, 16] base [0, 16] : tensor<8x32xf32> -> tensor<8x16xf32>
    %n = zk.abs %t : tensor<8x16xf32>
    tile.store %n, %tb[%i, %i] tile [8, 16] base [0, 16] : tensor<8x16xf32>, tensor<8x32xf32>
    tile.yield
  }
  zk.return %b : tensor<8x32xf32>
}
"""

# A loop whose init is needed after the loop and whose yielded value is computed while the
# accumulator is still read: both need copies; a store inside the loop.
CARRY = """
zk.kernel @carry(%x: tensor<32x64xf32>) -> (y: tensor<32x96xf32>) {
  %e = tile.empty : tensor<32x96xf32>
  %y = tile.grid [1] (%i) ins(%tx = %x : tensor<32x64xf32>) outs(%ty = %e : tensor<32x96xf32>) role elementwise {
    %c2 = arith.constant 2 : index
    %s = tile.load %tx[%i, %i] tile [32, 32] : tensor<32x64xf32> -> tensor<32x32xf32>
    %acc = tile.loop %k = 0 to 2 iter(%a = %s : tensor<32x32xf32>) -> (tensor<32x32xf32>) {
      %t = tile.load %tx[%i, %k] tile [32, 32] : tensor<32x64xf32> -> tensor<32x32xf32>
      %q = zk.add %a, %t : tensor<32x32xf32>, tensor<32x32xf32> -> tensor<32x32xf32>
      %p = zk.transpose %q perm [1, 0] : tensor<32x32xf32> -> tensor<32x32xf32>
      %z = zk.mul %a, %p : tensor<32x32xf32>, tensor<32x32xf32> -> tensor<32x32xf32>
      tile.store %z, %ty[%i, %k] tile [32, 32] : tensor<32x32xf32>, tensor<32x96xf32>
      tile.yield %p : tensor<32x32xf32>
    }
    %o = zk.add %acc, %s : tensor<32x32xf32>, tensor<32x32xf32> -> tensor<32x32xf32>
    tile.store %o, %ty[%i, %c2] tile [32, 32] : tensor<32x32xf32>, tensor<32x96xf32>
    tile.yield
  }
  zk.return %y : tensor<32x96xf32>
}
"""

# Masks from iotas, select with a scalar, a row sum broadcast and transposed, and an argmax
# into a second (i32) result.
MISC = """
zk.kernel @misc(%x: tensor<16x16xf32>) -> (y: tensor<16x16xf32>, idx: tensor<16xi32>) {
  %e0 = tile.empty : tensor<16x16xf32>
  %e1 = tile.empty : tensor<16xi32>
  %y, %idx = tile.grid [1, 1] (%i, %j) ins(%tx = %x : tensor<16x16xf32>) outs(%ty = %e0 : tensor<16x16xf32>, %ti = %e1 : tensor<16xi32>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [16, 16] : tensor<16x16xf32> -> tensor<16x16xf32>
    %r = tile.iota [%i, %j] tile [16, 16] axis 0 : tensor<16x16xi32>
    %c = tile.iota [%i, %j] tile [16, 16] axis 1 : tensor<16x16xi32>
    %mask = zk.compare "le", %c, %r : tensor<16x16xi32>, tensor<16x16xi32> -> tensor<16x16xi1>
    %low = zk.constant -1.0e+04 : tensor<f32>
    %sel = zk.select %mask, %t, %low : tensor<16x16xi1>, tensor<16x16xf32>, tensor<f32> -> tensor<16x16xf32>
    %s = zk.reduce_sum %sel axes [1] keepdims : tensor<16x16xf32> -> tensor<16x1xf32>
    %b = zk.broadcast %s : tensor<16x1xf32> to tensor<16x16xf32>
    %tt = zk.transpose %b perm [1, 0] : tensor<16x16xf32> -> tensor<16x16xf32>
    %o = zk.add %tt, %sel : tensor<16x16xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
    tile.store %o, %ty[%i, %j] tile [16, 16] : tensor<16x16xf32>, tensor<16x16xf32>
    %am = zk.argmax %t axis 1 keepdims : tensor<16x16xf32> -> tensor<16x1xi32>
    %amf = zk.reshape %am : tensor<16x1xi32> to tensor<16xi32>
    tile.store %amf, %ti[%i] tile [16] : tensor<16xi32>, tensor<16xi32>
    tile.yield
  }
  zk.return %y, %idx : tensor<16x16xf32>, tensor<16xi32>
}
"""

PROGRAMS = {"gemm": GEMM, "rowmax": ROWMAX, "scale": SCALE, "two_grids": TWO_GRIDS,
            "reshaped": RESHAPED, "halves": HALVES, "carry": CARRY, "misc": MISC}


def with_buffers(text: str, buffers: int) -> str:
    """The program with the schedule's `buffers N` (the kernel's `zk.buffers`)."""
    schedule = f") attributes {{zk.buffers = {buffers} : i64}} {{\n  %e"
    return text.replace(") {\n  %e", schedule, 1)


def parse(text: str) -> ModuleOp:
    module = Parser(make_context(), text, "t.mlir").parse_module()
    module.verify()
    return module


def allocate(text: str, **options) -> ModuleOp:
    module = parse(text)
    AllocSramPass(**{"sram_bytes": 1 << 20, **options}).apply(make_context(), module)
    module.verify()
    return module


def grids(module: ModuleOp) -> list[tile.GridOp]:
    return [op for op in module.walk() if isinstance(op, tile.GridOp)]


def named(module: ModuleOp, name: str) -> SSAValue:
    """The first value printed as %name (a result or a block argument)."""
    for op in module.walk():
        for value in op.results:
            if value.name_hint == name:
                return value
        for region in op.regions:
            for block in region.blocks:
                for arg in block.args:
                    if arg.name_hint == name:
                        return arg
    raise KeyError(name)


def buffer_of(value: SSAValue) -> tuple[int, int]:
    """(offset, depth) of a tile value."""
    place = placement_of(value)
    return place.offset, place.depth


# ---- the checker: run a grid body symbolically, byte by byte ------------------------------------
def check_buffers(grid: tile.GridOp, trips: int = 3) -> None:
    """Every read of a tile value must find the bytes its definition wrote, untouched by any
    other value since. Loops run up to `trips` steps; a multi-buffered load of step k+1 is
    written into its slot when step k starts (the DMA overlaps the step)."""
    peak = grid.attributes["sram.peak"].value.data
    owner = np.zeros(peak, np.int64)
    tokens = itertools.count(1)
    latest: dict[SSAValue, tuple[int, int]] = {}  # value -> (token, slot) it was written with

    def span(value: SSAValue, slot: int) -> slice:
        offset, depth = buffer_of(value)
        assert offset % 128 == 0 and 0 <= slot < depth
        n = value_bytes(value)
        assert offset + n * depth <= peak
        return slice(offset + slot * n, offset + (slot + 1) * n)

    def write(value: SSAValue, slot: int = 0) -> tuple[int, int]:
        token = next(tokens)
        owner[span(value, slot)] = token
        latest[value] = (token, slot)
        return token, slot

    def read(value: SSAValue) -> None:
        value = root_of(value)
        if not isinstance(value.type, TensorType) or value.owner is grid.body.block:
            return
        token, slot = latest[value]
        assert (owner[span(value, slot)] == token).all(), f"%{value.name_hint} was overwritten"

    def disjoint_or_in_place(op: Operation, operand: SSAValue) -> None:
        """An op writes over an operand only elementwise (same type) or as mma's accumulator."""
        x = root_of(operand)
        if not isinstance(x.type, TensorType) or x.owner is grid.body.block:
            return
        for y in op.results:
            if not isinstance(y.type, TensorType) or isinstance(op, zk.ReshapeOp):
                continue
            a, b = span(x, latest[x][1]), span(y, 0)
            if a.stop <= b.start or b.stop <= a.start:
                continue
            assert a == b and (isinstance(op, zk.ELEMENTWISE_OPS) and x.type == y.type
                               or isinstance(op, tile.MmaOp) and x == root_of(op.acc)), (
                f"{op.name} writes %{y.name_hint} over its operand %{x.name_hint}")

    def prefetched(block: Block) -> list[tile.LoadOp]:
        return [op for op in block.ops
                if isinstance(op, tile.LoadOp) and buffer_of(op.result)[1] > 1]

    def carry(values, args) -> None:
        """Accumulators take their next values one after another, as lower-ppu copies them."""
        for value, arg in zip(values, args):
            read(value)
            value = root_of(value)
            if buffer_of(value) == buffer_of(arg) and latest[value][1] == 0:
                latest[arg] = latest[value]  # already in place: nothing moves
            else:
                write(arg)

    def run(block: Block, pending: dict[Operation, tuple[int, int]]) -> None:
        for op in block.ops:
            if isinstance(op, tile.YieldOp):
                return
            if isinstance(op, tile.LoopOp):
                carry(op.inits, op.iter_args)
                loads = prefetched(op.body.block)
                step = {ld: write(ld.result, 0) for ld in loads}
                for k in range(min(op.trip_count, trips)):
                    after = {ld: write(ld.result, (k + 1) % buffer_of(ld.result)[1])
                             for ld in loads if k + 1 < op.trip_count}
                    run(op.body.block, step)
                    carry(op.body.block.last_op.operands, op.iter_args)
                    step = after
                for res, arg in zip(op.res, op.iter_args):
                    latest[res] = latest[arg]
                continue
            for operand in op.operands:
                read(operand)
                disjoint_or_in_place(op, operand)
            if op in pending:
                latest[op.results[0]] = pending[op]
            elif isinstance(op, zk.ReshapeOp):
                continue
            else:
                for value in op.results:
                    if isinstance(value.type, TensorType):
                        write(value)

    run(grid.body.block, {})


# ---- tests ------------------------------------------------------------------------------------
def test_registered():
    assert get_passes()["alloc-sram"]() is AllocSramPass


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_live_buffers_never_overlap(name):
    module = allocate(PROGRAMS[name])
    for grid in grids(module):
        check_buffers(grid)


@pytest.mark.parametrize("buffers", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_live_buffers_never_overlap_at_every_depth(name, buffers):
    module = allocate(with_buffers(PROGRAMS[name], buffers))
    for grid in grids(module):
        check_buffers(grid)


def test_gemm_layout():
    """The accumulator is updated in place; the bias reuses the bytes of the dead A slots."""
    module = allocate(GEMM)
    place = {n: buffer_of(named(module, n)) for n in ("zero", "acc_in", "r", "acc", "x", "y",
                                                          "bt", "o")}
    assert place == {"zero": (0, 1), "acc_in": (0, 1), "r": (0, 1), "acc": (0, 1),
                     "x": (4096, 2), "y": (8192, 2), "bt": (4096, 1), "o": (0, 1)}
    assert grids(module)[0].attributes["sram.peak"].value.data == 12288


def test_elementwise_in_place_and_reuse():
    module = allocate(SCALE)
    at = {n: buffer_of(named(module, n))[0] for n in ("t", "w", "two", "m", "x2", "o")}
    assert at["m"] == at["x2"] == at["w"]  # mul and exp overwrite their operand
    assert at["w"] != at["t"]  # a cast changes the dtype: never in place
    assert at["two"] == at["t"] == 0  # the scalar and the f16 result reuse the dead load's bytes
    assert at["o"] == 0
    assert grids(module)[0].attributes["sram.peak"].value.data == 2048 + 4096


def test_accumulator_loop_shares_one_buffer():
    module = allocate(ROWMAX)
    names = ("init", "a", "n", "acc", "flat")
    assert len({buffer_of(named(module, n)) for n in names}) == 1
    assert buffer_of(named(module, "t"))[1] == 2
    assert buffer_of(named(module, "r")) != buffer_of(named(module, "a"))


def test_loop_copies_where_sharing_is_impossible():
    module = allocate(CARRY)
    acc = buffer_of(named(module, "acc"))
    assert buffer_of(named(module, "s")) != acc  # read again after the loop
    assert buffer_of(named(module, "p")) != acc  # written while %a is still read
    assert buffer_of(named(module, "z")) == acc  # %a's last reader overwrites it in place


@pytest.mark.parametrize("buffers", [1, 3, 4])
def test_depth_follows_the_schedule(buffers):
    module = allocate(with_buffers(GEMM, buffers))
    for name in ("x", "y"):
        assert buffer_of(named(module, name))[1] == buffers
    assert buffer_of(named(module, "bt"))[1] == 1  # outside the loop: one slot
    loop = next(op for op in module.walk() if isinstance(op, tile.LoopOp))
    assert list(loop.attributes["sram.depth"].get_values()) == [1]


# SCALE over 16 x 16 tiles: more than m890's 128 compute units, so each runs several in turn.
SCALE_MANY = SCALE.replace("50x40", "512x512").replace("[2, 2]", "[16, 16]")


def test_loopless_grid_multi_buffers_its_loads_across_a_cus_tiles():
    """With more tiles than compute units, a loop-less grid's load gets `buffers` slots (the
    next tile's DMA fills one while this tile computes) and lives for the whole body; with one
    tile per CU, with `buffers 1`, or where the slots would not fit SRAM, it keeps one."""
    module = allocate(SCALE_MANY)
    assert buffer_of(named(module, "t"))[1] == 2
    peak = grids(module)[0].attributes["sram.peak"].value.data
    assert peak == 2 * 2048 + 4096 + 2048  # the slots live on: the f16 result cannot reuse them
    check_buffers(grids(module)[0])
    assert buffer_of(named(allocate(with_buffers(SCALE_MANY, 3)), "t"))[1] == 3
    assert buffer_of(named(allocate(with_buffers(SCALE_MANY, 1)), "t"))[1] == 1
    assert buffer_of(named(allocate(SCALE), "t"))[1] == 1  # 4 tiles: one per CU
    tight = allocate(SCALE_MANY, sram_bytes=peak - 1)
    assert buffer_of(named(tight, "t"))[1] == 1
    assert grids(tight)[0].attributes["sram.peak"].value.data == 2048 + 4096


def test_alignment_option():
    module = allocate(MISC, alignment=512)
    offsets = [buffer_of(v)[0] for op in grids(module)[0].body.walk() for v in op.results
               if isinstance(v.type, TensorType)]
    assert offsets and all(o % 512 == 0 for o in offsets)


def test_records_on_defining_ops_only():
    module = allocate(TWO_GRIDS)
    for op in module.walk():
        inside = isinstance(op.parent_op(), tile.GridOp | tile.LoopOp)
        tiles = any(isinstance(v.type, TensorType) for v in op.results)
        assert ("sram.offset" in op.attributes) == (inside and tiles), op.name
    assert all("sram.peak" in g.attributes for g in grids(module))


def test_capacity_error_lists_every_buffer():
    with pytest.raises(CompileError) as info:
        allocate(GEMM, sram_bytes=8192)
    (diag,) = info.value.diagnostics
    assert diag.code == "ZK0601"
    assert "12288" in diag.message and "8192" in diag.message
    assert len(diag.notes) == 4
    assert any("`tile.load` 32x32xf16: 2048 bytes x 2 slots" in n.message for n in diag.notes)
    assert "buffers 1" in diag.help and "tile" in diag.help


def test_capacity_from_the_target():
    big = GEMM.replace("32x32", "256x256").replace("[32, 32]", "[256, 256]").replace(
        "tensor<32xf32>", "tensor<256xf32>").replace("tile [32]", "tile [256]")
    module = parse(big)
    with pytest.raises(CompileError, match="target `m890`"):
        AllocSramPass().apply(make_context(), module)
    AllocSramPass(sram_bytes=1 << 22).apply(make_context(), module)


def test_deterministic():
    first = str(allocate(MISC))
    assert all(str(allocate(MISC)) == first for _ in range(3))


# ---- random grid bodies -----------------------------------------------------------------------
T = "tensor<16x16xf32>"
R = "tensor<16x1xf32>"


@st.composite
def programs(draw) -> str:
    """A grid body with random elementwise ops, reductions and transposes before, inside and
    after a loop carrying one or two accumulators."""
    lines: list[str] = []
    names = itertools.count()
    outer: list[str] = []

    def fresh() -> str:
        return f"%v{next(names)}"

    def emit_ops(pool: list[str], count: int, k: str) -> None:
        for _ in range(count):
            kind = draw(st.sampled_from(["add", "mul", "max", "exp", "neg", "sum", "tr",
                                         "const", "load"]))
            v = fresh()
            if kind in ("add", "mul", "max"):
                a, b = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
                lines.append(f"{v} = zk.{kind} {a}, {b} : {T}, {T} -> {T}")
            elif kind in ("exp", "neg"):
                lines.append(f"{v} = zk.{kind} {draw(st.sampled_from(pool))} : {T}")
            elif kind == "sum":
                s = fresh()
                lines.append(f"{s} = zk.reduce_sum {draw(st.sampled_from(pool))} axes [1] "
                             f"keepdims : {T} -> {R}")
                lines.append(f"{v} = zk.add {draw(st.sampled_from(pool))}, {s} : {T}, {R} -> {T}")
            elif kind == "tr":
                lines.append(f"{v} = zk.transpose {draw(st.sampled_from(pool))} perm [1, 0] : "
                             f"{T} -> {T}")
            elif kind == "const":
                lines.append(f"{v} = zk.constant 1.0 : {T}")
            else:
                lines.append(f"{v} = tile.load %tx[%i, {k}] tile [16, 16] : "
                             f"tensor<16x64xf32> -> {T}")
            pool.append(v)

    outer.append(fresh())
    lines.append(f"{outer[0]} = tile.load %tx[%i, %i] tile [16, 16] : tensor<16x64xf32> -> {T}")
    emit_ops(outer, draw(st.integers(0, 4)), "%i")
    accs = draw(st.integers(1, 2))
    inits = [draw(st.sampled_from(outer)) for _ in range(accs)]
    args = [f"%acc{n}" for n in range(accs)]
    results = [fresh() for _ in range(accs)]
    lines.append(f"{', '.join(results)} = tile.loop %k = 0 to 4 iter("
                 + ", ".join(f"{a} = {i} : {T}" for a, i in zip(args, inits))
                 + f") -> ({', '.join([T] * accs)}) {{")
    inner = outer + args
    emit_ops(inner, draw(st.integers(1, 6)), "%k")
    yields = [draw(st.sampled_from(inner)) for _ in range(accs)]
    lines.append(f"tile.yield {', '.join(yields)} : {', '.join([T] * accs)}")
    lines.append("}")
    after = outer + results
    emit_ops(after, draw(st.integers(0, 4)), "%i")
    lines.append(f"tile.store {after[-1]}, %to[%i, %i] tile [16, 16] : {T}, tensor<16x16xf32>")
    body = "\n      ".join(lines)
    return f"""
zk.kernel @random(%x: tensor<16x64xf32>) -> (y: tensor<16x16xf32>) {{
  %e = tile.empty : tensor<16x16xf32>
  %y = tile.grid [1] (%i) ins(%tx = %x : tensor<16x64xf32>) outs(%to = %e : tensor<16x16xf32>) role elementwise {{
      {body}
      tile.yield
  }}
  zk.return %y : tensor<16x16xf32>
}}
"""


@given(programs(), st.integers(1, 3))
def test_random_bodies_never_clobber_live_values(text, buffers):
    module = allocate(with_buffers(text, buffers))
    check_buffers(grids(module)[0], trips=4)
