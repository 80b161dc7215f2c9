"""The Python API: compile once, then run, check and cost many times in one process.

    import zhenwu_cc
    k = zhenwu_cc.compile("examples/gemm.zk", defines={"M": 256, "N": 256, "K": 128})
    out = k.run(a=a, b=b)            # dict of outputs, executed on the numpy executor
    report = k.check(seed=0)         # outputs vs the float64 reference, per output
    est = k.cost("h100")             # static estimate; est.time, est.bound, est.to_json()
    print(k.ir("tile"))

Errors in the kernel raise `zhenwu_cc.diagnostics.CompileError` (its `.diagnostics` carry the
codes and spans the CLI prints).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from zhenwu_cc.diagnostics import error


@dataclass(frozen=True)
class CheckResult:
    outputs: dict[str, np.ndarray]
    checks: list
    passed: bool

    def __str__(self) -> str:
        from zhenwu_cc.runtime.check import render

        return render(self.checks)


class CompiledKernel:
    """One kernel of a `.zk` source, compiled to the `ppu` level for a target."""

    def __init__(self, module, file: str, target: str):
        """`module`: a verified `builtin.module` holding exactly one `zk.kernel`."""
        self.file, self.target = file, target
        self._zk = module
        self._lowered: dict[tuple[str, str], object] = {}

    # -- the program --
    @property
    def zk(self):
        """The `zk.kernel` as written (the oracle's program)."""
        return self._zk.ops.first

    @property
    def name(self) -> str:
        return self.zk.sym_name.data

    @property
    def signature(self) -> dict:
        from zhenwu_cc.cli import signature

        return signature(self.zk)

    def module(self, stage: str = "ppu", target: str | None = None):
        """The module lowered to `stage` for `target` (computed once, then cached)."""
        from zhenwu_cc.pipeline import STAGES, lower

        if stage not in STAGES:
            raise error("ZK0006", f"unknown stage {stage!r}", help="stages: " + ", ".join(STAGES))
        if stage == "zk":
            return self._zk
        key = (stage, target or self.target)
        if key not in self._lowered:
            module = self._zk.clone()
            lower(module, stage, key[1])
            self._lowered[key] = module
        return self._lowered[key]

    def ir(self, stage: str = "ppu", *, debuginfo: bool = False) -> str:
        from zhenwu_cc.cli import print_ir

        return print_ir(self.module(stage), debuginfo)

    # -- running --
    def inputs(self, given: Mapping[str, np.ndarray] | None = None, *, seed: int = 0
               ) -> dict[str, np.ndarray]:
        """The inputs a run uses: `given` (checked), the rest seeded random."""
        from zhenwu_cc.runtime import reference

        return reference.check_inputs(self.zk, dict(given or {}), seed=seed)

    def run(self, inputs: Mapping[str, np.ndarray] | None = None, *, seed: int = 0,
            **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Execute the lowered program on the numpy executor."""
        from zhenwu_cc.runtime.executor import execute

        return execute(self.module("ppu").ops.first, self.inputs({**(inputs or {}), **arrays},
                                                                 seed=seed))

    def reference(self, inputs: Mapping[str, np.ndarray] | None = None, *, mode: str = "f64",
                  seed: int = 0, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Evaluate the source program directly (float64 oracle, or "typed")."""
        from zhenwu_cc.runtime import reference

        return reference.evaluate(self.zk, self.inputs({**(inputs or {}), **arrays}, seed=seed),
                                  mode=mode)

    def check(self, inputs: Mapping[str, np.ndarray] | None = None, *, seed: int = 0,
              **arrays: np.ndarray) -> CheckResult:
        """Run, and compare every output with the float64 reference (dtype-aware)."""
        given = self.inputs({**(inputs or {}), **arrays}, seed=seed)
        outputs = self.run(given)
        checks = self.compare(given, outputs)
        return CheckResult(outputs, checks, all(c.passed for c in checks))

    def compare(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]):
        """Per-output errors of `outputs` (a run on `inputs`) against the float64 reference."""
        from zhenwu_cc.dialects import dtypes
        from zhenwu_cc.runtime import check, reference

        oracle = reference.evaluate(self.zk, inputs, mode="f64")
        typed = reference.evaluate(self.zk, inputs, mode="typed")
        types = {n: dtypes.from_xdsl(t.element_type).name
                 for n, t in zip(self.zk.names_of_results, self.zk.function_type.outputs.data)}
        return [check.compare(n, types[n], outputs[n], oracle[n], typed[n]) for n in oracle]

    # -- cost --
    def cost(self, target: str | None = None):
        """The static cost estimate (a `runtime.cost.model.Estimate`)."""
        from zhenwu_cc.runtime.cost.extract import workload_of
        from zhenwu_cc.runtime.cost.model import estimate
        from zhenwu_cc.runtime.target import load_target

        name = target or self.target
        return estimate(workload_of(self.module("ppu", name).ops.first), load_target(name))


def compile(source_or_path: str | os.PathLike, *, kernel: str | None = None,
            defines: Mapping[str, int] | None = None, target: str | None = None
            ) -> CompiledKernel:
    """Compile `.zk` source text, or the `.zk` file at a path, for `target` (default m890)."""
    from zhenwu_cc.cli import read_source
    from zhenwu_cc.pipeline import DEFAULT_TARGET

    from zhenwu_cc.frontend import build

    text, file = str(source_or_path), "<source>"
    if isinstance(source_or_path, os.PathLike) or (
            "\n" not in text and text.endswith(".zk")):
        file = os.fspath(source_or_path)
        text = read_source(file)
    module = build(text, file, dict(defines or {}), kernel)
    names = [k.sym_name.data for k in module.ops]
    if len(names) != 1:
        raise error("ZK0004", f"{file} has {len(names)} kernels ({', '.join(names)})",
                    help=f"choose one with kernel=, e.g. kernel={names[0]!r}")
    return CompiledKernel(module, file,
                          target or os.environ.get("ZHENWU_TARGET", DEFAULT_TARGET))
