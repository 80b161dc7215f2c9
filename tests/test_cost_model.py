"""The analytic cost model on synthetic Workloads: bounds, shape of the terms, flags, errors."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zhenwu_cc
from zhenwu_cc.runtime.cost import model
from zhenwu_cc.runtime.cost.model import estimate
from zhenwu_cc.runtime.cost.workload import Phase, Tensor, TileSizes, Work, Workload
from zhenwu_cc.core.target import list_targets, load_target, parse_target

from zhenwu_cc.core.diagnostics import CompileError

MiB = 2**20


def gemm(m=1024, n=1024, k=1024, dtype="bf16", buffers=2, target="m890") -> Workload:
    """A one-phase tiled GEMM with 128x128 output tiles, K step 64 (as the tile pass makes)."""
    size = 1 if dtype.startswith("f8") else 2
    tm, tn = -(-m // 128), -(-n // 128)
    a, b, c = m * k * size, k * n * size, m * n * 2
    phase = Phase("gemm", tm * tn, -(-k // 64), buffers, 64 * 1024, (
        Work("load", a * tn, tensor="a", dtype=dtype, loc="k.zk:3:9"),
        Work("load", b * tm, tensor="b", dtype=dtype, loc="k.zk:3:9"),
        Work("mma", 2 * m * n * k, dtype=dtype, loc="k.zk:3:9"),
        Work("vector", m * n, "epilogue", dtype="f32", loc="k.zk:4:5"),
        Work("store", c, "epilogue", tensor="c", loc="k.zk:5:5"),
    ), {"a": a, "b": b}, loc="k.zk:3:9")
    tensors = {"a": Tensor("a", a, "input"), "b": Tensor("b", b, "input"),
               "c": Tensor("c", c, "output")}
    return Workload("gemm", (phase,), tensors, {dtype: 2 * m * n * k})


def stream(nbytes=256 * MiB, tiles=4096, buffers=2, stacks=(), l2_resident=False,
           op="vector", ops=1) -> Workload:
    """A memory-bound elementwise phase: load, `ops` of `op` per f32 element, store."""
    phase = Phase("stream", tiles, 4, buffers, 64 * 1024, (
        Work("load", nbytes, tensor="x", dtype="f32"),
        Work(op, ops * nbytes // 4, dtype="f32"),
        Work("store", nbytes, tensor="y"),
    ), {"x": nbytes})
    return Workload("stream", (phase,), {
        "x": Tensor("x", nbytes, "input", stacks=stacks, l2_resident=l2_resident),
        "y": Tensor("y", nbytes, "output")})


def compute_phase(tiles: int) -> Workload:
    """A compute-bound phase: a lot of bf16 mma per tile, little data."""
    phase = Phase("mm", tiles, 64, 2, 64 * 1024, (
        Work("load", tiles * 64 * 8192, tensor="a", dtype="bf16"),
        Work("mma", tiles * 64 * 2 * 128 * 128 * 64, dtype="bf16"),
    ), {})
    return Workload("mm", (phase,), {"a": Tensor("a", tiles * 64 * 8192, "input")})


# ---- bounds and monotonicity --------------------------------------------------------------------
DTYPES = ("bf16", "f16", "f8E4M3FN", "f32")


@st.composite
def workloads(draw):
    phases, tensors, flops = [], {}, {}
    for i in range(draw(st.integers(1, 3))):
        tiles = draw(st.integers(1, 600))
        steps = draw(st.integers(1, 64))
        work, unique = [], {}
        for j in range(draw(st.integers(0, 3))):
            name = f"in{i}_{j}"
            size = draw(st.integers(1, 64 * MiB))
            reuse = draw(st.integers(1, 16))
            tensors[name] = Tensor(name, size, "input")
            unique[name] = size
            work.append(Work("load", size * reuse, draw(st.sampled_from(("body", "prologue"))),
                             tensor=name))
        if draw(st.booleans()):
            dt = draw(st.sampled_from(DTYPES))
            amount = draw(st.integers(1, 10**12))
            work.append(Work("mma", amount, dtype=dt))
            flops[dt] = flops.get(dt, 0) + amount
        if draw(st.booleans()):
            work.append(Work(draw(st.sampled_from(("vector", "transcendental", "quantize"))),
                             draw(st.integers(1, 10**9)), dtype="f32"))
        if draw(st.booleans()):
            name = f"out{i}"
            size = draw(st.integers(1, 64 * MiB))
            tensors[name] = Tensor(name, size, "output")
            work.append(Work("store", size, "epilogue", tensor=name))
        phases.append(Phase(f"p{i}", tiles, steps, draw(st.integers(1, 3)), 1024, tuple(work),
                            unique))
    return Workload("k", tuple(phases), tensors, flops)


def roofline(w: Workload, target) -> float:
    """max(FLOPs / datasheet peak, least HBM bytes / HBM bandwidth) + nothing else."""
    flops = sum(amount / target.tensor_peak(dt)[0] for dt, amount in w.flops_by_dtype.items())
    least = sum(p.unique_load_bytes.get(x.tensor, x.amount) if x.kind == "load" else x.amount
                for p in w.phases for x in p.work if x.kind in ("load", "store"))
    return max(flops, least / target.hbm_bandwidth)


@given(workloads(), st.sampled_from(list_targets()))
def test_never_below_the_roofline(w, name):
    target = load_target(name)
    est = estimate(w, target)
    assert est.time >= roofline(w, target) + target.kernel_overhead
    for p in est.phases:
        assert p.time >= max(p.terms[k] for k in ("hbm_bound", "compute_bound", "l2_bound",
                                                 "vector_bound", "pipeline"))
    assert est.time == pytest.approx(est.overhead + sum(p.time for p in est.phases))


def _scaled(w: Workload, factor: int) -> Workload:
    phases = tuple(dataclasses.replace(
        p, work=tuple(dataclasses.replace(x, amount=x.amount * factor) for x in p.work),
        unique_load_bytes={k: v * factor for k, v in p.unique_load_bytes.items()})
        for p in w.phases)
    tensors = {k: dataclasses.replace(t, bytes=t.bytes * factor) for k, t in w.tensors.items()}
    return Workload(w.kernel, phases, tensors, w.flops_by_dtype)


@given(workloads(), st.integers(2, 8), st.sampled_from(list_targets()))
def test_monotone_in_problem_size_for_fixed_tiles(w, factor, name):
    target = load_target(name)
    assert estimate(_scaled(w, factor), target).time >= estimate(w, target).time * (1 - 1e-12)


@pytest.mark.parametrize("name", ["m890", "h100"])
def test_gemm_grows_with_k(name):
    target = load_target(name)
    times = [estimate(gemm(2048, 2048, k), target).time for k in (256, 512, 1024, 2048, 4096)]
    assert times == sorted(times) and times[-1] > 4 * times[1]


def test_deterministic_json():
    target = load_target("m890")
    first = json.dumps(estimate(gemm(), target).to_dict())
    assert first == json.dumps(estimate(gemm(), target).to_dict())
    record = json.loads(first)
    assert record["schema"] == "zhenwu-cc.cost/1"
    assert list(record)[:6] == ["schema", "kernel", "target", "time_s", "overhead_s", "bound"]
    assert set(record["phases"][0]["terms_s"]) >= {
        "dma", "tensor", "vector", "l2", "hbm_bound", "compute_bound", "wave_quantization"}


# ---- dtypes -------------------------------------------------------------------------------------
def test_fp8_native_on_h20_emulated_on_810e():
    native = estimate(gemm(dtype="f8E4M3FN"), load_target("h20"))
    assert native.dtype_support["f8E4M3FN"] == {"support": "native", "runs_as": "f8E4M3FN"}
    assert not native.flags
    emulated = estimate(gemm(dtype="f8E4M3FN"), load_target("810e"))
    assert emulated.dtype_support["f8E4M3FN"] == {"support": "emulated", "runs_as": "f16"}
    assert "emulated:f8E4M3FN:via:f16" in emulated.flags
    # the dequantize work lands on the vector engine, so FP8 costs more than f16 there
    f16 = estimate(gemm(dtype="f16"), load_target("810e"))
    assert emulated.phases[0].terms["vector"] > 3 * f16.phases[0].terms["vector"]
    assert emulated.time > f16.time * 0.99


def test_unsupported_dtype_is_rejected():
    text = (resources.files("zhenwu_cc.runtime.targets") / "810e.toml").read_text("utf-8")
    start = text.index("[tensor.f8E4M3FN]")
    end = text.index("[tensor.f8E5M2]")
    text = text[:start] + ('[tensor.f8E4M3FN]\nsupport = { value = "unsupported", provenance = '
                           '"assumed", source = "test" }\n\n') + text[end:]
    target = parse_target(text, "no-fp8.toml")
    with pytest.raises(CompileError) as exc:
        estimate(gemm(dtype="f8E4M3FN"), target)
    d = exc.value.diagnostics[0]
    assert d.code == "ZK0703" and "f8E4M3FN" in d.message and d.span.line == 3
    assert "precision" in d.help


def test_f32_matmul_mode_is_reported():
    est = estimate(gemm(dtype="f32"), load_target("h100"))
    assert est.dtype_support["f32"]["runs_as"] == "tf32" and "f32_runs_as:tf32" in est.flags
    assert estimate(gemm(dtype="f32"), load_target("m890")).dtype_support["f32"]["runs_as"] == "f32"


# ---- structure of the terms ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["m890", "h100"])
def test_single_buffering_is_slower_when_dma_heavy(name):
    target = load_target(name)
    one = estimate(stream(buffers=1, op="transcendental", ops=2), target).phases[0]
    two = estimate(stream(buffers=2, op="transcendental", ops=2), target).phases[0]
    assert two.bound == "hbm" and two.terms["vector"] > 0.1 * two.terms["dma"]
    assert one.time > 1.1 * two.time
    assert one.time == pytest.approx(one.terms["dma"] + one.terms["vector"], rel=0.01)


def test_wave_quantization():
    target = load_target("m890")
    cus = target.compute_units
    full = estimate(compute_phase(cus), target).phases[0]
    over = estimate(compute_phase(cus + 1), target).phases[0]
    assert full.bound == over.bound == "compute"
    assert 1.8 < over.time / full.time < 2.1
    assert full.terms["wave_quantization"] == 0
    assert over.terms["wave_quantization"] > 0.4 * over.time


def split_then_combine(parts: int) -> Workload:
    """A split reduction as the tile pass lowers it: `parts` x 32 tiles each store a partial
    (an intermediate), then 32 tiles load the partials, add them and store the result."""
    partial = parts * 32 * 64 * 1024
    split = Phase("parts", 32 * parts, 8, 2, 64 * 1024, (
        Work("load", 32 * 8 * MiB, tensor="x", dtype="f32"),
        Work("vector", 32 * 2 * MiB, dtype="f32"),
        Work("store", partial, "epilogue", tensor="p"),
    ), {"x": 32 * 8 * MiB}, tile=TileSizes((1, 1024), 1024, parts=parts))
    combine = Phase("combine", 32, 1, 1, 64 * 1024, (
        Work("load", partial, tensor="p", dtype="f32"),
        Work("vector", partial // 4, dtype="f32"),
        Work("store", 32 * 64 * 1024, tensor="y"),
    ), {"p": partial})
    return Workload("split", (split, combine), {
        "x": Tensor("x", 32 * 8 * MiB, "input"), "p": Tensor("p", partial, "intermediate"),
        "y": Tensor("y", 32 * 64 * 1024, "output")})


@pytest.mark.parametrize("name", ["h100", "m890"])
def test_the_combine_of_a_split_waits_for_its_parts(name, monkeypatch):
    """The phase that reads a split's partials pays COMBINE_WAIT of the fixed per-kernel cost
    on top of its work; the parts do not, nor does a phase reading an unsplit intermediate."""
    target = load_target(name)
    split = estimate(split_then_combine(4), target)
    unsplit = estimate(split_then_combine(1), target)  # the same amounts, one part
    wait = model.COMBINE_WAIT * target.kernel_overhead
    assert wait > 0
    parts, combine = split.phases
    assert parts.terms["combine_wait"] == 0 and combine.terms["combine_wait"] == wait
    assert all(p.terms["combine_wait"] == 0 for p in unsplit.phases)
    monkeypatch.setattr(model, "COMBINE_WAIT", 0.0)
    free = estimate(split_then_combine(4), target)
    assert split.time - free.time == pytest.approx(wait)
    assert combine.time - free.phases[1].time == pytest.approx(wait)
    assert parts.time == free.phases[0].time


def query_tiles(tiles: int, waits: str, buffers: int = 2) -> Workload:
    """A flash grid's shape: each tile loads its Q tile once (prologue), then 8 compute-bound
    steps each load a K/V block and multiply, then stores its output tile (epilogue)."""
    q = tiles * 32 * 1024
    phase = Phase("attention", tiles, 8, buffers, 64 * 1024, (
        Work("load", q, "prologue", tensor="q", dtype="bf16"),
        Work("load", 8 * q, tensor="kv", dtype="bf16"),
        Work("mma", tiles * 8 * 2 * 128 * 128 * 1024, dtype="bf16"),
        Work("store", q, "epilogue", tensor="o"),
    ), {"q": q, "kv": 8 * q}, reload_waits=waits)
    return Workload("attention", (phase,), {
        "q": Tensor("q", q, "input"), "kv": Tensor("kv", 8 * q, "input"),
        "o": Tensor("o", q, "output")})


@pytest.mark.parametrize("name", ["h100", "m890"])
def test_a_one_slot_q_tile_makes_the_next_tile_wait(name):
    """The next tile's Q load waits for the one slot this tile holds: after its loop
    (`loop`: that load is exposed), or after its epilogue's store too when the epilogue reuses
    the slot's SRAM (`epilogue`: both DMAs are exposed). The steps' compute hides the rest."""
    target = load_target(name)
    n = target.compute_units
    plain = estimate(query_tiles(4 * n, ""), target).phases[0]
    held = {w: estimate(query_tiles(4 * n, w), target).phases[0] for w in ("loop", "epilogue")}
    assert plain.terms["tensor"] > plain.terms["dma"]  # compute-bound steps
    assert plain.terms["reload_wait"] == 0
    # no prologue or epilogue compute: those terms are each wave's DMA
    load, store = plain.terms["prologue"] / 4, plain.terms["epilogue"] / 4
    assert held["loop"].terms["reload_wait"] == pytest.approx(3 * load)
    assert held["epilogue"].terms["reload_wait"] == pytest.approx(3 * (load + store))
    for p in held.values():
        assert p.time - plain.time == pytest.approx(p.terms["reload_wait"])


@pytest.mark.parametrize("tiles, buffers", [(1, 2), (128, 2), (512, 1)])
def test_no_reload_wait_without_a_next_tile_or_with_one_buffer(tiles, buffers):
    """One wave has no next tile to wait; with one buffer nothing ran ahead anyway."""
    target = load_target("m890")
    plain = estimate(query_tiles(tiles, "", buffers), target)
    held = estimate(query_tiles(tiles, "epilogue", buffers), target)
    assert held.time == plain.time and held.phases[0].terms["reload_wait"] == 0


def test_one_stack_of_six_is_six_times_slower():
    target = load_target("m890")
    assert target.hbm.stacks == 6
    spread = estimate(stream(), target)
    pinned = estimate(stream(stacks=(0,)), target)
    assert spread.phases[0].bound == "hbm"
    # x is half the traffic; on one stack it takes 6x, y's half stays spread
    ratio = pinned.phases[0].time / spread.phases[0].time
    assert 3.2 < ratio < 3.6
    read_only = Workload("r", (Phase("r", 4096, 4, 2, 0, (
        Work("load", 256 * MiB, tensor="x"),), {}),),
        {"x": Tensor("x", 256 * MiB, "input", stacks=(2,))})
    spread_read = dataclasses.replace(read_only, tensors={"x": Tensor("x", 256 * MiB, "input")})
    ratio = estimate(read_only, target).time / estimate(spread_read, target).time
    assert 5.5 < ratio < 6.1


def test_small_tensor_spans_few_stacks():
    target = load_target("m890")
    small = target.hbm.interleave  # one interleave unit: a single stack
    w = Workload("s", (Phase("s", 1, 1, 1, 0, (Work("load", small, tensor="x"),), {}),),
                 {"x": Tensor("x", small, "input")})
    est = estimate(w, target).phases[0]
    assert est.terms["hbm_bound"] == pytest.approx(
        small / (target.hbm.stack_bandwidth * target.efficiency.memory))


def test_l2_resident_rereads_cut_hbm_time():
    target = load_target("m890")
    x = 8 * MiB

    y = target.l2.bytes  # streamed between the two reads: it evicts whatever is not pinned

    def two_reads(pinned: bool) -> Workload:
        read = Phase("read", 512, 4, 2, 0, (Work("load", x, tensor="x"),
                                            Work("vector", x // 4, dtype="f32")), {})
        stream = Phase("stream", 512, 4, 2, 0, (Work("load", y, tensor="y"),), {})
        return Workload("r", (read, stream, dataclasses.replace(read, name="again")),
                        {"x": Tensor("x", x, "input", l2_resident=pinned),
                         "y": Tensor("y", y, "input")})

    plain, pinned = estimate(two_reads(False), target), estimate(two_reads(True), target)
    assert plain.phases[2].hbm_read_bytes == x and pinned.phases[2].hbm_read_bytes == 0
    assert pinned.phases[2].l2_read_bytes == x
    assert pinned.phases[2].terms["hbm"] == 0 < plain.phases[2].terms["hbm"]
    assert pinned.time < plain.time


def test_a_later_phase_rereads_what_l2_still_holds():
    """L2 keeps the bytes the latest phases touched, least recently used evicted first: a second
    pass over a tensor that fits finds it there, one after enough other traffic does not, nor
    does one after traffic that evicts part of it (its misses evict, oldest first, the bytes it
    reads next), nor a pass over a tensor larger than L2."""
    target = load_target("m890")
    x, cap = 24 * MiB, target.l2.bytes

    def reread(between: int):
        read = Phase("read", 128, 4, 2, 0, (Work("load", x, tensor="x"),), {})
        other = Phase("other", 128, 4, 2, 0, (Work("load", between, tensor="y"),), {})
        phases = (read, other, dataclasses.replace(read, name="again")) if between else (
            read, dataclasses.replace(read, name="again"))
        return estimate(Workload("r", phases, {"x": Tensor("x", x, "input"),
                                               "y": Tensor("y", max(between, 1), "input")}),
                        target).phases[-1]

    assert reread(0).hbm_read_bytes == 0 and reread(0).l2_read_bytes == x
    assert reread(cap).hbm_read_bytes == x
    assert reread(cap - x - MiB).hbm_read_bytes == 0  # x and the other tensor both fit
    assert reread(cap - x // 2).hbm_read_bytes == x  # half of x evicted: the rest thrashes
    big = cap + 8 * MiB
    sweep = Phase("sweep", 128, 4, 2, 0, (Work("load", big, tensor="z"),), {})
    twice = Workload("z", (sweep, sweep), {"z": Tensor("z", big, "input")})
    assert estimate(twice, target).phases[1].hbm_read_bytes == big


def test_rereads_that_fit_in_l2_come_from_hbm_once():
    target = load_target("m890")
    est = estimate(gemm(2048, 2048, 2048), target)
    unique = 2 * 2048 * 2048 * 2
    assert est.phases[0].hbm_read_bytes == unique
    assert est.phases[0].l2_read_bytes == 16 * unique - unique  # each panel read by 16 tiles
    huge = estimate(gemm(16384, 16384, 8192), target)  # operands far beyond L2
    assert huge.phases[0].hbm_read_bytes > 2 * (16384 * 8192 * 2 * 2)


def test_tiles_sharing_along_one_dim_run_together():
    """Keys and values read by every query tile of their head (shared along that one grid dim)
    come from HBM once where a wave's run of query tiles spans a head or two; read in square
    groups instead (as a GEMM's two operands, shared along different dims), a wave would read
    sqrt(a) heads' worth, more than L2 holds, and read them again and again."""
    target = load_target("h100")
    heads, per_head, q_tiles = 16, 8 * MiB, 128

    def flash(shared_dims):
        loads = heads * q_tiles * per_head
        phase = Phase("flash", heads * q_tiles, 64, 2, 0, (
            Work("load", loads, tensor="k"), Work("load", 4 * MiB, "prologue", tensor="q"),
            Work("mma", heads * q_tiles * 2 * 128 * 16384 * 128, dtype="bf16")),
            {"k": heads * per_head, "q": 4 * MiB}, shared_dims)
        return estimate(Workload("f", (phase,), {"k": Tensor("k", heads * per_head, "input"),
                                                 "q": Tensor("q", 4 * MiB, "input")}),
                        target).phases[0]

    runs = flash({"k": (1,), "q": ()})
    assert runs.hbm_read_bytes == heads * per_head + 4 * MiB
    assert flash({}).hbm_read_bytes > 8 * heads * per_head


REPO = Path(__file__).resolve().parent.parent
GEMM_ZK = """
kernel gemm<M = 1024, N = 1024, K = 1024>(a: bf16[M, K], b: bf16[K, N]) -> bf16[M, N] {
    c = bf16(a @ b)
    return c
}
"""


def test_extracted_shared_dims():
    """The grid dims each tensor's tiles are shared along, as extracted from the lowered program:
    a flash grid's keys and values along its query tiles, a GEMM's A along n and B along m."""
    attention = (REPO / "examples" / "attention.zk").read_text()
    phase = zhenwu_cc.compile(attention, defines=dict(B=1, H=2, S=512, D=64)).costing(
        "h100").workload.phases[0]
    assert phase.shared_dims == {"q": (), "k": (2,), "v": (2,)}
    mm = zhenwu_cc.compile(GEMM_ZK, defines=dict(M=512, N=512, K=4096)).costing(
        "h100").workload.phases[0]
    assert mm.shared_dims == {"a": (2,), "b": (1,)}  # grid (parts, m tiles, n tiles)


def test_l2_pins_must_fit():
    target = load_target("m890")
    too_big = stream(nbytes=64 * MiB, l2_resident=True)
    with pytest.raises(CompileError) as exc:
        estimate(too_big, target)
    assert exc.value.diagnostics[0].code == "ZK0904"  # the place-hbm pass's code (ZK0704 retired)


def test_missing_stack_is_rejected():
    with pytest.raises(CompileError) as exc:
        estimate(stream(stacks=(0, 5)), load_target("h100"))  # h100 has stacks 0..4
    d = exc.value.diagnostics[0]
    assert d.code == "ZK0903" and "0..4" in d.message  # as place-hbm says it (ZK0705 retired)


def test_the_cost_models_codes_for_placement_are_the_passes():
    """One code per condition: the cost model's former ZK0704/ZK0705 are no longer registered."""
    from zhenwu_cc.core.diagnostics import CODES

    assert "ZK0704" not in CODES and "ZK0705" not in CODES
    assert {"ZK0903", "ZK0904"} <= set(CODES)


# ---- the report ---------------------------------------------------------------------------------
def test_report_figures():
    target = load_target("m890")
    est = estimate(gemm(4096, 4096, 4096), target)
    assert est.bound == "compute"
    flops = 2 * 4096**3
    assert est.achieved_flops["bf16"] == pytest.approx(flops / est.time)
    assert 0.5 < est.peak_fraction["bf16"] < target.efficiency.compute
    assert est.ridge_point["bf16"] == pytest.approx(target.ridge_point("bf16"))
    assert est.arithmetic_intensity == pytest.approx(
        flops / (est.hbm_read_bytes + est.hbm_write_bytes))
    assert est.hbm_write_bytes == 4096 * 4096 * 2
    assert est.sram_peak == 64 * 1024 and est.sram_capacity == target.sram_per_cu
    small = estimate(gemm(128, 128, 64), target)
    assert small.bound == "overhead"


def test_time_is_attributed_to_source_locations():
    est = estimate(gemm(), load_target("m890"))
    assert set(est.by_loc) == {"k.zk:3:9", "k.zk:4:5", "k.zk:5:5"}
    assert sum(t.time for t in est.by_loc.values()) == pytest.approx(est.time - est.overhead)
    mm, store = est.by_loc["k.zk:3:9"], est.by_loc["k.zk:5:5"]
    assert mm.time > store.time and mm.tensor > 0 and store.tensor == 0 and store.dma > 0


def test_sram_overflow_is_flagged():
    w = gemm()
    big = Workload(w.kernel, (dataclasses.replace(w.phases[0], sram_bytes=10**9),), w.tensors,
                   w.flops_by_dtype)
    assert "sram_overflow" in estimate(big, load_target("m890")).flags
