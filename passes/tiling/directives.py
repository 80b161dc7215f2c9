"""The schedule's `tile` directives in the `tile` pass: which directive sizes a grid, the
record of it on the grid (for reports), and the refusal of every directive no grid took
(ZK0605, ZK0606): a directive is honoured or refused, never dropped."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import DenseArrayBase, DictionaryAttr, StringAttr, i64
from xdsl.ir import Operation, SSAValue
from zhenwu_cc.core import attrs
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.dialects.loc import span_at, span_of
from zhenwu_cc.core.diagnostics import Note, error
from zhenwu_cc.passes.tiling.requests import shape_of


class Directives:
    """Which `tile` directives sized grids, and where the others' values are computed."""

    def __init__(self):
        self.applied: set[Operation] = set()  # ops whose directive sized a grid
        self.computed_in: dict[Operation, list[SSAValue | None]] = {}  # roots of the grids
        # computing each directive's value
        self.sized_by: dict[SSAValue, Operation] = {}  # the directive that sized each grid root

    def sizing(self, v: SSAValue, mm: zk.MatmulOp | None = None) -> Operation | None:
        """The `tile` directive that sizes a grid over `v` (see `directive_op`): `[M, N, K]`
        of `mm` when the grid is that matmul's, else one size per dimension of `v`. Recorded
        as applied: every other directive is refused when tiling ends (`check`)."""
        op = directive_op(v, mm)
        if op is not None:
            self.applied.add(op)
            self.sized_by[v] = op
        return op

    def check(self, ops: Sequence[Operation]) -> None:
        """Refuse each `tile` directive among `ops` that sized no grid, saying why (ZK0605),
        or which directive sized the grid that computes its value instead (ZK0606)."""
        for op in ops:
            if attrs.TILE not in op.attributes or op in self.applied:
                continue
            attr = op.attributes[attrs.TILE]
            name = op.results[0].name_hint or "this value"
            written = f"`tile {name} {list(attr.values)}`"
            span = span_at(attr.loc) or span_of(op)  # the schedule line, else the binding's
            notes = [Note(f"`{name}` is computed here", span_of(op))] if span_of(op) else []
            roots = self.computed_in.get(op, [])
            others = [self.sized_by[r] for r in roots if r in self.sized_by]
            if others:
                other = others[0]
                oname = other.results[0].name_hint or "another value"
                raise error("ZK0606", f"{written} cannot apply: `{name}` is computed inside the "
                            f"grid that `tile {oname} {list(other.attributes['zk.tile'].values)}`"
                            " sizes, and a grid takes its tiles from one directive", span,
                            notes=notes, help=f"keep one of `tile {name}` and `tile {oname}`")
            raise error("ZK0605", f"{written} cannot apply: " + _why_unused(op, roots), span,
                        notes=notes, help=_what_applies(op, name))


def directive_op(v: SSAValue, mm: zk.MatmulOp | None = None) -> Operation | None:
    """The op whose `tile` directive sizes a grid over `v`: v's op, or an elementwise producer of
    the same shape that the grid computes inline (`tile y [...]` where the root is `f16(y)`).
    For the grid of matmul `mm` (with its epilogue up to `v`), a directive `[M, N, K]` of `mm`;
    for any other grid, a directive with one size per dimension (not a matmul's)."""
    stack, seen = [v], set()
    while stack:
        cur = stack.pop()
        op = cur.owner
        if not isinstance(op, Operation) or id(op) in seen or shape_of(cur) != shape_of(v):
            continue
        seen.add(id(op))
        if attrs.TILE in op.attributes:
            feeding = zk.matmul_feeding(op)
            if (feeding is mm) if mm is not None else feeding is None:
                return op
        if isinstance(op, zk.ELEMENTWISE_OPS):
            stack.extend(op.operands)
    return None


def split_k_asked(v: SSAValue, mm: zk.MatmulOp) -> bool:
    """Whether the `tile [M, N, K] split_k S` that would size `mm`'s grid for `v` asks S > 1
    (read without recording the directive as applied)."""
    op = directive_op(v, mm)
    return op is not None and op.attributes[attrs.TILE].split_k.data > 1


def disagree(first: Operation, second: Operation, why: str, help: str):
    """ZK0618: two `tile` directives size one fused grid and give it different tiles."""
    def written(op: Operation) -> str:
        return f"`tile {op.results[0].name_hint or 'this value'} " \
               f"{list(op.attributes[attrs.TILE].values)}`"

    second_name = second.results[0].name_hint or "this value"
    return error("ZK0618", f"{written(first)} and {written(second)} disagree: {why}",
                 span_at(first.attributes[attrs.TILE].loc) or span_of(first),
                 notes=[Note(f"`tile {second_name}` is here",
                             span_at(second.attributes[attrs.TILE].loc) or span_of(second))],
                 help=help)


def record_directive(grid: tile.GridOp, directive: Operation | None,
                     agreeing: Operation | None = None) -> None:
    """Name the directive a grid took its tiles from in its `tile.sizes`, for reports, and the
    one that `agreeing` with it sized the same grid (a flash grid's `tile s`)."""
    if directive is None:
        return
    used = dict(grid.attributes[attrs.TILE_SIZES].data)
    used["directive"] = StringAttr(directive.results[0].name_hint or "")
    used["directive_sizes"] = _ints_attr(directive.attributes[attrs.TILE].values)
    if agreeing is not None and agreeing is not directive:
        used["agreeing"] = StringAttr(agreeing.results[0].name_hint or "")
        used["agreeing_sizes"] = _ints_attr(agreeing.attributes[attrs.TILE].values)
    grid.attributes[attrs.TILE_SIZES] = DictionaryAttr(used)


def _ints_attr(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _why_unused(op: Operation, roots: Sequence[SSAValue | None]) -> str:
    """Why no grid took its tiles from the directive on `op` (whose value is computed inside
    the grids of `roots`, if any)."""
    name = op.results[0].name_hint or "this value"
    if isinstance(op, zk.ReshapeOp):
        return f"`{name}` is a reshape, a view of another tensor: no grid computes it"
    if isinstance(op, zk.ConcatOp):
        return f"`{name}` is a concat: each input is copied in with its own tiles"
    if not roots:
        return f"no kernel result depends on `{name}`, so no grid computes it"
    if zk.matmul_feeding(op) is not None:
        return (f"the matmul that feeds `{name}` has other uses, so it gets a grid of its own "
                f"and `{name}` is computed from its stored result")
    where = ", ".join(sorted({_grid_text(r) for r in roots}))
    return f"`{name}` gets no grid of its own; it is recomputed inside the tiles of {where}"


def _grid_text(root: SSAValue | None) -> str:
    if root is None:
        return "a copy grid"
    span = span_of(root.owner) if isinstance(root.owner, Operation) else None
    if root.name_hint:
        return f"the grid of `{root.name_hint}`" + (f" (line {span.line})" if span else "")
    return f"the grid at line {span.line}" if span else "another grid"


def _what_applies(op: Operation, name: str) -> str:
    if zk.matmul_feeding(op) is not None and not isinstance(op, zk.MatmulOp):
        return ("bind the matmul to a name of its own and tile that (`t = a @ b`, "
                f"`tile t [M, N, K]`), or drop `tile {name}`")
    return (f"drop `tile {name}`: `tile` sizes the grid of a value that gets one (a kernel "
            "result, a matmul and its epilogue, a reduction too long for its consumer's tile, "
            "the input of a reshape or concat); tile the value whose grid computes it")
