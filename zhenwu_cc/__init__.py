"""zhenwu-cc: a compiler toolchain for AI kernels on the Zhenwu M890 accelerator model.

`zhenwu_cc.compile(...)` is the Python API (see zhenwu_cc/api.py and docs/api.md); it is
imported on first use so that `import zhenwu_cc` (and the CLI) stay fast.
"""

__version__ = "0.1.0"


def compile(source_or_path, *, kernel=None, defines=None, target=None, fuse=True):
    """Compile a `.zk` kernel: see `zhenwu_cc.api.compile`."""
    from zhenwu_cc.api import compile as _compile

    return _compile(source_or_path, kernel=kernel, defines=defines, target=target, fuse=fuse)
