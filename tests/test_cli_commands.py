"""What `check`, `cost` and `compare` print: signatures with shape parameters, and a target
that cannot fit a schedule as one row of the comparison."""

from __future__ import annotations

import pytest

SRC = """kernel k<M = 4, N = 3>(a: f16[M, N], b: f16[M, N]) -> (s: f32[M, N], m: f32[N]) {
    s = f32(a) + f32(b)
    m = max(s, axis=0)
    return s, m
}
kernel one(x: f32[8]) -> f32[8] {
    return exp(x)
}
"""
# Fits the M890 and the H100, not the 810E's smaller SRAM (docs/errors.md, ZK0604).
ATTN = """kernel attn<S = 1024, D = 128>(q: bf16[S, D], k: bf16[S, D], v: bf16[S, D]) -> f32[S, D] {
    p = softmax(q @ transpose(k) * rsqrt(D), axis=-1)
    o = bf16(p) @ v
    return o
}
schedule attn {
    tile o [128, 128, 64]
}
"""


def test_check_prints_each_kernels_signature(cli, zk_file):
    path = zk_file(SRC)
    r = cli("check", path, "-D", "M=16")
    assert r.code == 0
    assert r.out == (f"{path}: ok (k, one)\n"
                     "  k<M = 16, N = 3>(a: f16[16, 3], b: f16[16, 3]) "
                     "-> (s: f32[16, 3], m: f32[3])\n"
                     "  one(x: f32[8]) -> (result0: f32[8])\n")


def test_cost_header_names_the_shape_parameters(cli, zk_file):
    path = zk_file(ATTN)
    r = cli("cost", path, "-D", "S=512")
    assert r.code == 0
    assert r.out.splitlines()[0].startswith("kernel attn<S = 512, D = 128> on m890: ")
    assert cli("cost", path, "-D", "S=512", "--format", "json").json["params"] == {
        "S": 512, "D": 128}


def test_compare_shows_a_target_that_does_not_fit_as_one_row(cli, zk_file):
    path = zk_file(ATTN)
    r = cli("compare", path, "--targets", "m890,810e,h100")
    assert r.code == 0, r.err
    rows = r.out.splitlines()[2:]
    assert [row.split()[0] for row in rows] == ["m890", "810e", "h100"]
    assert rows[1].startswith("810e     does not fit (ZK0604): tiles of `o`")
    assert "does not fit" not in rows[0] + rows[2]
    doc = cli("compare", path, "--targets", "m890,810e,h100", "--format", "json").json
    assert doc["ok"] and doc["diagnostics"] == []
    fits = {row["target"]: row["fits"] for row in doc["comparison"]}
    assert fits == {"m890": True, "810e": False, "h100": True}
    (misfit,) = [row for row in doc["comparison"] if not row["fits"]]
    assert misfit["time_s"] is None and misfit["diagnostic"]["code"] == "ZK0604"


def test_compare_fails_when_no_target_fits(cli, zk_file):
    r = cli("compare", zk_file(ATTN), "--targets", "810e", "--format", "json")
    assert r.code == 1
    assert [d["code"] for d in r.json["diagnostics"]] == ["ZK0604"]


@pytest.mark.parametrize("targets, code", [("m890,nope", "ZK0701")])
def test_compare_other_errors_still_fail_the_command(cli, zk_file, targets, code):
    r = cli("compare", zk_file(ATTN), "--targets", targets, "--format", "json")
    assert r.code == 1 and r.json["diagnostics"][0]["code"] == code
