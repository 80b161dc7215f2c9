"""The command line itself: no option abbreviations, usage errors that point at the right
--help, `opt --help` listing the passes, --print-ir-after names that must exist."""

from __future__ import annotations

import pytest

from zhenwu_cc.passes.registry import get_passes
from zhenwu_cc.pipeline import default_pipeline

SRC = """kernel k<N = 8>(x: f32[N]) -> f32[N] {
    y = exp(x)
    return y
}
"""
COMMANDS = ("check", "compile", "run", "cost", "compare", "opt")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_abbreviated_option_is_a_usage_error(cli, zk_file, command):
    r = cli(command, zk_file(SRC), "--form", "json")
    assert r.code == 2 and r.out == ""  # not text output, as if `--form` meant `--format`
    assert f"zhenwu-cc {command}: unrecognized arguments: --form json" in r.err


@pytest.mark.parametrize("argv", [["compile", "--targ", "h100"], ["run", "--refer"],
                                  ["opt", "--split"], ["cost", "--tra", "t.json"]])
def test_no_abbreviations_anywhere(cli, zk_file, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    r = cli(argv[0], zk_file(SRC), *argv[1:])
    assert r.code == 2 and "unrecognized arguments" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.zk"]


@pytest.mark.parametrize("argv, points_at", [
    (["compile", "{src}", "--no-such-flag"], "zhenwu-cc compile --help"),
    (["run", "{src}", "--seed", "-1"], "zhenwu-cc run --help"),
    (["cost"], "zhenwu-cc cost --help"),
    (["frobnicate"], "zhenwu-cc --help"),
])
def test_a_usage_error_points_at_its_subcommands_help(cli, zk_file, argv, points_at):
    src = zk_file(SRC)
    r = cli(*[a.format(src=src) for a in argv])
    assert r.code == 2 and f"run `{points_at}` for usage" in r.err
    doc = cli(*[a.format(src=src) for a in argv], "--format", "json").json
    assert f"run `{points_at}` for usage" in doc["message"]


def test_opt_help_lists_every_pass_and_the_default_pipelines(cli):
    r = cli("opt", "--help")
    assert r.code == 0
    listed = [line.split()[0] for line in r.out.split("passes (")[1].splitlines()[1:]
              if line.startswith("  ") and line.split()]
    assert listed[:len(get_passes())] == sorted(get_passes())
    assert f"ppu: {default_pipeline('ppu')}" in r.out
    assert "tile{target}" not in r.out and "{target}" in r.out  # options are named


@pytest.mark.parametrize("name, words", [
    ("tiles", ["unknown pass `tiles`", "did you mean `tile`?"]),
    ("lower-ppu", ["does not run `lower-ppu`", "passes in this pipeline: decompose, cast, tile"]),
])
def test_print_ir_after_a_pass_that_does_not_run_is_zk0006(cli, zk_file, name, words):
    r = cli("compile", zk_file(SRC), "--emit", "tile", "--print-ir-after", name, "--format", "json")
    assert r.code == 1
    (diag,) = r.json["diagnostics"]
    assert diag["code"] == "ZK0006"
    text = diag["message"] + " " + diag["help"]
    for word in words:
        assert word in text


def test_print_ir_after_is_checked_before_verify_diagnostics_swallows_errors(cli, tmp_path):
    ir = tmp_path / "k.mlir"
    ir.write_text("builtin.module {\n}\n")
    r = cli("opt", ir, "-p", "cse", "--print-ir-after", "cs", "--verify-diagnostics")
    assert r.code == 1 and "error[ZK0006]: --print-ir-after cs: unknown pass `cs`" in r.err
