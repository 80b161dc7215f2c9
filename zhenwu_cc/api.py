"""The Python API: compile once, then run, check and cost many times in one process.

    import zhenwu_cc
    k = zhenwu_cc.compile("examples/gemm.zk", defines={"M": 256, "N": 256, "K": 128})
    out = k.run(a=a, b=b)            # dict of outputs, executed on the numpy executor
    report = k.check(seed=0)         # outputs vs the float64 reference, per output
    est = k.cost("h100")             # static estimate; est.time, est.bound, est.to_dict()
    print(k.ir("tile"))

Errors in the kernel raise `zhenwu_cc.core.diagnostics.CompileError` (its `.diagnostics` carry the
codes and spans the CLI prints).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from zhenwu_cc import arguments as arg
from zhenwu_cc.core import attrs
from zhenwu_cc.core.diagnostics import error

if TYPE_CHECKING:  # numpy is imported where arrays are handled: `cost` needs none
    import numpy as np


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class CheckResult:
    """What `check()` found: the outputs, each comparison with the reference, and the verdict."""

    outputs: dict[str, np.ndarray]
    checks: list
    passed: bool

    def __str__(self) -> str:
        from zhenwu_cc.runtime.check import render

        return render(self.checks)


class CompiledKernel:
    """One kernel of a `.zk` source, compiled to the `ppu` level for a target."""

    def __init__(self, module, file: str, target: str, fuse: bool = True):
        """`module`: a verified `builtin.module` holding exactly one `zk.kernel`; `fuse` false
        lowers it without the `tile` pass's fusions (the unfused baseline, `--no-fuse`)."""
        self.file, self.target, self.fuse = file, target, fuse
        self._zk = module
        self._lowered: dict[tuple[str, str], object] = {}
        self._cast = None
        self._verify_each = True
        self._verify_once = False  # without _verify_each: verify the lowered module at the end
        self._shared: MutableMapping | None = None  # lowered modules by content (`shared`)
        self._content: str | None = None  # the zk module's hash (`_shared_key`)
        self._fast = None  # fast_cost()'s templates
        self._numerics: dict = {}  # `evaluate`'s numerics checks, by seed, sample and budget
        self._host_bytes: int | None = None  # the executor's estimate (`_executor_bytes`)
        self._executor_facts: dict = {}  # what the executor read from the ppu IR (`run`)
        self.source: tuple[str, str | None] | None = None  # the .zk text and kernel name

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
        from zhenwu_cc.signature import signature

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
            from zhenwu_cc.pipeline import Instrumentation, verify

            shared = self._shared_key("lowered", *key)
            if shared is not None and shared in self._shared:
                self._lowered[key] = self._shared[shared]
                return self._lowered[key]
            module = self._zk.clone()
            lower(module, stage, key[1], Instrumentation(verify_each=self._verify_each),
                  fuse=self.fuse)
            if self._verify_once and not self._verify_each:
                verify(module, f"the {stage} pipeline")
            self._lowered[key] = module
            if shared is not None and (self._verify_each or self._verify_once):
                self._shared[shared] = module  # only verified modules are shared
        return self._lowered[key]

    def shared(self, cache: MutableMapping | None, *, verify_once: bool = False
               ) -> CompiledKernel:
        """Keep lowered modules in `cache`, by content: the `zk` module as printed with its
        locations, the stage, the target and fusion, which are all that lowering reads (so a
        kernel compiled again from an edited source, or a retiled copy, that comes out the same
        is not lowered again). `verify_once` verifies a lowered module once, after the last
        pass, instead of after every pass (`serve`, `cost`, `eval`: the source is verified and
        the passes are tested). Targets given as files are not shared (the file can change).
        Returns self."""
        self._shared = cache
        if verify_once:
            self._verify_each, self._verify_once = False, True
        return self

    def _shared_key(self, what: str, *parts) -> tuple | None:
        """The key of `what` for this kernel's content in the shared cache, or None when the
        kernel keeps its own."""
        target = parts[1] if what == "lowered" else self.target
        if self._shared is None or "/" in target or target.endswith(".toml"):
            return None
        if self._content is None:
            import hashlib

            from zhenwu_cc.pipeline import print_ir

            self._content = hashlib.sha256(print_ir(self._zk, True).encode()).hexdigest()
        return (what, self._content, self.target, self.fuse, *parts)

    def _executor_bytes(self) -> int:
        """The executor's host-memory estimate of the `ppu` program, computed once: the run's
        refusal (host_memory.py) and `execute` both ask for it, every run."""
        if self._host_bytes is None:
            from zhenwu_cc.runtime.executor import estimate_host_bytes

            self._host_bytes = estimate_host_bytes(self.module("ppu").ops.first)
        return self._host_bytes

    def retile(self, tiles: Mapping[str, Sequence[int]], *, split_k: Mapping[str, int] | None = None,
               buffers: int | None = None, verify: bool = False) -> CompiledKernel:
        """The same kernel with other `tile` sizes (and `buffers` depth), without parsing again:
        what a tuner calls per candidate schedule. `tiles` maps binding names to sizes, as the
        schedule's `tile NAME [...]` would; `verify` re-verifies the IR after every pass."""
        from xdsl.dialects.builtin import IntegerAttr

        from zhenwu_cc.frontend.schedules import tile_attr

        tiles, split_k, buffers = _schedule_args("retile()", tiles, split_k, buffers)
        verify = arg.flag("retile()", "verify", verify)
        module = self._zk.clone()
        kernel = module.ops.first
        named = {op.results[0].name_hint: op for op in kernel.body.walk()
                 if op.results and op.results[0].name_hint}
        for name, sizes in tiles.items():
            if name not in named:
                raise error("ZK0402", f"kernel `{self.name}` has no binding named `{name}`",
                            help="bindings: " + ", ".join(sorted(named)))
            named[name].attributes[attrs.TILE] = tile_attr(named[name], name, sizes,
                                                          split_k.get(name))
        if buffers is not None:
            kernel.attributes[attrs.BUFFERS] = IntegerAttr(buffers, 64)
        other = self.derived(module)
        other._verify_each = verify
        return other

    def derived(self, module) -> CompiledKernel:
        """A kernel made from this one's `zk` module by a schedule edit (`retile`, hints'
        edits): the same file, target and fusion, unverified after each pass (the source was
        verified, the passes are tested), sharing this kernel's cache and `verify_once`."""
        other = CompiledKernel(module, self.file, self.target, self.fuse)
        other._verify_each = False
        other._shared, other._verify_once = self._shared, self._verify_once
        return other

    def fast_cost(self, tiles: Mapping[str, Sequence[int]], *,
                  split_k: Mapping[str, int] | None = None, buffers: int | None = None,
                  target: str | None = None):
        """The estimate `retile(tiles, split_k=..., buffers=...).cost(target)` gives (the same
        workload to the byte), in a fraction of its time: schedules that differ from one
        already lowered only in tile sizes are costed without lowering (zhenwu_cc/fast_cost.py).
        What a tuner calls per candidate; errors are retile()'s and cost()'s."""
        from zhenwu_cc.fast_cost import FastCoster

        tiles, split_k, buffers = _schedule_args("fast_cost()", tiles, split_k, buffers)
        name = arg.text("fast_cost()", "target", target) or self.target
        if self._fast is None:
            self._fast = FastCoster(self)
        return self._fast.cost(tiles, split_k, buffers, name)

    def ir(self, stage: str = "ppu", *, debuginfo: bool = False) -> str:
        from zhenwu_cc.pipeline import print_ir

        stage = arg.text("ir()", "stage", stage, optional=False)
        debuginfo = arg.flag("ir()", "debuginfo", debuginfo)
        return print_ir(self.module(stage), debuginfo)

    # -- running --
    def inputs(self, given: Mapping[str, np.ndarray] | None = None, *, seed: int = 0,
               ranges: Mapping[str, tuple[float, float]] | None = None
               ) -> dict[str, np.ndarray]:
        """The inputs a run uses: `given` (checked), the rest seeded random, each in a range that
        suits its dtype and role (`reference.random_inputs`) or in `ranges[name]` = (lo, hi)."""
        from zhenwu_cc.runtime import reference
        from zhenwu_cc.runtime.host_memory import ensure_run_memory

        given, seed = arg.arrays("inputs()", "given", given), arg.seed("inputs()", seed)
        ensure_run_memory(self, given=given)
        return reference.check_inputs(self.zk, dict(given or {}), seed=seed, ranges=ranges)

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
        return execute(self.module("ppu").ops.first, self.kernel_inputs(given),
                       host_bytes=self._executor_bytes(), facts=self._executor_facts)

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
              ranges: Mapping[str, tuple[float, float]] | None = None,
              max_rel_l2: float | None = None, sample: int | None = None,
              **arrays: np.ndarray) -> CheckResult:
        """Run, and compare every output with the float64 reference (dtype-aware). `max_rel_l2`
        also bounds each output's rel L2 error against the exact math; `sample` checks that
        many seeded indices along each independent axis (see `check_plan`)."""
        from zhenwu_cc.runtime.host_memory import ensure_run_memory

        inputs, seed = arg.arrays("check()", "inputs", inputs), arg.seed("check()", seed)
        ensure_run_memory(self, given={**inputs, **arrays}, execute=True)  # the run first
        plan = self.check_plan(sample, seed=seed)
        if plan is None:  # a sampled check's reference is sized by check_plan
            ensure_run_memory(self, given={**inputs, **arrays}, execute=True, check=True)
        given = self.inputs({**(inputs or {}), **arrays}, seed=seed, ranges=ranges)
        outputs = self.run(given)
        checks = self.compare(given, outputs, max_rel_l2=max_rel_l2, sample=plan)
        return CheckResult(outputs, checks, all(c.passed for c in checks))

    def check_plan(self, sample: int | None = None, *, seed: int = 0):
        """Decide, from shapes alone and before anything runs, what a check compares: None for
        every element, or a seeded `check_sample.Sample` of `sample` indices along each axis
        that the outputs are independent along. Without `sample`, the full check when its
        reference fits host memory, else a sample made by halving the longest independent axis
        (of those whose halving saves memory) until the sampled reference fits in
        `SAMPLE_BYTES`. Raises ZK0510 when no check fits (with a smaller shape that would); the
        executor's own estimate (ZK0505) is `run`'s."""
        from zhenwu_cc.runtime import check_sample
        from zhenwu_cc.runtime.host_memory import check_bytes
        from zhenwu_cc.runtime.units import host_memory_limit

        limit = host_memory_limit()
        programs = self._check_programs()
        need = sum(check_bytes(programs, None))
        fits = limit is None or need <= limit
        if sample is None and fits:
            return None
        classes = check_sample.independent(k for k, _ in programs)
        if sample is not None:
            if fits and not any(n > sample for _, n in classes):
                return None  # the sample would keep every index: the full check
            plan = check_sample.choose(classes, sample, seed)
            held, small = check_bytes(programs, plan)
            if plan.picks and (limit is None or held + small <= limit):
                return plan
            raise self._too_big(need, held + small, limit, classes, sample)
        sizes = [n for _, n in classes]
        full = check_bytes(programs, check_sample.choose(classes, sizes, seed))[1]
        costly = [i for i, n in enumerate(sizes) if n > 1 and check_bytes(programs, (
            check_sample.choose(classes, sizes[:i] + [n // 2] + sizes[i + 1:], seed)))[1]
            < full * (1 - 1 / SAMPLE_SAVING)] or list(range(len(sizes)))
        small = None
        while any(sizes[i] > 1 for i in costly):
            longest = max(costly, key=lambda i: sizes[i])
            sizes[longest] //= 2
            plan = check_sample.choose(classes, sizes, seed)
            held, small = check_bytes(programs, plan)
            if small <= SAMPLE_BYTES and (limit is None or held + small <= limit):
                return plan
            small += held
        raise self._too_big(need, small, limit, classes, sample)

    def _check_programs(self):
        """(kernel, mode) of every program a check evaluates: the oracle, the typed yardstick,
        and the yardstick without each precision directive (the attribution)."""
        return [(self.zk, "f64"), (self.cast, "typed"),
                *((_cast(without).ops.first, "typed")
                  for _, without in _without_each_directive(self._zk))]

    def _too_big(self, need: int, small: int | None, limit: int | None, classes, sample):
        from zhenwu_cc.runtime.inputs import kernel_span as _kernel_span
        from zhenwu_cc.runtime.units import MAX_HOST_BYTES_ENV
        from zhenwu_cc.runtime.units import format_bytes as _bytes

        if not classes:
            why = ("no sample is possible: every axis of its outputs depends on a whole axis "
                   "of some input (a reduction, a contraction, a mask) in one of its programs")
        elif sample is not None and not any(n > sample for _, n in classes):
            why = f"--check-sample {sample} keeps every axis whole, so it samples nothing"
        else:
            why = f"the smallest sample still needs about {_bytes(small or 0)}"
        fits = _fitting_defines(self, limit)
        shape = (f"check a smaller shape ({' '.join(f'-D {k}={v}' for k, v in fits.items())} "
                 "fits), " if fits else "check a smaller shape (-D NAME=VALUE), ")
        return error("ZK0510", f"the numerics check of kernel `{self.name}` needs about "
                     f"{_bytes(need)} of host memory for its float64 reference, more than the "
                     f"limit of {_bytes(limit or 0)}, and {why}", _kernel_span(self.zk),
                     help=shape + "run without --check, or raise the limit with "
                     f"{MAX_HOST_BYTES_ENV}=<bytes>")

    def compare(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], *,
                max_rel_l2: float | None = None, sample=None):
        """Per-output errors of `outputs` (a run on `inputs`) against the float64 reference of
        the source (the exact math), with the tolerance the program's dtypes and precision
        directives imply (the `cast` program evaluated as typed), and each directive's share of
        the error. `sample` (from `check_plan`) compares only its indices."""
        from zhenwu_cc.core import dtypes
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

        def evaluate(kernel, args, mode):
            if sample is None:
                return reference.evaluate(kernel, args, mode=mode)
            return reference.evaluate(*sample.program(kernel, args), mode=mode)

        oracle = evaluate(self.zk, inputs, "f64")
        typed = evaluate(self.cast, self.kernel_inputs(inputs), "typed")
        blame = {n: [] for n in oracle}
        for directive, without in _without_each_directive(self._zk):
            kernel = _cast(without).ops.first
            rest = evaluate(kernel, host_inputs(kernel, inputs), "typed")
            for n in oracle:
                blame[n].append(check.attribute(directive, typed[n], rest[n], oracle[n]))
        outs = dict(zip(self.zk.names_of_results, self.zk.function_type.outputs.data))
        types = {n: dtypes.from_xdsl(t.element_type).name for n, t in outs.items()}
        differs = _streamed_quantisation(self.module("ppu"))
        if sample is None:
            return [replace(check.compare(n, types[n], outputs[n], oracle[n], typed[n], blame[n],
                                          max_rel_l2=max_rel_l2), typed_differs=differs)
                    for n in oracle]
        said = sample.describe({n: tuple(t.get_shape()) for n, t in outs.items()})
        checks = []
        for n in oracle:
            c = check.compare(n, types[n], sample.output(n, outputs[n]), oracle[n], typed[n],
                              blame[n], max_rel_l2=max_rel_l2, sampled=said.get(n, ""))
            checks.append(replace(c, where=sample.full_index(n, c.where), typed_differs=differs))
        return checks

    # -- cost --
    def cost(self, target: str | None = None):
        """The static cost estimate (a `runtime.cost.model.Estimate`)."""
        name = arg.text("cost()", "target", target) or self.target
        return self.costing(name).estimate

    def costing(self, target: str) -> Costing:
        """The estimate for `target` with what it was made from: the one place a kernel is
        costed (`cost()`, and the CLI's `cost`, `compare`)."""
        from zhenwu_cc.runtime.cost.extract import workload_of
        from zhenwu_cc.runtime.cost.model import estimate
        from zhenwu_cc.core.target import load_target

        target = arg.text("costing()", "target", target, optional=False)
        loaded = load_target(target)  # an unknown target is reported before any lowering
        kernel = self.module("ppu", target).ops.first
        workload = workload_of(kernel)
        return Costing(estimate(workload, loaded), loaded, workload, kernel)


    # -- tuning --
    def tune(self, *, budget: int | None = None, time: float | None = None,
             target: str | None = None, max_rel_error: float | None = None, jobs: int = 1,
             scheduler: str | None = None, seed: int = 0, verify: int = 3,
             sampler: str = "tpe", cache: bool = True, progress: bool = False):
        """Search this kernel's schedules (tile sizes, split-K, split reductions, fusion, L2
        placement, buffers; operand precision only with `max_rel_error`) on the cost model and
        verify the fastest `verify` by running them against the float64 reference at reduced
        shapes (over `max_rel_error`, rel L2 against the exact math, a candidate fails).
        `budget` candidates (default 64) or `time` seconds; `jobs` > 1 costs them on a local
        Dask cluster, `scheduler` ("tcp://HOST:PORT") on an existing one. Returns a
        `tune.TuneResult`: `.ranked`, `.winner`, `.to_dict()`, `.text()`."""
        from zhenwu_cc.tune import positive, tune

        if budget is not None:
            budget = arg.integer("tune()", "budget", budget, 1)
        seconds = positive("tune()", "time", time)
        max_rel_error = positive("tune()", "max_rel_error", max_rel_error)
        return tune(self, target=arg.text("tune()", "target", target), budget=budget,
                    seconds=seconds, max_rel_error=max_rel_error,
                    jobs=arg.integer("tune()", "jobs", jobs, 1),
                    scheduler=arg.text("tune()", "scheduler", scheduler),
                    seed=arg.seed("tune()", seed),
                    verify=arg.integer("tune()", "verify", verify, 0),
                    sampler=arg.text("tune()", "sampler", sampler, optional=False),
                    cache=arg.flag("tune()", "cache", cache),
                    progress=arg.flag("tune()", "progress", progress))


# Start-up: only __init__ is generated (nothing compares, prints or hashes these).
@dataclass(eq=False, repr=False)
class Costing:
    """An estimate and its inputs: the target model, the workload, the ppu kernel."""

    estimate: object
    target: object
    workload: object
    kernel: object


def _schedule_args(what: str, tiles, split_k, buffers):
    """A schedule's tiles, split-K parts and buffers depth as retile() takes them, checked."""
    from zhenwu_cc.frontend.schedules import MAX_BUFFERS

    tiles = {name: arg.integers(what, f"tiles[{name!r}]", sizes)
             for name, sizes in arg.mapping(what, "tiles", tiles, False).items()}
    split_k = {name: arg.integer(what, f"split_k[{name!r}]", n, 1, 1024)
               for name, n in arg.mapping(what, "split_k", split_k).items()}
    if buffers is not None:
        buffers = arg.integer(what, "buffers", buffers, 1, MAX_BUFFERS)
    for name in split_k:
        if name not in tiles:
            raise arg.bad(what, f"split_k[{name!r}]", "given with tile sizes for "
                          f"`{name}` in `tiles`", split_k[name])
    return tiles, split_k, buffers


def _cast(module):
    """A copy of a `zk` module after the `cast` pass."""
    from zhenwu_cc.passes.cast import CastPass
    from zhenwu_cc.pipeline import make_context

    out = module.clone()
    CastPass().apply(make_context(), out)
    return out


def _streamed_quantisation(module) -> str:
    """Where the lowered kernel quantises other than the typed `cast` program, in words: a
    flash-attention grid quantising `scale unit` probabilities block by block ("" if none)."""
    from zhenwu_cc.dialects import ppu

    for launch in module.walk():
        if isinstance(launch, ppu.LaunchOp) and launch.role.data == "attention" and any(
                isinstance(op, ppu.VQuantizeOp) for op in launch.walk()):
            return ("the typed program quantises `scale unit` probabilities exp(s - row max); "
                    "the flash grid quantises exp(s - running max) per key/value block")
    return ""


SAMPLE_BYTES = 1 << 30  # the host memory an automatic sampled check may take at most
SAMPLE_SAVING = 20  # an axis is sampled automatically when halving it saves 1/20 of the memory


def _fitting_defines(k: CompiledKernel, limit: int | None) -> dict[str, int]:
    """Shape parameters at which the full check's reference fits `limit`, found by halving the
    parameters of the source `k` was compiled from: first those that size no reduced or
    contracted axis (batch, heads, rows), largest first, then the others, largest first.
    Rounding error grows with the reduced lengths, so a check at the smaller shape keeps them as
    long as it can. {} when unknown."""
    from zhenwu_cc.core.diagnostics import CompileError
    from zhenwu_cc.frontend import build
    from zhenwu_cc.runtime.host_memory import check_bytes

    if k.source is None or limit is None:
        return {}
    text, kernel = k.source
    original = {n: a.value.data for n, a in k.zk.attributes["params"].data.items()}
    reducing = _sizing_reductions(k, original)
    params = dict(original)
    fixed: set[str] = set()
    for _ in range(64):
        free = [n for n, v in params.items() if v > 1 and n not in fixed]
        if not free:
            return {}
        name = max(free, key=lambda n: (n not in reducing, params[n]))
        trial = {**params, name: params[name] // 2}
        try:
            module = build(text, k.file, trial, kernel)
        except CompileError:
            fixed.add(name)
            continue
        params = trial
        other = CompiledKernel(module, k.file, k.target, k.fuse)
        if sum(check_bytes(other._check_programs(), None)) <= limit:
            return {n: v for n, v in params.items() if v != original[n]}
    return {}


def _sizing_reductions(k: CompiledKernel, params: dict[str, int]) -> set[str]:
    """The shape parameters whose halving changes a reduced or contracted length of the `zk`
    kernel (a matmul's K, a reduction's, softmax's or norm's axis), or that do not compile
    halved: read from the IR, not from the names."""
    from zhenwu_cc.core.diagnostics import CompileError
    from zhenwu_cc.frontend import build

    text, kernel = k.source
    lengths = _reduced_lengths(k.zk)
    out = set()
    for name, value in params.items():
        if value <= 1:
            continue
        try:
            module = build(text, k.file, {**params, name: value // 2}, kernel)
        except CompileError:
            out.add(name)
            continue
        if _reduced_lengths(module.ops.first) != lengths:
            out.add(name)
    return out


def _reduced_lengths(kernel) -> list[tuple[int, ...]]:
    """The lengths each op of a `zk.kernel` reduces or contracts over, in program order."""
    from zhenwu_cc.dialects import zk

    out = []
    for op in kernel.walk():
        if isinstance(op, zk.MatmulOp):
            out.append((op.lhs.type.get_shape()[-1],))
        elif isinstance(op, zk.ReduceOp):
            shape = op.input.type.get_shape()
            out.append(tuple(shape[a] for a in op.axis_list))
        elif isinstance(op, (zk.ArgmaxOp, zk.AxisOp, zk.NormOp)):
            out.append((op.input.type.get_shape()[op.axis.value.data],))
    return out


def _without_each_directive(module):
    """(the directive as written, the module without it) for each name a `precision`
    directive applies to: the sources of the numerics report's attribution."""
    from zhenwu_cc.dialects import zk

    kernel = module.ops.first
    names = [(a.name_hint, i) for i, a in enumerate(kernel.body.block.args)
             if kernel.arg_attr(i, attrs.PRECISION) is not None]
    names += [(op.results[0].name_hint, op) for op in kernel.body.block.ops
              if attrs.PRECISION in op.attributes]
    for name, where in names:
        copy = module.clone()
        k = copy.ops.first
        k.attributes.pop(attrs.ACCUMULATE_MODE, None)  # the reference sums in f32 anyway
        if isinstance(where, int):
            attr = k.arg_attrs.data[where].data[attrs.PRECISION]
            k.arg_attrs = _drop(k.arg_attrs, where, attrs.PRECISION)
        else:
            op = next(o for o, orig in zip(k.body.block.ops, kernel.body.block.ops)
                      if orig is where)
            attr = op.attributes.pop(attrs.PRECISION)
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
            defines: Mapping[str, int] | None = None, target: str | None = None,
            fuse: bool = True) -> CompiledKernel:
    """Compile `.zk` source text, or the `.zk` file at a path, for `target` (default m890);
    `fuse=False` leaves out the `tile` pass's fusions (the unfused baseline, `--no-fuse`)."""
    from zhenwu_cc.frontend import build
    from zhenwu_cc.core.target import default_target
    from zhenwu_cc.sources import read_source

    source_or_path = arg.source("compile()", source_or_path)
    kernel = arg.text("compile()", "kernel", kernel)
    target = arg.text("compile()", "target", target)
    if not isinstance(fuse, bool):  # not `arg.flag`: compiling never needs numpy
        raise arg.bad("compile()", "fuse", "True or False", fuse)
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
    compiled = CompiledKernel(module, file, target or default_target(), fuse)
    compiled.source = (text, kernel)
    return compiled
