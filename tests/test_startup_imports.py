"""Each command imports only what it needs (benchmarks/startup.py times it; this keeps it so).

Run in a fresh interpreter: what an earlier test imported would hide a regression here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "gemm.zk")

PROBE = """
import contextlib, io, json, sys
from zhenwu_cc.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(*argv: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    result = json.loads(done.stdout)
    assert result["code"] == 0, done.stderr
    return set(result["modules"])


def _probe(argv: list[str], report: str, before: str = "") -> tuple[object, dict]:
    """Run the command `argv` under PROBE in a fresh interpreter, with `before` run first and
    `report` after the command (it prints one JSON line): that line's value, and PROBE's."""
    probe = before + PROBE.replace("print(", report + "\nprint(")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    reported, result = map(json.loads, done.stdout.splitlines())
    assert result["code"] == 0, done.stderr
    return reported, result


def _loaded(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_check_imports_no_numpy_runtime_passes_or_target_model():
    modules = _modules_after("check", EXAMPLE)
    assert "zhenwu_cc.dialects.zk" in modules  # the probe saw the command's imports
    assert _loaded(modules, "numpy", "ml_dtypes", "zhenwu_cc.runtime", "zhenwu_cc.passes",
                   "zhenwu_cc.core.target", "zhenwu_cc.api") == []


def test_a_clean_check_loads_neither_json_nor_difflib():
    """The parser's tables are a Python literal (gen_tables.py), JSON is only for `--format json`
    and difflib only for a did-you-mean: a clean text `check` pays for none of them. The probe
    lists the modules before it imports json to report them."""
    probe = ("import contextlib, io, sys\n"
             "from zhenwu_cc.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    code = main(sys.argv[1:])\n"
             "modules = sorted(sys.modules)\n"
             "import json\n"
             "print(json.dumps({'code': code, 'modules': modules}))\n")
    done = subprocess.run([sys.executable, "-c", probe, "check", EXAMPLE], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    result = json.loads(done.stdout)
    assert result["code"] == 0, done.stderr
    assert "zhenwu_cc.frontend._tables" in result["modules"]  # the probe saw the parse
    assert _loaded(set(result["modules"]), "json", "difflib") == []


def test_check_builds_no_assembly_format_program():
    """Op formats and their custom directives are built on first parse or print
    (dialects/__init__.py, formats.LazyDirective); `check` does neither, so it imports neither
    xDSL's format machinery nor its IR parser."""
    modules = _loaded(_modules_after("check", EXAMPLE), "xdsl.irdl.declarative_assembly_format",
                      "xdsl.irdl.declarative_assembly_format_parser", "xdsl.parser")
    assert modules == []


def test_a_lazy_custom_directive_prints_and_parses():
    """`custom<Number>` (formats.LazyDirective) round-trips `-inf` through the ppu printer and
    parser in a fresh process, where the directive class is built on that first use."""
    probe = (
        "from zhenwu_cc.api import compile\n"
        "from zhenwu_cc.opt import run_opt\n"
        "src = 'kernel k<M = 8, N = 3000>(x: f32[M, N]) -> f32[M] {\\n"
        "    return max(x, axis=-1)\\n}\\n'\n"
        "text = compile(src).ir('ppu')\n"
        "assert 'pad -inf' in text or 'fill -inf' in text, text\n"
        "again = run_opt(text, 'k.mlir', '').text\n"
        "assert again == text\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["compile", "cost"])
def test_compile_and_cost_import_neither_executor_nor_reference(command):
    modules = _modules_after(command, EXAMPLE, "-D", "M=64", "-D", "N=64", "-D", "K=64")
    assert "zhenwu_cc.passes.tile" in modules
    assert _loaded(modules, "ml_dtypes", "zhenwu_cc.runtime.executor",
                   "zhenwu_cc.runtime.reference", "zhenwu_cc.runtime.numerics") == []


@pytest.mark.parametrize("command", ["compile", "cost"])
def test_compile_and_cost_import_no_numpy(command):
    """`cost` sums a DMA's bytes in closed form where each index walks one axis (extract.py):
    numpy is imported only for a sum taken point by point."""
    modules = _modules_after(command, EXAMPLE, "-D", "M=64", "-D", "N=64", "-D", "K=64")
    assert "zhenwu_cc.runtime.cost.model" in modules or command == "compile"
    assert _loaded(modules, "numpy") == []


def test_target_default_still_comes_from_the_environment():
    """`--target`'s default is filled in after parsing (cli._default_target), from
    $ZHENWU_TARGET."""
    env = {"ZHENWU_TARGET": "h100", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "zhenwu_cc", "compile", EXAMPLE, "--emit", "zk",
                           "--format", "json", "-D", "M=64", "-D", "N=64", "-D", "K=64"],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["target"] == "h100"


@pytest.mark.parametrize("command", ["compile", "cost"])
def test_the_packaged_target_is_read_as_a_file(command):
    """The packaged targets are a folder: read directly, not through importlib.resources'
    readers (which import zipfile and more: ~20 ms of `compile` and `cost`)."""
    modules = _modules_after(command, EXAMPLE, "-D", "M=64", "-D", "N=64", "-D", "K=64")
    assert "zhenwu_cc.core.target" in modules  # the probe saw a target loaded
    assert _loaded(modules, "importlib.readers", "importlib.resources.readers", "zipfile") == []
    assert "tomllib" not in modules  # the packaged target is read from its parsed JSON


def test_only_the_command_run_gets_its_arguments():
    """`build_parser(argv)` builds only the subcommand that argv starts with (each parser costs
    argparse's gettext look-ups); without argv, or with anything else first (`--help check`, a
    misspelt command), every subcommand is listed, with its arguments."""
    from zhenwu_cc.cli import COMMANDS, build_parser

    def dests(parser, name: str) -> list[str]:
        return [a.dest for a in parser.commands[name]._actions]

    parser = build_parser(["check", EXAMPLE])
    assert list(parser.commands) == ["check"] and "file" in dests(parser, "check")
    for argv in (None, [], ["--help"], ["--help", "check"], ["chek", EXAMPLE]):
        parser = build_parser(argv)
        assert sorted(parser.commands) == sorted(COMMANDS), argv
        assert "emit" in dests(parser, "compile"), argv


def test_start_up_dataclasses_bring_their_own_docstrings():
    """A dataclass without a docstring gets one made from `inspect.signature` when its class is
    created, at every start-up; the ones `check`, `compile` and `cost` define have their own."""
    report = ("import dataclasses, inspect\n"
              "generated = sorted(f'{m.__name__}.{c.__name__}' for m in list("
              "sys.modules.values()) if m.__name__.startswith('zhenwu_cc') "
              "for c in vars(m).values() if inspect.isclass(c) and "
              "dataclasses.is_dataclass(c) and c.__module__ == m.__name__ and "
              "(c.__doc__ or '').startswith(c.__name__ + '('))\n"
              "print(json.dumps(generated))")
    for argv in (["check", EXAMPLE], ["cost", EXAMPLE, "-D", "M=64", "-D", "N=64", "-D", "K=64"],
                 ["compile", EXAMPLE, "-D", "M=64", "-D", "N=64", "-D", "K=64"]):
        generated, result = _probe(argv, report)
        assert "zhenwu_cc.frontend.irgen" in result["modules"]  # the probe saw the front end
        assert generated == [], argv[0]


def test_syntax_tree_nodes_are_plain_classes_with_one_init():
    """AST nodes are not dataclasses: one `__init__` on `Node` assigns each class's fields in
    order (`_fields`, from its annotations after its base's), and nothing is generated for the
    27 node classes at start-up; they compare by identity and nothing prints one."""
    from zhenwu_cc.frontend import ast

    nodes = [c for c in vars(ast).values() if isinstance(c, type) and issubclass(c, ast.Node)
             and c is not ast.Node]
    assert len(nodes) == 27
    assert [c.__name__ for c in nodes if {"__init__", "__repr__", "__eq__"} & set(vars(c))] == []
    assert ast.BinOp._fields == ("span", "op", "lhs", "rhs")
    assert ast.PrecisionDirective._fields[-1] == "mode_option"
    node = ast.BinOp("span", "+", "a", "b")
    assert (node.span, node.op, node.lhs, node.rhs) == ("span", "+", "a", "b")
    with pytest.raises(TypeError, match=r"BinOp takes 4 values \(span, op, lhs, rhs\), got 3"):
        ast.BinOp("span", "+", "a")


# The dataclasses `compile` and `cost` define beyond `check`'s (xDSL's attribute classes aside):
# each generated method is compiled at every start-up (~0.6M instructions), so they generate
# only what is used (no repr; eq where compared; frozen where xDSL's ModulePass is).
_COMPILE_AND_COST = ("zhenwu_cc.core.target", "zhenwu_cc.runtime", "zhenwu_cc.passes",
                     "zhenwu_cc.pipeline", "zhenwu_cc.api", "zhenwu_cc.outputs",
                     "zhenwu_cc.arguments")


@pytest.mark.parametrize("command, most", [("compile", 42), ("cost", 62)])
def test_compile_and_cost_generate_few_dataclass_methods(command, most):
    made, _ = _probe([command, EXAMPLE, "-D", "M=64", "-D", "N=64", "-D", "K=64"],
                     "import dataclasses, inspect\n"
                     "made = {f'{m.__name__}.{c.__name__}': sorted(k for k, v in vars(c)"
                     ".items() if inspect.isfunction(v) and v.__code__.co_filename == "
                     "'<string>') for m in list(sys.modules.values()) if m.__name__."
                     f"startswith({_COMPILE_AND_COST!r}) for c in vars(m).values() if "
                     "inspect.isclass(c) and dataclasses.is_dataclass(c) and "
                     "c.__module__ == m.__name__}\n"
                     "print(json.dumps(made))")
    assert "zhenwu_cc.core.target.Target" in made  # the probe saw the target model
    assert sum(map(len, made.values())) <= most, made


def test_target_workload_and_estimate_classes_generate_no_repr_or_hash():
    """Targets are never compared (only __init__); workloads and estimates compare by value
    (fast_cost, tests) but are never printed or hashed."""
    import dataclasses

    from zhenwu_cc.core import target
    from zhenwu_cc.runtime.cost import model, workload

    def generated(module) -> dict[str, list[str]]:
        return {c.__name__: sorted({"__init__", "__eq__", "__repr__", "__hash__", "__setattr__",
                                    "__delattr__"} & {k for k, v in vars(c).items() if v})
                for c in vars(module).values() if isinstance(c, type)
                and dataclasses.is_dataclass(c) and c.__module__ == module.__name__}

    assert set(map(tuple, generated(target).values())) == {("__init__",)}
    assert len(generated(target)) == 8
    for module, count in ((workload, 5), (model, 3)):
        assert list(map(tuple, generated(module).values())) == [("__eq__", "__init__")] * count


def test_check_compiles_one_lexer_regex_not_one_a_parser_state():
    """lexer.py's contextual lexer compiles one regex of all the terminals, and a terminal's
    own when a state tries it after one the state does not (INT, where SIGNED_INT comes first):
    2 more on gemm.zk. lark's own compiled one alternation a parser state it met, and one for
    each set of strings a regex terminal swallows (41 on gemm.zk): most of the first parse."""
    import re

    from zhenwu_cc.frontend._tables import LEXER

    (seen, regex, alone), result = _probe(
        ["check", EXAMPLE],
        "from zhenwu_cc.frontend import parser\n"
        "lexer = parser._lark().parser.lexer\n"
        "print(json.dumps([seen, lexer._regex.pattern, sorted(lexer._alone)]))",
        before=("import re._compiler as compiler\n"
                "seen = []\n"
                "original = compiler.compile\n"
                "def counting(pattern, flags=0):\n"
                "    seen.append(str(pattern))\n"
                "    return original(pattern, flags)\n"
                "compiler.compile = counting\n"))
    assert "zhenwu_cc.frontend.lexer" in result["modules"]  # the probe saw the parse
    assert seen.count(regex) == 1 and regex.count("()") == len(LEXER["order"])
    assert len(alone) <= 2
    terminals = set(LEXER["order"])
    alternations = [p for p in seen if len(set(re.findall(r"\(\?P<(\w+)>", p)) & terminals) > 1]
    assert alternations == []



def test_check_generates_few_dataclass_methods():
    """Python 3.11's `dataclass` compiles each method it generates (with `exec`, so its code
    comes from "<string>") at every start-up, ~0.6M instructions each. What `check` defines
    generates only the diagnostics' records: `__init__` and `__eq__` of Note, FixIt and
    Diagnostic, and Span's frozen value methods (init, eq, hash, setattr, delattr). The zk
    dialect's attributes are left out: xDSL's `irdl_attr_definition` makes them."""
    generated, result = _probe(
        ["check", EXAMPLE],
        "import inspect\nfrom xdsl.ir import Attribute\n"
        "generated = {f'{m.__name__}.{c.__name__}': sorted("
        "k for k, f in vars(c).items() if getattr(getattr(f, '__code__', None), "
        "'co_filename', '') == '<string>') for m in list(sys.modules.values()) "
        "if m.__name__.startswith('zhenwu_cc') for c in vars(m).values() "
        "if inspect.isclass(c) and c.__module__ == m.__name__ "
        "and not issubclass(c, Attribute)}\n"
        "print(json.dumps({k: v for k, v in generated.items() if v}))")
    assert "zhenwu_cc.frontend.irgen" in result["modules"]  # the probe saw the front end
    assert sum(map(len, generated.values())) <= 11, generated
    assert [name for name, methods in generated.items() if "__repr__" in methods] == []


def test_diagnostics_compare_by_value_without_a_repr():
    """Diagnostics are compared (fast_cost.py keeps a refusal's), so equal records from two
    compiles are equal, through their spans, notes and fix-its; spans are hashable values."""
    from zhenwu_cc.core.diagnostics import Diagnostic, FixIt, Note, Span

    def one(end_col: int) -> Diagnostic:
        span = Span("k.zk", 2, 5, 2, end_col)
        return Diagnostic("ZK0201", "undefined name `xx`", span, (Note("here", span),),
                          (FixIt(span, "x"),), "did you mean `x`?")

    assert one(7) == one(7) and one(7) != one(8)
    assert len({Span("k.zk", 1, 1, 1, 2), Span("k.zk", 1, 1, 1, 2)}) == 1
    assert [c.__name__ for c in (Span, Note, FixIt, Diagnostic) if "__repr__" in vars(c)] == []
