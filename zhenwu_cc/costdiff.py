"""`diff`: two kernels' cost estimates side by side, the terms that changed, and why — the tile
sizes, tile counts, waves, bytes per tensor and dtypes of the phases behind each change, and the
schedule lines that differ.
"""

from __future__ import annotations

from dataclasses import dataclass

DIFF_SCHEMA = "zhenwu-cc.diff/1"
MIN_CHANGE = 0.005  # a term that moved by less than this fraction is not a change
TOTALS = (("time_s", "time"), ("overhead_s", "fixed overhead"), ("hbm_read_bytes", "HBM read"),
          ("hbm_write_bytes", "HBM write"), ("sram_peak_bytes", "SRAM peak"),
          ("flops", "FLOPs"))
PHASE_OF_TOTAL = {"time_s": "time_s", "hbm_read_bytes": "hbm_read_bytes",
                  "hbm_write_bytes": "hbm_write_bytes", "sram_peak_bytes": "sram_bytes"}
PHASE_TERMS = (("time_s", "time"), ("hbm_read_bytes", "HBM read"),
               ("hbm_write_bytes", "HBM write"), ("l2_read_bytes", "L2 read"),
               ("sram_bytes", "SRAM"))


@dataclass(frozen=True)
class Side:
    """One kernel of the diff: its file, source text and costing (`CompiledKernel.costing`)."""

    file: str
    source: str
    costing: object
    inputs: tuple[str, ...] = ()  # the kernel's parameter names, in order
    outputs: tuple[str, ...] = ()  # its result names, in order


def diff(old: Side, new: Side) -> dict:
    """The diff record (schema DIFF_SCHEMA)."""
    a, b = old.costing.estimate, new.costing.estimate
    pairs = _pair(a.phases, b.phases)
    phases = [_phase_diff(i, p, j, q, old, new) for i, p, j, q in pairs]
    totals = [_term(key, label, _total(a, key), _total(b, key)) for key, label in TOTALS]
    schedule = _schedule_diff(old, new)
    why = []
    for t in totals:
        if not t["changed"]:
            continue
        term = PHASE_OF_TOTAL.get(t["term"])
        contributors = sorted((ph for ph in phases if ph["reasons"] and any(
            c["term"] == term for c in ph["changes"])),
            key=lambda ph: -abs(_delta(ph, t["term"])))[:2]
        reasons = [f"phase {_at(ph)}: {', '.join(_relevant(ph['reasons'], t['term']))}"
                   for ph in contributors]
        if not reasons and schedule["added"] + schedule["removed"]:
            reasons = ["schedule: " + "; ".join(
                [f"- {d}" for d in schedule["removed"]] + [f"+ {d}" for d in schedule["added"]])]
        why.append(f"{t['label']} {_pct(t['change'])}" + (": " + "; ".join(reasons)
                                                          if reasons else ""))
    return {"old": _side(old), "new": _side(new), "totals": totals, "phases": phases,
            "schedule": schedule, "why": why}


def _relevant(reasons: list[str], term: str) -> list[str]:
    """The reasons that can move `term`: bytes and SRAM move with tiles, buffers and what is
    loaded; time with anything."""
    if term == "time_s":
        return reasons
    moves = {"hbm_read_bytes": (" load",), "hbm_write_bytes": (" stor",)}.get(
        term, (" load", " stor"))
    keep = [r for r in reasons if r.startswith(("tile ", "buffers "))
            or any(w in r for w in moves)]
    return keep or reasons


def _side(s: Side) -> dict:
    est = s.costing.estimate
    params = {k: v.value.data for k, v in s.costing.kernel.attributes["params"].data.items()}
    return {"file": s.file, "kernel": est.kernel, "target": est.target, "params": params,
            "time_s": _r(est.time), "bound": est.bound}


def _total(est, key: str):
    return {"time_s": est.time, "overhead_s": est.overhead, "hbm_read_bytes": est.hbm_read_bytes,
            "hbm_write_bytes": est.hbm_write_bytes, "sram_peak_bytes": est.sram_peak,
            "flops": sum(est.flops_by_dtype.values())}[key]


def _term(key: str, label: str, old, new) -> dict:
    change = None if not old else (new - old) / old
    changed = (old != new) if not old else abs(change) >= MIN_CHANGE
    return {"term": key, "label": label, "old": _r(old), "new": _r(new),
            "change": _r(change), "changed": changed}


def _pair(old, new) -> list[tuple]:
    """Phases matched by name (role and source location), the rest in order; an unmatched
    phase pairs with None."""
    by_name = {p.name: j for j, p in enumerate(new)}
    taken, pairs, left = set(), [], []
    for i, p in enumerate(old):
        j = by_name.get(p.name)
        if j is not None and j not in taken:
            taken.add(j)
            pairs.append((i, p, j, new[j]))
        else:
            left.append((i, p))
    rest = [(j, q) for j, q in enumerate(new) if j not in taken]
    for (i, p), (j, q) in zip(left, rest):
        pairs.append((i, p, j, q))
    pairs += [(i, p, None, None) for i, p in left[len(rest):]]
    pairs += [(None, None, j, q) for j, q in rest[len(left):]]
    return sorted(pairs, key=lambda t: (t[0] if t[0] is not None else 1 << 30,
                                        t[2] if t[2] is not None else 1 << 30))


def _phase_diff(i, p, j, q, old: Side, new: Side) -> dict:
    rec = {"old": None if p is None else _phase_rec(i, p),
           "new": None if q is None else _phase_rec(j, q), "changes": [], "reasons": []}
    if p is None or q is None:
        rec["reasons"] = ["a phase of the new kernel only" if p is None else
                          "a phase of the old kernel only"]
        return rec
    for key, label in PHASE_TERMS:
        t = _term(key, label, rec["old"][key], rec["new"][key])
        if t["changed"]:
            rec["changes"].append(t)
    reasons = []
    if _tile_text(p) != _tile_text(q):
        reasons.append(f"tile {_tile_text(p)} -> {_tile_text(q)}")
    for attr, what in (("tiles", "tiles"), ("waves", "waves"), ("active_cus", "busy CUs"),
                       ("steps", "steps"), ("buffers", "buffers")):
        if getattr(p, attr) != getattr(q, attr):
            reasons.append(f"{what} {getattr(p, attr)} -> {getattr(q, attr)}")
    if p.bound != q.bound:
        reasons.append(f"bound {p.bound} -> {q.bound}")
    reasons += _traffic_changes(old.costing.workload.phases[i], new.costing.workload.phases[j],
                                _aliases(old, new))
    rec["reasons"] = reasons
    return rec


def _phase_rec(i: int, p) -> dict:
    return {"index": i, "name": p.name, "loc": p.loc, "time_s": _r(p.time), "bound": p.bound,
            "tiles": p.tiles, "waves": p.waves, "active_cus": p.active_cus, "steps": p.steps,
            "buffers": p.buffers, "tile": None if p.tile is None else p.tile.to_dict(),
            "hbm_read_bytes": p.hbm_read_bytes, "hbm_write_bytes": p.hbm_write_bytes,
            "l2_read_bytes": p.l2_read_bytes, "sram_bytes": p.sram_bytes}


def _tile_text(p) -> str:
    if p.tile is None:
        return "-"
    step = "" if p.tile.step is None else f" K {p.tile.step}"
    return f"[{', '.join(map(str, p.tile.sizes))}]{step}"


def _aliases(a, b) -> dict[str, str]:
    """New tensor name -> how the diff names it: the i-th input (output) of both kernels is one
    tensor, `old/new` when renamed."""
    out = {}
    for old, new in ((a.inputs, b.inputs), (a.outputs, b.outputs)):
        if len(old) == len(new):
            out.update({n: o if o == n else f"{o}/{n}" for o, n in zip(old, new)})
    return out


def _traffic_changes(p, q, aliases: dict[str, str]) -> list[str]:
    """Per tensor a phase loads or stores: the bytes moved and the dtype they move in, where
    changed."""
    def traffic(phase, kind, names):
        out: dict[str, list] = {}
        for w in phase.work:
            if w.kind == kind and w.tensor:
                entry = out.setdefault(names.get(w.tensor, w.tensor), [0, set()])
                entry[0] += w.amount
                if w.dtype:
                    entry[1].add(w.dtype)
        return out

    reasons = []
    for kind, verb, past in (("load", "loads", "loaded"), ("store", "stores", "stored")):
        old = {o: o for o in (v.split("/")[0] for v in aliases.values())}
        a, b = traffic(p, kind, {**old, **{v.split("/")[0]: v for v in aliases.values()}}), \
            traffic(q, kind, aliases)
        for name in sorted(set(a) | set(b)):
            (na, da), (nb, db) = a.get(name, [0, set()]), b.get(name, [0, set()])
            if da and db and da != db:
                reasons.append(f"{name} {past} as {'/'.join(sorted(da))} -> "
                               f"{'/'.join(sorted(db))}")
            if na and nb and abs(nb - na) >= MIN_CHANGE * na:
                reasons.append(f"{name} {verb} {_bytes(na)} -> {_bytes(nb)} "
                               f"({_pct((nb - na) / na)})")
    return reasons


def _schedule_diff(old: Side, new: Side) -> dict:
    from zhenwu_cc.schedule_edit import directives

    a = [d.text for d in directives(old.source, old.file, old.costing.estimate.kernel)]
    b = [d.text for d in directives(new.source, new.file, new.costing.estimate.kernel)]
    return {"removed": [d for d in a if d not in b], "added": [d for d in b if d not in a]}


def _delta(ph: dict, term: str) -> float:
    key = PHASE_OF_TOTAL.get(term)
    if key is None or ph["old"] is None or ph["new"] is None:
        return 0.0
    return ph["new"][key] - ph["old"][key]


def _at(ph: dict) -> str:
    a, b = ph["old"], ph["new"]
    if a is not None and b is not None and a["index"] == b["index"]:
        return f"[{a['index']}]"
    return f"[{'-' if a is None else a['index']}]->[{'-' if b is None else b['index']}]"


def _r(x):
    return x if x is None or isinstance(x, int) else float(f"{x:.6g}")


def _pct(x) -> str:
    return "new" if x is None else f"{x * 100:+.1f}%".replace("-", "\u2212")


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def _value(term: str, v) -> str:
    if v is None:
        return "-"
    if term.endswith("_s"):
        return f"{v * 1e6:.2f} us"
    if term.endswith("bytes"):
        return _bytes(v)
    return f"{v:.4g}"


def _short(file: str) -> str:
    """A file name in a 16-wide column, with a space before it: its tail, `...` when cut."""
    return file if len(file) <= 15 else "..." + file[-12:]


def render(rec: dict) -> str:
    """The diff for people: the totals side by side, each phase's changes, the schedule lines
    that differ, and why each total moved."""
    o, n = rec["old"], rec["new"]
    head = [f"{'':<16}{'old':>16}{'new':>16}  change",
            f"{'':<16}{_short(o['file']):>16}{_short(n['file']):>16}"]
    rows = [f"{'bound':<16}{o['bound']:>16}{n['bound']:>16}"]
    for t in rec["totals"]:
        mark = _pct(t["change"]) if t["changed"] else ""
        rows.append(f"{t['label']:<16}{_value(t['term'], t['old']):>16}"
                    f"{_value(t['term'], t['new']):>16}  {mark}")
    lines = head + rows + ["", "phases:"]
    for ph in rec["phases"]:
        a, b = ph["old"], ph["new"]
        name = (a or b)["name"]
        lines.append(f"  {_at(ph)} {name}: {_value('time_s', a and a['time_s'])} -> "
                     f"{_value('time_s', b and b['time_s'])}")
        if ph["reasons"]:
            lines.append(f"      {'; '.join(ph['reasons'])}")
    s = rec["schedule"]
    if s["removed"] or s["added"]:
        lines += ["", "schedule:"] + [f"  - {d}" for d in s["removed"]] + \
            [f"  + {d}" for d in s["added"]]
    lines += ["", "why:" if rec["why"] else "why: nothing changed"]
    lines += [f"  {w}" for w in rec["why"]]
    return "\n".join(lines) + "\n"
