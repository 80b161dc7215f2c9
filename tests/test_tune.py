"""`tune`: the search space and its pruning, determinism, exhaustive against Optuna, verification,
`--write`, bad arguments, the cache, `serve`, and Dask giving the same leaderboard."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import zhenwu_cc
from zhenwu_cc import tune_cache, tune_eval
from zhenwu_cc.cli import main
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.core.target import load_target
from zhenwu_cc.tune_space import Schedule

ROOT = Path(__file__).resolve().parent.parent
GEMM = ROOT / "examples" / "gemm.zk"
TINY = {"M": 32, "N": 32, "K": 32}  # 64 schedules: searched exhaustively with budget 64
SMALL = {"M": 64, "N": 64, "K": 64}  # 216 schedules


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory (never the user's)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZHENWU_CACHE_DIR", str(cache))
    return cache


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _defines(d: dict) -> list[str]:
    return [x for k, v in d.items() for x in ("-D", f"{k}={v}")]


# ---- the search ---------------------------------------------------------------------------------
def test_two_seeded_runs_print_the_same_json_bytes(capsys):
    def argv(seed):
        return ["tune", GEMM, *_defines(SMALL), "--budget", "16", "--seed", seed, "--format",
                "json", "--no-cache"]

    first = _cli(capsys, *argv(3))
    second = _cli(capsys, *argv(3))
    assert first[0] == 0 and first[1] == second[1]
    doc = json.loads(first[1])
    assert doc["schema"] == "zhenwu-cc.tune/1" and doc["method"] == "optuna-tpe"
    assert doc["tried"]["costed"] + doc["tried"]["refused"] == 16  # the budget: compiles
    other = json.loads(_cli(capsys, *argv(0))[1])
    assert [r["schedule"] for r in other["leaderboard"]] != [
        r["schedule"] for r in doc["leaderboard"]]  # the seed is used


def test_a_small_space_is_enumerated_and_optuna_comes_within_2_percent():
    k = zhenwu_cc.compile(str(GEMM), defines=TINY)
    full = k.tune(budget=64, verify=0, cache=False)
    assert full.method == "exhaustive" and full.space.size == 64 and len(full.trials) == 64
    best = full.ranked[0].time
    sampled = k.tune(budget=16, verify=0, cache=False)
    assert sampled.method == "optuna-tpe"
    assert sum(t.status == "costed" for t in sampled.trials) == 16
    assert best <= sampled.ranked[0].time <= best * 1.02


def test_a_time_limit_stops_the_search():
    k = zhenwu_cc.compile(str(GEMM), defines=SMALL)
    r = k.tune(time=0.5, verify=0, cache=False)
    assert r.method == "optuna-tpe" and r.budget is None and r.ranked
    assert len(r.trials) < r.space.size


def test_the_schedule_as_written_is_the_first_candidate_sampled():
    k = zhenwu_cc.compile(str(GEMM), defines={"M": 1024, "N": 1024, "K": 1024})
    r = k.tune(budget=1, verify=0, cache=False)
    assert [t.schedule.text() for t in r.trials] == ["tile c [128, 128, 64]; buffers 2"]
    assert r.trials[0].time == pytest.approx(r.default_time, rel=1e-9)


def test_pruning_is_safe_the_floor_is_below_every_time_and_misfits_do_not_compile():
    """The roofline bound never exceeds a modeled time, and a candidate pruned for SRAM is one
    the compiler refuses."""
    k = zhenwu_cc.compile(str(GEMM), defines={"M": 128, "N": 128, "K": 128})
    r = k.tune(budget=512, verify=0, cache=False)
    target = load_target("m890")
    statuses = {t.status for t in r.trials}
    assert {"costed", "pruned", "misfit"} <= statuses
    for t in r.trials:
        if t.time is not None:
            assert r.space.floor(t.schedule, target) <= t.time
    misfits = [t for t in r.trials if t.status == "misfit"][:4]
    for t in misfits:
        assert "refused" in tune_eval.cost_candidate(k, t.schedule, "m890")


def test_candidates_the_compiler_refuses_are_recorded_not_fatal(tmp_path):
    src = tmp_path / "q.zk"
    src.write_text("kernel q<M = 64, K = 256, N = 64>(x: f32[M, K], w: f32[K, N]) "
                   "-> f32[M, N] {\n    h = exp(x)\n    return h @ w\n}\n"
                   "schedule q {\n    precision h as f8E4M3FN scale block(1, 128)\n"
                   "    tile h [16, 128]\n}\n")
    r = zhenwu_cc.compile(str(src)).tune(budget=24, verify=0, cache=False)
    refused = [t for t in r.trials if t.status == "refused"]
    assert refused and all(t.reason.startswith("ZK0803") for t in refused)
    assert r.ranked  # the search went on
    assert r.to_dict()["refused"][0]["reason"].startswith("ZK0803")


@pytest.mark.parametrize("example,defines,first,second", [
    ("attention.zk", {"B": 1, "H": 2, "S": 256, "D": 64}, "o", "s"),
    ("mlp_swiglu.zk", {"T": 128, "D": 128, "F": 256}, "gate", "up"),
])
def test_a_fused_grid_is_searched_with_agreeing_directives(example, defines, first, second):
    """A flash grid's `tile s` follows `tile o` ([BQ, BKV, K] from [BQ, BD, BKV]); a fused
    operand chain's two matmuls get one [M, N, K]: no candidate is refused for disagreeing
    (ZK0618)."""
    k = zhenwu_cc.compile(str(ROOT / "examples" / example), defines=defines)
    r = k.tune(budget=12, verify=0, cache=False)
    assert not [t for t in r.trials if t.status == "refused" and "ZK0618" in t.reason]
    for t in r.ranked:
        tiles = dict(t.schedule.tiles)
        if second == "s":
            bq, _, bkv = tiles[first]
            assert tiles[second][:2] == (bq, bkv)
        else:
            assert tiles[second] == tiles[first]


# ---- verification -------------------------------------------------------------------------------
def test_a_candidate_over_the_error_budget_fails_and_the_next_is_verified(tmp_path, capsys):
    k = zhenwu_cc.compile(str(GEMM), defines=SMALL)
    ok = k.tune(budget=16, verify=2, cache=False)
    assert ok.winner is not None and ok.verified[ok.winner.schedule]["passed"]
    assert sum(v["passed"] for v in ok.verified.values()) == 2
    strict = k.tune(budget=16, verify=2, max_rel_error=1e-12, cache=False)
    assert strict.winner is None
    assert len(strict.verified) > 2  # after the first two failed, the next ones were run
    assert not any(v["passed"] for v in strict.verified.values())
    assert all("budget" in v["reason"] for v in strict.verified.values())
    src = tmp_path / "g.zk"
    src.write_text(GEMM.read_text())
    code, out, err = _cli(capsys, "tune", src, *_defines(SMALL), "--budget", "16", "--verify",
                          "2", "--max-rel-error", "1e-12", "--write", "--no-cache")
    assert code == 1 and "error[ZK1205]" in err and "FAILED" in out
    assert src.read_text() == GEMM.read_text()  # nothing written


def test_the_verify_shape_halves_batch_like_parameters_first():
    """Rounding error grows with the reduced and contracted lengths: tune's verify shape (and
    ZK0510's suggestion) halves the parameters that size none first (read from the IR)."""
    from zhenwu_cc.api import _fitting_defines
    from zhenwu_cc.runtime.host_memory import check_bytes
    from zhenwu_cc.tune import VERIFY_BYTES

    att = zhenwu_cc.compile(str(ROOT / "examples" / "attention.zk"))  # B=4, H=32, S=2048, D=128
    assert _fitting_defines(att, VERIFY_BYTES) == {"B": 1, "H": 1, "S": 1024}  # D kept whole
    longer = zhenwu_cc.compile(str(ROOT / "examples" / "attention.zk"),
                               defines={"B": 1, "H": 1, "S": 2048})
    assert sum(check_bytes(longer._check_programs(), None)) > VERIFY_BYTES  # S: the largest
    gemm = zhenwu_cc.compile(str(GEMM))  # M = N = K = 4096
    assert _fitting_defines(gemm, VERIFY_BYTES) == {"M": 256, "N": 256}  # K kept whole


# attention over heads H with v's FP8 and p's `scale unit` left to the tuner (one choice)
HEADS = ("kernel att<H = 4, S = 256, D = 64>(q: bf16[H, S, D], k: bf16[H, S, D], "
         "v: bf16[H, S, D]) -> f32[H, S, D] {\n    s = q @ transpose(k) * rsqrt(D)\n"
         "    p = softmax(s, axis=-1)\n    o = bf16(p) @ v\n    return o\n}\n\n"
         "schedule att {\n    precision q, k as bf16\n}\n")


def test_a_candidate_within_the_budget_only_at_a_short_softmax_is_rejected(tmp_path, monkeypatch):
    """The joint FP8 choice measures rel L2 0.0342 at H=4, S=64 (where halving the largest
    parameter first verified it) and 0.0358 at the H=1, S=128 verified now: over 0.035."""
    from zhenwu_cc import tune

    monkeypatch.setattr(tune, "VERIFY_BYTES", 3_100_000)  # H=1, S=128 fits, H=1, S=256 not
    src = tmp_path / "att.zk"
    src.write_text(HEADS)
    r = zhenwu_cc.compile(str(src)).tune(budget=24, verify=1, max_rel_error=0.035, cache=False)
    assert r.verify_params == {"H": 1, "S": 128}
    joint = [v for s, v in r.verified.items() if s.precision == VP]
    assert joint and not any(v["passed"] for v in joint)
    assert all("above the budget 0.035" in v["reason"] for v in joint)
    assert r.winner is not None and r.winner.schedule.precision == ()


# ---- --write ------------------------------------------------------------------------------------
def test_write_keeps_comments_and_the_file_compiles_to_the_winner(tmp_path, capsys):
    src = tmp_path / "g.zk"
    src.write_text(GEMM.read_text())
    code, out, _ = _cli(capsys, "tune", src, *_defines(SMALL), "--budget", "16", "--format",
                        "json", "--write", "--no-cache")
    assert code == 0
    doc = json.loads(out)
    assert doc["written"] == str(src)
    text = src.read_text()
    for line in GEMM.read_text().splitlines():
        if "//" in line:
            assert line[line.index("//"):] in text  # every comment is kept
    for directive in doc["winner"]["directives"]:
        assert directive in text
    again = zhenwu_cc.compile(str(src), defines=SMALL).cost().time
    assert again == pytest.approx(doc["winner"]["time_s"], rel=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name != "g.zk"]  # no temporary file left


def test_write_creates_a_schedule_block(tmp_path, capsys):
    src = tmp_path / "plain.zk"
    src.write_text("// no schedule yet\nkernel mm<M = 64, N = 64, K = 64>(a: f16[M, K], "
                   "b: f16[K, N]) -> f32[M, N] {\n    c = a @ b\n    return c\n}\n")
    code, out, _ = _cli(capsys, "tune", src, "--budget", "16", "--write", "--no-cache")
    assert code == 0 and "written:" in out
    text = src.read_text()
    assert text.startswith("// no schedule yet\n") and "schedule mm {" in text
    zhenwu_cc.compile(str(src))


def test_a_rank_0_value_gets_no_tile_choice_and_the_winner_parses(tmp_path, capsys):
    """`mean_loss` (f32[]) has a grid but no `tile` line can size it: `tile mean_loss []` would
    not parse."""
    src = tmp_path / "ce.zk"
    src.write_text((ROOT / "examples" / "cross_entropy.zk").read_text())
    k = zhenwu_cc.compile(str(src), defines={"N": 64, "C": 512})
    r = k.tune(budget=12, verify=1, cache=False)
    assert "tile loss" in [c.key for c in r.space.choices]
    assert "tile mean_loss" not in [c.key for c in r.space.choices]
    code, _, _ = _cli(capsys, "tune", src, "-D", "N=64", "-D", "C=512", "--budget", "12",
                      "--verify", "1", "--write", "--no-cache")
    assert code == 0
    zhenwu_cc.compile(str(src), defines={"N": 64, "C": 512})


# ---- bad arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv,words", [
    (["--budget", "0"], "bad --budget '0'"),
    (["--time", "-1"], "bad --time '-1'"),
    (["--jobs", "zero"], "bad --jobs 'zero'"),
    (["--sampler", "cma"], "invalid choice: 'cma'"),
])
def test_bad_numbers_are_usage_errors(capsys, argv, words):
    code, _, err = _cli(capsys, "tune", GEMM, *argv)
    assert code == 2 and words in err


@pytest.mark.parametrize("argv,code_", [
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"], "ZK1201"),
    (["--scheduler", "localhost"], "ZK1202"),
])
def test_bad_scale_out_options_are_diagnostics(capsys, argv, code_):
    code, out, _ = _cli(capsys, "tune", GEMM, *_defines(TINY), *argv, "--format", "json")
    assert code == 1
    diag = json.loads(out)["diagnostics"][0]
    assert diag["code"] == code_ and diag["help"]


def test_bad_python_arguments():
    k = zhenwu_cc.compile(str(GEMM), defines=TINY)
    with pytest.raises(CompileError) as info:
        k.tune(budget=0)
    assert info.value.diagnostics[0].code == "ZK0512"
    with pytest.raises(CompileError) as info:
        k.tune(sampler="cma")
    assert info.value.diagnostics[0].code == "ZK1201"
    with pytest.raises(CompileError) as info:
        k.retile({"c": [16, 16, 16]}).tune()
    assert info.value.diagnostics[0].code == "ZK1201"


# ---- the cache ----------------------------------------------------------------------------------
def test_a_cache_dir_others_may_write_is_refused(private_cache, capsys):
    private_cache.mkdir()
    private_cache.chmod(0o777)
    code, out, _ = _cli(capsys, "tune", GEMM, *_defines(TINY), "--format", "json")
    diag = json.loads(out)["diagnostics"][0]
    assert code == 1 and diag["code"] == "ZK1204" and "0777" in diag["message"]


def test_the_cache_is_private_hits_on_a_rerun_and_misses_after_a_source_or_compiler_edit(
        private_cache, tmp_path, monkeypatch):
    calls = []
    real = tune_eval._cost_seconds

    def counted(k, schedule, target):
        calls.append(schedule)
        return real(k, schedule, target)

    monkeypatch.setattr(tune_eval, "_cost_seconds", counted)
    src = tmp_path / "g.zk"
    src.write_text(GEMM.read_text())
    first = zhenwu_cc.compile(str(src), defines=TINY).tune(budget=12, verify=1)
    assert stat.S_IMODE(os.stat(private_cache).st_mode) == 0o700
    n = len(calls)
    calls.clear()
    again = zhenwu_cc.compile(str(src), defines=TINY).tune(budget=12, verify=1)
    assert len(calls) == 1  # only the probe of the `tile c` choice: every cost was a hit
    assert again.to_dict() == first.to_dict()
    calls.clear()
    monkeypatch.setattr(tune_cache, "_fingerprint", ["an edited compiler"])
    zhenwu_cc.compile(str(src), defines=TINY).tune(budget=12, verify=1)
    assert len(calls) == n  # another compiler: every key misses
    calls.clear()
    src.write_text(GEMM.read_text() + "// edited\n")
    zhenwu_cc.compile(str(src), defines=TINY).tune(budget=12, verify=1)
    assert len(calls) == n  # a new source: every key misses
    for entry in private_cache.rglob("*.json"):
        json.loads(entry.read_text())  # JSON only


# ---- serve, imports -----------------------------------------------------------------------------
def test_serve_answers_tune():
    from zhenwu_cc.serve import Server

    server = Server()
    line = json.dumps({"id": 1, "command": "tune", "file": str(GEMM), "defines": TINY,
                       "budget": 8, "top": 2, "cache": False})
    r = server.handle(line, 1)
    codes = [d["code"] for d in r["diagnostics"]]
    assert r["ok"] and "ZK1105" not in codes and r["schema"] == "zhenwu-cc.tune/1"
    assert len(r["leaderboard"]) == 2
    bad = server.handle(json.dumps({"id": 2, "command": "tune", "file": str(GEMM),
                                    "verify": -1}), 2)
    assert [d["code"] for d in bad["diagnostics"]] == ["ZK1103"]


def test_cost_imports_neither_optuna_nor_dask_nor_rich():
    probe = ("import sys, contextlib, io\nfrom zhenwu_cc.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    main(['cost', {str(GEMM)!r}, '-D', 'M=64', '-D', 'N=64', '-D', 'K=64'])\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('optuna', 'dask', 'distributed', 'rich')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


# ---- Dask ---------------------------------------------------------------------------------------
def test_a_dask_cluster_gives_the_same_leaderboard():
    """The fast variant: a two-worker cluster in this process, joined by its address."""
    from distributed import LocalCluster

    k = zhenwu_cc.compile(str(GEMM), defines=SMALL)
    here = k.tune(budget=16, verify=2, cache=False).to_dict()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        there = k.tune(budget=16, verify=2, cache=False,
                       scheduler=cluster.scheduler_address).to_dict()
    assert json.dumps(there) == json.dumps(here)


@pytest.mark.slow
def test_jobs_2_prints_the_same_bytes_as_jobs_1(capsys):
    """Two worker processes (`--jobs 2`, a LocalCluster) against this process."""
    argv = ["tune", GEMM, *_defines(SMALL), "--budget", "24", "--format", "json", "--no-cache"]
    one = _cli(capsys, *argv)
    two = _cli(capsys, *argv, "--jobs", "2")
    assert one[0] == two[0] == 0 and one[1] == two[1]


def test_an_unreachable_scheduler_is_zk1203(monkeypatch):
    monkeypatch.setattr(tune_eval, "CONNECT_SECONDS", 1)
    k = zhenwu_cc.compile(str(GEMM), defines=TINY)
    with pytest.raises(CompileError) as info:
        k.tune(budget=4, cache=False, scheduler="tcp://127.0.0.1:9")
    assert info.value.diagnostics[0].code == "ZK1203"


def test_schedule_text_and_dict_round_trip():
    s = Schedule((("c", (64, 32, 16)),), (("c", 2),), 3)
    assert s.directives() == ["tile c [64, 32, 16] split_k 2", "buffers 3"]
    assert Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s


# ---- the structural choices: split, fuse, precision, place ------------------------------------
MM16 = ("kernel mm<M = 16, N = 16, K = 16>(a: f32[M, K], b: f32[K, N]) -> f32[M, N] {\n"
        "    c = a @ b\n    return c\n}\n")


def _space(k, precision: bool = False):
    from zhenwu_cc.tune_space import build_space

    return build_space(k, k.costing("m890"),
                       lambda s: tune_eval.cost_candidate(k, s, "m890").get("refused"),
                       precision=precision)


def _keys(space) -> list[str]:
    return [c.key.split()[0] for c in space.choices]


@pytest.mark.parametrize("kind,example,defines,key", [
    ("split", "softmax.zk", {"M": 4, "N": 1024}, "split y"),
    ("fuse", "attention.zk", {"B": 1, "H": 2, "S": 256, "D": 64}, "fuse o"),
    ("fuse", "mlp_swiglu.zk", {"T": 128, "D": 128, "F": 256}, "fuse gate"),
])
def test_a_structural_choice_is_in_the_space_of_a_kernel_that_has_it(kind, example, defines,
                                                                       key):
    k = zhenwu_cc.compile(str(ROOT / "examples" / example), defines=defines)
    space = _space(k)
    assert key in [c.key for c in space.choices]
    choice = next(c for c in space.choices if c.key == key)
    assert space.start[choice.params[0][0]] in ("on", "hbm", 0)  # as written: no directive
    assert kind not in _keys(_space(zhenwu_cc.compile(str(GEMM), defines=TINY)))


def test_a_matmul_keeping_row_reduction_parts_gets_a_fuse_choice():
    """`logsumexp(h @ w)` is a fused group (passes/tiling/epilogue.py): `fuse y off` is searched."""
    src = ("kernel head<M = 64, N = 512, K = 64>(h: bf16[M, K], w: bf16[K, N]) -> f32[M] {\n"
           "    y = h @ w\n    return logsumexp(y, axis=-1)\n}\n")
    assert "fuse y" in [c.key for c in _space(zhenwu_cc.compile(src)).choices]


def test_rows_enough_for_every_compute_unit_get_no_split_and_small_tensors_no_pinning():
    k = zhenwu_cc.compile(str(ROOT / "examples" / "softmax.zk"), defines={"M": 1024, "N": 1024})
    assert not {"split", "place"} & set(_keys(_space(k)))


def test_precision_is_a_choice_only_with_a_numerics_budget(tmp_path):
    src = tmp_path / "mm.zk"
    src.write_text(MM16)
    k = zhenwu_cc.compile(str(src))
    assert "precision" not in _keys(_space(k))
    choice = next(c for c in _space(k, precision=True).choices if c.key == "precision a, b")
    assert choice.params == (("precision.a,b", ("as written", "bf16", "f8E4M3FN")),)
    fp16 = zhenwu_cc.compile(str(GEMM), defines=TINY)  # f16 operands: FP8 only
    assert [c.params[0][1] for c in _space(fp16, precision=True).choices
            if c.key.startswith("precision")] == [("as written", "f8E4M3FN")]
    rows = zhenwu_cc.compile(str(ROOT / "examples" / "softmax.zk"), defines={"M": 4, "N": 64})
    assert "precision" not in _keys(_space(rows, precision=True))  # no matmul
    fp8 = zhenwu_cc.compile(str(ROOT / "examples" / "gemm_fp8.zk"),
                            defines={"M": 64, "N": 64, "K": 128})
    assert "precision" not in _keys(_space(fp8, precision=True))  # its precision is written


def test_a_budget_too_small_rejects_the_fp8_candidate_and_a_larger_one_accepts_it(tmp_path):
    src = tmp_path / "mm.zk"
    src.write_text(MM16)
    k = zhenwu_cc.compile(str(src))
    strict = k.tune(budget=24, verify=1, max_rel_error=0.01, cache=False)
    assert strict.method == "exhaustive" and strict.space.size == 24
    fp8 = [(s, v) for s, v in strict.verified.items()
           if dict(s.precision).get(("a", "b")) == "f8E4M3FN"]
    assert len(fp8) == 1 and not fp8[0][1]["passed"]  # the other FP8 tilings are not run
    assert "above the budget 0.01" in fp8[0][1]["reason"]
    assert strict.winner is not None and strict.winner.schedule.precision in (
        (), ((("a", "b"), "bf16"),))  # the rounds went on to candidates that could pass
    loose = k.tune(budget=24, verify=1, max_rel_error=0.1, cache=False)
    assert loose.winner is not None
    assert loose.winner.schedule.precision == ((("a", "b"), "f8E4M3FN"),)
    assert loose.verified[loose.winner.schedule]["passed"]


# attention with FP8 `v` (through a cast) and `p`'s precision left to the tuner; q, k are written
ATT = ("kernel att<S = 128, D = 64>(q: bf16[S, D], k: bf16[S, D], v: bf16[S, D]) -> f32[S, D] {\n"
       "    s = q @ transpose(k) * rsqrt(D)\n    p = softmax(s, axis=-1)\n"
       "    o = p @ f32(v)\n    return o\n}\n\n"
       "schedule att {\n    precision q, k as bf16\n    precision v as f8E4M3FN scale tensor\n}\n")
UNIT = Schedule(precision=((("p",), "f8E4M3FN scale unit"),))
# the same attention with no directive on `v` (behind a cast): v's FP8 and p's `scale unit` are
# one choice; `bf16(p) @ v` is examples/attention.zk's form
ATT_V = ATT.replace("    precision v as f8E4M3FN scale tensor\n", "")
VP = ((("v",), "f8E4M3FN"), (("p",), "f8E4M3FN scale unit"))
QK = ((("q", "k"), "f8E4M3FN"),)
SMALL_ATT = {"B": 1, "H": 2, "S": 256, "D": 64}


def test_a_softmax_feeding_an_fp8_matmul_gets_a_scale_unit_choice(tmp_path):
    """`precision p as f8E4M3FN scale unit` is offered (with a budget) where `p @ v` then runs in
    FP8, and the cost model makes it faster; not where `v` is not FP8 or `p`'s is written."""
    from zhenwu_cc.tune_space import UnitChoice

    src = tmp_path / "att.zk"
    src.write_text(ATT)
    k = zhenwu_cc.compile(str(src))
    assert "precision p" not in [c.key for c in _space(k).choices]
    space = _space(k, precision=True)
    choice = next(c for c in space.choices if c.key == "precision p")
    assert isinstance(choice, UnitChoice)
    assert choice.params == (("precision.p", ("as written", "f8E4M3FN scale unit")),)
    assert space.start["precision.p"] == "as written"
    assert space.schedule({**space.start, "precision.p": "f8E4M3FN scale unit"}).structure() \
        == ["precision p as f8E4M3FN scale unit"]
    plain, unit = (tune_eval.cost_candidate(k, s, "m890")["time"] for s in (Schedule(), UNIT))
    assert unit < plain
    target = load_target("m890")
    for s in (Schedule(), UNIT):  # the roofline bound still holds with `p @ v` in FP8
        s = space.schedule({**space.start, "precision.p": dict(s.precision).get(("p",),
                                                                                "as written")})
        assert space.floor(s, target) <= tune_eval.cost_candidate(k, s, "m890")["time"]
    for text in (ATT.replace("precision q, k as bf16", "precision p as f8E4M3FN scale unit"),
                 ATT.replace("p @ f32(v)", "transpose(transpose(f32(v)) @ p)")):  # p on the right
        src.write_text(text)
        other = zhenwu_cc.compile(str(src))
        assert not any(c.key.startswith("precision p")
                       for c in _space(other, precision=True).choices)


@pytest.mark.parametrize("text,tight,loose,precision", [
    (ATT, 0.028, 0.5, UNIT.precision),  # v's FP8 written: p's `scale unit` alone
    (ATT_V, 0.01, 0.1, VP),  # v with no directive: v's FP8 with p's `scale unit`
], ids=["unit", "joint"])
def test_tune_picks_scale_unit_within_a_loose_budget_and_a_tight_one_rejects_it(
        tmp_path, capsys, text, tight, loose, precision):
    """Every candidate with the choice is verified against the budget; `--write` puts what the
    leaderboard costed into the file."""
    src = tmp_path / "att.zk"
    src.write_text(text)
    k = zhenwu_cc.compile(str(src))
    strict = k.tune(budget=24, verify=2, max_rel_error=tight, cache=False)
    unit = [v for s, v in strict.verified.items() if s.precision == precision]
    assert unit and not any(v["passed"] for v in unit)
    assert all(f"above the budget {tight}" in v["reason"] for v in unit)
    assert strict.winner is not None and strict.winner.schedule.precision == ()
    code, out, _ = _cli(capsys, "tune", src, "--budget", "24", "--verify", "2",
                        "--max-rel-error", str(loose), "--format", "json", "--write",
                        "--no-cache")
    assert code == 0
    doc = json.loads(out)
    assert doc["winner"]["verified"]
    for line in Schedule(precision=precision).structure():
        assert line in doc["winner"]["directives"]
        assert f"    {line}\n" in src.read_text()
    again = zhenwu_cc.compile(str(src)).cost().time
    assert again == pytest.approx(doc["winner"]["time_s"], rel=1e-5)


@pytest.mark.parametrize("example", ["attention.zk", "att_v.zk"])
def test_a_bf16_v_gets_its_fp8_directive_and_p_scale_unit_as_one_choice(tmp_path, example):
    """With a budget, one choice writes `precision v as f8E4M3FN` (as the operand choice would)
    and p's `scale unit` together; `p @ v`'s tiles are then sized at FP8 and the model makes it
    faster. Without a budget there is none."""
    from zhenwu_cc.tune_space import UnitChoice

    src = tmp_path / example
    src.write_text(ATT_V if example == "att_v.zk" else
                   (ROOT / "examples" / example).read_text())
    k = zhenwu_cc.compile(str(src), defines=SMALL_ATT if example == "attention.zk" else None)
    assert not any(c.key.startswith("precision p") for c in _space(k).choices)
    space = _space(k, precision=True)
    choice = next(c for c in space.choices if c.key == "precision p with v")
    assert isinstance(choice, UnitChoice)
    assert choice.params == (
        ("precision.p", ("as written", "f8E4M3FN scale unit, v as f8E4M3FN")),)
    assert space.start["precision.p"] == "as written"
    joint = space.schedule({**space.start, "precision.p": choice.params[0][1][1]})
    assert joint.precision == VP
    assert joint.structure() == ["precision v as f8E4M3FN",
                                 "precision p as f8E4M3FN scale unit"]
    plain = space.schedule(space.start)
    tile = next(c for c in space.choices if c.key == "tile o")
    assert (tile._dtype(plain), tile._dtype(joint)) == ("bf16", "f8E4M3FN")
    times = [tune_eval.cost_candidate(k, s, "m890")["time"] for s in (plain, joint)]
    assert times[1] < times[0]
    target = load_target("m890")
    for s, t in zip((plain, joint), times):
        assert space.floor(s, target) <= t


NO_JOINT = [
    ("v computed", ATT_V.replace("p @ f32(v)", "p @ f32(v * 2.0)")),
    ("v has a directive", ATT_V.replace("precision q, k as bf16", "precision q, k, v as bf16")),
    ("p has another use", ATT_V.replace("-> f32[S, D]", "-> (o: f32[S, D], p: f32[S, S])")
     .replace("return o", "return o, p")),
    ("v in an operand choice", ATT_V.replace(", v: bf16[S, D])", ", v: bf16[S, D], w: bf16[D, D])")
     .replace("-> f32[S, D]", "-> (o: f32[S, D], u: f32[S, D])")
     .replace("return o", "u = v @ w\n    return o, u")),
]


@pytest.mark.parametrize("why,text", NO_JOINT, ids=[w for w, _ in NO_JOINT])
def test_no_joint_fp8_choice_where_v_is_not_a_free_parameter_or_p_is_read_elsewhere(
        tmp_path, why, text):
    src = tmp_path / "att.zk"
    src.write_text(text)
    k = zhenwu_cc.compile(str(src))
    keys = [c.key for c in _space(k, precision=True).choices]
    assert not any(key.startswith("precision p") for key in keys), keys
    if why == "v in an operand choice":  # its own choice, which the joint one would contradict
        assert "precision v, w" in keys


@pytest.mark.slow
def test_jobs_2_gives_the_same_bytes_with_the_joint_fp8_choice_verified(tmp_path, capsys):
    """Verification runs on the workers too (one BLAS thread each): the rounded errors agree."""
    src = tmp_path / "att.zk"
    src.write_text(ATT_V)
    argv = ["tune", src, "--budget", "24", "--verify", "2", "--max-rel-error", "0.1",
            "--format", "json", "--no-cache"]
    one = _cli(capsys, *argv)
    two = _cli(capsys, *argv, "--jobs", "2")
    assert one[0] == two[0] == 0 and one[1] == two[1]
    winner = json.loads(one[1])["winner"]["directives"]
    assert "precision v as f8E4M3FN" in winner and "precision p as f8E4M3FN scale unit" in winner


def test_a_refused_structural_candidate_is_recorded_not_fatal():
    k = zhenwu_cc.compile(str(ROOT / "examples" / "softmax.zk"), defines={"M": 4, "N": 1000})
    refused = tune_eval.cost_candidate(k, Schedule(splits=(("y", 999),)), "m890")
    assert refused["refused"].startswith("ZK0607")
    assert "time" in tune_eval.cost_candidate(k, Schedule(splits=(("y", 8),)), "m890")


# `w` is read, then 128 MiB stream through L2 (evicting it), then `w` is read again: only
# `place w in l2` keeps the second read out of HBM.
PIN = """kernel pin<M = 1024, N = 1024>(w: f32[M, N], big: f32[4096, 4096])
    -> (a: f32[M, N], b: f32[4096, 4096], c: f32[M, N]) {
    a = w * 2.0
    b = big * 3.0
    c = w + 1.0
    return a, b, c
}
"""


def test_place_is_offered_only_for_a_tensor_hbm_serves_more_than_once(tmp_path):
    """Under the LRU L2 model, row_reductions' input stays in L2 between the six reductions
    that read it: pinning it would change nothing, so it is no choice. `w`, evicted by the
    128 MiB streamed between its two reads, is; `big`, read once, is not."""
    rows = zhenwu_cc.compile(str(ROOT / "examples" / "row_reductions.zk"),
                             defines={"M": 64, "N": 1024})
    est = rows.cost("m890")
    assert len([p for p in est.phases if "x" in p.hbm_reads]) > 1  # read by several phases
    assert sum(p.hbm_reads.get("x", 0) for p in est.phases) == 64 * 1024 * 4  # from L2
    assert "place" not in _keys(_space(rows))
    src = tmp_path / "pin.zk"
    src.write_text(PIN)
    pin = zhenwu_cc.compile(str(src))
    space = _space(pin)
    assert [c.key for c in space.choices if c.key.startswith("place")] == ["place w"]
    assert space.start["place.w"] == "hbm"  # as written: no directive
    for p in pin.cost("m890").phases:  # the per-tensor split of each phase's HBM reads
        assert round(sum(p.hbm_reads.values())) == p.hbm_read_bytes


@pytest.mark.parametrize("example,defines,schedule,lines", [
    ("softmax.zk", {"M": 4, "N": 1024}, Schedule(splits=(("y", 4),)), ["split y 4"]),
    ("attention.zk", {"B": 1, "H": 2, "S": 256, "D": 64}, Schedule(unfused=("o",)),
     ["fuse o off"]),
    ("gemm.zk", TINY, Schedule(precision=((("a", "b"), "f8E4M3FN"),)),
     ["precision a, b as f8E4M3FN"]),
    ("pin.zk", {}, Schedule(places=(("w", "l2"),)), ["place w in l2"]),
    ("attention.zk", SMALL_ATT,  # q @ k^T's operand choice with p @ v's joint one
     Schedule((("o", (32, 64, 64)), ("s", (32, 64, 64))), precision=QK + VP),
     ["tile o [32, 64, 64]", "tile s [32, 64, 64]", "precision q, k as f8E4M3FN",
      "precision v as f8E4M3FN", "precision p as f8E4M3FN scale unit"]),
])
def test_write_round_trips_each_structural_directive(tmp_path, example, defines, schedule,
                                                     lines):
    """The winner's directive is written into the file, and the file compiles to the schedule
    the tuner costed."""
    from zhenwu_cc.schedule_edit import directives
    from zhenwu_cc.tune import TuneResult, write_winner
    from zhenwu_cc.tune_search import Trial

    src = tmp_path / example
    src.write_text(PIN if example == "pin.zk" else (ROOT / "examples" / example).read_text())
    k = zhenwu_cc.compile(str(src), defines=defines)
    time_s = tune_eval.cost_candidate(k, schedule, "m890")["time"]
    result = TuneResult(k.name, "m890", defines, "exhaustive", 0, 1, _space(k),
                        [Trial(schedule, "costed", time=time_s)], time_s * 2, "", {}, verify=0)
    assert schedule.directives() == lines
    text = write_winner(result, str(src), src.read_text())
    assert text == src.read_text()
    written = [d.text for d in directives(text, str(src), k.name)]
    assert all(line in written for line in lines)
    again = zhenwu_cc.compile(str(src), defines=defines)
    assert again.cost().time == pytest.approx(time_s, rel=1e-9)
    assert again.cost().time != pytest.approx(k.cost().time, rel=1e-6)  # the directive acts


def test_write_replaces_the_split_it_supersedes(tmp_path):
    from zhenwu_cc.tune_eval import with_directives

    text = (ROOT / "examples" / "softmax.zk").read_text().replace(
        "    tile y [4, 4096]", "    split y 2\n    tile y [4, 4096]")
    out = with_directives(text, "s.zk", "softmax_rows", ["split y 4", "fuse y off"])
    assert out.count("split y") == 1 and "    split y 4\n    tile y [4, 4096]" in out
    assert "    fuse y off\n}" in out


def test_structural_schedules_round_trip_as_dicts():
    s = Schedule((("c", (16, 16, 16)),), (), 2, (("p", 4),), ("o",),
                 ((("a", "b"), "f8E4M3FN"),), (("x", "l2"),))
    assert Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.directives() == ["tile c [16, 16, 16]", "split p 4", "fuse o off",
                              "precision a, b as f8E4M3FN", "place x in l2", "buffers 2"]


def test_a_dask_cluster_gives_the_same_leaderboard_with_structural_choices():
    from distributed import LocalCluster

    k = zhenwu_cc.compile(str(ROOT / "examples" / "softmax.zk"), defines={"M": 4, "N": 1024})
    here = k.tune(budget=12, verify=1, cache=False).to_dict()
    assert any("split" in c["choice"] for c in here["space"]["choices"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        there = k.tune(budget=12, verify=1, cache=False,
                       scheduler=cluster.scheduler_address).to_dict()
    assert json.dumps(there) == json.dumps(here)
