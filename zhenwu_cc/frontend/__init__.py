"""The `.zk` front end: grammar, parser, syntax tree and IR generation."""

from __future__ import annotations


def build(text: str, file: str = "<input>", defines: dict[str, int] | None = None,
          kernel: str | None = None):
    """Source text -> verified `builtin.module` of `zk.kernel`s; raises CompileError."""
    from zhenwu_cc.frontend.irgen import generate
    from zhenwu_cc.frontend.parser import parse

    module = generate(parse(text, file), defines, kernel)
    module.verify()
    return module
