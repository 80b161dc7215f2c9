"""A Chrome trace (opens in Perfetto) of a cost estimate: what one compute unit does, when.

Process 0 is the chip; its threads are the kernel's phases, and the engines of a representative
compute unit (CU 0: DMA, tensor engine, vector engine), replaying each phase's pipeline step by
step with the model's per-step times and its multi-buffering depth. Counter tracks show HBM
bandwidth (total, and per stack as the placement spreads it) and SRAM occupancy over time.
Timestamps are microseconds, rounded so the file is the same bytes on every run.
"""

from __future__ import annotations

import json

TRACE_SCHEMA = "zhenwu-cc.trace/1"
MAX_STEP_EVENTS = 4096  # per phase; beyond this, steps are merged into groups
THREADS = {"kernel": 0, "dma": 1, "tensor": 2, "vector": 3}


def _us(t: float) -> float:
    return round(t * 1e6, 4)


def _slice(name: str, tid: int, start: float, dur: float, args: dict | None = None) -> dict:
    ev = {"name": name, "ph": "X", "pid": 0, "tid": tid, "ts": _us(start), "dur": _us(dur)}
    if args:
        ev["args"] = args
    return ev


def _counter(name: str, t: float, values: dict) -> dict:
    return {"name": name, "ph": "C", "pid": 0, "ts": _us(t), "args": values}


def _pipeline(phase, start: float) -> list[dict]:
    """Replay one tile per wave on CU 0: DMA of step k overlaps compute of step k-1 when the
    phase has two or more buffers."""
    terms = phase.terms
    waves, steps = max(phase.waves, 1), max(phase.steps, 1)
    group = max(1, -(-(waves * steps) // MAX_STEP_EVENTS))
    per = waves * steps / group
    dma = terms.get("dma", 0.0) / per
    tensor = terms.get("tensor", 0.0) / per
    vector = terms.get("vector", 0.0) / per
    buffers = max(phase.buffers, 1)
    events: list[dict] = []
    dma_free = compute_free = start
    done: list[float] = []
    for n in range(int(per)):
        # Step n's DMA needs its buffer slot: free once step n - buffers has been computed.
        d0 = max(dma_free, done[n - buffers] if n >= buffers else start)
        if dma > 0:
            events.append(_slice("dma", THREADS["dma"], d0, dma))
        dma_free = d0 + dma
        c0 = max(compute_free, dma_free)
        if tensor > 0:
            events.append(_slice("mma", THREADS["tensor"], c0, tensor))
        if vector > 0:
            events.append(_slice("vector", THREADS["vector"], c0 + tensor, vector))
        compute_free = c0 + tensor + vector
        done.append(compute_free)
    return events


def stack_traffic(est, target, workload=None) -> list[list[float]]:
    """HBM bytes each stack moves in each phase.

    The model gives a phase's HBM reads and writes; they are shared out over the stacks like the
    DMA traffic behind them: each tensor's bytes evenly over the stacks it spans (its placement,
    cut to the stacks its size reaches at the interleave), an L2-resident tensor's loads only on
    first touch (its distinct bytes). Without the workload, every stack takes an equal share."""
    n, g = target.hbm.stacks, target.hbm.interleave
    if workload is None:
        return [[(p.hbm_read_bytes + p.hbm_write_bytes) / n] * n for p in est.phases]
    touched: set[str] = set()
    out = []
    for p, phase in zip(est.phases, workload.phases):
        amounts: dict[tuple[str, str], int] = {}
        for w in phase.work:
            if w.kind in ("load", "store"):
                amounts[w.kind, w.tensor] = amounts.get((w.kind, w.tensor), 0) + w.amount
        weights = {"load": [0.0] * n, "store": [0.0] * n}
        for (kind, name), amount in amounts.items():
            t = workload.tensors[name]
            if kind == "load" and t.l2_resident:
                amount = 0 if name in touched else phase.unique_load_bytes.get(name, amount)
            on = (t.stacks or tuple(range(n)))[:max(1, -(-t.bytes // g))]
            for s in on:
                weights[kind][s] += amount / len(on)
        touched |= {name for _, name in amounts if workload.tensors[name].l2_resident}
        row = [0.0] * n
        for kind, total in (("load", p.hbm_read_bytes), ("store", p.hbm_write_bytes)):
            whole = sum(weights[kind])
            for s in range(n):
                row[s] += total * weights[kind][s] / whole if whole else total / n
        out.append(row)
    return out


def trace(est, target, workload=None) -> dict:
    """The Chrome trace event document for an Estimate (of `workload`, for per-stack traffic)."""
    events: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": 0, "args": {"name": f"chip 0 ({est.target})"}},
    ]
    for name, tid in THREADS.items():
        label = {"kernel": "kernel phases", "dma": "CU 0: DMA queue",
                 "tensor": "CU 0: tensor engine", "vector": "CU 0: vector engine"}[name]
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid,
                       "args": {"name": label}})
    t = 0.0
    events.append(_slice("fixed overhead", THREADS["kernel"], 0.0, est.overhead))
    t += est.overhead
    stacks = target.hbm.stacks
    by_stack = stack_traffic(est, target, workload)
    for i, p in enumerate(est.phases):
        args = {"bound": p.bound, "tiles": p.tiles, "steps": p.steps, "waves": p.waves,
                "loc": p.loc}
        if p.tile is not None:
            args["tile"] = p.tile.to_dict()
        events.append(_slice(f"[{i}] {p.name}", THREADS["kernel"], t, p.time, args))
        span = p.time if p.time > 0 else 1e-12
        traffic = (p.hbm_read_bytes + p.hbm_write_bytes) / span
        events.append(_counter("HBM bandwidth (GB/s)", t, {"GB/s": round(traffic / 1e9, 3)}))
        per_stack = {f"stack {s}": round(b / span / 1e9, 3) for s, b in enumerate(by_stack[i])}
        events.append(_counter("HBM stacks (GB/s)", t, per_stack))
        events.append(_counter("SRAM occupancy (KiB)", t, {"CU 0": round(p.sram_bytes / 1024, 3)}))
        pipe = _pipeline(p, t)
        end = max((e["ts"] + e["dur"] for e in pipe), default=_us(t)) / 1e6
        if end > t + p.time and pipe:
            scale = p.time / (end - t)
            for e in pipe:
                e["ts"] = _us(t + (e["ts"] / 1e6 - t) * scale)
                e["dur"] = round(e["dur"] * scale, 4)
        events.extend(pipe)
        t += p.time
    events.append(_counter("HBM bandwidth (GB/s)", t, {"GB/s": 0.0}))
    events.append(_counter("HBM stacks (GB/s)", t, {f"stack {s}": 0.0 for s in range(stacks)}))
    events.append(_counter("SRAM occupancy (KiB)", t, {"CU 0": 0.0}))
    return {"schema": TRACE_SCHEMA, "displayTimeUnit": "ns", "traceEvents": events,
            "metadata": {"kernel": est.kernel, "target": est.target, "time_us": _us(est.time)}}


def dumps(doc: dict) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n"
