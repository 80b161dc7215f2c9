"""Who may be fused in the `tile` pass: the hook the fusions of issue 14 (flash attention's
online softmax, row reductions in a matmul's epilogue, a split softmax's online max + sum,
fused operand chains) ask before they put a value in a fused group, and the refusal of every
`fuse NAME off` that none of them asked about (ZK0608): a directive is honoured or refused,
never dropped. Fusion is off for the whole kernel with the pass option `tile{fuse=false}`
(`--no-fuse`, `zhenwu_cc.compile(..., fuse=False)`): the unfused baseline that
`cost --baseline` compares with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from xdsl.ir import Operation
from zhenwu_cc.core import attrs
from zhenwu_cc.core.diagnostics import Note, error
from zhenwu_cc.dialects.loc import span_at, span_of

# What the `tile` pass fuses into groups today, for ZK0608's help: the fusions that ask `allows`.
FUSED_GROUPS = ("the `tile` pass fuses `softmax(s) @ v` into one flash-attention grid (both "
                "matmuls, the softmax and the scores' epilogue), the max and sum of "
                "`logsumexp`/`softmax`/`log_softmax` of a matmul's result into the matmul's "
                "grid, a split softmax's max and sum into one pass over its input, and matmuls "
                "that share their left operand and are combined elementwise into one grid "
                "(SwiGLU)")


class FuseControl:
    """Created per `tile` run for one kernel: `allows` answers the fusions, `check` refuses the
    `fuse NAME off` directives no fusion asked about."""

    def __init__(self, kernel: Operation, enabled: bool):
        self.kernel = kernel
        self.enabled = enabled
        self.consulted: set[Operation] = set()  # ops whose `fuse NAME off` a fusion asked about

    def allows(self, op: Operation) -> bool:
        """Whether `op` may join a fused group: not when the pass option turns fusion off, nor
        when `op` carries `fuse NAME off` (the directive then counts as honoured)."""
        if attrs.FUSE in op.attributes:
            self.consulted.add(op)
            return False
        return self.enabled

    def allows_all(self, ops: Iterable[Operation]) -> bool:
        """`allows` for every op of a candidate group (each asked, so every `fuse NAME off`
        among them counts as honoured)."""
        answers = [self.allows(op) for op in ops]
        return all(answers)

    def check(self, ops: Sequence[Operation]) -> None:
        """Refuse (ZK0608) each `fuse NAME off` among `ops` that no fusion asked about. With
        fusion off for the kernel nothing is fused, and the directives are not checked."""
        if not self.enabled:
            return
        for op in ops:
            attr = op.attributes.get(attrs.FUSE)
            if attr is None or op in self.consulted:
                continue
            name = op.results[0].name_hint or "this value"
            span = span_at(attr.loc) or span_of(op)  # the schedule line, else the binding's
            notes = [Note(f"`{name}` is computed here", span_of(op))] if span_of(op) else []
            raise error("ZK0608", f"`fuse {name} off` has no effect: `{name}` is not part of "
                        "a fused group", span, notes=notes,
                        help=f"drop `fuse {name} off`: it keeps a value out of a fused group, "
                        f"and {FUSED_GROUPS}")
