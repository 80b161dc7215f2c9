"""Every pass by its short pipeline name (`tile`, `cast`, `place-hbm`, ...), imported lazily.

`zhenwu-cc opt -p` and the default pipelines look passes up here, together with xDSL's own
`canonicalize`, `cse` and `dce`.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _xdsl(module: str, cls: str) -> Callable[[], type[ModulePass]]:
    def load() -> type[ModulePass]:
        import importlib

        return getattr(importlib.import_module(module), cls)

    return load


def _ours(module: str, cls: str) -> Callable[[], type[ModulePass]]:
    return _xdsl(f"zhenwu_cc.passes.{module}", cls)


PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "canonicalize": _xdsl("xdsl.transforms.canonicalize", "CanonicalizePass"),
    "cse": _xdsl("xdsl.transforms.common_subexpression_elimination",
                 "CommonSubexpressionElimination"),
    "dce": _xdsl("xdsl.transforms.dead_code_elimination", "DeadCodeElimination"),
    "decompose": _ours("decompose", "DecomposePass"),
    "cast": _ours("cast", "CastPass"),
    "alloc-sram": _ours("alloc_sram", "AllocSramPass"),
    "lower-ppu": _ours("lower_ppu", "LowerPpuPass"),
    "place-hbm": _ours("place_hbm", "PlaceHbmPass"),
    "tile": _ours("tile", "TilePass"),
}


def get_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    return dict(PASSES)
