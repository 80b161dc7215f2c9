"""The sampled numerics check: its axes are truly independent (the sampled reference equals the
full one at the sampled indices, for every example and every program a check evaluates), it is
seeded, and `check_plan` picks a sample, or refuses fast, from shapes alone."""


import numpy as np
import pytest
from zhenwu_cc.api import _cast, _without_each_directive
from zhenwu_cc.runtime import check_sample, executor, reference
from zhenwu_cc.runtime.precision import host_inputs

import zhenwu_cc
from tests.test_examples import CASES, FILES


def _programs(k):
    return [(k.zk, "f64"), (k.cast, "typed"),
            *((_cast(w).ops.first, "typed") for _, w in _without_each_directive(k._zk))]


def _slice(sample, name, full):
    return sample.output(name, full)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_the_sampled_reference_is_the_full_one_at_the_sampled_indices(path):
    k = zhenwu_cc.compile(path, defines=CASES[path.stem][0])
    programs = _programs(k)
    classes = check_sample.independent(kernel for kernel, _ in programs)
    sample = check_sample.choose(classes, 2, seed=5)
    inputs = k.inputs(seed=1)
    for kernel, mode in programs:
        args = host_inputs(kernel, inputs) if kernel is not k.zk else inputs
        full = reference.evaluate(kernel, args, mode=mode)
        small = reference.evaluate(*sample.program(kernel, args), mode=mode)
        for name, value in full.items():
            want = np.asarray(_slice(sample, name, value), np.float64)
            got = np.asarray(small[name], np.float64)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(),
                                       err_msg=f"{kernel.sym_name.data} {mode} {name}")


def test_independent_axes_of_attention_and_gemm():
    att = zhenwu_cc.compile("examples/attention.zk", defines=CASES["attention"][0])
    axes = {tuple(sorted(m for m in mem if m[0] == "out")): n
            for mem, n in check_sample.independent(k for k, _ in _programs(att))}
    # batch, heads, query rows and v's columns; not the key axis (softmax and @ v mix it)
    assert axes == {(("out", "result0", 0),): 2, (("out", "result0", 1),): 3,
                    (("out", "result0", 2),): 24, (("out", "result0", 3),): 16}


@pytest.mark.parametrize("stem", ["cross_entropy", "attention_causal", "attention_gqa"])
def test_axes_that_an_op_reads_across_are_not_sampled(stem):
    # cross_entropy's mean over rows mixes N; a causal mask's iota reads the query index;
    # a reshape that splits heads is not followed
    k = zhenwu_cc.compile(f"examples/{stem}.zk", defines=CASES[stem][0])
    outs = {m for mem, _ in check_sample.independent(p for p, _ in _programs(k)) for m in mem
            if m[0] == "out"}
    mixed = {"cross_entropy": ("out", "loss", 0), "attention_causal": ("out", "result0", 2),
             "attention_gqa": ("out", "out", 1)}[stem]
    assert mixed not in outs


def test_the_sample_is_seeded():
    k = zhenwu_cc.compile("examples/gemm.zk", defines={"M": 64, "N": 48, "K": 8})
    classes = check_sample.independent(p for p, _ in _programs(k))
    a, b = check_sample.choose(classes, 4, 0), check_sample.choose(classes, 4, 0)
    assert a == b and a != check_sample.choose(classes, 4, 1)
    assert [len(idx) for _, idx in a.picks] == [4, 4]


def test_check_plan_samples_when_the_full_reference_does_not_fit(monkeypatch):
    k = zhenwu_cc.compile("examples/attention.zk", defines={"B": 2, "H": 4, "S": 256, "D": 32})
    assert k.check_plan() is None  # fits: the whole output is compared
    # the executor needs about 11 MiB, the full float64 check about 22 MiB
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "16M")
    plan = k.check_plan()
    assert plan is not None and plan.picks
    result = k.check(seed=2)
    (c,) = result.checks
    assert result.passed and c.sampled and "of 65536 elements" in c.sampled
    assert c.shape != (2, 4, 256, 32)
    # the largest error is reported at its place in the whole output
    assert all(0 <= i < n for i, n in zip(c.where, (2, 4, 256, 32)))


def test_a_wrong_element_in_the_sample_is_found(monkeypatch):
    k = zhenwu_cc.compile("examples/gemm.zk", defines={"M": 64, "N": 48, "K": 40})
    plan = k.check_plan(sample=8, seed=3)
    (rows, cols) = [idx for _, idx in plan.picks]
    inputs = k.inputs(seed=3)
    out = {n: np.asarray(v, np.float32).copy() for n, v in k.run(inputs).items()}
    out["c"][rows[2], cols[5]] += 1.0
    (c,) = k.compare(inputs, out, sample=plan)
    assert not c.passed and c.where == (rows[2], cols[5])


def test_refusal_comes_before_any_work_and_names_a_shape_that_fits(monkeypatch, cli):
    """The run itself fits 8 GiB (6.5 GiB), its full check (32.5 GiB) and any sample do not."""
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "8G")

    def never(*args, **kwargs):
        raise AssertionError("the refusal must come before anything is generated or run")

    for module, name in ((reference, "evaluate"), (reference, "random_inputs"),
                         (executor, "execute")):
        monkeypatch.setattr(module, name, never)
    r = cli("run", "examples/cross_entropy.zk", "--check", "--format", "json")
    assert r.code == 1
    (d,) = r.json["diagnostics"]
    assert d["code"] == "ZK0510" and "no sample is possible" in d["message"]
    assert "-D C=" in d["help"] and "fits" in d["help"]


def test_the_suggested_shape_does_fit(monkeypatch):
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "64M")
    k = zhenwu_cc.compile("examples/cross_entropy.zk")
    with pytest.raises(zhenwu_cc.core.diagnostics.CompileError) as e:
        k.check_plan()
    help_text = e.value.diagnostics[0].help
    defines = dict(part.split("=") for part in help_text.split("(")[1].split(" fits")[0]
                   .replace("-D ", "").split())
    smaller = zhenwu_cc.compile("examples/cross_entropy.zk",
                                defines={n: int(v) for n, v in defines.items()})
    assert smaller.check_plan() is None


def test_the_suggested_shape_keeps_the_softmax_axis(monkeypatch):
    """Rounding error grows with a softmax's length, not with its rows: the rows go first."""
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "1M")
    k = zhenwu_cc.compile("examples/softmax.zk", defines={"M": 64, "N": 4096})
    with pytest.raises(zhenwu_cc.core.diagnostics.CompileError) as e:
        k.check_plan(sample=64)
    assert "(-D M=4 fits)" in e.value.diagnostics[0].help


def test_an_explicit_sample_that_keeps_every_index_is_the_full_check(monkeypatch):
    k = zhenwu_cc.compile("examples/softmax.zk", defines={"M": 17, "N": 50})
    assert k.check_plan(sample=64) is None
    assert k.check_plan(sample=4) is not None
    monkeypatch.setenv("ZHENWU_MAX_HOST_BYTES", "1K")  # but not when the full check is too big
    with pytest.raises(zhenwu_cc.core.diagnostics.CompileError) as e:
        k.check_plan(sample=64)
    (d,) = e.value.diagnostics
    assert d.code == "ZK0510" and "--check-sample 64 keeps every axis whole" in d.message


def test_cli_check_sample(cli):
    args = ("run", "examples/gemm.zk", "-D", "M=40", "-D", "N=24", "-D", "K=16")
    r = cli(*args, "--check-sample", "8", "--format", "json")
    assert r.code == 0, r.out
    (c,) = r.json["check"]
    assert c["passed"] and c["sampled"].startswith("axis 0: 8 of 40, axis 1: 8 of 24")
    assert "(seeded; 64 of 960 elements)" in c["sampled"]
    text = cli(*args, "--check-sample", "8", "--seed", "1")
    assert "  sampled: axis 0: 8 of 40, axis 1: 8 of 24" in text.out
    full = cli(*args, "--check", "--format", "json").json["check"][0]
    assert full["sampled"] is None
    bad = cli(*args, "--check-sample", "0")
    assert bad.code == 2 and "expected an integer >= 1" in bad.err


MANY_OPS = """kernel many<B = 5, M = 6, N = 8>(x: f32[B, M, N], b: f32[N], m: f32[M, 1], t: f32[B, N, M])
    -> (y: f32[B, M, 2 * N], i: i32[B, M, 1], z: f32[B, M, N], w: f32[B, M, 4], u: f32[M, B],
        v: f32[B, 2, M]) {
    ln = layernorm(x, b, b, eps=1e-5)
    y = concat(ln, x * m, axis=2)
    i = argmax(x + transpose(t), axis=2, keepdims=true)
    z = where(x > broadcast_to(m, (B, M, N)), exp(x), f32(iota((B, M, N), axis=2)))
    w = x[:, :, 1:5] + reshape(b[1:5], (1, 1, 4))
    u = transpose(sum(x, axis=2))
    v = transpose(x, (0, 2, 1))[:, 0:2, :]
    return y, i, z, w, u, v
}
"""


def test_sampling_is_exact_through_every_op_family():
    k = zhenwu_cc.compile(MANY_OPS)
    classes = check_sample.independent([k.zk])
    found = {m for mem, _ in classes for m in mem}
    # the last axis is concatenated, cut by a slice, iota's axis, reduced
    assert not {m for m in found if m[0] == "out" and m[1] in "yzw" and m[2] == 2}
    assert ("out", "y", 0) in found and ("out", "u", 0) in found  # kept through transpose
    assert ("out", "v", 2) in found  # and through a slice that keeps the axis whole
    sample = check_sample.choose(classes, 3, seed=0)
    assert sample.picks
    inputs = k.inputs(seed=0)
    full = reference.evaluate(k.zk, inputs)
    small = reference.evaluate(*sample.program(k.zk, inputs))
    for name, value in full.items():
        np.testing.assert_allclose(small[name], sample.output(name, value), rtol=1e-12,
                                   err_msg=name)
