"""How zhenwu-cc writes files: `-o`, `--out`, `--trace`, `--print-ir-tree-dir`, crash reproducers.

A regular destination (or a new one) is written to a fresh temporary file in its own directory
(`mkstemp`: a random name, O_EXCL, so a symlink planted at a guessable name is never followed)
and renamed over it: a reader never sees half a file, and a symlink at the destination is
replaced, not written through. A device, FIFO or socket (`/dev/null`, a pipe behind `/dev/stdout`)
is written in place, since renaming over it would replace the node with a file. The temporary
file is removed on every way out: errors, and SIGINT/SIGTERM, which `signals_as_exceptions` turns
into `Interrupted` so that `finally` runs. Only the standard library is imported here.
"""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from zhenwu_cc.core.diagnostics import CompileError, error

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FORBIDDEN_DIRS = ("/proc", "/sys", "/dev")  # kernel interfaces: never a place for IR files


class Interrupted(KeyboardInterrupt):
    """A SIGINT, SIGTERM or SIGHUP arrived; the CLI exits 128 + `signum` once it has unwound."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_critical = 0  # > 0 while a temporary file is being created, renamed or removed
_deferred: list[int] = []


def _on_signal(signum: int, frame) -> None:
    if _critical:
        _deferred.append(signum)
        return
    raise Interrupted(signum)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold a signal back until the block is done, so a temporary file is never created or
    renamed without the code that removes it knowing."""
    global _critical
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
        if not _critical and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            raise Interrupted(signum)


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise `Interrupted` (in the main thread
    only, where Python runs signal handlers); a signal the caller ignores stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _cannot_write(path: str, exc: OSError) -> CompileError:
    return error("ZK0005", f"cannot write {path}: {exc.strerror or exc}")


def _write_all(f, data: bytes) -> None:
    f.write(data)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_file(path: str, data: bytes) -> None:
    """Write `data` to `path` as the module docstring says; ZK0005 when that fails."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise error("ZK0005", f"cannot write {path}: it is a directory",
                    help="give a file name inside it")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_NOCTTY), "wb") as f:
                _write_all(f, data)
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        return
    _replace(path, data)


def _replace(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or "."
    tmp = None
    try:
        with _uninterrupted():
            fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp",
                                       prefix=f".{os.path.basename(path)[:64]}.")
            f = os.fdopen(fd, "wb")
        with f:
            _write_all(f, data)
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        with _uninterrupted():
            os.replace(tmp, path)
            tmp = None
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    finally:
        if tmp is not None:
            with _uninterrupted():
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass


def create_exclusive(path: str, data: bytes) -> None:
    """Create a new file (never an existing one, never through a symlink), readable by the
    owner only: for files inside a private directory such as a crash reproducer."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _regular_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def refuse_overwriting_inputs(outputs: dict[str, str], inputs: Iterable[str]) -> None:
    """ZK0007 when an output names one of the inputs (the same file, also through a symlink or
    a hard link), before anything is computed or written."""
    ids = {}
    for path in inputs:
        key = _regular_id(path)
        if key is not None:
            ids.setdefault(key, path)
    for flag, path in outputs.items():
        source = ids.get(_regular_id(path))
        if source is not None:
            same = "" if os.path.abspath(source) == os.path.abspath(path) else f" ({source})"
            raise error("ZK0007", f"{flag} {path} is an input of this command{same}; writing "
                        "it would destroy the input", help=f"write the output to another file "
                        f"than {source}")


def prepare_directory(path: str, flag: str = "--print-ir-tree-dir") -> None:
    """Make `path` a directory to write into: an existing directory, or a new one whose parent
    exists (only the last component is created, as `mkdir` without `-p`). Paths that resolve
    under /proc, /sys or /dev are refused: they are kernel interfaces, not storage (ZK0008)."""
    real = os.path.realpath(path)
    for root in FORBIDDEN_DIRS:
        if real == root or real.startswith(root + "/"):
            raise error("ZK0008", f"{flag} {path}: {real} is under {root}, which is not a place "
                        "for files", help="give a directory in your workspace or under /tmp")
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise error("ZK0008", f"{flag} {path}: it exists and is not a directory",
                        help="give a new name or an existing directory") from None
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        raise error("ZK0008", f"{flag} {path}: the parent directory {parent} does not exist",
                    help="create the parent first: only the last directory is created") from None
    except OSError as exc:
        raise error("ZK0008", f"{flag} {path}: cannot create it: {exc.strerror or exc}",
                    help="give a directory you can write to") from None
