"""The cost estimate for people: a compact text report that names where the time goes.

JSON comes from `Estimate.to_dict()`; this module only formats. Source lines are quoted from the
`.zk` file so the per-line breakdown reads like a profile.
"""

from __future__ import annotations

from zhenwu_cc.core.diagnostics import SourceMap
from zhenwu_cc.dialects import ppu

HBM_KEY = "ppu.hbm"  # the attribute name of a placement, on arguments and `ppu.global`s


def seconds(t: float) -> str:
    if t >= 1e-3:
        return f"{t * 1e3:.3f} ms"
    return f"{t * 1e6:.2f} us"


def nbytes(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _source_line(loc: str, sources: SourceMap) -> str:
    file, _, rest = loc.rpartition(":")
    file, _, line = file.rpartition(":")
    text = sources.line(file, int(line)) if line.isdigit() else None
    return text.strip() if text else ""


def tiles_text(tile, role: str) -> str:
    """`[1, 1, 128, 128], K step 64; from `tile s [128, 128, 64]``: the tiles a phase runs."""
    text = str(list(tile.sizes))
    if tile.step is not None:
        text += f", {'K step' if role == 'matmul' else 'chunk'} {tile.step}"
    if tile.parts > 1:
        what = "K" if role == "matmul" else "the reduced axis"
        text += f", {what} split in {tile.parts} parts"
    if tile.split is not None:
        text += (f" from `split {tile.split} {tile.parts}`" if tile.parts > 1
                 else f", not split (from `split {tile.split} 1`)")
    if tile.directive is None:
        return text + "; chosen by the compiler"
    return text + f"; from `tile {tile.directive} {list(tile.directive_sizes)}`"


def render(est, sources: SourceMap, params: str = "") -> str:
    """The whole report: headline (`params`: the shape parameters, `<M = 64, ...>`), roofline
    position, phases, and time by source line."""
    lines = [f"kernel {est.kernel}{params} on {est.target}: {seconds(est.time)}  "
             f"(bound: {est.bound})"]
    for dt in sorted(est.flops_by_dtype):
        achieved = est.achieved_flops.get(dt, 0.0)
        frac = est.peak_fraction.get(dt, 0.0)
        support = est.dtype_support.get(dt, {})
        runs = support.get("runs_as", dt)
        note = "" if support.get("support", "native") == "native" else \
            f"  [{support['support']}: runs as {runs}]"
        lines.append(f"  {dt} matmul: {est.flops_by_dtype[dt] / 1e9:.3f} GFLOP, "
                     f"{achieved / 1e12:.1f} TFLOP/s = {100 * frac:.1f}% of peak{note}")
    lines.append(f"  HBM: read {nbytes(est.hbm_read_bytes)}, write {nbytes(est.hbm_write_bytes)}")
    if est.arithmetic_intensity is not None and est.ridge_point:
        ridge = ", ".join(f"{dt} {r:.0f}" for dt, r in sorted(est.ridge_point.items()))
        lines.append(f"  arithmetic intensity {est.arithmetic_intensity:.1f} FLOP/B "
                     f"(ridge point: {ridge})")
    lines.append(f"  SRAM: peak {nbytes(est.sram_peak)} of {nbytes(est.sram_capacity)} per CU")
    lines.append(f"  fixed overhead: {seconds(est.overhead)}")
    for flag in est.flags:
        lines.append(f"  note: {flag}")
    lines.append("")
    lines.append("phases:")
    for i, p in enumerate(est.phases):
        terms = p.terms
        lines.append(f"  [{i}] {p.name}: {seconds(p.time)}  bound {p.bound}; {p.tiles} tiles x "
                     f"{p.steps} steps in {p.waves} wave(s) on {p.active_cus} CUs, "
                     f"{p.buffers} buffer(s)")
        if p.tile is not None:
            lines.append(f"      tiles: {tiles_text(p.tile, p.name.split()[0])}")
        engines = "  ".join(f"{k} {seconds(terms[k])}" for k in ("dma", "tensor", "vector")
                            if k in terms)
        floors = "  ".join(f"{k} {seconds(terms[k])}" for k in
                           ("hbm_bound", "l2_bound", "compute_bound", "vector_bound")
                           if terms.get(k))
        lines.append(f"      per CU: {engines}")
        lines.append(f"      floors: {floors}")
        if terms.get("wave_quantization"):
            lines.append(f"      wave quantization: {seconds(terms['wave_quantization'])}")
    if est.by_loc:
        lines.append("")
        lines.append("time by source line:")
        total = sum(t.time for t in est.by_loc.values()) or 1.0
        for loc, t in sorted(est.by_loc.items(), key=lambda kv: (-kv[1].time, kv[0])):
            text = _source_line(loc, sources)
            lines.append(f"  {100 * t.time / total:5.1f}%  {seconds(t.time):>11}  {loc}  {text}")
    return "\n".join(lines) + "\n"


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def placement_map(kernel) -> list[dict]:
    """One record per placed global tensor of a ppu kernel, in program order, read from its
    `#ppu.hbm` attributes: tensor, role, bytes, stacks, base, interleave, l2. A kernel not yet
    lowered to `ppu` has none to report (the driver's one reader of the placement)."""
    if not isinstance(kernel, ppu.KernelOp):
        return []
    rows = []
    taken: set[str] = set()
    n_in = len(kernel.inputs)
    for i, arg in enumerate(kernel.body.block.args):
        rows.append((_unique(arg.name_hint or f"arg{i}", taken),
                     "input" if i < n_in else "output", kernel.arg_attr(i, HBM_KEY)))
    for op in kernel.body.block.ops:
        if isinstance(op, ppu.GlobalOp):
            rows.append((_unique(op.result.name_hint or f"tmp{len(rows)}", taken),
                         "intermediate", op.attributes.get(HBM_KEY)))
    return [{"tensor": name, "role": role, "bytes": a.size.data, "stacks": list(a.stack_ids),
             "base": a.base.data, "interleave": a.interleave.data, "l2": a.l2_resident}
            for name, role, a in rows if isinstance(a, ppu.HbmAttr)]


def render_placement(rows: list[dict]) -> str:
    """The HBM placement map (from `placement_map`): one line per global tensor."""
    if not rows:
        return ""
    head = (f"  {'tensor':<16} {'role':<12} {'bytes':>12}  {'stacks':<17} {'base':>14}  "
            f"{'interleave':>10}  l2")
    out = ["", "HBM placement:", head]
    for r in rows:
        out.append(f"  {r['tensor']:<16} {r['role']:<12} {nbytes(r['bytes']):>12}  "
                   f"{','.join(map(str, r['stacks'])):<17} {r['base']:>#14x}  "
                   f"{r['interleave'] or 'contiguous':>10}  {'yes' if r['l2'] else ''}".rstrip())
    return "\n".join(out) + "\n"


def render_comparison(rows: list[dict]) -> str:
    """One line per target: time, bound, achieved fraction of peak; or "does not fit"."""
    head = f"{'target':<8} {'time':>12} {'bound':<9} {'TFLOP/s':>9} {'of peak':>8}  notes"
    out = [head, "-" * len(head)]
    for r in rows:
        if not r["fits"]:  # one row, with the code, instead of failing the whole table
            code = r["diagnostic"]["code"]
            out.append(f"{r['target']:<8} {'does not fit':>12} ({code}): {r['notes']}")
            continue
        tf = f"{r['tflops']:.1f}" if r["tflops"] is not None else "-"
        frac = f"{100 * r['peak_fraction']:.1f}%" if r["peak_fraction"] is not None else "-"
        out.append(f"{r['target']:<8} {seconds(r['time_s']):>12} {r['bound']:<9} {tf:>9} "
                   f"{frac:>8}  {r['notes']}")
    return "\n".join(out) + "\n"
