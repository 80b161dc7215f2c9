"""`cast`: make the schedule's `precision` directives explicit (docs/precision.md).

`precision X as DT scale MODE` means X is quantised and every use of X sees its dequantised
value:

- a *parameter* is stored in DT: the kernel takes its values and scales instead, each new
  argument saying how the host makes it from the original (`zk.quantized_from`), and the body
  dequantises them;
- a *binding* is quantised where it is produced (`zk.quantize`), after a reduction of its amax
  when a scaling group is wider than a tile (per tensor, per channel, NVFP4's tensor scale), and
  dequantised;
- `f16` and `bf16` are plain down-casts (`zk.cast` there and back);
- `scale unit` on `p = softmax(x)` quantises the unnormalised probabilities `e = exp(x - max)`
  (in [0, 1]) per tensor with the amax fixed at 1, so no reduction is needed, and every use sees
  `dequantize(e) / sum(e)`; a matmul reading p as its left operand over the softmax's axis
  multiplies the quantised `e` and divides its result by the row sums, as FlashAttention-3 does
  (`passes/tiling/flash.py` fuses that form too).

`zk.dequantize` yields f32, cast to X's own dtype for its uses. A matmul whose two operands are
dequantised (through transposes and casts) takes the f32 dequantised values directly: the tensor
engine multiplies the low-precision values with their scales applied, exact products summed in
f32, and the `tile` pass fuses the dequantisations into a scaled `tile.mma`. A matmul of two
down-cast operands multiplies the narrow values the same way. Every op made carries the location
of the parameter or op it comes from.
"""

from __future__ import annotations

import math

from xdsl.context import Context
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FunctionType,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.transforms.dead_code_elimination import is_trivially_dead
from zhenwu_cc.core import attrs as attr_names
from zhenwu_cc.core import dtypes
from zhenwu_cc.dialects import zk
from zhenwu_cc.dialects.loc import span_of

from zhenwu_cc.core.diagnostics import error
from zhenwu_cc.passes.decompose import expand_in_place, normalised
from zhenwu_cc.passes.stages import require_untiled

F32 = dtypes.to_xdsl(dtypes.F32)
SCALE_NAMES = ("", "_scale", "_tensor_scale")  # argument names: values, scales, tensor scale


def amax_ops(x: SSAValue, mode: str, args, axis: int | None) -> list[Operation]:
    """The ops that reduce the amax a `zk.quantize` of `x` in `mode` needs (the last yields it):
    the largest |x| per scale (tensor, channel), of the finite values for NVFP4."""
    shape = tuple(x.type.get_shape())
    elem = x.type.element_type
    ops: list[Operation] = [zk.AbsOp(x)]
    if mode == "nvfp4":
        inf = zk.ConstantOp(math.inf, TensorType(elem, []))
        zero = zk.ConstantOp(0.0, TensorType(elem, []))
        finite = zk.CompareOp("lt", ops[0].result, inf.result)
        ops += [inf, zero, finite, zk.SelectOp(finite.result, ops[0].result, zero.result)]
    blocks = zk.scale_blocks(mode, args, shape, axis)
    axes = [d for d, n in enumerate(shape) if n > 1 and (mode == "nvfp4" or blocks[d] == n)]
    if axes:
        ops.append(zk.ReduceMaxOp(ops[-1].results[0], axes, True))
    return ops


class _Caster:
    def __init__(self, kernel: zk.KernelOp):
        self.kernel = kernel
        self.block = kernel.body.block
        self.attrs: dict[BlockArgument, dict[str, Attribute]] = {
            arg: dict(kernel.arg_attrs.data[i].data) if kernel.arg_attrs else {}
            for i, arg in enumerate(self.block.args)}
        # What each value standing for a directive's target comes from: its zk.dequantize
        # (f32), or the narrow value of a down-cast.
        self.sources: dict[SSAValue, SSAValue] = {}
        self.start = self.block.first_op  # dequantised parameters go before it, in order

    def run(self) -> None:
        require_untiled(self.kernel, "cast")
        targets = [(a, attrs.pop(attr_names.PRECISION)) for a, attrs in self.attrs.items()
                   if attr_names.PRECISION in attrs]
        targets += [(op.results[0], op.attributes.pop(attr_names.PRECISION))
                    for op in self.block.ops if attr_names.PRECISION in op.attributes]
        axes = {v: zk.contraction_axis(v) for v, p in targets if p.mode.data in zk.AXIS_GROUPS}
        for v, p in targets:
            if p.mode.data in zk.AXIS_GROUPS and axes[v] is None:  # the front end checks this;
                raise error("ZK0404", f"`{p.mode.data}` scales block along the axis a matmul "
                            "contracts, but this value is not contracted along exactly one axis",
                            span_of(v.owner) if isinstance(v.owner, Operation) else span_of(self.kernel),
                            help="use `tensor`, `channel` or `block` scaling")
        for value, p in targets:
            if isinstance(value, BlockArgument):
                self.parameter(value, p, axes.get(value))
            elif p.mode.data == "unit":
                self.unit(value, p)
            else:
                self.binding(value, p, axes.get(value))
        self.signature()
        for mm in [op for op in self.block.ops if isinstance(op, zk.MatmulOp)]:
            self.fuse(mm)
        PatternRewriteWalker(EraseDeadOperandCopies(), apply_recursively=False,
                             walk_reverse=True).rewrite_region(self.kernel.body)
        self.check_fast_accumulate()

    # -- parameters: stored quantised, dequantised in the body --
    def parameter(self, arg: BlockArgument, p: zk.PrecisionAttr, axis: int | None) -> None:
        name = arg.name_hint or f"arg{arg.index}"
        shape = tuple(arg.type.get_shape())
        types = zk.quantized_types(shape, p, axis) if p.scaled else [TensorType(p.dtype, shape)]
        used = {a.name_hint for a in self.block.args}
        parts = []
        for part, t in enumerate(types):
            new = self.block.insert_arg(t, arg.index + 1 + part, arg.location)
            new.name_hint = name if part == 0 else _fresh(name + SCALE_NAMES[part], used)
            origin: dict[str, Attribute] = {"param": StringAttr(name),
                                            "part": IntegerAttr(part, 64), "precision": p}
            if axis is not None:
                origin["axis"] = IntegerAttr(axis, 64)
            self.attrs[new] = {**(self.attrs[arg] if part == 0 else {}),
                               attr_names.QUANTIZED_FROM: DictionaryAttr(origin)}
            parts.append(new)
        ops, value, source = self._restore(parts, arg.type, name)
        for op in ops:
            op.location = arg.location
            self.block.insert_op_before(op, self.start)
        self.sources[value] = source
        arg.replace_all_uses_with(value)
        del self.attrs[arg]
        self.block.erase_arg(arg)

    # -- bindings: quantised where produced --
    def binding(self, value: SSAValue, p: zk.PrecisionAttr, axis: int | None) -> None:
        producer = value.owner
        assert isinstance(producer, Operation)
        name = value.name_hint or "x"
        ops: list[Operation] = []
        if p.scaled:
            mode = p.mode.data
            if mode in zk.AMAX_MODES:
                ops = amax_ops(value, mode, p.mode_args, axis)
            amax = ops[-1].results[0] if mode in zk.AMAX_MODES else None
            q = zk.QuantizeOp(value, p, axis, amax)
            for r, suffix in zip(q.results, ("_q", *SCALE_NAMES[1:])):
                r.name_hint = name + suffix
            ops.append(q)
            parts = list(q.results)
        else:
            down = zk.CastOp(value, p.dtype)
            ops.append(down)
            parts = [down.result]
        restore, restored, source = self._restore(parts, value.type, name)
        ops += restore
        for op in ops:
            op.location = producer.location
        self.block.insert_ops_after(ops, producer)
        self.sources[restored] = source
        inside = {id(op) for op in ops}
        value.replace_uses_with_if(restored, lambda use: id(use.operation) not in inside)

    def unit(self, value: SSAValue, p: zk.PrecisionAttr) -> None:
        """`scale unit` on a softmax's result: quantise e = exp(x - max) with the amax 1 and
        divide by the sum after dequantising, or after the matmuls reading p as their left
        operand (module docstring)."""
        if isinstance(value.owner, zk.SoftmaxOp):  # the typed program of `--check`: undecomposed
            value = expand_in_place(value.owner)
        soft = softmax_parts(value)
        if soft is None:
            raise error("ZK0619", "scale mode `unit` quantises a softmax's unnormalised "
                        f"probabilities, but `{value.name_hint or 'this value'}` is not the "
                        "result of a softmax", span_of(value.owner)
                        if isinstance(value.owner, Operation) else span_of(self.kernel),
                        help="apply it to `p = softmax(s, axis=...)`, or use `scale tensor`")
        div, e, total = soft
        name = value.name_hint or "p"
        rank = len(e.type.get_shape())
        one = zk.ConstantOp(1.0, TensorType(F32, [1] * rank))
        q = zk.QuantizeOp(e, zk.PrecisionAttr(p.dtype, "tensor"), None, one.result)
        for r, suffix in zip(q.results, ("_q", "_scale")):
            r.name_hint = name + suffix
        deq = zk.DequantizeOp(q.values, [q.scales], F32)
        deq.result.name_hint = f"{name}_dq"
        norm = zk.DivOp(deq.result, total)
        ops: list[Operation] = [one, q, deq, norm]
        if norm.result.type.element_type != value.type.element_type:
            ops.append(zk.CastOp(norm.result, value.type.element_type))
        for op in ops:
            op.location = value.owner.location
        self.block.insert_ops_after(ops, value.owner)
        self.sources[deq.result] = deq.result
        restored = ops[-1].results[0]
        restored.name_hint = value.name_hint
        value.replace_all_uses_with(restored)
        moved = dict(value.owner.attributes)  # `tile p`, `fuse p off`: on e, named as p
        if moved:
            e.owner.attributes |= moved
            e.name_hint = e.name_hint or value.name_hint
        for old in (value.owner, div) if value.owner is not div else (div,):
            self.block.erase_op(old)
        if total.owner.axis_list != (rank - 1,):
            return
        for use in list(restored.uses):
            mm = _left_operand_of(use.operation, restored)
            if mm is not None:
                self.normalise_after(use, mm, deq, value.type.element_type, total)
        for op in reversed(ops[3:]):  # the division before the matmuls, if nothing else reads it
            if not op.results[0].uses:
                self.block.erase_op(op)

    def normalise_after(self, use, mm: zk.MatmulOp, deq: zk.DequantizeOp, elem: Attribute,
                        total: SSAValue) -> None:
        """(e / total) @ v as (e @ v) / total (total holds one sum per row of the left operand):
        the matmul's left operand (`use`, maybe through casts) reads dequantize(e) in p's dtype."""
        e = deq.result
        if e.type.element_type != elem:
            cast = zk.CastOp(e, elem)
            cast.location = deq.location
            self.block.insert_op_after(cast, deq)
            e = cast.result
        use.operation.operands[use.index] = e
        norm = zk.DivOp(mm.result, total)
        norm.location = mm.location
        self.block.insert_op_after(norm, mm)
        mm.result.replace_uses_with_if(norm.result, lambda u: u.operation is not norm)

    def _restore(self, parts: list[SSAValue], to: TensorType, name: str
                 ) -> tuple[list[Operation], SSAValue, SSAValue]:
        """Ops bringing stored `parts` back to a value of type `to`, that value, and its
        source (the f32 dequantised value, or the narrow values of a down-cast)."""
        ops: list[Operation] = []
        source = parts[0]
        if len(parts) > 1:
            deq = zk.DequantizeOp(parts[0], parts[1:], F32)
            deq.result.name_hint = f"{name}_dq"
            ops.append(deq)
            source = deq.result
        value = source
        if value.type.element_type != to.element_type:
            ops.append(zk.CastOp(value, to.element_type))
            value = ops[-1].results[0]
        return ops, value, source

    def signature(self) -> None:
        k, args = self.kernel, self.block.args
        k.function_type = FunctionType.from_lists([a.type for a in args],
                                                  list(k.function_type.outputs.data))
        attrs = [self.attrs[a] for a in args]
        if any(attrs):
            k.arg_attrs = ArrayAttr([DictionaryAttr(a) for a in attrs])
        else:
            k.properties.pop("arg_attrs", None)

    # -- matmuls of two directive targets --
    def _chain(self, v: SSAValue) -> tuple[SSAValue, list[zk.TransposeOp]] | None:
        """The source a matmul operand comes from through transposes and float casts, and those
        transposes (innermost first); None when it is not a directive's target."""
        transposes: list[zk.TransposeOp] = []
        while v not in self.sources:
            op = v.owner
            if isinstance(op, zk.TransposeOp):
                transposes.append(op)
            elif not (isinstance(op, zk.CastOp) and _is_float(op.input) and _is_float(op.result)):
                return None
            v = op.operands[0]
        return self.sources[v], transposes[::-1]

    def fuse(self, mm: zk.MatmulOp) -> None:
        chains = [self._chain(v) for v in mm.operands]
        if None in chains:
            return
        sources = [c[0] for c in chains]
        scaled = [isinstance(s.owner, zk.DequantizeOp) for s in sources]
        if scaled[0] != scaled[1] or (not scaled[0] and sources[0].type.element_type
                                      != sources[1].type.element_type):
            return
        for index, (source, transposes) in enumerate(chains):
            value = source
            for t in transposes:
                new = zk.TransposeOp(value, t.permutation)
                new.location = t.location
                self.block.insert_op_before(new, mm)
                value = new.result
            mm.operands[index] = value

    def check_fast_accumulate(self) -> None:
        mode = self.kernel.attributes.get(attr_names.ACCUMULATE_MODE)
        if not isinstance(mode, StringAttr) or mode.data != "fp8_fast":
            return
        for mm in self.block.walk():
            if isinstance(mm, zk.MatmulOp) and all(_low_precision_operand(v) for v in mm.operands):
                return
        raise error("ZK0802", f"`accumulate f32 fp8_fast` emulates FP8 tensor-core accumulation, "
                    f"but no matmul of kernel `{self.kernel.sym_name.data}` has FP8 or FP4 "
                    "operands", span_of(self.kernel),
                    help="add `precision A, B as f8E4M3FN scale ...` for a matmul's operands, "
                    "or drop `fp8_fast`")


def softmax_parts(v: SSAValue) -> tuple[zk.DivOp, SSAValue, SSAValue] | None:
    """(the division, e = exp(x - max(x)), sum(e)) of the softmax `decompose` left as `v`
    (through its cast back to the softmax's dtype), or None."""
    div = v.owner.input.owner if isinstance(v.owner, zk.CastOp) else v.owner
    if not isinstance(div, zk.DivOp):
        return None
    found = normalised(div.lhs, div.rhs)
    if found is None or found.shift:  # softmax shifts by the plain max
        return None
    return div, div.lhs, div.rhs


def _left_operand_of(op: Operation, v: SSAValue) -> zk.MatmulOp | None:
    """The matmul that reads `v` as its left operand, through float casts, where every value
    on the way has no other use."""
    while isinstance(op, zk.CastOp) and _is_float(op.result) and op.result.has_one_use():
        v, op = op.result, op.result.get_user_of_unique_use()
    if isinstance(op, zk.MatmulOp) and op.lhs is v:
        return op
    return None


def _is_float(v: SSAValue) -> bool:
    return dtypes.from_xdsl(v.type.element_type).is_float


def _low_precision_operand(v: SSAValue) -> bool:
    """An FP8/FP4 operand: declared so, or dequantised from such values (through transposes)."""
    while isinstance(v.owner, zk.TransposeOp):
        v = v.owner.input
    if isinstance(v.owner, zk.DequantizeOp):
        v = v.owner.values
    return dtypes.from_xdsl(v.type.element_type).is_low_precision


def _fresh(name: str, used: set[str | None]) -> str:
    while name in used:
        name += "_"
    used.add(name)
    return name


class EraseDeadOperandCopies(RewritePattern):
    """Drop the casts and transposes that rewiring matmul operands left without uses. Not a
    whole dce: a dead binding the user wrote must reach `tile`, which refuses its directive."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if isinstance(op, (zk.CastOp, zk.TransposeOp)) and is_trivially_dead(op):
            rewriter.erase(op)


# No options: ModulePass's own dataclass methods serve (start-up: none generated here).
class CastPass(ModulePass):
    """Insert the quantise/dequantise ops and quantised parameters that `precision` asks for."""

    name = "cast"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for kernel in [k for k in op.walk() if isinstance(k, zk.KernelOp)]:
            _Caster(kernel).run()
