"""How the CLI writes files (docs/cli.md, "How outputs are written"): atomically for regular
files, in place for devices and FIFOs, never over an input, never through a planted symlink,
never leaving a temporary file behind (errors and signals included)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

SRC = """kernel k<N = 8>(x: f32[N]) -> f32[N] {
    y = exp(x)
    return y
}
"""


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---- output == input: ZK0007, nothing written --------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["run", "{src}", "--reference", "--out", "{src}"],
    ["compile", "{src}", "--emit", "zk", "-o", "{src}"],
    ["cost", "{src}", "--trace", "{src}"],
    ["compile", "{src}", "--emit", "zk", "-o", "{link}"],  # the source through a symlink
    ["compile", "{src}", "--emit", "zk", "-o", "{hard}"],  # ... and through a hard link
    ["run", "{src}", "--reference", "--inputs", "{npz}", "--out", "{npz}"],
    ["run", "{src}", "--reference", "--target", "{toml}", "--out", "{toml}"],
    ["opt", "{mlir}", "-o", "{mlir}"],
])
def test_an_output_that_is_an_input_is_refused(cli, tmp_path, argv):
    src = tmp_path / "k.zk"
    src.write_text(SRC)
    (tmp_path / "link.zk").symlink_to(src)
    os.link(src, tmp_path / "hard.zk")
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.ones(8, np.float32))
    toml = tmp_path / "chip.toml"
    shutil.copy(REPO / "runtime" / "targets" / "m890.toml", toml)
    mlir = tmp_path / "k.mlir"
    mlir.write_text("builtin.module {\n}\n")
    names = {"src": src, "link": tmp_path / "link.zk", "hard": tmp_path / "hard.zk", "npz": npz,
             "toml": toml, "mlir": mlir}
    before = {p: p.read_bytes() for p in names.values()}
    r = cli(*[a.format(**names) for a in argv], "--format", "json")
    assert r.code == 1, r.out
    (diag,) = r.json["diagnostics"]
    assert diag["code"] == "ZK0007" and "is an input of this command" in diag["message"]
    assert {p: p.read_bytes() for p in names.values()} == before
    assert _listing(tmp_path) == sorted(p.name for p in names.values())


def test_a_different_output_is_written(cli, zk_file, tmp_path):
    out = tmp_path / "k.mlir"
    assert cli("compile", zk_file(SRC), "--emit", "zk", "-o", out).code == 0
    assert "zk.kernel" in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- devices and FIFOs are written in place ------------------------------------------------------
def test_out_to_a_fifo_writes_through_and_keeps_the_fifo(cli, zk_file, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = cli("run", zk_file(SRC), "--reference", "--out", fifo)
    reader.join(timeout=60)
    assert r.code == 0, r.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced by a regular file
    assert got and got[0][:2] == b"PK"  # the .npz arrived through the pipe
    assert _listing(tmp_path) == ["k.zk", "pipe"]


def test_output_that_is_a_directory_is_zk0005(cli, zk_file, tmp_path):
    r = cli("compile", zk_file(SRC), "--emit", "zk", "-o", tmp_path, "--format", "json")
    assert r.code == 1 and r.json["diagnostics"][0]["code"] == "ZK0005"
    assert "is a directory" in r.json["diagnostics"][0]["message"]


# ---- temporary files: unpredictable, never followed, never left behind ---------------------------
def test_planted_symlinks_at_the_old_temporary_name_are_not_followed(cli, zk_file, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    planted = out_dir / f".k.mlir.{os.getpid()}.tmp"  # the name the old writer used
    planted.symlink_to(victim)
    assert cli("compile", zk_file(SRC), "--emit", "zk", "-o", out_dir / "k.mlir").code == 0
    assert victim.read_text() == "precious"
    assert "zk.kernel" in (out_dir / "k.mlir").read_text()
    assert _listing(out_dir) == [planted.name, "k.mlir"]


def test_a_symlink_at_the_destination_is_replaced_not_written_through(cli, zk_file, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "k.mlir"
    link.symlink_to(victim)
    assert cli("compile", zk_file(SRC), "--emit", "zk", "-o", link).code == 0
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and "zk.kernel" in link.read_text()


def test_a_failed_write_keeps_the_old_output_and_leaves_no_temporary(cli, zk_file, tmp_path,
                                                                     monkeypatch):
    from zhenwu_cc import outputs

    def disk_full(f, data):
        f.write(data[:10])
        raise OSError(28, "No space left on device")

    src = zk_file(SRC)
    out = tmp_path / "k.mlir"
    out.write_text("old")
    monkeypatch.setattr(outputs, "_write_all", disk_full)
    r = cli("compile", src, "--emit", "zk", "-o", out, "--format", "json")
    assert r.code == 1 and r.json["diagnostics"][0]["code"] == "ZK0005"
    assert "No space left on device" in r.json["diagnostics"][0]["message"]
    assert out.read_text() == "old" and _listing(tmp_path) == ["k.mlir", "k.zk"]


SLOW_WRITER = """
import sys, time
from zhenwu_cc import cli, outputs

def slow(f, data):
    f.write(data[:10])
    f.flush()
    open(sys.argv[1], "w").close()  # tell the test that the write has begun
    time.sleep(120)

outputs._write_all = slow
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_write_leaves_no_temporary_file(zk_file, tmp_path, signum):
    src = zk_file(SRC)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(marker), "compile", str(src),
                             "--emit", "zk", "-o", str(out_dir / "k.mlir")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the write never started"
            time.sleep(0.05)
        assert [p.suffix for p in out_dir.iterdir()] == [".tmp"]  # the write is under way
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum
    assert _listing(out_dir) == []


# ---- empty paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["run", "{src}", "--reference", "--out", ""],
    ["compile", "{src}", "-o", ""],
    ["cost", "{src}", "--trace", ""],
    ["compile", "{src}", "--print-ir-tree-dir", ""],
])
def test_an_empty_output_path_is_a_usage_error(cli, zk_file, argv):
    src = zk_file(SRC)
    r = cli(*[a.format(src=src) for a in argv])
    assert r.code == 2 and "an empty path" in r.err and r.out == ""


# ---- --print-ir-tree-dir: ZK0008 -----------------------------------------------------------------
@pytest.mark.parametrize("where, words", [
    ("/proc/self/zhenwu", "is under /proc"),
    ("/sys/zhenwu", "is under /sys"),
    ("/dev/shm/zhenwu", "is under /dev"),
    ("{tmp}/file", "exists and is not a directory"),
    ("{tmp}/no/such/dir", "does not exist"),
])
def test_print_ir_tree_dir_refuses(cli, zk_file, tmp_path, where, words):
    (tmp_path / "file").write_text("x")
    src = zk_file(SRC)
    r = cli("compile", src, "--print-ir-tree-dir", where.format(tmp=tmp_path), "--format", "json")
    assert r.code == 1
    (diag,) = r.json["diagnostics"]
    assert diag["code"] == "ZK0008" and words in diag["message"]
    assert _listing(tmp_path) == ["file", "k.zk"]
    assert not os.path.exists("/dev/shm/zhenwu")


def test_print_ir_tree_dir_creates_only_the_last_directory(cli, zk_file, tmp_path):
    tree = tmp_path / "tree"
    src = zk_file(SRC)
    assert cli("compile", src, "--emit", "tile", "--print-ir-tree-dir", tree).code == 0
    assert _listing(tree)[0] == "01_decompose.mlir"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tree / "01_decompose.mlir").unlink()
    (tree / "01_decompose.mlir").symlink_to(victim)  # planted in an existing directory
    assert cli("compile", src, "--emit", "tile", "--print-ir-tree-dir", tree).code == 0
    assert victim.read_text() == "precious"
    assert "IR after decompose" in (tree / "01_decompose.mlir").read_text()


# ---- the crash reproducer ------------------------------------------------------------------------
def _crash(monkeypatch, command: str):
    from zhenwu_cc import cli as cli_module

    def boom(args, sources):
        raise RuntimeError("simulated bug")

    monkeypatch.setitem(cli_module.COMMANDS, command, boom)


def test_reproducer_is_private_fresh_and_holds_only_inputs(cli, zk_file, tmp_path, monkeypatch):
    base = tmp_path / "crashes"  # created when missing
    monkeypatch.setenv("ZHENWU_REPRODUCER_DIR", str(base))
    _crash(monkeypatch, "run")
    src = zk_file(SRC)
    out = tmp_path / "big.npz"
    out.write_bytes(b"\0" * 4096)  # an existing --out target is not an input: never copied
    argv = ("run", src, "--out", out, "--format", "json")
    first = cli(*argv)
    second = cli(*argv)
    assert first.code == second.code == 3
    dirs = sorted(base.iterdir())
    assert len(dirs) == 2  # the same crash twice: two fresh directories, none reused
    for d in dirs:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert _listing(d) == ["command.json", "k.zk", "traceback.txt"]
        command = json.loads((d / "command.json").read_text())
        assert command["inputs"] == [{"path": str(src), "copy": "k.zk"}]
    assert str(dirs[0]) in first.json["message"] or str(dirs[1]) in first.json["message"]


def test_reproducer_caps_the_size_of_each_input(cli, zk_file, tmp_path, monkeypatch):
    from zhenwu_cc import cli as cli_module

    monkeypatch.setenv("ZHENWU_REPRODUCER_DIR", str(tmp_path))
    monkeypatch.setattr(cli_module, "REPRODUCER_INPUT_CAP", 16)
    _crash(monkeypatch, "check")
    src = zk_file(SRC)
    assert cli("check", src).code == 3
    (saved,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert _listing(saved) == ["command.json", "traceback.txt"]
    (record,) = json.loads((saved / "command.json").read_text())["inputs"]
    assert record == {"path": str(src), "copy": None, "not_copied": "larger than 16 bytes"}


def test_reproducer_dir_that_cannot_be_written_still_reports_the_bug(cli, zk_file, tmp_path,
                                                                      monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("ZHENWU_REPRODUCER_DIR", str(tmp_path / "file"))
    _crash(monkeypatch, "check")
    r = cli("check", zk_file(SRC))
    assert r.code == 3 and "simulated bug" in r.err and "Saving a reproducer failed" in r.err


def test_reproducer_does_not_read_a_fifo_input(cli, zk_file, tmp_path, monkeypatch):
    monkeypatch.setenv("ZHENWU_REPRODUCER_DIR", str(tmp_path / "crashes"))
    _crash(monkeypatch, "run")
    fifo = tmp_path / "inputs.npz"
    os.mkfifo(fifo)  # opening it to read would block: no writer
    src = zk_file(SRC)
    assert cli("run", src, "--inputs", fifo).code == 3
    (saved,) = (tmp_path / "crashes").iterdir()
    records = json.loads((saved / "command.json").read_text())["inputs"]
    assert records == [{"path": str(src), "copy": "k.zk"},
                       {"path": str(fifo), "copy": None, "not_copied": "not a regular file"}]
