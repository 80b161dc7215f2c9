"""A vector op computed straight into the tiles the store after it writes (runtime/executor/
forward.py) gives the bits of the SRAM buffer and copy it replaces, and the store's checks
still fire."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zhenwu_cc
from zhenwu_cc.core import dtypes
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.dialects import ppu
from zhenwu_cc.runtime.executor import execute, forward, rowblocks
from zhenwu_cc.runtime.executor import run as executor_run
from test_executor import TWO_LAUNCHES, code_of, f32, parse, run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SECOND = "ppu.launch [2] (%i) cus 2 role vector {\n      %vb"


def forwards(kernel: ppu.KernelOp) -> list[list[tuple[str, str]]]:
    return [[(v.function, s.dest.name_hint) for v, s in forward.forwarded(launch).items()]
            for launch in kernel.body.block.ops if isinstance(launch, ppu.LaunchOp)]


def adversarial(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Normal values with ties, +-0, subnormals, huge values, Inf and NaN mixed in."""
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    special = np.array([0.0, -0.0, 1e-40, -3e-39, 6e-8, 3e38, -3e38, np.inf, -np.inf, np.nan,
                        1 + 2.0**-8, 1 + 3 * 2.0**-8, 65504.0, 65520.0], np.float32)
    at = rng.choice(flat.size, size=min(flat.size, 40 * special.size), replace=False)
    flat[at] = np.resize(special, at.size)
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def adversarial_inputs(kernel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`adversarial` values for each input of a `ppu.kernel`, in its declared dtype."""
    return {arg.name_hint: adversarial(tuple(arg.type.get_shape()),
                                       dtypes.from_xdsl(arg.type.element_type).np_dtype, rng)
            for arg in kernel.inputs}


@pytest.mark.parametrize("name, defines", [
    ("rmsnorm", {"T": 252, "D": 256}),  # bf16; 63 tiles: a shorter last row block
    ("layernorm", {"T": 100, "D": 384}),
    ("softmax", {"M": 100, "N": 300}),  # f16 results, subnormals
    ("rmsnorm", {"T": 250, "D": 256}),  # edge tiles: stored through a copy, not forwarded
])
def test_forwarded_results_have_the_bits_of_the_store_copy(monkeypatch, name, defines):
    k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
    kernel = k.module("ppu").ops.first
    assert any(forwards(kernel)), name
    taken = []
    original = executor_run.Interpreter._forward
    monkeypatch.setattr(executor_run.Interpreter, "_forward",
                        lambda *a: taken.append(original(*a)) or taken[-1])
    inputs = adversarial_inputs(kernel, np.random.default_rng(3))
    monkeypatch.setattr(rowblocks, "BLOCK_BYTES", 1 << 16)  # several row blocks
    got = execute(kernel, inputs)
    ragged = defines.get("T", 0) % 4 != 0
    assert any(t is not None for t in taken) != ragged
    monkeypatch.setattr(forward, "forwarded", lambda launch: {})
    copied = execute(k.module("ppu").ops.first, inputs)
    assert got.keys() == copied.keys()
    for key in got:
        assert got[key].dtype == copied[key].dtype
        assert got[key].tobytes() == copied[key].tobytes(), key


def test_which_ops_are_forwarded():
    rms = zhenwu_cc.compile(EXAMPLES / "rmsnorm.zk", defines={"T": 64, "D": 4096})
    assert forwards(rms.module("ppu").ops.first) == [[("cast", "y"), ("add", "h")]]
    assert forwards(parse(TWO_LAUNCHES.replace("FIRST", "2"))) == [[("mul", "g")], [("add", "y")]]
    # a buffer written again between the op and the store: the store copies what is there then
    refilled = TWO_LAUNCHES.replace(
        '      %t1 = ppu.dma_store %vb', '      ppu.fill 3.0 -> %vb : !tv\n'
        '      %t1 = ppu.dma_store %vb')
    assert forwards(parse(refilled.replace("FIRST", "2"))) == [[("mul", "g")], []]
    y = run(refilled.replace("FIRST", "2"), x=f32(8, 8))["y"]
    assert (y == np.float32(3)).all()


def test_a_grid_past_the_tiles_is_copied_and_still_zk0610():
    text = TWO_LAUNCHES.replace("FIRST", "2").replace(SECOND, SECOND.replace("[2]", "[3]"))
    assert forwards(parse(text))[1] == []  # three grid points for two tiles: not proven
    with pytest.raises(CompileError) as exc:
        run(text, x=f32(8, 8))
    assert code_of(exc) == "ZK0610"
