"""The `zhenwu-cc` command line: argument parsing, exit codes, and the error boundary.

Only the standard library is imported at start-up; each command imports what it needs, so
`zhenwu-cc check` pays for xDSL and lark but never for the executor or the cost model.

Exit codes: 0 ok, 1 user error (diagnostics), 2 usage error, 3 internal error (reproducer saved).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
RESULT_SCHEMA = "zhenwu-cc.result/1"


class UsageError(Exception):
    """A malformed command line (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """Usage errors raise (exit 2, pointing at this parser's --help); no option abbreviations:
    `--form json` must not be taken for `--format json` by one parser and ignored by another."""

    commands: dict[str, argparse.ArgumentParser] = {}  # the top-level parser's subcommands
    epilog_from: Callable[[], str] | None = None  # help text that is costly to build

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog = self.epilog_from()
        return super().format_help()

    def parse_args(self, args=None, namespace=None):
        """As argparse, but an unknown option is reported by the subcommand it was given to,
        so the message points at that subcommand's --help."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = self.commands.get(getattr(ns, "command", None), self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}\nrun `{self.prog} --help` for usage")


def _define(text: str) -> tuple[str, int]:
    name, eq, value = text.partition("=")
    try:
        if not eq or not name.isidentifier():
            raise ValueError
        return name, int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad -D {text!r}: expected NAME=INTEGER, e.g. -D M=2048") from None


class Output:
    """What a command produced: a JSON payload, text for people, and (for a command that
    finished but found a problem, like a failed numerics check) diagnostics and exit code.
    A plain class, not a dataclass: nothing compares or prints one, and a generated `__init__`
    would be compiled at every start-up."""

    def __init__(self, payload: dict | None = None, text: str = "",
                 diagnostics: list | None = None, code: int = 0):
        self.payload = {} if payload is None else payload
        self.text = text
        self.diagnostics = [] if diagnostics is None else diagnostics
        self.code = code


# ---- shared steps -------------------------------------------------------------------------------
def load_module(args, sources, file: str | None = None):
    """Read, parse and generate the `zk` module that the command line asks for (from `file`
    instead of the command's FILE: `diff` reads two)."""
    from zhenwu_cc.core.diagnostics import error
    from zhenwu_cc.frontend import build
    from zhenwu_cc.sources import read_source

    file = file or args.file
    text = read_source(file)
    sources.add(file, text)
    defines: dict[str, int] = {}
    for name, value in args.define or []:
        if name in defines and defines[name] != value:
            raise error("ZK0002", f"-D {name} is given twice ({defines[name]} and {value})",
                        help="give each shape parameter once")
        defines[name] = value
    return build(text, file, defines, getattr(args, "kernel", None))


def one_kernel(module, file: str):
    """The single kernel a command works on; ZK0004 when the file has several and no --kernel."""
    from zhenwu_cc.core.diagnostics import error

    kernels = list(module.ops)
    if len(kernels) == 1:
        return kernels[0]
    if not kernels:
        raise error("ZK0003", f"{file} defines no kernel", help="add `kernel NAME(...) -> ... {}`")
    names = [k.sym_name.data for k in kernels]
    raise error("ZK0004", f"{file} has {len(names)} kernels ({', '.join(names)}); this command "
                "works on one", help=f"choose one with --kernel, e.g. --kernel {names[0]}")


def write_atomic(path: str, data: bytes) -> None:
    """Write an output file: never half-written, never through a planted symlink, never leaving
    a temporary file behind (zhenwu_cc/outputs.py says how)."""
    from zhenwu_cc.outputs import write_file

    write_file(path, data)


# ---- commands -----------------------------------------------------------------------------------
def cmd_check(args, sources) -> Output:
    from zhenwu_cc.signature import signature, signature_text

    module = load_module(args, sources)
    kernels = [signature(k) for k in module.ops]
    names = ", ".join(k["name"] for k in kernels) or "no kernels"
    return Output({"kernels": kernels}, f"{args.file}: ok ({names})\n"
                  + "".join(f"  {signature_text(k)}\n" for k in kernels))


def instrumentation(args):
    from zhenwu_cc.pipeline import Instrumentation

    return Instrumentation(print_after_all=args.print_ir_after_all,
                           print_after=tuple(args.print_ir_after or ()),
                           tree_dir=args.print_ir_tree_dir, verify_each=args.verify_each,
                           timing=args.timing, print_debuginfo=args.print_debuginfo)


def dump_pipeline(passes) -> None:
    specs = ",".join(str(p.spec(include_default=True)) for p in passes)
    sys.stderr.write(f"Pass Manager with {len(passes)} passes:\nbuiltin.module({specs})\n")


def grid_tiles(module) -> list[dict]:
    """Per grid (`tile.grid` or `ppu.launch`, in order) of each kernel: where it comes from and
    the tiles it runs (`core.attrs.used_tiles`); `[]` before the `tile` pass."""
    from zhenwu_cc.dialects.loc import loc_text
    from zhenwu_cc.core.attrs import used_tiles

    return [{"kernel": k.sym_name.data, "role": op.role.data, "loc": loc_text(op),
             "grid": list(op.grid_shape), "tile": used}
            for k in module.ops for op in k.body.block.ops
            if (used := used_tiles(op)) is not None]


def cmd_compile(args, sources) -> Output:
    from zhenwu_cc.pipeline import (
        default_pipeline,
        format_timing,
        make_context,
        parse_pipeline,
        prepare_instrumentation,
        print_ir,
        run_pipeline,
    )
    from zhenwu_cc.runtime.cost.report import placement_map
    from zhenwu_cc.signature import signature

    module = load_module(args, sources)
    kernels = [signature(k) for k in module.ops]
    if args.pipeline is not None and not args.fuse:
        from zhenwu_cc.core.diagnostics import error

        raise error("ZK0006", "--no-fuse sets an option of the default pipeline, and -p replaces "
                    "that pipeline", help="drop --no-fuse and write `tile{fuse=false}` in the -p "
                    "pipeline")
    spec = (args.pipeline if args.pipeline is not None
            else default_pipeline(args.emit, args.target, args.fuse))
    passes = parse_pipeline(spec)
    inst = instrumentation(args)
    prepare_instrumentation(inst, passes)
    if args.dump_pass_pipeline:
        dump_pipeline(passes)
    run = run_pipeline(make_context(), module, passes, inst)
    if args.timing:
        sys.stderr.write(format_timing(run))
    ir = print_ir(module, args.print_debuginfo)
    payload = {"emit": args.emit, "target": args.target,
               "pipeline": ",".join(str(p.spec(include_default=True)) for p in passes),
               "kernels": kernels,
               "placement": [{"kernel": k.sym_name.data, **row} for k in module.ops
                             for row in placement_map(k)],
               "grids": grid_tiles(module)}
    if args.output:
        write_atomic(args.output, ir.encode())
        payload["output"] = args.output
        return Output(payload, "")
    payload["ir"] = ir
    return Output(payload, ir)


def cmd_opt(args, sources) -> Output:
    from zhenwu_cc.opt import run_opt
    from zhenwu_cc.pipeline import parse_pipeline, prepare_instrumentation
    from zhenwu_cc.sources import read_source

    text = read_source(args.file)  # `-`: standard input, with the same cap and UTF-8 rules
    sources.add(args.file, text)
    passes = parse_pipeline(args.pipeline)
    inst = instrumentation(args)
    prepare_instrumentation(inst, passes)
    if args.dump_pass_pipeline:
        dump_pipeline(passes)
    result = run_opt(text, args.file, args.pipeline, split=args.split_input_file,
                     verify_diagnostics=args.verify_diagnostics, inst=inst,
                     generic=args.print_op_generic, debuginfo=args.print_debuginfo)
    if args.timing:
        sys.stderr.write(result.timing)
    if args.output:
        write_atomic(args.output, result.text.encode())
        return Output({"output": args.output}, "")
    return Output({"ir": result.text}, result.text)


def _format_stat(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def cmd_run(args, sources) -> Output:
    from zhenwu_cc.api import CompiledKernel
    from zhenwu_cc.core import dtypes
    from zhenwu_cc.runtime import reference
    from zhenwu_cc.runtime.check import render
    from zhenwu_cc.runtime.host_memory import ensure_run_memory

    module = load_module(args, sources)
    one_kernel(module, args.file)
    compiled = CompiledKernel(module, args.file, args.target, args.fuse)
    compiled.source = (sources.texts[args.file], args.kernel)
    kernel = compiled.zk
    check = args.check or args.check_sample is not None or args.max_rel_l2 is not None
    file = reference.InputsFile(args.inputs, kernel) if args.inputs else None
    steps = dict(given=file.members if file else (), execute=not args.reference,
                 reference_mode=args.mode if args.reference else None, summary=True,
                 out=bool(args.out), file_bytes=file.nbytes if file else 0)
    ensure_run_memory(compiled, **steps)  # the run itself first (ZK0505), then its check
    sample = compiled.check_plan(args.check_sample, seed=args.seed) if check else None
    if check and sample is None:  # a sampled check's reference is sized by check_plan
        ensure_run_memory(compiled, **steps, check=True)
    given = file.read() if file else {}
    ranges, roles = dict(args.input_range or []), reference.input_roles(kernel)
    inputs = compiled.inputs(given, seed=args.seed, ranges=ranges)
    warnings = _random_warning(kernel, given) if args.inputs else []
    if args.reference:
        reference.ensure_host_memory(kernel, args.mode)
        outputs = reference.evaluate(kernel, inputs, mode=args.mode)
        executor = {"executor": "reference", "mode": args.mode}
    else:
        outputs = compiled.run(inputs)
        executor = {"executor": "ppu", "target": args.target}
    if args.out:
        write_atomic(args.out, reference.npz_bytes(outputs))
    types = {n: dtypes.from_xdsl(t.element_type).name
             for n, t in zip(kernel.names_of_results, kernel.function_type.outputs.data)}
    records, lines = [], []
    for name, value in outputs.items():
        stats = reference.summarize(value)
        records.append({"name": name, "dtype": types[name], "shape": list(value.shape),
                        "storage": str(value.dtype), **stats})
        shape = ", ".join(str(d) for d in value.shape)
        lines.append(f"{name}: {types[name]}[{shape}] " + " ".join(
            f"{k}={_format_stat(stats[k])}" for k in ("min", "max", "mean", "std"))
            + f" nan={stats['nan']} inf={stats['inf']}\n")
    payload = {"kernel": kernel.sym_name.data, **executor, "seed": args.seed,
               "inputs": [_input_record(n, given, ranges, roles) for n in kernel.arg_names],
               "outputs": records}
    if args.out:
        payload["output"] = args.out
    out = Output(payload, "".join(lines), warnings)
    if check:
        from zhenwu_cc.evaluate import numerics_diagnostics

        checks = compiled.compare(inputs, outputs, max_rel_l2=args.max_rel_l2, sample=sample)
        payload["check"] = [c.to_dict() for c in checks]
        out.text += render(checks)
        found = numerics_diagnostics(checks, args.max_rel_l2)
        out.diagnostics += found
        if found:
            out.code = EXIT_USER
    if not args.reference:
        from zhenwu_cc.runtime.cost.report import seconds

        est = compiled.cost()
        payload["cost"] = est.to_dict()
        out.text += (f"estimated on {args.target}: {seconds(est.time)} ({est.bound}-bound); "
                     f"`zhenwu-cc cost` explains it\n")
    return out


def _input_record(name: str, given, ranges, roles) -> dict:
    """How `run` got an input: from the file, or random (with the range or role it was drawn
    by, when not the dtype's default)."""
    if name in given:
        return {"name": name, "source": "file"}
    how = {"range": list(ranges[name])} if name in ranges else (
        {"role": roles[name]} if name in roles else {})
    return {"name": name, "source": "random", **how}


def _random_warning(kernel, given) -> list:
    """A warning (ZK0501) naming the parameters that `--inputs` left to random values."""
    from zhenwu_cc.core.diagnostics import Diagnostic

    missing = [n for n in kernel.arg_names if n not in given]
    if not missing:
        return []
    return [Diagnostic("ZK0501", f"--inputs gives no array for {', '.join(missing)}: "
                       "random values are used", help="add them to the .npz archive, or "
                       "set their range with --input-range NAME=LO:HI", severity="warning")]


def _input_range(text: str) -> tuple[str, tuple[float, float]]:
    name, eq, bounds = text.partition("=")
    lo, colon, hi = bounds.partition(":")
    try:
        if not eq or not colon or not name.isidentifier():
            raise ValueError
        return name, (float(lo), float(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad --input-range {text!r}: expected NAME=LO:HI, e.g. x=0.01:1") from None


def _sample_size(text: str) -> int:
    try:
        value = int(text, 0)
        if value < 1:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad --check-sample {text!r}: expected an integer >= 1") from None


def _budget(text: str) -> float:
    try:
        value = float(text)
        if not value > 0 or value == float("inf"):
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad --max-rel-l2 {text!r}: expected a number > 0, e.g. 0.01") from None


def estimate_for(args, sources, target_name: str):
    """Compile the one kernel of the command line for `target_name` and estimate its cost
    through the API (`CompiledKernel.costing`): (estimate, target, workload, the ppu kernel)."""
    from zhenwu_cc.api import CompiledKernel

    module = load_module(args, sources)
    one_kernel(module, args.file)
    c = CompiledKernel(module, args.file, target_name, args.fuse).costing(target_name)
    return c.estimate, c.target, c.workload, c.kernel


def baseline(compiled, fused_time: float) -> dict:
    """`--baseline`: the kernel costed again without the `tile` pass's fusions, and the fused
    kernel's modeled speedup over it (unfused time / fused time), to six significant digits as
    the cost record's times."""
    from zhenwu_cc.api import CompiledKernel

    unfused = CompiledKernel(compiled.module("zk").clone(), compiled.file, compiled.target, False)
    time = unfused.costing(compiled.target).estimate.time
    return {"fused_time_s": _six(fused_time), "unfused_time_s": _six(time),
            "speedup": _six(time / fused_time)}


def _six(x: float) -> float:
    return float(f"{x:.6g}")


def baseline_text(record: dict) -> str:
    from zhenwu_cc.runtime.cost.report import seconds

    return (f"baseline: {record['speedup']:.2f}× over the unfused kernel (fused "
            f"{seconds(record['fused_time_s'])}, unfused {seconds(record['unfused_time_s'])}, "
            "`--no-fuse`)\n")


def cmd_cost(args, sources) -> Output:
    from zhenwu_cc.runtime.cost import report
    from zhenwu_cc.signature import params_text

    from zhenwu_cc.api import CompiledKernel

    module = load_module(args, sources)
    one_kernel(module, args.file)
    compiled = CompiledKernel(module, args.file, args.target, args.fuse).shared(
        None, verify_once=True)
    costing = compiled.costing(args.target)
    est, target, workload, kernel = (costing.estimate, costing.target, costing.workload,
                                     costing.kernel)
    placement = report.placement_map(kernel)
    params = {k: v.value.data for k, v in kernel.attributes["params"].data.items()}
    payload = {"params": params, "cost": est.to_dict(), "placement": placement}
    if args.baseline:
        payload["baseline"] = baseline(compiled, est.time)
    if args.trace:
        from zhenwu_cc.runtime.cost import trace

        write_atomic(args.trace, trace.dumps(trace.trace(est, target, workload)).encode())
        payload["trace"] = args.trace
    written = f"\ntrace written to {args.trace} (open it in ui.perfetto.dev)\n" \
        if args.trace else ""
    return Output(payload, report.render(est, sources, params_text(params))
                  + report.render_placement(placement)
                  + (baseline_text(payload["baseline"]) if args.baseline else "") + written)


def cmd_eval(args, sources) -> Output:
    """One record for an agent's step: diagnostics, numerics, cost, tiles, hints."""
    from zhenwu_cc.api import CompiledKernel
    from zhenwu_cc.evaluate import evaluate

    module = load_module(args, sources)
    one_kernel(module, args.file)
    compiled = CompiledKernel(module, args.file, args.target, args.fuse).shared(
        None, verify_once=True)
    compiled.source = (sources.texts[args.file], args.kernel)
    result = evaluate(compiled, check=args.check, seed=args.seed, sample=args.check_sample,
                      max_rel_l2=args.max_rel_l2, with_hints=args.hints)
    text = result.text
    if args.baseline:
        result.record["baseline"] = baseline(compiled, compiled.cost().time)
        text += baseline_text(result.record["baseline"])
    return Output(result.record, text, result.diagnostics,
                  EXIT_USER if result.failed else EXIT_OK)


def cmd_diff(args, sources) -> Output:
    """OLD and NEW costed on one target with the same -D, side by side, with why."""
    from zhenwu_cc.api import CompiledKernel
    from zhenwu_cc.costdiff import Side, diff, render

    sides = []
    for file in (args.old, args.new):
        module = load_module(args, sources, file)
        one_kernel(module, file)
        compiled = CompiledKernel(module, file, args.target, args.fuse)
        sides.append(Side(file, sources.texts[file], compiled.costing(args.target),
                          tuple(compiled.zk.arg_names), tuple(compiled.zk.names_of_results)))
    record = diff(*sides)
    return Output(record, render(record))


def cmd_tune(args, sources) -> Output:
    """Search the kernel's schedules on the cost model, verify the best, print a leaderboard;
    `--write` puts the winner into the file's schedule block."""
    from zhenwu_cc.api import CompiledKernel
    from zhenwu_cc.core.diagnostics import Diagnostic
    from zhenwu_cc.runtime.inputs import kernel_span
    from zhenwu_cc.tune import tune, write_winner

    module = load_module(args, sources)
    one_kernel(module, args.file)
    compiled = CompiledKernel(module, args.file, args.target)
    compiled.source = (sources.texts[args.file], args.kernel)
    result = tune(compiled, budget=args.budget, seconds=args.time,
                  max_rel_error=args.max_rel_error, jobs=args.jobs, scheduler=args.scheduler,
                  seed=args.seed, verify=args.verify, sampler=args.sampler, cache=args.cache,
                  progress=args.format == "text")
    out = Output(result.to_dict(args.top), result.text(args.top))
    out.payload["written"] = None
    best = result.ranked[0] if result.ranked else None
    if result.winner is None and best is not None and best.time < result.default_time:
        out.diagnostics.append(Diagnostic(
            "ZK1205", f"none of the {len(result.verified)} fastest candidates that were verified "
            f"passed the numerics check, so there is no winner" + (
                "; the file was not changed" if args.write else ""),
            kernel_span(compiled.zk), severity="error" if args.write else "warning",
            help="see `verification failed` in the leaderboard; loosen --max-rel-error if the "
            "budget is stricter than the kernel needs, or verify more with --verify N"))
        out.code = EXIT_USER if args.write else EXIT_OK
    elif args.write and result.winner is not None:
        write_winner(result, args.file, sources.texts[args.file])
        out.payload["written"] = args.file
        out.text += f"written: the winning schedule is in {args.file}\n"
    elif args.write:
        out.text += "nothing written: the schedule as written is the fastest found\n"
    return out


def cmd_serve(args, sources) -> Output:
    """JSON lines on stdin and stdout until the end of the input (zhenwu_cc/serve.py)."""
    from zhenwu_cc.serve import serve

    return Output(code=serve())


# Codes that say a kernel does not fit one target (SRAM, HBM, L2, HBM stacks): `compare` shows
# them as that target's row; any other error is the kernel's or the command line's and fails.
DOES_NOT_FIT = ("ZK0601", "ZK0604", "ZK0901", "ZK0902", "ZK0903", "ZK0904")


def cmd_compare(args, sources) -> Output:
    from zhenwu_cc.core.diagnostics import CompileError
    from zhenwu_cc.runtime.cost import report

    rows, misfits = [], []
    for name in [t for t in args.targets.split(",") if t]:
        try:
            est = estimate_for(args, sources, name)[0]
        except CompileError as exc:
            diag = exc.diagnostics[0]
            if diag.code not in DOES_NOT_FIT:
                raise
            misfits.append(diag)
            rows.append({"target": name, "fits": False, "time_s": None, "bound": None,
                         "tflops": None, "peak_fraction": None, "notes": diag.message,
                         "diagnostic": diag.to_dict()})
            continue
        dts = sorted(est.flops_by_dtype)
        flags = [f"{dt} {est.dtype_support[dt]['support']}" for dt in sorted(est.dtype_support)
                 if est.dtype_support[dt]["support"] != "native"]
        rows.append({"target": name, "fits": True, "time_s": est.time, "bound": est.bound,
                     "tflops": sum(est.achieved_flops.get(d, 0.0) for d in dts) / 1e12
                     if dts else None,
                     "peak_fraction": max((est.peak_fraction.get(d, 0.0) for d in dts),
                                          default=None),
                     "notes": "; ".join(flags), "diagnostic": None})
    if rows and len(misfits) == len(rows):
        raise CompileError(misfits)
    return Output({"comparison": rows}, report.render_comparison(rows))


COMMANDS: dict[str, Callable] = {"check": cmd_check, "compile": cmd_compile, "opt": cmd_opt,
                                 "run": cmd_run, "cost": cmd_cost, "compare": cmd_compare,
                                 "eval": cmd_eval, "diff": cmd_diff, "tune": cmd_tune,
                                 "serve": cmd_serve}
# A command's own record schema (its record is the result envelope and more).
SCHEMAS = {"eval": "zhenwu-cc.eval/1", "diff": "zhenwu-cc.diff/1", "tune": "zhenwu-cc.tune/1"}


def _add_target_arg(p: argparse.ArgumentParser) -> None:
    """`--target`; its default is filled in after parsing (`_default_target`), so that building
    the parser does not import the target model (`check` never needs it)."""
    p.add_argument("--target", default=None,
                   help="chip model: m890 (default), 810e, h20, h100, h200, or a .toml file "
                   "(default from $ZHENWU_TARGET)")


def _add_fuse_arg(p) -> None:
    """`--no-fuse`: compile without the `tile` pass's fusions (the unfused baseline)."""
    p.add_argument("--no-fuse", dest="fuse", action="store_false",
                          help="compile without the tile pass's fusions (flash attention, fused "
                          "operand chains): the unfused baseline")


def _add_baseline_args(p: argparse.ArgumentParser) -> None:
    """`--no-fuse`, or `--baseline`: the fused kernel's modeled speedup over the unfused one."""
    group = p.add_mutually_exclusive_group()
    _add_fuse_arg(group)
    group.add_argument("--baseline", action="store_true",
                       help="also cost the kernel with --no-fuse and print the fused kernel's "
                       "modeled speedup over it")


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    """mlir-opt's instrumentation flags, shared by `compile` and `opt`."""
    p.add_argument("--print-ir-after-all", action="store_true",
                   help="print the IR after every pass (to stderr)")
    p.add_argument("--print-ir-after", action="append", metavar="PASS",
                   help="print the IR after this pass (repeatable)")
    p.add_argument("--print-ir-tree-dir", metavar="DIR", type=_out_path,
                   help="write the IR after each pass to DIR/NN_pass.mlir, headed by the pass")
    p.add_argument("--verify-each", action=argparse.BooleanOptionalAction, default=True,
                   help="verify the IR after every pass (default: on)")
    p.add_argument("--timing", action="store_true", help="print time per pass (to stderr)")
    p.add_argument("--dump-pass-pipeline", action="store_true",
                   help="print the pass pipeline that will run (to stderr)")
    p.add_argument("--print-debuginfo", action="store_true",
                   help="print source locations (loc(...)) on every op")


def _add_source_args(p: argparse.ArgumentParser, kernel_help: str) -> None:
    p.add_argument("file", help="the .zk source file")
    p.add_argument("-D", dest="define", action="append", type=_define, metavar="NAME=VALUE",
                   help="set a shape parameter (repeatable), e.g. -D M=2048")
    p.add_argument("--kernel", help=kernel_help)
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text for people, json for programs (one document on stdout)")


def _out_path(text: str) -> str:
    """An output path: an empty one is a mistake (a shell variable that was not set), not
    "no output"."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path: give a file name")
    return text


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --seed {text!r}: expected an integer >= 0") from None


def _number(flag: str, kind: type, lo: float, example: str):
    """An argparse type: a `kind` number >= `lo` (finite), named by `flag` when it is not."""
    def parse(text: str):
        try:
            value = kind(text) if kind is float else int(text, 0)
            if value < lo or value != value or value == float("inf"):
                raise ValueError
            return value
        except ValueError:
            want = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"bad {flag} {text!r}: expected {want} >= {lo:g}, e.g. {flag} {example}") from None
    return parse


def _passes_help() -> str:
    """`opt --help`'s list of passes and default pipelines, from the registry and
    zhenwu_cc/pipeline.py (so it cannot drift; imported only when the help is shown)."""
    import dataclasses

    from zhenwu_cc.passes.registry import get_passes
    from zhenwu_cc.pipeline import default_pipeline

    lines = ['passes (-p; options in braces, e.g. tile{target="h100"}):']
    for name, load in sorted(get_passes().items()):
        cls = load()
        doc = (cls.__doc__ or "").strip().splitlines() or ["(from xDSL)"]
        options = ", ".join(f.name for f in dataclasses.fields(cls))
        lines.append(f"  {name:<13} {doc[0]}" + (f" {{{options}}}" if options else ""))
    lines += ["", "default pipelines (what `compile --emit STAGE` runs, here for m890):"]
    lines += [f"  {stage}: {default_pipeline(stage)}" for stage in ("tile", "ppu")]
    return "\n".join(lines)


class _Unused:
    """Where the arguments of a subcommand that is not being run go (`build_parser`)."""

    def add_argument(self, *args, **kwargs) -> None:
        pass

    def add_mutually_exclusive_group(self) -> _Unused:
        return self


def _command(sub, name: str, only: str | None, **kwargs):
    """Subcommand `name` and where its arguments go: the subcommand itself, or nowhere when the
    command line starts with another command (`only`). Then `name` is not built at all: only
    the top-level help and an unknown command's error list every subcommand, and a command line
    that starts with a command gets neither."""
    return sub.add_parser(name, **kwargs) if only in (None, name) else _Unused()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser; given `argv` that starts with a command, only that subcommand is
    built (building every subcommand is ~5% of `check`'s start-up, and each parser asks gettext
    for its help texts)."""
    from zhenwu_cc import __version__

    parser = _Parser(prog="zhenwu-cc", description="Compile, run and cost .zk kernels for the "
                     "Zhenwu M890 accelerator model.")
    parser.add_argument("--version", action="version", version=f"zhenwu-cc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    parser.commands = sub.choices
    only = argv[0] if argv and argv[0] in COMMANDS else None

    p = _command(sub, "check", only, help="parse and verify only")
    _add_source_args(p, "check only this kernel")

    p = _command(sub, "compile", only, help="compile and print (or write) the IR")
    _add_source_args(p, "compile only this kernel")
    p.add_argument("--emit", choices=("zk", "tile", "ppu"), default="ppu",
                   help="the stage to print: zk (as written), tile (grids), ppu (the machine)")
    _add_target_arg(p)
    _add_fuse_arg(p)
    p.add_argument("-o", dest="output", metavar="OUT", type=_out_path,
                   help="write the IR here (atomically)")
    p.add_argument("-p", "--pass-pipeline", dest="pipeline", default=None,
                   help="run these passes instead of the default pipeline for --emit")
    _add_pipeline_args(p)

    p = _command(sub, "cost", only, help="estimate time on a chip model, and why")
    _add_source_args(p, "the kernel to cost (when the file has several)")
    _add_target_arg(p)
    _add_baseline_args(p)
    p.add_argument("--trace", metavar="OUT.json", type=_out_path,
                   help="write a Chrome trace (open it in Perfetto: ui.perfetto.dev)")

    p = _command(sub, "eval", only, help="one record for an agent: diagnostics, numerics, "
                 "cost, tiles and hints with schedule edits")
    _add_source_args(p, "the kernel to evaluate (when the file has several)")
    _add_target_arg(p)
    _add_baseline_args(p)
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="run the numerics check as `run --check` does (default: on)")
    p.add_argument("--check-sample", type=_sample_size, metavar="N",
                   help="check N seeded indices along each independent axis")
    p.add_argument("--max-rel-l2", type=_budget, metavar="X",
                   help="fail an output whose rel L2 error against the exact math exceeds X; "
                   "also the budget a precision hint (ZKH05) must meet (default 0.01)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--hints", action=argparse.BooleanOptionalAction, default=True,
                   help="compute hints (each proposed edit is compiled and costed; default: on)")

    p = _command(sub, "diff", only, help="two kernels' estimated costs side by side: the "
                 "terms that changed and why")
    p.add_argument("old", help="the .zk source before")
    p.add_argument("new", help="the .zk source after")
    p.add_argument("-D", dest="define", action="append", type=_define, metavar="NAME=VALUE",
                   help="set a shape parameter of both (repeatable)")
    p.add_argument("--kernel", help="the kernel to compare (when the files have several)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text for people, json for programs (one document on stdout)")
    _add_target_arg(p)
    _add_fuse_arg(p)

    p = _command(sub, "tune", only, help="search the kernel's schedules on the cost model, "
                 "verify the best against the float64 reference, print a leaderboard")
    _add_source_args(p, "the kernel to tune (when the file has several)")
    _add_target_arg(p)
    p.add_argument("--budget", type=_number("--budget", int, 1, "200"), metavar="N",
                   help="candidates to compile and cost (default 64; a space this small or "
                   "smaller is searched exhaustively)")
    p.add_argument("--time", type=_number("--time", float, 1e-3, "60"), metavar="S",
                   help="stop after S seconds (the leaderboard then depends on the machine)")
    p.add_argument("--max-rel-error", type=_number("--max-rel-error", float, 1e-300, "0.01"),
                   metavar="E", help="fail a verified candidate whose rel L2 error against the "
                   "exact math exceeds E (default: the dtype-aware check only); with it, "
                   "matmul operand precision (bf16, FP8) is searched too")
    p.add_argument("--jobs", type=_number("--jobs", int, 1, "4"), default=1, metavar="J",
                   help="cost and verify on a local Dask cluster of J worker processes")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="cost and verify on the Dask cluster at tcp://HOST:PORT")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the sampler and of the verification's inputs (default 0)")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe",
                   help="Optuna sampler for spaces larger than the budget (default tpe)")
    p.add_argument("--top", type=_number("--top", int, 1, "5"), default=10, metavar="K",
                   help="leaderboard rows to show (default 10)")
    p.add_argument("--verify", type=_number("--verify", int, 0, "3"), default=3, metavar="N",
                   help="candidates to verify, the fastest first (default 3; 0: none)")
    p.add_argument("--write", action="store_true",
                   help="put the winning directives into the file's schedule block")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse costs and verifications from $ZHENWU_CACHE_DIR (default: on)")

    _command(sub, "serve", only, help="answer JSON-lines requests (check, eval, cost, diff) on "
             "stdin and stdout, paying start-up once (docs/cli.md)")

    p = _command(sub, "compare", only, help="the same kernel's estimated cost on several chips")
    _add_source_args(p, "the kernel to compare (when the file has several)")
    p.add_argument("--targets", default="m890,h20,810e,h100,h200",
                   help="comma-separated targets (default: m890,h20,810e,h100,h200)")
    _add_fuse_arg(p)

    p = _command(sub, "opt", only, help="run a pass pipeline on MLIR text (like mlir-opt)",
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    p.epilog_from = _passes_help
    p.add_argument("file", help="an .mlir file, or - for stdin")
    p.add_argument("-p", "--pass-pipeline", dest="pipeline", default="",
                   help="passes in xDSL's textual syntax, e.g. 'decompose,tile,cse'")
    p.add_argument("-o", dest="output", metavar="OUT", type=_out_path,
                   help="write the IR here (atomically)")
    p.add_argument("--split-input-file", action="store_true",
                   help="run each chunk separated by a `// -----` line on its own")
    p.add_argument("--verify-diagnostics", action="store_true",
                   help="print diagnostics to stdout and exit 0 (for filecheck tests)")
    p.add_argument("--print-op-generic", action="store_true", help="print the generic op form")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_pipeline_args(p)

    p = _command(sub, "run", only, help="run a kernel on the CPU and summarise its outputs")
    _add_source_args(p, "run this kernel (needed when the file has several)")
    p.add_argument("--reference", action="store_true",
                   help="evaluate the source with the numpy reference evaluator instead of "
                   "executing the lowered ppu program")
    p.add_argument("--mode", choices=("f64", "typed"), default="f64",
                   help="with --reference: f64 (exact math) or typed (each op rounded to its "
                   "dtype)")
    p.add_argument("--check", action="store_true",
                   help="compare every output with the float64 reference (exit 1 if an output "
                   "is further off than its dtypes explain, or if the comparison cannot tell)")
    p.add_argument("--check-sample", type=_sample_size, metavar="N",
                   help="check N seeded indices along each axis the outputs are independent "
                   "along (implies --check; chosen automatically when the full reference "
                   "would not fit host memory)")
    p.add_argument("--max-rel-l2", type=_budget, metavar="X",
                   help="also fail an output whose relative L2 error against the exact math "
                   "exceeds X (implies --check)")
    _add_target_arg(p)
    p.add_argument("--inputs", metavar="IN.npz",
                   help="arrays by parameter name; parameters not given are random (warning)")
    p.add_argument("--input-range", action="append", type=_input_range, metavar="NAME=LO:HI",
                   help="draw the random values of parameter NAME from [LO, HI) (repeatable)")
    p.add_argument("--out", metavar="OUT.npz", type=_out_path,
                   help="write the outputs by result name (atomically)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs (default 0)")
    _add_fuse_arg(p)
    return parser


def _default_target(args) -> None:
    """Give `--target` its default ($ZHENWU_TARGET, else m890) where the command takes one."""
    if getattr(args, "target", "") is None:
        from zhenwu_cc.core.target import default_target

        args.target = default_target()


# ---- the error boundary ---------------------------------------------------------------------------
def _wants_json(argv: Sequence[str]) -> bool:
    return any(a == "--format=json" for a in argv) or any(
        a == "--format" and b == "json" for a, b in zip(argv, argv[1:]))


def _emit(fmt: str, command: str | None, code: int, out: Output | None, diags, sources,
          message: str | None = None) -> None:
    if fmt == "json":
        import json  # here: text output, the usual case, never loads it

        doc = {"schema": SCHEMAS.get(command, RESULT_SCHEMA), "command": command,
               "ok": code == EXIT_OK, "exit_code": code,
               "diagnostics": [d.to_dict() for d in diags]}
        if message:
            doc["message"] = message
        if out is not None:
            doc.update(out.payload)
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        return
    if out is not None and out.text:
        sys.stdout.write(out.text)
    if diags:
        from zhenwu_cc.core.diagnostics import render_text

        sys.stderr.write("\n".join(render_text(d, sources) for d in diags) + "\n")
    if message:
        sys.stderr.write(message + "\n")


REPRODUCER_INPUT_CAP = 16 << 20  # bytes: a larger input is listed in command.json, not copied


def _inputs(args) -> list[str]:
    """The files a command reads: the source, `--inputs`, target files (a path, as
    `load_target` tells a file from a name)."""
    targets = [getattr(args, "target", None), *(getattr(args, "targets", None) or "").split(",")]
    files = [getattr(args, "file", None), getattr(args, "old", None), getattr(args, "new", None),
             getattr(args, "inputs", None),
             *(t for t in targets if t and ("/" in t or t.endswith(".toml")))]
    return [f for f in files if f and f != "-"]


OUTPUT_FLAGS = {"output": "-o", "out": "--out", "trace": "--trace"}  # dest -> flag


def _outputs(args) -> dict[str, str]:
    return {flag: getattr(args, dest) for dest, flag in OUTPUT_FLAGS.items()
            if getattr(args, dest, None)}


def _copy_input(src: str, directory: str, taken: set) -> dict:
    """Copy one input file into a reproducer directory: its command.json record."""
    from zhenwu_cc.outputs import create_exclusive

    record: dict = {"path": src, "copy": None}
    if not os.path.isfile(src):  # a FIFO or a device: reading it would consume or block
        record["not_copied"] = "not a regular file"
        return record
    try:
        with open(src, "rb") as f:
            data = f.read(REPRODUCER_INPUT_CAP + 1)
    except OSError as err:
        record["not_copied"] = err.strerror or str(err)
        return record
    if len(data) > REPRODUCER_INPUT_CAP:
        record["not_copied"] = f"larger than {REPRODUCER_INPUT_CAP} bytes"
        return record
    name = os.path.basename(src) or "input"
    if name in taken or name in ("command.json", "traceback.txt"):
        name = f"{len(taken)}-{name}"
    create_exclusive(os.path.join(directory, name), data)
    record["copy"] = name
    return record


def _save_reproducer(argv: Sequence[str], exc: BaseException, inputs: Sequence[str]) -> str:
    """Keep what is needed to replay an internal error: the command, a copy of each input file
    (up to REPRODUCER_INPUT_CAP), and the traceback, in a new private directory (mkdtemp: mode
    0700, a fresh name, so nothing planted in a shared temp dir is followed or reused)."""
    import hashlib
    import json
    import tempfile
    import traceback

    from zhenwu_cc.outputs import create_exclusive

    tb = "".join(traceback.format_exception(exc))
    key = hashlib.sha256((" ".join(argv) + tb).encode()).hexdigest()[:12]
    base = os.environ.get("ZHENWU_REPRODUCER_DIR") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"zhenwu-cc-crash-{key}-", dir=base)
    copies: list[dict] = []
    for src in dict.fromkeys(inputs):
        copies.append(_copy_input(src, path, {c["copy"] for c in copies}))
    command = {"argv": ["zhenwu-cc", *argv], "cwd": os.getcwd(), "inputs": copies}
    create_exclusive(os.path.join(path, "command.json"), json.dumps(command, indent=2).encode())
    create_exclusive(os.path.join(path, "traceback.txt"), tb.encode())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fmt = "json" if _wants_json(argv) else "text"
    from zhenwu_cc.core.diagnostics import CompileError, SourceMap
    from zhenwu_cc.outputs import refuse_overwriting_inputs, signals_as_exceptions

    sources = SourceMap()
    command = None
    args = None
    try:
        with signals_as_exceptions():
            args = build_parser(argv).parse_args(argv)
            command = args.command
            _default_target(args)
            refuse_overwriting_inputs(_outputs(args), _inputs(args))
            out = COMMANDS[command](args, sources)
        _emit(fmt, command, out.code, out, out.diagnostics, sources)
        return out.code
    except UsageError as exc:
        _emit(fmt, command, EXIT_USAGE, None, [], sources, str(exc))
        return EXIT_USAGE
    except CompileError as exc:
        _emit(fmt, command, EXIT_USER, None, exc.diagnostics, sources)
        return EXIT_USER
    except KeyboardInterrupt as exc:  # Ctrl-C, or a signal (outputs.Interrupted)
        return 128 + getattr(exc, "signum", 2)
    except SystemExit as exc:  # --help and --version exit through argparse
        return int(exc.code or 0)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the CLI boundary: an internal error becomes exit 3
        try:
            saved = ("Please report it with the reproducer saved in "
                     + _save_reproducer(argv, exc, _inputs(args) if args else []))
        except OSError as err:
            saved = f"Saving a reproducer failed ({err}); please report the command line"
        _emit(fmt, command, EXIT_INTERNAL, None, [], sources,
              f"internal compiler error: {type(exc).__name__}: {exc}\n"
              f"This is a bug in zhenwu-cc. {saved}")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
