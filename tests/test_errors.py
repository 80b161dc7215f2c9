"""Every error code of the command line and the front end (ZK00xx-ZK04xx) triggered for real:
through the CLI with `--format json` (exit code, code, title, message words, location) or through
`zhenwu_cc.frontend.build`. Plus two meta-tests over the whole registry: each code is documented
in docs/errors.md and exercised by some test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from zhenwu_cc.core.diagnostics import CODES, CompileError, SourceMap, render_text
from zhenwu_cc.frontend import build

REPO = Path(__file__).resolve().parent.parent
GEMM = REPO / "examples" / "gemm.zk"

K = "kernel k<M = 4, N = 3>(a: f32[M, N], b: f32[N, M], h: f16[M, N], i: i32[M, N]) -> f32[M, N] {\n"


@dataclass
class Case:
    code: str
    source: str
    words: tuple[str, ...]  # all must appear in the message
    at: str | tuple[int, int] | None  # where the span starts: (line, col), or the first
    note_at: str | tuple[int, int] | None = None  # occurrence of a text; the same for the note

    @property
    def id(self) -> str:
        return self.code


def body(*lines: str, ret: str = "a", schedule: str | None = None) -> str:
    """A kernel `k` with parameters a, b, h, i and the given statements."""
    text = K + "".join(f"    {line}\n" for line in lines) + f"    return {ret}\n}}\n"
    if schedule is not None:
        text += "\nschedule k {\n" + "".join(f"    {d}\n" for d in schedule.split(";")) + "}\n"
    return text


SOURCE_CASES = [
    # ---- 01xx syntax
    Case("ZK0101", body("y = a $ b"), ("unexpected character", "'$'"), "$ b"),
    Case("ZK0102", body("y = a + )"), ("unexpected `)`", "expected"), ")\n"),
    # the location of an unexpected end is the last token before it
    Case("ZK0103", "kernel k(a: f32[4]) -> f32[4] {\n    return exp(a\n", ("end of input",), (2, 16)),
    Case("ZK0104", body("y = " + "-" * 1005 + "a"), ("nested more than", "levels deep"), None),
    Case("ZK0105", body("y = a * 1e", "z = y"), ("invalid number literal", "`1e`"), "1e"),
    Case("ZK0107", body("y = a * 1e309"), ("`1e309`", "beyond the range of f64"), "1e309"),
    # ---- 02xx names
    Case("ZK0201", body("y = exp(aa)"), ("undefined name", "`aa`"), "aa)"),
    Case("ZK0202", body("y = a", "y = exp(a)"), ("`y` is already bound", "single-assignment"),
         "y = exp", note_at="y = a"),
    Case("ZK0203", body("y = expp(a)"), ("unknown function", "`expp`"), "expp"),
    Case("ZK0204", "kernel k(a: f23[4]) -> f32[4] {\n    return a\n}\n", ("unknown dtype", "`f23`"),
         "f23"),
    Case("ZK0205", "kernel k(a: f32[4]) -> f32[4] {\n    return a\n}\n"
         "kernel k(a: f32[4]) -> f32[4] {\n    return a\n}\n", ("kernel `k` is defined twice",),
         (4, 8), note_at=(1, 8)),
    Case("ZK0206", "kernel k(a: f32[4], a: f16[4]) -> f32[4] {\n    return a\n}\n",
         ("parameter `a` declared twice",), "a: f16", note_at="a: f32"),
    Case("ZK0207", "kernel k<N = 4>(a: f32[Q]) -> f32[4] {\n    return a\n}\n",
         ("`Q` is not a shape parameter", "kernel `k`"), "Q]"),
    Case("ZK0208", body("exp = a"), ("`exp` is a builtin function", "cannot be rebound"), "exp ="),
    Case("ZK0209", "kernel k(a: f32[4]) -> f32[4] {\n    b = a\n}\n", ("has no `return`",), "k("),
    Case("ZK0210", body("y = a", ret="a\n    z = a"), ("statement after `return`",), "z = a",
         note_at="return a"),
    # ---- 03xx types and shapes
    Case("ZK0301", body("y = a @ a"), ("do not match for `@`", "inner dims 3 and 4"), "a @ a"),
    Case("ZK0302", body("y = a + b"), ("`+`", "cannot be broadcast", "[4, 3]", "[3, 4]"), "a + b"),
    Case("ZK0303", body("y = a + i"), ("`+` mixes f32 and i32", "neither holds"), "a + i"),
    Case("ZK0304", body("y = sum(a, axis=2)"), ("axis 2 is out of range", "rank 2"), "2)"),
    Case("ZK0305", body("y = exp(a, b)"), ("`exp` takes 1 positional argument, got 2",),
         "exp(a, b)"),
    Case("ZK0306", body("y = softmax(a, axes=1)"), ("no keyword argument `axes`",), "axes=1"),
    Case("ZK0307", body(ret="f16(a)"), ("result 0 is f16[4, 3]", "declares f32[4, 3]"),
         "f16(a)\n", note_at="f32[M, N] {"),
    Case("ZK0308", body("y = exp(i)"), ("`exp` needs a float tensor", "i32[4, 3]"), "exp(i)"),
    Case("ZK0309", body("y = reshape(a, (5, 3))"), ("cannot reshape", "12 elements", "15"),
         "(5, 3)"),
    Case("ZK0310", body("y = a[1:9, :]"), ("slice 1:9", "out of range", "dimension 0 of size 4"),
         "1:9"),
    Case("ZK0311", body("y = h * 100000.0"), ("100000.0 overflows f16", "65504"), "100000.0"),
    Case("ZK0312", body(ret="exp(1.0)"), ("needs a tensor", "scalar"), "exp(1.0)"),
    Case("ZK0313", body("y = broadcast_to(a, (4, 0))"), ("shape [4, 0]", "below 1"), "(4, 0)"),
    Case("ZK0314", body("y = transpose(a, (0, 0))"), ("perm [0, 0] is not a permutation",),
         "(0, 0)"),
    Case("ZK0315", body("y = concat(a, b)"), ("`concat` along axis 0", "differ off that axis"),
         "b)"),
    Case("ZK0316", "kernel k<N = 5>(a: f32[N / 2]) -> f32[4] {\n    return a\n}\n",
         ("must be an integer", "2.5"), "N / 2"),
    Case("ZK0317", "kernel k(a: f32[4]) -> (x: f32[4], y: f32[4]) {\n    return a\n}\n",
         ("declares 2 results but returns 1",), "return a"),
    Case("ZK0318", "kernel k<N = 3037000500>(a: f32[N, N]) -> f32[4] {\n    return a\n}\n",
         ("f32[3037000500, 3037000500]", "must fit in i64"), "f32[N, N]"),
    Case("ZK0319", "kernel k<N = 2097152>(a: f16[N, N]) -> f32[N, N] {\n    return a @ a\n}\n",
         ("18446744073709551616 FLOPs", "must fit in i64"), "a @ a"),
    # ---- 04xx schedules
    Case("ZK0401", body(schedule="buffers 2").replace("schedule k", "schedule kk"),
         ("schedule for unknown kernel `kk`",), "kk"),
    Case("ZK0402", body("y = exp(a)", ret="y", schedule="tile z [4, 3]"),
         ("has no tensor named `z`",), "z ["),
    Case("ZK0403", body("y = exp(a)", ret="y", schedule="tile y [4]"),
         ("`tile y` needs 2 sizes", "got 1"), "[4]"),
    Case("ZK0404", body(schedule="precision a as fp8"), ("not a precision dtype", "fp8"), "fp8"),
    Case("ZK0405", body(schedule="place a in hbm stacks(1, 1)"), ("names a stack twice",),
         "place a"),
    Case("ZK0406", body(schedule="buffers 9"), ("buffers 9", "1..8"), "buffers 9"),
    Case("ZK0407", body(schedule="buffers 2;buffers 3"), ("`buffers` given twice",), "buffers 3",
         note_at="buffers 2"),
    Case("ZK0408", body(schedule="vectorize a"), ("unknown schedule directive `vectorize`",),
         "vectorize"),
    Case("ZK0409", body(schedule="accumulate f8E4M3FN"), ("cannot accumulate in `f8E4M3FN`",),
         "f8E4M3FN"),
    Case("ZK0410", body(schedule="buffers 2") + "schedule k {\n    buffers 3\n}\n",
         ("kernel `k` has two schedule blocks",), "k {\n    buffers 3", note_at="k {\n    buffers 2"),
]


def line_col(text: str, needle: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(needle, tuple):
        return needle
    pos = text.index(needle)
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def check_json(r, code: str, exit_code: int = 1) -> dict:
    """The JSON result document of a failed command, and its first diagnostic."""
    assert r.code == exit_code, r.out + r.err
    doc = r.json
    assert doc["schema"] == "zhenwu-cc.result/1"
    assert doc["ok"] is False and doc["exit_code"] == exit_code
    assert r.err == "", "JSON mode writes nothing to stderr"
    diag = doc["diagnostics"][0]
    assert diag["code"] == code, diag
    assert diag["title"] == CODES[code]
    assert diag["severity"] == "error"
    assert diag["schema"] == "zhenwu-cc.diagnostic/1"
    return diag


@pytest.mark.parametrize("case", SOURCE_CASES, ids=[c.id for c in SOURCE_CASES])
def test_source_error_through_cli(case: Case, cli, zk_file):
    path = zk_file(case.source)
    diag = check_json(cli("check", path, "--format", "json"), case.code)
    for word in case.words:
        assert word in diag["message"], (word, diag["message"])
    if case.at is not None:
        span = diag["span"]
        assert span["file"] == str(path)
        assert (span["line"], span["col"]) == line_col(case.source, case.at), diag
        assert (span["end_line"], span["end_col"]) >= (span["line"], span["col"] + 1)
    if case.note_at is not None:
        note = diag["notes"][0]["span"]
        assert (note["line"], note["col"]) == line_col(case.source, case.note_at), diag


@pytest.mark.parametrize("case", SOURCE_CASES, ids=[c.id for c in SOURCE_CASES])
def test_source_error_through_build(case: Case):
    with pytest.raises(CompileError) as info:
        build(case.source, "k.zk")
    (diag,) = info.value.diagnostics
    assert diag.code == case.code
    # the text rendering names the file, the code and quotes the line with a caret
    text = render_text(diag, SourceMap({"k.zk": case.source}))
    assert f"error[{case.code}]" in text
    if case.at is not None:
        line, col = line_col(case.source, case.at)
        assert text.startswith(f"k.zk:{line}:{col}: error[{case.code}]: ")
        assert "\n" + " " * (len(f"{line:>4} | ") + col - 1) + "^" in text


# Front-end codes raised while reading the file, before there is source text to build: no ```zk
# example can show them. test_hardening.py tests them through the CLI.
READ_CODES = {"ZK0106"}


def test_every_frontend_code_has_a_source_case():
    covered = {c.code for c in SOURCE_CASES}
    frontend = {c for c in CODES if "ZK0100" < c < "ZK0500"} - READ_CODES
    assert frontend <= covered, sorted(frontend - covered)


# ---- a few diagnostics in more detail ------------------------------------------------------------
def test_undefined_name_offers_a_fixit(cli, zk_file):
    path = zk_file(body("y = exp(aa)"))
    diag = check_json(cli("check", path, "--format", "json"), "ZK0201")
    assert diag["help"] == "did you mean `a`?"
    (fix,) = diag["fixits"]
    assert fix["replacement"] == "a"
    assert (fix["span"]["line"], fix["span"]["col"], fix["span"]["end_col"]) == (2, 13, 15)


def test_result_dtype_fixit_wraps_the_expression_in_a_cast(cli, zk_file):
    source = body(ret="exp(h)")
    diag = check_json(cli("check", zk_file(source), "--format", "json"), "ZK0307")
    start, end = diag["fixits"]
    assert start["replacement"] == "f32(" and end["replacement"] == ")"
    line = source.splitlines()[start["span"]["line"] - 1]
    fixed = line[: start["span"]["col"] - 1] + "f32(" + line[start["span"]["col"] - 1:
                                                            end["span"]["col"] - 1] + ")"
    assert fixed.strip() == "return f32(exp(h))"
    build(source.replace("return exp(h)", fixed.strip()))  # applying it gives a valid kernel


def test_argmax_without_axis_is_zk0306_with_a_fixit(cli, zk_file):
    path = zk_file("kernel k(a: f32[4, 3]) -> i32[4] {\n    return argmax(a)\n}\n")
    diag = check_json(cli("check", path, "--format", "json"), "ZK0306")
    assert "needs `axis=`" in diag["message"]
    assert diag["fixits"][0]["replacement"] == ", axis=-1"


def test_integer_literal_too_big_is_zk0105(cli, zk_file):
    path = zk_file(body("y = a * 123456789012345678901234567890"))
    diag = check_json(cli("check", path, "--format", "json"), "ZK0105")
    assert "does not fit in 64 bits" in diag["message"]
    assert (diag["span"]["line"], diag["span"]["col"]) == (2, 13)


@pytest.mark.parametrize("literal", ["1.5.3", "0x10", "2a", "1e+"])
def test_malformed_numbers_are_zk0105(literal, zk_file, cli):
    diag = check_json(cli("check", zk_file(body(f"y = a * {literal}", "z = y")), "--format",
                          "json"), "ZK0105")
    assert f"`{literal}`" in diag["message"]


def test_text_rendering_of_a_source_error(cli, zk_file):
    path = zk_file(body("y = exp(aa)"))
    r = cli("check", path)
    assert r.code == 1 and r.out == ""
    lines = r.err.splitlines()
    assert lines[0] == f"{path}:2:13: error[ZK0201]: undefined name `aa`"
    assert lines[1] == "   2 |     y = exp(aa)"
    assert lines[2] == " " * 19 + "^~"
    assert "Traceback" not in r.err


# ---- ZK00xx: the command line and files ----------------------------------------------------------
def test_zk0001_missing_file(cli, tmp_path):
    missing = tmp_path / "nope.zk"
    diag = check_json(cli("check", missing, "--format", "json"), "ZK0001")
    assert f"cannot read {missing}" in diag["message"] and "No such file" in diag["message"]
    assert diag["span"] is None


def test_zk0001_directory_and_zk0106_bad_encoding(cli, tmp_path):
    check_json(cli("check", tmp_path, "--format", "json"), "ZK0001")
    bad = tmp_path / "bad.zk"
    bad.write_bytes(b"\xff\xfe kernel")
    diag = check_json(cli("compile", bad, "--format", "json"), "ZK0106")
    assert "UTF-8" in diag["message"] and "0xff" in diag["message"]
    assert (diag["span"]["line"], diag["span"]["col"]) == (1, 1)


def test_zk0002_unknown_shape_parameter(cli):
    diag = check_json(cli("check", GEMM, "-D", "Q=3", "--format", "json"), "ZK0002")
    assert "-D Q" in diag["message"] and "no kernel here has a shape parameter `Q`" in diag[
        "message"]
    assert diag["help"] == "shape parameters: K, M, N"


def test_zk0002_suggests_a_close_name(cli):
    diag = check_json(cli("check", GEMM, "-D", "MM=3", "--format", "json"), "ZK0002")
    assert "did you mean `M`?" in diag["message"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_zk0002_shape_parameter_below_one(cli, value):
    diag = check_json(cli("check", GEMM, "-D", f"M={value}", "--format", "json"), "ZK0002")
    assert f"-D M={value}" in diag["message"] and ">= 1" in diag["message"]


def test_zk0003_unknown_kernel(cli):
    diag = check_json(cli("check", GEMM, "--kernel", "gem", "--format", "json"), "ZK0003")
    assert "no kernel named `gem`" in diag["message"] and "did you mean `gemm`?" in diag["message"]
    assert diag["help"] == "kernels in this file: gemm"


def test_zk0004_several_kernels_need_kernel(cli, zk_file):
    two = ("kernel a(x: f32[4]) -> f32[4] {\n    return exp(x)\n}\n"
           "kernel b(x: f32[4]) -> f32[4] {\n    return x\n}\n")
    path = zk_file(two)
    diag = check_json(cli("cost", path, "--format", "json"), "ZK0004")
    assert "2 kernels (a, b)" in diag["message"]
    assert "--kernel a" in diag["help"]
    diag = check_json(cli("run", path, "--reference", "--format", "json"), "ZK0004")
    assert "2 kernels (a, b)" in diag["message"]
    ok = cli("run", path, "--reference", "--kernel", "b", "--format", "json")
    assert ok.code == 0, ok.out


def test_zk0005_cannot_write_output(cli, tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "out.mlir"
    diag = check_json(cli("compile", GEMM, "-o", out, "--format", "json"), "ZK0005")
    assert f"cannot write {out}" in diag["message"]
    assert not out.parent.exists()


def test_zk0006_unknown_pass(cli, tmp_path):
    ir = tmp_path / "k.mlir"
    ir.write_text("builtin.module {\n}\n")
    diag = check_json(cli("opt", ir, "-p", "no-such-pass", "--format", "json"), "ZK0006")
    assert "unknown pass `no-such-pass`" in diag["message"]


# ---- later stages, as docs/errors.md shows them ----------------------------------------------------
def test_zk0603_composite_reaches_tile_without_decompose(cli, zk_file):
    path = zk_file("kernel sm(x: f32[64, 128]) -> f32[64, 128] {\n    return softmax(x, axis=-1)\n}\n")
    diag = check_json(cli("compile", path, "-p", "tile", "--format", "json"), "ZK0603")
    assert "`zk.softmax` must be expanded by `decompose`" in diag["message"]
    assert (diag["span"]["line"], diag["span"]["col"]) == (2, 12)
    assert cli("compile", path, "-p", "decompose,tile", "--format", "json").code == 0


def test_zk1001_unparsable_ir(cli, tmp_path):
    ir = tmp_path / "bad.mlir"
    ir.write_text("builtin.module {\n  zk.kernel @k(%x: tensor<4xf32>) -> (y: tensor<4xf32>) {\n"
                  "    %0 = zk.exp %x : tensor<4xf32\n    zk.return %0 : tensor<4xf32>\n  }\n}\n")
    diag = check_json(cli("opt", ir, "--format", "json"), "ZK1001")
    assert diag["span"]["file"] == str(ir) and diag["span"]["line"] == 4


def test_zk1002_ir_that_does_not_verify(cli, tmp_path):
    ir = tmp_path / "bad.mlir"
    ir.write_text("builtin.module {\n  zk.kernel @k(%x: tensor<4xi32>) -> (y: tensor<4xi32>) {\n"
                  "    %0 = zk.exp %x : tensor<4xi32>\n    zk.return %0 : tensor<4xi32>\n  }\n}\n")
    diag = check_json(cli("opt", ir, "--format", "json"), "ZK1002")
    assert "`zk.exp`" in diag["message"] and "float" in diag["message"]


# ---- usage errors: exit 2, no diagnostics, a message ---------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["check", str(GEMM), "-D", "M=abc"], ["bad -D 'M=abc'", "NAME=INTEGER"]),
    (["check", str(GEMM), "-D", "M"], ["bad -D 'M'"]),
    (["check"], ["required", "file"]),
    (["frobnicate", str(GEMM)], ["invalid choice", "frobnicate"]),
    (["check", str(GEMM), "--no-such-flag"], ["unrecognized arguments", "--no-such-flag"]),
])
def test_usage_errors_exit_2(cli, argv, words):
    r = cli(*argv, "--format", "json")
    assert r.code == 2
    doc = r.json
    assert doc["ok"] is False and doc["exit_code"] == 2 and doc["diagnostics"] == []
    for word in words:
        assert word in doc["message"]
    text = cli(*argv)
    assert text.code == 2 and text.out == ""
    assert words[0] in text.err and "--help" in text.err


def test_success_document_shape(cli):
    r = cli("check", GEMM, "-D", "M=64", "--format", "json")
    assert r.code == 0
    doc = r.json
    assert (doc["schema"], doc["command"], doc["ok"], doc["exit_code"], doc["diagnostics"]) == (
        "zhenwu-cc.result/1", "check", True, 0, [])
    (k,) = doc["kernels"]
    assert k["params"] == {"M": 64, "N": 4096, "K": 4096}
    assert k["inputs"][0] == {"name": "a", "dtype": "f16", "shape": [64, 4096]}
    assert k["outputs"] == [{"name": "c", "dtype": "f32", "shape": [64, 4096]}]


def test_internal_error_exits_3_and_saves_a_reproducer(cli, monkeypatch, tmp_path):
    from zhenwu_cc import cli as cli_module

    def boom(args, sources):
        raise RuntimeError("simulated bug")

    monkeypatch.setitem(cli_module.COMMANDS, "check", boom)
    monkeypatch.setenv("ZHENWU_REPRODUCER_DIR", str(tmp_path))
    r = cli("check", GEMM, "--format", "json")
    assert r.code == 3
    doc = r.json
    assert doc["ok"] is False and doc["exit_code"] == 3
    assert "internal compiler error: RuntimeError: simulated bug" in doc["message"]
    (saved,) = tmp_path.iterdir()
    assert str(saved) in doc["message"]
    assert {p.name for p in saved.iterdir()} >= {"command.json", "traceback.txt", "gemm.zk"}


# ---- meta-tests over the registry ------------------------------------------------------------------
def test_every_code_is_documented():
    text = (REPO / "docs" / "errors.md").read_text()
    headed = set(re.findall(r"^#+ .*?\b(ZK\d{4})\b", text, re.M))
    missing = sorted(set(CODES) - headed)
    assert not missing, f"docs/errors.md has no section for {missing}"
    for code, title in CODES.items():  # the heading carries the registered title
        assert re.search(rf"^#+ {code}\b.*{re.escape(title)}", text, re.M | re.I), code


def _doc_sections() -> dict[str, str]:
    text = (REPO / "docs" / "errors.md").read_text()
    parts = re.split(r"^### (ZK\d{4})\b.*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("code", sorted(c for c in CODES if "ZK0100" < c < "ZK0500"
                                         and c not in READ_CODES))
def test_documented_frontend_example_raises_its_code(code: str):
    """The snippet under each front-end code in docs/errors.md still produces that code, and the
    message shown next to it is the one the compiler gives today."""
    section = _doc_sections()[code]
    snippet = re.search(r"^```zk\n(.*?)^```", section, re.M | re.S)
    assert snippet, f"docs/errors.md: {code} has no ```zk example"
    with pytest.raises(CompileError) as info:
        build(snippet.group(1), "kernel.zk")
    diag = info.value.diagnostics[0]
    assert diag.code == code
    shown = re.search(r"^```text\n(.*?)^```", section, re.M | re.S)
    assert shown, f"docs/errors.md: {code} shows no message"
    assert f"error[{code}]: {diag.message}" in shown.group(1)


def test_every_code_is_exercised_by_a_test():
    """Each registered code appears in some test file (pytest or filecheck). This file counts
    through its case tables; this meta-test itself names no code."""
    tests = REPO / "tests"
    seen: set[str] = set()
    for path in tests.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".zk", ".mlir") and "Output" not in path.parts:
            seen |= set(re.findall(r"ZK\d{4}", path.read_text(errors="replace")))
    missing = sorted(set(CODES) - seen)
    assert not missing, f"no test mentions {missing}"
