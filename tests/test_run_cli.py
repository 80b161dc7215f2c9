"""`zhenwu-cc run --reference`: outputs, .npz round trips, input errors, determinism."""

from __future__ import annotations

import io

import ml_dtypes
import numpy as np
import pytest
from zhenwu_cc.runtime.reference import check_inputs, evaluate

from zhenwu_cc.frontend import build

SRC = """kernel mlp<M = 4, K = 8, N = 3>(x: f16[M, K], w: f16[K, N], n: i8[N]) -> (h: f32[M, N],
                                                                          c: i32[N]) {
    h = gelu(x @ w)
    c = i32(n) * 2
    return h, c
}
"""
TWO = """kernel a(x: f32[2]) -> f32[2] { return x }
kernel b(x: f32[2]) -> f32[2] { return exp(x) }
"""


def save_npz(path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def expected(src: str, given: dict, seed: int = 0, mode: str = "f64", **defines) -> dict:
    k = build(src, "k.zk", defines).ops.first
    return evaluate(k, check_inputs(k, given, seed=seed), mode=mode)


def test_text_output_one_line_per_result(cli, zk_file):
    r = cli("run", zk_file(SRC), "--reference")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["h", "c"]
    assert lines[0].startswith("h: f32[4, 3] min=") and "nan=0 inf=0" in lines[0]
    c = expected(SRC, {})["c"]
    assert f"max={c.max():.6g}" in lines[1]
    assert cli("run", zk_file(SRC), "--reference").out == r.out


def test_json_output_fields(cli, zk_file):
    r = cli("run", zk_file(SRC), "--reference", "--mode", "typed", "--seed", "9", "-D", "M=2",
            "--format", "json")
    assert r.code == 0
    doc = r.json
    assert doc["ok"] and doc["command"] == "run"
    assert (doc["mode"], doc["seed"], doc["executor"], doc["kernel"]) == ("typed", 9, "reference",
                                                                          "mlp")
    assert [i["source"] for i in doc["inputs"]] == ["random"] * 3
    h = doc["outputs"][0]
    assert (h["name"], h["dtype"], h["shape"], h["storage"]) == ("h", "f32", [2, 3], "float32")
    want = expected(SRC, {}, seed=9, mode="typed", M=2)["h"].astype(np.float64)
    assert h["max"] == float(want.max()) and h["std"] == float(want.std())
    assert (h["nan"], h["inf"]) == (0, 0)


def test_out_round_trip_and_inputs(cli, zk_file, tmp_path):
    x = np.linspace(-2, 2, 32).reshape(4, 8)
    save_npz(tmp_path / "in.npz", x=x)
    out = tmp_path / "out.npz"
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--out", out,
            "--seed", "3", "--format", "json")
    assert r.code == 0, r.out
    assert [i["source"] for i in r.json["inputs"]] == ["file", "random", "random"]
    want = expected(SRC, {"x": x}, seed=3)
    with np.load(out) as got:
        assert sorted(got.files) == ["c", "h"]
        for name in want:
            assert got[name].dtype == want[name].dtype
            np.testing.assert_array_equal(got[name], want[name])
    first = out.read_bytes()
    assert cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--out", out,
               "--seed", "3").code == 0
    assert out.read_bytes() == first  # same inputs, same bytes (no zip timestamps)


def test_typed_low_precision_outputs_are_stored_as_float32(cli, zk_file, tmp_path):
    src = "kernel k(x: f32[4]) -> bf16[4] { return bf16(x * 3.0) }"
    out = tmp_path / "o.npz"
    assert cli("run", zk_file(src), "--reference", "--mode", "typed", "--out", out).code == 0
    want = expected(src, {}, mode="typed")["result0"]
    assert want.dtype == ml_dtypes.bfloat16
    with np.load(out) as got:
        assert got["result0"].dtype == np.float32
        np.testing.assert_array_equal(got["result0"], want.astype(np.float32))


def test_run_executes_the_lowered_program_by_default(cli, zk_file):
    r = cli("run", zk_file(SRC), "--check", "--format", "json")
    assert r.code == 0, r.out
    doc = r.json
    assert doc["executor"] == "ppu" and doc["target"] == "m890"
    assert [(c["name"], c["passed"]) for c in doc["check"]] == [("h", True), ("c", True)]
    assert doc["cost"]["schema"] == "zhenwu-cc.cost/1" and doc["cost"]["time_s"] > 0


def test_run_check_text_names_the_largest_error(cli, zk_file):
    r = cli("run", zk_file(SRC), "--check")
    assert r.code == 0
    assert "check h: ok" in r.out and "max abs error" in r.out and "estimated on m890" in r.out


def test_several_kernels_need_a_choice(cli, zk_file):
    path = zk_file(TWO)
    r = cli("run", path, "--reference")
    assert r.code == 1
    assert "ZK0004" in r.err and "a, b" in r.err and "--kernel a" in r.err
    r = cli("run", path, "--reference", "--kernel", "b", "--format", "json")
    assert r.code == 0 and r.json["kernel"] == "b"


@pytest.mark.parametrize("arrays,code,words", [
    ({"xx": np.zeros((4, 8))}, "ZK0501", ["`xx`", "x, w, n"]),
    ({"w": np.zeros((3, 8))}, "ZK0502", ["`w`", "[3, 8]", "f16[8, 3]"]),
    ({"n": np.zeros(3)}, "ZK0503", ["`n`", "float64"]),
])
def test_input_errors(cli, zk_file, tmp_path, arrays, code, words):
    save_npz(tmp_path / "in.npz", **arrays)
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz")
    assert r.code == 1
    assert f"error[{code}]" in r.err
    assert all(w in r.err for w in words), r.err
    assert "Traceback" not in r.err


def test_input_error_points_at_the_parameter(cli, zk_file, tmp_path):
    save_npz(tmp_path / "in.npz", w=np.zeros((3, 8)))
    path = zk_file(SRC)
    r = cli("run", path, "--reference", "--inputs", tmp_path / "in.npz", "--format", "json")
    (diag,) = r.json["diagnostics"]
    assert diag["code"] == "ZK0502" and diag["span"]["line"] == 1
    assert SRC.splitlines()[0][diag["span"]["col"] - 1:].startswith("w: f16")


@pytest.mark.parametrize("content", [b"not an archive at all", b"PK\x03\x04broken zip", b""])
def test_unreadable_inputs_file(cli, zk_file, tmp_path, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    r = cli("run", zk_file(SRC), "--reference", "--inputs", bad)
    assert r.code == 1 and "error[ZK0504]" in r.err and "bad.npz" in r.err


def test_missing_or_npy_inputs_file(cli, zk_file, tmp_path):
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "nope.npz")
    assert r.code == 1 and "ZK0504" in r.err and "No such file" in r.err
    np.save(tmp_path / "x.npy", np.zeros((4, 8)))
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "x.npy")
    assert r.code == 1 and "ZK0504" in r.err and ".npz" in r.err


def test_too_much_host_memory(cli, zk_file, monkeypatch):
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "64K")
    assert cli("run", zk_file(SRC), "--reference").code == 0
    r = cli("run", zk_file(SRC), "--reference", "-D", "M=1000")
    assert r.code == 1 and "error[ZK0505]" in r.err and "mlp" in r.err


def test_out_untouched_on_error(cli, zk_file, tmp_path):
    save_npz(tmp_path / "in.npz", x=np.zeros((1, 1)))
    out = tmp_path / "out.npz"
    args = ("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--out", out)
    assert cli(*args).code == 1
    assert not out.exists()
    out.write_bytes(b"previous")
    assert cli(*args).code == 1
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "k.zk", "out.npz"]


def test_bad_seed_is_a_usage_error(cli, zk_file):
    r = cli("run", zk_file(SRC), "--reference", "--seed", "-1")
    assert r.code == 2 and "--seed" in r.err
