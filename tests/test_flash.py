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


def test_the_next_query_tile_waits_for_the_q_slot():
    """The flash grid loads Q before its loop into one slot, and its epilogue casts the output
    into the same SRAM: the next query tile's Q load waits for this tile's store (`epilogue`),
    and the model charges it. A GEMM's grid has no load before its loop: nothing waits."""
    k = zhenwu_cc.compile(EXAMPLES / "attention.zk")
    (phase,) = k.costing("h100").workload.phases
    assert phase.reload_waits == "epilogue"
    assert k.cost("h100").phases[0].terms["reload_wait"] > 0
    gemm = zhenwu_cc.compile(EXAMPLES / "gemm.zk").costing("h100").workload
    assert all(p.reload_waits == "" for p in gemm.phases)


def test_fa3_rows_are_reproduced_within_15_percent():
    """Issue 14's bar on FlashAttention-3's H100 forward rows (benchmarks/calibrate_attention.py,
    docs/validation.md): every row, the 512-token ones included, within 15%."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "calibrate_attention", EXAMPLES.parent / "benchmarks" / "calibrate_attention.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from zhenwu_cc.core.target import load_target

    rows = list(mod.kernels())
    assert len(rows) == 12
    assert max(abs(e) for e in mod.errors(rows, load_target("h100"))) <= 0.15


def test_exposed_fraction_was_fitted_at_h100s_compute_efficiency():
    """EXPOSED_AT_H100 is carried to other targets relative to H100's fitted efficiency: the
    constant that says which one must be h100.toml's."""
    from zhenwu_cc.core.target import load_target
    from zhenwu_cc.runtime.cost import model

    assert model.FITTED_AT_COMPUTE_EFFICIENCY == load_target("h100").efficiency.compute



CAUSAL = """    row = iota((S, S), axis=0)
    col = iota((S, S), axis=1)
    s = q @ transpose(k) * rsqrt(D)
    p = softmax(where(col <= row, s, -inf), axis=-1)
    o = bf16(p) @ v
    return bf16(o)"""


def _live_steps(k):
    from zhenwu_cc.core.attrs import live_steps
    from zhenwu_cc.dialects import tile

    loops = [op for op in k.module("tile").walk() if isinstance(op, tile.LoopOp)]
    return [live_steps(op) for op in loops]


def test_causal_blocks_above_the_diagonal_are_skipped():
    k = zhenwu_cc.compile(_kernel(CAUSAL, "    tile o [64, 64, 32]", "B = 1, H = 2, S = 200, D = 64"))
    # query blocks of 64 rows (the last one 8 rows), key/value blocks of 32 columns
    assert _live_steps(k) == [(2, (0, 0, 0, 0), (2, 4, 6, 7))]


def test_a_sliding_window_skips_on_both_sides():
    body = CAUSAL.replace("where(col <= row, s, -inf)",
                          "where(col <= row, where(col > row - 64, s, -inf), -inf)")
    k = zhenwu_cc.compile(_kernel(body, "    tile o [64, 64, 32]", "B = 1, H = 2, S = 256, D = 64"))
    assert _live_steps(k) == [(2, (0, 0, 2, 4), (2, 4, 6, 8))]
    assert k.check(seed=4).passed


def test_a_mask_is_evaluated_once_per_shape_and_blocks(monkeypatch):
    """What `masks.live_blocks` evaluated is kept by the mask's expression, shape and blocks:
    the same kernel compiled again (a tuner's next candidate) does not evaluate its mask again;
    another mask, or the same mask at another shape, is evaluated, and gets its own steps."""
    from zhenwu_cc.passes.tiling import masks

    masks._live_blocks.cache_clear()
    evaluated = []
    real = masks._evaluate
    monkeypatch.setattr(masks, "_evaluate", lambda *a: evaluated.append(a[1:]) or real(*a))
    window = CAUSAL.replace("where(col <= row, s, -inf)",
                            "where(col <= row, where(col > row - 64, s, -inf), -inf)")
    steps, counts = [], []
    for body, shape in ((CAUSAL, 200), (CAUSAL, 200), (window, 256), (CAUSAL, 256)):
        src = _kernel(body, "    tile o [64, 64, 32]", f"B = 1, H = 2, S = {shape}, D = 64")
        steps.append(_live_steps(zhenwu_cc.compile(src)))
        counts.append(len(evaluated))
    assert steps == [[(2, (0, 0, 0, 0), (2, 4, 6, 7))]] * 2 + [
        [(2, (0, 0, 2, 4), (2, 4, 6, 8))], [(2, (0, 0, 0, 0), (2, 4, 6, 8))]]
    assert counts[0] > 0 and counts[1] == counts[0] and counts[0] < counts[2] < counts[3]


def test_kept_masks_hold_no_ir():
    """What `masks.live_blocks` keeps is plain data, not the IR it was asked about (a tuner
    compiles hundreds of candidates): the kernel's IR is freed once nothing else holds it."""
    import gc
    import weakref

    from zhenwu_cc.dialects import zk
    from zhenwu_cc.frontend import build
    from zhenwu_cc.passes.tiling import masks

    masks._live_blocks.cache_clear()
    module = build(_kernel(CAUSAL, "", "B = 1, H = 2, S = 200, D = 64"), "t.zk", {})
    (x,) = [op.results[0] for op in module.walk() if isinstance(op, zk.SelectOp)]
    assert masks.live_blocks(x, 64, 32) == ([0, 0, 0, 0], [2, 4, 6, 7], 20100 / 40000)
    assert masks._live_blocks.cache_info().currsize == 1
    kept = weakref.ref(module)
    del module, x
    gc.collect()
    assert kept() is None


@pytest.mark.parametrize("body", [
    PLAIN,  # no mask
    CAUSAL.replace("col <= row", "col <= row + 1000"),  # a mask that hides no whole block
])
def test_nothing_to_skip_leaves_the_loop_plain(body):
    k = zhenwu_cc.compile(_kernel(body, "    tile o [64, 64, 32]"))
    assert _live_steps(k) == [None]


def test_a_mask_read_from_a_tensor_is_not_skipped():
    src = _kernel("""    s = q @ transpose(k) * rsqrt(D)
    p = softmax(where(keep, s, -inf), axis=-1)
    o = bf16(p) @ v
    return bf16(o)""", "    tile o [64, 64, 32]").replace(
        "v: bf16[B, H, S, D])", "v: bf16[B, H, S, D], keep: i1[S, S])")
    k = zhenwu_cc.compile(src)
    assert _live_steps(k) == [None]
    assert k.check(seed=5).passed


def test_skipping_changes_no_output_bit():
    """A wholly masked block leaves the running max, sum and accumulator as they were, so the
    program with its skipped steps run gives the same bytes."""
    k = zhenwu_cc.compile(_kernel(CAUSAL, "    tile o [64, 64, 32]", "B = 1, H = 2, S = 200, D = 64"))
    inputs = k.inputs(seed=6)
    skipped = k.run(inputs)["result0"].copy()
    from zhenwu_cc.core.attrs import LIVE_STEPS
    from zhenwu_cc.dialects import ppu

    for op in k.module("ppu").walk():
        if isinstance(op, ppu.LoopOp):
            del op.attributes[LIVE_STEPS]
    everything = k.run(inputs)["result0"]
    assert skipped.tobytes() == everything.tobytes()


def test_causal_costs_about_half():
    """The issue's floor: causal <= 0.6x the same shape non-causal; only the visible scores'
    FLOPs count as useful."""
    shape = "B = 2, H = 16, S = 4096, D = 128"
    causal = zhenwu_cc.compile(_kernel(CAUSAL, "", shape)).cost("m890")
    full = zhenwu_cc.compile(_kernel(PLAIN, "", shape)).cost("m890")
    assert causal.time <= 0.6 * full.time
    visible = (4096 * 4097 // 2) / 4096 ** 2
    assert causal.flops_by_dtype["bf16"] == round(full.flops_by_dtype["bf16"] * visible)


def test_live_steps_are_verified():
    from xdsl.utils.exceptions import VerifyException

    from zhenwu_cc.core.attrs import LIVE_STEPS, live_steps_attr
    from zhenwu_cc.dialects import tile

    k = zhenwu_cc.compile(_kernel(CAUSAL, "    tile o [64, 64, 32]", "B = 1, H = 2, S = 200, D = 64"))
    module = k.module("tile").clone()
    loop = next(op for op in module.walk() if isinstance(op, tile.LoopOp))
    loop.attributes[LIVE_STEPS] = live_steps_attr(2, [0, 0, 0], [2, 4, 6])
    with pytest.raises(VerifyException, match="needs 4 bounds"):
        module.verify()
    loop.attributes[LIVE_STEPS] = live_steps_attr(2, [0, 0, 0, 3], [2, 4, 6, 9])
    with pytest.raises(VerifyException, match="lo <= hi <= 7"):
        module.verify()


@pytest.mark.parametrize("name", ["s", "p", "o"])
def test_fuse_off_on_any_value_of_the_group_keeps_it_unfused(name):
    k = zhenwu_cc.compile(_kernel(PLAIN, f"    fuse {name} off"))
    roles = [g.role.data for g in _grids(k)]
    assert "attention" not in roles and roles.count("matmul") == 2
    assert k.check(seed=8).passed


def test_no_fuse_gives_the_unfused_baseline():
    fused = zhenwu_cc.compile(EXAMPLES / "attention.zk")
    unfused = zhenwu_cc.compile(EXAMPLES / "attention.zk", fuse=False)
    assert [g.role.data for g in _grids(unfused)] == ["matmul", "reduction", "reduction",
                                                      "matmul"]
    assert unfused.cost("m890").time > 2.5 * fused.cost("m890").time


def test_a_head_dim_step_is_unrolled_inside_the_key_value_loop():
    """`tile s [BQ, BKV, K]` with K under the head dim: the score matmul's K steps are unrolled
    in the flash loop (loops do not nest), so the cost counts all of them (it counted none
    when they were an inner loop: 116% of peak) and the query tile's slices load once."""
    src = (EXAMPLES / "attention.zk").read_text().replace("tile s [64, 64, 128]",
                                                          "tile s [64, 64, 32]")
    k = zhenwu_cc.compile(src)
    (grid,) = _grids(k)
    from zhenwu_cc.dialects import tile

    loops = [op for op in grid.walk() if isinstance(op, tile.LoopOp)]
    assert len(loops) == 1
    inside = [op for op in loops[0].body.block.ops if isinstance(op, tile.MmaOp)]
    assert len(inside) == 128 // 32 + 1  # four score steps, then P @ V
    est, whole = k.cost("m890"), zhenwu_cc.compile(EXAMPLES / "attention.zk").cost("m890")
    assert est.peak_fraction["bf16"] < 1
    phase, phase_whole = est.phases[0], whole.phases[0]
    assert phase.hbm_read_bytes == phase_whole.hbm_read_bytes
    small = zhenwu_cc.compile(src, defines={"B": 1, "H": 2, "S": 200, "D": 128})
    assert small.check(seed=9).passed


def test_zero_starts_and_operand_transposes_cost_no_vector_work():
    """In the flash loop S's accumulator is zero-filled and K's tile transposed every step;
    the tensor engine does both (zero start, either operand layout), so the workload charges
    neither, while the -inf start of the running max stays vector work."""
    k = zhenwu_cc.compile(EXAMPLES / "attention.zk", defines=SMALL)
    (phase,) = k.costing("m890").workload.phases
    body = {w.op for w in phase.work if w.where == "body"}
    assert "ppu.mma" in body and "ppu.vtranspose" not in body
    # the body's fills left are rank-0 constants (the finite check's inf and 0): one element
    fills = [w.amount for w in phase.work if w.where == "body" and w.op == "ppu.fill"]
    assert fills == [phase.tiles * phase.steps] * len(fills)
    ppu_ops = {op.name for op in k.module("ppu").walk()}
    assert {"ppu.fill", "ppu.vtranspose"} <= ppu_ops  # they are in the program all the same
    assert any(w.op == "ppu.fill" for w in phase.work if w.where == "prologue")


@pytest.mark.parametrize("schedule,split", [
    ("    tile o [64, 64, 64] split_k 2", "o"),
    ("    split o 2", "o"),
    ("    split p 4", "p"),
])
def test_a_split_asked_of_the_group_is_honoured_unfused(schedule, split):
    """The flash loop has no parts: a split of one of its matmuls or of the softmax keeps the
    unfused grids, which take it (never dropped)."""
    k = zhenwu_cc.compile(_kernel(PLAIN, schedule, "B = 1, H = 2, S = 256, D = 64"))
    grids = _grids(k)
    assert "attention" not in [g.role.data for g in grids]
    assert any(used_tiles(g)["parts"] > 1 for g in grids)
    assert k.check(seed=10).passed
