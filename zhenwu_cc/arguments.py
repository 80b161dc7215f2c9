"""Checks of the Python API's arguments, so that a wrong type or value is a user error (ZK0512)
that names the call and the argument, not an exception from deep inside the compiler.

Integers are Python or numpy integers (`np.int64(256)`), never `bool` (True is not a size); text
is `str`. Each check returns the value in plain Python form.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence

from zhenwu_cc.core.diagnostics import CompileError, error


def _shown(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def bad(call: str, what: str, want: str, value, help: str | None = None) -> CompileError:
    """ZK0512: `call`'s argument `what` is not `want`."""
    return error("ZK0512", f"{call}: `{what}` must be {want}, got {_shown(value)}",
                 help=help or f"pass {want} as `{what}`")


def is_integer(value) -> bool:
    """Python and numpy integers; numpy's bool_ is no Integral, Python's bool is excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(call: str, what: str, value, lo: int | None = None, hi: int | None = None,
            help: str | None = None) -> int:
    """`value` as an int in lo..hi (either bound may be open)."""
    want = "an integer" + (f" in {lo}..{hi}" if lo is not None and hi is not None
                           else f" >= {lo}" if lo is not None else "")
    if not is_integer(value):
        raise bad(call, what, want, value, help)
    n = int(value)
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise bad(call, what, want, value, help)
    return n


def text(call: str, what: str, value, optional: bool = True) -> str | None:
    """`value` as a str (None allowed when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise bad(call, what, "a string" + (" or None" if optional else ""), value)
    return value


def flag(call: str, what: str, value) -> bool:
    """`value` as a bool (Python's or numpy's; 0 and 1 are not flags)."""
    import numpy as np  # here, not at the top: `zhenwu-cc cost` never needs numpy

    if not isinstance(value, (bool, np.bool_)):
        raise bad(call, what, "True or False", value)
    return bool(value)


def mapping(call: str, what: str, value, optional: bool = True) -> dict:
    """`value` as a dict with str keys (None -> {} when `optional`)."""
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise bad(call, what, "a dict" + (" or None" if optional else ""), value)
    for key in value:
        if not isinstance(key, str):
            raise error("ZK0512", f"{call}: the keys of `{what}` must be strings, got "
                        f"{_shown(key)}", help=f"key `{what}` by name")
    return dict(value)


def integers(call: str, what: str, value) -> list[int]:
    """`value` as a list of ints (from a tuple, list or numpy array, not a string)."""
    import numpy as np

    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise bad(call, what, "a list of integers", value)
    return [integer(call, f"{what}[{i}]", v) for i, v in enumerate(value)]


def arrays(call: str, what: str, value, optional: bool = True) -> dict:
    """`value` as a dict of numpy arrays by name (what numpy cannot make an array of is refused
    here; whether an array fits its parameter is the caller's check)."""
    import numpy as np

    out = mapping(call, what, value, optional)
    for name, x in out.items():
        try:
            out[name] = np.asarray(x)
        except (ValueError, TypeError):
            raise bad(call, f"{what}[{name!r}]", "an array", x) from None
    return out


def source(call: str, value) -> str | os.PathLike:
    if not isinstance(value, (str, os.PathLike)):
        raise bad(call, "source_or_path", "`.zk` source text or a path", value)
    return value


def seed(call: str, value) -> int:
    return integer(call, "seed", value, 0,
                   help="pass an integer >= 0; the same seed gives the same random inputs")
