"""Kernel results stored by the grid that computes them anyway (passes/tiling/costore.py):
rmsnorm's `h = x + residual` is stored by y's grid, with the bits a grid of its own gives."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np

import zhenwu_cc
from zhenwu_cc.dialects import ppu

RMSNORM = (Path(__file__).resolve().parent.parent / "examples" / "rmsnorm.zk").read_text()


def stores_by_launch(k) -> list[list[str]]:
    """The names of the tensors each launch stores, in program order."""
    return [[op.dest.name_hint for op in launch.body.walk() if isinstance(op, ppu.DmaStoreOp)]
            for launch in k.module("ppu").ops.first.body.block.ops
            if isinstance(launch, ppu.LaunchOp)]


def adversarial_inputs(t: int, d: int) -> dict[str, np.ndarray]:
    """bf16 operands whose sums tie, overflow, cancel to -0 or carry Inf and NaN."""
    rng = np.random.default_rng(7)
    bf16 = np.dtype(ml_dtypes.bfloat16)
    x = rng.standard_normal((t, d)).astype(np.float32)
    r = rng.standard_normal((t, d)).astype(np.float32)
    x[0, :4], r[0, :4] = [1.0, 3e38, -0.0, np.inf], [2.0**-8, 3e38, -0.0, -np.inf]
    x[1, :3], r[1, :3] = [np.nan, 1.0, -5.0], [1.0, 2.0**-8 + 2.0**-16, 5.0]
    x[2] = 1e30  # a row whose mean square overflows
    return {"x": x.astype(bf16), "residual": r.astype(bf16),
            "weight": rng.standard_normal(d).astype(np.float32).astype(bf16)}


def test_rmsnorm_stores_h_from_the_grid_of_y():
    k = zhenwu_cc.compile(RMSNORM, defines={"T": 64, "D": 4096})
    assert stores_by_launch(k) == [["y", "h"]]


def test_the_stored_h_has_the_bits_of_a_grid_of_its_own():
    inputs = adversarial_inputs(64, 4096)
    fused = zhenwu_cc.compile(RMSNORM, defines={"T": 64, "D": 4096})
    # a `tile` directive on h sizes a grid of its own: h is not stored by y's grid then
    own = zhenwu_cc.compile(RMSNORM.replace("tile y [4, 4096]",
                                            "tile y [4, 4096]\n    tile h [2, 4096]"),
                            defines={"T": 64, "D": 4096})
    assert stores_by_launch(own) == [["y"], ["h"]]
    a, b = fused.run(**inputs), own.run(**inputs)
    assert a.keys() == b.keys() == {"y", "h"}
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
    assert np.isnan(a["h"][1, 0].astype(np.float32)) and np.isinf(a["h"][0, 1])


def test_no_extra_store_where_its_buffer_would_overflow_sram():
    # [5, 4096] tiles fit SRAM (200 KiB of 228) only while h's tile need not live to the end
    k = zhenwu_cc.compile(RMSNORM.replace("tile y [4, 4096]", "tile y [5, 4096]"),
                          defines={"T": 40, "D": 4096})
    assert stores_by_launch(k) == [["y"], ["h"]]
    checked = k.check()
    assert checked.passed
