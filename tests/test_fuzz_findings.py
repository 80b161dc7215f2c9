"""Regression tests for what `make fuzz` (tests/fuzzer.py) found: each was an internal error
(exit 3) and is now a located diagnostic. Inputs are made here from the examples."""

import io
import struct
import zipfile

import numpy as np
import pytest

import zhenwu_cc
from conftest import EXAMPLES


@pytest.fixture(scope="module")
def gemm_ir():
    k = zhenwu_cc.compile(EXAMPLES / "gemm.zk", defines={"M": 16, "N": 16, "K": 16})
    return {stage: k.ir(stage) for stage in ("zk", "tile", "ppu")}


def opt(cli, tmp_path, text: str, *passes: str):
    path = tmp_path / "in.mlir"
    path.write_text(text)
    return cli("opt", path, "-p", ",".join(passes), "--format", "json")


def codes(result) -> list[str]:
    return [d["code"] for d in result.json["diagnostics"]]


def test_an_attribute_failing_its_verifier_while_parsed_is_a_parse_error(cli, tmp_path, gemm_ir):
    bad = gemm_ir["ppu"].replace("#ppu.space<sram>", "#ppu.space<sr>", 1)
    r = opt(cli, tmp_path, bad, "cse")
    assert (r.code, codes(r)) == (1, ["ZK1001"])
    assert "unknown memory space 'sr'" in r.json["diagnostics"][0]["message"]


@pytest.mark.parametrize("literal", ["99999999999999999999999", "9223372036854775808"])
def test_integers_beyond_i64_in_ir_are_parse_errors(cli, tmp_path, literal):
    text = ("zk.kernel @k(%x: tensor<16x16xf32>) -> (r: tensor<16xf32>) {\n"
            f"  %0 = zk.logsumexp %x axes [{literal}] : tensor<16x16xf32> -> tensor<16xf32>\n"
            "  zk.return %0 : tensor<16xf32>\n}\n")
    r = opt(cli, tmp_path, text, "tile")
    assert (r.code, codes(r)) == (1, ["ZK1001"])
    assert "out of range" in r.json["diagnostics"][0]["message"]
    assert r.json["diagnostics"][0]["span"]["line"] == 2


def test_cast_refuses_tiled_ir(cli, tmp_path):
    k = zhenwu_cc.compile(EXAMPLES / "gemm_nvfp4.zk", defines={"M": 64, "N": 64, "K": 64})
    r = opt(cli, tmp_path, k.ir("tile"), "cast")
    assert (r.code, codes(r)) == (1, ["ZK1004"])


def test_a_store_of_a_tensor_from_outside_the_grid_does_not_verify(cli, tmp_path, gemm_ir):
    text = gemm_ir["tile"]
    store = next(line for line in text.splitlines() if "tile.store" in line)
    stored = store.split("tile.store ")[1].split(",")[0]
    bad = text.replace(store, store.replace(f"tile.store {stored},", "tile.store %0,", 1))
    r = opt(cli, tmp_path, bad, "lower-ppu")
    assert (r.code, codes(r)) == (1, ["ZK1002"])
    assert "computed inside its tile.grid" in r.json["diagnostics"][0]["message"]


def test_an_npz_needing_an_unknown_zip_version_is_unreadable(cli, tmp_path):
    buf = io.BytesIO()
    np.savez(buf, a=np.ones((16, 16), np.float16), b=np.ones((16, 16), np.float16))
    data = bytearray(buf.getvalue())
    for signature, field in ((b"PK\x03\x04", 4), (b"PK\x01\x02", 6)):  # local, central header
        at = data.find(signature)
        while at >= 0:
            struct.pack_into("<H", data, at + field, 87)  # "version needed": 8.7
            at = data.find(signature, at + 4)
    (tmp_path / "in.npz").write_bytes(bytes(data))
    with pytest.raises(NotImplementedError):  # what zipfile itself does with it
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            z.read(z.infolist()[0])
    r = cli("run", EXAMPLES / "gemm.zk", "-D", "M=16", "-D", "N=16", "-D", "K=16",
            "--inputs", tmp_path / "in.npz", "--format", "json")
    assert (r.code, codes(r)) == (1, ["ZK0504"])


@pytest.mark.parametrize("text", ["\x00", "\x01builtin.module {}", "\"unterminated"])
def test_ir_whose_first_token_is_bad_is_a_parse_error(cli, tmp_path, text):
    """The parser reads its first token when it is made: that error is located too."""
    r = opt(cli, tmp_path, text, "cse")
    assert (r.code, codes(r)) == (1, ["ZK1001"])


def test_opt_reads_standard_input_up_to_the_cap(monkeypatch, cli):
    from zhenwu_cc import sources

    monkeypatch.setattr(sources, "MAX_SOURCE_BYTES", 64)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b" " * 65)))
    r = cli("opt", "-", "--format", "json")
    assert (r.code, codes(r)) == (1, ["ZK0001"])
    assert "larger than the limit of 64 bytes" in r.json["diagnostics"][0]["message"]


def test_a_grid_size_beyond_i64_in_ppu_ir_is_a_parse_error(cli, tmp_path, gemm_ir):
    text = gemm_ir["ppu"]
    grid = text[text.index("ppu.launch ["):].split("]")[0] + "]"
    bad = text.replace(grid, "ppu.launch [99999999999999999999999, 1]", 1)
    r = opt(cli, tmp_path, bad, "cse")
    assert (r.code, codes(r)) == (1, ["ZK1001"])
    assert "out of range" in r.json["diagnostics"][0]["message"]


def test_a_value_used_outside_the_region_that_defines_it_does_not_verify(cli, tmp_path,
                                                                        gemm_ir):
    """An op of a tile.loop's body copied out of the loop still names the loop's values."""
    lines = gemm_ir["tile"].splitlines()
    mma = next(line for line in lines if "tile.mma" in line)
    loop = next(i for i, line in enumerate(lines) if "tile.loop" in line)
    bad = "\n".join(lines[:loop] + [mma.replace("%", "%copy_", 1)] + lines[loop:])
    r = opt(cli, tmp_path, bad, "alloc-sram")
    assert (r.code, codes(r)) == (1, ["ZK1002"])
    assert "not defined before it" in r.json["diagnostics"][0]["message"]


def test_a_value_never_defined_is_a_parse_error(cli, tmp_path, gemm_ir):
    text = gemm_ir["tile"]
    grid = next(line for line in text.splitlines() if "tile.grid" in line)
    source = grid.split("ins(")[1].split(" = ")[1].split(" :")[0]  # the first input, e.g. %a
    r = opt(cli, tmp_path, text.replace(grid, grid.replace(f"= {source} :", "= %nowhere :", 1)),
            "cse")
    assert (r.code, codes(r)) == (1, ["ZK1001"])
    assert "nowhere" in r.json["diagnostics"][0]["message"]


def test_an_npy_header_that_does_not_parse_is_unreadable(cli, tmp_path):
    header = b"{'descr': '<f2', 'fortran_order': False, 'shape': (16, 16"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n"
    with zipfile.ZipFile(tmp_path / "in.npz", "w") as z:
        z.writestr("a.npy", member + b"\0" * 512)
    r = cli("run", EXAMPLES / "gemm.zk", "-D", "M=16", "-D", "N=16", "-D", "K=16",
            "--inputs", tmp_path / "in.npz", "--format", "json")
    assert (r.code, codes(r)) == (1, ["ZK0504"])


def test_a_use_before_its_definition_does_not_verify(cli, tmp_path):
    """xDSL's parser accepts it (graph-like blocks); the passes assume dominance."""
    text = ("zk.kernel @k(%x: tensor<4xf32>) -> (r: tensor<4xf32>) {\n"
            "  %a = zk.exp %b : tensor<4xf32>\n  %b = zk.exp %x : tensor<4xf32>\n"
            "  zk.return %a : tensor<4xf32>\n}\n")
    r = opt(cli, tmp_path, text, "cse")
    assert (r.code, codes(r)) == (1, ["ZK1002"])


@pytest.mark.parametrize("attribute, value, says", [
    ("zk.accumulate", "index", "zk.accumulate must be one of the types f32, f16, bf16"),  # seed 5
    ("zk.accumulate", "f8E4M3FN", "zk.accumulate must be one of the types"),
    ("zk.buffers", '"two"', "zk.buffers must be an integer in 1..8"),
    ("zk.buffers", "0 : i64", "zk.buffers must be an integer in 1..8"),
    ("zk.accumulate_mode", '"fast"', "zk.accumulate_mode must be one of 'fp8_fast'"),
    ("zk.accumulate_mode", "3 : i64", "zk.accumulate_mode must be one of 'fp8_fast'"),
])
def test_schedule_attributes_on_a_kernel_are_verified(cli, tmp_path, gemm_ir, attribute, value,
                                                      says):
    """`make fuzz` (seed 5) wrote `zk.accumulate = index` and `tile` crashed reading it as an
    element type; the kernel's other schedule attributes had the same gap."""
    text = gemm_ir["zk"].replace("zk.buffers = 2 : i64", f"{attribute} = {value}", 1)
    assert text != gemm_ir["zk"]
    r = opt(cli, tmp_path, text, "tile", "lower-ppu", "cast")
    assert (r.code, codes(r)) == (1, ["ZK1002"])
    assert says in r.json["diagnostics"][0]["message"]
