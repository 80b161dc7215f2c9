"""Byte counts: the host-memory limit every run is checked against, and sizes as people read them.

Shared by the reference evaluator, the executor and the driver, so it imports no dialect.
"""

from __future__ import annotations

import os

from zhenwu_cc.core.diagnostics import error

MAX_HOST_BYTES_ENV = "ZHENWU_MAX_HOST_BYTES"


def host_memory_limit() -> int | None:
    """`ZHENWU_MAX_HOST_BYTES` (bytes, or with a K/M/G/T suffix in powers of 1024), else 60% of
    physical memory; None when neither is known."""
    raw = os.environ.get(MAX_HOST_BYTES_ENV)
    if raw is not None:
        text = raw.strip().upper()
        scale = 1024 ** (" KMGT".index(text[-1])) if text and text[-1] in "KMGT" else 1
        digits = text[:-1] if scale > 1 else text
        if not digits.isdigit():
            raise error("ZK0506", f"{MAX_HOST_BYTES_ENV}={raw!r} is not a byte count",
                        help="set it to a whole number of bytes, optionally with K, M, G or T, "
                        f"e.g. {MAX_HOST_BYTES_ENV}=8G")
        return int(digits) * scale
    try:
        return int(0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: int) -> str:
    """`n` bytes in B, KiB, MiB, GiB or TiB, three significant digits."""
    unit = max((u for u in range(5) if n >= 1024**u), default=0)
    return f"{n / 1024**unit:.3g} {('B', 'KiB', 'MiB', 'GiB', 'TiB')[unit]}"
