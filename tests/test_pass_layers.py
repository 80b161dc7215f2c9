"""The passes' place in the layers (issue 12): passes import earlier passes, dialects and core,
never a later pass or runtime; the cost model reads what it needs off the IR, importing no pass;
no passes module is too long to read."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSES = ROOT / "passes"
ORDER = ["decompose", "cast", "tile", "place_hbm", "alloc_sram", "lower_ppu"]  # pipeline order
# The target model moves to core (zhenwu_cc/core/target.py) mechanically at the merge.
ALLOWED_RUNTIME = "zhenwu_cc.core.target"


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports count)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _pass_of(path: Path) -> str | None:
    """The pass a passes module belongs to (tiling/ is the tile pass's); None when shared."""
    rel = path.relative_to(PASSES)
    name = "tile" if rel.parts[0] == "tiling" else rel.stem
    return name if name in ORDER else None


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_passes_never_import_runtime():
    bad = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p)
                                             if m.startswith("zhenwu_cc.runtime")
                                             and not m.startswith(ALLOWED_RUNTIME))
           for p in _modules(PASSES)}
    assert {k: v for k, v in bad.items() if v} == {}


def test_passes_import_no_later_pass():
    """A pass may use an earlier pass's facts; what two passes share lives in a module neither
    owns (passes/sram_plan.py), so no arrow points backwards along the pipeline."""
    bad = []
    for path in _modules(PASSES):
        own = _pass_of(path)
        for module in _imports(path):
            parts = module.split(".")
            if parts[:2] != ["zhenwu_cc", "passes"] or len(parts) < 3:
                continue
            used = "tile" if parts[2] == "tiling" else parts[2]
            if used not in ORDER or used == own:
                continue
            if own is None or ORDER.index(used) > ORDER.index(own):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert bad == []


def test_cost_model_imports_no_pass():
    """Directly or not: what cost needs (tiles, useful FLOPs) is in the ppu IR it reads."""
    direct = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p)
                                                if m.startswith("zhenwu_cc.passes"))
              for p in _modules(ROOT / "runtime" / "cost")}
    assert {k: v for k, v in direct.items() if v} == {}
    code = ("import sys, zhenwu_cc.runtime.cost.extract, zhenwu_cc.runtime.cost.model\n"
            "print(sorted(m for m in sys.modules if m.startswith('zhenwu_cc.passes')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_no_passes_module_over_700_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules(PASSES)
            if (n := len(p.read_text().splitlines())) > 700}
    assert long == {}
