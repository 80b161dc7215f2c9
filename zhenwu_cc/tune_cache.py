"""The tuner's cache: costs and verification results as JSON files keyed by a content hash, so a
re-run of `tune` recompiles nothing it has seen.

The key hashes everything a result depends on: the source text, kernel, shape parameters, the
target's name and file bytes, the compiler (its version and the bytes of its own source files, so
an edited compiler misses) and the schedule. The directory is
`ZHENWU_CACHE_DIR`, else `$XDG_CACHE_HOME/zhenwu-cc` (`~/.cache/zhenwu-cc`); it is created
private (0700) and refused (ZK1204) when someone else owns it or others may write to it: another
user could plant results there. Entries are JSON, never pickles; an unreadable entry is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

CACHE_ENV = "ZHENWU_CACHE_DIR"
CACHE_FORMAT = 1  # bump when what an entry holds changes


def cache_dir() -> str:
    """The cache directory this user's runs share (not yet checked or created)."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zhenwu-cc")


def target_bytes(target: str) -> bytes:
    """The bytes of the target's file (a packaged chip model or a .toml path)."""
    from importlib import resources

    if "/" in target or target.endswith(".toml"):
        with open(target, "rb") as f:
            return f.read()
    return (resources.files("zhenwu_cc.runtime.targets") / f"{target}.toml").read_bytes()


_fingerprint: list[str] = []


def compiler_fingerprint() -> str:
    """A hash of the compiler's version and of every source, grammar and chip file it runs
    (computed once a process)."""
    if not _fingerprint:
        from importlib.util import find_spec
        from pathlib import Path

        from zhenwu_cc import __version__

        h = hashlib.sha256(__version__.encode())
        for package in ("zhenwu_cc", "zhenwu_cc.dialects", "zhenwu_cc.passes",
                        "zhenwu_cc.runtime"):
            root = Path(find_spec(package).origin).parent
            for path in sorted(root.rglob("*")):
                if path.suffix in (".py", ".lark", ".toml") and "__pycache__" not in path.parts:
                    h.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
                    h.update(path.read_bytes())
        _fingerprint.append(h.hexdigest())
    return _fingerprint[0]


class Cache:
    """JSON results under a private directory; `hits`/`misses` count lookups."""

    def __init__(self, path: str | None = None):
        self.path = path or cache_dir()
        self.hits = self.misses = 0
        _private_dir(self.path)

    def key(self, *parts) -> str:
        doc = json.dumps([CACHE_FORMAT, compiler_fingerprint(), *parts], sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()

    def _file(self, key: str) -> str:
        return os.path.join(self.path, key[:2], key + ".json")

    def get(self, key: str) -> dict | None:
        try:
            with open(self._file(key), encoding="utf-8") as f:
                value = json.load(f)
        except (OSError, ValueError):
            self.misses += 1
            return None
        if not isinstance(value, dict):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: dict) -> None:
        """Store `value` (a temporary file renamed into place: readers never see half of it);
        a full or read-only disk loses the entry, not the run."""
        import tempfile

        folder = os.path.dirname(self._file(key))
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(value, f, sort_keys=True)
            os.replace(tmp, self._file(key))
        except OSError:
            pass
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _private_dir(path: str) -> None:
    """Create `path` (0700) if absent; ZK1204 when it is not a directory this user alone
    controls."""
    from zhenwu_cc.core.diagnostics import error

    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError as exc:
        raise error("ZK1204", f"cannot use the cache directory {path}: "
                    f"{exc.strerror or exc}", help=f"set {CACHE_ENV} to a directory you own, "
                    "or run with --no-cache") from None
    why = None
    if not stat.S_ISDIR(st.st_mode):
        why = "it is not a directory"
    elif hasattr(os, "getuid") and st.st_uid != os.getuid():
        why = f"it is owned by user id {st.st_uid}, not by you"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = f"others may write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    if why:
        raise error("ZK1204", f"refusing the cache directory {path}: {why}, so its results "
                    "could have been planted", help=f"`chmod 700 {path}`, or set {CACHE_ENV} "
                    "to a private directory you own, or run with --no-cache")
