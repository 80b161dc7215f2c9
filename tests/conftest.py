"""Shared fixtures. Hypothesis runs a quick profile by default and a thorough one when
ZHENWU_TEST_PROFILE=thorough (`make test-slow`); every example is seeded (derandomize)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, derandomize=True, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("ZHENWU_TEST_PROFILE", "default"))

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture(autouse=True, scope="session")
def _private_tune_cache(tmp_path_factory):
    """`tune`'s cache in a temporary directory: tests never write the user's ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("ZHENWU_CACHE_DIR", str(tmp_path_factory.mktemp("tune-cache")))
    yield
    patch.undo()


@pytest.fixture
def cli(capsys):
    """Run `zhenwu-cc` in-process: cli("check", path) -> CliResult(code, out, err)."""
    from zhenwu_cc.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def zk_file(tmp_path):
    """Write `.zk` source to a temporary file and return its path."""

    def write(source: str, name: str = "k.zk") -> Path:
        path = tmp_path / name
        path.write_text(source)
        return path

    return write
