"""`CompiledKernel.fast_cost` against the full lowering (`retile(...).costing()`): random
seeded schedules over several kernels (FP8 with per-tensor scales and with block scales among
them, fused flash attention plain, causal and grouped-query) give the same workload (every
phase's bytes, FLOPs, vector work, tiles, steps, SRAM), the same estimate (exactly equal
floats: the model runs on equal workloads) and the same errors; and most of them are costed
without lowering."""

from __future__ import annotations

import itertools
import random

import pytest

import zhenwu_cc
from zhenwu_cc.core.diagnostics import CompileError
from zhenwu_cc.fast_cost import FastCoster

SKINNY = """
kernel skinny<M = 64, N = 128, K = 16384>(a: bf16[M, K], b: bf16[K, N]) -> bf16[M, N] {
    c = a @ b
    return bf16(c)
}
schedule skinny { tile c [64, 128, 64] split_k 4 }
"""

MM = (16, 32, 64, 128, 256, 96)  # 96 leaves ragged edges
KS = (16, 32, 64, 128, 96)


def _matmul(rng: random.Random, split: bool = False):
    sizes = [rng.choice(MM[:5] if rng.random() < 0.9 else MM), rng.choice(MM[:5]),
             rng.choice(KS[:4] if rng.random() < 0.9 else KS)]
    return sizes, (rng.choice((2, 4, 8)) if split and rng.random() < 0.8 else None)


def _flash(rng: random.Random):
    """`tile s [BQ, BKV, K]` and `tile o [BQ, BD, BKV]` of one flash grid: mostly agreeing,
    sometimes one of them alone, sometimes disagreeing (ZK0618) or asking a split (the unfused
    grids); 96 leaves ragged blocks, 256 may not fit SRAM."""
    bq, bkv = (rng.choice((16, 32, 64, 128, 96, 256) if rng.random() < 0.3 else (16, 32, 64))
               for _ in range(2))
    tk, bd = rng.choice((16, 32, 64, 48)), rng.choice((32, 64))
    s, o = ([bq, bkv, tk], None), ([bq, bd, bkv], None)
    r = rng.random()
    if r < 0.1:
        return {"o": o}
    if r < 0.2:
        return {"s": s}
    if r < 0.25:
        return {"s": ([bq // 2, bkv, tk], None), "o": o}
    if r < 0.3:
        return {"s": (s[0], 2), "o": o}
    return {"s": s, "o": o}


def _rows(rng: random.Random, n: int):
    return [rng.choice((2, 4, 8, 16, 32)), rng.choice((n, n, n, n // 4, 1000))], None


# (source, defines, schedule maker: rng -> {binding: (sizes, split_k)})
KERNELS = {
    "gemm": ("examples/gemm.zk", {}, lambda r: {"c": _matmul(r)}),
    # unfused (`--no-fuse`): the flash grid is costed by lowering (test below)
    "attention": ("examples/attention.zk", {"B": 2, "H": 8, "S": 1024},
                  lambda r: {n: _matmul(r) for n in ("s", "o") if r.random() < 0.8}),
    "softmax": ("examples/softmax.zk", {}, lambda r: {"y": _rows(r, 4096)}),
    "layernorm": ("examples/layernorm.zk", {}, lambda r: {"y": _rows(r, 4096)}),
    "skinny": (SKINNY, {}, lambda r: {"c": _matmul(r, split=True)}),
    "fp8": ("examples/gemm_fp8.zk", {}, lambda r: {"y": _matmul(r)}),
    "fp8_block": ("examples/gemm_fp8_block.zk", {}, lambda r: {"y": _matmul(r)}),
    "bias_gelu": ("examples/gemm_bias_gelu.zk", {}, lambda r: {"h": _matmul(r)}),
    # fused: one flash grid, S = 320 leaves ragged key/value blocks
    "flash": ("examples/attention.zk", {"B": 1, "H": 2, "S": 320, "D": 64}, _flash),
    "flash_causal": ("examples/attention_causal.zk", {"B": 1, "H": 2, "S": 320, "D": 64},
                     _flash),
    "flash_gqa": ("examples/attention_gqa.zk", {"B": 1, "H": 4, "G": 2, "S": 320, "D": 64},
                  _flash),
    # FP8 probabilities (`scale unit`) quantised per key/value block in the flash grid
    "flash_fp8": ("examples/attention_fp8.zk", {"B": 1, "H": 2, "S": 320, "D": 64}, _flash),
}
FLASH = ("flash", "flash_causal", "flash_gqa", "flash_fp8")


def _outcome(fn):
    try:
        return fn()
    except CompileError as e:  # the whole diagnostic: code, message, span, notes, help
        return "error", list(e.diagnostics)


def _compare(name: str, count: int, seed: int) -> FastCoster:
    """`count` random schedules costed both ways, twice: the first round teaches the fast path
    their structure keys, the second costs most of them from numbers alone."""
    source, defines, schedules = KERNELS[name]
    k = zhenwu_cc.compile(source, defines=defines, fuse=name != "attention")
    fast = FastCoster(k)
    rng = random.Random(seed)
    picked = []
    for _ in range(count):
        chosen = schedules(rng)
        picked.append(({n: s for n, (s, _) in chosen.items()},
                       {n: p for n, (_, p) in chosen.items() if p is not None},
                       rng.choice((None, 1, 2, 3))))
    fulls = [_outcome(lambda: k.retile(t, split_k=p, buffers=b).costing(k.target))
             for t, p, b in picked]
    derived = 0
    for order in (range(count), rng.sample(range(count), count)):
        for i in order:
            tiles, split_k, buffers = picked[i]
            before = fast.lowered
            got = _outcome(lambda: fast.costing(tiles, split_k, buffers, k.target))
            derived += fast.lowered == before
            full = fulls[i]
            schedule = f"{name}: tiles={tiles} split_k={split_k} buffers={buffers}"
            if isinstance(full, tuple):
                assert got == full, schedule
                continue
            assert got[0] == full.workload, schedule  # to the byte and the FLOP, per phase
            assert got[1] == full.estimate, schedule  # the same floats
    assert not any(t.slow for t in fast.templates.values())
    assert derived >= count // 2  # the comparison is not of the full lowering with itself
    return fast


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_fast_cost_equals_the_full_lowering(name):
    _compare(name, 8, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_fast_cost_equals_the_full_lowering_on_many_schedules(name):
    """8 kernels x 40 schedules and 4 flash-attention kernels x 70 = 600 random schedules,
    each costed twice."""
    _compare(name, 70 if name in FLASH else 40, seed=2)


def test_most_schedules_are_not_lowered():
    """A 4096^3 GEMM's schedules that fit SRAM share a few structure keys: one lowering per
    key to learn it and one to check it, the others costed from numbers."""
    k = zhenwu_cc.compile("examples/gemm.zk")
    fast = FastCoster(k)
    sizes = (16, 32, 64, 128)
    schedules = [(tm, tn, tk) for tm in sizes for tn in sizes for tk in sizes]
    for s in schedules:
        fast.cost({"c": s}, {}, None, k.target)
    assert fast.lowered <= 2 * len(fast.templates) < len(schedules) / 2
    assert all(t.trusted for t in fast.templates.values())


def test_fast_cost_is_the_api_and_checks_like_retile():
    k = zhenwu_cc.compile("examples/gemm.zk", defines={"M": 512, "N": 512, "K": 512})
    for s in ([64, 64, 32], [32, 128, 64], [128, 32, 64]):
        assert k.fast_cost({"c": s}, buffers=3) == k.retile({"c": s}, buffers=3).cost()
    assert k.fast_cost({"c": [64, 64, 32]}, target="h100") == \
        k.retile({"c": [64, 64, 32]}).cost("h100")
    with pytest.raises(CompileError) as e:
        k.fast_cost({"nope": [1, 2, 3]})
    assert e.value.diagnostics[0].code == "ZK0402"
    with pytest.raises(CompileError) as e:
        k.fast_cost({"c": [64, 64]})
    assert e.value.diagnostics[0].code == "ZK0403"


def test_a_mismatch_makes_the_key_lower_every_schedule(monkeypatch):
    """A key whose derived numbers disagree with the full lowering is never trusted: its
    schedules are lowered from then on (here the derivation is broken on purpose)."""
    from zhenwu_cc import fast_cost

    k = zhenwu_cc.compile("examples/gemm.zk")
    fast = FastCoster(k)
    fast.cost({"c": [64, 64, 32]}, {}, None, k.target)
    real = fast_cost.phase_of

    def broken(spec, tensors, grid, trips, *rest):  # one step too many
        return real(spec, tensors, grid, trips + 1, *rest)

    monkeypatch.setattr(fast_cost, "phase_of", broken)
    want = k.retile({"c": [128, 128, 32]}).cost()
    assert fast.cost({"c": [128, 128, 32]}, {}, None, k.target) == want
    (template,) = fast.templates.values()
    assert template.slow and not template.trusted
    before = fast.lowered
    fast.cost({"c": [32, 32, 32]}, {}, None, k.target)
    assert fast.lowered == before + 1


def test_tiles_too_big_for_sram_are_refused_as_tile_refuses_them():
    """ZK0604 with the same message, buffers and suggested tiles as the full lowering, and
    without lowering once the smaller sizes' keys are known."""
    k = zhenwu_cc.compile("examples/gemm.zk")
    fast = FastCoster(k)
    for s in ([64, 64, 32], [64, 64, 64], [64, 128, 64], [64, 128, 128]):  # the keys visited
        fast.cost({"c": s}, {}, 3, k.target)
        fast.cost({"c": [x // 2 for x in s]}, {}, 3, k.target)  # each key checked once
    with pytest.raises(CompileError) as full:
        k.retile({"c": [256, 256, 128]}, buffers=3).cost()
    before = fast.lowered
    with pytest.raises(CompileError) as got:
        fast.cost({"c": [256, 256, 128]}, {}, 3, k.target)
    assert got.value.diagnostics == full.value.diagnostics
    assert "fits" in full.value.diagnostics[0].help
    assert fast.lowered == before


def test_dma_bytes_in_closed_form_equal_the_point_sum():
    """extract's closed form (each index walks one axis) against the sum over every point,
    with and without steps skipped per point of a grid dim (`loop.live_steps`)."""
    from zhenwu_cc.runtime.cost.extract import _dma_elements, _dma_points, _Space

    rng = random.Random(0)
    for _ in range(600):
        grid = tuple(rng.randint(1, 6) for _ in range(rng.randint(1, 3)))
        trips = rng.randint(1, 5)
        live = None
        if rng.random() < 0.5:
            d = rng.randrange(len(grid))
            lo = [rng.randint(0, trips) for _ in range(grid[d])]
            live = (d, lo, [rng.randint(a, trips) for a in lo])
        space = _Space(grid, trips, live=live)
        in_loop = rng.random() < 0.5
        axes = [("grid", d) for d in range(len(grid))] + ([("step",)] if in_loop else [])
        rng.shuffle(axes)
        dims = [(axes.pop() if axes and rng.random() < 0.8 else ("const", rng.randint(0, 3)),
                 rng.randint(1, 9), rng.randint(1, 40)) for _ in range(rng.randint(1, 4))]
        assert _dma_elements(dims, space, in_loop) == _dma_points(dims, space, in_loop), dims


def test_refusals_of_a_split_k_matmul_and_of_an_unsplit_one_point_where_tile_does():
    """`tile` reports a split-K grid's ZK0604 at the matmul, an unsplit one's at the value the
    grid stores: each key keeps its own."""
    k = zhenwu_cc.compile(SKINNY)
    fast = FastCoster(k)
    for split in (1, 4):  # two keys each, trusted: [tm, 64, tk] and [t, t, tk]
        for s in ([16, 64, 256], [32, 64, 256], [16, 16, 64], [32, 32, 128]):
            fast.cost({"c": s}, {"c": split}, 3, k.target)
    before = fast.lowered
    spans = set()
    for split in (1, 4):
        with pytest.raises(CompileError) as full:
            k.retile({"c": [32, 64, 512]}, split_k={"c": split}, buffers=3).cost()
        with pytest.raises(CompileError) as got:
            fast.cost({"c": [32, 64, 512]}, {"c": split}, 3, k.target)
        assert got.value.diagnostics == full.value.diagnostics
        spans.add(full.value.diagnostics[0].span)
    assert fast.lowered == before and len(spans) == 2


def test_block_scaled_operands_key_on_how_tiles_meet_their_scale_blocks():
    """The scale tiles and scale indices of a block-scaled matmul follow tile // block (or
    block // tile): a key holds them, or a K tile of 256 would be costed as one of 128."""
    k = zhenwu_cc.compile("examples/gemm_fp8_block.zk")
    fast = FastCoster(k)
    for tm, tn, tk in itertools.product((16, 32, 64), (32, 64, 128), (32, 64, 128, 256)):
        want = k.retile({"y": [tm, tn, tk]}, buffers=1).costing(k.target).workload
        assert fast.costing({"y": [tm, tn, tk]}, {}, 1, k.target)[0] == want, (tm, tn, tk)


def test_buffers_depths_above_one_share_a_template():
    """Where every grid is sized by a directive, a `buffers` depth above 1 only sets how many
    slots the loads in loops take: one template serves them all (depth 1 is another key)."""
    k = zhenwu_cc.compile("examples/gemm.zk", defines={"M": 512, "N": 512, "K": 512})
    fast = FastCoster(k)
    for depth in (2, 3):  # the template, then its check
        fast.cost({"c": [64, 64, 32]}, {}, depth, k.target)
    before = fast.lowered
    for tiles, depth in (([64, 64, 32], 8), ([32, 32, 64], 4), ([32, 32, 64], 2)):
        full = k.retile({"c": tiles}, buffers=depth).costing(k.target)
        got = fast.costing({"c": tiles}, {}, depth, k.target)
        assert got == (full.workload, full.estimate), (tiles, depth)
        assert got[0].phases[0].buffers == depth
    assert fast.lowered == before and len(fast.templates) == 1


def test_a_causal_flash_grid_is_costed_from_numbers_with_its_skipped_steps():
    """The flash grid's blocks come from `tile s` and `tile o` together, and the key/value
    steps a causal mask skips from its blocks (`flash_live`): schedules of one key are costed
    without lowering, each with its own skipped steps, as the full lowering counts them."""
    k = zhenwu_cc.compile("examples/attention_causal.zk", defines={"B": 1, "H": 2, "S": 512})
    fast = FastCoster(k)
    schedules = [{"s": [bq, bkv, 64], "o": [bq, 64, bkv]}
                 for bq, bkv in ((32, 16), (16, 32), (128, 32), (32, 128))]
    for tiles in schedules[:2]:  # the key's template, then its check
        fast.costing(tiles, {}, None, k.target)
    before = fast.lowered
    steps = set()
    for tiles in schedules:
        got = fast.costing(tiles, {}, None, k.target)
        full = k.retile(tiles).costing(k.target)
        assert got == (full.workload, full.estimate), tiles
        (phase,) = got[0].phases
        steps.add(phase.steps)
    assert fast.lowered == before and len(fast.templates) == 1
    assert len(steps) == len(schedules)  # each schedule skips its own steps


def test_flash_tiles_too_big_for_sram_are_refused_as_tile_refuses_them():
    """ZK0604 for a flash grid, with the sizes `tile o` is written in and the smaller blocks
    `fit` would take (halving the key/value block first), planned from the templates of their
    keys: the key's first refusal is checked against the full lowering, then derived."""
    k = zhenwu_cc.compile("examples/attention.zk", defines={"B": 1, "H": 2, "S": 2048})
    fast = FastCoster(k)

    def tiles(bq, bkv):
        return {"o": [bq, 64, bkv], "s": [bq, bkv, 32]}

    fast.cost(tiles(32, 16), {}, 2, k.target)  # the template of [128, 64, 128, 32]'s key
    fast.cost(tiles(128, 64), {}, 2, k.target)  # its check, and the blocks that fit
    with pytest.raises(CompileError) as full:
        k.retile(tiles(128, 128), buffers=2).cost()
    assert "flash-attention tile [128, 64, 128]" in full.value.diagnostics[0].message
    assert full.value.diagnostics[0].help.startswith("`tile o [128, 64, 64]` fits")
    lowered = []
    for _ in range(2):
        before = fast.lowered
        with pytest.raises(CompileError) as got:
            fast.cost(tiles(128, 128), {}, 2, k.target)
        assert got.value.diagnostics == full.value.diagnostics
        lowered.append(fast.lowered - before)
    assert lowered == [0, 0]  # the key of [128, 128] (BQ == BKV) is served by a trusted one


def test_flash_blocks_with_bd_equal_to_bkv_keep_no_dead_buffer():
    """Where BD == BKV the zeros that start each key/value step's scores and those that start
    the accumulator have one shape; `cse` used to share them, which kept the fill live across
    the loop in a buffer of its own, and alloc-sram then refused [64, 128, 128] (ZK0601) although
    `tile` had fitted it. The accumulator's fill is its own (`loop.init`): both paths accept
    the blocks, with the SRAM of the blocks beside them (BKV = 64) plus the larger tiles."""
    k = zhenwu_cc.compile("examples/attention.zk", defines={"B": 1, "H": 2, "S": 2048})
    fast = FastCoster(k)
    fast.cost({"o": [16, 128, 64], "s": [16, 64, 32]}, {}, 2, k.target)
    peaks = []
    for bkv in (64, 128):
        tiles = {"o": [64, 128, bkv], "s": [64, bkv, 32]}
        full = k.retile(tiles, buffers=2).costing(k.target)
        assert fast.costing(tiles, {}, 2, k.target) == (full.workload, full.estimate)
        (phase,) = full.workload.phases
        peaks.append(phase.sram_bytes)
    # BKV 64 -> 128: the K and V step tiles (bf16, 2 slots each: [128, 32] x 4 score steps and
    # [128, 128]) and the f32 scores [64, 128] (and their exp, cast) grow; no [64, 128] f32 more
    assert peaks[1] < 232 * 1024


def test_equal_flash_sizes_lower_to_one_structure():
    """What lets a flash grid's template serve keys that differ only in which of its sizes are
    equal without a look at their programs (`fast_structure.equal_sizes_only`): each kernel's
    blocks of one coarse key lower (to `ppu`) to one structure, whichever sizes are equal."""
    from zhenwu_cc.fast_structure import coarse, program_structure, structure_key
    from zhenwu_cc.pipeline import _default_passes, make_context

    blocks = [(16, 32, 16, 32), (32, 32, 16, 32), (16, 32, 32, 32), (32, 32, 32, 32),
              (32, 16, 32, 16), (16, 16, 16, 16), (32, 16, 16, 16), (16, 48, 32, 32)]
    for name in FLASH:
        source, defines, _ = KERNELS[name]
        k = zhenwu_cc.compile(source, defines=defines)
        fast = FastCoster(k)
        groups: dict = {}
        for bq, bd, bkv, tk in blocks:
            tiles = {"o": [bq, bd, bkv], "s": [bq, bkv, tk]}
            sizes = fast._all_sizes(fast._directives(tiles, {}))
            key = coarse(structure_key(k.target, 2, sizes, 128))
            module = k.retile(tiles)._zk.clone()
            ctx = make_context()
            for p in _default_passes("ppu", k.target, True):
                p.apply(ctx, module)
            groups.setdefault(key, set()).add(program_structure(module))
        assert len(groups) == 3, name  # K 32 or 16 (unrolled score steps), BD 48 ragged
        assert all(len(structures) == 1 for structures in groups.values()), name


def test_flash_keys_of_equal_sizes_are_served_by_a_template_of_distinct_sizes():
    """A flash sweep whose first schedule has equal sizes (BQ == BKV) is learned from blocks of
    the same classes with no two equal (two lowerings: those blocks, and this schedule's own as
    the template's check); every other key of the sweep (BD == BKV, BQ == BKV, BQ == K, ...)
    is then served by that template with no lowering and no run to `tile`, equal to the full
    lowering."""
    k = zhenwu_cc.compile("examples/attention.zk", defines={"B": 1, "H": 2, "S": 512, "D": 128})
    fast = FastCoster(k)

    def tiles(bq, bkv):  # blocks [BQ, BD = 128, BKV, K = 64]
        return {"s": [bq, bkv, 64], "o": [bq, 128, bkv]}

    counts = []
    for bq, bkv in ((32, 32), (16, 128), (16, 16), (32, 16), (64, 32), (16, 64), (128, 16)):
        before = fast.lowered, fast.tiled
        got = fast.costing(tiles(bq, bkv), {}, None, k.target)
        full = k.retile(tiles(bq, bkv)).costing(k.target)
        assert got == (full.workload, full.estimate), (bq, bkv)
        counts.append((fast.lowered - before[0], fast.tiled - before[1]))
    assert counts == [(2, 0)] + [(0, 0)] * 6
    (template,) = fast.templates.values()
    assert template.trusted and len(set(template.sizes[0].build)) == 4
    # the keys of BQ == BKV, BD == BKV, BQ == K, BKV == K, BQ == BD; (32, 16) and (64, 32) are
    # of the template's own key (no two sizes equal)
    assert len(template.serves) == 5


def test_a_new_key_of_the_same_structure_is_served_by_a_template_without_lowering():
    """Outside a flash grid, a key that differs from a trusted template's only in which sizes
    are equal is costed from that template once its program after `tile` has the template's
    structure (one run of the passes up to `tile`, no lowering). All equal the full lowering."""
    k = zhenwu_cc.compile("examples/gemm.zk", defines={"M": 512, "N": 512, "K": 512})
    fast = FastCoster(k)
    counts = []
    for tiles in ((64, 32, 16), (32, 64, 16), (32, 32, 16), (16, 32, 16), (32, 16, 32),
                  (16, 16, 16)):
        before = fast.lowered, fast.tiled
        got = fast.costing({"c": tiles}, {}, None, k.target)
        full = k.retile({"c": tiles}).costing(k.target)
        assert got == (full.workload, full.estimate), tiles
        counts.append((fast.lowered - before[0], fast.tiled - before[1]))
    # the template and its check; TM == TN, TM == K, TM == TN == K: one run to `tile` each
    # ([32, 16, 32] is of the key of TM == K, now known)
    assert counts == [(1, 0), (1, 0), (0, 1), (0, 1), (0, 0), (0, 1)]
    (template,) = fast.templates.values()
    assert template.trusted and len(template.serves) == 3
