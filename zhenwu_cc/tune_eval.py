"""Costing and verifying candidate schedules, in this process or on Dask workers.

A job is plain data — (source text, file, kernel, shape parameters, target, schedule) — and its
result a plain dict: workers compile the source themselves, nothing compiled is ever pickled,
and a worker's answer is the same as this process's for the same job (the same code runs).
`--jobs J` starts a `dask.distributed.LocalCluster`; `--scheduler ADDR` joins an existing one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from zhenwu_cc.tune_space import Schedule

MAX_KERNELS = 8  # compiled base kernels a worker keeps
MAX_VARIANTS = 32  # kernels compiled again with a candidate's structural directives, kept
CONNECT_SECONDS = 10  # how long `--scheduler` waits for the scheduler to answer


def _cost_seconds(k, schedule: Schedule, target: str) -> float:
    """The modeled time of `k` under `schedule` on `target`: the one place a candidate is
    costed, through the fast cost path (the same estimate as retile + cost, zhenwu_cc/fast_cost.py)
    on the kernel with the schedule's structural directives (`variant`)."""
    return variant(k, schedule).fast_cost(
        dict(schedule.tiles), split_k=dict(schedule.split_k) or None, buffers=schedule.buffers,
        target=target).time


_variants: OrderedDict = OrderedDict()


def variant(k, schedule: Schedule):
    """`k` compiled again from its source with `schedule`'s structural directives (`split`,
    `fuse`, `precision`, `place`: `Schedule.structure`) written into its schedule block, as
    `--write` would; `k` itself when there are none. These change which grids the kernel has,
    which `fast_cost` does not derive; the tile sizes of a candidate are then costed on it.
    Kept (MAX_VARIANTS): a search costs many tilings of each structure."""
    from zhenwu_cc.api import CompiledKernel
    from zhenwu_cc.frontend import build

    lines = schedule.structure()
    if not lines:
        return k
    text = with_directives(k.source[0], k.file, k.name, lines)
    params = {n: a.value.data for n, a in k.zk.attributes["params"].data.items()}
    key = (text, k.file, k.name, tuple(sorted(params.items())), k.target, k.fuse)
    if key not in _variants:
        other = CompiledKernel(build(text, k.file, params, k.name), k.file, k.target, k.fuse)
        other.source = (text, k.source[1])
        _variants[key] = other
        while len(_variants) > MAX_VARIANTS:
            _variants.popitem(last=False)
    _variants.move_to_end(key)
    return _variants[key]


def with_directives(source: str, file: str, kernel: str, lines: list[str]) -> str:
    """`source` with each directive line in kernel `kernel`'s schedule block: replacing the one
    it supersedes (`tile NAME`, `split NAME`, `fuse NAME`, `buffers`), else added (a block is
    created if there is none); comments and other lines kept."""
    from zhenwu_cc.schedule_edit import Edit, directives

    text = source
    for line in lines:
        words = line.split()
        head = (f"{words[0]} {words[1]} " if words[0] in ("tile", "split", "fuse")
                else "buffers" if words[0] == "buffers" else None)
        old = None if head is None else next(
            (d for d in directives(text, file, kernel) if d.text.startswith(head)), None)
        text = Edit(kernel, line, old).apply(text)
    return text


def cost_candidate(k, schedule: Schedule, target: str) -> dict:
    """{"time": seconds} or, when the compiler refuses the schedule, {"refused": "ZKnnnn: ..."}."""
    from zhenwu_cc.core.diagnostics import CompileError

    try:
        return {"time": _cost_seconds(k, schedule, target)}
    except CompileError as exc:
        d = exc.diagnostics[0]
        return {"refused": f"{d.code}: {d.message}"}


def verify_candidate(k, schedule: Schedule, seed: int, max_rel_error: float | None) -> dict:
    """Run `k` (at the reduced shapes it was compiled with) under `schedule` and compare every
    output with the float64 reference: {"passed", "rel_l2" (the worst output's), "reason"}."""
    from zhenwu_cc.core.diagnostics import CompileError

    try:
        other = variant(k, schedule).retile(dict(schedule.tiles),
                                            split_k=dict(schedule.split_k) or None,
                                            buffers=schedule.buffers)
        result = other.check(seed=seed, max_rel_l2=max_rel_error)
    except CompileError as exc:
        d = exc.diagnostics[0]
        return {"passed": False, "rel_l2": None, "reason": f"{d.code}: {d.message}"}
    worst = max((c.rel_l2 for c in result.checks), default=0.0)
    failed = [f"{c.name}: {c.reason}" for c in result.checks if not c.passed]
    return {"passed": result.passed, "rel_l2": _at_most(worst),
            "reason": "; ".join(failed) or None}


def _at_most(x: float) -> float:
    """`x` rounded up to one significant digit: the last bits of a run depend on how many
    threads its BLAS uses (Dask workers use one), and the leaderboard must not."""
    if not math.isfinite(x) or x <= 0:
        return x
    e = math.floor(math.log10(x))
    up = math.ceil(round(x / 10.0 ** e, 9))
    return float(f"{up}e{e}")


# ---- jobs: what a worker is sent ---------------------------------------------------------------
@dataclass(frozen=True)
class Origin:
    """Where the kernel comes from: enough for a worker to compile it again."""

    source: str
    file: str
    kernel: str | None
    defines: tuple[tuple[str, int], ...]
    target: str

    def job(self, kind: str, schedule: Schedule, **extra) -> dict:
        return {"kind": kind, "source": self.source, "file": self.file, "kernel": self.kernel,
                "defines": dict(self.defines), "target": self.target,
                "schedule": schedule.to_dict(), **extra}


_compiled: OrderedDict = OrderedDict()


def _kernel(job: dict):
    """The job's kernel compiled from its source (kept: a worker gets many jobs of one kernel)."""
    from zhenwu_cc.api import CompiledKernel
    from zhenwu_cc.frontend import build

    key = (job["source"], job["file"], job["kernel"], tuple(sorted(job["defines"].items())),
           job["target"])
    if key not in _compiled:
        module = build(job["source"], job["file"], job["defines"], job["kernel"])
        k = CompiledKernel(module, job["file"], job["target"])
        k.source = (job["source"], job["kernel"])
        _compiled[key] = k
        while len(_compiled) > MAX_KERNELS:
            _compiled.popitem(last=False)
    _compiled.move_to_end(key)
    return _compiled[key]


def run_job(job: dict) -> dict:
    """A job's result (the function Dask workers run)."""
    k = _kernel(job)
    schedule = Schedule.from_dict(job["schedule"])
    if job["kind"] == "cost":
        return cost_candidate(k, schedule, job["target"])
    return verify_candidate(k, schedule, job["seed"], job["max_rel_error"])


# ---- where jobs run ----------------------------------------------------------------------------
class Local:
    """Jobs in this process, on an already compiled kernel for costs."""

    def __init__(self, k, target: str):
        self.k, self.target = k, target

    def map(self, jobs: list[dict]) -> list[dict]:
        return [cost_candidate(self.k, Schedule.from_dict(j["schedule"]), self.target)
                if j["kind"] == "cost" else run_job(j) for j in jobs]

    def close(self) -> None:
        pass


class OnDask:
    """Jobs on a Dask cluster: a LocalCluster of `jobs` single-threaded worker processes, or the
    scheduler at `address`. Results come back in the order of the jobs."""

    def __init__(self, jobs: int = 1, address: str | None = None):
        from zhenwu_cc.core.diagnostics import error

        self.cluster = None
        import logging

        from distributed import Client, LocalCluster

        logging.getLogger("distributed").setLevel(logging.ERROR)
        if address is None:
            self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
            return
        try:
            self.client = Client(address, timeout=CONNECT_SECONDS)
        except OSError as exc:
            raise error("ZK1203", f"cannot reach the Dask scheduler at {address} within "
                        f"{CONNECT_SECONDS} s: {exc}",
                        help="start one (`dask scheduler`, then `dask worker ADDR` on each "
                        "machine) or run with --jobs J for a local cluster") from None

    def map(self, jobs: list[dict]) -> list[dict]:
        futures = self.client.map(run_job, jobs, pure=False)
        return self.client.gather(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def check_address(address: str | None) -> None:
    """ZK1202 unless `address` (when given) is SCHEME://HOST:PORT as a Dask client takes it."""
    from zhenwu_cc.core.diagnostics import error

    if address is None:
        return
    scheme, sep, rest = address.partition("://")
    host, colon, port = rest.rpartition(":")
    if not ((sep == "://" and scheme in ("tcp", "tls", "ws", "wss") and bool(host)
             and colon == ":" and port.isdigit() and 0 < int(port) < 65536)
            or (scheme == "inproc" and bool(rest))):
        raise error("ZK1202", f"--scheduler {address!r} is not a Dask scheduler address",
                    help="give tcp://HOST:PORT, as `dask scheduler` prints it")
