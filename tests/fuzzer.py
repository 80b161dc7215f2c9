"""A forking fuzz harness for the whole driver: no input may crash it, hang it, or show a traceback.

The parent imports the compiler once and forks one child per input (a process start costs
0.5-2 s, a fork a few ms). The child runs `zhenwu_cc.cli.main` in a private working directory,
under a CPU-time limit, a wall-clock alarm and an address-space limit. A *finding* is an exit code
3 (internal error), a hang (the CPU limit or the alarm), a death by any other signal, an exit code
outside 0/1/2, or a Python traceback on stderr.

Inputs come from six generators, all driven by one seeded `random.Random` per case, so case `i`
of seed `s` is the same input on every machine and replays with `--case i`:

- `zk`:     mutations of the example kernels (bytes, tokens, numbers at the edges of i64 and
            float64), then `check`, `compile --emit zk|tile|ppu`, `cost` or `run --check` at tiny
            shapes;
- `gen`:    random well-formed kernels over the builtins with random schedules, compiled, run and
            costed at tiny shapes (these reach the passes, the executor and the cost model);
- `opt`:    mutations of the examples' tile and ppu IR, through random pass pipelines;
- `target`: mutations of the bundled target files, used by `cost`;
- `npz`:    valid and corrupted `.npz` inputs (wrong shapes, dtypes, members, lying headers);
- `argv`:   random flags and values on every subcommand.

    python tests/fuzzer.py --count 2000 --seed 0            # one shard
    python tests/fuzzer.py --count 100000 --shard 1/2       # every second case, from the second
    python tests/fuzzer.py --seed 0 --case 1234 --keep DIR  # replay one case, keep its files

Findings are written to `--findings DIR` (default `fuzz-findings/`), one folder per case with
the command, its files, stdout and stderr; the exit code is 1 when there are any.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.zk"))
TARGETS = sorted((REPO / "runtime" / "targets").glob("*.toml"))
CPU_LIMIT_S = 10  # the issue's bar: no input may take more than 10 CPU-seconds
WALL_LIMIT_S = 30  # a child blocked without using CPU (a FIFO, a lock) is a hang too
ADDRESS_SPACE = 8 << 30  # a runaway allocation fails in the child, not the machine
HOST_BYTES = "256M"  # ZHENWU_MAX_HOST_BYTES: runs larger than this must be refused, not tried
SMALL_DIMS = (1, 2, 3, 4, 5, 8, 16, 17, 32)
EDGE_INTS = ("0", "-1", "1", "2", "65536", "65537", "2147483648", "9223372036854775807",
             "9223372036854775808", "1000000000000", "99999999999999999999999")
EDGE_FLOATS = ("0.0", "-0.0", "1e-45", "1e-300", "1e300", "1e309", "inf", "-inf", "nan", "448.0",
               "65504.0", "3.4e38", "1e-7")
TOKENS = ("(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "@", "+", "-", "*", "/", "<", ">",
          "==", "kernel", "schedule", "return", "tile", "precision", "place", "buffers",
          "accumulate", "split_k", "as", "in", "hbm", "l2", "stacks", "scale", "f32", "f16",
          "bf16", "f8E4M3FN", "f4E2M1FN", "f8E8M0FNU", "i64", "ui8", "i1", "x", "M", "N", "K",
          "axis", "keepdims", "true", "sum", "softmax", "transpose", "reshape", "iota", "where",
          "concat", "\n", "//", "\"", "'", "\\", "\x00", "\xff", "\u00e9", "\ufeff", ";", "#")


@dataclass
class Case:
    """One input: the command line and the files it names (written into the child's folder)."""

    index: int
    kind: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Result:
    case: Case
    status: str  # "ok" or what kind of finding
    code: int | None
    cpu_s: float
    stderr: str
    workdir: Path | None = None  # kept for a finding, removed otherwise


# ---- inputs ---------------------------------------------------------------------------------------
def _shape_params(text: str) -> list[str]:
    header = re.search(r"kernel\s+\w+\s*<([^>]*)>", text)
    return re.findall(r"(\w+)\s*=", header.group(1)) if header else []


def _tiny_defines(rng: random.Random, text: str) -> list[str]:
    argv = []
    for name in _shape_params(text):
        argv += ["-D", f"{name}={rng.choice(SMALL_DIMS)}"]
    return argv


def _mutate_text(rng: random.Random, text: str, rounds: int) -> str:
    for _ in range(rounds):
        op = rng.randrange(7)
        pos = rng.randrange(len(text) + 1)
        if op == 0 and text:  # delete a span
            text = text[:pos] + text[pos + rng.randrange(1, 12):]
        elif op == 1:  # insert a token
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
        elif op == 2:  # an integer at the edge
            text = re.sub(r"\b\d+\b", lambda m: rng.choice(EDGE_INTS) if rng.random() < 0.3
                          else m.group(0), text, count=rng.randrange(1, 4))
        elif op == 3:  # a float at the edge
            text = text[:pos] + rng.choice(EDGE_FLOATS) + text[pos:]
        elif op == 4 and text:  # duplicate a span
            end = min(len(text), pos + rng.randrange(1, 200))
            text = text[:end] + text[pos:end] + text[end:]
        elif op == 5:  # swap two lines
            lines = text.split("\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        else:  # replace a name by another known word
            text = re.sub(r"\b[a-z_][a-z0-9_]*\b", lambda m: rng.choice(TOKENS[18:58])
                          if rng.random() < 0.05 else m.group(0), text, count=50)
    return text


def _source_command(rng: random.Random, text: str) -> list[str]:
    command = rng.choice(("check", "compile-zk", "compile-tile", "compile", "cost", "run",
                          "run-check", "compile-json"))
    tiny = _tiny_defines(rng, text)
    if command == "check":
        return ["check", "k.zk"]
    if command.startswith("compile"):
        emit = {"compile-zk": ["--emit", "zk"], "compile-tile": ["--emit", "tile"]}.get(command, [])
        fmt = ["--format", "json"] if command == "compile-json" else []
        return ["compile", "k.zk", *emit, *fmt, *tiny]
    if command == "cost":
        return ["cost", "k.zk", "--target", rng.choice(("m890", "h100", "810e")),
                *(tiny if rng.random() < 0.5 else [])]
    return ["run", "k.zk", *tiny, *(["--check"] if command == "run-check" else [])]


def gen_zk(rng: random.Random) -> tuple[list[str], dict[str, bytes]]:
    text = rng.choice(EXAMPLES).read_text()
    text = _mutate_text(rng, text, rng.randrange(1, 4))
    return _source_command(rng, text), {"k.zk": text.encode("utf-8", "surrogatepass")}


UNARY = ("exp", "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "softplus", "abs", "erf")
POSITIVE = ("log", "sqrt", "rsqrt")
DTYPES = ("f32", "f16", "bf16")


# One form per entry; each draws what it needs from the case's generator.
_FORMS = (
    lambda rng, a, b: f"{rng.choice(UNARY)}({a})",
    lambda rng, a, b: f"{rng.choice(POSITIVE)}(abs({a}) + 1.0)",
    lambda rng, a, b: f"{a} {rng.choice('+-*')} {b}",
    lambda rng, a, b: f"{a} @ w",
    lambda rng, a, b: f"{a} - {rng.choice(('max', 'sum', 'mean'))}({b}, axis=-1, keepdims=true)",
    lambda rng, a, b: f"{rng.choice(('softmax', 'log_softmax'))}({a}, axis="
                      f"{rng.choice((-1, 0, 1))})",
    lambda rng, a, b: f"layernorm({a}, g, g)" if rng.random() < 0.5 else f"rmsnorm({a}, g)",
    lambda rng, a, b: f"{a} + g",
    lambda rng, a, b: f"where({a} > {b}, {a}, {rng.choice(EDGE_FLOATS[:9])})",
    lambda rng, a, b: f"clamp({a}, -1, {rng.choice(('1', '6', '0.5'))})",
    lambda rng, a, b: f"f32({rng.choice(DTYPES)}({a}))",
    lambda rng, a, b: f"{a} * {rng.choice(EDGE_FLOATS[:8] + ('0.5', '2', '3.0'))}",
)


def _expr(rng: random.Random, names: list[str]) -> str:
    a, b = rng.choice(names), rng.choice(names)
    return _FORMS[rng.randrange(len(_FORMS))](rng, a, b)


def _schedule(rng: random.Random, names: list[str]) -> str:
    lines = []
    for _ in range(rng.randrange(4)):
        kind = rng.randrange(5)
        name = rng.choice(names)
        if kind == 0:
            sizes = [str(rng.choice((1, 2, 4, 8, 16, 32, 64, 128, 3, 0))) for _ in
                     range(rng.choice((2, 3)))]
            split = f" split_k {rng.choice((1, 2, 4, 3))}" if rng.random() < 0.2 else ""
            lines.append(f"tile {name} [{', '.join(sizes)}]{split}")
        elif kind == 1:
            mode = rng.choice(("tensor", "channel", "block(1, 32)", "mx(floor)", "nvfp4(rne)"))
            lines.append(f"precision {rng.choice(('x', 'w'))} as "
                         f"{rng.choice(('f8E4M3FN', 'f8E5M2', 'f4E2M1FN', 'bf16'))} scale {mode}")
        elif kind == 2:
            lines.append(f"buffers {rng.choice((1, 2, 3, 8))}")
        elif kind == 3:
            lines.append(f"place {rng.choice(('x', 'w', 'g'))} in "
                         f"{rng.choice(('l2', 'hbm', 'hbm stacks(0)', 'hbm stacks(1, 5)'))}")
        else:
            lines.append(f"accumulate {rng.choice(('f32', 'f16', 'f32 fp8_fast'))}")
    return "".join(f"    {line}\n" for line in lines)


def gen_kernel(rng: random.Random) -> tuple[list[str], dict[str, bytes]]:
    names = ["x"]
    body = []
    for i in range(rng.randrange(1, 7)):
        body.append(f"    v{i} = {_expr(rng, names)}")
        names.append(f"v{i}")
    out = rng.choice(DTYPES)
    text = (f"kernel k<M = 8, N = 8>(x: f32[M, N], w: f32[N, N], g: f32[N]) -> {out}[M, N] {{\n"
            + "\n".join(body) + f"\n    return {out}({names[-1]})\n}}\n\n"
            f"schedule k {{\n{_schedule(rng, names)}}}\n")
    defines = ["-D", f"M={rng.choice(SMALL_DIMS)}", "-D", f"N={rng.choice(SMALL_DIMS)}"]
    command = rng.choice((["run", "k.zk", "--check"], ["run", "k.zk"], ["cost", "k.zk"],
                          ["compile", "k.zk", "--emit", "tile"], ["compile", "k.zk"]))
    return [*command, *defines], {"k.zk": text.encode()}


_IR_CACHE: dict[tuple[str, str], str] = {}


def _lowered_ir(example: Path, stage: str) -> str:
    """The example's IR at `stage`, at small shapes, computed once per process."""
    key = (example.name, stage)
    if key not in _IR_CACHE:
        import zhenwu_cc
        from zhenwu_cc.core.diagnostics import CompileError

        text = example.read_text()
        defines = {name: 16 for name in _shape_params(text)}
        try:
            _IR_CACHE[key] = zhenwu_cc.compile(example, defines=defines).ir(stage)
        except CompileError:
            _IR_CACHE[key] = ""
    return _IR_CACHE[key]


OPT_PASSES = ("decompose", "cast", "tile", "place-hbm", "alloc-sram", "lower-ppu", "canonicalize",
              "cse", "dce")


def gen_opt(rng: random.Random) -> tuple[list[str], dict[str, bytes]]:
    stage = rng.choice(("zk", "tile", "tile", "ppu"))
    text = _lowered_ir(rng.choice(EXAMPLES), stage)
    if rng.random() < 0.8:
        text = _mutate_ir(rng, text)
    passes = [rng.choice(OPT_PASSES) for _ in range(rng.randrange(0, 4))]
    return ["opt", "in.mlir", "-p", ",".join(passes)], {"in.mlir": text.encode()}


def _mutate_ir(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(lines))
        op = rng.randrange(5)
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            lines[i] = re.sub(r"\b\d+\b", lambda m: rng.choice(EDGE_INTS), lines[i], count=1)
        elif op == 3:
            lines[i] = re.sub(r"\bf(32|16)\b", lambda m: rng.choice(("f16", "i1", "f8E4M3FN",
                                                                     "index", "i64")), lines[i])
        else:
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)] + rng.choice(
                ("{", "}", "(", ")", "[", "]", "<", ">", "%0", "^bb0:", "\"", ":"))
    return "\n".join(lines)


def gen_target(rng: random.Random) -> tuple[list[str], dict[str, bytes]]:
    text = rng.choice(TARGETS).read_text()
    lines = text.split("\n")
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(lines))
        op = rng.randrange(5)
        if op == 0:
            lines[i] = re.sub(r"value = [-0-9.e+]+", lambda m: "value = " + rng.choice(
                EDGE_INTS + EDGE_FLOATS), lines[i])
        elif op == 1 and len(lines) > 1:
            del lines[i]
        elif op == 2:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 3:
            lines[i] = re.sub(r'value = "[^"]*"', 'value = "bogus"', lines[i])
        else:
            lines.insert(i, "x = " + "[" * rng.choice((10, 100, 5000)) + "]" * rng.choice((0, 1)))
    example = rng.choice(EXAMPLES)
    return (["cost", str(example), "--target", "t.toml", *_tiny_defines(rng, example.read_text())],
            {"t.toml": "\n".join(lines).encode()})


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def gen_npz(rng: random.Random) -> tuple[list[str], dict[str, bytes]]:
    m, n = rng.choice(SMALL_DIMS), rng.choice(SMALL_DIMS)
    arrays = {"x": np.ones((m, n), np.float32), "w": np.ones((n, n), np.float32),
              "g": np.ones((n,), np.float32)}
    op = rng.randrange(7)
    if op == 0:
        del arrays[rng.choice(sorted(arrays))]
    elif op == 1:
        arrays[rng.choice(sorted(arrays))] = np.ones((n + 1, m), np.float32)
    elif op == 2:
        arrays["x"] = np.ones((m, n), rng.choice((np.float64, np.int8, np.bool_, np.float16)))
    elif op == 3:
        arrays["extra"] = np.zeros(3)
    elif op == 4:
        arrays["x"] = np.full((m, n), rng.choice((np.inf, np.nan, 1e38)), np.float32)
    data = _npz_bytes(arrays)
    if op == 5:  # corrupt bytes
        data = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    elif op == 6:  # a header that lies about its shape
        data = _lying_npz(rng.choice(((10**12,), (2**40, 2**40), (m, n * 1000))))
    text = (f"kernel k<M = {m}, N = {n}>(x: f32[M, N], w: f32[N, N], g: f32[N]) -> f32[M, N] {{\n"
            "    return x @ w + g\n}\n")
    return ["run", "k.zk", "--inputs", "in.npz", *(["--check"] if rng.random() < 0.5 else [])], \
        {"k.zk": text.encode(), "in.npz": data}


def _lying_npz(shape: tuple[int, ...]) -> bytes:
    header = np.lib.format.header_data_from_array_1_0(np.ones(1, np.float32))
    header["shape"] = shape
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    member.write(b"\0" * 64)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", member.getvalue())
    return buf.getvalue()


FLAGS = ("--format", "json", "text", "xml", "--emit", "zk", "tile", "ppu", "bogus", "-D", "M=0",
         "M=-1", "M=1e3", "=", "M", "-o", "", "/dev/null", "out.mlir", "k.zk", "--target",
         "nope", "h100", "--kernel", "k", "zz", "--seed", "-1", "99999999999999999999", "x",
         "--check", "--reference", "--mode", "typed", "f64", "--inputs", "--out", "-p", "tile",
         "--print-ir-after", "--print-ir-after-all", "--timing", "--dump-pass-pipeline",
         "--no-verify-each", "--trace", "t.json", "--targets", "m890,h100", ",,,", "--help",
         "--version", "--form", "-", "--print-ir-tree-dir", "dir", "--split-input-file",
         "--verify-diagnostics", "--print-op-generic", "--print-debuginfo")


def gen_argv(rng: random.Random) -> tuple[list[str], dict[str, bytes]]:
    command = rng.choice(("check", "compile", "cost", "compare", "opt", "run", "bogus", ""))
    argv = [command] if command else []
    argv.append("k.zk" if command != "opt" else "in.mlir")
    argv += [rng.choice(FLAGS) for _ in range(rng.randrange(0, 6))]
    example = rng.choice(EXAMPLES).read_text()
    ir = _lowered_ir(EXAMPLES[0], "tile")
    return argv, {"k.zk": example.encode(), "in.mlir": ir.encode()}


GENERATORS = {"zk": (gen_zk, 30), "gen": (gen_kernel, 25), "opt": (gen_opt, 15),
              "target": (gen_target, 10), "npz": (gen_npz, 10), "argv": (gen_argv, 10)}


def make_case(seed: int, index: int) -> Case:
    rng = random.Random(f"{seed}:{index}")
    kinds = sorted(GENERATORS)
    kind = rng.choices(kinds, weights=[GENERATORS[k][1] for k in kinds])[0]
    argv, files = GENERATORS[kind][0](rng)
    return Case(index, kind, argv, files)


# ---- running one case -----------------------------------------------------------------------------
def _child(case: Case, workdir: Path) -> None:
    """Runs in the forked child: never returns."""
    code = 99
    try:
        os.chdir(workdir)
        os.environ.update(TMPDIR=str(workdir), ZHENWU_MAX_HOST_BYTES=HOST_BYTES,
                          ZHENWU_REPRODUCER_DIR=str(workdir / "crash"))
        os.environ.pop("ZHENWU_TARGET", None)
        tempfile.tempdir = None
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S + 1))
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(WALL_LIMIT_S)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            out = os.open(workdir / f".{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, fd)
            os.close(out)
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        from zhenwu_cc.cli import main

        code = main(case.argv)
    except BaseException:  # the harness records whatever escapes the CLI boundary
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code if isinstance(code, int) and 0 <= code < 256 else 98)


def run_case(case: Case, root: Path) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix=f"case{case.index}-", dir=root))
    for name, data in case.files.items():
        (workdir / name).write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pid = os.fork()
    if pid == 0:
        _child(case, workdir)
    _, status = os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stderr = (workdir / ".stderr").read_text(errors="replace")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = None
        verdict = "hang" if sig in (signal.SIGXCPU, signal.SIGALRM, signal.SIGKILL) else \
            f"signal {signal.Signals(sig).name}"
    else:
        code = os.WEXITSTATUS(status)
        verdict = ("internal-error" if code == 3 else
                   "traceback" if "Traceback (most recent call last)" in stderr else
                   "ok" if code in (0, 1, 2) else f"exit {code}")
    if verdict == "ok":
        shutil.rmtree(workdir, ignore_errors=True)
        return Result(case, verdict, code, cpu, stderr)
    return Result(case, verdict, code, cpu, stderr, workdir)


def save_finding(result: Result, findings: Path, seed: int) -> Path:
    dest = findings / f"seed{seed}-case{result.case.index}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(result.workdir, dest, symlinks=True)
    (dest / "finding.json").write_text(json.dumps(
        {"seed": seed, "case": result.case.index, "kind": result.case.kind,
         "argv": ["zhenwu-cc", *result.case.argv], "verdict": result.status,
         "exit_code": result.code, "cpu_s": round(result.cpu_s, 3)}, indent=2) + "\n")
    shutil.rmtree(result.workdir, ignore_errors=True)
    return dest


def preload() -> None:
    """Import every module a command may need, once, in the parent: children inherit them."""
    import gc
    import importlib
    import pkgutil

    import contextlib

    from zhenwu_cc import cli

    # The mapped subpackages (dialects, passes, runtime) are not under zhenwu_cc's own folder.
    for name in ("zhenwu_cc", "zhenwu_cc.dialects", "zhenwu_cc.passes", "zhenwu_cc.runtime"):
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    for example in EXAMPLES[:2]:  # warm the lazily built parser and default pipelines
        _lowered_ir(example, "ppu")
    warm = REPO / "examples" / "gemm_bias_gelu.zk"
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):  # and whatever a run, a check and a cost load
        cli.main(["run", str(warm), "-D", "M=8", "-D", "N=8", "-D", "K=8", "--check"])
    gc.collect()
    gc.freeze()  # children then do not copy the parent's objects by touching their refcounts


def fuzz(seed: int, indices, findings: Path | None = None, progress: bool = False) -> dict:
    """Run the cases `indices` of `seed`; return counts per kind and verdict, and the findings."""
    preload()
    counts: dict[str, dict[str, int]] = {}
    found: list[dict] = []
    cpu: dict[str, float] = {}  # CPU-seconds of the children, per generator
    start = time.monotonic()
    max_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="zhenwu-fuzz-") as tmp:
        for n, index in enumerate(indices, 1):
            result = run_case(make_case(seed, index), Path(tmp))
            max_cpu = max(max_cpu, result.cpu_s)
            per_kind = counts.setdefault(result.case.kind, {})
            per_kind[result.status] = per_kind.get(result.status, 0) + 1
            cpu[result.case.kind] = cpu.get(result.case.kind, 0.0) + result.cpu_s
            if result.status != "ok":
                where = save_finding(result, findings, seed) if findings else None
                found.append({"case": index, "kind": result.case.kind, "verdict": result.status,
                              "argv": result.case.argv, "where": str(where) if where else None,
                              "stderr_tail": result.stderr[-800:]})
            if progress and n % 500 == 0:
                rate = n / (time.monotonic() - start)
                print(f"{n} cases, {len(found)} findings, {rate:.1f}/s", file=sys.stderr)
    return {"cases": sum(sum(v.values()) for v in counts.values()), "seconds":
            round(time.monotonic() - start, 1), "max_cpu_s": round(max_cpu, 2),
            "by_kind": counts, "cpu_s_by_kind": {k: round(v, 1) for k, v in sorted(cpu.items())},
            "findings": found}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=1000, help="cases in all (over every shard)")
    p.add_argument("--shard", default="0/1", help="K/N: run the cases i with i %% N == K")
    p.add_argument("--case", type=int, help="run this one case")
    p.add_argument("--findings", type=Path, default=REPO / "fuzz-findings")
    p.add_argument("--keep", type=Path, help="with --case: write the case's files here")
    args = p.parse_args(argv)
    if args.case is not None:
        case = make_case(args.seed, args.case)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name, data in case.files.items():
                (args.keep / name).write_bytes(data)
        print(json.dumps({"kind": case.kind, "argv": ["zhenwu-cc", *case.argv]}))
        indices = [args.case]
    else:
        k, n = (int(v) for v in args.shard.split("/"))
        indices = range(k, args.count, n)
    report = fuzz(args.seed, indices, args.findings, progress=True)
    print(json.dumps({key: report[key] for key in ("cases", "seconds", "max_cpu_s", "by_kind",
                                                   "cpu_s_by_kind")}
                     | {"findings": len(report["findings"])}, sort_keys=True))
    for f in report["findings"]:
        print(f"{f['verdict']}: {' '.join(f['argv'])}  -> {f['where']}", file=sys.stderr)
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
