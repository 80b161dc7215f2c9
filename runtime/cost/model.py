"""The analytic cost model: a `Workload` on a `Target` becomes time, every figure from a named term.

Why this shape: it is the skeleton that fits XLA's measured H100 GEMMs (hardware-numerics.md §5,
benchmarks/calibrate_cost_model.py): a fixed per-kernel cost, per-CU engine pipelines overlapped
by multi-buffering, waves of tiles over the CUs, bounded by the shared HBM (per stack, so
placement matters), L2 and the dtype's tensor peak. It is static and pure arithmetic on a few
dozen numbers, so a tuner can call it thousands of times. docs/cost-model.md gives the formula.

Per phase (`tiles` T, `steps` S, `buffers` B, CUs N, a = tiles running at once):

    waves      = ceil(T / N); full waves run a = min(T, N) tiles, the last one the remainder
    per step   dma    = max over HBM stacks of (bytes for that stack x a) / (e_m x stack BW),
                        and L2 hits x a / (e_l2 x L2 BW), whichever is longer
               tensor = FLOPs / (e_c x per-CU peak of the dtype it runs in)
               vector = (ops + conversions) / (e_v x per-CU vector rate) + transcendentals / ...
    chain      one tile alone: prologue (dma then compute), the steps, epilogue (compute then
               dma); the steps take dma + (S-1) x max(dma, compute) + compute with B >= 2 (fill,
               overlap, drain) and S x (dma + compute) with B == 1 (no overlap)
    slot       what a tile adds when its CU has a next one: with B >= 2 loads run ahead into
               the next tile, so only its busiest engine counts; with B == 1 its chain. A
               prologue load into a buffer of one slot the tile holds through its loop (a flash
               grid's Q tile) waits for it instead: the slot is then at least the tile's loop and
               epilogue with that load exposed (reload_wait, `Phase.reload_waits`)
    pipeline   = (waves - 1) x slot(full wave) + chain(last wave)
    phase time = max(pipeline, hbm_bound, l2_bound, compute_bound, vector_bound), the bounds
                 being the whole chip's floors (bytes / (e x bandwidth), FLOPs / (e_c x peak)),
                 + COMBINE_WAIT x kernel_overhead for a phase that combines a split's partials

and total = target.kernel_overhead + sum of phase times. Amounts per step or per tile are the
representative ones (phase totals / tiles / steps).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from zhenwu_cc.core.dtypes import DTYPES
from zhenwu_cc.runtime.cost.workload import Phase, Tensor, TileSizes, Workload
from zhenwu_cc.core.target import Target

from zhenwu_cc.core.diagnostics import Span, error

COST_SCHEMA = "zhenwu-cc.cost/1"
WHERE = ("prologue", "body", "epilogue")
KINDS = ("load", "store", "mma", "vector", "transcendental", "quantize")
# A scaled cast (quantize, or an emulated dtype's dequantize) costs a multiply by the scale and a
# convert on the vector engine.
CONVERT_OPS = 2
# When an emulated matmul's loads do not say their dtype, its operand elements are estimated from
# its FLOPs for a 128x128 output tile: (128 + 128) x k elements per 2 x 128 x 128 x k FLOPs.
EMULATED_ELEMENTS_PER_FLOP = 1 / 128
BOUNDS = ("compute", "hbm", "l2", "vector")
# Within one tile-step, the fraction of the shorter of tensor and vector work that the longer does
# not hide: the step's vector work depends on its matmul (a flash step's exp needs S, P feeds
# the next mma), so not all of it overlaps. Fitted on FlashAttention-3's H100 rows
# (benchmarks/calibrate_attention.py, docs/validation.md) at H100's fitted compute efficiency
# (FITTED_AT_COMPUTE_EFFICIENCY, h100.toml's `efficiency.compute`) and carried to other
# targets in proportion to how much less of their peak they sustain.
EXPOSED_AT_H100 = 0.15
FITTED_AT_COMPUTE_EFFICIENCY = 0.851
# A phase that combines the partials of a split (split-K, a split reduction) is a launch that
# starts only once every part has stored: it waits for the parts' stores to drain and then
# ramps up and loads with nothing to overlap, as the first launch does inside the fixed
# per-kernel cost. It pays this fraction of `kernel_overhead` (so it carries to other targets
# with their fixed cost); fitted on XLA's H100 GEMMs, whose split-K shapes pin it
# (benchmarks/calibrate_cost_model.py, docs/cost-model.md).
COMBINE_WAIT = 0.166


# Start-up: these estimates generate __init__ and __eq__ only (the fast path's are checked
# against full ones; nothing prints or hashes one): each generated method is compiled at every
# `cost`.
@dataclass(repr=False)
class PhaseEstimate:
    """One phase's time and the named terms it came from (seconds unless said otherwise).

    terms: pipeline (per-CU time over all waves); dma, hbm, l2, tensor, vector (busy time of one
    CU's engines over the phase; hbm and l2 are the two sources of dma); prologue, epilogue;
    exposed (pipeline time not hidden by overlap: fill and drain, or all of it with one buffer);
    reload_wait (what the tiles' slots grow by because the next tile's prologue loads wait for
    a buffer of one slot this tile holds, `Phase.reload_waits`);
    wave_quantization (time lost to a partly filled last wave, or to fewer tiles than CUs);
    combine_wait (the wait and ramp of a phase combining a split's partials, COMBINE_WAIT);
    hbm_bound, l2_bound, compute_bound, vector_bound (the whole chip's floors for the phase).
    """

    name: str
    loc: str
    tiles: int
    steps: int
    buffers: int
    waves: int
    active_cus: int
    time: float
    bound: str
    terms: dict[str, float]
    hbm_read_bytes: int
    hbm_write_bytes: int
    l2_read_bytes: int
    sram_bytes: int
    tile: TileSizes | None = None  # the tiles it runs and the directive they came from
    # bytes each tensor's loads take from HBM (what `tune` weighs a `place ... in l2` by)
    hbm_reads: dict[str, float] = field(default_factory=dict)


@dataclass(repr=False)
class LocTime:
    """Time attributed to one `.zk` source location: `time` shares out the phase times (they sum
    to the kernel time less the fixed overhead); the rest are engine busy times."""

    time: float
    dma: float
    tensor: float
    vector: float


@dataclass(repr=False)
class Estimate:
    """A kernel's estimated time: the total, its bound, and the figures per phase."""

    kernel: str
    target: str
    time: float  # seconds, the whole kernel
    overhead: float  # the fixed per-kernel term
    bound: str  # compute | hbm | l2 | vector | overhead
    phases: tuple[PhaseEstimate, ...]
    flops_by_dtype: dict[str, int]
    achieved_flops: dict[str, float]  # FLOP/s per operand dtype
    peak_fraction: dict[str, float]  # of the datasheet peak the dtype runs at
    hbm_read_bytes: int
    hbm_write_bytes: int
    arithmetic_intensity: float | None  # useful FLOPs per HBM byte; None without HBM traffic
    ridge_point: dict[str, float]  # the target's FLOP per HBM byte, per dtype used
    by_loc: dict[str, LocTime]
    dtype_support: dict[str, dict[str, str]]  # dtype -> {"support", "runs_as"}
    sram_peak: int
    sram_capacity: int
    flags: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        """A plain dict with a fixed key order and rounded floats, the same bytes every run."""
        return {
            "schema": COST_SCHEMA,
            "kernel": self.kernel,
            "target": self.target,
            "time_s": _r(self.time),
            "overhead_s": _r(self.overhead),
            "bound": self.bound,
            "flags": list(self.flags),
            "flops_by_dtype": {k: self.flops_by_dtype[k] for k in sorted(self.flops_by_dtype)},
            "achieved_flops_per_s": {k: _r(self.achieved_flops[k])
                                     for k in sorted(self.achieved_flops)},
            "peak_fraction": {k: _r(self.peak_fraction[k]) for k in sorted(self.peak_fraction)},
            "hbm_read_bytes": self.hbm_read_bytes,
            "hbm_write_bytes": self.hbm_write_bytes,
            "arithmetic_intensity": _r(self.arithmetic_intensity),
            "ridge_point": {k: _r(self.ridge_point[k]) for k in sorted(self.ridge_point)},
            "dtype_support": {k: dict(self.dtype_support[k]) for k in sorted(self.dtype_support)},
            "sram": {"peak_bytes": self.sram_peak, "capacity_bytes": self.sram_capacity},
            "phases": [{
                "name": p.name, "loc": p.loc, "tiles": p.tiles, "steps": p.steps,
                "buffers": p.buffers, "waves": p.waves, "active_cus": p.active_cus,
                "time_s": _r(p.time), "bound": p.bound,
                "terms_s": {k: _r(v) for k, v in p.terms.items()},
                "hbm_read_bytes": p.hbm_read_bytes, "hbm_write_bytes": p.hbm_write_bytes,
                "l2_read_bytes": p.l2_read_bytes, "sram_bytes": p.sram_bytes,
                "tile": p.tile.to_dict() if p.tile is not None else None,
            } for p in self.phases],
            "by_loc": {loc: {"time_s": _r(t.time), "dma_s": _r(t.dma), "tensor_s": _r(t.tensor),
                             "vector_s": _r(t.vector)}
                       for loc, t in sorted(self.by_loc.items())},
        }

    def to_json(self) -> str:
        """`to_dict()` as JSON text: keys in the same order, indented as the CLI prints them."""
        return json.dumps(self.to_dict(), indent=2)


def _r(x: float | None) -> float | None:
    """Six significant digits: stable across platforms, finer than the model's accuracy."""
    return None if x is None else float(f"{x:.6g}")


def estimate(workload: Workload, target: Target) -> Estimate:
    """The time of `workload` on `target`, term by term (see the module docstring)."""
    stacks = _stack_shares(workload, target)
    support = _check_dtypes(workload, target)
    _check_l2_pins(workload, target)
    l2 = _L2Contents(target, workload)
    phases, attributions = [], []
    partials: set[str] = set()  # tensors the parts of a split stored
    for phase in workload.phases:
        combines = any(w.kind == "load" and w.tensor in partials for w in phase.work)
        est, attr = _phase(phase, workload, target, stacks, l2,
                           COMBINE_WAIT * target.kernel_overhead if combines else 0.0)
        phases.append(est)
        attributions.append(attr)
        if phase.tile is not None and phase.tile.parts > 1:
            partials.update(w.tensor for w in phase.work if w.kind == "store")

    overhead = target.kernel_overhead
    total = overhead + sum(p.time for p in phases)
    by_bound = {"overhead": overhead}
    for p in phases:
        by_bound[p.bound] = by_bound.get(p.bound, 0.0) + p.time
    bound = max(by_bound, key=lambda k: (by_bound[k], -list(by_bound).index(k)))

    by_loc: dict[str, list[float]] = {}
    for attr in attributions:
        for loc, parts in attr.items():
            acc = by_loc.setdefault(loc, [0.0, 0.0, 0.0, 0.0])
            for i, part in enumerate(parts):
                acc[i] += part

    flops = dict(workload.flops_by_dtype) or _mma_flops(workload)
    hbm_read = sum(p.hbm_read_bytes for p in phases)
    hbm_write = sum(p.hbm_write_bytes for p in phases)
    achieved = {dt: f / total for dt, f in flops.items()}
    fraction = {dt: achieved[dt] / target.tensor_peak(dt)[0] for dt in flops
                if target.tensor_peak(dt)[0] > 0}
    sram_peak = max((p.sram_bytes for p in workload.phases), default=0)
    flags = [f"{s['support']}:{dt}" + (f":via:{s['runs_as']}" if s["support"] == "emulated"
                                        else "")
             for dt, s in sorted(support.items()) if s["support"] != "native"]
    flags += [f"f32_runs_as:{s['runs_as']}" for dt, s in support.items()
              if dt == "f32" and s["runs_as"] != "f32"]
    if sram_peak > target.sram_per_cu:
        flags.append("sram_overflow")
    return Estimate(
        kernel=workload.kernel, target=target.name, time=total, overhead=overhead, bound=bound,
        phases=tuple(phases), flops_by_dtype=flops, achieved_flops=achieved,
        peak_fraction=fraction, hbm_read_bytes=hbm_read, hbm_write_bytes=hbm_write,
        arithmetic_intensity=(sum(flops.values()) / (hbm_read + hbm_write)
                              if hbm_read + hbm_write else None),
        ridge_point={dt: target.ridge_point(dt) for dt in flops if target.tensor_peak(dt)[0] > 0},
        by_loc={loc: LocTime(*v) for loc, v in by_loc.items()}, dtype_support=support,
        sram_peak=sram_peak, sram_capacity=target.sram_per_cu, flags=tuple(flags),
    )


# ---- checks -------------------------------------------------------------------------------------
def _span(loc: str) -> Span | None:
    file, _, rest = loc.rpartition(":")
    file, _, line = file.rpartition(":")
    if file and line.isdigit() and rest.isdigit():
        return Span.point(file, int(line), int(rest))
    return None


def _check_dtypes(workload: Workload, target: Target) -> dict[str, dict[str, str]]:
    """How each matmul operand dtype runs; an unsupported one is a user error, never costed.
    Formats a kernel only quantises into (on the vector engine) are listed with the tensor
    engine's support for them, so a format the target lacks is flagged, not silently native."""
    support: dict[str, dict[str, str]] = {}
    for phase in workload.phases:
        for w in phase.work:
            if w.kind != "mma" or w.dtype in support:
                continue
            runs_as, how = target.execution_dtype(w.dtype)
            if how == "unsupported":
                ok = sorted(dt for dt, r in target.tensor.items() if r.support != "unsupported")
                raise error("ZK0703", f"matmul with {w.dtype or 'untyped'} operands: the "
                            f"{target.name} tensor engine does not support {w.dtype}",
                            _span(w.loc),
                            help=f"cast the operands to a dtype {target.name} supports "
                                 f"({', '.join(ok)}) with a `precision` directive, or choose "
                                 "another target")
            support[w.dtype] = {"support": how, "runs_as": runs_as}
    for w in (w for phase in workload.phases for w in phase.work):
        if w.kind == "quantize" and w.dtype not in support:
            runs_as, how = target.execution_dtype(w.dtype)
            support[w.dtype] = {"support": how, "runs_as": runs_as}
    return support


def _check_l2_pins(workload: Workload, target: Target) -> None:
    pinned = sorted(t.name for t in workload.tensors.values() if t.l2_resident)
    need = sum(workload.tensors[n].bytes for n in pinned)
    if pinned and need > target.l2.persisting_bytes:
        raise error("ZK0904", f"tensors pinned in L2 ({', '.join(pinned)}) need {need} bytes; "
                    f"{target.name} can set aside {target.l2.persisting_bytes} bytes of L2",
                    help="pin fewer or smaller tensors (`place NAME in l2`), or leave them in HBM")


def _stack_shares(workload: Workload, target: Target) -> dict[str, tuple[int, ...]]:
    """The HBM stacks each tensor's traffic lands on (evenly): its placement, cut to the stacks a
    tensor of its size actually spans at the target's interleave granularity."""
    count = target.hbm.stacks
    shares = {}
    for name, t in workload.tensors.items():
        bad = [s for s in t.stacks if not 0 <= s < count]
        if bad:
            raise error("ZK0903", f"tensor `{name}` is placed on HBM stack(s) "
                        f"{', '.join(map(str, bad))}, but {target.name} has stacks "
                        f"0..{count - 1}", help=f"place `{name}` on stacks 0..{count - 1}")
        placed = tuple(dict.fromkeys(t.stacks)) or tuple(range(count))
        spans = max(1, math.ceil(t.bytes / target.hbm.interleave))
        shares[name] = placed[:spans]
    return shares


def _mma_flops(workload: Workload) -> dict[str, int]:
    out: dict[str, int] = {}
    for phase in workload.phases:
        for w in phase.work:
            if w.kind == "mma":
                out[w.dtype] = out.get(w.dtype, 0) + w.amount
    return out


# ---- one phase ----------------------------------------------------------------------------------
class _L2Contents:
    """What L2 holds between phases: pinned tensors once first touched, intermediates a phase
    stores while they fit (a later phase reads them back from L2, as a write-back cache serves a
    split-K reduction), and the bytes the latest phases read or wrote, least recently used
    evicted first (`recent`: a softmax's second pass over rows that fit L2 finds them there).
    `free` is the capacity streaming re-reads can use."""

    def __init__(self, target: Target, workload: Workload):
        self.tensors = workload.tensors
        self.free = target.l2.bytes - sum(t.bytes for t in self.tensors.values() if t.l2_resident)
        self.present: set[str] = set()
        # tensor -> [bytes its last touch brought in, bytes of those still in L2], oldest first
        self.recent: dict[str, list[float]] = {}

    def store(self, name: str) -> bool:
        """Whether a store to `name` stays in L2 (no HBM write)."""
        t = self.tensors.get(name)
        if t is None or t.role != "intermediate":
            return False
        if t.l2_resident or name in self.present:
            return True
        if t.bytes <= self.free:
            self.free -= t.bytes
            self.present.add(name)
            self.recent.pop(name, None)
            self._evict()
            return True
        return False

    def hit(self, name: str) -> float:
        """The share of `name`'s bytes an earlier phase left in L2 for a pass over it to find.
        None once any of them was evicted: the pass reads them in the order they came in, so
        under LRU each miss evicts the oldest bytes still there, the very ones it reads next."""
        t = self.tensors.get(name)
        touched, kept = self.recent.get(name, (0.0, 0.0))
        return min(1.0, kept / t.bytes) if t is not None and t.bytes and kept >= touched else 0.0

    def touch(self, phase: Phase) -> None:
        """After `phase`: the bytes it loaded or stored are the most recently used."""
        for w in phase.work:
            t = self.tensors.get(w.tensor)
            if t is None or w.kind not in ("load", "store"):
                continue
            if t.l2_resident:
                self.present.add(t.name)
            if t.l2_resident or t.name in self.present:
                continue
            seen = phase.unique_load_bytes.get(t.name, w.amount) if w.kind == "load" else w.amount
            before = self.recent.pop(t.name, [0.0, 0.0])
            touched = min(t.bytes, max(before[0], seen))
            self.recent[t.name] = [touched, touched]
        self._evict()

    def _evict(self) -> None:
        over = sum(kept for _, kept in self.recent.values()) - max(self.free, 0)
        for name in list(self.recent):
            if over <= 0:
                break
            drop = min(over, self.recent[name][1])
            self.recent[name][1] -= drop
            over -= drop
            if not self.recent[name][1]:
                del self.recent[name]


def _hbm_fractions(phase: Phase, tensors: dict[str, Tensor], target: Target,
                   l2: _L2Contents) -> tuple[dict[str, float], dict[str, float]]:
    """The fraction of each loaded tensor's bytes that comes from HBM (the rest are L2 hits),
    and how many tiles read each of its bytes (its reuse: loads / unique bytes).

    Loads beyond a tensor's unique bytes are re-reads. Within a wave, tiles are taken in square
    groups (as tile rasterizers do), so a wave of a tiles reads a / min(reuse, sqrt(a)) distinct
    panels of a tensor each panel of which `reuse` tiles read; or in runs, a / min(reuse, a),
    where every re-read tensor is shared along the same grid dims (`Phase.shared_dims`).
    Re-reads inside a wave hit L2 in the share of that wave's distinct bytes L2 can hold,
    re-reads across waves in the share of the tensor's unique bytes it can hold. L2-resident
    tensors come from HBM only on first touch. A first read finds in L2 the share of the tensor
    an earlier phase left there (`l2.hit`).
    """
    loads: dict[str, int] = {}
    for w in phase.work:
        if w.kind == "load":
            loads[w.tensor] = loads.get(w.tensor, 0) + w.amount
    a = min(phase.tiles, target.compute_units)
    capacity = max(l2.free, 0)
    fractions, reread, reuse = {}, {}, {}
    for name, total in loads.items():
        t = tensors.get(name)
        unique = min(phase.unique_load_bytes.get(name, total), total)
        reuse[name] = total / unique if 0 < unique < total else 1.0
        cold = 1.0 - l2.hit(name)  # of its first reads, those an earlier phase left no copy of
        if name in l2.present:
            fractions[name] = 0.0
        elif t is not None and t.l2_resident:
            fractions[name] = unique / total if total else 0.0
        elif 0 < unique < total:
            reread[name] = (total, unique, cold)
        else:
            fractions[name] = cold
    if reread:
        # runs where every re-read tensor is shared along the same dims, else square groups
        shared = {phase.shared_dims.get(name, ()) for name in reread}
        group = a if len(shared) == 1 and () not in shared else math.sqrt(a)
        waves = {name: min(unique, a * total / phase.tiles / min(total / unique, group))
                 for name, (total, unique, _) in reread.items()}
        keep_phase = min(1.0, capacity / max(sum(r[1] for r in reread.values()), 1))
        keep_wave = min(1.0, capacity / max(sum(waves.values()), 1))
        for name, (total, unique, cold) in reread.items():
            across = min(max(phase.tiles / a * waves[name], unique), total)
            hbm = (unique * cold + (across - unique) * (1 - keep_phase)
                   + (total - across) * (1 - keep_wave))
            fractions[name] = hbm / total
    return fractions, reuse


def _phase(phase: Phase, workload: Workload, target: Target, stacks: dict[str, tuple[int, ...]],
           l2: _L2Contents, combine_wait: float = 0.0):
    if phase.tiles < 1 or phase.steps < 1 or phase.buffers < 1:
        raise ValueError(f"phase {phase.name}: tiles, steps and buffers must be >= 1")
    n_cu = target.compute_units
    eff = target.efficiency
    all_stacks = tuple(range(target.hbm.stacks))
    stack_bw = target.hbm.stack_bandwidth * eff.memory
    l2_bw = target.l2.bandwidth * eff.l2
    vec_rate = target.vector.ops_per_clock_per_cu * target.clock * eff.vector  # per CU
    trans_rate = target.vector.transcendentals_per_clock_per_cu * target.clock * eff.vector
    hbm_frac, reuse = _hbm_fractions(phase, workload.tensors, target, l2)
    operand_elems = _operand_elements(phase)
    mma_by_dtype: dict[str, int] = {}
    for w in phase.work:
        if w.kind == "mma":
            mma_by_dtype[w.dtype] = mma_by_dtype.get(w.dtype, 0) + w.amount

    # Totals over the phase, by where: HBM bytes per stack, L2 bytes, CU-seconds per engine.
    stack_bytes = {k: [0.0] * target.hbm.stacks for k in WHERE}
    l2_bytes = dict.fromkeys(WHERE, 0.0)
    tensor_s = dict.fromkeys(WHERE, 0.0)
    vector_s = dict.fromkeys(WHERE, 0.0)
    hbm_read = hbm_write = l2_read = 0.0
    hbm_reads: dict[str, float] = {}
    # Per work item: (loc, engine, amount in that engine's unit) for attribution.
    shares: list[tuple[str, str, float]] = []
    for w in phase.work:
        if w.kind not in KINDS or w.where not in WHERE:
            raise ValueError(f"phase {phase.name}: bad work kind/where {w.kind!r}/{w.where!r}")
        if w.kind in ("load", "store"):
            t = workload.tensors.get(w.tensor)
            if w.tensor and t is None:
                raise ValueError(f"phase {phase.name}: work names unknown tensor {w.tensor!r}")
            if w.kind == "load":
                from_hbm = w.amount * hbm_frac[w.tensor]
                hbm_read += from_hbm
                hbm_reads[w.tensor] = hbm_reads.get(w.tensor, 0.0) + from_hbm
                l2_read += w.amount - from_hbm
                # Tiles of a wave that share a slice get it from one multicast L2 read.
                sharing = min(target.l2.multicast, reuse[w.tensor])
                l2_bytes[w.where] += (w.amount - from_hbm) / sharing
            else:
                from_hbm = 0.0 if l2.store(w.tensor) else float(w.amount)
                hbm_write += from_hbm
                l2_bytes[w.where] += w.amount - from_hbm
            on = stacks.get(w.tensor, all_stacks)
            for s in on:
                stack_bytes[w.where][s] += from_hbm / len(on)
            shares.append((w.loc, "dma", float(w.amount)))
        elif w.kind == "mma":
            runs_as, how = target.execution_dtype(w.dtype)
            per_cu = target.tensor[runs_as].flops_per_s / n_cu * eff.compute
            tensor_s[w.where] += w.amount / per_cu
            shares.append((w.loc, "tensor", w.amount / per_cu))
            if how == "emulated":
                elems = (operand_elems[w.dtype] * w.amount / mma_by_dtype[w.dtype]
                         if operand_elems.get(w.dtype) else w.amount * EMULATED_ELEMENTS_PER_FLOP)
                secs = CONVERT_OPS * elems / vec_rate
                vector_s[w.where] += secs
                shares.append((w.loc, "vector", secs))
        else:
            rate = trans_rate if w.kind == "transcendental" else vec_rate
            secs = w.amount * (CONVERT_OPS if w.kind == "quantize" else 1) / rate
            vector_s[w.where] += secs
            shares.append((w.loc, "vector", secs))
    l2.touch(phase)

    T, S, B = phase.tiles, phase.steps, phase.buffers
    per = {"prologue": T, "body": T * S, "epilogue": T}  # tile-steps each total is spread over
    reps = {"prologue": 1, "body": S, "epilogue": 1}  # how often one tile does each part
    exposed = min(1.0, EXPOSED_AT_H100 * FITTED_AT_COMPUTE_EFFICIENCY / eff.compute)
    compute = {k: (max(tensor_s[k], vector_s[k]) + exposed * min(tensor_s[k], vector_s[k]))
               / per[k] for k in WHERE}  # one tile-step's

    def dma(a: int) -> dict[str, tuple[float, float]]:
        """(HBM, L2) seconds of one tile-step's (or prologue's, epilogue's) DMA while a tiles
        run at once: each stack serves its share of all a CUs' bytes, L2 the hits."""
        return {k: (max(stack_bytes[k]) * a / per[k] / stack_bw,
                    l2_bytes[k] * a / per[k] / l2_bw) for k in WHERE}

    def tile(a: int) -> tuple[float, float, float, float, float, float]:
        """(chain, slot, DMA busy, HBM part, L2 part, reload wait) of one tile while a tiles run
        at once.

        chain: the tile on its own: prologue, the step pipeline (with B >= 2 the first load and
        the last compute are exposed, the rest overlaps), epilogue. slot: what the tile adds
        when the CU has a next tile: with B >= 2 loads run ahead into the next tile, so only the
        busier engine counts; with B == 1 nothing overlaps and slot = chain. reload wait: what
        the slot grows by where the next tile's prologue loads go into a buffer of one slot
        that this tile still holds (`Phase.reload_waits`): they start only once this tile's
        loop has ended (the epilogue's compute overlaps them), or once its epilogue's stores
        have drained when the epilogue reuses that SRAM; only the steps' loads, whose buffers
        have several slots, still run ahead.
        """
        parts = dma(a)
        d = {k: max(parts[k]) for k in WHERE}
        c = compute
        if B >= 2:
            body = d["body"] + (S - 1) * max(d["body"], c["body"]) + c["body"]
        else:
            body = S * (d["body"] + c["body"])
        chain = d["prologue"] + c["prologue"] + body + c["epilogue"] + d["epilogue"]
        busy = sum(reps[k] * d[k] for k in WHERE)
        slot = max(busy, sum(reps[k] * c[k] for k in WHERE)) if B >= 2 else chain
        wait = 0.0
        if B >= 2 and phase.reload_waits:
            after = (c["epilogue"] + d["epilogue"] + d["prologue"]
                     if phase.reload_waits == "epilogue" else max(c["epilogue"], d["prologue"]))
            held = c["prologue"] + (S - 1) * max(d["body"], c["body"]) + c["body"] + after
            wait = max(0.0, held - slot)
        return (chain, slot + wait, busy, sum(reps[k] * parts[k][0] for k in WHERE),
                sum(reps[k] * parts[k][1] for k in WHERE), wait)

    waves = math.ceil(T / n_cu)
    a_full = min(T, n_cu)
    full, last = tile(a_full), tile(T - (waves - 1) * n_cu)
    pipeline = (waves - 1) * full[1] + last[0]
    dma_busy, hbm_busy, l2_busy = ((waves - 1) * full[i] + last[i] for i in (2, 3, 4))
    tensor_tile = sum(reps[k] * tensor_s[k] / per[k] for k in WHERE)
    vector_tile = sum(reps[k] * vector_s[k] / per[k] for k in WHERE)
    tensor_busy, vector_busy = waves * tensor_tile, waves * vector_tile
    # What the busiest engine needs: the pipeline time beyond it is not hidden by overlap.
    busiest = ((waves - 1) * max(full[2], tensor_tile, vector_tile)
               + max(last[2], tensor_tile, vector_tile))
    parts = dma(a_full)
    edges = {k: waves * (max(parts[k]) + compute[k]) for k in ("prologue", "epilogue")}
    bounds = {
        "hbm_bound": max(sum(stack_bytes[k][s] for k in WHERE) for s in all_stacks) / stack_bw,
        "l2_bound": sum(l2_bytes.values()) / l2_bw,
        "compute_bound": sum(tensor_s.values()) / n_cu,
        "vector_bound": sum(vector_s.values()) / n_cu,
    }
    time = max(pipeline, *bounds.values()) + combine_wait
    terms = {
        "pipeline": pipeline, "dma": dma_busy, "hbm": hbm_busy, "l2": l2_busy,
        "tensor": tensor_busy, "vector": vector_busy, **edges,
        "exposed": max(0.0, pipeline - busiest),
        "wave_quantization": min(pipeline, (waves - T / n_cu) * full[1]), **bounds,
        "combine_wait": combine_wait, "reload_wait": (waves - 1) * full[5],
    }
    weight = {
        "compute": max(tensor_busy, bounds["compute_bound"]),
        "hbm": max(hbm_busy, bounds["hbm_bound"]),
        "l2": max(l2_busy, bounds["l2_bound"]),
        "vector": max(vector_busy, bounds["vector_bound"]),
    }
    bound = max(BOUNDS, key=lambda k: (weight[k], -BOUNDS.index(k)))
    est = PhaseEstimate(
        name=phase.name, loc=phase.loc, tiles=T, steps=S, buffers=B, waves=waves,
        active_cus=a_full, time=time, bound=bound, terms=terms,
        hbm_read_bytes=round(hbm_read), hbm_write_bytes=round(hbm_write),
        l2_read_bytes=round(l2_read),
        sram_bytes=phase.sram_bytes, tile=phase.tile, hbm_reads=hbm_reads,
    )
    return est, _attribute(shares, time, {"dma": dma_busy, "tensor": tensor_busy,
                                          "vector": vector_busy})


def _operand_elements(phase: Phase) -> dict[str, float]:
    """Elements loaded per dtype: what an emulated matmul in that dtype must convert."""
    out: dict[str, float] = {}
    for w in phase.work:
        if w.kind == "load" and w.dtype in DTYPES:
            out[w.dtype] = out.get(w.dtype, 0.0) + w.amount * 8 / DTYPES[w.dtype].bits
    return out


def _attribute(shares: list[tuple[str, str, float]], time: float,
               busy: dict[str, float]) -> dict[str, tuple[float, float, float, float]]:
    """Split each engine's busy time among the work items by their share of that engine's work,
    and the phase time among engines in proportion to their busy times."""
    totals = dict.fromkeys(busy, 0.0)
    for _, engine, amount in shares:
        totals[engine] += amount
    all_busy = sum(busy.values())
    out: dict[str, list[float]] = {}
    column = {"dma": 1, "tensor": 2, "vector": 3}
    for loc, engine, amount in shares:
        if not totals[engine]:
            continue
        part = amount / totals[engine]
        acc = out.setdefault(loc, [0.0, 0.0, 0.0, 0.0])
        acc[0] += time * busy[engine] / all_busy * part if all_busy else 0.0
        acc[column[engine]] += busy[engine] * part
    return {loc: tuple(v) for loc, v in out.items()}
