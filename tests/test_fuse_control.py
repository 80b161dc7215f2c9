"""`fuse NAME off`, `--no-fuse` and `cost --baseline`: the unfused program stays available, and
a `fuse NAME off` that no fusion asks about is refused (ZK0608), never dropped."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

import zhenwu_cc
from zhenwu_cc.core import attrs
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.passes.tiling.fuse_control import FuseControl
from zhenwu_cc.pipeline import default_pipeline, parse_pipeline

SRC = """kernel k<R = 8, C = 256>(x: f32[R, C], w: f32[C, C]) -> f32[R, C] {
    h = x @ w
    p = softmax(h, axis=-1)
    return p
}
schedule k {
    DIRECTIVE
}
"""


def _source(directive: str) -> str:
    return SRC.replace("DIRECTIVE", directive)


def _refusal(source: str, fuse: bool = True):
    with pytest.raises(CompileError) as e:
        zhenwu_cc.compile(source, fuse=fuse).module("tile")
    return e.value.diagnostics[0]


def test_fuse_off_on_a_value_in_no_fused_group_is_refused():
    d = _refusal(_source("fuse p off"))
    assert d.code == "ZK0608"
    assert d.message == "`fuse p off` has no effect: `p` is not part of a fused group"
    assert (d.span.line, d.span.col) == (7, 5)
    assert [n.span.line for n in d.notes] == [3]
    assert "drop `fuse p off`" in d.help


@pytest.mark.parametrize("directive,where", [("fuse p on", "the setting is `off`"),
                                             ("fuse x off", "names a parameter")])
def test_a_bad_fuse_directive_is_zk0609(directive, where):
    d = _refusal(_source(directive))
    assert d.code == "ZK0609" and where in d.message and d.span.line == 7


def test_fuse_twice_is_zk0407():
    assert _refusal(_source("fuse p off\n    fuse p off")).code == "ZK0407"


def test_without_fusion_fuse_off_is_not_checked():
    """With fusion off for the whole kernel nothing is fused, so `fuse p off` asks nothing."""
    compiled = zhenwu_cc.compile(_source("fuse p off"), fuse=False)
    assert compiled.module("tile") is not None


def _tile_kernel(source: str):
    """The kernel as the `tile` pass receives it (after decompose and cast)."""
    from zhenwu_cc.pipeline import make_context

    module = zhenwu_cc.compile(source).module("zk").clone()
    for p in parse_pipeline("decompose,cast"):
        p.apply(make_context(), module)
    return module.ops.first


def test_allows_honours_the_directive_and_the_option():
    """The hook the fusions call: a value carrying `fuse p off` (the op yielding the softmax
    after decompose) is never allowed, and asking counts as honouring the directive; other
    values are allowed exactly when the pass option is on."""
    kernel = _tile_kernel(_source("fuse p off"))
    ops = list(kernel.body.block.ops)
    (marked,) = [op for op in ops if attrs.FUSE in op.attributes]
    assert marked.results[0].name_hint == "p"
    other = next(op for op in ops if op is not marked and op.results)
    for enabled in (True, False):
        control = FuseControl(kernel, enabled)
        assert control.allows(other) is enabled
        with pytest.raises(CompileError) if enabled else nullcontext():
            control.check(ops)
        assert control.allows(marked) is False
        assert control.allows_all([other, marked]) is False
        control.check(ops)  # consulted: honoured


def test_the_tile_pass_option():
    spec = default_pipeline("tile", "m890", fuse=False)
    assert 'tile{target="m890" fuse=false}' in spec
    (tile,) = [p for p in parse_pipeline(spec) if p.name == "tile"]
    assert tile.fuse is False
    assert [p for p in parse_pipeline(default_pipeline("tile")) if p.name == "tile"][0].fuse
    assert zhenwu_cc.compile(_source("")).fuse is True


def test_no_fuse_on_every_command(cli, tmp_path):
    path = tmp_path / "k.zk"
    path.write_text(_source(""))
    r = cli("compile", path, "--no-fuse", "--emit", "tile", "--format", "json")
    assert r.code == 0 and "tile{target=\"m890\" fuse=false}" in r.json["pipeline"]
    for args in (["run", path], ["cost", path], ["eval", path, "--no-hints"],
                 ["compare", path, "--targets", "m890"], ["diff", path, path]):
        assert cli(*args, "--no-fuse").code == 0, args
    r = cli("compile", path, "--no-fuse", "-p", "decompose")
    assert r.code != 0 and "ZK0006" in r.err


def test_cost_baseline_is_the_ratio_of_the_two_costs(cli, tmp_path):
    """The record's speedup is the unfused time over the fused time, each costed separately
    through the API."""
    path = tmp_path / "k.zk"
    path.write_text(_source("split p 4"))
    fused = zhenwu_cc.compile(path).cost().time
    unfused = zhenwu_cc.compile(path, fuse=False).cost().time
    r = cli("cost", path, "--baseline", "--format", "json")
    assert r.json["baseline"] == {"fused_time_s": pytest.approx(fused, rel=1e-5),
                                  "unfused_time_s": pytest.approx(unfused, rel=1e-5),
                                  "speedup": pytest.approx(unfused / fused, rel=1e-5)}
    assert r.json["baseline"]["fused_time_s"] == r.json["cost"]["time_s"]
    assert f"{unfused / fused:.2f}× over the unfused kernel" in cli("cost", path, "--baseline").out
    assert "baseline" not in cli("cost", path, "--format", "json").json
    record = cli("eval", path, "--baseline", "--no-hints", "--format", "json").json
    assert record["baseline"] == r.json["baseline"]
    assert cli("cost", path, "--baseline", "--no-fuse").code == 2
