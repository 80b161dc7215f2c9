"""The `zhenwu-cc` command line: argument parsing, exit codes, and the error boundary.

Only the standard library is imported at start-up; each command imports what it needs, so
`zhenwu-cc check` pays for xDSL and lark but never for the executor or the cost model.

Exit codes: 0 ok, 1 user error (diagnostics), 2 usage error, 3 internal error (reproducer saved).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
RESULT_SCHEMA = "zhenwu-cc.result/1"


class UsageError(Exception):
    """A malformed command line (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def _define(text: str) -> tuple[str, int]:
    name, eq, value = text.partition("=")
    try:
        if not eq or not name.isidentifier():
            raise ValueError
        return name, int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad -D {text!r}: expected NAME=INTEGER, e.g. -D M=2048") from None


@dataclass
class Output:
    """What a command produced: a JSON payload, text for people, and (for a command that
    finished but found a problem, like a failed numerics check) diagnostics and exit code."""

    payload: dict = field(default_factory=dict)
    text: str = ""
    diagnostics: list = field(default_factory=list)
    code: int = 0


# ---- shared steps -------------------------------------------------------------------------------
def read_source(path: str) -> str:
    from zhenwu_cc.diagnostics import error

    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error("ZK0001", f"cannot read {path}: {reason}") from None


def load_module(args, sources):
    """Read, parse and generate the `zk` module that the command line asks for."""
    from zhenwu_cc.diagnostics import error
    from zhenwu_cc.frontend import build

    text = read_source(args.file)
    sources.add(args.file, text)
    defines: dict[str, int] = {}
    for name, value in args.define or []:
        if name in defines and defines[name] != value:
            raise error("ZK0002", f"-D {name} is given twice ({defines[name]} and {value})",
                        help="give each shape parameter once")
        defines[name] = value
    return build(text, args.file, defines, getattr(args, "kernel", None))


def one_kernel(module, file: str):
    """The single kernel a command works on; ZK0004 when the file has several and no --kernel."""
    from zhenwu_cc.diagnostics import error

    kernels = list(module.ops)
    if len(kernels) == 1:
        return kernels[0]
    if not kernels:
        raise error("ZK0003", f"{file} defines no kernel", help="add `kernel NAME(...) -> ... {}`")
    names = [k.sym_name.data for k in kernels]
    raise error("ZK0004", f"{file} has {len(names)} kernels ({', '.join(names)}); this command "
                "works on one", help=f"choose one with --kernel, e.g. --kernel {names[0]}")


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and rename: never a half-written output."""
    from zhenwu_cc.diagnostics import error

    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise error("ZK0005", f"cannot write {path}: {exc.strerror or exc}") from None


def signature(kernel) -> dict:
    """A kernel's interface as plain data: parameters, results, shape parameters."""
    from zhenwu_cc.dialects import dtypes

    def tensor(name, t):
        return {"name": name, "dtype": dtypes.from_xdsl(t.element_type).name,
                "shape": list(t.get_shape())}

    return {
        "name": kernel.sym_name.data,
        "params": {k: v.value.data for k, v in kernel.attributes["params"].data.items()},
        "inputs": [tensor(n, a.type) for n, a in zip(kernel.arg_names, kernel.body.block.args)],
        "outputs": [tensor(n, t) for n, t in zip(kernel.names_of_results,
                                                 kernel.function_type.outputs.data)],
    }


def print_ir(op, debuginfo: bool = False) -> str:
    import io

    from xdsl.printer import Printer

    buf = io.StringIO()
    Printer(stream=buf, print_debuginfo=debuginfo).print_op(op)
    return buf.getvalue() + "\n"


# ---- commands -----------------------------------------------------------------------------------
def cmd_check(args, sources) -> Output:
    module = load_module(args, sources)
    kernels = [signature(k) for k in module.ops]
    names = ", ".join(k["name"] for k in kernels) or "no kernels"
    return Output({"kernels": kernels}, f"{args.file}: ok ({names})\n")


def instrumentation(args):
    from zhenwu_cc.pipeline import Instrumentation

    return Instrumentation(print_after_all=args.print_ir_after_all,
                           print_after=tuple(args.print_ir_after or ()),
                           tree_dir=args.print_ir_tree_dir, verify_each=args.verify_each,
                           timing=args.timing, print_debuginfo=args.print_debuginfo)


def dump_pipeline(passes) -> None:
    specs = ",".join(str(p.spec(include_default=True)) for p in passes)
    sys.stderr.write(f"Pass Manager with {len(passes)} passes:\nbuiltin.module({specs})\n")


def cmd_compile(args, sources) -> Output:
    from zhenwu_cc.passes.place_hbm import placement_map
    from zhenwu_cc.pipeline import (
        default_pipeline,
        format_timing,
        make_context,
        parse_pipeline,
        run_pipeline,
    )

    module = load_module(args, sources)
    kernels = [signature(k) for k in module.ops]
    spec = args.pipeline if args.pipeline is not None else default_pipeline(args.emit, args.target)
    passes = parse_pipeline(spec)
    if args.dump_pass_pipeline:
        dump_pipeline(passes)
    run = run_pipeline(make_context(), module, passes, instrumentation(args))
    if args.timing:
        sys.stderr.write(format_timing(run))
    ir = print_ir(module, args.print_debuginfo)
    payload = {"emit": args.emit, "target": args.target,
               "pipeline": ",".join(str(p.spec(include_default=True)) for p in passes),
               "kernels": kernels,
               "placement": [{"kernel": k.sym_name.data, **row} for k in module.ops
                             for row in placement_map(k)]}
    if args.output:
        write_atomic(args.output, ir.encode())
        payload["output"] = args.output
        return Output(payload, "")
    payload["ir"] = ir
    return Output(payload, ir)


def cmd_opt(args, sources) -> Output:
    from zhenwu_cc.opt import run_opt
    from zhenwu_cc.pipeline import parse_pipeline

    text = sys.stdin.read() if args.file == "-" else read_source(args.file)
    sources.add(args.file, text)
    if args.dump_pass_pipeline:
        dump_pipeline(parse_pipeline(args.pipeline))
    inst = instrumentation(args)
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
    from zhenwu_cc.dialects import dtypes
    from zhenwu_cc.runtime import reference
    from zhenwu_cc.runtime.check import render
    from zhenwu_cc.runtime.host_memory import ensure_run_memory

    module = load_module(args, sources)
    one_kernel(module, args.file)
    compiled = CompiledKernel(module, args.file, args.target)
    kernel = compiled.zk
    file = reference.InputsFile(args.inputs, kernel) if args.inputs else None
    ensure_run_memory(compiled, given=file.members if file else (), execute=not args.reference,
                      reference_mode=args.mode if args.reference else None, check=args.check,
                      summary=True, out=bool(args.out), file_bytes=file.nbytes if file else 0)
    given = file.read() if file else {}
    inputs = compiled.inputs(given, seed=args.seed)
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
               "inputs": [{"name": n, "source": "file" if n in given else "random"}
                          for n in kernel.arg_names],
               "outputs": records}
    if args.out:
        payload["output"] = args.out
    out = Output(payload, "".join(lines))
    if args.check:
        checks = compiled.compare(inputs, outputs)
        payload["check"] = [c.to_json() for c in checks]
        out.text += render(checks)
        failed = [c.name for c in checks if not c.passed]
        if failed:
            from zhenwu_cc.diagnostics import Diagnostic

            out.diagnostics.append(Diagnostic(
                "ZK0508", f"outputs {', '.join(failed)} differ from the float64 reference by "
                "more than their dtypes explain", help="see the per-output errors above; "
                "`run --reference --mode typed` shows what the declared dtypes alone give"))
            out.code = EXIT_USER
    if not args.reference:
        from zhenwu_cc.runtime.cost.report import seconds

        est = compiled.cost()
        payload["cost"] = est.to_json()
        out.text += (f"estimated on {args.target}: {seconds(est.time)} ({est.bound}-bound); "
                     f"`zhenwu-cc cost` explains it\n")
    return out


def estimate_for(args, sources, target_name: str):
    """Compile the one kernel of the command line for `target_name` and estimate its cost:
    (estimate, target, workload, the ppu kernel)."""
    from zhenwu_cc.pipeline import lower
    from zhenwu_cc.runtime.cost.extract import workload_of
    from zhenwu_cc.runtime.cost.model import estimate
    from zhenwu_cc.runtime.target import load_target

    module = load_module(args, sources)
    one_kernel(module, args.file)
    target = load_target(target_name)
    lower(module, "ppu", target_name)
    kernel = module.ops.first
    workload = workload_of(kernel)
    return estimate(workload, target), target, workload, kernel


def cmd_cost(args, sources) -> Output:
    from zhenwu_cc.passes.place_hbm import placement_map
    from zhenwu_cc.runtime.cost import report

    est, target, workload, kernel = estimate_for(args, sources, args.target)
    placement = placement_map(kernel)
    payload = {"cost": est.to_json(), "placement": placement}
    if args.trace:
        from zhenwu_cc.runtime.cost import trace

        write_atomic(args.trace, trace.dumps(trace.trace(est, target, workload)).encode())
        payload["trace"] = args.trace
    return Output(payload, report.render(est, sources) + report.render_placement(placement))


def cmd_compare(args, sources) -> Output:
    from zhenwu_cc.runtime.cost import report

    rows = []
    for name in [t for t in args.targets.split(",") if t]:
        est = estimate_for(args, sources, name)[0]
        dts = sorted(est.flops_by_dtype)
        flags = [f"{dt} {est.dtype_support[dt]['support']}" for dt in sorted(est.dtype_support)
                 if est.dtype_support[dt]["support"] != "native"]
        rows.append({"target": name, "time_s": est.time, "bound": est.bound,
                     "tflops": sum(est.achieved_flops.get(d, 0.0) for d in dts) / 1e12
                     if dts else None,
                     "peak_fraction": max((est.peak_fraction.get(d, 0.0) for d in dts),
                                          default=None),
                     "notes": "; ".join(flags)})
    return Output({"comparison": rows}, report.render_comparison(rows))


COMMANDS: dict[str, Callable] = {"check": cmd_check, "compile": cmd_compile, "opt": cmd_opt,
                                 "run": cmd_run, "cost": cmd_cost, "compare": cmd_compare}


def _add_target_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=os.environ.get("ZHENWU_TARGET", "m890"),
                   help="chip model: m890 (default), 810e, h20, h100, h200, or a .toml file "
                   "(default from $ZHENWU_TARGET)")


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    """mlir-opt's instrumentation flags, shared by `compile` and `opt`."""
    p.add_argument("--print-ir-after-all", action="store_true",
                   help="print the IR after every pass (to stderr)")
    p.add_argument("--print-ir-after", action="append", metavar="PASS",
                   help="print the IR after this pass (repeatable)")
    p.add_argument("--print-ir-tree-dir", metavar="DIR",
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


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --seed {text!r}: expected an integer >= 0") from None


def build_parser() -> argparse.ArgumentParser:
    from zhenwu_cc import __version__

    parser = _Parser(prog="zhenwu-cc", description="Compile, run and cost .zk kernels for the "
                     "Zhenwu M890 accelerator model.")
    parser.add_argument("--version", action="version", version=f"zhenwu-cc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check", help="parse and verify only")
    _add_source_args(p, "check only this kernel")

    p = sub.add_parser("compile", help="compile and print (or write) the IR")
    _add_source_args(p, "compile only this kernel")
    p.add_argument("--emit", choices=("zk", "tile", "ppu"), default="ppu",
                   help="the stage to print: zk (as written), tile (grids), ppu (the machine)")
    _add_target_arg(p)
    p.add_argument("-o", dest="output", metavar="OUT", help="write the IR here (atomically)")
    p.add_argument("-p", "--pass-pipeline", dest="pipeline", default=None,
                   help="run these passes instead of the default pipeline for --emit")
    _add_pipeline_args(p)

    p = sub.add_parser("cost", help="estimate time on a chip model, and why")
    _add_source_args(p, "the kernel to cost (when the file has several)")
    _add_target_arg(p)
    p.add_argument("--trace", metavar="OUT.json",
                   help="write a Chrome trace (open it in Perfetto: ui.perfetto.dev)")

    p = sub.add_parser("compare", help="the same kernel's estimated cost on several chips")
    _add_source_args(p, "the kernel to compare (when the file has several)")
    p.add_argument("--targets", default="m890,h20,810e,h100,h200",
                   help="comma-separated targets (default: m890,h20,810e,h100,h200)")

    p = sub.add_parser("opt", help="run a pass pipeline on MLIR text (like mlir-opt)")
    p.add_argument("file", help="an .mlir file, or - for stdin")
    p.add_argument("-p", "--pass-pipeline", dest="pipeline", default="",
                   help="passes in xDSL's textual syntax, e.g. 'decompose,tile,cse'")
    p.add_argument("-o", dest="output", metavar="OUT", help="write the IR here (atomically)")
    p.add_argument("--split-input-file", action="store_true",
                   help="run each chunk separated by a `// -----` line on its own")
    p.add_argument("--verify-diagnostics", action="store_true",
                   help="print diagnostics to stdout and exit 0 (for filecheck tests)")
    p.add_argument("--print-op-generic", action="store_true", help="print the generic op form")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_pipeline_args(p)

    p = sub.add_parser("run", help="run a kernel on the CPU and summarise its outputs")
    _add_source_args(p, "run this kernel (needed when the file has several)")
    p.add_argument("--reference", action="store_true",
                   help="evaluate the source with the numpy reference evaluator instead of "
                   "executing the lowered ppu program")
    p.add_argument("--mode", choices=("f64", "typed"), default="f64",
                   help="with --reference: f64 (exact math) or typed (each op rounded to its "
                   "dtype)")
    p.add_argument("--check", action="store_true",
                   help="compare every output with the float64 reference (exit 1 if an output "
                   "is further off than its dtypes explain)")
    _add_target_arg(p)
    p.add_argument("--inputs", metavar="IN.npz",
                   help="arrays by parameter name; parameters not given are random")
    p.add_argument("--out", metavar="OUT.npz", help="write the outputs by result name (atomically)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs (default 0)")
    return parser


# ---- the error boundary ---------------------------------------------------------------------------
def _wants_json(argv: Sequence[str]) -> bool:
    return any(a == "--format=json" for a in argv) or any(
        a == "--format" and b == "json" for a, b in zip(argv, argv[1:]))


def _emit(fmt: str, command: str | None, code: int, out: Output | None, diags, sources,
          message: str | None = None) -> None:
    if fmt == "json":
        doc = {"schema": RESULT_SCHEMA, "command": command, "ok": code == EXIT_OK,
               "exit_code": code, "diagnostics": [d.to_json() for d in diags]}
        if message:
            doc["message"] = message
        if out is not None:
            doc.update(out.payload)
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        return
    if out is not None and out.text:
        sys.stdout.write(out.text)
    if diags:
        from zhenwu_cc.diagnostics import render_text

        sys.stderr.write("\n".join(render_text(d, sources) for d in diags) + "\n")
    if message:
        sys.stderr.write(message + "\n")


def _save_reproducer(argv: Sequence[str], exc: BaseException) -> str:
    """Keep what is needed to replay an internal error: the command, inputs, and traceback."""
    import hashlib
    import shutil
    import tempfile
    import traceback

    tb = "".join(traceback.format_exception(exc))
    key = hashlib.sha256((" ".join(argv) + tb).encode()).hexdigest()[:12]
    base = os.environ.get("ZHENWU_REPRODUCER_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"zhenwu-cc-crash-{key}")
    os.makedirs(path, exist_ok=True)
    for a in argv:
        if os.path.isfile(a):
            shutil.copy(a, os.path.join(path, os.path.basename(a)))
    with open(os.path.join(path, "command.json"), "w") as f:
        json.dump({"argv": ["zhenwu-cc", *argv], "cwd": os.getcwd()}, f, indent=2)
    with open(os.path.join(path, "traceback.txt"), "w") as f:
        f.write(tb)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fmt = "json" if _wants_json(argv) else "text"
    from zhenwu_cc.diagnostics import CompileError, SourceMap

    sources = SourceMap()
    command = None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        out = COMMANDS[command](args, sources)
        _emit(fmt, command, out.code, out, out.diagnostics, sources)
        return out.code
    except UsageError as exc:
        _emit(fmt, command, EXIT_USAGE, None, [], sources,
              f"{exc}\nrun `zhenwu-cc {command or ''} --help` for usage".replace("  ", " "))
        return EXIT_USAGE
    except CompileError as exc:
        _emit(fmt, command, EXIT_USER, None, exc.diagnostics, sources)
        return EXIT_USER
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # --help and --version exit through argparse
        return int(exc.code or 0)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the CLI boundary: an internal error becomes exit 3
        path = _save_reproducer(argv, exc)
        _emit(fmt, command, EXIT_INTERNAL, None, [], sources,
              f"internal compiler error: {type(exc).__name__}: {exc}\n"
              f"This is a bug in zhenwu-cc. Please report it with the reproducer saved in {path}")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
