"""The search: every point of a small space in a fixed order, or Optuna's sampler on a large one,
in batches of BATCH candidates costed together (in this process or on Dask) and told back in
the order they were asked, so that a seeded run makes the same choices whatever runs the jobs.

Before a candidate is costed it is checked against SRAM (a lower bound of what its tiles need)
and against the roofline (a lower bound of its time, `Space.floor`): a candidate whose bound is
above the best time of the batches before is skipped ("pruned").
"""

from __future__ import annotations

import itertools
import time as _time
from collections.abc import Callable
from dataclasses import dataclass

from zhenwu_cc.tune_space import Schedule, Space

BATCH = 8  # candidates asked, costed and told together: fixed, so `--jobs` changes nothing
SAMPLERS = ("tpe", "random")
MAX_ASKS = 4  # Optuna asks at most this many times the budget (it repeats itself on small spaces)


@dataclass(frozen=True)
class Trial:
    schedule: Schedule
    status: str  # costed | refused (by the compiler) | misfit (SRAM) | pruned (roofline)
    time: float | None = None
    reason: str | None = None


def search(space: Space, target, cost: Callable[[list[Schedule]], list[dict]], *,
           budget: int | None, seconds: float | None, seed: int, sampler: str = "tpe",
           progress: Callable[[int], None] | None = None) -> tuple[str, list[Trial]]:
    """(the method, every distinct candidate tried in order). `cost` maps a batch of schedules
    to `cost_candidate` results; `budget` bounds the candidates compiled (those pruned cost
    nothing and do not count), `seconds` the wall time."""
    deadline = None if seconds is None else _time.monotonic() + seconds
    limit = budget if budget is not None else space.size if seconds is None else None
    run = _Run(space, target, cost, progress)
    run.exhaustive = limit is not None and space.size <= limit
    if run.exhaustive:
        points = itertools.product(*(o for _, o in space.params))
        names = [p for p, _ in space.params]
        for chunk in _chunks(points, BATCH):
            if deadline is not None and _time.monotonic() > deadline:
                break
            run.batch([dict(zip(names, values)) for values in chunk])
        return "exhaustive", run.trials
    return f"optuna-{sampler}", _optuna(run, limit, deadline, seed, sampler)


class _Run:
    """The trials so far and the best time, updated batch by batch."""

    def __init__(self, space: Space, target, cost, progress):
        self.space, self.target, self.cost, self.progress = space, target, cost, progress
        self.trials: list[Trial] = []
        self.seen: dict[Schedule, Trial] = {}
        self.best = float("inf")
        self.compiled = 0  # candidates costed or refused: what the budget counts
        self.exhaustive = False  # progress counts candidates tried, else candidates compiled

    def batch(self, points: list[dict]) -> list[Trial]:
        """The trial of each point (a repeated point gets its earlier trial)."""
        out: list[Trial | None] = []
        todo: list[tuple[int, Schedule]] = []
        again: list[tuple[int, Schedule]] = []  # asked twice in this batch
        for values in points:
            s = self.space.schedule(values)
            if s in self.seen:
                out.append(self.seen[s])
                continue
            if any(s == q for _, q in todo):
                again.append((len(out), s))
                out.append(None)
                continue
            if (why := self.space.misfit(s, self.target)) is not None:
                trial = Trial(s, "misfit", reason=why)
            elif (floor := self.space.floor(s, self.target)) > self.best:
                trial = Trial(s, "pruned", reason=f"roofline bound {floor:.4g} s is above the "
                              f"best {self.best:.4g} s")
            else:
                todo.append((len(out), s))
                trial = None
            out.append(trial)
            if trial is not None:
                self._add(trial)
        pending = [s for _, s in todo]
        if pending:
            self.compiled += len(pending)
            for (i, s), r in zip(todo, self.cost(pending)):
                out[i] = Trial(s, "costed", time=r["time"]) if "time" in r else \
                    Trial(s, "refused", reason=r["refused"])
                self._add(out[i])
        for i, s in again:
            out[i] = self.seen[s]
        self.best = min([self.best] + [t.time for t in self.trials if t.time is not None])
        return out

    def _add(self, trial: Trial) -> None:
        if trial.schedule not in self.seen:
            self.seen[trial.schedule] = trial
            self.trials.append(trial)
            if self.progress is not None:
                self.progress(len(self.trials) if self.exhaustive else self.compiled)


def _optuna(run: _Run, limit: int | None, deadline: float | None, seed: int,
            sampler: str) -> list[Trial]:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    chosen = (optuna.samplers.TPESampler(seed=seed) if sampler == "tpe"
              else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.create_study(direction="minimize", sampler=chosen)
    if len(run.space.start) == len(run.space.params):
        study.enqueue_trial(run.space.start)  # the schedule as compiled: a good first point
    asked = 0
    while limit is None or (run.compiled < limit and asked < MAX_ASKS * limit):
        if deadline is not None and _time.monotonic() > deadline:
            break
        n = BATCH if limit is None else min(BATCH, limit - run.compiled)
        asks = [study.ask() for _ in range(n)]
        asked += n
        points = [{p: t.suggest_categorical(p, list(o)) for p, o in run.space.params}
                  for t in asks]
        for t, trial in zip(asks, run.batch(points)):
            if trial.status == "costed":
                study.tell(t, trial.time)
            else:
                study.tell(t, state=TrialState.PRUNED if trial.status == "pruned"
                           else TrialState.FAIL)
        if len(run.seen) >= run.space.size:
            break
    return run.trials


def _chunks(it, n: int):
    while chunk := list(itertools.islice(it, n)):
        yield chunk
