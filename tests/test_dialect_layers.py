"""The dialects' structure (issue 12): the `ppu` dialect imports neither `zk` nor `tile`, core
imports nothing above core, every op is a named class, and `ppu` ops declare their memory
effects so that xDSL's cse, dce and canonicalize keep every lowered example's results."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp
from xdsl.traits import get_effects
from xdsl.transforms.canonicalize import CanonicalizePass
from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination
from xdsl.transforms.dead_code_elimination import DeadCodeElimination

import zhenwu_cc
from zhenwu_cc.dialects import ppu, tile, zk
from zhenwu_cc.pipeline import make_context
from zhenwu_cc.runtime.executor import execute

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHAPES = {  # small shapes each example accepts (multiples of the scale blocks where needed)
    "gemm_fp8_block": {"M": 96, "N": 256, "K": 256},
    "gemm_mxfp4": {"M": 96, "N": 80, "K": 128},
    "gemm_mxfp8": {"M": 96, "N": 80, "K": 128},
    "gemm_nvfp4": {"M": 96, "N": 80, "K": 128},
}
PROGRAMS = ["gemm_bias_gelu", "gemm_mxfp8", "gemm_nvfp4", "softmax", "layernorm",
            "attention_causal", "cross_entropy"]


def _loaded_after(module: str) -> set[str]:
    """Our modules a fresh interpreter has loaded after importing `module`."""
    code = (f"import sys, {module}; "
            "print(' '.join(m for m in sys.modules if m.startswith('zhenwu_cc')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_ppu_imports_neither_zk_nor_tile():
    loaded = _loaded_after("zhenwu_cc.dialects.ppu")
    assert "zhenwu_cc.dialects.ppu" in loaded
    assert not {m for m in loaded if m.startswith(("zhenwu_cc.dialects.zk",
                                                   "zhenwu_cc.dialects.tile"))}, loaded


@pytest.mark.parametrize("module", ["attrs", "quant", "shapes", "tiling"])
def test_core_imports_nothing_above_core(module):
    loaded = _loaded_after(f"zhenwu_cc.core.{module}")
    allowed = ("zhenwu_cc.core", "zhenwu_cc.core.dtypes", "zhenwu_cc.core.diagnostics")
    assert {m for m in loaded if not m.startswith(allowed)} <= {"zhenwu_cc", "zhenwu_cc.dialects"}


@pytest.mark.parametrize("dialect", [zk.ZK, tile.TILE, ppu.PPU], ids=["zk", "tile", "ppu"])
def test_every_op_is_a_named_class(dialect):
    """`grep "class NameOp"` finds every op, and `zk.NameOp` (ppu.X, tile.X) reaches it."""
    module = {"zk": zk, "tile": tile, "ppu": ppu}[dialect.name]
    for op in dialect.operations:
        source = Path(inspect.getsourcefile(op)).read_text()
        assert re.search(rf"^class {op.__name__}\(", source, re.M), op.name
        assert getattr(module, op.__name__) is op
        assert op.__doc__, f"{op.name} has no docstring"


def test_registries_hold_the_classes():
    assert zk.UNARY_OPS["gelu"] is zk.GeluOp and zk.BINARY_OPS["pow"] is zk.PowOp
    assert zk.REDUCE_OPS["mean"] is zk.ReduceMeanOp
    assert {c.name for c in zk.UNARY_OPS.values()} >= {"zk.gelu", "zk.neg", "zk.softplus"}


def _compile(name: str):
    path = EXAMPLES / f"{name}.zk"
    from zhenwu_cc.frontend.parser import parse

    params = {sp.name for k in parse(path.read_text(), str(path)).kernels for sp in k.shape_params}
    return zhenwu_cc.compile(path, defines={p: SHAPES.get(name, {}).get(p, 72) for p in params})


@pytest.mark.parametrize("name", PROGRAMS)
def test_ppu_ops_declare_their_effects(name):
    """Every op of a lowered program but the kernel itself says what it does to memory (an op
    without the trait is 'unknown' to xDSL: never merged or removed, but never cleaned up)."""
    module = _compile(name).module("ppu")
    unknown = {op.name for op in module.walk() if get_effects(op) is None}
    assert unknown == {"builtin.module", "ppu.kernel"}, unknown
    kinds = {op.name: {e.kind.name for e in get_effects(op)} for op in module.walk()
             if op.name.startswith("ppu.") and get_effects(op) is not None}
    assert kinds.get("ppu.dma_load") == {"READ", "WRITE"}
    assert kinds.get("ppu.wait") == {"READ", "WRITE"}


@pytest.mark.parametrize("name", PROGRAMS)
def test_cse_dce_canonicalize_keep_behaviour(name):
    kernel = _compile(name)
    module = kernel.module("ppu")
    inputs = kernel.kernel_inputs(kernel.inputs(seed=3))
    before = execute(module.ops.first, inputs)
    cleaned = module.clone()
    assert isinstance(cleaned, ModuleOp)
    ctx = make_context()
    for p in (CommonSubexpressionElimination(), DeadCodeElimination(), CanonicalizePass()):
        p.apply(ctx, cleaned)
    cleaned.verify()
    count = lambda m, names: sum(op.name in names for op in m.walk())  # noqa: E731
    effectful = ("ppu.dma_load", "ppu.dma_store", "ppu.wait", "ppu.mma", "ppu.vmap",
                 "ppu.vreduce", "ppu.vquantize", "ppu.fill", "ppu.viota", "ppu.vtranspose")
    assert count(cleaned, effectful) == count(module, effectful)
    after = execute(cleaned.ops.first, inputs)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
