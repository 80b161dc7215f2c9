"""`tune`: search a kernel's schedules on the cost model, verify the best by running them against
the float64 reference, and rank them (`zhenwu-cc tune`, `CompiledKernel.tune`, `serve`).

The pieces, one idea a module: the choices (tune_space), the search (tune_search), costing and
verification in this process or on Dask (tune_eval), the cache of results (tune_cache). The
leaderboard is deterministic: a run with the same inputs, seed and `budget` gives the same
bytes, however many workers cost it (a `seconds` limit stops wherever the clock says).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from zhenwu_cc.tune_search import SAMPLERS, Trial
from zhenwu_cc.tune_space import Schedule, Space

TUNE_SCHEMA = "zhenwu-cc.tune/1"
DEFAULT_BUDGET = 64  # candidates, when neither a budget nor a time is given
DEFAULT_TOP = 10  # leaderboard rows shown
DEFAULT_VERIFY = 3  # candidates verified (the best ones that pass)
VERIFY_TRIES = 3  # at most this many times `verify` candidates are run
VERIFY_BYTES = 64 << 20  # verification runs at shapes whose full check fits this


@dataclass
class TuneResult:
    """A search's outcome: every candidate tried, the verified ones, and the winner."""

    kernel: str
    target: str
    params: dict
    method: str
    seed: int
    budget: int | None
    space: Space
    trials: list[Trial]
    default_time: float
    default_schedule: str
    verify_params: dict
    verified: dict = field(default_factory=dict)  # Schedule -> verification result
    verify: int = DEFAULT_VERIFY

    @property
    def ranked(self) -> list[Trial]:
        """The costed candidates, fastest first (ties by schedule text)."""
        return sorted((t for t in self.trials if t.status == "costed"),
                      key=lambda t: (t.time, t.schedule.text()))

    @property
    def winner(self) -> Trial | None:
        """The fastest candidate that passed verification (the fastest one when none was to be
        verified); None when none did, or when none beats the schedule as written."""
        for t in self.ranked:
            if t.time >= self.default_time:
                return None
            if self.verify == 0 or self.verified.get(t.schedule, {}).get("passed"):
                return t
        return None

    def _counts(self) -> dict:
        by = {s: 0 for s in ("costed", "refused", "misfit", "pruned")}
        for t in self.trials:
            by[t.status] += 1
        return by

    def _row(self, rank: int, t: Trial) -> dict:
        v = self.verified.get(t.schedule)
        return {"rank": rank, "schedule": t.schedule.text(),
                "directives": t.schedule.directives(), "time_s": _r(t.time),
                "speedup": _r(self.default_time / t.time),
                "verified": None if v is None else v["passed"], "verification": v}

    def to_dict(self, top: int = DEFAULT_TOP) -> dict:
        win = self.winner
        return {"schema": TUNE_SCHEMA, "kernel": self.kernel, "target": self.target,
                "params": self.params, "method": self.method, "seed": self.seed,
                "budget": self.budget, "space": self.space.to_dict(), "tried": self._counts(),
                "default": {"schedule": self.default_schedule,
                            "time_s": _r(self.default_time)},
                "verify_params": self.verify_params,
                "leaderboard": [self._row(i + 1, t) for i, t in enumerate(self.ranked[:top])],
                "refused": [{"schedule": t.schedule.text(), "reason": t.reason}
                            for t in self.trials if t.status == "refused"][:top],
                "winner": None if win is None else self._row(self.ranked.index(win) + 1, win)}

    def text(self, top: int = DEFAULT_TOP) -> str:
        from zhenwu_cc.runtime.cost.report import seconds

        c = self._counts()
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        lines = [f"tune {self.kernel} on {self.target}" + (f" ({params})" if params else "")
                 + f": {self.space.size} schedules in the space, {len(self.trials)} tried by "
                 f"{self.method} (seed {self.seed}): {c['costed']} costed, {c['pruned']} pruned "
                 f"by the roofline, {c['misfit']} over SRAM, {c['refused']} refused",
                 f"default ({self.default_schedule}): {seconds(self.default_time)}"]
        for d in self.space.dropped:
            lines.append(f"not searched: {d['choice']} ({d['reason']})")
        at = ", ".join(f"{k}={v}" for k, v in self.verify_params.items())
        lines.append(f"{'rank':>4}  {'time':>10}  {'speedup':>7}  {'verified':<8}  schedule")
        for i, t in enumerate(self.ranked[:top]):
            v = self.verified.get(t.schedule)
            ok = "-" if v is None else "yes" if v["passed"] else "FAILED"
            lines.append(f"{i + 1:>4}  {seconds(t.time):>10}  "
                         f"{self.default_time / t.time:>6.2f}x  {ok:<8}  {t.schedule.text()}")
        for t in self.ranked[:top]:
            v = self.verified.get(t.schedule)
            if v is not None and not v["passed"]:
                lines.append(f"verification failed: {t.schedule.text()}: {v['reason']}")
        win = self.winner
        if win is None:
            best = self.ranked[0] if self.ranked else None
            lines.append("winner: none (the schedule as written is the fastest)"
                         if best is None or best.time >= self.default_time
                         else "winner: none (no candidate passed verification)")
        else:
            v = self.verified.get(win.schedule)
            checked = "" if v is None else (f", verified at {at or 'full size'}"
                                            f" (rel L2 {v['rel_l2']:.3g})")
            lines.append(f"winner: {win.schedule.text()}: {seconds(win.time)}, "
                         f"{self.default_time / win.time:.2f}x the default{checked}")
        return "\n".join(lines) + "\n"


def _r(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.6g}")


def tune(k, *, target: str | None = None, budget: int | None = None,
         seconds: float | None = None, max_rel_error: float | None = None, jobs: int = 1,
         scheduler: str | None = None, seed: int = 0, verify: int = DEFAULT_VERIFY,
         sampler: str = "tpe", cache: bool = True, progress: bool = False) -> TuneResult:
    """Search `k`'s schedules on `target` (see `CompiledKernel.tune` for the arguments)."""
    from zhenwu_cc.core.diagnostics import error
    from zhenwu_cc.core.target import load_target
    from zhenwu_cc.tune_cache import Cache, target_bytes
    from zhenwu_cc.tune_eval import Local, OnDask, Origin, check_address, cost_candidate
    from zhenwu_cc.tune_search import search
    from zhenwu_cc.tune_space import build_space

    if sampler not in SAMPLERS:
        raise error("ZK1201", f"unknown sampler {sampler!r}",
                    help="samplers: " + ", ".join(SAMPLERS))
    if jobs > 1 and scheduler is not None:
        raise error("ZK1201", "give --jobs (a local cluster) or --scheduler (an existing "
                    "one), not both", help="drop --jobs: the scheduler's workers do the work")
    check_address(scheduler)
    if k.source is None:
        raise error("ZK1201", f"kernel `{k.name}` has no source text to tune",
                    help="tune a kernel from zhenwu_cc.compile(...), not a retile() of one")
    target = target or k.target
    loaded = load_target(target)
    costing = k.costing(target)
    text = k.source[0]
    params = {n: a.value.data for n, a in k.zk.attributes["params"].data.items()}
    origin = Origin(text, k.file, k.name, tuple(sorted(params.items())), target)
    store = Cache() if cache else None
    tbytes = target_bytes(target).decode("utf-8", "replace") if store else ""
    runner = Local(k, target) if jobs <= 1 and scheduler is None else OnDask(jobs, scheduler)
    try:
        def cost(schedules: list[Schedule]) -> list[dict]:
            return _cached(store, runner, [
                (("cost", text, k.name, params, target, tbytes, s.to_dict()),
                 origin.job("cost", s)) for s in schedules])

        def probe(s: Schedule) -> str | None:
            return cost_candidate(k, s, target).get("refused")

        space = build_space(k, costing, probe, precision=max_rel_error is not None)
        limit = budget if budget is not None else DEFAULT_BUDGET if seconds is None else None
        with (bar := _Bar(progress, limit and (space.size if space.size <= limit else limit))):
            method, trials = search(space, loaded, cost, budget=limit, seconds=seconds,
                                    seed=seed, sampler=sampler, progress=bar.update)
        from zhenwu_cc.schedule_edit import directives

        written = [d.text for d in directives(text, k.file, k.name)]
        result = TuneResult(k.name, target, params, method, seed, limit, space, trials,
                            costing.estimate.time, "; ".join(written) or "the compiler's choice",
                            {}, verify=verify)
        if verify > 0:
            _verify(result, k, origin, store, runner, tbytes, seed, max_rel_error)
        return result
    finally:
        runner.close()


def _verify(result: TuneResult, k, origin, store, runner, tbytes: str, seed: int,
            max_rel_error: float | None) -> None:
    """Verify the ranked candidates that beat the default, best first, `verify` at a time, until
    `verify` pass (or VERIFY_TRIES rounds): each runs at reduced shapes on the executor and is
    compared with the float64 reference. Once a candidate with a `precision` choice fails, the
    others with the same precision are not verified (the precision decides most of their error):
    the rounds go to candidates that may pass."""
    from dataclasses import replace

    from zhenwu_cc.api import _fitting_defines

    reduced = _fitting_defines(k, VERIFY_BYTES)
    result.verify_params = reduced
    small = replace(origin, defines=tuple(sorted({**result.params, **reduced}.items())))
    queue = [t for t in result.ranked if t.time < result.default_time]
    passed = 0
    for _ in range(VERIFY_TRIES):
        batch, queue = queue[:result.verify - passed], queue[result.verify - passed:]
        if not batch:
            break
        found = _cached(store, runner, [
            (("verify", small.source, small.kernel, dict(small.defines), small.target, tbytes,
              t.schedule.to_dict(), seed, max_rel_error),
             small.job("verify", t.schedule, seed=seed, max_rel_error=max_rel_error))
            for t in batch])
        for t, v in zip(batch, found):
            result.verified[t.schedule] = v
            passed += bool(v["passed"])
        if passed >= result.verify:
            break
        failed = {t.schedule.precision for t, v in zip(batch, found)
                  if not v["passed"] and t.schedule.precision}
        queue = [t for t in queue if t.schedule.precision not in failed]


def _cached(store, runner, keyed: list[tuple[tuple, dict]]) -> list[dict]:
    """The result of each (cache key parts, job): from the cache, else run (all misses in one
    `runner.map`) and stored."""
    keys = [store.key(*parts) if store else None for parts, _ in keyed]
    out = [store.get(key) if store else None for key in keys]
    todo = [i for i, r in enumerate(out) if r is None]
    if todo:
        for i, r in zip(todo, runner.map([keyed[i][1] for i in todo])):
            out[i] = r
            if store:
                store.put(keys[i], r)
    return out


class _Bar:
    """A progress bar on stderr (rich), only when asked and stderr is a terminal."""

    def __init__(self, wanted: bool, total: int | None):
        import sys

        self.bar = self.task = None
        if wanted and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("tuning", total=total)

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)


def write_winner(result: TuneResult, path: str, source: str) -> str:
    """`source` with the winner's directives in the kernel's `schedule` block (each replacing the
    directive it supersedes; the block created if absent; comments and other lines kept),
    written to `path` atomically. Returns the new text."""
    from zhenwu_cc.outputs import write_file
    from zhenwu_cc.tune_eval import with_directives

    text = with_directives(source, path, result.kernel, result.winner.schedule.directives())
    write_file(path, text.encode())
    return text


def positive(call: str, what: str, value) -> float | None:
    """A finite number > 0 (or None) for an API argument, else ZK0512."""
    from zhenwu_cc import arguments as arg

    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise arg.bad(call, what, "a number > 0", value)
    return float(value)
