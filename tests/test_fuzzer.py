"""The forking fuzz harness (tests/fuzzer.py) at a size the normal suite can afford: every
generator's inputs through the real CLI, with no internal error, hang, stray signal or traceback.
`make fuzz` runs the same harness at 100,000 cases."""

import pytest

import fuzzer

COUNT = 600


def test_fuzz_cases_are_deterministic():
    a, b = fuzzer.make_case(7, 123), fuzzer.make_case(7, 123)
    assert (a.kind, a.argv, a.files) == (b.kind, b.argv, b.files)
    assert fuzzer.make_case(7, 124).files != a.files or fuzzer.make_case(7, 124).argv != a.argv


def test_every_generator_is_drawn():
    kinds = {fuzzer.make_case(0, i).kind for i in range(200)}
    assert kinds == set(fuzzer.GENERATORS)


def test_a_crash_is_a_finding(tmp_path, monkeypatch):
    """The harness must see what it is there to see: an exception escaping a command's code."""
    from zhenwu_cc import cli

    def explode(args, sources):
        raise ZeroDivisionError("planted")

    monkeypatch.setitem(cli.COMMANDS, "check", explode)
    case = fuzzer.Case(0, "planted", ["check", "k.zk"], {"k.zk": b"kernel k() -> f32[] {}"})
    result = fuzzer.run_case(case, tmp_path)
    assert (result.status, result.code) == ("internal-error", 3)


@pytest.mark.parametrize("shard", [0, 1])
def test_no_findings(shard, tmp_path):
    report = fuzzer.fuzz(seed=0, indices=range(shard, COUNT, 2), findings=tmp_path)
    assert report["cases"] == COUNT // 2
    assert report["findings"] == [], "\n".join(
        f"{f['verdict']}: zhenwu-cc {' '.join(f['argv'])}\n{f['stderr_tail']}"
        for f in report["findings"])
