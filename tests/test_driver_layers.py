"""The driver's layering: the API stands without the CLI, the CLI costs and reads placement
through the API and the cost report, one default target, one location -> Span."""

from __future__ import annotations

import subprocess
import sys

import pytest
from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr, UnknownLoc

from conftest import EXAMPLES, REPO

COPY = """
kernel copy<M = 1024>(x: f32[M, 1024]) -> (y: f32[M, 1024]) {
    y = x * 1.0
    return y
}
schedule copy {
    place x in hbm stacks(0)
    place y in l2
}
"""


def test_the_api_never_loads_the_cli():
    """compile(), signature, ir() and cost() without `zhenwu_cc.cli` in the process."""
    code = ("import sys, zhenwu_cc\n"
            f"k = zhenwu_cc.compile({str(EXAMPLES / 'gemm.zk')!r}, defines={{'M': 64, 'N': 64,"
            " 'K': 64})\n"
            "k.signature; k.ir('tile'); k.cost()\n"
            "assert 'zhenwu_cc.cli' not in sys.modules, 'the API imported the CLI'\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_cli_cost_is_the_apis_costing(cli, zk_file):
    import zhenwu_cc

    path = zk_file(COPY)
    r = cli("cost", path, "--target", "h100", "--format", "json")
    assert r.code == 0, r.out
    c = zhenwu_cc.compile(path).costing("h100")
    assert r.json["cost"] == c.estimate.to_dict()
    assert c.target.name == "h100" and c.kernel.sym_name.data == "copy"


def test_placement_is_read_from_the_ppu_kernel(cli, zk_file):
    import zhenwu_cc
    from zhenwu_cc.runtime.cost.report import placement_map

    path = zk_file(COPY)
    rows = placement_map(zhenwu_cc.compile(path).module("ppu").ops.first)
    assert [(r["tensor"], r["stacks"], r["l2"]) for r in rows] == [
        ("x", [0], False), ("y", list(range(6)), True)]
    assert cli("cost", path, "--format", "json").json["placement"] == rows
    assert placement_map(zhenwu_cc.compile(path).zk) == []  # not lowered: nothing placed yet


def test_one_default_target_for_the_cli_and_the_api(cli, zk_file, monkeypatch):
    import zhenwu_cc
    from zhenwu_cc.core import target

    path = zk_file(COPY)
    monkeypatch.delenv("ZHENWU_TARGET", raising=False)
    monkeypatch.setattr(target, "DEFAULT_TARGET", "h200")
    assert zhenwu_cc.compile(path).target == "h200"
    assert cli("compile", path, "--format", "json").json["target"] == "h200"
    monkeypatch.setenv("ZHENWU_TARGET", "h20")
    assert zhenwu_cc.compile(path).target == "h20"
    assert cli("compile", path, "--format", "json").json["target"] == "h20"


def test_span_at_is_the_one_location_to_span():
    from zhenwu_cc.dialects.loc import location, span_at

    loc = FileLineColLoc(StringAttr("k.zk"), IntAttr(3), IntAttr(7))
    span = span_at(loc, 4)
    assert (span.file, span.line, span.col, span.end_col) == ("k.zk", 3, 7, 11)
    assert span_at(UnknownLoc()) is None and span_at(None) is None
    assert location(span_at(loc)) == loc


def test_front_end_modules_stay_small():
    """One idea a module: none of the hand-written front-end modules over ~700 lines."""
    big = {p.name: n for p in (REPO / "zhenwu_cc" / "frontend").glob("*.py")
           if p.name != "_tables.py" and (n := len(p.read_text().splitlines())) > 700}
    assert not big, big


def test_costing_checks_its_target_argument():
    import zhenwu_cc
    from zhenwu_cc.core.diagnostics import CompileError

    k = zhenwu_cc.compile(EXAMPLES / "gemm.zk", defines={"M": 64, "N": 64, "K": 64})
    with pytest.raises(CompileError) as info:
        k.costing(7)
    assert info.value.diagnostics[0].code == "ZK0512"
