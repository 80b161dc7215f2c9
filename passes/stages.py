"""Which stage of IR a pass takes: given another (`tile` on tiled IR, `cast` after `tile`), a
pass says so (ZK1004) instead of misreading it. Shared by the passes that care."""

from __future__ import annotations

from zhenwu_cc.dialects import zk
from zhenwu_cc.dialects.loc import span_of
from zhenwu_cc.core.diagnostics import error


def require_untiled(kernel: zk.KernelOp, pass_name: str) -> None:
    """`pass_name` takes `zk` IR: a kernel already cut into grids is ZK1004."""
    for op in kernel.body.block.ops:
        if op.dialect_name() in ("tile", "ppu"):
            raise error("ZK1004", f"the `{pass_name}` pass expects `zk` IR, but kernel "
                        f"`{kernel.sym_name.data}` is already tiled (it holds `{op.name}`)",
                        span_of(op), help=f"run `{pass_name}` once, before `tile`, on the IR "
                        "that `compile --emit zk` prints")
