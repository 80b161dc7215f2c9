"""The README's tour works as written, in order (a file a line reads was written by an earlier
line), its outputs land where its flags say, and a checkout stays clean after it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OUTPUT_FLAGS = ("-o", "--trace", "--out")


def _tour() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## A short tour\n+```sh\n(.*?)```", text, re.S).group(1)
    return [shlex.split(line.split("#")[0])[1:] for line in block.splitlines()
            if line.startswith("zhenwu-cc ")]


def _outputs(argv: list[str]) -> list[str]:
    return [b for a, b in zip(argv, argv[1:]) if a in OUTPUT_FLAGS]


def test_the_tour_runs_in_order_and_writes_where_it_says(cli, tmp_path, monkeypatch):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    written: list[str] = []
    for argv in _tour():
        reads = argv[1] if argv[0] == "opt" else None
        assert reads is None or reads in written, f"`{shlex.join(argv)}` reads a file no " \
            "earlier line of the tour writes"
        r = cli(*argv)
        assert r.code == 0, (argv, r.err)
        for out in _outputs(argv):
            assert (tmp_path / out).is_file(), out
            written.append(out)
        if argv[0] == "cost" and "--trace" in argv:
            assert f"trace written to {_outputs(argv)[0]}" in r.out
        if argv[0] == "check":
            assert re.search(r"^  gemm<M = \d+, N = \d+, K = \d+>\(a: f16\[", r.out, re.M)
    assert "tile.mlir" in written and "attention.json" in written


def test_the_tours_outputs_are_git_ignored():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    outputs = [out for argv in _tour() for out in _outputs(argv)]
    assert outputs
    result = subprocess.run(["git", "-C", str(REPO), "check-ignore", *outputs],
                            capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(outputs)


@pytest.mark.parametrize("stage", ["tile", "ppu"])
def test_cli_md_shows_the_default_pipelines_as_dumped(cli, stage):
    r = cli("compile", REPO / "examples" / "gemm.zk", "--emit", stage, "--target", "m890",
            "-D", "M=64", "-D", "N=64", "-D", "K=64", "--dump-pass-pipeline")
    dumped = re.search(r"^builtin\.module\((.*)\)$", r.err, re.M).group(1)
    assert "cast," in dumped
    assert f"`{dumped}`" in (REPO / "docs" / "cli.md").read_text()
