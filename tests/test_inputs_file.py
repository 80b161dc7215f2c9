"""`run --inputs FILE.npz`: every member's .npy header is checked (name, shape, dtype, size,
host-memory budget) before a byte of array data is read, so a lying header or a zip bomb is a
diagnostic that costs nothing. The hostile archives are built here, not committed."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

SRC = "kernel scale<M = 4, N = 8>(x: f32[M, N], s: f32[N]) -> f32[M, N] { return x * s }\n"


def npy_header(shape, descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def archive(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def zip_bomb(path, shape) -> None:
    """An .npz whose one member is `shape` float32 zeros, deflated (about 1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w") as f:
            f.write(npy_header(shape))
            chunk = bytes(1 << 20)
            left = 4 * int(np.prod(shape))
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))


def peak_of(run) -> tuple[object, int]:
    """What `run()` returns and the most bytes Python and numpy held at once while it ran
    (after one run to warm the caches and imports)."""
    run()
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def diag(r) -> dict:
    return r.json["diagnostics"][0]


def test_zip_bomb_is_refused_from_its_header(cli, zk_file, tmp_path):
    """256 MiB of zeros in a 256 KiB archive: ZK0502 from the header, without inflating it."""
    zip_bomb(tmp_path / "bomb.npz", (8192, 8192))
    assert (tmp_path / "bomb.npz").stat().st_size < 1 << 20
    path = zk_file(SRC)
    r, peak = peak_of(lambda: cli("run", path, "--reference", "--inputs", tmp_path / "bomb.npz",
                                  "--format", "json"))
    assert r.code == 1 and diag(r)["code"] == "ZK0502" and "[8192, 8192]" in diag(r)["message"]
    assert peak < 16 << 20


def test_zip_bomb_of_the_right_shape_meets_the_memory_limit(cli, zk_file, tmp_path, monkeypatch):
    zip_bomb(tmp_path / "bomb.npz", (8192, 8192))
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "64M")
    path = zk_file(SRC)
    r, peak = peak_of(lambda: cli("run", path, "--reference", "-D", "M=8192", "-D", "N=8192",
                                  "--inputs", tmp_path / "bomb.npz", "--format", "json"))
    assert r.code == 1 and diag(r)["code"] == "ZK0505" and "bomb.npz" in diag(r)["message"]
    assert peak < 16 << 20


def test_header_declaring_a_trillion_elements(cli, zk_file, tmp_path):
    """A 250-byte archive whose header claims 10**12 float32: refused by shape, and where the
    shape fits, because no data stands behind the header."""
    archive(tmp_path / "big.npz", {"x.npy": npy_header((10**6, 10**6))})
    assert (tmp_path / "big.npz").stat().st_size < 300
    path = zk_file(SRC)
    r = cli("run", path, "--reference", "--inputs", tmp_path / "big.npz", "--format", "json")
    assert r.code == 1 and diag(r)["code"] == "ZK0502"
    r = cli("run", path, "--reference", "-D", "M=1000000", "-D", "N=1000000", "--inputs",
            tmp_path / "big.npz", "--format", "json")
    assert r.code == 1 and diag(r)["code"] == "ZK0513"
    assert "has 0 bytes of data" in diag(r)["message"]
    assert "declares 4000000000000" in diag(r)["message"]


@pytest.mark.parametrize("extra, words", [(-100, "has 28 bytes of data"),
                                          (64, "has 192 bytes of data")])
def test_member_size_must_match_its_header(cli, zk_file, tmp_path, extra, words):
    data = npy_header((4, 8)) + bytes(128 + extra)
    archive(tmp_path / "in.npz", {"x.npy": data})
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--format", "json")
    assert r.code == 1 and diag(r)["code"] == "ZK0513", r.out
    assert words in diag(r)["message"] and "`x`" in diag(r)["message"]


def test_unknown_name_is_refused_before_reading(cli, zk_file, tmp_path):
    archive(tmp_path / "in.npz", {"bias.npy": npy_header((10**6, 10**6))})
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--format", "json")
    assert r.code == 1 and diag(r)["code"] == "ZK0501" and "`bias`" in diag(r)["message"]


def test_object_arrays_are_not_unpickled(cli, zk_file, tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}] * 8, dtype=object), allow_pickle=True)
    archive(tmp_path / "in.npz", {"s.npy": buf.getvalue()})
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--format", "json")
    assert r.code == 1 and diag(r)["code"] == "ZK0504" and "Python objects" in diag(r)["message"]


@pytest.mark.parametrize("members, words", [
    ({"x.npy": b"not an npy header at all"}, "not an .npy array"),
    ({"x.npy": npy_header((4, 8))[:20]}, "not an .npy array"),
])
def test_members_that_are_not_npy_arrays(cli, zk_file, tmp_path, members, words):
    archive(tmp_path / "in.npz", members)
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--format", "json")
    assert r.code == 1 and diag(r)["code"] == "ZK0504" and words in diag(r)["message"]


def test_two_members_of_one_name(cli, zk_file, tmp_path):
    data = npy_header((8,)) + bytes(32)
    with zipfile.ZipFile(tmp_path / "in.npz", "w") as zf:
        zf.writestr("s.npy", data)
        with pytest.warns(UserWarning):
            zf.writestr("s.npy", data)
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--format", "json")
    assert r.code == 1 and diag(r)["code"] == "ZK0504" and "two arrays" in diag(r)["message"]


def test_good_archives_still_read(cli, zk_file, tmp_path):
    """Compressed, Fortran-ordered, another float type: read and used."""
    x = np.asfortranarray(np.arange(32, dtype=np.float64).reshape(4, 8))
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, s=np.ones(8, np.float16))
    (tmp_path / "in.npz").write_bytes(buf.getvalue())
    out = tmp_path / "out.npz"
    r = cli("run", zk_file(SRC), "--reference", "--inputs", tmp_path / "in.npz", "--out", out)
    assert r.code == 0, r.err
    assert np.array_equal(np.load(out)["result0"], x.astype(np.float32))
