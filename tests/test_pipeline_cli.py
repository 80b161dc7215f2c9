"""The pass manager's mlir-opt flags, on `compile` and `opt`."""

from __future__ import annotations

import re

SRC = """kernel k<M = 40, N = 24, K = 32>(a: f16[M, K], b: f16[K, N]) -> f16[M, N] {
    c = f16(gelu(a @ b))
    return c
}
"""


def test_default_pipeline_per_stage(cli, zk_file):
    path = zk_file(SRC)
    zk = cli("compile", path, "--emit", "zk", "--format", "json").json
    tile = cli("compile", path, "--emit", "tile", "--format", "json").json
    ppu = cli("compile", path, "--format", "json").json
    assert zk["pipeline"] == "" and "zk.matmul" in zk["ir"] and "tile." not in zk["ir"]
    assert tile["pipeline"].startswith("decompose,") and "tile.grid" in tile["ir"]
    assert "ppu.launch" in ppu["ir"] and ppu["emit"] == "ppu"
    passes = [p.split("{")[0] for p in ppu["pipeline"].split(",")]
    assert passes.index("tile") < passes.index("place-hbm") < passes.index("alloc-sram") \
        < passes.index("lower-ppu")


def test_dump_pass_pipeline_shows_options(cli, zk_file):
    r = cli("compile", zk_file(SRC), "--dump-pass-pipeline", "--target", "h100")
    assert r.code == 0
    assert 'tile{target="h100" fuse=true}' in r.err and "builtin.module(" in r.err


def test_print_ir_after_all_and_after_one(cli, zk_file):
    path = zk_file(SRC)
    r = cli("compile", path, "--emit", "tile", "--print-ir-after-all")
    headers = re.findall(r"// -----// IR after (\S+) \((.*)\) //----- //", r.err)
    names = [h[0] for h in headers]
    assert names[0] == "decompose" and names[-2:] == ["canonicalize", "cse"] and "tile" in names
    assert dict(headers)["tile"] == 'tile{target="m890" fuse=true}'
    r = cli("compile", path, "--emit", "tile", "--print-ir-after", "decompose")
    assert r.err.count("// -----// IR after") == 1 and "zk.erf" in r.err


def test_print_ir_tree_dir_writes_numbered_files(cli, zk_file, tmp_path):
    out = tmp_path / "tree"
    r = cli("compile", zk_file(SRC), "--print-ir-tree-dir", out)
    assert r.code == 0
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "01_decompose.mlir" and any(f.endswith("_lower-ppu.mlir") for f in files)
    text = (out / files[1]).read_text()
    assert text.startswith("// -----// IR after cast") or text.startswith("// -----// IR after tile")
    assert 'loc("' in text  # tree files carry source locations


def test_timing_reports_every_pass(cli, zk_file):
    r = cli("compile", zk_file(SRC), "--timing")
    assert "Pass execution timing report" in r.err
    for name in ("decompose", "tile", "alloc-sram", "lower-ppu"):
        assert re.search(rf"\(\s*[\d.]+%\)\s+{re.escape(name)}\b", r.err), name


def test_custom_pipeline_and_unknown_pass(cli, zk_file):
    path = zk_file(SRC)
    r = cli("compile", path, "-p", "decompose", "--format", "json")
    assert r.code == 0 and "zk.erf" in r.json["ir"] and "tile.grid" not in r.json["ir"]
    r = cli("compile", path, "-p", "decompose,tiel", "--format", "json")
    assert r.code == 1
    (d,) = r.json["diagnostics"]
    assert d["code"] == "ZK0006" and "tiel" in d["message"] and "`tile`" in d["help"]


def test_opt_replays_a_dumped_stage(cli, zk_file, tmp_path):
    """IR printed after one pass can be fed back to `opt` to replay the rest."""
    path = zk_file(SRC)
    tile_ir = tmp_path / "k.tile.mlir"
    assert cli("compile", path, "--emit", "tile", "-o", tile_ir).code == 0
    direct = cli("compile", path).out
    replay = cli("opt", tile_ir, "-p", 'place-hbm,alloc-sram,lower-ppu,canonicalize,cse').out
    assert replay == direct


def test_no_verify_each_still_runs(cli, zk_file, monkeypatch):
    from zhenwu_cc import pipeline

    verified: list[str] = []
    monkeypatch.setattr(pipeline, "verify", lambda module, after: verified.append(after))
    path = zk_file(SRC)
    r = cli("compile", path, "--no-verify-each")
    assert r.code == 0 and "ppu.kernel" in r.out
    assert verified == []
    r = cli("compile", path, "--emit", "tile")
    assert r.code == 0
    assert verified == [f"pass `{p}`" for p in ("decompose", "cast", "tile", "canonicalize", "cse")]
