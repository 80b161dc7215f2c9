"""`split NAME S`: any reduction (or a matmul, as `split_k S`) in exactly S parts, through the
split-reduction grids; refused with ZK0607 where no grid can take it, never dropped."""

from __future__ import annotations

import pytest

import zhenwu_cc
from zhenwu_cc.core.attrs import used_tiles
from zhenwu_cc.core.diagnostics import CompileError

ROWS = """kernel k<R = 40, C = 1000>(x: f32[R, C], g: f32[C]) -> {out} {{
    y = {expr}
    return y
}}
schedule k {{
    split y {parts}
}}
"""

CASES = [
    ("sum(x, axis=-1)", "f32[R]"), ("max(x, axis=-1)", "f32[R]"), ("min(x, axis=-1)", "f32[R]"),
    ("mean(x, axis=-1)", "f32[R]"), ("argmax(x, axis=-1)", "i32[R]"),
    ("logsumexp(x, axis=-1)", "f32[R]"), ("softmax(x, axis=-1)", "f32[R, C]"),
    ("log_softmax(x, axis=-1)", "f32[R, C]"), ("layernorm(x, axis=-1)", "f32[R, C]"),
    ("rmsnorm(x, g, axis=-1)", "f32[R, C]"), ("sum(x, axis=0)", "f32[C]"),
]


def _grids(compiled) -> list[tuple[tuple[int, ...], dict]]:
    kernel = compiled.module("tile").ops.first
    return [(op.grid_shape, used_tiles(op)) for op in kernel.body.block.ops
            if used_tiles(op) is not None]


def _split_grids(compiled) -> list[dict]:
    return [t for _, t in _grids(compiled) if t["split"] is not None]


@pytest.mark.parametrize("parts", [3, 7])
@pytest.mark.parametrize("expr,out", CASES, ids=[c[0].split("(")[0] + c[0][-3:-1] for c in CASES])
def test_every_reduction_takes_exactly_s_parts_and_stays_correct(expr, out, parts):
    """Each reduction (those inside composites too) runs in exactly `parts` parts, recorded as
    from the directive, and the kernel still matches the reference (1000 is no multiple of 3
    or 7: the chunks are chosen so that the parts are equal)."""
    source = ROWS.format(expr=expr, out=out, parts=parts)
    compiled = zhenwu_cc.compile(source)
    split = _split_grids(compiled)
    assert split and all(t["parts"] == parts and t["split"] == "y" for t in split)
    assert compiled.check(seed=1).passed


def test_split_reaches_both_reductions_of_a_softmax():
    """decompose moves `split p 8` from the softmax onto its max and its sum: one grid of 8
    parts computes both in one pass over x (online max + sum, tiling/online.py); unfused, a
    grid of 8 parts each."""
    source = ROWS.format(expr="softmax(x, axis=-1)", out="f32[R, C]", parts=8)
    compiled = zhenwu_cc.compile(source)
    assert [t["parts"] for t in _split_grids(compiled)] == [8]
    (online,) = [op for op in compiled.module("tile").ops.first.body.block.ops
                 if used_tiles(op) is not None and used_tiles(op)["split"] is not None]
    assert len(online.outs) == 2  # the partial maxima and the partial sums
    unfused = zhenwu_cc.compile(source, fuse=False)
    assert [t["parts"] for t in _split_grids(unfused)] == [8, 8]
    kept_apart = zhenwu_cc.compile(source.replace("split y 8", "split y 8\n    fuse y off"))
    assert [t["parts"] for t in _split_grids(kept_apart)] == [8, 8]


def test_a_row_resident_reduction_asked_to_split_gets_the_split_grid():
    """Without the directive the row-wise softmax is one grid (its reductions inside the
    tile); with it, split grids that the report attributes to the directive."""
    plain = ROWS.format(expr="softmax(x, axis=-1)", out="f32[R, C]", parts=1)
    assert [t["parts"] for _, t in _grids(zhenwu_cc.compile(plain))] == [1]
    assert _split_grids(zhenwu_cc.compile(plain)) == []
    split = zhenwu_cc.compile(plain.replace("split y 1", "split y 4"))
    assert [t["parts"] for t in _split_grids(split)] == [4]  # max and sum in one pass


def test_split_one_keeps_a_long_reduction_whole():
    """`split s 1` overrides the heuristic, which would split this long reduction."""
    source = ROWS.replace("R = 40, C = 1000", "R = 4, C = 393216").format(
        expr="sum(x, axis=-1)", out="f32[R]", parts=1)
    heuristic = zhenwu_cc.compile(source.replace("split y 1", ""))
    assert max(t["parts"] for _, t in _grids(heuristic)) > 1
    asked = _grids(zhenwu_cc.compile(source))
    assert [(t["parts"], t["split"]) for _, t in asked if t["step"]] == [(1, "y")]


MATMUL = """kernel mm<M = 64, N = 64, K = 1536>(a: f32[M, K], b: f32[K, N]) -> f32[M, N] {{
    c = a @ b
    return c
}}
schedule mm {{
    {directives}
}}
"""


def test_split_on_a_matmul_is_split_k():
    """`split c 3` is `split_k 3` exactly (1536 / 64 = 24 K steps), correct and reported."""
    compiled = zhenwu_cc.compile(MATMUL.format(directives="split c 3"))
    (shape, used), = [(s, t) for s, t in _grids(compiled) if t["split"]]
    assert shape[0] == 3 and used["parts"] == 3
    same = zhenwu_cc.compile(MATMUL.format(directives="tile c [64, 64, 64] split_k 3"))
    assert [s for s, t in _grids(same) if t["parts"] > 1] == [shape]
    assert compiled.check(seed=2).passed


def test_split_and_split_k_on_one_matmul_are_refused():
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(MATMUL.format(directives="tile c [64, 64, 64] split_k 2\n    split c 4"))
    assert e.value.diagnostics[0].code == "ZK0407"
    assert e.value.diagnostics[0].span.line == 7


def test_a_split_that_does_not_fit_the_tile_directive_k_is_refused():
    """`tile c [64, 64, 64]` makes 24 K steps; 5 parts would need another K tile, which a
    directive's sizes never get silently."""
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(MATMUL.format(directives="tile c [64, 64, 64]\n    split c 5")
                          ).module("tile")
    d = e.value.diagnostics[0]
    assert d.code == "ZK0607" and "into 24 steps, no multiple of 5" in d.message
    assert d.help == "make the K tile 62, or split in a count dividing 24"


def test_two_splits_of_one_matmul_are_refused():
    source = MATMUL.replace("    c = a @ b\n    return c", "    c = a @ b\n    h = c * 2.0\n"
                            "    return h").format(directives="split c 2\n    split h 3")
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(source)
    assert e.value.diagnostics[0].code == "ZK0407"


@pytest.mark.parametrize("directive,expr,message", [
    ("split y 0", "sum(x, axis=-1)", "splits in 1..1000 parts"),
    ("split y 1001", "sum(x, axis=-1)", "splits in 1..1000 parts"),
    ("split y 2", "exp(x)", "has no reduction to split"),
    ("split y 2", "sum(x, axis=(0, 1))", "reduces 2 axes at once"),
    ("split y 999", "sum(x, axis=-1)", "cannot be cut into 999 equal runs"),
])
def test_refusals_point_at_the_schedule_line(directive, expr, message):
    out = {"exp(x)": "f32[R, C]", "sum(x, axis=(0, 1))": "f32[]"}.get(expr, "f32[R]")
    source = ROWS.format(expr=expr, out=out, parts=1).replace("split y 1", directive)
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(source).module("tile")
    d = e.value.diagnostics[0]
    assert d.code == "ZK0607" and message in d.message
    assert d.span.line == 6
    assert [n.span.line for n in d.notes] == [2]
    assert d.help


def test_a_split_of_an_unused_value_is_refused():
    source = """kernel k(x: f32[4, 64]) -> f32[4, 64] {
    s = sum(x, axis=-1)
    return x * 2.0
}
schedule k {
    split s 2
}
"""
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(source).module("tile")
    assert e.value.diagnostics[0].code == "ZK0607"
    assert "no kernel result depends on it" in e.value.diagnostics[0].message


def test_reports_name_the_directive(cli, tmp_path):
    path = tmp_path / "k.zk"
    path.write_text(ROWS.format(expr="sum(x, axis=-1)", out="f32[R]", parts=5))
    assert "the reduced axis split in 5 parts from `split y 5`" in cli("cost", path).out
    assert "5 part(s) from `split y 5`" in cli("eval", path, "--no-hints").out
    grids = cli("compile", path, "--format", "json").json["grids"]
    assert [g["tile"]["split"] for g in grids if g["tile"]["parts"] > 1] == ["y"]


def test_retile_split_k_over_a_split_directive_is_refused():
    """`retile` sets `split_k` without the front end's check: the `tile` pass refuses it."""
    compiled = zhenwu_cc.compile(MATMUL.format(directives="split c 3"))
    with pytest.raises(CompileError) as e:
        compiled.retile({"c": (64, 64, 64)}, split_k={"c": 2}).module("tile")
    d = e.value.diagnostics[0]
    assert d.code == "ZK0607" and "`tile c` splits the same matmul with `split_k 2`" in d.message


def test_the_compilers_own_split_never_drops_chunks_when_tiles_shrink():
    """Eight inputs make the reduction's first tiles too big for SRAM. The fit used to halve the
    chunk after the parts were chosen from the larger one: 391 chunks of 512 in 49 parts of 7,
    48 chunks summed by no part (a wrong result). Now the other sizes shrink first, and a chunk
    is only halved into a count the parts still divide."""
    n = 200_000
    ins = ", ".join(f"{x}: f32[M, N]" for x in "abcdefgh")
    k = zhenwu_cc.compile(f"kernel r<M = 4, N = {n}>({ins}) -> f32[M] {{\n"
                          "    return sum(a * b + c * d + e * f + g * h, axis=-1)\n}\n")
    (grid,) = [op for op in k.module("tile").ops.first.body.block.ops
               if (t := used_tiles(op)) is not None and t["parts"] > 1]
    t = used_tiles(grid)
    chunks = -(-n // t["step"])
    assert chunks % t["parts"] == 0
    assert k.check(seed=1).passed


def test_online_softmax_split_keeps_special_values():
    """The online max + sum grid (one pass, parts combined by rescaling) gives what the
    reference gives where parts see only -inf, rows are all -inf, or hold +inf or NaN, and
    the same finite values as the two-grid (unfused) program to rounding."""
    import numpy as np

    source = ROWS.replace("R = 40", "R = 6").format(expr="softmax(x, axis=-1)",
                                                    out="f32[R, C]", parts=8)
    x = np.random.default_rng(3).standard_normal((6, 1000)).astype(np.float32) * 30
    x[1, :700] = -np.inf  # the first parts see only -inf
    x[2, :] = -np.inf
    x[3, 5] = np.inf
    x[4, 999] = np.nan
    x[5, 500:] = -np.inf  # the last parts see only -inf
    fused = zhenwu_cc.compile(source)
    assert len(_split_grids(fused)) == 1
    got = fused.run({"x": x})["y"]
    want = fused.reference({"x": x})["y"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[2:5]).all() and not np.isnan(got[[0, 1, 5]]).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-30)
    two_pass = zhenwu_cc.compile(source, fuse=False).run({"x": x})["y"]
    np.testing.assert_allclose(got, two_pass, rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("results", ["s, m", "m, s", "s"])
def test_online_max_and_sum_whichever_grid_is_asked_for_first(results):
    """A max and a sum of exp(x - max) written out (and returned in either order, the sum
    alone too) share one split grid whose sum's parts are rescaled when combined: the sum's
    grid, asked for first, has the max's grid compute it."""
    out = ", ".join("f32[R, 1]" for _ in results.split(", "))
    source = f"""kernel k<R = 4, C = 65000>(x: f32[R, C]) -> ({out}) {{
    m = max(x, axis=-1, keepdims=true)
    s = sum(exp(x - m), axis=-1, keepdims=true)
    return {results}
}}
"""
    compiled = zhenwu_cc.compile(source)
    assert [len(op.outs) for op in compiled.module("tile").ops.first.body.block.ops
            if used_tiles(op) is not None and used_tiles(op)["parts"] > 1] == [2]
    assert compiled.check(seed=1).passed
