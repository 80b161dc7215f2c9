"""The `tile` pass's decisions, through small kernels compiled to the tile level: the tile-size
heuristic, grid shapes and edge tiles, what is materialised and what is recomputed inside tiles,
reduction grids and their chunks, the matmul tile heuristic, split-K, the K step of scaled and
`fp8_fast` matmuls, shrinking to fit SRAM, and the multi-axis reduction split.

Figures are for m890 unless a test says otherwise: 233,472 bytes of SRAM and 128 compute units,
so a tile budget of 4096 elements (SRAM / (8 tiles x 4 bytes), rounded down to a power of two)."""

from __future__ import annotations

import math

import re
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pytest
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.passes.tile import split_multi_axis_reductions
from zhenwu_cc.passes.tiling import sizes

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.frontend import build


@dataclass(frozen=True)
class Grid:
    """What a test asserts about one tile.grid."""

    shape: tuple[int, ...]
    role: str
    trips: tuple[int, ...]  # of its tile.loops, in order
    loads: dict[str, tuple[tuple[int, ...], float]]  # kernel tensor -> (tile sizes, pad)
    stores: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]  # every op name inside, in order


def _summary(g: tile.GridOp) -> Grid:
    names = {arg: v.name_hint for arg, v in zip(g.in_args, g.ins)}
    loads = {names.get(op.operands[0]) or "?": (op.tile_sizes, op.pad_value)
             for op in g.walk() if isinstance(op, tile.LoadOp)}
    return Grid(g.grid_shape, g.role.data,
                tuple(op.trip_count for op in g.walk() if isinstance(op, tile.LoopOp)),
                loads, tuple(op.tile_sizes for op in g.walk() if isinstance(op, tile.StoreOp)),
                tuple(op.name for op in g.walk() if op is not g))


def tiled(source: str, target: str | None = None) -> zk.KernelOp:
    return zhenwu_cc.compile(source, target=target).module("tile").ops.first


def grids(source: str, target: str | None = None) -> list[Grid]:
    return [_summary(op) for op in tiled(source, target).body.block.ops
            if isinstance(op, tile.GridOp)]


def one_grid(source: str, target: str | None = None) -> Grid:
    (g,) = grids(source, target)
    return g


def kernel(params: str, results: str, body: str, schedule: str = "") -> str:
    text = f"kernel k({params}) -> {results} {{\n    {body}\n}}\n"
    return text + (f"schedule k {{\n    {schedule}\n}}\n" if schedule else "")


def small_sram(tmp_path, nbytes: int) -> str:
    """m890 with `nbytes` of SRAM per compute unit, as a target file."""
    text = (resources.files("zhenwu_cc.runtime.targets") / "m890.toml").read_text()
    text, n = re.subn(r"^bytes_per_cu = \{ value = \d+,", f"bytes_per_cu = {{ value = {nbytes},",
                      text, flags=re.M)
    assert n == 1
    path = tmp_path / "small.toml"
    path.write_text(text)
    return str(path)


# ---- elementwise grids: whole rows within the tile budget ---------------------------------------
@pytest.mark.parametrize("shape,grid,sizes", [
    ((64, 1000), (16, 1), (4, 1000)),  # 4096 // 1000 = 4 whole rows a tile
    ((5, 3000), (5, 1), (1, 3000)),  # one row a tile
    ((100, 8192), (100, 2), (1, 4096)),  # a row longer than the budget is cut
    ((64, 48), (1, 1), (64, 48)),  # the whole tensor in one tile
    ((1000, 48), (16, 1), (64, 48)),  # 85 rows fit: a power of two, 64; the last tile is ragged
    ((10000,), (3,), (4096,)),  # rank 1: the last tile holds 1808
    ((3, 5, 40), (3, 1, 1), (1, 5, 40)),  # leading dims one at a time, rows capped by the shape
])
def test_elementwise_tiles_are_whole_rows_within_the_budget(shape, grid, sizes):
    dims = ", ".join(map(str, shape))
    g = one_grid(kernel(f"x: f32[{dims}]", f"f32[{dims}]", "return exp(x) * 2.0"))
    assert (g.shape, g.role, g.trips) == (grid, "elementwise", ())
    assert g.loads == {"x": (sizes, 0.0)} and g.stores == (sizes,)


@pytest.mark.parametrize("directive,grid,sizes", [
    ("[7, 33]", (10, 4), (7, 33)),  # sizes that do not divide: edge tiles on both dims
    ("[128, 512]", (1, 1), (64, 100)),  # larger than the tensor: clipped to it
])
def test_the_schedule_s_tile_sizes_are_used(directive, grid, sizes):
    g = one_grid(kernel("x: f32[64, 100]", "f32[64, 100]", "y = x + 1.0\n    return y",
                        f"tile y {directive}"))
    assert (g.shape, g.loads["x"][0], g.stores) == (grid, sizes, (sizes,))


# ---- what is materialised, what is recomputed ------------------------------------------------------
def test_an_elementwise_chain_is_one_grid_and_shared_values_are_recomputed():
    both = grids(kernel("x: f32[64, 100]", "(f32[64, 100], f32[64, 100])",
                        "h = exp(x)\n    return h + 1.0, h * 2.0"))
    assert [g.role for g in both] == ["elementwise", "elementwise"]
    assert all(g.loads == {"x": ((32, 100), 0.0)} and g.ops.count("zk.exp") == 1 for g in both)


def test_a_matmul_with_two_consumers_is_materialised_once():
    g = grids(kernel("x: f32[64, 100], w: f32[100, 100]", "(f32[64, 100], f32[64, 100])",
                     "c = x @ w\n    return c + 1.0, c * 2.0"))
    assert [x.role for x in g] == ["matmul", "elementwise", "elementwise"]
    assert set(g[0].loads) == {"x", "w"} and g[0].stores == ((64, 100),)
    assert g[1].loads == g[2].loads == {"c": ((32, 100), 0.0)}
    assert "tile.mma" not in g[1].ops + g[2].ops


def test_a_matmul_epilogue_runs_on_the_accumulator():
    g = one_grid(kernel("x: f16[64, 128], w: f16[128, 32], b: f32[32]", "f16[64, 32]",
                        "return f16(gelu(x @ w + b))"))
    assert g.role == "matmul" and set(g.loads) == {"x", "w", "b"}
    assert g.ops.index("tile.mma") < g.ops.index("zk.add") < g.ops.index("zk.erf")


def test_returned_inputs_and_twice_returned_values_are_copied():
    (g,) = grids(kernel("x: f32[64, 100]", "f32[64, 100]", "return x"))
    assert (g.role, g.loads) == ("copy", {"x": ((32, 100), 0.0)})
    first, again = grids(kernel("x: f32[64, 100]", "(f32[64, 100], f32[64, 100])",
                                "y = x * 2.0\n    return y, y"))
    assert (first.role, again.role, set(again.loads)) == ("elementwise", "copy", {"y"})


def test_concat_is_one_copy_grid_per_input_at_its_offset():
    k = tiled(kernel("x: f32[8, 100], z: f32[4, 100]", "f32[12, 100]",
                     "return concat((exp(x), z), axis=0)"))
    gs = [op for op in k.body.block.ops if isinstance(op, tile.GridOp)]
    assert [g.role.data for g in gs] == ["copy", "copy"]
    stores = [next(op for op in g.walk() if isinstance(op, tile.StoreOp)) for g in gs]
    assert [s.window[0] for s in stores] == [(0, 0), (8, 0)]
    assert gs[1].outs[0] is gs[0].res[0]  # the second writes into what the first wrote


# ---- reductions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("expr,dtype,shape,grid,trips,sizes,pad,out", [
    # 8 rows a tile; 4096 // 8 = 512 columns a chunk: two chunks, the second ragged
    ("sum(x, axis=1)", "f32", (64, 1000), (8,), (2,), (8, 512), 0.0, (8,)),
    ("max(x, axis=1)", "f32", (64, 1000), (8,), (2,), (8, 512), -np.inf, (8,)),
    ("min(x, axis=1)", "f32", (64, 1000), (8,), (2,), (8, 512), np.inf, (8,)),
    ("argmax(x, axis=1)", "f32", (64, 1000), (8,), (2,), (8, 512), -np.inf, (8,)),
    ("mean(x, axis=1, keepdims=true)", "f32", (64, 1000), (8, 1), (2,), (8, 512), 0.0, (8, 1)),
    # a column reduction: 64 columns a tile, 4096 // 64 = 64 rows a chunk, 16 chunks (128
    # tiles fill m890's compute units: no split)
    ("sum(x, axis=0)", "f32", (1000, 8192), (128,), (16,), (64, 64), 0.0, (64,)),
    # the whole row fits in one chunk: one trip, no padding
    ("sum(x, axis=1)", "f32", (64, 300), (8,), (1,), (8, 300), 0.0, (8,)),
])
def test_a_reduction_result_gets_a_grid_that_loops_over_chunks(expr, dtype, shape, grid, trips,
                                                                sizes, pad, out):
    dims = ", ".join(map(str, shape))
    kept = shape[1] if "axis=0" in expr else shape[0]
    result = "i32" if expr.startswith("argmax") else dtype
    rdims = f"{kept}, 1" if "keepdims" in expr else f"{kept}"
    g = one_grid(kernel(f"x: {dtype}[{dims}]", f"{result}[{rdims}]", f"return {expr}"))
    assert (g.shape, g.role, g.trips, g.stores) == (grid, "reduction", trips, (out,))
    assert g.loads == {"x": (sizes, pad)}


@pytest.mark.parametrize("expr, combine", [
    ("sum(x, axis=0)", "zk.reduce_sum"), ("max(x, axis=0)", "zk.reduce_max"),
    ("min(x, axis=0)", "zk.reduce_min"), ("mean(x, axis=0)", "zk.reduce_sum"),
])
def test_a_reduction_with_fewer_tiles_than_compute_units_is_split(expr, combine):
    """One tile of 64 columns, 16 chunks of 64 rows: the chunks are cut into 4 parts of 4 (at
    least 4 chunks a part), run as 4 tiles, and their partial results [4, 64] combined by the
    reduction's own kind in the grid that stores the result (a mean scales the summed parts)."""
    parts, combined = grids(kernel("x: f32[1000, 64]", "f32[64]", f"return {expr}"))
    assert (parts.shape, parts.role, parts.trips, parts.stores) == ((4, 1), "reduction", (4,),
                                                                    ((1, 64),))
    assert parts.loads["x"][0] == (64, 64)
    assert (combined.role, combined.loads["?"][0]) == ("elementwise", (4, 64))
    assert combine in combined.ops and ("zk.mul" in combined.ops) == expr.startswith("mean")


@pytest.mark.parametrize("expr, reference", [
    ("sum(x, axis=0)", lambda x: x.sum(0)), ("max(x, axis=0)", lambda x: x.max(0)),
    ("min(x, axis=0)", lambda x: x.min(0)), ("mean(x, axis=0)", lambda x: x.mean(0)),
    ("logsumexp(x, axis=-1)", lambda x: np.log(np.exp(x).sum(-1))),
])
def test_split_reductions_compute_the_reduction(expr, reference):
    axis0 = "axis=0" in expr
    shape, out = ((8000, 16), 16) if axis0 else ((2, 70000), 2)
    k = zhenwu_cc.compile(kernel(f"x: f32[{shape[0]}, {shape[1]}]", f"f32[{out}]",
                                 f"return {expr}"))
    reductions = [op for op in k.module("tile").ops.first.body.block.ops
                  if isinstance(op, tile.GridOp) and op.role.data == "reduction"]
    assert reductions and all(math.prod(op.grid_shape) >= 4 for op in reductions)  # 1 unsplit
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    (got,) = k.run(x=x).values()
    np.testing.assert_allclose(got, reference(x.astype(np.float64)), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("keep", [False, True])
def test_a_split_argmax_keeps_the_first_position(keep):
    """Each part stores its maximum and its position; the consumer takes the position of the
    first part with the largest maximum, so a tie across parts keeps the first, as numpy."""
    out = "i32[2, 1]" if keep else "i32[2]"
    keepdims = ", keepdims=true" if keep else ""
    k = zhenwu_cc.compile(kernel("x: f32[2, 70000]", out, f"return argmax(x, axis=1{keepdims})"))
    parts, combined = grids(kernel("x: f32[2, 70000]", out,
                                   f"return argmax(x, axis=1{keepdims})"))
    assert parts.role == "reduction" and parts.shape[0] > 1 and len(parts.stores) == 2
    assert {"zk.argmax", "zk.compare", "zk.select", "zk.reduce_sum"} <= set(combined.ops)
    x = np.random.default_rng(1).standard_normal((2, 70000)).astype(np.float32)
    x[0, [7, 50000, 69999]] = 9.0  # tied maxima in different parts
    x[1, 69999] = 9.0  # in the last, ragged chunk
    (got,) = k.run(x=x).values()
    assert np.array_equal(got.reshape(-1), np.argmax(x, axis=1))


def test_a_ragged_chunk_of_a_computed_input_is_masked():
    """exp(0) = 1 is no identity for a sum: the padding is replaced by 0 with iota < extent."""
    masked = one_grid(kernel("x: f32[64, 1000]", "f32[64]", "return sum(exp(x), axis=1)"))
    plain = one_grid(kernel("x: f32[64, 1000]", "f32[64]", "return sum(x * x, axis=1)"))
    assert {"tile.iota", "zk.compare", "zk.select"} <= set(masked.ops)
    assert "zk.select" in plain.ops  # any computed input, even where 0 * 0 = 0 would do
    whole = one_grid(kernel("x: f32[64, 1024]", "f32[64]", "return sum(exp(x), axis=1)"))
    assert "tile.iota" not in whole.ops  # but chunks that divide the row need no mask
    loaded = one_grid(kernel("x: f32[64, 1000]", "f32[64]", "return sum(x, axis=1)"))
    assert "tile.iota" not in loaded.ops  # and a load is padded with the identity itself


def test_a_row_that_fits_is_reduced_inside_its_consumer_and_a_long_one_gets_its_own_grid():
    short = grids(kernel("x: f32[64, 1000]", "f32[64, 1000]",
                         "return x - max(x, axis=1, keepdims=true)"))
    assert [(g.shape, g.role, g.loads) for g in short] == [
        ((16, 1), "elementwise", {"x": ((4, 1000), 0.0)})]
    long = grids(kernel("x: f32[64, 8192]", "f32[64, 8192]",
                        "return x - max(x, axis=1, keepdims=true)"))
    # 8 row tiles (of 128 compute units): 16 chunks split into 4 parts, combined by a small
    # grid whose result the elementwise grid loads
    assert [(g.shape, g.role, g.trips) for g in long] == [
        ((4, 8, 1), "reduction", (4,)), ((1, 1), "elementwise", ()),
        ((64, 2), "elementwise", ())]
    assert long[2].loads["x"] == ((1, 4096), 0.0)


def test_multi_axis_reductions_are_split_one_axis_at_a_time():
    module = build(kernel("x: f32[6, 8, 10]", "f32[8]", "m = mean(x, axis=(0, 2))\n    return m",
                          "tile m [4]"), "k.zk", {})
    k = module.ops.first
    split_multi_axis_reductions(k)
    ops = [op for op in k.body.block.ops if not isinstance(op, zk.ReturnOp)]
    assert [op.name for op in ops] == ["zk.reduce_sum", "zk.reduce_sum", "zk.constant", "zk.mul",
                                       "zk.reshape"]
    assert [op.axis_list for op in ops[:2]] == [(2,), (0,)]  # the inner axis first
    assert all(op.keepdims is not None for op in ops[:2])
    assert ops[2].number == pytest.approx(1 / 60)
    assert ops[-1].result.name_hint == "m" and "zk.tile" in ops[-1].attributes
    assert k.body.block.last_op.operands[0] is ops[-1].result


# ---- matmuls: tile sizes, split-K ----------------------------------------------------------------
@pytest.mark.parametrize("dtype,m,n,k,grid,mn", [
    # f16: 256 x 64 is the first of the largest tiles whose double-buffered operands and f32
    # accumulator (x 2) fit: (256*64 + 64*64) * 2 bytes * 2 + 256*64*8 = 212,992 bytes
    ("f16", 512, 384, 256, (2, 6), (256, 64)),
    # f32 operands take twice the bytes: 256 x 32
    ("f32", 512, 384, 256, (2, 12), (256, 32)),
    # 16 rows: the columns take the rest
    ("f16", 16, 1024, 256, (1, 4), (16, 256)),
    # smaller than a tile: the whole output
    ("f32", 100, 48, 100, (1, 1), (100, 48)),
])
def test_matmul_tiles_fill_sram(dtype, m, n, k, grid, mn):
    g = one_grid(kernel(f"a: {dtype}[{m}, {k}], b: {dtype}[{k}, {n}]", f"f32[{m}, {n}]",
                        "return f32(a @ b)"))
    tk = min(k, 64)
    assert (g.shape, g.role, g.trips) == (grid, "matmul", (-(-k // tk),))
    assert g.loads == {"a": ((mn[0], tk), 0.0), "b": ((tk, mn[1]), 0.0)}
    assert g.stores == (mn,)


def test_batched_matmul_has_a_grid_dimension_per_batch():
    g = one_grid(kernel("a: f16[3, 100, 40], b: f16[40, 48]", "f32[3, 100, 48]", "return a @ b"))
    assert (g.shape, g.trips) == ((3, 1, 1), (1,))
    assert g.loads == {"a": ((1, 100, 40), 0.0), "b": ((40, 48), 0.0)}


def test_a_ragged_k_step_of_a_computed_operand_is_masked():
    computed = one_grid(kernel("a: f32[100, 100], b: f32[100, 48]", "f32[100, 48]",
                               "return (a * 2.0) @ b"))
    loaded = one_grid(kernel("a: f32[100, 100], b: f32[100, 48]", "f32[100, 48]",
                             "return a @ b"))
    assert computed.trips == loaded.trips == (2,)  # K = 100 in steps of 64
    assert {"tile.iota", "zk.select"} <= set(computed.ops)
    assert "tile.iota" not in loaded.ops  # loads are padded with zeros


@pytest.mark.parametrize("k,split,trips", [
    (8192, 32, 4),  # one 16x16 tile for 128 CUs: min(128, 8192 / 256) parts of 4 K steps
    (640, 2, 5),  # K / 256 = 2 parts
    (960, 3, 5),  # K / 256 = 3 parts, and 15 K steps divide by 3
    (832, 1, 13),  # 13 K steps cannot be cut in 3 (or 2) equal parts: no split
    (576, 1, 9),  # 9 K steps cannot be cut in 2 equal parts
    (256, 1, 4),  # K under 2 x 256: never split
])
def test_skinny_matmuls_split_k_into_equal_parts(k, split, trips):
    g = grids(kernel(f"a: f16[16, {k}], b: f16[{k}, 16]", "f32[16, 16]", "return a @ b"))
    if split == 1:
        assert [(x.shape, x.role, x.trips) for x in g] == [((1, 1), "matmul", (trips,))]
        return
    parts, total = g
    assert (parts.shape, parts.role, parts.trips) == ((split, 1, 1), "matmul", (trips,))
    assert parts.stores == ((1, 16, 16),)
    assert (total.shape, total.role) == ((1, 1), "elementwise")
    assert list(total.loads.values()) == [((split, 16, 16), 0.0)]
    assert "zk.reduce_sum" in total.ops


@pytest.mark.parametrize("tiles,steps,most,parts", [
    (16, 64, 9, 8),  # 9 would leave 64 steps uneven: 8 parts of 8 steps on 128 units
    (64, 64, 3, 2),  # 3 parts would need two waves: 2 parts, 32 steps on 128 units
    (128, 64, 2, 1),  # 256 half-tiles run in two waves: no shorter than 128 whole tiles
    (100, 8, 2, 1),  # a tie (8 steps either way): the fewer parts, no partial sums
    (4, 13, 3, 1),  # 13 steps cut in no equal parts up to 3
])
def test_split_k_takes_the_parts_that_shorten_the_busiest_unit(tiles, steps, most, parts):
    assert sizes.split_k_parts(tiles, steps, 132, most) == parts


def test_no_split_k_that_only_adds_a_wave():
    # 3 x 32 = 96 tiles of [256, 64] on m890's 128 compute units: two parts of 8 K steps would
    # run 192 tiles in two waves, as long as 96 tiles of 16 steps in one, plus a combine
    g = grids(kernel("a: f16[768, 1024], b: f16[1024, 2048]", "f32[768, 2048]", "return a @ b"))
    assert [(x.shape, x.role, x.trips) for x in g] == [((3, 32), "matmul", (16,))]


def test_no_split_k_once_the_tiles_fill_the_chip():
    g = grids(kernel("a: f16[2048, 8192], b: f16[8192, 2048]", "f32[2048, 2048]", "return a @ b"))
    assert [(x.shape, x.role) for x in g] == [((8, 32), "matmul")]  # 256 tiles >= 128 CUs


def test_the_schedule_s_matmul_tiles_and_split_k():
    g = grids(kernel("a: f16[100, 1024], b: f16[1024, 48]", "f32[100, 48]", "c = a @ b\n"
                     "    return c", "tile c [32, 16, 128] split_k 4"))
    assert [(x.shape, x.role, x.trips) for x in g] == [
        ((4, 4, 3), "matmul", (2,)), ((2, 1), "elementwise", ())]  # 8 K steps in 4 parts
    assert g[0].loads == {"a": ((32, 128), 0.0), "b": ((128, 16), 0.0)}


@pytest.mark.parametrize("mode,tk,trips", [
    ("", 96, 3),  # the K step holds whole 96-element scale blocks: 6 steps in 2 split-K parts
    ("accumulate f32 fp8_fast", 384, 1),  # and whole 128-element promotion intervals: lcm 384
])
def test_scaled_matmul_k_steps_hold_whole_scale_blocks(mode, tk, trips):
    schedule = ("precision x as f8E4M3FN scale block(1, 96)\n"
                "    precision w as f8E4M3FN scale block(96, 64)\n    " + mode)
    g = grids(kernel("x: f32[64, 576], w: f32[576, 64]", "f32[64, 64]", "return x @ w",
                     schedule))
    assert (g[0].shape, g[0].role, g[0].trips) == ((2, 1, 1), "matmul", (trips,))
    assert g[0].loads["x"] == ((64, tk), 0.0) and g[0].loads["w"] == ((tk, 64), 0.0)
    assert g[0].loads["x_scale"][0] == (64, tk // 96)  # the scales of those blocks
    assert "tile.mma" in g[0].ops and "zk.dequantize" not in g[0].ops


def test_fp8_fast_k_step_is_a_multiple_of_128():
    g = one_grid(kernel("x: f32[64, 576], w: f32[576, 64]", "f32[64, 64]", "return x @ w",
                        "precision x, w as f8E4M3FN\n    accumulate f32 fp8_fast"))
    assert g.trips == (5,) and g.loads["x"] == ((64, 128), 0.0)  # not the default 64


def test_flops_are_recorded_by_the_dtype_the_tensor_engine_runs():
    k = tiled(kernel("x: f32[64, 576], w: f32[576, 32], h: f16[64, 576], v: f16[576, 32]",
                     "(f32[64, 32], f32[64, 32])", "return x @ w, h @ v",
                     "precision x, w as f8E4M3FN"))
    flops = {name: a.value.data for name, a in k.attributes["zk.flops"].data.items()}
    assert flops == {"f8E4M3FN": 2 * 64 * 32 * 576, "f16": 2 * 64 * 32 * 576}


# ---- SRAM fit ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sram,sizes", [
    (233472, (4, 1000)),  # plenty: the budget decides
    (8192, (1, 500)),  # three live f32[1, 1000] tiles do not fit 8 KiB: the row is halved
    (4096, (1, 250)),  # and halved again
])
def test_heuristic_tiles_shrink_until_they_fit(tmp_path, sram, sizes):
    g = one_grid(kernel("x: f32[64, 1000]", "f32[64, 1000]", "return exp(x) * tanh(x) + x"),
                 small_sram(tmp_path, sram))
    assert g.loads["x"][0] == sizes and g.stores == (sizes,)


def test_the_schedule_s_tiles_are_never_shrunk_silently(tmp_path):
    with pytest.raises(CompileError) as info:
        tiled(kernel("x: f32[64, 1000]", "f32[64, 1000]", "y = exp(x) * tanh(x) + x\n"
                     "    return y", "tile y [1, 1000]"), small_sram(tmp_path, 8192))
    (d,) = info.value.diagnostics
    assert d.code == "ZK0604"
    assert d.message.startswith("tiles of `y` (tile [1, 1000]) need ")
    assert d.message.endswith("bytes of SRAM per compute unit; target `m890` has 8192")
    assert [n.message for n in d.notes] == ["f32[1, 1000]: 4000 bytes"] * 3
    assert re.fullmatch(r"`tile y \[1, 500\]` fits \(\d+ bytes\)", d.help)
    assert (d.span.line, d.span.col) == (2, 9)  # the expression bound to `y`


def test_a_matmul_too_big_for_the_smallest_tiles(tmp_path):
    with pytest.raises(CompileError) as info:
        tiled(kernel("a: f32[64, 64], b: f32[64, 64]", "f32[64, 64]", "c = a @ b\n    return c"),
              small_sram(tmp_path, 1024))
    (d,) = info.value.diagnostics
    assert d.code == "ZK0604" and "even the smallest tiles do not fit" in d.help


# ---- integer identities of max / min / argmax: the dtype's own extremes -----------------------------


def _run(source: str, x: np.ndarray) -> np.ndarray:
    return zhenwu_cc.compile(source).run({"x": x})["result0"]


def test_integer_min_reduction():
    x = np.arange(4000, dtype=np.int32).reshape(4, 1000) - 7
    np.testing.assert_array_equal(_run(kernel("x: i32[4, 1000]", "i32[4]", "return min(x, axis=1)"),
                                       x), x.min(axis=1))


def test_integer_max_reduction_of_the_smallest_value():
    x = np.full((4, 1000), -128, np.int8)
    np.testing.assert_array_equal(_run(kernel("x: i8[4, 1000]", "i8[4]", "return max(x, axis=1)"),
                                       x), x.max(axis=1))


def test_integer_argmax_of_a_row_whose_largest_value_is_min_plus_one():
    x = np.full((4, 1000), -128, np.int8)
    x[:, 600] = -127
    np.testing.assert_array_equal(
        _run(kernel("x: i8[4, 1000]", "i32[4]", "return argmax(x, axis=1)"), x), x.argmax(axis=1))
