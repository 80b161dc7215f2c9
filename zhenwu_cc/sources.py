"""Reading source files, with the caps every entry point shares (the CLI and the Python API)."""

from __future__ import annotations

import os
import stat
import sys

from zhenwu_cc.core.diagnostics import Span, error

MAX_SOURCE_BYTES = 16 << 20  # a source file larger than this is refused (ZK0001)


def _read_upto(f, cap: int) -> bytes:
    """At most cap + 1 bytes of `f`, in chunks: f.read(cap + 1) would allocate cap bytes."""
    data = b""
    while len(data) <= cap:
        chunk = f.read(min(cap + 1 - len(data), 1 << 20))
        if not chunk:
            break
        data += chunk
    return data


def read_capped(path: str, cap: int) -> bytes:
    """At most `cap` bytes of `path` (ZK0001 beyond): `check /dev/zero` must end. Devices are
    refused outright; a pipe is read, up to the cap; `-` is standard input, up to the cap."""
    try:
        if path == "-":
            data = _read_upto(sys.stdin.buffer, cap)
        else:
            with open(path, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    raise error("ZK0001", f"cannot read {path}: not a regular file",
                                help="give the path of a file")
                data = _read_upto(f, cap)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error("ZK0001", f"cannot read {path}: {reason}") from None
    if len(data) > cap:
        raise error("ZK0001", f"cannot read {path}: larger than the limit of {cap} bytes",
                    help="split it into smaller files")
    return data


def read_source(path: str) -> str:
    """The text of a source file: UTF-8 (a byte-order mark is dropped), at most
    MAX_SOURCE_BYTES; a byte that is not UTF-8 is ZK0106 at its line and column."""
    data = read_capped(path, MAX_SOURCE_BYTES)
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        head = data[data.rfind(b"\n", 0, exc.start) + 1:exc.start]
        col = len(head.decode("utf-8", "replace")) + 1
        raise error("ZK0106", f"{path} is not valid UTF-8: byte 0x{data[exc.start]:02x} here "
                    "does not start or continue a character", Span.point(path, line, col),
                    help="save the file as UTF-8") from None
