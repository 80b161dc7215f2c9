"""The `tile` pass: `zk` tensors -> `tile` grids of output tiles.

How a kernel is cut into grids. A value is *materialised* (written to a global tensor by a grid
of its own) when it is a kernel result, an anchor (matmul, reduction, argmax, concat) that cannot
be computed inside the tile that needs it, or the input of a reshape (a view) or a concat.
Everything else is *inlined*: recomputed inside each consumer tile from tile loads — elementwise
ops, casts, transposes, broadcasts, slices, iotas and constants. So:

- a matmul grid runs the K loop and applies its elementwise epilogue (`gelu(x @ w + b)`) to the
  accumulator before the store: no round trip through HBM;
- a reduction is inlined into a consumer whose tile covers the whole reduced axis (a row-resident
  softmax or layernorm is one grid reading each row once); when the axis is too long for SRAM it
  gets a grid of its own that loops over chunks of the axis, and consumers load the result
  (multi-pass: a 65,536-column softmax runs as max, sum and normalise grids, never holding a
  whole row on chip);
- a kernel result that an elementwise grid computes anyway at that grid's tiles is stored by it
  too (`costore`: rmsnorm's residual sum `h` beside `y`), unless a directive sizes it;
- skinny GEMMs split K across compute units (a grid dimension for the split), writing f32
  partial sums that the consumer grid reduces before the epilogue;
- fusions (each asks `fuse_control`): `softmax(S) @ V` with S computed per tile becomes one
  flash-attention grid with online softmax, skipping key/value blocks an iota mask hides
  (`flash`, `masks`); matmuls sharing their left operand and combined elementwise (SwiGLU)
  become one grid with an accumulator each (`joint`).

Tile sizes come from the schedule's `tile NAME [...]` or from a heuristic that fits the target's
SRAM (and, for matmuls, fills its compute units). A directive is honoured or refused, never
dropped: `[M, N, K]` on a matmul's epilogue makes that value the matmul grid's result even where
its readers would recompute the epilogue (softmax(q @ k^T * scale)); a directive no grid takes
(its value recomputed in other grids' tiles, a view, unused) is ZK0605, and one whose value a
grid sized by another directive computes is ZK0606. Each grid records the tiles it runs, and the
directive they came from, in `tile.sizes` (for `compile` and `cost` reports). `split NAME S`
(exactly S parts: `split`) and `fuse NAME off` (`fuse_control`; the pass option `fuse=false`
turns every fusion off) are honoured or refused the same way (ZK0607, ZK0608).

Tiles at edges are padded on load and clipped on store; where padding could leak into a
reduction (a computed operand rather than a load with the identity as padding) it is masked with
`iota < extent`.

The helpers live in `passes/tiling/`, one idea per module: `requests` (which tile of a value a
consumer needs), `sizes` (tile-size choice), `scales` (low-precision scale blocks), `fusion`
(what a matmul's grid computes on its accumulator), `costore` (results stored by a grid
that computes them anyway), `directives` (the schedule's `tile`),
`split` (its `split`), `fuse_control` (who may be fused), `flash` (flash attention), `masks`
(the key/value blocks a mask hides), `joint` (fused operand chains), `grids` (building one
grid) and `kernel` (which grids a kernel gets). The SRAM fit uses the planning arithmetic `alloc-sram`
uses (`passes/sram_plan.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, TensorType
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.rewriter import InsertPoint
from zhenwu_cc.core.attrs import FLOPS
from zhenwu_cc.dialects import zk
from zhenwu_cc.dialects.loc import span_of

from zhenwu_cc.core.diagnostics import Note, error
from zhenwu_cc.passes.decompose import COMPOSITES
from zhenwu_cc.passes.tiling.kernel import KernelTiler
from zhenwu_cc.passes.tiling.requests import shape_of
from zhenwu_cc.passes.tiling.scales import mma_dtype
from zhenwu_cc.core.target import DEFAULT_TARGET, load_target
from zhenwu_cc.passes.stages import require_untiled


class SplitMultiAxisReduction(RewritePattern):
    """sum(x, (0, 1)) -> sum(sum(x, 1), 0): tiling handles one reduced axis per grid."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, zk.ReduceOp) or len(op.axis_list) < 2:
            return
        keep = op.keepdims is not None
        cur = op.input
        kind = type(op)
        inner = zk.ReduceSumOp if kind is zk.ReduceMeanOp else kind
        axes = sorted(op.axis_list, reverse=True)
        new_ops = []
        for i, a in enumerate(axes):
            cls = kind if (i == len(axes) - 1 and kind is not zk.ReduceMeanOp) else inner
            r = cls(cur, [a], True)
            r.location = op.location
            new_ops.append(r)
            cur = r.result
        if kind is zk.ReduceMeanOp:
            n = math.prod(shape_of(op.input)[a] for a in op.axis_list)
            c = zk.ConstantOp(1.0 / n, TensorType(op.result.type.element_type, []))
            m = zk.MulOp(cur, c.result)
            c.location = m.location = op.location
            new_ops += [c, m]
            cur = m.result
        if not keep:
            r = zk.ReshapeOp(cur, shape_of(op.result))
            r.location = op.location
            new_ops.append(r)
            cur = r.result
        rewriter.insert(new_ops, InsertPoint.before(op))
        if op.result.name_hint:
            cur.name_hint = op.result.name_hint
        new_ops[-1].attributes.update(op.attributes)
        rewriter.replace_all_uses_with(op.result, cur)
        rewriter.erase(op)


def split_multi_axis_reductions(kernel: zk.KernelOp) -> None:
    """Apply `SplitMultiAxisReduction` to every reduction of `kernel`."""
    PatternRewriteWalker(SplitMultiAxisReduction(), apply_recursively=False
                         ).rewrite_region(kernel.body)


# frozen: xDSL's ModulePass is; no repr (start-up: nothing prints a pass)
@dataclass(frozen=True, repr=False)
class TilePass(ModulePass):
    """Cut every `zk.kernel` into `tile.grid`s (see the module docstring)."""

    name = "tile"
    target: str = DEFAULT_TARGET
    fuse: bool = True  # false: none of issue 14's fusions (`--no-fuse`, the unfused baseline)

    def apply(self, ctx: Context, op: ModuleOp) -> None:

        target = load_target(self.target)
        for kernel in list(op.walk()):
            if isinstance(kernel, zk.KernelOp):
                require_untiled(kernel, "tile")
                _check_primitives(kernel)
                _record_flops(kernel)
                split_multi_axis_reductions(kernel)
                KernelTiler(kernel, target, self.fuse).run()


def _record_flops(kernel: zk.KernelOp) -> None:
    """Useful FLOPs of the source's matmuls by operand dtype (`FLOPS`, which `lower-ppu`
    carries onto the `ppu.kernel` for the cost model's achieved-TFLOP/s figures): tiles compute
    padding too, so the lowered program overstates them."""
    flops: dict[str, int] = {}
    for op in kernel.body.walk():
        if isinstance(op, zk.MatmulOp):
            name = mma_dtype(op).name
            flops[name] = (flops.get(name, 0)
                           + 2 * math.prod(shape_of(op.result)) * shape_of(op.lhs)[-1])
    if flops:
        kernel.attributes[FLOPS] = DictionaryAttr(
            {k: IntegerAttr(v, 64) for k, v in sorted(flops.items())})


def _check_primitives(kernel: zk.KernelOp) -> None:
    for op in kernel.body.walk():
        if isinstance(op, COMPOSITES):
            raise error("ZK0603", f"`{op.name}` must be expanded by `decompose` before `tile`",
                        span_of(op), help="run the pipeline `decompose,tile`",
                        notes=[Note("the default pipelines do this")])
