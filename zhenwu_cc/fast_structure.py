"""The fast cost path's structure matching (`zhenwu_cc/fast_cost.py`): which schedules share
one lowered program up to their sizes, so that one lowering's template serves them all.

- `structure_key`: what decides a schedule's program (the module docstring of fast_cost.py).
- `coarse`: the key without which sizes of a directive are equal. Keys of one coarse key mostly
  lower to one structure; `program_structure` (a program without its sizes) tells, after `tile`
  (`tiled_structure`: about half a lowering).
- `equal_sizes_only`: keys that differ only in which sizes of a flash grid are equal lower to
  one structure, always: the flash lowering starts its accumulator from a fill of its own
  (`attrs.LOOP_INIT`), so `cse` cannot share it with the zeros that start a key/value step's
  scores where BD == BKV, and nothing else in the grid depends on two sizes being equal
  (`tests/test_fast_cost.py` lowers each flash kernel with many equal sizes to check it). A
  template of one such key serves the other without a look at its program.
- `distinct_tiles` (`distinct_build`): a flash grid's blocks with the same classes as the given
  ones but no two equal, so that a template lowered with them maps onto every key of its coarse
  key (each of its tile dimensions names one size).
- `flash_groups`: the flash grids `tile` will build and the directives that size them.
"""

from __future__ import annotations

import math

from zhenwu_cc.dialects import zk
from zhenwu_cc.passes.tile import TilePass
from zhenwu_cc.passes.tiling.flash import match_flash
from zhenwu_cc.passes.tiling.fuse_control import FuseControl
from zhenwu_cc.passes.tiling.requests import shape_of
from zhenwu_cc.passes.tiling.split import split_parts
from zhenwu_cc.pipeline import _default_passes, make_context

MATMUL, GRID, FLASH = "matmul", "grid", "flash"
MIN_BLOCK = 16  # the sizes `distinct_build` moves to are multiples of it


def structure_key(target: str, depth: int, sizes: dict, cus: int) -> tuple:
    """The structure key: the target, the `buffers` depth, each directive's classes
    (`_Sizes.classes`) and whether its grid (if not a matmul's) has more tiles than CUs, which
    multi-buffers a loop-less grid's loads across the tiles a CU runs in turn (alloc-sram)."""
    return (target, depth, tuple(sorted(
        (n, s.classes, s.kind == GRID and math.prod(s.grid) > cus) for n, s in sizes.items())))


def coarse(key: tuple) -> tuple:
    """The structure key without which sizes of a directive are equal: its templates may serve
    each other's schedules (`FastCoster._serving`)."""
    target, depth, classes = key
    return (target, depth, tuple((n, c[:2] + c[3:], many) for n, c, many in classes))


def equal_sizes_only(a: tuple, b: tuple) -> bool:
    """Whether two keys' classes (a key's third part) differ at most in which sizes of a flash
    grid are equal, which does not change its program (see the module docstring)."""
    return len(a) == len(b) and all(
        x == y or (x[0] == y[0] and x[2] == y[2] and x[1][0] == y[1][0] == FLASH
                   and x[1][:2] + x[1][3:] == y[1][:2] + y[1][3:]) for x, y in zip(a, b))


def program_structure(module) -> tuple:
    """A program's structure without its sizes: each op's name, the names of its attributes
    and properties, the element types of its results, its regions and which values (results,
    block arguments, by first appearance) it uses."""
    ids: dict = {}
    out = []
    for op in module.walk():
        out.append((op.name, tuple(ids.setdefault(v, len(ids)) for v in op.operands),
                    tuple(str(getattr(r.type, "element_type", r.type)) for r in op.results),
                    tuple(len(r.blocks) for r in op.regions), tuple(sorted(op.attributes)),
                    tuple(sorted(op.properties))))
        for r in op.results:
            ids.setdefault(r, len(ids))
        for region in op.regions:
            for block in region.blocks:
                for a in block.args:
                    ids.setdefault(a, len(ids))
    return tuple(out)


def tiled_structure(kernel, target: str) -> tuple:
    """The structure of `kernel`'s program after `tile` (and its canonicalize, cse): about half
    a lowering."""
    module = kernel._zk.clone()
    ctx = make_context()
    for p in _default_passes("tile", target, kernel.fuse):
        p.apply(ctx, module)
    return program_structure(module)


def flash_groups(kernel) -> list:
    """(match, names of `o`'s matmul, names of `s`'s) of each `softmax(s) @ v` that `tile`
    fuses into a flash grid whatever the tile sizes (found in the kernel as `tile` receives
    it; a `fuse NAME off` or `split NAME S` in it keeps the unfused grids)."""
    if not kernel.fuse:
        return []
    module = kernel._zk.clone()
    ctx = make_context()
    for p in _default_passes("tile", kernel.target, True):
        if isinstance(p, TilePass):
            break
        p.apply(ctx, module)
    body = module.ops.first
    fusion = FuseControl(body, True)
    feeding = {op.results[0].name_hint: zk.matmul_feeding(op)
               for op in body.body.walk() if op.results and op.results[0].name_hint}
    groups = []
    for op in body.body.walk():
        f = match_flash(op) if isinstance(op, zk.MatmulOp) else None
        if (f is None or not fusion.allows_all(f.group())
                or any(split_parts(g) is not None for g in f.group())):
            continue
        groups.append((f, tuple(n for n, mm in feeding.items() if mm is f.pv),
                       tuple(n for n, mm in feeding.items() if mm is f.qk)))
    return groups


def distinct_build(build: tuple, dims: tuple) -> tuple | None:
    """`build` (a flash grid's [BQ, BD, BKV, K]) with no two sizes equal, each size in its class
    (whether it is 1, covers its dimension `dims[i]`, divides it), or None. A size that is 1 or
    covers its dimension stays (every schedule of the key has it), and so does K where it can
    (it sets how many score steps are unrolled); then BD, BQ and BKV, in that order, each
    become a power-of-two multiple of themselves where they equal a size already taken (halves
    first: they fit SRAM where the size did; multiples of `MIN_BLOCK`, as tiles are written).
    The caller checks that the whole key is the same up to equalities."""
    out = list(build)
    used = {v for v, d in zip(build, dims) if v == 1 or v == d}
    for i in (3, 1, 0, 2):
        v, d = build[i], dims[i]
        if v == 1 or v == d:
            continue
        out[i] = next((w for w in (v, v // 2, v * 2, v // 4, v * 4, v // 8, v * 8)
                       if w not in used and (w == v or w % MIN_BLOCK == 0) and 1 < w < d
                       and (d % w == 0) == (d % v == 0)), None)
        if out[i] is None:
            return None
        used.add(out[i])
    return tuple(out)


def distinct_tiles(groups: list, sizes: dict, tiles: dict) -> dict | None:
    """`tiles` with each flash grid's blocks (`groups`: `FastCoster._flash_groups`, `sizes`:
    each directive's `_Sizes`) made distinct by `distinct_build`, written as `tile o [BQ, BD,
    BKV]` and `tile s [BQ, BKV, K]` write them; None where nothing changes or they cannot be."""
    other = dict(tiles)
    for f, o_names, s_names in groups:
        group = next((s for s in sizes.values() if s.kind == FLASH and s.args[3] is f), None)
        if group is None:
            continue
        out = shape_of(f.pv.result)
        build = distinct_build(group.build, (*out[-2:], f.kv_len, shape_of(f.qk.lhs)[-1]))
        if build is None:
            return None
        bq, bd, bkv, tk = build
        other.update((n, [bq, bd, bkv] if n in o_names else [bq, bkv, tk])
                     for n in (*o_names, *s_names) if sizes.get(n) is group)
    return None if other == tiles else other
