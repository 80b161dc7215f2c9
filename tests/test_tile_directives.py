"""`tile` directives are honoured or refused, never dropped; reports say which tiles ran."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.dialects import zk
from zhenwu_cc.core.attrs import used_tiles


def _directives(compiled) -> dict[str, tuple[int, ...]]:
    """The schedule's `tile` directives by binding name, as the front end attached them."""
    return {op.results[0].name_hint: op.attributes["zk.tile"].values
            for op in compiled.zk.body.walk() if "zk.tile" in op.attributes}


def _grids(compiled) -> list[tuple[tuple[int, ...], dict]]:
    kernel = compiled.module("tile").ops.first
    return [(op.grid_shape, used_tiles(op)) for op in kernel.body.block.ops
            if used_tiles(op) is not None]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.zk")), ids=lambda p: p.stem)
def test_every_example_directive_sizes_a_grid(path):
    """Each directive of each bundled example is the source of a grid's tiles, and those
    tiles are the directive's sizes (clamped to the tensor): none is dropped."""
    compiled = zhenwu_cc.compile(path)
    grids = _grids(compiled)
    for name, sizes in _directives(compiled).items():
        taken = [t for _, t in grids if t["directive"] == name]
        agreed = [t for _, t in grids if t.get("agreeing") == name]
        assert taken or agreed, f"{path.name}: `tile {name}` sized no grid"
        for t in agreed:  # a flash grid's `tile s [BQ, BKV, K]`
            assert t["agreeing_sizes"] == list(sizes)
            assert t["sizes"][-2] == min(sizes[0], op_shape(compiled, name)[-2])
        for t in taken:
            assert t["directive_sizes"] == list(sizes)
            op = next(o for o in compiled.zk.body.walk()
                      if o.results and o.results[0].name_hint == name)
            shape = op.results[0].type.get_shape()
            if zk.matmul_feeding(op) is not None:
                m, n = shape[-2:]
                k = zk.matmul_feeding(op).lhs.type.get_shape()[-1]
                assert t["sizes"][-2:] == [min(sizes[0], m), min(sizes[1], n)]
                assert t["step"] == min(sizes[2], k)
            else:
                assert t["sizes"] == [min(s, d) for s, d in zip(sizes, shape)]


def op_shape(compiled, name: str) -> list[int]:
    op = next(o for o in compiled.zk.body.walk() if o.results and o.results[0].name_hint == name)
    return op.results[0].type.get_shape()


def test_attention_tile_s_is_honoured():
    """The issue's case: `tile s` of examples/attention.zk sizes q @ k^T's tiles, now inside the
    flash grid that `tile o` sizes with it: query block 64, key/value block 64."""
    grids = _grids(zhenwu_cc.compile(EXAMPLES / "attention.zk"))
    assert grids == [((4, 32, 32, 1), {"sizes": [1, 1, 64, 128], "step": 64, "directive": "o",
                                        "directive_sizes": [64, 128, 64], "parts": 1,
                                        "split": None, "agreeing": "s",
                                        "agreeing_sizes": [64, 64, 128]})]


def _refusal(source: str) -> tuple[str, int, str, str]:
    with pytest.raises(CompileError) as exc:
        zhenwu_cc.compile(source).module("tile")
    d = exc.value.diagnostics[0]
    return d.code, d.span.line, d.message, d.help


ROWS = """kernel k<M = 64, N = 256>(x: f32[M, N]) -> f32[M, N] {
    m = max(x, axis=-1, keepdims=true)
    return exp(x - m)
}
schedule k {
    tile m [4, 1]
}
"""
DEAD = """kernel k(x: f32[64, 64]) -> f32[64, 64] {
    t = x * 2.0
    return x + 1.0
}
schedule k {
    tile t [8, 8]
}
"""
SHARED_MATMUL = """kernel k(a: f32[64, 64], b: f32[64, 64]) -> (c: f32[64, 64], d: f32[64, 64]) {
    c = a @ b
    d = c + 1.0
    return c, d
}
schedule k {
    tile d [32, 32, 32]
}
"""
CONCAT = """kernel k(x: f32[64, 64]) -> f32[128, 64] {
    c = concat(x, x * 2.0, axis=0)
    return c
}
schedule k {
    tile c [16, 64]
}
"""
TWO_ON_ONE_GRID = """kernel k(x: f32[64, 64], w: f32[64, 64], b: f32[64]) -> f32[64, 64] {
    h = x @ w + b
    out = gelu(h)
    return out
}
schedule k {
    tile h [32, 32, 32]
    tile out [64, 64, 32]
}
"""
RESHAPE = """kernel k(x: f32[64, 64]) -> f32[] {
    r = reshape(x * 2.0, (4096,))
    return sum(r)
}
schedule k {
    tile r [512]
}
"""


@pytest.mark.parametrize("source, line, words", [
    (ROWS, 6, ("`tile m [4, 1]` cannot apply", "recomputed inside the tiles of")),
    (DEAD, 6, ("`tile t [8, 8]` cannot apply", "no kernel result depends on `t`")),
    (SHARED_MATMUL, 7, ("`tile d [32, 32, 32]` cannot apply", "has other uses")),
    (RESHAPE, 6, ("`tile r [512]` cannot apply", "a view")),
    (CONCAT, 6, ("`tile c [16, 64]` cannot apply", "its own tiles")),
], ids=["reduction-inside-consumer", "dead-value", "shared-matmul", "reshape", "concat"])
def test_directive_no_grid_takes_is_refused_at_its_schedule_line(source, line, words):
    code, at, message, help = _refusal(source)
    assert (code, at) == ("ZK0605", line)
    assert all(w in message for w in words), message
    assert help


def test_directive_on_a_returned_view_of_an_input_sizes_its_copy():
    source = RESHAPE.replace("f32[] {", "f32[4096] {").replace("return sum(r)", "return r") \
        .replace("x * 2.0", "x")
    grids = _grids(zhenwu_cc.compile(source))
    assert [t for _, t in grids if t["directive"] == "r"] == [
        {"sizes": [512], "step": None, "directive": "r", "directive_sizes": [512],
         "parts": 1, "split": None}]


def test_directive_on_a_concat_input_sizes_its_copy():
    source = CONCAT.replace("c = concat(x, x * 2.0, axis=0)",
                            "y = x * 2.0\n    c = concat(x, y, axis=0)")
    source = source.replace("tile c [16, 64]", "tile y [16, 32]")
    grids = _grids(zhenwu_cc.compile(source))
    assert [t for _, t in grids if t["directive"] == "y"] == [
        {"sizes": [16, 32], "step": None, "directive": "y", "directive_sizes": [16, 32],
         "parts": 1, "split": None}]


def test_two_directives_for_one_grid_are_refused():
    code, at, message, help = _refusal(TWO_ON_ONE_GRID)
    assert (code, at) == ("ZK0606", 7)
    assert "`tile h [32, 32, 32]` cannot apply" in message and "`tile out [64, 64, 32]`" in message
    assert help == "keep one of `tile h` and `tile out`"


def test_directive_location_prints_only_as_debuginfo(cli, zk_file):
    """The schedule line rides on `#zk.tile` like an op's location: shown and parsed back with
    --print-debuginfo, absent otherwise."""
    path = zk_file(TWO_ON_ONE_GRID)
    plain = cli("compile", path, "--emit", "zk").out
    assert "#zk.tile<[32, 32, 32]>" in plain and "loc(" not in plain
    debug = cli("compile", path, "--emit", "zk", "--print-debuginfo").out
    assert f'#zk.tile<[32, 32, 32], loc("{path}":7:5)>' in debug
    ir = zk_file(debug, "k.mlir")
    again = cli("opt", ir, "-p", "decompose,tile")
    assert again.code == 1 and "error[ZK0606]" in again.err and f"{path}:7:5" in again.err


GEMM = """kernel gemm(a: bf16[256, 256], b: bf16[256, 256]) -> f32[256, 256] {
    c = a @ b
    return c
}
schedule gemm {
    tile c [128, 64, 32]
}
"""


def test_compile_json_lists_the_tiles_of_each_grid(cli, zk_file):
    r = cli("compile", zk_file(GEMM), "--format", "json")
    assert r.code == 0
    (grid,) = r.json["grids"]
    assert grid["role"] == "matmul" and grid["grid"] == [2, 4]
    assert grid["tile"] == {"sizes": [128, 64], "step": 32, "directive": "c",
                            "directive_sizes": [128, 64, 32], "parts": 1, "split": None}
    assert cli("compile", zk_file(GEMM), "--emit", "zk", "--format", "json").json["grids"] == []


def test_cost_reports_the_tiles_of_each_phase(cli, zk_file):
    source = GEMM.replace("-> f32[256, 256] {\n    c = a @ b\n    return c",
                          "-> f32[256] {\n    c = a @ b\n    return sum(c, axis=-1)")
    path = zk_file(source)
    phases = cli("cost", path, "--format", "json").json["cost"]["phases"]
    assert [p["tile"] for p in phases] == [
        {"sizes": [128, 64], "step": 32, "directive": "c", "directive_sizes": [128, 64, 32],
         "parts": 1, "split": None},
        {"sizes": [8], "step": 256, "directive": None, "directive_sizes": None,
         "parts": 1, "split": None}]
    text = cli("cost", path).out
    assert "tiles: [128, 64], K step 32; from `tile c [128, 64, 32]`" in text
    assert "tiles: [8], chunk 256; chosen by the compiler" in text
    trace = path.with_suffix(".json")
    assert cli("cost", path, "--trace", trace).code == 0
    slices = [e for e in json.loads(trace.read_text())["traceEvents"]
              if e.get("tid") == 0 and e.get("ph") == "X" and e["name"].startswith("[")]
    assert [e["args"]["tile"] for e in slices] == [p["tile"] for p in phases]


SCALED_SOFTMAX = """kernel k<S = 1024>(q: bf16[S, 64], k: bf16[S, 64]) -> f32[S, S] {
    s = q @ transpose(k) * 0.125
    return softmax(s, axis=-1)
}
"""


def test_reads_are_charged_to_the_phase_that_reads(cli, zk_file):
    """Without a directive on `s` its scaling is recomputed in the softmax's grids from the
    stored matmul result: those loads are the softmax's (line 3), not line 2's, so line 2's
    DMA time is that of its own phase."""
    cost = cli("cost", zk_file(SCALED_SOFTMAX), "-D", "S=4096", "--format", "json").json["cost"]
    dma = {2: 0.0, 3: 0.0}
    for loc, t in cost["by_loc"].items():
        dma[int(loc.split(":")[-2])] += t["dma_s"]
    own = {2: 0.0, 3: 0.0}
    for p in cost["phases"]:
        own[int(p["loc"].split(":")[-2])] += p["terms_s"]["dma"]
    assert len(cost["phases"]) == 2  # the matmul, then a row-resident softmax
    assert dma[2] == pytest.approx(own[2], rel=1e-4)
    assert dma[3] == pytest.approx(own[3], rel=1e-4)


def test_loads_of_an_earlier_phases_tensor_carry_the_reading_phases_location():
    from zhenwu_cc.runtime.cost.extract import workload_of

    compiled = zhenwu_cc.compile(SCALED_SOFTMAX)
    workload = workload_of(compiled.module("ppu").ops.first)
    first, *rest = workload.phases
    assert rest
    written = {w.tensor for w in first.work if w.kind == "store"}
    for phase in rest:
        loads = [w for w in phase.work if w.kind == "load" and w.tensor in written]
        assert loads and all(w.loc == phase.loc for w in loads)
