"""Every hint: a kernel that triggers it, and one where it is absent; a proposed edit compiles
and its estimate is the one the hint states."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import zhenwu_cc
from zhenwu_cc.evaluate import evaluate
from zhenwu_cc.hints import HINTS
from zhenwu_cc.schedule_edit import Edit, directives

ROOT = Path(__file__).resolve().parent.parent

GEMM = """kernel g<M = {M}, N = {N}, K = {K}>(a: f16[M, K], b: f16[K, N]) -> f32[M, N] {{
    c = a @ b
    return c
}}
schedule g {{
{sched}
}}
"""
FULL_WAVE = GEMM.format(M=1024, N=2048, K=256, sched="    tile c [128, 128, 64]")  # 128 tiles
CHAIN = """kernel g<M = 512, K = 512>(a: f16[M, K], b: f16[K, K], w: f16[K, K]) -> f32[M, K] {
    h = f16(a @ b)
    c = h @ w
    return c
}
"""
EXP32 = """kernel e<M = 1024, N = 1024>(x: f32[M, N]) -> f32[M, N] {
    y = exp(x)
    return y
}
"""


def _hints(source: str, check: bool = False, **kw) -> list[dict]:
    return evaluate(zhenwu_cc.compile(source), check=check, **kw).record["hints"]


def _codes(hints: list[dict]) -> list[str]:
    return [h["code"] for h in hints]


def test_full_wave_gemm_gets_no_hint():
    """128 tiles of 128x128 on 128 compute units, default buffers: nothing to suggest."""
    assert _hints(FULL_WAVE) == []


def test_zkh01_low_occupancy_with_a_costed_edit():
    source = GEMM.format(M=256, N=256, K=256, sched="    tile c [128, 128, 64]")
    hints = [h for h in _hints(source) if h["code"] == "ZKH01"]
    assert len(hints) == 1
    h = hints[0]
    assert h["active_cus"] == 4 and h["compute_units"] == 128
    assert h["edit"]["action"] == "replace" and h["edit"]["old"] == "tile c [128, 128, 64]"
    edited = Edit("g", h["edit"]["line"], directives(source, "<source>", "g")[0]).apply(source)
    est = zhenwu_cc.compile(edited).cost()
    assert float(f"{est.time:.4g}") == h["estimated_time_s"]
    assert est.time < zhenwu_cc.compile(source).cost().time


def test_zkh01_absent_when_the_chip_is_full():
    assert "ZKH01" not in _codes(_hints(FULL_WAVE))


def test_zkh02_wave_quantization():
    source = GEMM.format(M=1280, N=1664, K=256, sched="    tile c [128, 128, 64]")  # 130 tiles
    h = next(h for h in _hints(source) if h["code"] == "ZKH02")
    assert (h["tiles"], h["waves"], h["last_wave_tiles"]) == (130, 2, 2)
    assert h["edit"] is not None and h["saving"] > 0


def test_zkh02_absent_when_the_waves_are_full():
    assert "ZKH02" not in _codes(_hints(FULL_WAVE))


def test_zkh03_tile_could_double():
    source = GEMM.format(M=4096, N=4096, K=1024, sched="    tile c [64, 64, 64]")
    h = next(h for h in _hints(source) if h["code"] == "ZKH03")
    sizes = [int(x) for x in re.findall(r"\d+", h["edit"]["line"])]
    assert sorted(sizes) == [64, 64, 128]  # one size doubled
    assert h["sram_bytes"] <= 233472


def test_zkh03_absent_when_doubling_does_not_help():
    assert "ZKH03" not in _codes(_hints(FULL_WAVE))


def test_zkh04_intermediate_round_trip():
    hints = [h for h in _hints(CHAIN) if h["code"] == "ZKH04"]
    assert hints and hints[0]["phase"] == 0 and hints[0]["edit"] is None
    assert hints[0]["bytes"] >= 2 * 512 * 512 * 2  # written once, read back at least once


def test_zkh04_absent_for_a_negligible_round_trip():
    """Small FP8 attention (unfused: `p`'s per-tensor scale needs all of P): `s` makes a round
    trip worth noting, the two row statistics (a few KiB) do not; a round trip under
    MIN_ROUND_TRIP of the kernel's time is no hint."""
    from zhenwu_cc.hints import MIN_ROUND_TRIP

    text = (ROOT / "examples" / "attention_fp8.zk").read_text()
    k = zhenwu_cc.compile(text.replace("precision p as f8E4M3FN scale unit",
                                       "precision p as f8E4M3FN scale tensor"),
                          defines={"B": 1, "H": 2, "S": 128, "D": 64})
    hints = [h for h in evaluate(k, check=False).record["hints"] if h["code"] == "ZKH04"]
    assert [h["tensor"] for h in hints] == ["s"]
    assert hints[0]["saving"] >= MIN_ROUND_TRIP


def test_zkh04_absent_without_intermediates():
    assert "ZKH04" not in _codes(_hints(FULL_WAVE))


def test_zkh05_narrower_precision_within_the_budget():
    h = next(h for h in _hints(EXP32, check=True) if h["code"] == "ZKH05")
    assert h["edit"]["line"] == "precision x as bf16" and h["edit"]["action"] == "add"
    assert 0 < h["rel_l2_error"] <= h["budget_rel_l2"] == 1e-2


def test_zkh05_absent_over_the_budget():
    assert "ZKH05" not in _codes(_hints(EXP32, check=True, max_rel_l2=1e-6))


def test_zkh05_unchecked_without_the_numerics_check():
    h = next(h for h in _hints(EXP32) if h["code"] == "ZKH05")
    assert h["rel_l2_error"] is None and "unchecked" in h["message"]


def test_zkh06_directive_without_effect():
    source = GEMM.format(M=1024, N=2048, K=1024, sched="    tile c [128, 128, 64]\n    buffers 2")
    h = next(h for h in _hints(source) if h["code"] == "ZKH06")
    assert h["edit"] == {"action": "remove", "kernel": "g", "line": None, "old": "buffers 2",
                         "at_line": 7}


def test_zkh06_absent_when_the_directive_matters():
    source = GEMM.format(M=1024, N=2048, K=1024, sched="    tile c [128, 128, 64]\n    buffers 1")
    assert "ZKH06" not in _codes(_hints(source))


def test_zkh06_clamped_tile():
    source = GEMM.format(M=64, N=96, K=4096, sched="    tile c [128, 128, 32]")
    h = next(h for h in _hints(source) if h["code"] == "ZKH06")
    assert h["sizes_used"] == [64, 96, 32] and h["edit"]["line"] == "tile c [64, 96, 32]"


def test_hints_are_deterministic():
    source = GEMM.format(M=256, N=256, K=256, sched="    tile c [128, 128, 64]\n    buffers 2")
    assert _hints(source) == _hints(source)


def test_agent_guide_lists_every_hint_code():
    guide = (ROOT / "docs" / "agent-guide.md").read_text()
    rows = re.findall(r"^\| `(ZKH\d\d)` \| (.*) \| (.*) \|$", guide, re.M)
    assert rows == [(code, *HINTS[code]) for code in sorted(HINTS)]


@pytest.mark.parametrize("code", sorted(HINTS))
def test_hint_codes_are_not_diagnostic_codes(code):
    from zhenwu_cc.core.diagnostics import CODES

    assert code not in CODES and not code.startswith("ZK0") and not code.startswith("ZK1")


def test_removing_a_tile_directive_without_parsing_is_the_edited_source():
    """Context costs `remove tile ...` on the parsed kernel (the `#zk.tile` of that line
    dropped): the same estimate as compiling the source without the line."""
    from zhenwu_cc.hints import Context

    source = GEMM.format(M=1024, N=2048, K=1024, sched="    tile c [64, 64, 64]")
    k = zhenwu_cc.compile(source)
    ctx = Context(k, k.costing(k.target))
    edit = Edit("g", "", ctx.directives[0])
    fast = ctx.cost(edit)
    assert fast.time != k.cost().time  # the directive mattered
    assert fast.to_dict() == zhenwu_cc.compile(edit.apply(source)).cost().to_dict()
