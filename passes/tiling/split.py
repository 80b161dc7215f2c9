"""The schedule's `split NAME S` in the `tile` pass: a reduction (or a matmul, where it is
`split_k S`) computed in exactly S parts by the split-reduction mechanism (a leading grid
dimension of parts, combined where used: `Grid.combine_partials`). Each part loops over the same
number of chunks and none is empty (a tile wholly outside its tensor is an error at run time),
so the chunk is chosen to cut the reduced axis into a multiple of S chunks; when no chunk can,
the directive is refused (ZK0607), as is one on a value no grid computes: a directive is
honoured or refused, never dropped."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import DictionaryAttr, StringAttr
from xdsl.ir import Operation
from zhenwu_cc.core import attrs
from zhenwu_cc.core.diagnostics import CompileError, Note, error
from zhenwu_cc.dialects import tile, zk
from zhenwu_cc.dialects.loc import span_at, span_of

MAX_LISTED = 4  # split counts the refusal suggests


def split_parts(op: Operation) -> int | None:
    """The parts `split NAME S` asks of `op`, or None without the directive."""
    attr = op.attributes.get(attrs.SPLIT)
    return attr.parts.data if isinstance(attr, zk.SplitAttr) else None


def split_chunk(extent: int, parts: int, largest: int, multiple: int = 1) -> int | None:
    """The chunk (at most `largest`, a multiple of `multiple`) that cuts `extent` elements into
    the fewest chunks that are a multiple of `parts`, the last holding at least one element:
    `parts` equal runs of chunks that all lie inside the axis, as even as the chunks allow.
    None when there is none."""
    for trips in range(parts, extent + 1, parts):
        chunk = -(-extent // trips)
        chunk += -chunk % multiple
        if chunk <= largest and -(-extent // chunk) == trips:
            return chunk
    return None


class Splits:
    """Which `split` directives a grid took, for the refusal of the others (`check`)."""

    def __init__(self):
        self.honoured: set[Operation] = set()

    def chunk(self, op: Operation, extent: int, largest: int, multiple: int = 1,
              given: str | None = None) -> int:
        """The chunk (a matmul's K tile) of `op`'s split grid: `split_chunk`, or ZK0607. A
        chunk the schedule `given` (`tile c [M, N, K]`) is kept as it is, or refused."""
        parts = split_parts(op)
        assert parts is not None
        found = split_chunk(extent, parts, largest, multiple)
        if found is not None and (given is None or found == largest):
            return found
        if found is not None:
            steps = -(-extent // largest)
            raise _refused(op, f"the K tile {largest} of `{given}` cuts K ({extent} elements) "
                           f"into {steps} steps, no multiple of {parts}",
                           f"make the K tile {found}, or split in a count dividing {steps}")
        near = _nearest(parts, extent, lambda s: split_chunk(extent, s, largest, multiple))
        what = "K" if isinstance(op, zk.MatmulOp) else "reduced axis"
        step = f" (a multiple of {multiple})" if multiple > 1 else ""
        raise _refused(op, f"the {what} ({extent} elements) cannot be cut into {parts} equal "
                       f"runs of chunks of at most {largest}{step} elements, none of them "
                       "empty", "the nearest counts that fit: " + ", ".join(str(s) for s in near))

    def k_tile(self, mm: zk.MatmulOp, directive: Operation | None, tk: int,
               multiple: int) -> int:
        """The K tile of matmul `mm`'s grid split by `split NAME S` (see `chunk`), whose
        `directive` (`tile NAME [M, N, K]`, if any) gives no `split_k` of its own: `retile`
        can set one that the front end never saw."""
        given = None
        if directive is not None:
            attr = directive.attributes[attrs.TILE]
            given = f"tile {directive.results[0].name_hint}"
            if attr.split_k.data != 1:
                raise _refused(mm, f"`{given}` splits the same matmul with `split_k "
                               f"{attr.split_k.data}`", "keep one of them")
        return self.chunk(mm, mm.lhs.type.get_shape()[-1], tk, multiple, given)

    def record(self, grid: Operation, op: Operation) -> None:
        """Name the `split` directive of `op` in its grid's `tile.sizes`, for reports."""
        attr = op.attributes.get(attrs.SPLIT)
        if not isinstance(attr, zk.SplitAttr) or not isinstance(grid, tile.GridOp):
            return
        self.honoured.add(op)
        used = dict(grid.attributes[attrs.TILE_SIZES].data)
        used["split"] = StringAttr(attr.target.data)
        grid.attributes[attrs.TILE_SIZES] = DictionaryAttr(used)

    def check(self, ops: Sequence[Operation], results: Sequence) -> None:
        """Refuse each `split` directive among `ops` that no grid took (ZK0607). `split NAME 1`
        asks for no split, which a reduction computed inside its consumer's tiles honours too;
        a value no kernel result depends on is computed by no grid at all."""
        live = _live(results)
        for op in ops:
            parts = split_parts(op)
            if parts is None or op in self.honoured or (parts == 1 and op in live):
                continue
            if op not in live:
                raise _refused(op, "no kernel result depends on it, so no grid computes it",
                        "drop the directive, or return a value computed from it")
            raise _refused(op, "it is computed inside another grid's tiles",
                    "drop the directive")


def _refused(op: Operation, why: str, help: str) -> CompileError:
    attr = op.attributes[attrs.SPLIT]
    name, parts = attr.target.data, attr.parts.data
    span = span_at(attr.loc) or span_of(op)  # the schedule line, else the binding's
    notes = [Note(f"`{name}` is computed here", span_of(op))] if span_of(op) else []
    return error("ZK0607", f"`split {name} {parts}` cannot apply: {why}", span, notes=notes,
                help=help)


def _nearest(parts: int, extent: int, fits) -> list[int]:
    """Up to MAX_LISTED counts in 1..extent for which `fits`, nearest to `parts` first."""
    found: list[int] = []
    for d in range(extent):
        for s in dict.fromkeys((parts - d, parts + d)):
            if 1 <= s <= extent and fits(s):
                found.append(s)
        if len(found) >= MAX_LISTED:
            break
    return sorted(found[:MAX_LISTED])


def _live(results: Sequence) -> set[Operation]:
    """The ops some kernel result depends on."""
    live: set[Operation] = set()
    stack = [v.owner for v in results if isinstance(v.owner, Operation)]
    while stack:
        op = stack.pop()
        if op in live:
            continue
        live.add(op)
        stack.extend(v.owner for v in op.operands if isinstance(v.owner, Operation))
    return live
