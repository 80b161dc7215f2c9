"""Flash attention (passes/tiling/flash.py): `softmax(S) @ V` becomes one grid with online
softmax, S never reaches HBM, the result passes the check against the exact math, and the
schedule's two directives must agree."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES

import zhenwu_cc
from zhenwu_cc.core.attrs import used_tiles
from zhenwu_cc.core.diagnostics import CompileError

SMALL = dict(B=1, H=2, S=192, D=64)


def _grids(k):
    kernel = k.module("tile").ops.first
    return [op for op in kernel.body.block.ops if used_tiles(op) is not None]


def _kernel(body: str, schedule: str = "", params: str = "B = 1, H = 2, S = 192, D = 64") -> str:
    return (f"kernel attn<{params}>(q: bf16[B, H, S, D], k: bf16[B, H, S, D], "
            f"v: bf16[B, H, S, D]) -> bf16[B, H, S, D] {{\n{body}\n}}\n"
            + (f"schedule attn {{\n{schedule}\n}}\n" if schedule else ""))


PLAIN = """    s = q @ transpose(k) * rsqrt(D)
    p = softmax(s, axis=-1)
    o = bf16(p) @ v
    return bf16(o)"""


@pytest.mark.parametrize("name", ["attention", "attention_causal", "attention_gqa"])
def test_examples_fuse_into_one_grid_without_s_in_hbm(name):
    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=dict(SMALL, **(
        {"G": 1} if name == "attention_gqa" else {})))
    roles = [g.role.data for g in _grids(k)]
    assert roles.count("attention") == 1 and "matmul" not in roles and "reduction" not in roles
    s = SMALL["S"]
    shapes = [tuple(op.results[0].type.get_shape()) for op in k.module("tile").ops.first.walk()
              if op.name == "tile.empty"]
    assert not any(shape[-2:] == (s, s) for shape in shapes), shapes


@pytest.mark.parametrize("name", ["attention", "attention_causal", "attention_gqa"])
def test_fused_examples_pass_the_check(name):
    defines = dict(SMALL, **({"G": 1} if name == "attention_gqa" else {}))
    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
    result = k.check(seed=1)
    assert result.passed, str(result)


@pytest.mark.parametrize("schedule", ["", "    tile o [64, 64, 64]\n    tile s [64, 64, 32]",
                                      "    tile o [32, 64, 128]"])
def test_ragged_and_partial_blocks_match_the_reference(schedule):
    """S = 200 is no multiple of the blocks (the last key block is masked), a K tile of 32
    loops over the head dim, value columns split in tiles: all within the check's budget."""
    src = _kernel(PLAIN, schedule, "B = 1, H = 2, S = 200, D = 64")
    k = zhenwu_cc.compile(src)
    assert [g.role.data for g in _grids(k)] == ["attention"]
    result = k.check(seed=2)
    assert result.passed, str(result)


def test_rows_that_start_fully_masked_do_not_become_nan():
    """An anti-causal mask: early key blocks are all -inf for the first rows, so the running
    max starts at -inf; the shift by 0 keeps exp(-inf - -inf) out, as the unfused program."""
    body = """    row = iota((S, S), axis=0)
    col = iota((S, S), axis=1)
    s = q @ transpose(k) * rsqrt(D)
    p = softmax(where(col >= row, s, -inf), axis=-1)
    o = bf16(p) @ v
    return bf16(o)"""
    k = zhenwu_cc.compile(_kernel(body, "    tile o [64, 64, 64]"))
    assert [g.role.data for g in _grids(k)] == ["attention"]
    inputs = k.inputs(seed=3)
    out = k.run(inputs)
    assert not np.isnan(np.asarray(next(iter(out.values())), dtype=np.float32)).any()
    assert k.check(inputs).passed


def test_scores_used_elsewhere_stay_unfused():
    """When S (or P) has another use it is materialised anyway: the unfused grids remain."""
    body = """    s = q @ transpose(k) * rsqrt(D)
    p = softmax(s, axis=-1)
    o = bf16(p) @ v
    return bf16(o), p"""
    src = _kernel(body).replace("-> bf16[B, H, S, D]", "-> (o: bf16[B, H, S, D], p: f32[B, H, S, S])")
    k = zhenwu_cc.compile(src)
    roles = [g.role.data for g in _grids(k)]
    assert "attention" not in roles and roles.count("matmul") == 2


def test_disagreeing_directives_are_refused_at_the_schedule():
    src = _kernel(PLAIN, "    tile s [128, 64, 64]\n    tile o [64, 64, 64]")
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(src).module("tile")
    (d,) = e.value.diagnostics
    assert d.code == "ZK0618"
    assert d.span.line == 9  # the `tile o` line
    assert "tile s [128, 64, 64]" in d.help and "tile o [128, 64, 64]" in d.help
    assert [n.span.line for n in d.notes] == [8]


def test_directive_that_overflows_sram_names_flash_sizes():
    src = _kernel(PLAIN, "    tile o [256, 128, 256]", "B = 1, H = 1, S = 512, D = 128")
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(src).module("tile")
    (d,) = e.value.diagnostics
    assert d.code == "ZK0604"
    assert "flash-attention tile [256, 128, 256]" in d.message
    help_sizes = d.help.split("`tile o ")[1].split("`")[0]
    assert len(eval(help_sizes)) == 3  # [BQ, BD, BKV], as the directive is written


def test_both_directives_are_recorded_on_the_grid():
    (grid,) = _grids(zhenwu_cc.compile(EXAMPLES / "attention.zk"))
    t = used_tiles(grid)
    assert (t["directive"], t["directive_sizes"]) == ("o", [64, 128, 64])
    assert (t["agreeing"], t["agreeing_sizes"]) == ("s", [64, 64, 128])
    assert t["sizes"][-2:] == [64, 128] and t["step"] == 64


def test_attention_cost_keeps_s_on_chip():
    """The issue's floor: m890 attention at >= 55% of bf16 peak, no S-sized HBM tensor."""
    est = zhenwu_cc.compile(EXAMPLES / "attention.zk").cost("m890")
    assert est.peak_fraction["bf16"] >= 0.55
    assert est.hbm_write_bytes == 4 * 32 * 2048 * 128 * 2  # the output, once


def test_exposed_fraction_was_fitted_at_h100s_compute_efficiency():
    """EXPOSED_AT_H100 is carried to other targets relative to H100's fitted efficiency: the
    constant that says which one must be h100.toml's."""
    from zhenwu_cc.core.target import load_target
    from zhenwu_cc.runtime.cost import model

    assert model.FITTED_AT_COMPUTE_EFFICIENCY == load_target("h100").efficiency.compute

