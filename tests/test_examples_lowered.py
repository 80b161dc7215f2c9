"""Every example compiles to `ppu`, verifies after every pass, runs on the executor and passes
`--check` — with its schedule's tiles and with three other tile sizes each, including sizes that
do not divide the shapes (edge tiles everywhere)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import zhenwu_cc
from zhenwu_cc.frontend.parser import parse

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES = sorted(EXAMPLES.glob("*.zk"))

# Reduced shapes: odd where the kernel allows it; multiples of the scale blocks where a
# precision directive needs them.
SHAPES = {
    "attention": {"B": 1, "H": 2, "S": 72, "D": 40},
    "attention_causal": {"B": 1, "H": 2, "S": 72, "D": 40},
    "attention_fp8": {"B": 1, "H": 2, "S": 72, "D": 40},
    "attention_gqa": {"B": 1, "H": 4, "G": 2, "S": 72, "D": 32},
    "gemm_batched": {"B": 3, "M": 72, "N": 40, "K": 56},
    "gemm_fp8_block": {"M": 96, "N": 256, "K": 256},
    "gemm_mxfp4": {"M": 96, "N": 80, "K": 128},
    "gemm_mxfp8": {"M": 96, "N": 80, "K": 128},
    "gemm_nvfp4": {"M": 96, "N": 80, "K": 128},
    "rotary_embedding": {"B": 1, "S": 24, "H": 3, "D": 40},
}
DEFAULT_SIZE = 72
# Alternative tile sizes by directive arity: small, odd (not dividing), and mixed.
VARIANTS = {
    1: ([16], [7], [40]),
    2: ([2, 16], [3, 7], [5, 48]),
    3: ([16, 16, 16], [24, 40, 8], [7, 33, 13]),
    4: ([1, 2, 2, 16], [1, 3, 5, 7], [1, 1, 7, 48]),
}
TILE_LINE = re.compile(r"^(\s*tile\s+\w+\s+)\[([^\]]*)\](.*)$", re.M)


def _defines(path: Path) -> dict[str, int]:
    params = {sp.name for k in parse(path.read_text(), str(path)).kernels for sp in k.shape_params}
    overrides = SHAPES.get(path.stem, {})
    return {p: overrides.get(p, DEFAULT_SIZE) for p in params}


def _with_tiles(text: str, variant: int) -> str:
    """Each directive with the variant's sizes; a flash grid's `tile o [BQ, BD, BKV]` agrees
    with `tile s [BQ, BKV, K]` (ZK0618 otherwise)."""
    flash = re.search(r"^\s*tile\s+s\s", text, re.M) is not None

    def swap(m: re.Match) -> str:
        arity = len([s for s in m.group(2).split(",") if s.strip()])
        sizes = VARIANTS[arity][variant]
        if flash and m.group(1).split()[1] == "o":
            sizes = [sizes[0], sizes[2], sizes[1]]
        return f"{m.group(1)}{sizes}{m.group(3)}"

    return TILE_LINE.sub(swap, text)


CASES = [(p, v) for p in FILES for v in (None, 0, 1, 2)
         if v is None or TILE_LINE.search(p.read_text())]


@pytest.mark.parametrize("path,variant", CASES,
                         ids=[f"{p.stem}-{'default' if v is None else f'tiles{v}'}"
                              for p, v in CASES])
def test_example_runs_and_checks(path: Path, variant):
    text = path.read_text()
    if variant is not None:
        text = _with_tiles(text, variant)
    kernel = zhenwu_cc.compile(text.replace("\r", ""), defines=_defines(path))
    result = kernel.check(seed=7)
    assert result.passed, f"{path.name} tiles variant {variant}:\n{result}"


FUSED = [p for p in FILES if p.stem.startswith("attention") or p.stem == "mlp_swiglu"]


@pytest.mark.parametrize("variant", [None, 1])
@pytest.mark.parametrize("path", FUSED, ids=lambda p: p.stem)
def test_example_runs_and_checks_unfused(path: Path, variant):
    """The `--no-fuse` baseline of every example the `tile` pass fuses something in is a
    correct program too (the unfused grids: S in HBM, two matmul grids for SwiGLU)."""
    text = path.read_text() if variant is None else _with_tiles(path.read_text(), variant)
    kernel = zhenwu_cc.compile(text.replace("\r", ""), defines=_defines(path), fuse=False)
    assert "attention" not in {g.role.data for g in kernel.module("tile").ops.first.walk()
                               if g.name == "tile.grid"}
    result = kernel.check(seed=7)
    assert result.passed, f"{path.name} --no-fuse, tiles variant {variant}:\n{result}"
