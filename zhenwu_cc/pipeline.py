"""The pass manager: default pipelines per stage, textual pipelines, and IR instrumentation.

Pipelines use xDSL's textual syntax with our short pass names (`decompose,tile{...},cse`).
Instrumentation follows mlir-opt: --print-ir-after-all, --print-ir-after=PASS,
--print-ir-tree-dir=DIR (one numbered file per pass, headed by the pass with its options),
--verify-each (on by default) and --timing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import cache
from typing import TextIO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass, PassPipeline
from xdsl.utils.exceptions import VerifyException

from zhenwu_cc.core.diagnostics import did_you_mean, error
from zhenwu_cc.outputs import prepare_directory, write_file
from zhenwu_cc.core.target import DEFAULT_TARGET

STAGES = ("zk", "tile", "ppu")


def default_pipeline(stage: str, target: str = DEFAULT_TARGET, fuse: bool = True) -> str:
    """The passes that take a freshly generated `zk` module to `stage` for `target` (`fuse`
    false: the `tile` pass without its fusions, the unfused baseline)."""
    t = "{target=" + json.dumps(target) + "}"
    to_tile = f"decompose,cast,tile{t[:-1]}{'' if fuse else ' fuse=false'}}},canonicalize,cse"
    to_ppu = f"{to_tile},place-hbm{t},alloc-sram{t},lower-ppu{t},canonicalize,cse"
    return {"zk": "", "tile": to_tile, "ppu": to_ppu}[stage]


def _dialect(module: str, name: str):
    def load():
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


DIALECTS = {
    "arith": _dialect("xdsl.dialects.arith", "Arith"),
    "zk": _dialect("zhenwu_cc.dialects.zk", "ZK"),
    "tile": _dialect("zhenwu_cc.dialects.tile", "TILE"),
    "ppu": _dialect("zhenwu_cc.dialects.ppu", "PPU"),
}


def make_context() -> Context:
    """A context that knows builtin, arith (index math) and our dialects, loaded lazily."""
    from xdsl.dialects.builtin import Builtin

    ctx = Context()
    ctx.load_dialect(Builtin)
    for name, factory in DIALECTS.items():
        ctx.register_dialect(name, factory)
    return ctx


# Start-up: only __init__ is generated for these three (nothing compares, prints or hashes them).
@dataclass(eq=False, repr=False)
class Instrumentation:
    """What to show while a pipeline runs (all off except verification)."""

    print_after_all: bool = False
    print_after: tuple[str, ...] = ()
    tree_dir: str | None = None
    verify_each: bool = True
    timing: bool = False
    print_debuginfo: bool = False
    stream: TextIO | None = None  # where --print-ir-after* goes (stderr, as in mlir-opt)


@dataclass(eq=False, repr=False)
class PassTiming:
    """Seconds one pass took (`--timing`)."""

    name: str
    seconds: float


@dataclass(eq=False, repr=False)
class PipelineRun:
    """The passes a pipeline ran and, with `--timing`, their times."""

    passes: tuple[ModulePass, ...]
    timings: list[PassTiming] = field(default_factory=list)


def parse_pipeline(spec: str) -> tuple[ModulePass, ...]:
    """Textual pipeline -> pass instances; unknown passes and bad options are ZK0006."""
    from xdsl.utils.exceptions import ArgSpecParseError

    from zhenwu_cc.passes.registry import get_passes

    available = get_passes()
    spec = spec.strip()
    if spec.startswith("builtin.module(") and spec.endswith(")"):
        spec = spec[len("builtin.module("):-1]
    if not spec:
        return ()
    try:
        pipeline = PassPipeline.parse_spec(available, spec)
    except ArgSpecParseError as exc:
        raise error("ZK0006", f"cannot parse the pass pipeline {spec!r}: {exc}") from None
    except ValueError as exc:
        message = str(exc)
        names = [n for n in _names_in(spec) if n not in available]
        if names:
            guess = did_you_mean(names[0], available)
            raise error("ZK0006", f"unknown pass `{names[0]}`", help=(
                f"did you mean `{guess}`? " if guess else "")
                + "passes: " + ", ".join(sorted(available))) from None
        raise error("ZK0006", f"bad pass pipeline {spec!r}: {message}") from None
    return pipeline.passes


def _names_in(spec: str) -> list[str]:
    from xdsl.utils.arg_spec import parse_pipeline as parse_specs

    return [s.name for s in parse_specs(spec)]


def print_ir(op, debuginfo: bool = False) -> str:
    """An op (a module, a kernel) as IR text, with a closing newline."""
    import io

    from xdsl.printer import Printer

    buf = io.StringIO()
    Printer(stream=buf, print_debuginfo=debuginfo).print_op(op)
    return buf.getvalue() + "\n"


def verify(module: ModuleOp, after: str) -> None:
    """Verify the module; a failure after a pass is a compiler bug unless the input was IR."""
    try:
        module.verify()
    except VerifyException as exc:
        raise VerificationFailed(after, exc) from exc


class VerificationFailed(Exception):
    """The IR did not verify after `after` (a pass, or "parsing")."""

    def __init__(self, after: str, cause: VerifyException):
        self.after = after
        self.cause = cause
        super().__init__(f"IR does not verify after {after}: {cause}")


def prepare_instrumentation(inst: Instrumentation, passes: tuple[ModulePass, ...]) -> None:
    """Refuse, before any pass runs, instrumentation that would silently do nothing or write
    where it must not: --print-ir-after naming a pass this pipeline does not run (ZK0006), a bad
    --print-ir-tree-dir (ZK0008; its last directory is created here)."""
    from zhenwu_cc.passes.registry import get_passes

    names = list(dict.fromkeys(p.name for p in passes))
    for name in inst.print_after:
        if name in names:
            continue
        running = "passes in this pipeline: " + (", ".join(names) or "none")
        if name not in get_passes():
            guess = did_you_mean(name, get_passes())
            raise error("ZK0006", f"--print-ir-after {name}: unknown pass `{name}`",
                        help=(f"did you mean `{guess}`? " if guess else "") + running)
        raise error("ZK0006", f"--print-ir-after {name}: this pipeline does not run `{name}`, "
                    "so nothing would be printed", help=running)
    if inst.tree_dir:
        prepare_directory(inst.tree_dir)


def run_pipeline(ctx: Context, module: ModuleOp, passes: tuple[ModulePass, ...],
                 inst: Instrumentation | None = None) -> PipelineRun:
    """Apply `passes` to `module` in place, with the requested instrumentation."""
    inst = inst or Instrumentation()
    run = PipelineRun(passes)
    prepare_instrumentation(inst, passes)
    for index, p in enumerate(passes, start=1):
        start = time.perf_counter()
        p.apply(ctx, module)
        run.timings.append(PassTiming(p.name, time.perf_counter() - start))
        if inst.verify_each:
            verify(module, f"pass `{p.name}`")
        header = f"// -----// IR after {p.name} ({p.spec(include_default=True)}) //----- //\n"
        if inst.print_after_all or p.name in inst.print_after:
            (inst.stream or _stderr()).write(header + print_ir(module, inst.print_debuginfo))
        if inst.tree_dir:
            path = os.path.join(inst.tree_dir, f"{index:02d}_{p.name}.mlir")
            write_file(path, (header + print_ir(module, True)).encode())
    return run


def format_timing(run: PipelineRun) -> str:
    total = sum(t.seconds for t in run.timings) or 1e-12
    lines = ["===-------------------------------------------------------------------------===",
             "                         ... Pass execution timing report ...",
             "===-------------------------------------------------------------------------===",
             f"  Total Execution Time: {total:.4f} seconds", "",
             "  ----Wall Time----  ----Name----"]
    for t in run.timings:
        lines.append(f"  {t.seconds:.4f} ({100 * t.seconds / total:5.1f}%)  {t.name}")
    lines.append(f"  {total:.4f} (100.0%)  Total")
    return "\n".join(lines) + "\n"


def _stderr() -> TextIO:
    import sys

    return sys.stderr


def lower(module: ModuleOp, stage: str, target: str = DEFAULT_TARGET,
          inst: Instrumentation | None = None, ctx: Context | None = None,
          fuse: bool = True) -> PipelineRun:
    """Take a freshly generated `zk` module to `stage` with the default pipeline."""
    return run_pipeline(ctx or make_context(), module, _default_passes(stage, target, fuse), inst)


@cache
def _default_passes(stage: str, target: str, fuse: bool = True) -> tuple[ModulePass, ...]:
    """Parsed once per process: passes are immutable, and parsing their options is not free."""
    return parse_pipeline(default_pipeline(stage, target, fuse))
