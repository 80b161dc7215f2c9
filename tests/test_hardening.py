"""Inputs that used to crash, hang or take quadratic time: every one is a diagnostic now, or
works. Large inputs are generated here, not committed."""

from __future__ import annotations

import cProfile
import pstats
import re
from importlib import resources

import pytest

from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.frontend import build

from conftest import REPO
from test_errors import check_json

GEMM = REPO / "examples" / "gemm.zk"
SMALL = ("-D", "M=256", "-D", "N=256", "-D", "K=256")
M890 = resources.files("zhenwu_cc.runtime.targets").joinpath("m890.toml").read_text()


def chain(n: int, step: str = "{p} + 1.0") -> str:
    """A kernel of `n` bindings, each computed from the one before."""
    lines = [f"    y{i} = {step.format(p=f'y{i - 1}' if i else 'x')}" for i in range(n)]
    return ("kernel k(x: f32[16, 16], w: f32[16, 16]) -> f32[16, 16] {\n" + "\n".join(lines)
            + f"\n    return y{n - 1}\n}}\n")


# ---- reading sources -----------------------------------------------------------------------------
def test_invalid_utf8_is_zk0106_at_the_bad_byte(cli, tmp_path):
    path = tmp_path / "k.zk"
    path.write_bytes(b"kernel k(x: f32[4]) -> f32[4] {\n    return x // caf\xe9\n}\n")
    diag = check_json(cli("check", path, "--format", "json"), "ZK0106")
    assert (diag["span"]["line"], diag["span"]["col"]) == (2, 20)
    assert "0xe9" in diag["message"]


def test_a_utf8_byte_order_mark_is_accepted(cli, tmp_path):
    path = tmp_path / "k.zk"
    path.write_bytes(b"\xef\xbb\xbfkernel k(x: f32[4]) -> f32[4] {\n    return y\n}\n")
    diag = check_json(cli("check", path, "--format", "json"), "ZK0201")  # parsed, then checked
    assert (diag["span"]["line"], diag["span"]["col"]) == (2, 12)
    path.write_bytes(b"\xef\xbb\xbfkernel k(x: f32[4]) -> f32[4] {\n    return x\n}\n")
    assert cli("check", path).code == 0
    build("\ufeffkernel k(x: f32[4]) -> f32[4] {\n    return x\n}\n")  # the API too


def test_devices_are_refused_not_read_forever(cli):
    diag = check_json(cli("check", "/dev/zero", "--format", "json"), "ZK0001")
    assert "not a regular file" in diag["message"]
    diag = check_json(cli("cost", GEMM, "--target", "/dev/zero", "--format", "json"), "ZK0001")
    assert "not a regular file" in diag["message"]


def test_sources_and_target_files_have_a_size_cap(cli, tmp_path, monkeypatch):
    from zhenwu_cc import sources
    from zhenwu_cc.core import target

    monkeypatch.setattr(sources, "MAX_SOURCE_BYTES", 1000)
    big = tmp_path / "big.zk"
    big.write_text(GEMM.read_text() + "//" + "x" * 1000 + "\n")
    diag = check_json(cli("check", big, "--format", "json"), "ZK0001")
    assert "larger than the limit of 1000 bytes" in diag["message"]
    monkeypatch.setattr(target, "MAX_FILE_BYTES", 1000)
    toml = tmp_path / "big.toml"
    toml.write_text(M890)
    diag = check_json(cli("cost", GEMM, "--target", toml, "--format", "json"), "ZK0001")
    assert "larger than the limit of 1000 bytes" in diag["message"]


# ---- numbers and sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize("expr", ["1e309", "1e300 * 1e300", "1e308 + 1e308", "1e300 / 1e-300"])
def test_constants_beyond_f64_are_zk0107_not_inf(expr):
    with pytest.raises(CompileError) as info:
        build(f"kernel k(x: f32[4]) -> f32[4] {{\n    return x * ({expr})\n}}\n")
    assert info.value.diagnostics[0].code == "ZK0107"


def test_inf_is_still_written_inf():
    build("kernel k(x: f32[4]) -> f32[4] {\n    return max(x, -inf)\n}\n")


@pytest.mark.parametrize("define, code", [("K=1000000000000", "ZK0319"),
                                          (f"M={2**63 - 1}", "ZK0318"),
                                          ("M=4611686018427387904", "ZK0318")])
def test_sizes_beyond_i64_are_located_diagnostics(cli, define, code):
    diag = check_json(cli("compile", GEMM, "-D", define, "--format", "json"), code)
    assert diag["span"]["file"] == str(GEMM) and diag["span"]["line"] in (5, 6)


def test_the_matmul_flops_of_a_kernel_add_up_within_i64():
    """Each of two 2**62-FLOP matmuls fits; their total, which tile records, does not."""
    source = ("kernel k<M = 1048576, N = 2097152>(a: f8E4M3FN[M, M], b: f8E4M3FN[M, N]) -> "
              "f32[1, 1] {\n    c = a @ b\n    d = a @ b\n    return c[0:1, 0:1]\n}\n")
    with pytest.raises(CompileError) as info:
        build(source)
    (diag,) = info.value.diagnostics
    assert diag.code == "ZK0319" and diag.span.line == 3
    assert f"the kernel's matmuls take {2**63} FLOPs" in diag.message


def test_sizes_within_i64_but_beyond_hbm_are_zk0901(cli):
    check_json(cli("compile", GEMM, "-D", "K=100000000000", "--format", "json"), "ZK0901")


def test_sum_of_a_rank0_tensor_is_the_tensor(cli, zk_file):
    path = zk_file("kernel k(x: f32[]) -> f32[] {\n    return sum(x) + mean(x) + max(x)\n}\n")
    r = cli("compile", path, "--emit", "ppu")
    assert r.code == 0, r.out + r.err


@pytest.mark.parametrize("call", ["sum", "mean", "max", "logsumexp"])
def test_a_reduction_over_no_axes_is_its_input(call):
    """`axis=()` reduces over nothing, as in numpy: the zk op is not made at all."""
    module = build(f"kernel k(x: f32[4, 4]) -> f32[4, 4] {{\n    return {call}(x, axis=())\n}}\n")
    (kernel,) = module.ops
    assert [op.name for op in kernel.body.block.ops] == ["zk.return"]


# ---- long programs: no recursion in the passes -----------------------------------------------------
def test_a_long_chain_of_bindings_compiles(cli, zk_file):
    """~330 bindings used to exhaust Python's stack in `tile`."""
    r = cli("compile", zk_file(chain(700)), "--emit", "ppu")
    assert r.code == 0, r.out[-500:] + r.err[-2000:]


def test_a_long_chain_of_transposes_compiles(cli, zk_file):
    r = cli("compile", zk_file(chain(700, "transpose({p}) * 2.0")), "--emit", "tile")
    assert r.code == 0, r.out[-500:] + r.err[-2000:]


def test_a_long_chain_of_matmuls_compiles(cli, zk_file):
    """Each matmul needs the grid of the one before: grids nest as deep as the chain."""
    r = cli("compile", zk_file(chain(150, "{p} @ w")), "--emit", "tile")
    assert r.code == 0, r.out[-500:] + r.err[-2000:]
    assert r.out.count("tile.grid") == 150


def test_the_front_end_is_linear():
    """Work counted as Python function calls (deterministic, unlike a timing): each doubling of
    the statements adds twice the work of the previous doubling. A linear scan per statement
    (the old `owner in block.ops`) made that ratio about 2.3 at these sizes; linear is 2.0."""
    build(chain(10))  # the parser's lazy set-up is not the statements' work

    def calls(n: int) -> int:
        profile = cProfile.Profile()
        profile.enable()
        build(chain(n))
        profile.disable()
        return pstats.Stats(profile).total_calls

    c100, c200, c400 = calls(100), calls(200), calls(400)
    assert (c400 - c200) / (c200 - c100) < 2.1, (c100, c200, c400)


# ---- `opt` input -----------------------------------------------------------------------------------
@pytest.fixture
def ir(cli, tmp_path):
    """`compile --emit STAGE` of the small GEMM, written to a file."""
    def emit(stage: str):
        path = tmp_path / f"gemm.{stage}.mlir"
        assert cli("compile", GEMM, *SMALL, "--emit", stage, "-o", path).code == 0
        return path
    return emit


@pytest.mark.parametrize("stage, pipeline", [("tile", "tile"), ("zk", "tile,tile"),
                                             ("tile", "decompose,tile"), ("zk", "lower-ppu"),
                                             ("zk", "place-hbm,alloc-sram,lower-ppu")])
def test_a_pass_on_the_wrong_stage_is_zk1004(cli, ir, stage, pipeline):
    diag = check_json(cli("opt", ir(stage), "-p", pipeline, "--format", "json"), "ZK1004")
    assert "expects" in diag["message"]


def test_tile_on_a_zk_kernel_with_an_op_it_cannot_compute_is_zk1004(cli, tmp_path):
    path = tmp_path / "k.mlir"
    path.write_text("builtin.module {\n  zk.kernel @k(%a: tensor<4xi32>) -> (r: tensor<4xi32>) {\n"
                    "    %b = \"arith.addi\"(%a, %a) : (tensor<4xi32>, tensor<4xi32>) -> "
                    "tensor<4xi32>\n    zk.return %b : tensor<4xi32>\n  }\n}\n")
    diag = check_json(cli("opt", path, "-p", "tile", "--format", "json"), "ZK1004")
    assert "`arith.addi`" in diag["message"]


@pytest.mark.parametrize("text", [
    "builtin.module attributes {x = " + "[" * 300 + "]" * 300 + "} {}\n",
    "builtin.module {\n" * 300 + "}\n" * 300,
])
def test_deeply_nested_ir_is_zk1003(cli, tmp_path, text):
    path = tmp_path / "deep.mlir"
    path.write_text(text)
    diag = check_json(cli("opt", path, "--format", "json"), "ZK1003")
    assert diag["span"]["line"] >= 1


def test_ir_nested_as_deep_as_allowed_still_parses(cli, tmp_path):
    from zhenwu_cc.opt import MAX_NESTING

    path = tmp_path / "ok.mlir"
    depth = MAX_NESTING - 2
    path.write_text("builtin.module attributes {x = " + "[" * depth + "]" * depth + "} {}\n")
    assert cli("opt", path).code == 0


def test_bad_tile_sizes_in_ir_are_zk1001(cli, ir, tmp_path):
    text = ir("zk").read_text()
    path = tmp_path / "bad.mlir"
    path.write_text(text.replace("#zk.tile<[128, 128, 64]>", "#zk.tile<[0, -1, 64]>"))
    diag = check_json(cli("opt", path, "-p", "tile", "--format", "json"), "ZK1001")
    assert "must be >= 1" in diag["message"]


def test_zero_size_tensors_in_ir_are_zk1002(cli, tmp_path):
    path = tmp_path / "zero.mlir"
    path.write_text("builtin.module {\n  zk.kernel @k(%a: tensor<0x4xf32>) -> (r: tensor<0x4xf32>)"
                    " {\n    %b = zk.exp %a : tensor<0x4xf32>\n    zk.return %b : tensor<0x4xf32>"
                    "\n  }\n}\n")
    diag = check_json(cli("opt", path, "-p", "tile", "--format", "json"), "ZK1002")
    assert "dimensions must be >= 1" in diag["message"]


def test_a_reduction_over_no_axes_in_ir_is_zk1002(cli, tmp_path):
    path = tmp_path / "r.mlir"
    path.write_text("builtin.module {\n  zk.kernel @k(%a: tensor<f32>) -> (r: tensor<f32>) {\n"
                    "    %b = zk.reduce_sum %a axes [] : tensor<f32> -> tensor<f32>\n"
                    "    zk.return %b : tensor<f32>\n  }\n}\n")
    diag = check_json(cli("opt", path, "-p", "tile", "--format", "json"), "ZK1002")
    assert "at least one axis" in diag["message"]


# ---- target files ----------------------------------------------------------------------------------
def _with(field: str, value: str) -> str:
    """m890.toml with the value of the first `field = { value = ... }` replaced."""
    text, n = re.subn(rf"^{field} = {{ value = [^,]+,", f"{field} = {{ value = {value},", M890,
                      count=1, flags=re.M)
    assert n == 1, field
    return text


@pytest.mark.parametrize("field, value, words", [
    ("compute_units", str(2**63 - 1), "≤ 1048576"),
    ("count", str(2**63 - 1), "≤ 1048576"),  # hbm.stacks.count
    ("capacity", str(2**62), "does not fit in i64"),  # hbm.stacks.capacity × count
    ("clock", "inf", "outside"),
    ("clock", "1e-300", "outside"),
    ("clock", "1e300", "outside"),
])
def test_target_values_are_range_checked(field, value, words):
    from zhenwu_cc.core.target import parse_target

    with pytest.raises(CompileError) as info:
        parse_target(_with(field, value), "t.toml")
    (diag,) = info.value.diagnostics
    assert diag.code == "ZK0702" and words in diag.message


@pytest.mark.parametrize("tail", ["zz = " + "[" * 2000 + "]" * 2000,
                                  "zz = " + "{a = " * 500 + "1" + "}" * 500,
                                  ".".join(["zz"] * 3000) + " = 1"])
def test_deeply_nested_target_files_are_zk0702(tail):
    from zhenwu_cc.core.target import parse_target

    with pytest.raises(CompileError) as info:
        parse_target(M890 + "\n" + tail + "\n", "t.toml")
    assert info.value.diagnostics[0].code == "ZK0702"


def test_the_packaged_targets_pass_the_new_bounds():
    from zhenwu_cc.core.target import list_targets, load_target

    for name in list_targets():
        load_target(name)

