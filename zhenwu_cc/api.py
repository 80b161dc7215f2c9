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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from zhenwu_cc import arguments as arg
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
        self._cast = None
        self._verify_each = True

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

    @property
    def cast(self):
        """The `zk.kernel` after the `cast` pass: precision directives as explicit
        quantise/dequantise ops and quantised parameters (the numerics check's yardstick)."""
        if self._cast is None:
            self._cast = _cast(self._zk)
        return self._cast.ops.first

    def module(self, stage: str = "ppu", target: str | None = None):
        """The module lowered to `stage` for `target` (computed once, then cached)."""
        from zhenwu_cc.pipeline import STAGES, lower

        stage = arg.text("module()", "stage", stage, optional=False)
        target = arg.text("module()", "target", target)
        if stage not in STAGES:
            raise error("ZK0006", f"unknown stage {stage!r}", help="stages: " + ", ".join(STAGES))
        if stage == "zk":
            return self._zk
        key = (stage, target or self.target)
        if key not in self._lowered:
            from zhenwu_cc.pipeline import Instrumentation

            module = self._zk.clone()
            lower(module, stage, key[1], Instrumentation(verify_each=self._verify_each))
            self._lowered[key] = module
        return self._lowered[key]

    def retile(self, tiles: Mapping[str, Sequence[int]], *, split_k: Mapping[str, int] | None = None,
               buffers: int | None = None, verify: bool = False) -> CompiledKernel:
        """The same kernel with other `tile` sizes (and `buffers` depth), without parsing again:
        what a tuner calls per candidate schedule. `tiles` maps binding names to sizes, as the
        schedule's `tile NAME [...]` would; `verify` re-verifies the IR after every pass."""
        from xdsl.dialects.builtin import IntegerAttr

        from zhenwu_cc.frontend.irgen import MAX_BUFFERS, tile_attr

        tiles = {name: arg.integers("retile()", f"tiles[{name!r}]", sizes)
                 for name, sizes in arg.mapping("retile()", "tiles", tiles, False).items()}
        split_k = {name: arg.integer("retile()", f"split_k[{name!r}]", n, 1, 1024)
                   for name, n in arg.mapping("retile()", "split_k", split_k).items()}
        if buffers is not None:
            buffers = arg.integer("retile()", "buffers", buffers, 1, MAX_BUFFERS)
        verify = arg.flag("retile()", "verify", verify)
        for name in split_k:
            if name not in tiles:
                raise arg.bad("retile()", f"split_k[{name!r}]", "given with tile sizes for "
                              f"`{name}` in `tiles`", split_k[name])
        module = self._zk.clone()
        kernel = module.ops.first
        named = {op.results[0].name_hint: op for op in kernel.body.walk()
                 if op.results and op.results[0].name_hint}
        for name, sizes in tiles.items():
            if name not in named:
                raise error("ZK0402", f"kernel `{self.name}` has no binding named `{name}`",
                            help="bindings: " + ", ".join(sorted(named)))
            named[name].attributes["zk.tile"] = tile_attr(named[name], name, sizes,
                                                          split_k.get(name))
        if buffers is not None:
            kernel.attributes["zk.buffers"] = IntegerAttr(buffers, 64)
        other = CompiledKernel(module, self.file, self.target)
        other._verify_each = verify
        return other

    def ir(self, stage: str = "ppu", *, debuginfo: bool = False) -> str:
        from zhenwu_cc.cli import print_ir

        stage = arg.text("ir()", "stage", stage, optional=False)
        debuginfo = arg.flag("ir()", "debuginfo", debuginfo)
        return print_ir(self.module(stage), debuginfo)

    # -- running --
    def inputs(self, given: Mapping[str, np.ndarray] | None = None, *, seed: int = 0
               ) -> dict[str, np.ndarray]:
        """The inputs a run uses: `given` (checked), the rest seeded random."""
        from zhenwu_cc.runtime import reference
        from zhenwu_cc.runtime.host_memory import ensure_run_memory

        given, seed = arg.arrays("inputs()", "given", given), arg.seed("inputs()", seed)
        ensure_run_memory(self, given=given)
        return reference.check_inputs(self.zk, dict(given or {}), seed=seed)

    def kernel_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the compiled kernel takes for source-level `inputs` (checked, in their declared
        dtypes): parameters with a precision directive quantised on the host, as `numerics`
        does, into their values and scales (docs/precision.md)."""
        from zhenwu_cc.runtime.precision import host_inputs

        inputs = arg.arrays("kernel_inputs()", "inputs", inputs, optional=False)
        return host_inputs(self.cast, inputs)

    def run(self, inputs: Mapping[str, np.ndarray] | None = None, *, seed: int = 0,
            **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Execute the lowered program on the numpy executor (inputs by source parameter)."""
        from zhenwu_cc.runtime.executor import execute
        from zhenwu_cc.runtime.host_memory import ensure_run_memory

        inputs, seed = arg.arrays("run()", "inputs", inputs), arg.seed("run()", seed)
        ensure_run_memory(self, given={**inputs, **arrays}, execute=True)
        given = self.inputs({**(inputs or {}), **arrays}, seed=seed)
        return execute(self.module("ppu").ops.first, self.kernel_inputs(given))

    def reference(self, inputs: Mapping[str, np.ndarray] | None = None, *, mode: str = "f64",
                  seed: int = 0, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Evaluate the source program directly (float64 oracle, or "typed")."""
        from zhenwu_cc.runtime import reference
        from zhenwu_cc.runtime.host_memory import ensure_run_memory

        inputs, seed = arg.arrays("reference()", "inputs", inputs), arg.seed("reference()", seed)
        if arg.text("reference()", "mode", mode, optional=False) not in reference.MODES:
            raise arg.bad("reference()", "mode", " or ".join(map(repr, reference.MODES)), mode)
        ensure_run_memory(self, given={**inputs, **arrays}, reference_mode=mode)
        return reference.evaluate(self.zk, self.inputs({**(inputs or {}), **arrays}, seed=seed),
                                  mode=mode)

    def check(self, inputs: Mapping[str, np.ndarray] | None = None, *, seed: int = 0,
              **arrays: np.ndarray) -> CheckResult:
        """Run, and compare every output with the float64 reference (dtype-aware)."""
        from zhenwu_cc.runtime.host_memory import ensure_run_memory

        inputs, seed = arg.arrays("check()", "inputs", inputs), arg.seed("check()", seed)
        ensure_run_memory(self, given={**inputs, **arrays}, execute=True, check=True)
        given = self.inputs({**(inputs or {}), **arrays}, seed=seed)
        outputs = self.run(given)
        checks = self.compare(given, outputs)
        return CheckResult(outputs, checks, all(c.passed for c in checks))

    def compare(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]):
        """Per-output errors of `outputs` (a run on `inputs`) against the float64 reference of
        the source, with the tolerance the program's dtypes and precision directives imply
        (the `cast` program evaluated as typed), and each directive's share of the error."""
        from zhenwu_cc.dialects import dtypes
        from zhenwu_cc.runtime import check, reference
        from zhenwu_cc.runtime.precision import host_inputs

        inputs = arg.arrays("compare()", "inputs", inputs, optional=False)
        outputs = arg.arrays("compare()", "outputs", outputs, optional=False)
        for n, t in zip(self.zk.names_of_results, self.zk.function_type.outputs.data):
            if (n not in outputs or outputs[n].shape != tuple(t.get_shape())
                    or outputs[n].dtype.kind not in "biufV"):
                raise arg.bad("compare()", f"outputs[{n!r}]", "a numeric array of shape "
                              f"{list(t.get_shape())}", outputs.get(n),
                              help="pass the outputs of a run on `inputs`, e.g. k.run(inputs)")
        oracle = reference.evaluate(self.zk, inputs, mode="f64")
        typed = reference.evaluate(self.cast, self.kernel_inputs(inputs), mode="typed")
        blame = {n: [] for n in oracle}
        for directive, without in _without_each_directive(self._zk):
            kernel = _cast(without).ops.first
            rest = reference.evaluate(kernel, host_inputs(kernel, inputs), mode="typed")
            for n in oracle:
                blame[n].append(check.attribute(directive, typed[n], rest[n], oracle[n]))
        types = {n: dtypes.from_xdsl(t.element_type).name
                 for n, t in zip(self.zk.names_of_results, self.zk.function_type.outputs.data)}
        return [check.compare(n, types[n], outputs[n], oracle[n], typed[n], blame[n])
                for n in oracle]

    # -- cost --
    def cost(self, target: str | None = None):
        """The static cost estimate (a `runtime.cost.model.Estimate`)."""
        from zhenwu_cc.runtime.cost.extract import workload_of
        from zhenwu_cc.runtime.cost.model import estimate
        from zhenwu_cc.runtime.target import load_target

        name = arg.text("cost()", "target", target) or self.target
        return estimate(workload_of(self.module("ppu", name).ops.first), load_target(name))


def _cast(module):
    """A copy of a `zk` module after the `cast` pass."""
    from zhenwu_cc.passes.cast import CastPass
    from zhenwu_cc.pipeline import make_context

    out = module.clone()
    CastPass().apply(make_context(), out)
    return out


def _without_each_directive(module):
    """(the directive as written, the module without it) for each name a `precision`
    directive applies to: the sources of the numerics report's attribution."""
    from zhenwu_cc.dialects import zk

    kernel = module.ops.first
    names = [(a.name_hint, i) for i, a in enumerate(kernel.body.block.args)
             if kernel.arg_attr(i, "zk.precision") is not None]
    names += [(op.results[0].name_hint, op) for op in kernel.body.block.ops
              if "zk.precision" in op.attributes]
    for name, where in names:
        copy = module.clone()
        k = copy.ops.first
        k.attributes.pop("zk.accumulate_mode", None)  # the reference sums in f32 anyway
        if isinstance(where, int):
            attr = k.arg_attrs.data[where].data["zk.precision"]
            k.arg_attrs = _drop(k.arg_attrs, where, "zk.precision")
        else:
            op = next(o for o, orig in zip(k.body.block.ops, kernel.body.block.ops)
                      if orig is where)
            attr = op.attributes.pop("zk.precision")
        assert isinstance(attr, zk.PrecisionAttr)
        yield f"precision {name} as {_describe(attr)}", copy


def _drop(arg_attrs, index: int, key: str):
    from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr

    dicts = [dict(d.data) for d in arg_attrs.data]
    dicts[index].pop(key)
    return ArrayAttr([DictionaryAttr(d) for d in dicts])


def _describe(p) -> str:
    """A precision attribute as the schedule line says it: `f8E4M3FN scale mx(rceil)`."""
    mode = p.mode.data
    if mode == "none":
        return p.element.name
    args = [str(a) for a in p.mode_args] + ([p.option.data] if p.option.data else [])
    return f"{p.element.name} scale {mode}" + (f"({', '.join(args)})" if args else "")


def compile(source_or_path: str | os.PathLike, *, kernel: str | None = None,
            defines: Mapping[str, int] | None = None, target: str | None = None
            ) -> CompiledKernel:
    """Compile `.zk` source text, or the `.zk` file at a path, for `target` (default m890)."""
    from zhenwu_cc.cli import read_source
    from zhenwu_cc.frontend import build
    from zhenwu_cc.pipeline import DEFAULT_TARGET

    source_or_path = arg.source("compile()", source_or_path)
    kernel = arg.text("compile()", "kernel", kernel)
    target = arg.text("compile()", "target", target)
    defines = {name: arg.integer("compile()", f"defines[{name!r}]", value)
               for name, value in arg.mapping("compile()", "defines", defines).items()}
    text, file = str(source_or_path), "<source>"
    if isinstance(source_or_path, os.PathLike) or (
            "\n" not in text and text.endswith(".zk")):
        file = os.fspath(source_or_path)
        text = read_source(file)
    module = build(text, file, defines, kernel)
    names = [k.sym_name.data for k in module.ops]
    if not names:
        raise error("ZK0003", f"{file} defines no kernel", help="add `kernel NAME(...) -> ... {}`")
    if len(names) != 1:
        raise error("ZK0004", f"{file} has {len(names)} kernels ({', '.join(names)})",
                    help=f"choose one with kernel=, e.g. kernel={names[0]!r}")
    return CompiledKernel(module, file,
                          target or os.environ.get("ZHENWU_TARGET", DEFAULT_TARGET))
