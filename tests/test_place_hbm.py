"""HBM placement (`place-hbm`): the layout of every example, the capacity checks and their
errors, and what placement does to the estimated cost, the trace and the reports."""

from __future__ import annotations

import itertools
import re
from importlib import resources

import pytest
from conftest import EXAMPLES
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException
from zhenwu_cc.dialects import ppu
from zhenwu_cc.passes.place_hbm import PlaceHbmPass, placement_map
from zhenwu_cc.runtime.cost import trace
from zhenwu_cc.runtime.cost.extract import workload_of
from zhenwu_cc.runtime.cost.model import estimate
from zhenwu_cc.core.target import load_target

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.frontend import build
from zhenwu_cc.pipeline import default_pipeline, lower, make_context

GiB = 2**30

COPY = """
kernel copy<M = 8192, N = 8192>(x: f32[M, N]) -> (y: f32[M, N]) {
    y = x * 2.0
    return y
}
"""
# M * N * 4 bytes * 2 tensors = 150 GiB: more than the 144 GiB of m890.
BIG = {"M": 131072, "N": 153600}


def schedule(source: str, *directives: str) -> str:
    if not directives:
        return source
    return source + "\nschedule copy {\n" + "".join(f"    {d}\n" for d in directives) + "}\n"


def tiled(text: str, defines: dict | None = None, file: str = "k.zk", target: str = "m890"):
    """The one kernel of `text`, lowered to the tile level (no placement yet)."""
    module = build(text, file, defines or {}, None)
    lower(module, "tile", target)
    return module


def placed(text: str, defines: dict | None = None, target: str = "m890"):
    module = tiled(text, defines, target=target)
    PlaceHbmPass(target).apply(make_context(), module)
    return module


def errors(text: str, defines: dict | None = None, target: str = "m890"):
    with pytest.raises(CompileError) as info:
        placed(text, defines, target)
    return info.value.diagnostics


def cost(text: str, defines: dict | None = None, target: str = "m890"):
    module = build(text, "k.zk", defines or {}, None)
    lower(module, "ppu", target)
    kernel = module.ops.first
    workload = workload_of(kernel)
    return estimate(workload, load_target(target)), workload, kernel


def big_target(tmp_path, **values) -> str:
    """m890.toml with some `key = { value = ...` lines changed, as a file path."""
    text = (resources.files("zhenwu_cc.runtime.targets") / "m890.toml").read_text()
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = \{{ value = [^,]+,", f"{key} = {{ value = {value},",
                          text, flags=re.M)
        assert n == 1, key
    path = tmp_path / "roomy.toml"
    path.write_text(text)
    return str(path)


# ---- the attribute -------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "#ppu.hbm<stacks [0, 1, 2, 3, 4, 5], base 0x0, size 16777216, interleave 4096>",
    "#ppu.hbm<stacks [3], base 0x101000, size 8192, interleave 0, l2>",
])
def test_attribute_round_trips(text):
    attr = Parser(make_context(), text).parse_attribute()
    assert isinstance(attr, ppu.HbmAttr)
    assert str(attr) == text


def test_attribute_footprint_and_checks():
    assert ppu.HbmAttr((0, 1, 2, 3, 4, 5), 0, 16777216, 4096).per_stack_bytes == 683 * 4096
    assert ppu.HbmAttr((2,), 0, 100, 0).per_stack_bytes == 100
    with pytest.raises(VerifyException, match="one stack"):
        ppu.HbmAttr((0, 1), 0, 100, 0)
    with pytest.raises(VerifyException, match="distinct"):
        ppu.HbmAttr((1, 1), 0, 100, 4096)


def test_default_pipeline_places_between_cse_and_alloc_sram():
    passes = default_pipeline("ppu").split(",")
    at = next(i for i, p in enumerate(passes) if p.startswith("place-hbm"))
    assert passes[at - 1] == "cse" and passes[at + 1].startswith("alloc-sram")
    assert "place-hbm" not in default_pipeline("tile")


# ---- every example -----------------------------------------------------------------------------
def _regions(module) -> list[tuple[str, ppu.HbmAttr]]:
    out = []
    for kernel in module.ops:
        for i, arg in enumerate(kernel.body.block.args):
            out.append((f"{kernel.sym_name.data}.{arg.name_hint}", kernel.arg_attr(i, "ppu.hbm")))
        for op in kernel.body.walk():
            if op.name == "tile.empty":
                out.append((f"{kernel.sym_name.data}.{op.result.name_hint}",
                            op.attributes.get("ppu.hbm")))
    return out


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.zk")), ids=lambda p: p.name)
def test_examples_are_placed_deterministically_within_capacity(path):
    text = path.read_text()
    first, second = tiled(text, file=str(path)), tiled(text, file=str(path))
    for module in (first, second):
        PlaceHbmPass().apply(make_context(), module)
    assert str(first) == str(second)
    regions = _regions(first)
    assert regions == _regions(second)
    hbm = load_target("m890").hbm
    assert all(isinstance(r, ppu.HbmAttr) for _, r in regions), "every global tensor is placed"
    reported = 0
    for kernel, again in zip(first.ops, second.ops, strict=True):
        rows = placement_map(kernel)
        assert rows == placement_map(again)
        assert sum(r["bytes"] for r in rows if r["l2"]) <= load_target("m890").l2.persisting_bytes
        reported += len(rows)
    assert reported == len(regions), "the report lists every placed tensor"
    for name, r in regions:
        assert r.base.data % hbm.alignment == 0, name
        assert all(0 <= s < hbm.stacks for s in r.stack_ids), name
        assert r.base.data + r.per_stack_bytes <= hbm.stack_capacity, name
    for (a, ra), (b, rb) in itertools.combinations(regions, 2):
        if set(ra.stack_ids) & set(rb.stack_ids):
            disjoint = (ra.base.data + ra.per_stack_bytes <= rb.base.data
                        or rb.base.data + rb.per_stack_bytes <= ra.base.data)
            assert disjoint, f"{a} and {b} overlap"


def test_policy_interleaves_large_packs_small_and_pins():
    source = """
kernel mix<M = 1024, N = 1024>(x: f32[M, N], w: f32[M, N], b: f32[N]) -> (y: f32[M, N]) {
    y = x * w + b
    return y
}

schedule mix {
    place w in hbm stacks(1, 2)
}
"""
    rows = {r["tensor"]: r for r in placement_map(placed(source).ops.first)}
    assert rows["x"]["stacks"] == [0, 1, 2, 3, 4, 5] and rows["x"]["interleave"] == 4096
    assert rows["w"]["stacks"] == [1, 2] and rows["w"]["interleave"] == 4096
    assert rows["b"]["stacks"] == [0] and rows["b"]["interleave"] == 0  # 4 KiB: packed
    assert rows["b"]["bytes"] == 4096 and rows["x"]["bytes"] == 4 * 2**20
    # y follows x, which takes ceil(4 MiB / (6 x 4 KiB)) = 171 units of 4 KiB on each stack
    assert rows["y"]["role"] == "output" and rows["y"]["base"] == 171 * 4096


# ---- capacity ----------------------------------------------------------------------------------
def test_a_150_gib_kernel_does_not_fit_m890():
    (d,) = errors(COPY, BIG)
    assert d.code == "ZK0901"
    assert "needs 150.00 GiB (161061273600 bytes)" in d.message
    assert "m890 has 144.00 GiB (154618822656 bytes)" in d.message
    assert [n.message for n in d.notes] == [
        "`x` (input, f32[131072, 153600]): 75.00 GiB (80530636800 bytes)",
        "`y` (output, f32[131072, 153600]): 75.00 GiB (80530636800 bytes)"]
    assert d.span is not None and d.span.line == 2  # the kernel's declaration
    assert "shrink the tensors 1.042x" in d.help and "hbm.stacks.capacity" in d.help


def test_the_error_names_a_packaged_target_that_fits():
    (d,) = errors(COPY, {"M": 100000, "N": 153600}, target="h100")
    assert d.code == "ZK0901"
    assert "h200 (141.00 GiB)" in d.help and "m890 (144.00 GiB)" in d.help


def test_the_150_gib_kernel_fits_a_target_file_with_bigger_stacks(tmp_path, cli, zk_file):
    roomy = big_target(tmp_path, capacity=32 * GiB)
    path = zk_file(COPY)
    defines = [a for k, v in BIG.items() for a in ("-D", f"{k}={v}")]
    r = cli("compile", path, *defines, "--format", "json", "-o", tmp_path / "out.mlir")
    assert r.code == 1 and r.json["diagnostics"][0]["code"] == "ZK0901"
    r = cli("compile", path, *defines, "--target", roomy, "--format", "json",
            "-o", tmp_path / "out.mlir")
    assert r.code == 0, r.out
    rows = r.json["placement"]
    assert [(p["tensor"], p["role"], p["bytes"]) for p in rows] == [
        ("x", "input", 75 * GiB), ("y", "output", 75 * GiB)]
    assert rows[1]["base"] == 75 * GiB // 6 and rows[1]["stacks"] == list(range(6))


def test_a_pin_over_its_stacks_capacity():
    source = COPY.replace("(x: f32[M, N])", "(x: f32[M, N], w: f32[M, N])").replace(
        "x * 2.0", "x * w")
    (d,) = errors(schedule(source, "place w in hbm stacks(0)"), {"M": 65536, "N": 98304})
    assert d.code == "ZK0902"
    assert d.message == ("HBM stack 0 of m890 would hold 32.00 GiB (34359738368 bytes); it has "
                         "24.00 GiB (25769803776 bytes)")
    assert d.span.line == 2 and d.span.col == 47  # the pinned tensor `w`
    assert "`place w in hbm stacks(0, 1)`" in d.help and "pin fewer tensors" in d.help
    placed(schedule(source, "place w in hbm stacks(0, 1)"), {"M": 65536, "N": 98304})


def test_a_stack_the_target_lacks():
    (d,) = errors(schedule(COPY, "place x in hbm stacks(2, 7)"))
    assert d.code == "ZK0903" and "stack 7" in d.message and "(0..5)" in d.message
    assert d.span.line == 2  # the argument `x`
    placed(schedule(COPY, "place x in hbm stacks(2, 5)"))
    (d,) = errors(schedule(COPY, "place x in hbm stacks(2, 5)"), target="h100")  # 5 stacks
    assert d.code == "ZK0903"


def test_l2_resident_tensors_must_fit_the_persisting_region(tmp_path):
    source = COPY.replace("(x: f32[M, N])", "(x: f32[M, N], w: f32[M, N])").replace(
        "x * 2.0", "x * w")
    (d,) = errors(schedule(source, "place x, w in l2"), {"M": 4096, "N": 4096})
    assert d.code == "ZK0904"
    assert "need 128.00 MiB (134217728 bytes)" in d.message
    assert "m890 can set aside 48.00 MiB (50331648 bytes)" in d.message
    placed(schedule(source, "place w in l2"), {"M": 2048, "N": 4096})
    no_persist = big_target(tmp_path, persisting="false", persisting_max_fraction=0)
    (d,) = errors(schedule(source, "place w in l2"), {"M": 2048, "N": 4096}, target=no_persist)
    assert d.code == "ZK0904" and "cannot set aside a persisting region" in d.message
    assert "m890 (48.00 MiB)" in d.help  # the packaged m890, not this file


# ---- cost --------------------------------------------------------------------------------------
def test_extract_reads_the_placement():
    est, workload, kernel = cost(schedule(COPY, "place x in hbm stacks(3)", "place y in l2"),
                                 {"M": 1024})
    assert workload.tensors["x"].stacks == (3,)
    assert workload.tensors["y"].stacks == tuple(range(6)) and workload.tensors["y"].l2_resident


def test_pinning_streams_to_one_stack_costs_the_stack_share():
    base = cost(COPY)[0].time
    one = cost(schedule(COPY, "place x, y in hbm stacks(0)"))[0].time
    x_only = cost(schedule(COPY, "place x in hbm stacks(0)"))[0].time
    assert 5.5 < one / base < 6.0  # a sixth of the bandwidth (less the fixed overhead's share)
    # x alone on stack 0: that stack serves all of x and its sixth of y, 7/6 of 1/3 of the traffic
    assert 3.2 < x_only / base < 3.5


def test_a_reused_weight_in_l2_is_read_from_hbm_once():
    """Between the two matmuls a copy streams 256 MiB through L2, which evicts the weight
    unless it is pinned there."""
    two = """
kernel two<M = 4096, K = 2048, N = 2048>(x1: f16[M, K], x2: f16[M, K], w: f16[K, N],
                                         big: f16[8192, 8192])
    -> (y1: f16[M, N], z: f16[8192, 8192], y2: f16[M, N]) {
    y1 = f16(x1 @ w)
    z = big * 2.0
    y2 = f16(x2 @ w)
    return y1, z, y2
}
"""
    plain = cost(two)[0]
    pinned = cost(two + "\nschedule two {\n    place w in l2\n}\n")[0]
    w_bytes = 2048 * 2048 * 2
    assert plain.hbm_read_bytes - pinned.hbm_read_bytes == w_bytes
    assert pinned.phases[2].hbm_read_bytes == plain.phases[2].hbm_read_bytes - w_bytes


def test_trace_shows_each_stacks_traffic():
    est, workload, _ = cost(schedule(COPY, "place x in hbm stacks(0)"))
    target = load_target("m890")
    (row,) = trace.stack_traffic(est, target, workload)
    assert sum(row) == pytest.approx(est.hbm_read_bytes + est.hbm_write_bytes)
    x, y = 8192 * 8192 * 4, 8192 * 8192 * 4
    assert row[0] == pytest.approx(x + y / 6) and row[1] == pytest.approx(y / 6)
    counters = [e for e in trace.trace(est, target, workload)["traceEvents"]
                if e["name"] == "HBM stacks (GB/s)"]
    assert counters[0]["args"]["stack 0"] == pytest.approx(7 * counters[0]["args"]["stack 1"],
                                                           rel=1e-3)


def test_placement_in_cost_and_compile_reports(cli, zk_file):
    path = zk_file(schedule(COPY, "place x in hbm stacks(0)", "place y in l2"))
    r = cli("cost", path, "-D", "M=1024", "--format", "json")
    assert r.code == 0
    rows = {p["tensor"]: p for p in r.json["placement"]}
    assert rows["x"] == {"tensor": "x", "role": "input", "bytes": 32 * 2**20, "stacks": [0],
                         "base": 0x556000, "interleave": 4096, "l2": False}
    assert rows["y"]["l2"] is True and rows["y"]["stacks"] == list(range(6))
    text = cli("cost", path, "-D", "M=1024").out
    assert "HBM placement:" in text
    assert re.search(r"^  x\s+input\s+32\.00 MiB\s+0\s+0x556000\s+4096$", text, re.M)
    r = cli("compile", path, "-D", "M=1024", "--format", "json")
    assert r.json["placement"] == [{"kernel": "copy", **rows["x"]}, {"kernel": "copy", **rows["y"]}]
