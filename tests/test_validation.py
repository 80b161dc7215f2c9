"""The cost model's error on measured H100 BF16 GEMMs, through the real compiler (bar: median
|error| <= 5%, as issue 14 asks, max <= 35%), and the plain roofline's for contrast."""

import importlib.util
import statistics
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "validate_cost_model.py"


def _validate():
    spec = importlib.util.spec_from_file_location("validate_cost_model", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.validate()


def test_model_error_on_the_calibration_shapes():
    rows = _validate()
    assert len(rows) == 62
    errors = [abs(r["error"]) for r in rows]
    assert statistics.median(errors) <= 0.05
    assert max(errors) <= 0.35
    # The plain roofline is far off on the same data: the model's terms are doing the work.
    roofline_time = [abs(1 / (1 + r["roofline_error"]) - 1) for r in rows]
    assert statistics.median(roofline_time) > 0.5
