"""The package layout: mapped subpackages import under zhenwu_cc, data files ship."""

import importlib
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


@pytest.mark.parametrize("name", ["zhenwu_cc.dialects.zk", "zhenwu_cc.dialects.dtypes",
                                  "zhenwu_cc.frontend.parser", "zhenwu_cc.passes",
                                  "zhenwu_cc.runtime"])
def test_mapped_packages_import(name):
    mod = importlib.import_module(name)
    assert mod.__name__ == name


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
