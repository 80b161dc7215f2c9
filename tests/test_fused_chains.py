"""Fused operand chains (passes/tiling/fusion.py `joint_matmuls`): matmuls that share their left
operand and are combined elementwise (SwiGLU's `silu(x @ w1) * (x @ w3)`) run as one grid with
an accumulator each; their products never reach HBM."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES

import zhenwu_cc
from zhenwu_cc.core.attrs import used_tiles
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.dialects import tile


def _kernel(body: str, schedule: str = "", result: str = "bf16[T, F]") -> str:
    return (f"kernel ffn<T = 96, D = 80, F = 112>(x: bf16[T, D], w1: bf16[D, F], "
            f"w3: bf16[D, F]) -> {result} {{\n{body}\n}}\n"
            + (f"schedule ffn {{\n{schedule}\n}}\n" if schedule else ""))


SWIGLU = "    h = bf16(silu(x @ w1) * (x @ w3))\n    return h"


def _grids(k):
    kernel = k.module("tile").ops.first
    return [op for op in kernel.body.block.ops if isinstance(op, tile.GridOp)]


def _mmas_per_loop(grid) -> list[int]:
    return [sum(isinstance(o, tile.MmaOp) for o in loop.body.block.ops)
            for loop in grid.walk() if isinstance(loop, tile.LoopOp)]


def test_swiglu_is_one_grid_with_two_accumulators():
    k = zhenwu_cc.compile(_kernel(SWIGLU, "    tile h [32, 64]"))
    (grid,) = _grids(k)
    assert grid.role.data == "matmul" and _mmas_per_loop(grid) == [2]
    loads = [o for o in grid.walk() if isinstance(o, tile.LoadOp)]
    assert [o.source.name_hint for o in loads] == ["x", "w1", "w3"]  # x once per step
    assert k.check(seed=1).passed


def test_mlp_swiglu_example_fuses_and_is_faster_than_unfused():
    k = zhenwu_cc.compile(EXAMPLES / "mlp_swiglu.zk")
    roles = [(g.role.data, _mmas_per_loop(g)) for g in _grids(k)]
    assert roles[0] == ("matmul", [2])
    t = used_tiles(_grids(k)[0])
    assert (t["directive"], t["agreeing"]) == ("gate", "up")
    unfused = zhenwu_cc.compile(EXAMPLES / "mlp_swiglu.zk", fuse=False)
    assert unfused.cost("m890").time > 1.4 * k.cost("m890").time
    small = zhenwu_cc.compile(EXAMPLES / "mlp_swiglu.zk", defines={"T": 72, "D": 72, "F": 200})
    assert small.check(seed=2).passed


def test_disagreeing_directives_are_refused():
    body = "    g = silu(x @ w1)\n    u = x @ w3\n    return bf16(g * u)"
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(_kernel(body, "    tile g [32, 64, 32]\n    tile u [64, 64, 32]")
                          ).module("tile")
    (d,) = e.value.diagnostics
    assert d.code == "ZK0618" and d.span.line == 7 and [n.span.line for n in d.notes] == [8]


@pytest.mark.parametrize("body,schedule", [
    # a product used elsewhere is materialised anyway
    ("    g = x @ w1\n    return bf16(silu(g) * (x @ w3)), g", ""),
    # no shared operand
    ("    return bf16((x @ w1) * (bf16(x * 2.0) @ w3))", ""),
    # a split K loop asked for one of them
    ("    g = x @ w1\n    return bf16(silu(g) * (x @ w3))", "    tile g [32, 64, 16] split_k 2"),
    # fusion turned off for the group
    ("    h = bf16(silu(x @ w1) * (x @ w3))\n    return h", "    fuse h off"),
])
def test_not_fused(body, schedule):
    result = "(h: bf16[T, F], g: f32[T, F])" if "), g" in body else "bf16[T, F]"
    k = zhenwu_cc.compile(_kernel(body, schedule, result))
    assert all(_mmas_per_loop(g) in ([], [1]) for g in _grids(k))
    assert k.check(seed=3).passed


def test_no_fuse_keeps_two_matmul_grids():
    k = zhenwu_cc.compile(_kernel(SWIGLU), fuse=False)
    assert sorted(_mmas_per_loop(g) for g in _grids(k)) == [[], [1], [1]]


def test_a_product_used_only_inside_the_combination_is_fused():
    """`g` is read twice, but both reads are on the way to the result: still one grid."""
    k = zhenwu_cc.compile(_kernel("    g = x @ w1\n    return bf16(silu(g) * (x @ w3)) + bf16(g)"))
    assert [_mmas_per_loop(g) for g in _grids(k)] == [[2]]
    assert k.check(seed=4).passed
