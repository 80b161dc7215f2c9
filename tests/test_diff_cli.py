"""`zhenwu-cc diff OLD NEW`: costs side by side, the terms that changed and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zhenwu_cc.cli import main
from zhenwu_cc.costdiff import DIFF_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
GEMM = ROOT / "examples" / "gemm.zk"
SHAPE = ["-D", "M=2048", "-D", "N=2048", "-D", "K=2048"]


@pytest.fixture
def variants(tmp_path):
    text = GEMM.read_text()
    retiled = tmp_path / "retiled.zk"
    retiled.write_text(text.replace("tile c [128, 128, 64]", "tile c [64, 128, 128]"))
    fp8 = tmp_path / "fp8.zk"
    fp8.write_text(text.replace("    buffers 2", "    buffers 2\n    precision a, b as f8E4M3FN"))
    return {"retiled": str(retiled), "fp8": str(fp8)}


def _diff(capsys, old: str, new: str, *extra: str) -> tuple[int, dict]:
    code = main(["diff", old, new, *SHAPE, *extra, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def _total(doc: dict, term: str) -> dict:
    return next(t for t in doc["totals"] if t["term"] == term)


def test_retiled(capsys, variants):
    code, doc = _diff(capsys, str(GEMM), variants["retiled"])
    assert code == 0 and doc["schema"] == DIFF_SCHEMA
    assert doc["schedule"] == {"removed": ["tile c [128, 128, 64]"],
                               "added": ["tile c [64, 128, 128]"]}
    phase = doc["phases"][0]
    assert phase["reasons"][:4] == ["tile [128, 128] K 64 -> [64, 128] K 128",
                                    "tiles 256 -> 512", "waves 2 -> 4", "steps 32 -> 16"]
    time = _total(doc, "time_s")
    assert time["changed"] and time["old"] == doc["old"]["time_s"]
    assert doc["why"][0].startswith("time \u2212") and "tile [128, 128] K 64" in doc["why"][0]


def test_precision(capsys, variants):
    code, doc = _diff(capsys, str(GEMM), variants["fp8"])
    assert code == 0
    hbm = _total(doc, "hbm_read_bytes")
    assert hbm["change"] == -0.5 and hbm["changed"]
    assert "a loaded as f16 -> f8E4M3FN" in doc["phases"][0]["reasons"]
    assert any(w.startswith("HBM read \u221250.0%: phase [0]: a loaded as f16 -> f8E4M3FN")
               for w in doc["why"])
    assert doc["schedule"]["added"] == ["precision a, b as f8E4M3FN"]


def test_same_kernel_nothing_changed(capsys):
    code, doc = _diff(capsys, str(GEMM), str(GEMM))
    assert code == 0 and doc["why"] == []
    assert not any(t["changed"] for t in doc["totals"])
    assert all(p["reasons"] == [] and p["changes"] == [] for p in doc["phases"])
    assert main(["diff", str(GEMM), str(GEMM), *SHAPE]) == 0
    assert "why: nothing changed" in capsys.readouterr().out


def test_text(capsys, variants):
    assert main(["diff", str(GEMM), variants["fp8"], *SHAPE]) == 0
    out = capsys.readouterr().out
    assert "HBM read" in out and "\u221250.0%" in out
    assert "  + precision a, b as f8E4M3FN" in out
    names = out.splitlines()[1].split()
    assert names == ["...ples/gemm.zk", "..." + variants["fp8"][-12:]]  # long names cut apart


def test_a_broken_new_file_is_its_diagnostic(capsys, tmp_path):
    bad = tmp_path / "bad.zk"
    bad.write_text(GEMM.read_text().replace("c = a @ b", "c = a @ q"))
    code, doc = _diff(capsys, str(GEMM), str(bad))
    assert code == 1 and doc["schema"] == DIFF_SCHEMA
    assert doc["diagnostics"][0]["code"] == "ZK0201"
    assert doc["diagnostics"][0]["span"]["file"] == str(bad)


def test_diff_is_deterministic(capsys, variants):
    assert _diff(capsys, str(GEMM), variants["fp8"]) == _diff(capsys, str(GEMM), variants["fp8"])


def test_renamed_parameters_pair_by_position(capsys):
    """gemm_fp8.zk names its operands x, w and its result result0: the diff pairs them with
    gemm.zk's a, b, c by position."""
    code, doc = _diff(capsys, str(GEMM), str(ROOT / "examples" / "gemm_fp8.zk"))
    assert code == 0
    reasons = doc["phases"][0]["reasons"]
    assert "a/x loaded as f16 -> f8E4M3FN" in reasons
    assert "c/result0 stored as f32 -> bf16" in reasons
    write = next(w for w in doc["why"] if w.startswith("HBM write"))
    assert "c/result0 stores" in write and "loaded" not in write
