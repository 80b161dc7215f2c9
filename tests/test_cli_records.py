"""Records as data and as text: `to_dict()` is the plain dict the CLI embeds in its JSON
document, `to_json()` the same record as JSON text (key order kept, as the CLI prints it)."""

from __future__ import annotations

import json

import numpy as np

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError

SRC = """kernel k<N = 64>(x: f32[N]) -> f32[N] {
    y = exp(x)
    return y
}
"""


def test_estimate_to_dict_is_the_cost_commands_record(cli, zk_file):
    path = zk_file(SRC)
    est = zhenwu_cc.compile(path).cost()
    record = est.to_dict()
    assert isinstance(record, dict) and record["schema"] == "zhenwu-cc.cost/1"
    assert est.to_json() == json.dumps(record, indent=2)
    assert list(json.loads(est.to_json())) == list(record)  # the key order is kept
    assert cli("cost", path, "--format", "json").json["cost"] == record


def test_diagnostic_to_dict_is_the_clis_record(cli, zk_file):
    bad = SRC.replace("exp(x)", "exp(xx)")
    try:
        zhenwu_cc.compile(bad)
    except CompileError as exc:
        (diag,) = exc.diagnostics
    record = diag.to_dict()
    assert record["code"] == "ZK0201" and record["span"]["line"] == 2
    assert diag.to_json() == json.dumps(record, indent=2)
    printed = cli("check", zk_file(bad), "--format", "json").json["diagnostics"][0]
    assert list(printed) == list(record)
    assert (printed["message"], printed["help"]) == (record["message"], record["help"])


def test_check_record_to_dict_and_to_json():
    (check,) = zhenwu_cc.compile(SRC).check(seed=0).checks
    record = check.to_dict()
    assert record["name"] == "y" and isinstance(record["passed"], bool)
    assert check.to_json() == json.dumps(record, indent=2)
    assert np.isfinite(record["max_abs_error"])
