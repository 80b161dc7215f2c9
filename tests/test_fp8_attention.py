"""FP8 attention probabilities (`precision p as f8E4M3FN scale unit`, docs/precision.md): exp(s -
max) is quantised with the fixed scale of the amax 1 and the row sums divide after the second
matmul (the `cast` program); anything but a softmax is refused (ZK0619)."""

from __future__ import annotations

import numpy as np
import pytest

import zhenwu_cc
from zhenwu_cc.core.attrs import used_tiles
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.runtime import reference


def _src(schedule: str, s: int = 256, p_mode: str = "unit") -> str:
    return f"""kernel attn<S = {s}, D = 64>(q: bf16[2, S, D], k: bf16[2, S, D],
                                 v: bf16[2, S, D]) -> bf16[2, S, D] {{
    s = q @ transpose(k) * rsqrt(D)
    p = softmax(s, axis=-1)
    o = p @ f32(v)
    return bf16(o)
}}
schedule attn {{
    precision q, k, v as f8E4M3FN scale tensor
    precision p as f8E4M3FN scale {p_mode}
{schedule}
}}
"""


def _roles(k) -> list[str]:
    kernel = k.module("tile").ops.first
    return [op.role.data for op in kernel.body.block.ops if used_tiles(op) is not None]


def test_unit_is_refused_on_a_value_that_is_not_a_softmax():
    src = """kernel g<S = 128, D = 64>(q: f32[S, D], k: f32[S, D]) -> f32[S, S] {
    s = q @ transpose(k) * rsqrt(D)
    return s
}
schedule g {
    precision s as f8E4M3FN scale unit
}
"""
    with pytest.raises(CompileError) as exc:
        zhenwu_cc.compile(src)
    (d,) = exc.value.diagnostics
    assert d.code == "ZK0619" and (d.span.line, d.span.col) == (6, 15)
    assert "not the result of `softmax(...)`" in d.message
    assert [n.span.line for n in d.notes] == [2] and "softmax" in d.help


def test_unit_on_a_wrapped_softmax_is_refused():
    """`bf16(softmax(s))` is a cast of a softmax, not one: its values are not exp(s - max)."""
    src = _src("").replace("p = softmax(s, axis=-1)", "p = bf16(softmax(s, axis=-1))")
    with pytest.raises(CompileError) as exc:
        zhenwu_cc.compile(src)
    assert exc.value.diagnostics[0].code == "ZK0619"


def test_per_tensor_p_scale_keeps_the_unfused_grids():
    """`scale tensor` needs the amax of all of P, which a streaming kernel cannot know."""
    k = zhenwu_cc.compile(_src("    tile o [64, 64, 64]", p_mode="tensor"))
    assert "attention" not in _roles(k)
    assert k.check(seed=0).passed


def test_unfused_program_is_the_typed_cast_program():
    """`--no-fuse` quantises exp(s - row max) with the amax 1 and divides after the FP8
    matmul, exactly as the `cast` program the check evaluates as typed."""
    k = zhenwu_cc.compile(_src("    tile o [64, 64, 64]", s=200), fuse=False)
    inputs = k.inputs(seed=4)
    typed = reference.evaluate(k.cast, k.kernel_inputs(inputs), mode="typed")["result0"]
    np.testing.assert_array_equal(k.run(inputs)["result0"], typed)
    assert k.check(seed=4).passed
