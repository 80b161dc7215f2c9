"""What `run --check` may call ok: inconclusive comparisons (all zero, NaN, underflow), the error
against the exact math and the yardstick beside it, an exact-math budget, and random inputs
that suit each parameter's dtype and role (scale codes, log/sqrt domains, --input-range)."""

import io

import numpy as np
import pytest
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.runtime import check, reference

import zhenwu_cc

KL = """kernel kl<N = 16, C = 32>(p: f32[N, C], q: f32[N, C]) -> f32[N] {
    return sum(p * (log(p) - log(q)), axis=-1)
}
"""
DEQUANT = """kernel dequant(x: f32[16, 8], e: ui8[16, 1]) -> f16[16, 8] {
    return f16(x * pow(2.0, f32(e) - 127.0))
}
"""
MX = """kernel g<M = 32, N = 32, K = 64>(x: bf16[M, K], w: bf16[K, N]) -> bf16[M, N] {
    return bf16(x @ w)
}
schedule g {
    precision x, w as f8E4M3FN scale mx
}
"""


# ---- the verdict ------------------------------------------------------------------------------
def test_an_all_zero_reference_is_inconclusive():
    zero = np.zeros(8)
    c = check.compare("y", "f32", zero, zero, zero)
    assert not c.passed and c.inconclusive and "all zero" in c.reason


def test_an_all_zero_output_is_inconclusive_even_when_the_typed_program_underflows_too():
    ref = np.full(8, 3.0)
    zero = np.zeros(8)
    c = check.compare("y", "f32", zero, ref, zero)  # tolerance 2 x |typed - ref| would pass it
    assert c.max_abs <= c.tolerance
    assert not c.passed and c.inconclusive and c.reason == "the output is all zero"


def test_an_all_zero_output_outside_the_tolerance_fails_rather_than_being_inconclusive():
    ref = np.full(8, 3.0)
    c = check.compare("y", "f32", np.zeros(8), ref, ref)
    assert not c.passed and not c.inconclusive and "above the tolerance" in c.reason


def test_nan_matching_nan_is_not_ok():
    nan = np.full(4, np.nan)
    c = check.compare("y", "f32", nan, nan, nan)
    assert not c.passed and c.inconclusive and "all NaN" in c.reason


def test_some_nan_in_the_reference_is_not_ok():
    ref = np.array([1.0, np.nan, 2.0, 3.0])
    c = check.compare("y", "f32", ref.copy(), ref, ref)
    assert not c.passed and c.inconclusive and "1 NaN value(s) of 4" in c.reason


def test_infinities_alone_are_inconclusive():
    inf = np.array([np.inf, -np.inf])
    c = check.compare("y", "f32", inf.copy(), inf, inf)
    assert not c.passed and c.inconclusive and "no finite value" in c.reason


def test_a_reference_below_the_smallest_normal_is_an_underflow():
    ref = np.full(4, 1e-6)  # below f16's smallest normal, 6.1e-5
    c = check.compare("y", "f16", ref.copy(), ref, ref)
    assert not c.passed and c.inconclusive and "underflows" in c.reason
    assert check.compare("y", "f32", ref.copy(), ref, ref).passed


def test_tiny_outputs_get_a_relative_tolerance_not_an_absolute_floor():
    ref = np.full(4, 1e-20)
    c = check.compare("y", "f32", 2 * ref, ref, ref)  # 100% off, but far below 1e-12
    assert not c.passed and not c.inconclusive and "above the tolerance" in c.reason


def test_a_budget_against_the_exact_math_judges_the_precision_choice():
    ref = np.linspace(1.0, 2.0, 16)
    typed = ref * 1.01  # the schedule's own error: 1%
    got = typed.copy()
    assert check.compare("y", "f32", got, ref, typed).passed
    c = check.compare("y", "f32", got, ref, typed, max_rel_l2=1e-3)
    assert not c.passed and not c.inconclusive and "above the budget 0.001" in c.reason
    assert check.compare("y", "f32", got, ref, typed, max_rel_l2=0.02).passed


def test_the_report_names_the_exact_math_and_the_yardstick():
    k = zhenwu_cc.compile(MX)
    result = k.check(seed=0)
    (c,) = result.checks
    doc = c.to_dict()
    assert doc["errors_against"].startswith("exact math")
    assert "typed `cast` program" in doc["yardstick"] and "bf16" in doc["yardstick"]
    # the exact-math figure of an MX kernel is its quantisation error, which the yardstick
    # program carries too
    assert 0.005 < doc["rel_l2_error"] < 0.2
    assert doc["typed_rel_l2_error"] == pytest.approx(doc["rel_l2_error"], rel=0.2)
    text = str(result)
    assert "against the exact math (float64, no casts): rel L2 error" in text
    assert "verdict's yardstick: 2 x the typed `cast` program's error" in text


def test_cli_max_rel_l2_fails_a_precision_choice_the_yardstick_accepts(cli, zk_file):
    path = zk_file(MX)
    assert cli("run", path, "--check").code == 0
    r = cli("run", path, "--max-rel-l2", "0.001", "--format", "json")
    assert r.code == 1
    (d,) = r.json["diagnostics"]
    assert d["code"] == "ZK0508"
    (c,) = r.json["check"]
    assert c["max_rel_l2"] == 0.001 and "above the budget" in c["reason"]
    assert "rel L2 error against the exact math <= 0.001" in c["yardstick"]


def test_cli_kl_on_negative_inputs_is_inconclusive_zk0509(cli, zk_file):
    r = cli("run", zk_file(KL), "--check", "--input-range", "p=-1:-0.5", "--format", "json")
    assert r.code == 1
    assert [d["code"] for d in r.json["diagnostics"]] == ["ZK0509"]
    (c,) = r.json["check"]
    assert c["passed"] is False and c["inconclusive"] is True and "NaN" in c["reason"]
    text = cli("run", zk_file(KL), "--check", "--input-range", "p=-1:-0.5")
    assert "check result0: INCONCLUSIVE" in text.out and "error[ZK0509]" in text.err


# ---- random inputs by dtype and role --------------------------------------------------------
def test_log_and_sqrt_operands_are_drawn_positive():
    k = zhenwu_cc.compile(KL)
    assert reference.input_roles(k.zk) == {"p": "positive", "q": "positive"}
    inputs = k.inputs(seed=4)
    assert all(float(v.min()) >= 0.01 and float(v.max()) <= 1.0 for v in inputs.values())
    assert k.check(seed=4).passed


@pytest.mark.parametrize("body, positive", [
    ("sqrt(x + 1e-6)", True), ("rsqrt(max(x, 0.5))", True), ("pow(x, 0.5)", True),
    ("pow(x, 2.0)", False), ("log(x * y)", False), ("exp(x) + y", False),
    ("log(x - 1.0)", False), ("pow(x, inf)", True)])
def test_which_parameters_need_positive_values(body, positive):
    k = zhenwu_cc.compile(f"kernel k(x: f32[4], y: f32[4]) -> f32[4] {{ return {body} }}")
    assert (reference.input_roles(k.zk).get("x") == "positive") is positive


def test_ui8_scale_codes_are_drawn_around_the_bias():
    k = zhenwu_cc.compile(DEQUANT)
    assert reference.input_roles(k.zk) == {"e": "scale_code"}
    e = k.inputs(seed=0)["e"]
    assert e.dtype == np.uint8 and 123 <= int(e.min()) and int(e.max()) <= 131
    assert len(np.unique(e)) > 3
    result = k.check(seed=0)
    assert result.passed, str(result)


def test_ui8_scale_codes_from_0_to_7_underflow_and_the_check_says_so():
    k = zhenwu_cc.compile(DEQUANT)
    (c,) = k.check(seed=0, ranges={"e": (0, 7)}).checks
    assert not c.passed and c.inconclusive and "underflows" in c.reason


def test_integers_under_a_square_root_are_drawn_positive():
    k = zhenwu_cc.compile("kernel k(n: i8[64]) -> f32[64] { return sqrt(f32(n)) }")
    assert reference.input_roles(k.zk) == {"n": "positive"}
    n = k.inputs(seed=0)["n"]
    assert 1 <= int(n.min()) and int(n.max()) <= 7
    assert k.check(seed=0).passed


def test_an_unsigned_byte_that_is_no_scale_code_keeps_small_values():
    k = zhenwu_cc.compile("kernel k(x: f32[8], n: ui8[8]) -> f32[8] { return x * f32(n) }")
    assert reference.input_roles(k.zk) == {}
    assert int(k.inputs(seed=0)["n"].max()) <= 7


def test_input_ranges_bound_the_random_values_and_are_seeded():
    k = zhenwu_cc.compile("kernel k(x: f32[64], n: i8[64]) -> f32[64] { return x * f32(n) }")
    a = k.inputs(seed=2, ranges={"x": (3.0, 4.0), "n": (-2, 2)})
    assert 3.0 <= float(a["x"].min()) and float(a["x"].max()) < 4.0
    assert set(np.unique(a["n"]).tolist()) == {-2, -1, 0, 1, 2}
    b = k.inputs(seed=2, ranges={"x": (3.0, 4.0), "n": (-2, 2)})
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["x"], k.inputs(seed=3, ranges={"x": (3.0, 4.0)})["x"])


@pytest.mark.parametrize("ranges, words", [
    ({"z": (0.0, 1.0)}, "not a parameter"), ({"x": (1.0, 1.0)}, "empty or not finite"),
    ({"x": (0.0, float("inf"))}, "empty or not finite"), ({"n": (0.5, 3.0)}, "has a fraction"),
    ({"n": (-200.0, 0.0)}, "leaves i8's range"), ({"x": (0.0, 1e39)}, "leaves f32's range")])
def test_bad_input_ranges_are_zk0511(ranges, words):
    k = zhenwu_cc.compile("kernel k(x: f32[4], n: i8[4]) -> f32[4] { return x * f32(n) }")
    with pytest.raises(CompileError) as e:
        k.inputs(ranges=ranges)
    (d,) = e.value.diagnostics
    assert d.code == "ZK0511" and words in d.message and d.help


def test_cli_input_range(cli, zk_file, tmp_path):
    out = tmp_path / "o.npz"
    path = zk_file("kernel k(x: f32[32]) -> f32[32] { return x }")
    r = cli("run", path, "--reference", "--input-range", "x=5:6", "--out", out)
    assert r.code == 0, r.err
    y = np.load(out)["x"]  # a returned parameter keeps its name
    assert 5.0 <= float(y.min()) and float(y.max()) < 6.0
    bad = cli("run", path, "--input-range", "x=5", "--reference")
    assert bad.code == 2 and "expected NAME=LO:HI" in bad.err


def _npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_cli_warns_about_parameters_that_inputs_leaves_random(cli, zk_file, tmp_path):
    path = zk_file(KL)
    partial, full = tmp_path / "p.npz", tmp_path / "pq.npz"
    _npz(partial, p=np.full((16, 32), 0.5, np.float32))
    _npz(full, p=np.full((16, 32), 0.5, np.float32), q=np.full((16, 32), 0.25, np.float32))
    r = cli("run", path, "--reference", "--inputs", partial, "--format", "json")
    assert r.code == 0
    (d,) = r.json["diagnostics"]
    assert d["code"] == "ZK0501" and d["severity"] == "warning" and "for q:" in d["message"]
    text = cli("run", path, "--reference", "--inputs", partial)
    assert text.code == 0 and "warning[ZK0501]: --inputs gives no array for q" in text.err
    assert cli("run", path, "--reference", "--inputs", full, "--format", "json"
               ).json["diagnostics"] == []


def test_cli_json_says_how_each_random_input_was_drawn(cli, zk_file, tmp_path):
    partial = tmp_path / "p.npz"
    _npz(partial, p=np.full((16, 32), 0.5, np.float32))
    r = cli("run", zk_file(KL), "--reference", "--format", "json")
    assert r.json["inputs"] == [{"name": "p", "source": "random", "role": "positive"},
                                {"name": "q", "source": "random", "role": "positive"}]
    r = cli("run", zk_file(KL), "--reference", "--inputs", partial, "--input-range", "q=2:3",
            "--format", "json")
    assert r.json["inputs"] == [{"name": "p", "source": "file"},
                                {"name": "q", "source": "random", "range": [2.0, 3.0]}]


def test_a_budget_tells_mx_floor_from_rceil_where_the_yardstick_passes_both():
    floor = zhenwu_cc.compile(MX)
    rceil = zhenwu_cc.compile(MX.replace("scale mx", "scale mx(rceil)"))
    (f,), (r,) = floor.check(seed=0).checks, rceil.check(seed=0).checks
    assert f.passed and r.passed  # each within its own typed program's error
    assert f.rel_l2 > 1.05 * r.rel_l2  # floor saturates block maxima that rceil keeps
    budget = (f.rel_l2 + r.rel_l2) / 2
    assert not floor.check(seed=0, max_rel_l2=budget).passed
    assert rceil.check(seed=0, max_rel_l2=budget).passed
