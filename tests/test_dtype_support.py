"""docs/dtype-support.md is what benchmarks/dtype_table.py generates from the target files."""

from __future__ import annotations

import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_committed_table_matches_the_target_files():
    script = runpy.run_path(str(REPO / "benchmarks" / "dtype_table.py"))
    doc = (REPO / "docs" / "dtype-support.md").read_text()
    assert doc == script["render"](), (
        "docs/dtype-support.md is stale: run .venv/bin/python benchmarks/dtype_table.py "
        "> docs/dtype-support.md")


def test_fp4_is_never_native_where_the_target_lacks_it():
    script = runpy.run_path(str(REPO / "benchmarks" / "dtype_table.py"))
    rows = {line.split("|")[1].strip(): line for line in script["render"]().splitlines()
            if line.startswith("| `f4E2M1FN`")}
    assert rows
    header = next(line for line in script["render"]().splitlines() if line.startswith("| dtype"))
    targets = [c.strip() for c in header.split("|")[2:-1]]
    for line in rows.values():
        cells = dict(zip(targets, (c.strip() for c in line.split("|")[2:-1])))
        assert cells["h20"].startswith("emulated") and cells["810e"].startswith("emulated")
        assert cells["m890"].startswith("native")
