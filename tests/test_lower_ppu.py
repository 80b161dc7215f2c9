"""The `lower-ppu` pass: tile kernels become ppu kernels that verify, keep names, attributes and
locations, allocate what alloc-sram planned, and compute what the tile program means (run by the
executor and compared with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_alloc_sram import (
    CARRY,
    GEMM,
    HALVES,
    MISC,
    PROGRAMS,
    RESHAPED,
    ROWMAX,
    SCALE,
    SCALE_MANY,
    TWO_GRIDS,
    allocate,
    parse,
    programs,
    with_buffers,
)
from xdsl.dialects import arith
from xdsl.dialects.builtin import FileLineColLoc, IntAttr, ModuleOp, StringAttr, UnknownLoc
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import ppu, tile
from zhenwu_cc.passes.lower_ppu import LowerPpuPass
from zhenwu_cc.passes.registry import get_passes
from zhenwu_cc.runtime.executor import execute

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.pipeline import make_context

RNG = np.random.default_rng(11)


def lower(text: str, **options) -> ModuleOp:
    module = allocate(text)
    LowerPpuPass(**{"cus": 8, **options}).apply(make_context(), module)
    module.verify()
    return module


def kernel_of(module: ModuleOp) -> ppu.KernelOp:
    (kernel,) = module.ops
    assert isinstance(kernel, ppu.KernelOp)
    return kernel


def ops_of(module: ModuleOp, kind: type) -> list:
    return [op for op in module.walk() if isinstance(op, kind)]


def test_registered():
    assert get_passes()["lower-ppu"]() is LowerPpuPass


def test_kernel_signature_names_and_attributes():
    place = "{zk.place = #zk.place<hbm, stacks [0, 1]>}"
    text = GEMM.replace("%a: tensor<100x64xf16>", f"%a: tensor<100x64xf16> {place}").replace(
        ") {\n  %e", ") attributes {params = {M = 100 : i64}, zk.buffers = 2 : i64} {\n  %e", 1)
    kernel = kernel_of(lower(text))
    assert kernel.sym_name.data == "gemm"
    assert [a.name_hint for a in kernel.inputs] == ["a", "b", "bias"]
    assert [a.name_hint for a in kernel.outputs] == ["c"]
    assert [tuple(a.type.get_shape()) for a in kernel.body.block.args] == [
        (100, 64), (64, 48), (48,), (100, 48)]
    assert all(ppu.space_of(a) == "hbm" for a in kernel.body.block.args)
    assert str(kernel.arg_attr(0, "zk.place")) == "#zk.place<hbm, stacks [0, 1]>"
    assert kernel.arg_attr(3, "zk.place") is None
    assert kernel.attributes["zk.buffers"].value.data == 2
    assert "params" in kernel.attributes


def test_gemm_launch():
    module = lower(GEMM)
    (launch,) = ops_of(module, ppu.LaunchOp)
    assert launch.grid_shape == (4, 2) and launch.compute_units == 8
    assert launch.role.data == "matmul"
    allocs = {a.result.name_hint: (a.byte_offset, a.slots, tuple(a.result.type.get_shape()))
              for a in ops_of(module, ppu.AllocOp)}
    assert allocs == {"zero": (0, 1, (32, 32)), "x": (4096, 2, (2, 32, 32)),
                      "y": (8192, 2, (2, 32, 32)), "bt": (4096, 1, (32,))}
    (loop,) = ops_of(module, ppu.LoopOp)
    slots = ops_of(module, ppu.SlotOp)
    assert len(slots) == 2 and all(s.index == loop.induction_var for s in slots)
    (mma,) = ops_of(module, ppu.MmaOp)
    assert mma.acc.owner.result.name_hint == "zero"  # in place on the accumulator
    (fill,) = ops_of(module, ppu.FillOp)
    assert fill.number == 0.0 and fill.out == mma.acc
    (wait_in_loop, wait_bias, wait_store) = ops_of(module, ppu.WaitOp)
    assert len(wait_in_loop.tokens) == 2  # both loads of a step are waited for together
    (load_bias,) = [op for op in ops_of(module, ppu.DmaLoadOp) if op.pad is not None]
    assert load_bias.pad_value == 1.5 and load_bias.tile_sizes == (32,)
    (store,) = ops_of(module, ppu.DmaStoreOp)
    assert store.dest == kernel_of(module).outputs[0]


def test_cus_from_the_target():
    module = allocate(GEMM)
    LowerPpuPass().apply(make_context(), module)
    assert ops_of(module, ppu.LaunchOp)[0].compute_units == 128


def test_buffers_are_allocated_where_their_life_starts():
    """A buffer that reuses the bytes of a dead one is allocated after that one's last use."""
    module = lower(GEMM)
    body = ops_of(module, ppu.LaunchOp)[0].body.block
    order = [op for op in body.ops]
    bias_alloc = next(a for a in ops_of(module, ppu.AllocOp) if a.result.name_hint == "bt")
    (loop,) = ops_of(module, ppu.LoopOp)
    assert order.index(bias_alloc) > order.index(loop)
    x_alloc = next(a for a in ops_of(module, ppu.AllocOp) if a.result.name_hint == "x")
    assert x_alloc.parent_block() is body and order.index(x_alloc) < order.index(loop)


def test_elementwise_with_scalar_constant():
    module = lower(SCALE)
    fns = [op.function for op in ops_of(module, ppu.VMapOp)]
    assert fns == ["cast", "mul", "exp", "cast"]
    scalar = next(op for op in ops_of(module, ppu.FillOp))
    assert scalar.number == 0.5 and scalar.out.type.get_shape() == ()


def test_intermediate_tensor_is_a_global():
    module = lower(TWO_GRIDS)
    kernel = kernel_of(module)
    (glob,) = ops_of(module, ppu.GlobalOp)
    assert glob.result.name_hint == "e0" and tuple(glob.result.type.get_shape()) == (64, 64)
    first, second = ops_of(module, ppu.LaunchOp)
    (store1,) = ops_of(first, ppu.DmaStoreOp)
    assert store1.dest == glob.result
    assert {op.source for op in ops_of(second, ppu.DmaLoadOp)} == {glob.result, kernel.inputs[1]}
    (store2,) = ops_of(second, ppu.DmaStoreOp)
    assert store2.dest == kernel.outputs[0]


def test_returned_reshape_writes_a_view_of_the_output():
    module = lower(RESHAPED)
    kernel = kernel_of(module)
    (view,) = ops_of(module, ppu.ViewOp)
    assert view.source == kernel.outputs[0] and tuple(view.result.type.get_shape()) == (8, 16)
    (store,) = ops_of(module, ppu.DmaStoreOp)
    assert store.dest == view.result


def test_grids_filling_parts_of_one_output():
    module = lower(HALVES)
    out = kernel_of(module).outputs[0]
    stores = ops_of(module, ppu.DmaStoreOp)
    assert [s.dest for s in stores] == [out, out]
    assert stores[1].window == ((0, 16), (8, 16))
    assert not ops_of(module, ppu.GlobalOp)


def test_accumulator_with_max_and_reshape_before_store():
    module = lower(ROWMAX)
    (fill,) = ops_of(module, ppu.FillOp)
    assert fill.number == -3.0e38
    (red,) = ops_of(module, ppu.VReduceOp)
    assert red.function == "max" and red.axis_list == (1,)
    (vmax,) = ops_of(module, ppu.VMapOp)
    assert vmax.function == "max" and vmax.out == fill.out == vmax.ins[0]
    (view,) = ops_of(module, ppu.ViewOp)
    assert view.source == fill.out and ppu.space_of(view.result) == "sram"
    assert ops_of(module, ppu.DmaStoreOp)[0].source == view.result


def test_loop_copies_init_and_yielded_value_when_they_have_their_own_buffers():
    module = lower(CARRY)
    (loop,) = ops_of(module, ppu.LoopOp)
    launch = loop.parent_op()
    before = loop.prev_op
    assert isinstance(before, ppu.VMapOp) and before.function == "copy"
    carried = before.out
    last = loop.body.block.last_op.prev_op
    assert isinstance(last, ppu.VMapOp) and last.function == "copy" and last.out == carried
    assert isinstance(last.ins[0].owner, ppu.AllocOp)  # the transposed value's own buffer
    (tr,) = ops_of(launch, ppu.VTransposeOp)
    assert tr.out == last.ins[0]


def test_misc_ops():
    module = lower(MISC)
    fns = [op.function for op in ops_of(module, ppu.VMapOp)]
    assert fns == ["le", "select", "copy", "add"]
    assert [op.axis.value.data for op in ops_of(module, ppu.VIotaOp)] == [0, 1]
    assert [op.function for op in ops_of(module, ppu.VReduceOp)] == ["sum", "argmax"]
    (tr,) = ops_of(module, ppu.VTransposeOp)
    assert tuple(tr.perm.get_values()) == (1, 0)
    argmax = ops_of(module, ppu.VReduceOp)[1]
    assert argmax.out.type.element_type == dtypes.to_xdsl(dtypes.I32)
    assert len(kernel_of(module).outputs) == 2


def test_mma_copies_an_accumulator_that_is_still_needed():
    text = GEMM.replace("tile.yield %r : tensor<32x32xf32>",
                        "%r2 = zk.add %r, %acc_in : tensor<32x32xf32>, tensor<32x32xf32> -> "
                        "tensor<32x32xf32>\n      tile.yield %r2 : tensor<32x32xf32>")
    module = lower(text)
    (mma,) = ops_of(module, ppu.MmaOp)
    copy = mma.prev_op
    assert isinstance(copy, ppu.VMapOp) and copy.function == "copy" and copy.out == mma.acc
    assert copy.ins[0] != mma.acc


def test_every_op_keeps_its_source_location():
    module = parse(GEMM)
    for n, op in enumerate(module.walk()):
        op.location = FileLineColLoc(StringAttr("k.zk"), IntAttr(n + 1), IntAttr(1))
    from zhenwu_cc.passes.alloc_sram import AllocSramPass

    AllocSramPass(sram_bytes=1 << 20).apply(make_context(), module)
    LowerPpuPass(cus=4).apply(make_context(), module)
    module.verify()
    missing = [op.name for op in module.walk()
               if op is not module and isinstance(op.location, UnknownLoc)]
    assert not missing


def test_without_alloc_sram():
    with pytest.raises(CompileError) as info:
        LowerPpuPass(cus=4).apply(make_context(), parse(GEMM))
    assert info.value.diagnostics[0].code == "ZK0602"


def test_composites_must_be_decomposed_first():
    text = SCALE.replace("zk.exp %m", "zk.gelu %m")
    with pytest.raises(AssertionError, match="decompose"):
        lower(text)


def test_deterministic():
    first = str(lower(MISC))
    assert all(str(lower(MISC)) == first for _ in range(3))


# ---- end to end: run the lowered kernels ------------------------------------------------------
def _carry(x: np.ndarray) -> np.ndarray:
    s = x[:, :32]
    y = np.zeros((32, 96), np.float32)
    a = s
    for k in range(2):
        p = (a + x[:, 32 * k: 32 * k + 32]).T
        y[:, 32 * k: 32 * k + 32] = a * p
        a = p
    y[:, 64:] = a + s
    return y


def _misc(x: np.ndarray) -> dict[str, np.ndarray]:
    rows, cols = np.indices((16, 16))
    sel = np.where(cols <= rows, x, np.float32(-1.0e4))
    return {"y": sel.sum(1, keepdims=True).T + sel, "idx": x.argmax(1).astype(np.int32)}


EXPECTED = {
    "gemm": lambda a, b, bias: {"c": a.astype(np.float32) @ b.astype(np.float32) + bias},
    "rowmax": lambda x: {"m": x.max(1)},
    "scale": lambda x: {"y": np.exp(x.astype(np.float32) * 0.5).astype(np.float16)},
    "two_grids": lambda x, b: {"y": np.exp(x) + b},
    "reshaped": lambda x: {"y": -x.reshape(-1)},
    "halves": lambda x: {"y": np.concatenate([-x[:, :16], np.abs(x[:, 16:])], 1)},
    "carry": lambda x: {"y": _carry(x)},
    "misc": _misc,
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_lowered_kernels_compute_what_numpy_does(name):
    kernel = kernel_of(lower(PROGRAMS[name]))
    inputs = {a.name_hint: RNG.standard_normal(a.type.get_shape()).astype(
        dtypes.from_xdsl(a.type.element_type).np_dtype) for a in kernel.inputs}
    got = execute(kernel, inputs, sram_bytes=1 << 20)
    want = EXPECTED[name](*inputs.values())
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape
        np.testing.assert_allclose(got[key].astype(np.float64), value.astype(np.float64),
                                   rtol=2e-3 if value.dtype == np.float16 else 1e-5, atol=1e-5)


def test_loads_multi_buffered_across_tiles_take_the_slot_of_their_turn():
    """A load alloc-sram multi-buffered across the tiles a CU runs in turn fills slot
    (tile index // cus) mod depth: consecutive tiles of one CU alternate slots, and the kernel
    still computes what numpy does."""
    module = lower(SCALE_MANY)
    (slot,) = ops_of(module, ppu.SlotOp)
    turn = slot.index.owner
    assert isinstance(turn, arith.FloorDivSIOp)
    assert turn.rhs.owner.value.value.data == 8  # the launch's compute units
    x = RNG.standard_normal((512, 512)).astype(np.float16)
    got = execute(kernel_of(module), {"x": x}, sram_bytes=1 << 20)["y"]
    np.testing.assert_allclose(got.astype(np.float64),
                               np.exp(x.astype(np.float32) * 0.5).astype(np.float16), rtol=2e-3)


@pytest.mark.parametrize("buffers", [1, 3])
def test_gemm_at_other_depths(buffers):
    kernel = kernel_of(lower(with_buffers(GEMM, buffers)))
    a = RNG.standard_normal((100, 64)).astype(np.float16)
    b = RNG.standard_normal((64, 48)).astype(np.float16)
    bias = RNG.standard_normal(48).astype(np.float32)
    got = execute(kernel, {"a": a, "b": b, "bias": bias}, sram_bytes=1 << 20)["c"]
    np.testing.assert_allclose(got, a.astype(np.float32) @ b.astype(np.float32) + bias,
                               rtol=1e-5, atol=1e-5)


# ---- random grid bodies, run before and after lowering ----------------------------------------
def _run_tile(kernel, x: np.ndarray) -> np.ndarray:
    """The random programs of test_alloc_sram on numpy, straight from the tile IR."""
    (grid,) = [op for op in kernel.body.block.ops if isinstance(op, tile.GridOp)]
    out = np.zeros(grid.outs[0].type.get_shape(), np.float32)
    env = {grid.index_args[0]: 0}
    unary = {"zk.exp": np.exp, "zk.neg": np.negative}
    binary = {"zk.add": np.add, "zk.mul": np.multiply, "zk.max": np.maximum}

    def run(block):
        for op in block.ops:
            if isinstance(op, tile.LoadOp):
                i, k = (env[v] for v in op.indices)
                env[op.result] = x[16 * i: 16 * i + 16, 16 * k: 16 * k + 16]
            elif isinstance(op, tile.StoreOp):
                out[...] = env[op.value]
            elif isinstance(op, tile.LoopOp):
                values = [env[v] for v in op.inits]
                for k in range(op.trip_count):
                    env.update(zip(op.body.block.args, [k, *values]))
                    run(op.body.block)
                    values = [env[v] for v in op.body.block.last_op.operands]
                env.update(zip(op.res, values))
            elif op.name in unary:
                env[op.results[0]] = unary[op.name](env[op.operands[0]])
            elif op.name in binary:
                env[op.results[0]] = binary[op.name](*(env[v] for v in op.operands))
            elif op.name == "zk.reduce_sum":
                env[op.results[0]] = env[op.operands[0]].sum(1, keepdims=True)
            elif op.name == "zk.transpose":
                env[op.results[0]] = env[op.operands[0]].T
            elif op.name == "zk.constant":
                env[op.results[0]] = np.full(op.results[0].type.get_shape(), op.number, np.float32)

    with np.errstate(all="ignore"):  # exp of exp overflows: inf is the answer
        run(grid.body.block)
    return out


@given(programs(), st.integers(1, 3))
def test_random_bodies_compute_the_same_after_lowering(text, buffers):
    text = with_buffers(text, buffers)
    x = RNG.standard_normal((16, 64)).astype(np.float32)
    want = _run_tile(parse(text).ops.first, x)
    got = execute(kernel_of(lower(text)), {"x": x}, sram_bytes=1 << 20)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
