"""A sampled numerics check: the reference evaluated on a seeded subset of independent axes.

The float64 reference of a big kernel can need far more host memory than the run itself
(attention at its default shape: 34 GiB). But most kernels compute their outputs independently
along some axes: attention's out[b, h, i, :] reads only q[b, h, i, :], k[b, h] and v[b, h]. This
module finds such axes in a `zk` program by joining the dimensions that ops map one to one
(elementwise ops with numpy broadcasting, a matmul's batch, row and column dimensions, the dims
a reduction keeps, transposes, views and slices that keep a dimension whole) and marking "mixed"
every dimension an op reads across (reduced, contracted, normalised, concatenated, cut by a
slice or a reshape, iota's axis, a scale block, anything this module does not know). A class of
dimensions that nothing mixes is independent: slicing every array along it at a set of indices
and shrinking every value along it gives exactly the full program's results at those indices.

A `Sample` takes seeded indices along independent classes that reach an output (N along each
for `run --check-sample N`; automatically, halving the longest class until the reference fits),
the same in every program the check evaluates (the source in float64, the typed `cast`
program, and the `cast` program without each precision directive); a class that some program
mixes is not sampled. Parameters with a precision directive are quantised in full first, so their
scales are exactly those of the full run.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import FunctionType, TensorType
from xdsl.ir import SSAValue
from xdsl.rewriter import Rewriter
from zhenwu_cc.dialects import zk
from zhenwu_cc.core import attrs

Key = tuple[SSAValue, int]  # a dimension of a value


def _shape(v: SSAValue) -> tuple[int, ...]:
    return tuple(v.type.get_shape())


class Dims:
    """The classes of a `zk.kernel`'s dimensions (union-find) and which of them are mixed."""

    def __init__(self, kernel: zk.KernelOp):
        self.kernel = kernel
        self.parent: dict[Key, Key] = {}
        self._mixed: set[Key] = set()
        for op in kernel.body.block.ops:
            self._visit(op)
        self.mixed = {self.find(k) for k in self._mixed}

    def find(self, k: Key) -> Key:
        root = k
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while k != root:
            self.parent[k], k = root, self.parent.get(k, k)
        return root

    def join(self, a: Key, b: Key) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def mix(self, *keys: Key) -> None:
        self._mixed.update(keys)

    def mix_all(self, values: Iterable[SSAValue]) -> None:
        for v in values:
            self.mix(*((v, d) for d in range(len(_shape(v)))))

    def free(self, k: Key) -> bool:
        return self.find(k) not in self.mixed

    def _aligned(self, result: SSAValue, operands: Iterable[SSAValue]) -> None:
        """numpy broadcasting: trailing dims of equal size are one dimension."""
        out = _shape(result)
        for v in operands:
            shape = _shape(v)
            for i, n in enumerate(shape):
                d = len(out) - len(shape) + i
                if d >= 0 and n == out[d]:
                    self.join((v, i), (result, d))

    def _kept(self, op, source: SSAValue, result: SSAValue, axes: tuple[int, ...],
              keepdims: bool) -> None:
        """A reduction over `axes`: the other dims map in order, the reduced ones are mixed."""
        d = 0
        for i in range(len(_shape(source))):
            if i in axes:
                self.mix((source, i))
                if keepdims:
                    self.mix((result, d))
                    d += 1
            else:
                self.join((source, i), (result, d))
                d += 1

    def _visit(self, op) -> None:
        res = op.results[0] if op.results else None
        if isinstance(op, zk.ReturnOp):
            return
        if isinstance(op, (zk.UnaryElementwiseOp, zk.BinaryElementwiseOp, zk.CompareOp,
                           zk.SelectOp, zk.CastOp, zk.BroadcastOp)):
            self._aligned(res, op.operands)
        elif isinstance(op, zk.ConstantOp):
            pass
        elif isinstance(op, zk.IotaOp):
            self.mix((res, op.axis.value.data))
        elif isinstance(op, zk.TransposeOp):
            for d, p in enumerate(op.permutation):
                self.join((op.input, p), (res, d))
        elif isinstance(op, zk.ReshapeOp):
            self._reshape(op.input, res)
        elif isinstance(op, zk.SliceOp):
            full = zip(op.start.get_values(), op.limit.get_values(), _shape(op.input))
            for d, (lo, hi, n) in enumerate(full):
                if (lo, hi) == (0, n):
                    self.join((op.input, d), (res, d))
                else:
                    self.mix((op.input, d), (res, d))
        elif isinstance(op, zk.ConcatOp):
            axis = op.axis.value.data
            for v in op.operands:
                self.mix((v, axis))
                for d in range(len(_shape(v))):
                    if d != axis:
                        self.join((v, d), (res, d))
            self.mix((res, axis))
        elif isinstance(op, zk.MatmulOp):
            self._matmul(op.lhs, op.rhs, res)
        elif isinstance(op, zk.ReduceOp):
            self._kept(op, op.input, res, op.axis_list, op.keepdims is not None)
        elif isinstance(op, zk.ArgmaxOp):
            self._kept(op, op.input, res, (op.axis.value.data,), op.keepdims is not None)
        elif isinstance(op, (zk.AxisOp, zk.NormOp)):
            self._aligned(res, op.operands)
            self.mix((res, op.axis.value.data))
        elif isinstance(op, zk.QuantizeOp):
            self._blocks(op.input, [op.values], [op.scales, *op.results[2:],
                                                 *([op.amax] if op.amax else [])], True)
        elif isinstance(op, zk.DequantizeOp):
            self._blocks(op.values, [res], op.scales, False)
        else:
            self.mix_all([*op.operands, *op.results])

    def _reshape(self, source: SSAValue, result: SSAValue) -> None:
        """A reshape that only adds or drops size-1 dims keeps the others; any other mixes all."""
        keep_in = [d for d, n in enumerate(_shape(source)) if n != 1]
        keep_out = [d for d, n in enumerate(_shape(result)) if n != 1]
        if [_shape(source)[d] for d in keep_in] != [_shape(result)[d] for d in keep_out]:
            self.mix_all([source, result])
            return
        for a, b in zip(keep_in, keep_out):
            self.join((source, a), (result, b))

    def _matmul(self, lhs: SSAValue, rhs: SSAValue, result: SSAValue) -> None:
        nl, nr, nres = len(_shape(lhs)), len(_shape(rhs)), len(_shape(result))
        if nl < 2 or nr < 2:
            self.mix_all([lhs, rhs, result])
            return
        for v, n in ((lhs, nl), (rhs, nr)):  # batch dims broadcast like elementwise ones
            for i in range(n - 2):
                d = nres - n + i
                if d >= 0 and _shape(v)[i] == _shape(result)[d]:
                    self.join((v, i), (result, d))
        self.join((lhs, nl - 2), (result, nres - 2))
        self.join((rhs, nr - 1), (result, nres - 1))
        self.mix((lhs, nl - 1), (rhs, nr - 2))

    def _blocks(self, source: SSAValue, same: list[SSAValue], scales: list[SSAValue],
                made: bool) -> None:
        """Values of `source`'s shape map dim for dim; a scale tensor maps a dim it holds whole,
        mixes one it blocks, and one it shares (size 1) when the scale is `made` here from the
        source (quantising reads across the block), not when it is only applied."""
        for v in same:
            for d in range(len(_shape(v))):
                self.join((source, d), (v, d))
        for s in scales:
            for d, n in enumerate(_shape(s)):
                if n == _shape(source)[d]:
                    self.join((source, d), (s, d))
                elif made or n != 1:
                    self.mix((source, d), (s, d))


def _source_keys(dims: Dims) -> list[tuple[Key, tuple[str, str, int]]]:
    """The dims of a program's source-level arrays: ("param", name, d) for a parameter (or the
    values of a parameter the host quantises), ("out", name, d) for a result."""
    kernel = dims.kernel
    out = []
    for i, (name, arg) in enumerate(zip(kernel.arg_names, kernel.body.block.args)):
        origin = kernel.arg_attr(i, attrs.QUANTIZED_FROM)
        if origin is not None:
            if origin.data["part"].value.data != 0:
                continue
            name = origin.data["param"].data
        out += [((arg, d), ("param", name, d)) for d in range(len(_shape(arg)))]
    ret = kernel.body.block.last_op
    for name, v in zip(kernel.names_of_results, ret.operands):
        out += [((v, d), ("out", name, d)) for d in range(len(_shape(v)))]
    return out


def _classes(dims: Dims) -> dict[Key, set[tuple[str, str, int]]]:
    """The source-level members of each class that has any, by the class's root."""
    members: dict[Key, set[tuple[str, str, int]]] = {}
    for key, member in _source_keys(dims):
        members.setdefault(dims.find(key), set()).add(member)
    return members


@dataclass(frozen=True)
class Sample:
    """Which indices of which source-level dims a sampled check keeps."""

    picks: tuple[tuple[frozenset, tuple[int, ...]], ...]  # (members, sorted indices) per class

    def index_of(self, member: tuple[str, str, int]) -> tuple[int, ...] | None:
        for members, idx in self.picks:
            if member in members:
                return idx
        return None

    def describe(self, outputs: Mapping[str, tuple[int, ...]]) -> dict[str, str]:
        """Per output, in words: which of its axes were sampled, and how many indices of each."""
        text = {}
        for name, shape in outputs.items():
            axes = [f"axis {d}: {len(idx)} of {n}" for d, n in enumerate(shape)
                    if (idx := self.index_of(("out", name, d))) is not None]
            if axes:
                text[name] = (f"{', '.join(axes)} (seeded; {math.prod(self.shrunk(name, shape))}"
                              f" of {math.prod(shape)} elements)")
        return text

    def shrunk(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(len(idx) if (idx := self.index_of(("out", name, d))) is not None else n
                     for d, n in enumerate(shape))

    def take(self, member_of, array: np.ndarray) -> np.ndarray:
        """`array` at the sampled indices of each dim d for which `member_of(d)` is sampled."""
        for d in range(array.ndim):
            idx = self.index_of(member_of(d))
            if idx is not None:
                array = np.take(array, idx, axis=d)
        return array

    def output(self, name: str, array: np.ndarray) -> np.ndarray:
        return self.take(lambda d: ("out", name, d), np.asarray(array))

    def full_index(self, name: str, where: tuple[int, ...]) -> tuple[int, ...]:
        """An index into a sampled output, as an index into the whole output."""
        return tuple(idx[i] if (idx := self.index_of(("out", name, d))) is not None else i
                     for d, i in enumerate(where))

    def program(self, kernel: zk.KernelOp, inputs: Mapping[str, np.ndarray]):
        """(the kernel with every sampled dim shrunk, its inputs sliced to match)."""
        dims = Dims(kernel)
        picked = {root: idx for root, mem in _classes(dims).items() for m in mem
                  if (idx := self.index_of(m)) is not None}

        def indices(v: SSAValue, d: int) -> tuple[int, ...] | None:
            return picked.get(dims.find((v, d)))

        sliced = {}
        for name, arg in zip(kernel.arg_names, kernel.body.block.args):
            if name in inputs:
                x = np.asarray(inputs[name])
                for d in range(x.ndim):
                    if (idx := indices(arg, d)) is not None:
                        x = np.take(x, idx, axis=d)
                sliced[name] = x
        copy = kernel.clone()
        originals = [*kernel.body.block.args,
                     *(r for op in kernel.body.block.ops for r in op.results)]
        clones = [*copy.body.block.args, *(r for op in copy.body.block.ops for r in op.results)]
        for orig, clone in zip(originals, clones):
            shape = tuple(len(idx) if (idx := indices(orig, d)) is not None else n
                          for d, n in enumerate(_shape(orig)))
            if shape != _shape(orig):
                Rewriter.replace_value_with_new_type(
                    clone, TensorType(orig.type.element_type, shape))
        copy.function_type = FunctionType.from_lists(
            [a.type for a in copy.body.block.args],
            [v.type for v in copy.body.block.last_op.operands])
        return copy, sliced


def independent(kernels: Iterable[zk.KernelOp]) -> list[tuple[frozenset, int]]:
    """The classes every kernel leaves unmixed and that reach an output: (source-level members,
    length), in a deterministic order. The first kernel is the source program; a class counts
    only when, in every kernel, its members fall in unmixed classes holding no other source
    member."""
    kernels = list(kernels)
    first = Dims(kernels[0])
    candidates = []
    for root, mem in _classes(first).items():
        if root not in first.mixed and any(m[0] == "out" for m in mem):
            candidates.append((frozenset(mem), _shape(root[0])[root[1]]))
    for kernel in kernels[1:]:
        dims = Dims(kernel)
        classes = _classes(dims)
        where = {m: root for root, mem in classes.items() for m in mem}
        candidates = [(mem, n) for mem, n in candidates
                      if all(m in where and where[m] not in dims.mixed
                             and classes[where[m]] <= mem for m in mem)]
    return sorted(candidates, key=lambda c: sorted(c[0]))


def choose(classes: list[tuple[frozenset, int]], sizes: int | list[int], seed: int) -> Sample:
    """`sizes[i]` seeded indices along class i when it is longer (one size: for every class)."""
    picks = []
    if isinstance(sizes, int):
        sizes = [sizes] * len(classes)
    for (mem, n), size in zip(classes, sizes):
        if n > size:
            label = min(mem)
            rng = np.random.default_rng(np.random.SeedSequence(
                [seed, zlib.crc32(f"{label[0]}:{label[1]}:{label[2]}".encode())]))
            picks.append((mem, tuple(int(i) for i in np.sort(rng.choice(n, size,
                                                                         replace=False)))))
    return Sample(tuple(picks))
