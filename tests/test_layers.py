"""The import contracts of pyproject.toml hold, see every module, and catch a backward import.

import-linter runs on a non-editable copy of the package (as `make lint-imports` does): with the
package-dir mapping an editable install shows it only the `zhenwu_cc/` folder."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

LINT = Path(sys.executable).with_name("lint-imports")
MAPPED = ("zhenwu_cc", "dialects", "passes", "runtime")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("lint") / "site"
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools would ship stale modules
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
                    str(REPO)], check=True, capture_output=True)
    return site


def lint(site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=site.parent, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)


def test_every_module_is_seen(site):
    sources = [p for folder in MAPPED for p in (REPO / folder).rglob("*.py")
               if "__pycache__" not in p.parts]
    assert len(list((site / "zhenwu_cc").rglob("*.py"))) == len(sources)
    count = subprocess.run(
        [sys.executable, "-c", "import grimp; "
         "print(len(grimp.build_graph('zhenwu_cc', cache_dir=None).modules))"],
        cwd=site.parent, env={"PYTHONPATH": str(site)}, capture_output=True, text=True, check=True)
    assert int(count.stdout) == len(sources), "grimp must see the mapped folders"


def test_the_contracts_hold(site):
    result = lint(site)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("passes/cast.py", "import zhenwu_cc.runtime.executor", "Passes never import runtime"),
    ("runtime/cost/model.py", "import zhenwu_cc.dialects.tile",
     "The executor and the cost model never import zk, tile, frontend or passes"),
    ("zhenwu_cc/api.py", "import zhenwu_cc.cli", "The API never imports the CLI"),
    ("zhenwu_cc/core/dtypes.py", "import zhenwu_cc.dialects.zk", "Layers: driver"),
])
def test_a_backward_import_fails_naming_its_contract(site, module, line, contract, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    target = copy / "zhenwu_cc" / module.removeprefix("zhenwu_cc/")
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint(copy)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[1]
    assert contract in broken
