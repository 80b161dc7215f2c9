# Both README commands start here: each target creates .venv and installs the package itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The main job on a bundled example: compile a GEMM with a fused bias + gelu epilogue, run the
# lowered program on the numpy executor with a numerics check against the float64 reference,
# and explain its estimated cost on the M890 (at the example's full size).
demo: $(STAMP)
	$(BIN)/zhenwu-cc compile examples/gemm_bias_gelu.zk --emit tile -D M=256 -D N=256 -D K=256
	$(BIN)/zhenwu-cc run examples/gemm_bias_gelu.zk -D M=256 -D N=256 -D K=256 --check
	$(BIN)/zhenwu-cc cost examples/gemm_bias_gelu.zk

# The whole test suite: lit + filecheck (the passes' textual output), then pytest (units,
# examples, properties, fuzzing); pytest's closing line is the suite's verdict.
test: $(STAMP)
	$(BIN)/lit --succinct tests/filecheck
	$(BIN)/python -m pytest

# The property tests at full size (minutes).
test-slow: $(STAMP)
	ZHENWU_TEST_PROFILE=thorough $(BIN)/python -m pytest -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/frontend.py

clean:
	rm -rf $(VENV) build *.egg-info tests/filecheck/Output .pytest_cache .hypothesis
