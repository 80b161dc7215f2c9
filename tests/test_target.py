"""Target files: every packaged one loads and sources its numbers; bad files fail by field."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest
from zhenwu_cc.core.target import (
    FIELDS,
    PROVENANCES,
    TENSOR_DTYPES,
    list_targets,
    load_target,
    parse_target,
)

from zhenwu_cc.core.diagnostics import CompileError

GiB = 2**30
M890_TEXT = (resources.files("zhenwu_cc.runtime.targets") / "m890.toml").read_text("utf-8")


def test_packaged_targets():
    assert list_targets() == ["810e", "h100", "h20", "h200", "m890"]


@pytest.mark.parametrize("name", list_targets())
def test_every_number_carries_provenance(name):
    import tomllib

    raw = tomllib.loads((resources.files("zhenwu_cc.runtime.targets") / f"{name}.toml")
                        .read_text("utf-8"))

    def walk(table, path):
        if "value" in table:
            assert set(table) == {"value", "provenance", "source"}, path
            assert table["provenance"] in PROVENANCES, path
            assert len(table["source"]) > 10, path
            return
        for key, item in table.items():
            assert isinstance(item, dict) or key in ("schema", "name", "description"), \
                f"{name}: bare value at {path}{key}"
            if isinstance(item, dict):
                walk(item, f"{path}{key}.")

    walk(raw, "")
    target = load_target(name)
    assert target.name == name
    for dt in TENSOR_DTYPES:
        assert f"tensor.{dt}.support" in target.sources
    for path in FIELDS:
        if not path.startswith("tensor."):
            assert target.provenance(path).provenance in PROVENANCES


def test_hbm_stacks_and_capacity():
    m890 = load_target("m890")
    assert (m890.hbm.stacks, m890.hbm_capacity) == (6, 144 * GiB)
    assert m890.hbm_bandwidth == pytest.approx(4.0e12, rel=1e-6)
    assert load_target("h100").hbm_capacity == 80 * GiB
    assert load_target("h200").hbm_capacity == 141 * GiB
    assert load_target("h200").hbm_bandwidth == pytest.approx(4.8e12)


def test_tensor_peaks_and_support():
    h100, m890, e810, h20 = (load_target(n) for n in ("h100", "m890", "810e", "h20"))
    assert h100.tensor_peak("bf16") == (989.4e12, "native")
    assert h100.tensor_peak("f32") == (494.7e12, "native")  # f32_matmul = tf32
    assert h100.execution_dtype("f32") == ("tf32", "native")
    assert m890.execution_dtype("f32") == ("f32", "native")  # f32_matmul = f32
    assert m890.tensor_peak("f32")[0] == pytest.approx(50e12, rel=0.01)
    assert m890.tensor_peak("f16")[0] == pytest.approx(400e12, rel=0.01)
    assert m890.tensor_peak("f4E2M1FN") == (pytest.approx(1600e12, rel=0.01), "native")
    assert h100.tensor_peak("f4E2M1FN") == (1978.9e12, "emulated")
    assert h20.tensor_peak("f8E4M3FN") == (296e12, "native")
    assert e810.tensor_peak("f8E4M3FN") == (119e12, "emulated")
    assert e810.execution_dtype("f8E5M2") == ("f16", "emulated")
    assert e810.tensor_peak("tf32") == (0.0, "unsupported")
    assert m890.tensor_peak("i32") == (0.0, "unsupported")


def test_ridge_points_match_the_doc():
    # hardware-numerics.md §1.3: H100 BF16 295, H200 206, H20 37; M890 proposal 100.
    assert load_target("h100").ridge_point("bf16") == pytest.approx(295, abs=1)
    assert load_target("h200").ridge_point("bf16") == pytest.approx(206, abs=1)
    assert load_target("h20").ridge_point("bf16") == pytest.approx(37, abs=1)
    assert load_target("m890").ridge_point("f16") == pytest.approx(100, abs=1)


def test_provenance_lookup():
    m890, h100 = load_target("m890"), load_target("h100")
    assert m890.provenance("hbm.stacks.count").provenance == "derived"
    assert m890.provenance("compute_units").provenance == "assumed"
    total = m890.provenance("hbm.bandwidth")
    assert total.value == m890.hbm_bandwidth and total.provenance == "assumed"
    assert h100.provenance("hbm.bandwidth").provenance == "derived"
    assert h100.provenance("tensor.bf16.peak").provenance == "published"
    assert m890.provenance("tensor.f16.peak").provenance == "assumed"
    assert "calibrate_cost_model" in h100.provenance("efficiency.compute").source
    with pytest.raises(KeyError):
        m890.provenance("hbm.nonsense")


def test_names_and_paths(tmp_path):
    assert load_target() is load_target("m890")  # default, cached
    path = tmp_path / "mine.toml"
    path.write_text(M890_TEXT.replace('name = "m890"', 'name = "mine"'))
    assert load_target(str(path)).name == "mine"
    other = tmp_path / "sub"
    other.mkdir()
    (other / "chip").write_text(M890_TEXT)  # a "/" makes it a path even without .toml
    assert load_target(str(other / "chip")).name == "m890"
    # an edited file is read again
    path.write_text(M890_TEXT.replace('name = "m890"', 'name = "mine2"'))
    assert load_target(str(path)).name == "mine2"


def test_unknown_name_suggests():
    with pytest.raises(CompileError) as exc:
        load_target("m89")
    d = exc.value.diagnostics[0]
    assert d.code == "ZK0701" and "did you mean `m890`" in d.message
    assert "810e, h100, h20, h200, m890" in d.help


def test_missing_file(tmp_path):
    with pytest.raises(CompileError) as exc:
        load_target(str(tmp_path / "absent.toml"))
    assert exc.value.diagnostics[0].code == "ZK0001"


def _error(text: str):
    with pytest.raises(CompileError) as exc:
        parse_target(text, "bad.toml")
    d = exc.value.diagnostics[0]
    assert d.code == "ZK0702" and d.message.startswith("bad.toml: ") and d.help
    return d


def _replace_line(prefix: str, new: str) -> str:
    lines = M890_TEXT.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(hits) == 1, prefix
    lines[hits[0]] = new
    return "\n".join(lines)


def test_toml_syntax_error_has_a_position():
    d = _error(M890_TEXT + "\n[hbm\n")
    assert "not valid TOML" in d.message and d.span is not None and d.span.line > 1


@pytest.mark.parametrize("prefix,new,field,words", [
    ("bandwidth = { value = 666", "", "hbm.stacks.bandwidth", "missing"),
    ("compute_units =", 'compute_units = { value = "many", provenance = "assumed", source = "x" }',
     "compute_units.value", "expected an integer"),
    ("compute_units =", 'compute_units = { value = 1.5, provenance = "assumed", source = "x" }',
     "compute_units.value", "expected an integer"),
    ("compute_units =", "compute_units = 128", "compute_units", "value, provenance, source"),
    ("clock =", 'clock = { value = true, provenance = "assumed", source = "x" }', "clock.value",
     "expected a number"),
    ("compute = { value = 0.75", 'compute = { value = 1.5, provenance = "assumed", source = "x" }',
     "efficiency.compute.value", "≤ 1"),
    ("clock =", 'clock = { value = 0, provenance = "assumed", source = "x" }', "clock.value",
     "> 0"),
    ("clock =", 'clock = { value = 1e9, provenance = "guessed", source = "x" }',
     "clock.provenance", "guessed"),
    ("clock =", 'clock = { value = 1e9, provenance = "assumed", source = "" }', "clock.source",
     "non-empty"),
    ("f32_matmul =", 'f32_matmul = { value = "bf16", provenance = "assumed", source = "x" }',
     "f32_matmul.value", "tf32, f32"),
    ("persisting = {", 'persisting = { value = false, provenance = "assumed", source = "x" }',
     "l2.persisting_max_fraction", "must be 0"),
    ("bandwidth = { value = 666",
     'bandwith = { value = 6e11, provenance = "assumed", source = "x" }',
     "hbm.stacks.bandwith", "did you mean `hbm.stacks.bandwidth`"),
])
def test_malformed_fields_are_named(prefix, new, field, words):
    d = _error(_replace_line(prefix, new))
    assert f"field `{field}`" in d.message and words in d.message


def test_tensor_rate_rules():
    e810 = (resources.files("zhenwu_cc.runtime.targets") / "810e.toml").read_text("utf-8")
    d = _error(e810.replace('f32_matmul = { value = "f32"', 'f32_matmul = { value = "tf32"'))
    assert "field `f32_matmul`" in d.message and "tf32 is not native" in d.message
    text = M890_TEXT.replace(
        '[tensor.f4E2M1FN]\nsupport = { value = "native"',
        '[tensor.f4E2M1FN]\nsupport = { value = "emulated"')
    d = _error(text)
    assert "tensor.f4E2M1FN" in d.message and "needs `via`" in d.message
    tf32 = M890_TEXT.index("[tensor.tf32]")
    text = (M890_TEXT[:tf32] + '[tensor.tf32]\nsupport = { value = "unsupported", provenance = '
            '"assumed", source = "x" }\n' + M890_TEXT[M890_TEXT.index("[tensor.f16]"):])
    text = text.replace('[tensor.f4E2M1FN]\nsupport = { value = "native", provenance = '
                        '"published", source = "FP4', '[tensor.f4E2M1FN]\nvia = { value = '
                        '"tf32", provenance = "assumed", source = "x" }\nsupport = { value = '
                        '"emulated", provenance = "published", source = "FP4')
    text = text.replace("flops_per_clock_per_cu = { value = 8192", "# removed = { value = 8192")
    d = _error(text)
    assert "tensor.f4E2M1FN.via" in d.message and "not native" in d.message


def test_loading_stays_light():
    code = ("import sys, zhenwu_cc.core.target as t; t.load_target('m890'); "
            "print(any(m.split('.')[0] in ('numpy', 'xdsl', 'lark') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _fields(target) -> dict:
    """A loaded target as plain data (its classes compare by identity)."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return {k: plain(x) for k, x in vars(v).items()} if hasattr(v, "__dict__") else v
    return plain(target)


@pytest.mark.parametrize("name", list_targets())
def test_parsed_targets_are_current(name):
    """parsed.json holds each packaged file's document and checksum: after editing a .toml
    file, run `python -m zhenwu_cc.core.target`."""
    import json
    import tomllib
    import zlib

    from zhenwu_cc.core import target

    folder = resources.files("zhenwu_cc.runtime.targets")
    data = (folder / f"{name}.toml").read_bytes()
    parsed = json.loads((folder / target.PARSED).read_text("utf-8"))
    assert sorted(parsed) == list_targets()
    assert parsed[name]["crc32"] == zlib.crc32(data)
    assert parsed[name]["doc"] == tomllib.loads(data.decode("utf-8"))
    assert _fields(load_target(name)) == _fields(parse_target(data.decode("utf-8"),
                                                              f"{name}.toml"))


def test_a_packaged_target_is_read_from_its_parsed_document(monkeypatch):
    """The parsed document is used while its checksum is the file's, and ignored (the file is
    parsed) once the file changes."""
    import tomllib
    import zlib

    from zhenwu_cc.core import target

    doc = tomllib.loads(M890_TEXT)
    doc["description"] = "from parsed.json"
    crc = zlib.crc32(M890_TEXT.encode("utf-8"))
    monkeypatch.setattr(target, "_parsed", lambda: {"m890": {"crc32": crc, "doc": doc}})
    assert target._load_packaged.__wrapped__("m890").description == "from parsed.json"
    monkeypatch.setattr(target, "_parsed", lambda: {"m890": {"crc32": crc + 1, "doc": doc}})
    assert target._load_packaged.__wrapped__("m890").description == tomllib.loads(
        M890_TEXT)["description"]
