"""`zhenwu-cc serve`: one response a line, in order, with the request's id; bad requests are
diagnostics and the server goes on; the caches are bounded."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from zhenwu_cc.serve import MAX_LINE_BYTES, Lru, Server, serve

ROOT = Path(__file__).resolve().parent.parent
GEMM = str(ROOT / "examples" / "gemm.zk")
SMALL = {"M": 256, "N": 256, "K": 256}
BROKEN = "kernel k(x: f32[4]) -> f32[4] {\n    return exp(y)\n}\n"


def test_a_server_process_answers_good_and_bad_requests_in_order(tmp_path):
    lines = [
        json.dumps({"id": 1, "command": "check", "file": GEMM}),
        "this is not json",
        json.dumps({"id": "three", "command": "tune", "file": GEMM, "budget": 0}),
        json.dumps({"id": 4, "command": "chek", "file": GEMM}),
        json.dumps([1, 2]),
        json.dumps({"id": 6, "command": "cost"}),
        json.dumps({"id": 7, "command": "cost", "source": BROKEN}),
        json.dumps({"id": 8, "command": "eval", "file": GEMM, "defines": SMALL, "check": False}),
        json.dumps({"id": 9, "command": "eval", "file": GEMM, "defines": {"M": "256"}}),
        "",
        json.dumps({"id": 11, "command": "diff", "old": GEMM, "new": GEMM, "defines": SMALL}),
        json.dumps({"id": 12, "command": "cost", "file": GEMM, "defines": SMALL}),
        json.dumps({"id": 13, "command": "stats"}),
    ]
    done = subprocess.run([sys.executable, "-m", "zhenwu_cc", "serve"], cwd=ROOT,
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    got = [(r["id"], r["command"], r["exit_code"],
            [d["code"] for d in r["diagnostics"]]) for r in out]
    assert got == [
        (1, "check", 0, []),
        (None, None, 2, ["ZK1101"]),
        ("three", "tune", 2, ["ZK1103"]),
        (4, "chek", 2, ["ZK1102"]),
        (None, None, 2, ["ZK1101"]),
        (6, "cost", 2, ["ZK1103"]),
        (7, "cost", 1, ["ZK0201"]),
        (8, "eval", 0, []),
        (9, "eval", 2, ["ZK1103"]),
        (11, "diff", 0, []),
        (12, "cost", 0, []),
        (13, "stats", 0, []),
    ]
    assert out[1]["diagnostics"][0]["span"]["line"] == 2  # the request's line
    assert "did you mean `check`" in out[3]["diagnostics"][0]["help"]
    assert out[7]["schema"] == "zhenwu-cc.eval/1" and out[7]["numerics"]["status"] == "skipped"
    assert out[9]["schema"] == "zhenwu-cc.diff/1"
    assert out[0]["kernels"][0]["name"] == "gemm"
    assert out[10]["cost"]["time_s"] == out[7]["cost"]["time_s"]  # the cached kernel
    assert out[11]["kernels"]["hits"] >= 2 and out[11]["requests"] == 12


def test_eval_through_serve_is_the_cli_record(capsys):
    from zhenwu_cc.cli import main

    main(["eval", GEMM, "-D", "M=256", "-D", "N=256", "-D", "K=256", "--format", "json"])
    cli = json.loads(capsys.readouterr().out)
    served = Server().handle(json.dumps({"id": 1, "command": "eval", "file": GEMM,
                                         "defines": SMALL}), 1)
    assert served.pop("id") == 1
    assert served == cli


def test_repeated_requests_hit_the_cache():
    server = Server()
    request = json.dumps({"command": "cost", "file": GEMM, "defines": SMALL})
    first, second = server.handle(request, 1), server.handle(request, 2)
    assert first == second
    assert server.kernels.stats() == {"entries": 1, "limit": 64, "hits": 1, "misses": 1}


def test_the_cache_is_bounded():
    lru = Lru(3)
    for i in range(10):
        lru[i] = i
    assert list(lru) == [7, 8, 9] and lru.stats()["misses"] == 10
    assert lru[7] == 7 and list(lru) == [8, 9, 7]  # used last, evicted last


def test_an_edited_file_is_compiled_again(tmp_path):
    path = tmp_path / "k.zk"
    path.write_text("kernel k(x: f32[4]) -> f32[4] {\n    return exp(x)\n}\n")
    server = Server()
    request = json.dumps({"command": "check", "file": str(path)})
    assert server.handle(request, 1)["ok"]
    path.write_text(BROKEN)
    assert server.handle(request, 2)["diagnostics"][0]["code"] == "ZK0201"


def test_a_line_that_is_not_utf8_or_too_long_is_a_diagnostic():
    long = b'{"command": "check", "source": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n'
    stdin = io.BytesIO(b"\xff\xfe\n" + long + b'{"id": 3, "command": "stats"}\n')
    stdout = io.StringIO()
    assert serve(stdin, stdout) == 0
    out = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [r["diagnostics"][0]["code"] if r["diagnostics"] else r["id"] for r in out] == \
        ["ZK1101", "ZK1104", 3]


def test_field_types_are_checked():
    server = Server()
    for request, field in [({"command": "eval", "file": GEMM, "seed": -1}, "seed"),
                           ({"command": "eval", "file": GEMM, "check": "yes"}, "check"),
                           ({"command": "cost", "file": GEMM, "fuse": 0}, "fuse"),
                           ({"command": "eval", "file": GEMM, "max_rel_l2": 0}, "max_rel_l2"),
                           ({"command": "cost", "file": GEMM, "source": BROKEN}, "file"),
                           ({"command": 3}, "command")]:
        diag = server.handle(json.dumps(request), 1)["diagnostics"][0]
        assert diag["code"] == "ZK1103" and f"`{field}`" in diag["message"], request


def test_fuse_false_is_no_fuse_and_is_cached_apart():
    server = Server()
    unfused = server._compiled({"file": GEMM, "fuse": False}, "file", "source", 1)
    fused = server._compiled({"file": GEMM}, "file", "source", 2)
    assert (unfused.fuse, fused.fuse) == (False, True)
    assert server.handle(json.dumps({"command": "cost", "file": GEMM, "fuse": False}), 3)["ok"]


def _counting(monkeypatch, module, name: str) -> list:
    """Count the calls of `module.name` (still calling it)."""
    calls: list = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_an_edit_that_leaves_the_program_as_it_was_lowers_and_checks_nothing(monkeypatch):
    """A source edited outside the program (a comment after it) is compiled again, but its
    lowering, its numerics check and its hints' lowerings come from the cache kept by content;
    the record is the one a fresh server gives."""
    from zhenwu_cc import evaluate, pipeline

    source = Path(GEMM).read_text()
    server = Server()
    first = server.handle(json.dumps({"command": "eval", "source": source,
                                      "defines": SMALL}), 1)
    lowered, checked = _counting(monkeypatch, pipeline, "lower"), \
        _counting(monkeypatch, evaluate, "_check")
    edited = json.dumps({"command": "eval", "source": source + "// edited\n",
                         "defines": SMALL})
    again = server.handle(edited, 2)
    assert (len(lowered), len(checked)) == (0, 0)
    assert server.kernels.stats()["entries"] == 2  # compiled again: another source
    assert again == first == Server().handle(edited, 3)
    assert again["hints"], "the hints' edits were costed from the cache too"


def test_a_retiled_program_is_lowered_and_verified_once():
    """A served kernel with a new schedule is lowered (not found by content), verified once
    after the last pass rather than after each, and shared only then."""
    from zhenwu_cc import pipeline

    source = Path(GEMM).read_text()
    server = Server()
    compiled = server._compiled({"source": source.replace("[128, 128, 64]", "[64, 64, 32]"),
                                 "defines": SMALL}, "file", "source", 1)
    verified: list = []
    real = pipeline.verify
    pipeline.verify = lambda module, after: verified.append(after) or real(module, after)
    try:
        compiled.costing(compiled.target)
    finally:
        pipeline.verify = real
    assert verified == ["the ppu pipeline"]
    assert server.lowered.stats()["entries"] == 1
    plain = compiled.derived(compiled.module("zk").clone())
    plain._verify_once = False  # neither verified after each pass nor once: not shared
    plain.module("tile")
    assert server.lowered.stats()["entries"] == 1


def test_a_target_file_is_not_shared_by_content(tmp_path):
    import shutil

    from zhenwu_cc.api import compile

    toml = tmp_path / "chip.toml"
    shutil.copy(ROOT / "runtime" / "targets" / "m890.toml", toml)
    cache: dict = {}
    compile(GEMM, defines=SMALL, target=str(toml)).shared(cache).cost()
    assert cache == {}
    compile(GEMM, defines=SMALL).shared(cache).cost()
    assert len(cache) == 1
