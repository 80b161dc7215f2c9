"""`eval`: one record an agent acts on — diagnostics, the numerics check, the cost with its bound,
the tiles of every grid, and hints (zhenwu_cc/hints.py) with schedule edits.

Everything is computed by the existing machinery: the check is `CompiledKernel.check` (as
`run --check`), the cost `CompiledKernel.costing` (as `cost`); this module only assembles.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from zhenwu_cc.hints import DEFAULT_BUDGET  # beyond it, eval warns (ZK1106)

EVAL_SCHEMA = "zhenwu-cc.eval/1"
TOO_BIG = {"ZK0505", "ZK0510"}  # the check does not fit host memory: the rest still stands


@dataclass
class Evaluation:
    record: dict
    text: str
    diagnostics: list = field(default_factory=list)
    failed: bool = False  # the numerics check failed or could not tell


def numerics_diagnostics(checks, max_rel_l2: float | None) -> list:
    """ZK0508 for outputs further off than their dtypes explain (or over `max_rel_l2`), ZK0509
    for outputs the check cannot judge: what `run --check` and `eval` report."""
    from zhenwu_cc.core.diagnostics import Diagnostic

    out = []
    failed = [c for c in checks if not c.passed and not c.inconclusive]
    unsure = [c for c in checks if c.inconclusive]
    if failed:
        out.append(Diagnostic(
            "ZK0508", f"outputs {', '.join(c.name for c in failed)} differ from the float64 "
            "reference by more than their dtypes explain"
            + ("" if max_rel_l2 is None else " or --max-rel-l2 allows") + ": "
            + "; ".join(f"{c.name}: {c.reason}" for c in failed),
            help="see the per-output errors above; `run --reference --mode typed` shows "
            "what the declared dtypes alone give"))
    if unsure:
        out.append(Diagnostic(
            "ZK0509", "the numerics check cannot tell right from wrong for "
            + "; ".join(f"output {c.name}: {c.reason}" for c in unsure),
            help="give inputs on which the math is defined and not all zero: "
            "--input-range NAME=LO:HI for random ones, or --inputs IN.npz"))
    return out


def evaluate(compiled, *, check: bool = True, seed: int = 0, sample: int | None = None,
             max_rel_l2: float | None = None, with_hints: bool = True,
             costs=None) -> Evaluation:
    """Evaluate a compiled kernel (its `.source` set: hints edit the source); `costs` keeps the
    estimates of the edits hints try (see `hints.Context`)."""
    from zhenwu_cc.hints import Context, hints
    from zhenwu_cc.runtime.cost.report import seconds
    from zhenwu_cc.signature import signature, signature_text

    costing = compiled.costing(compiled.target)
    est = costing.estimate
    sig = signature(compiled.zk)
    numerics, diags, checks = _numerics(compiled, check, seed, sample, max_rel_l2)
    ctx = Context(compiled, costing, check_seed=seed if checks is not None else None,
                  budget=max_rel_l2, costs=costs)
    found = hints(ctx) if with_hints else []
    tiles = [{"phase": i, "name": p.name, "loc": p.loc, "tiles": p.tiles, "waves": p.waves,
              "active_cus": p.active_cus, **(p.tile.to_dict() if p.tile else
                                             {"sizes": None, "step": None, "directive": None,
                                              "directive_sizes": None, "split": None})}
             for i, p in enumerate(est.phases)]
    record = {"kernel": compiled.name, "target": compiled.target, "params": sig["params"],
              "signature": sig, "numerics": numerics, "cost": est.to_dict(),
              "tiles": tiles, "hints": [h.to_dict() for h in found]}
    lines = [f"{signature_text(sig)}", f"estimated on {compiled.target}: {seconds(est.time)} "
             f"({est.bound}-bound)", f"numerics: {_numerics_text(numerics)}", "tiles:"]
    for t in tiles:
        step = "" if t["step"] is None else f" step {t['step']}"
        whence = f"`tile {t['directive']}`" if t["directive"] else "the compiler"
        sizes = "-" if t["sizes"] is None else str(t["sizes"])
        if t["split"]:
            whence += f", {t['parts']} part(s) from `split {t['split']} {t['parts']}`"
        lines.append(f"  [{t['phase']}] {t['name']}: {sizes}{step} from {whence}; {t['tiles']} "
                     f"tile(s), {t['waves']} wave(s), {t['active_cus']} CUs busy")
    lines.append("hints:" if found else "hints: none")
    for h in found:
        lines.append(f"  {h.code} {h.message}")
        if h.edit is not None:
            lines.append(f"        edit: {h.edit.text()}")
    failed = numerics["status"] in ("failed", "inconclusive")
    return Evaluation(record, "\n".join(lines) + "\n", diags, failed)


def _numerics(compiled, check: bool, seed: int, sample, max_rel_l2):
    """(the record's numerics entry, diagnostics, the checks or None when not run). A kernel
    evaluated again (`serve` keeps compiled kernels) reuses its check: the same program, seed,
    sample, budget and host memory limit give the same verdict, and the check is most of a
    repeated eval's time. A kernel that shares a cache (`CompiledKernel.shared`) keeps it there,
    by content: one compiled again from an edited source that comes out the same reuses it."""
    import copy
    import os

    from zhenwu_cc.runtime.units import MAX_HOST_BYTES_ENV

    if not check:
        return ({"status": "skipped", "reason": "--no-check", "seed": None,
                 "budget_rel_l2": DEFAULT_BUDGET if max_rel_l2 is None else max_rel_l2,
                 "outputs": []}, [], None)
    key = (seed, sample, max_rel_l2, os.environ.get(MAX_HOST_BYTES_ENV))
    store = compiled._numerics
    if (shared := compiled._shared_key("numerics", *key)) is not None:
        store, key = compiled._shared, shared
    if key not in store:
        store[key] = _check(compiled, seed, sample, max_rel_l2)
    numerics, diags, checks = store[key]
    return copy.deepcopy(numerics), list(diags), checks


def _check(compiled, seed: int, sample, max_rel_l2):
    """`_numerics` with the check run."""
    from zhenwu_cc.core.diagnostics import CompileError

    budget = DEFAULT_BUDGET if max_rel_l2 is None else max_rel_l2
    try:
        result = compiled.check(seed=seed, sample=sample, max_rel_l2=max_rel_l2)
    except CompileError as exc:
        if {d.code for d in exc.diagnostics} - TOO_BIG:
            raise
        diags = [replace(d, severity="warning") for d in exc.diagnostics]
        return ({"status": "skipped", "reason": "; ".join(d.message for d in diags),
                 "seed": seed, "budget_rel_l2": budget, "outputs": []}, diags, None)
    checks = result.checks
    diags = numerics_diagnostics(checks, max_rel_l2)
    status = ("inconclusive" if any(c.inconclusive for c in checks) else
              "failed" if not all(c.passed for c in checks) else "passed")
    if status == "inconclusive" and any(not c.passed and not c.inconclusive for c in checks):
        status = "failed"
    if status == "passed" and max_rel_l2 is None:
        diags += _over_default_budget(checks)
    return ({"status": status, "reason": None, "seed": seed,
             "budget_rel_l2": budget,
             "outputs": [c.to_dict() for c in checks]}, diags, checks)


def _over_default_budget(checks) -> list:
    """ZK1106 (a warning): outputs that pass because the program's own casts explain their error,
    but are further from the exact math than DEFAULT_BUDGET: the precision choice itself may be
    wrong, which the dtype-aware verdict cannot say."""
    from zhenwu_cc.core.diagnostics import Diagnostic

    over = [c for c in checks if c.rel_l2 > DEFAULT_BUDGET]
    if not over:
        return []
    parts = []
    for c in over:
        worst = max(c.attribution, key=lambda a: a.cost, default=None)
        share = ("" if worst is None or worst.cost <= 0 else
                 f" (`{worst.directive}` adds {worst.cost:.2g})")
        parts.append(f"{c.name}: {c.rel_l2:.3g}{share}")
    return [Diagnostic(
        "ZK1106", "outputs pass the dtype-aware check but are further from the exact math than "
        f"the default budget of {DEFAULT_BUDGET:g} (rel L2): " + "; ".join(parts),
        severity="warning",
        help="if that is more error than the kernel may have, give the budget with "
        "--max-rel-l2 X and choose a wider precision or a finer scale; if it is acceptable, "
        "give --max-rel-l2 at that level to say so")]


def _numerics_text(n: dict) -> str:
    if n["status"] == "skipped":
        return f"skipped ({n['reason']})"
    parts = [f"{o['name']}: rel L2 {_g(o['rel_l2_error'])} vs the exact math, "
             f"{_g(o['typed_rel_l2_error'])} with its own casts" for o in n["outputs"]]
    return f"{n['status']} (" + "; ".join(parts) + ")"


def _g(x) -> str:
    return "-" if x is None else f"{x:.3g}"
