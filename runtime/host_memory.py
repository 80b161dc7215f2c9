"""The host memory of a whole run — inputs, the executor or reference evaluator, the numerics
check, the summary and the `.npz` of the outputs — from shapes alone, so that a run that cannot
fit is refused (ZK0505) before anything is allocated, the random inputs included.

The parts follow what `zhenwu-cc run` and the API hold at each step: the arrays read from an
inputs file and the checked inputs live throughout; then one step at a time runs (generating the
random inputs, executing, evaluating, checking) while the outputs of earlier steps are held. Each
step's own figure is the upper-bound estimate of the module that runs it (executor/memory.py,
reference.py), so the total errs high, never low. It counts arrays, not the interpreter's own
objects (the IR, bookkeeping: a few hundred KiB, which only matter for toy shapes).
"""

from __future__ import annotations

import math
from collections.abc import Collection

from zhenwu_cc.core import attrs
from zhenwu_cc.core import dtypes
from zhenwu_cc.runtime import reference
from zhenwu_cc.runtime.inputs import kernel_span
from zhenwu_cc.runtime.units import MAX_HOST_BYTES_ENV, format_bytes, host_memory_limit

from zhenwu_cc.core.diagnostics import error

_GENERATE = 24  # bytes per element random_inputs takes at its peak (int64 draws, clip, cast)
_SUMMARY = 32  # bytes per element `summarize` takes: float64 copy, finite values, std's deviations
_CAST = 16  # bytes per element a host-side quantisation takes (float32 temporaries)
_COMPARE = 96  # bytes per element of an output `check.compare` takes (float64 error arrays)


def _elements(t) -> int:
    return math.prod(t.get_shape())


def _bytes(t, at_least: int = 1) -> int:
    """A tensor type's bytes in its numpy type, at `at_least` bytes an element."""
    return _elements(t) * max(at_least, dtypes.from_xdsl(t.element_type).np_dtype.itemsize)


def run_host_bytes(compiled, *, given: Collection[str] = (), execute: bool = False,
                   reference_mode: str | None = None, check: bool = False, summary: bool = False,
                   out: bool = False, file_bytes: int = 0) -> int:
    """Peak host bytes of a run of `compiled` (an api.CompiledKernel) doing the steps asked for:
    random inputs for the parameters not `given`, `execute` the ppu program, evaluate the
    reference in `reference_mode`, `check` outputs against the reference, `summary` statistics,
    `out` an .npz of the outputs; `file_bytes` of arrays read from an inputs file. Lowers to
    `ppu` when `execute` is asked for (IR only)."""
    zk = compiled.zk
    args = [a.type for a in zk.body.block.args]
    results = list(zk.function_type.outputs.data)
    inputs = sum(_bytes(a) for a in args)
    held = file_bytes + inputs
    steps = [_GENERATE * max((_elements(a) for n, a in zip(zk.arg_names, args) if n not in given),
                             default=0)]
    precise = [a for i, a in enumerate(args) if zk.arg_attr(i, attrs.PRECISION) is not None]
    quantise = _CAST * sum(map(_elements, precise))
    if execute:
        # `run` checks its inputs again (a copy in the declared dtypes), then executes
        steps.append(inputs + quantise + compiled._executor_bytes())
    if reference_mode is not None:
        steps.append(reference.estimate_host_bytes(zk, reference_mode))
    outputs = sum(_bytes(v) for v in results)
    if check:
        # the check's programs (oracle, typed yardstick, one without each directive) with the
        # outputs they keep, then the comparison of one output
        held_by_check, evaluations = check_bytes(compiled._check_programs(), None)
        each = [held_by_check + evaluations,
                outputs + _COMPARE * max(map(_elements, results), default=0)]
        steps.append(outputs + quantise + max(each))
    if summary:
        steps.append(outputs + _SUMMARY * max(map(_elements, results), default=0))
    if out:  # the archive in a buffer (ml_dtypes values as float32), and its bytes taken out
        steps.append(outputs + 2 * sum(_bytes(t, 4) for t in results))
    return held + max(steps)


def ensure_run_memory(compiled, **steps) -> None:
    """Refuse (ZK0505) before allocating anything when `run_host_bytes(compiled, **steps)`
    exceeds the host-memory limit (ZHENWU_MAX_HOST_BYTES, else 60% of physical memory)."""
    limit = host_memory_limit()
    if limit is None:
        return
    need = run_host_bytes(compiled, **steps)
    if need > limit:
        zk = compiled.zk
        raise error("ZK0505", f"running kernel `{zk.sym_name.data}` needs about "
                    f"{format_bytes(need)} ({need} bytes) of host memory, more than the "
                    f"limit of {format_bytes(limit)} ({limit} bytes)",
                    kernel_span(zk), help="use smaller shapes (-D NAME=VALUE), "
                    + ("--mode typed (fewer bytes per element), "
                       if steps.get("reference_mode") == "f64" else "")
                    + f"or raise the limit with {MAX_HOST_BYTES_ENV}=<bytes>")


def check_bytes(programs, sample) -> tuple[int, int]:
    """Host bytes a check takes at most, from shapes alone: (what the run leaves alive: its
    outputs, and for a sample the whole inputs and their quantised copies; what the reference
    evaluations take: the oracle's and the yardstick's results stay alive) for the whole
    outputs or for `sample`'s."""
    def one(kernel, mode):
        if sample is not None:
            kernel = sample.program(kernel, {})[0]
        return reference.estimate_host_bytes(kernel, mode)

    def nbytes(types) -> int:
        return sum(math.prod(t.get_shape()) * dtypes.from_xdsl(t.element_type).np_dtype.itemsize
                   for t in types)

    source = programs[0][0].function_type
    held = nbytes(source.outputs.data) + (2 * nbytes(source.inputs.data) if sample else 0)
    sizes = [one(k, m) for k, m in programs]
    # they run one after another; the oracle's and the yardstick's results stay alive
    kept = sum(reference.results_bytes(k, m) for k, m in programs[:2])
    return held, kept + max(sizes, default=0)
