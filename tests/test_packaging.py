"""The package layout: mapped subpackages import under zhenwu_cc, data files ship."""

import importlib
from importlib.metadata import version
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from conftest import REPO


@pytest.mark.parametrize("name,path", [
    ("zhenwu_cc.dialects.zk", "dialects/zk.py"), ("zhenwu_cc.core.dtypes", "zhenwu_cc/core/dtypes.py"),
    ("zhenwu_cc.frontend.parser", "zhenwu_cc/frontend/parser.py"),
    ("zhenwu_cc.passes", "passes/__init__.py"), ("zhenwu_cc.runtime", "runtime/__init__.py"),
    ("zhenwu_cc.runtime.targets", "runtime/targets/__init__.py"),
])
def test_mapped_packages_import(name, path):
    """Each subpackage imports under zhenwu_cc from the folder pyproject.toml maps it to."""
    assert importlib.import_module(name).__file__ == str(REPO / path)


def test_no_generic_top_level_packages_are_importable_from_site():
    # Only zhenwu_cc is installed; `dialects`, `passes`, `runtime` exist only as folders.
    for generic in ("dialects", "passes", "runtime"):
        spec = importlib.util.find_spec(generic)
        assert spec is None or str(REPO) in str(spec.origin or spec.submodule_search_locations)


def test_wheel_contains_data_files(tmp_path):
    """A green editable install can hide a broken wheel: build one and look inside."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("zhenwu_cc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("zhenwu_cc/frontend/grammar.lark", "zhenwu_cc/dialects/zk.py",
                     "zhenwu_cc/cli.py"):
        assert required in names
    assert not any(n.startswith(("dialects/", "passes/", "runtime/")) for n in names)


def _lock() -> dict[str, str]:
    lines = (REPO / ".ci" / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


def test_lock_pins_every_dependency_within_its_range():
    """`make` and CI install from the lock: it must pin each declared package inside its range."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in meta["dependencies"] + meta["optional-dependencies"]["dev"]]
    lock = _lock()
    for req in declared:
        if req.name in ("setuptools", "wheel"):  # build tools: pip does not freeze them
            continue
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is not pinned in .ci/constraints.txt (run `make lock`)"
        assert req.specifier.contains(lock[name]), f"{req.name}=={lock[name]} not in {req.specifier}"


def test_installed_versions_are_the_locked_ones():
    lock = _lock()
    for name in ("xdsl", "lark", "numpy", "ml-dtypes", "scipy"):
        assert version(name) == lock[canonicalize_name(name)]
