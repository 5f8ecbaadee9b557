# Two set-up commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export POT_BACKEND_DISABLE_PYTORCH := 1
export TORTA_WAREHOUSE ?= warehouse/torta.duckdb

.PHONY: install run test test-slow test-all bench clean ui

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need Python 3.11 ($(PYTHON)) on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# pip (not uv/poetry): the exact torch==2.13.0 pin resolves to the local CPU wheel.
# constraints.txt: exact versions of the numeric packages the replay's outputs depend on (parity).
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	$(PY) -c "import torch,sys; sys.exit(0 if torch.__version__.endswith('+cpu') else 'torch is not the CPU build: ' + torch.__version__)"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/torta run

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-slow: $(STAMP)
	$(PY) -m pytest -q -ra -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -ra -m "slow or not slow"

bench: $(STAMP)
	$(VENV)/bin/torta bench all

ui: $(STAMP)
	$(VENV)/bin/torta ui

clean:
	rm -rf $(VENV) .pytest_cache warehouse/*.duckdb warehouse/*.wal

.PHONY: experiment experiment-reduced bench-scaling
experiment: $(STAMP)   ## the paper's comparison (whole test days: hours; it prints its estimate and resumes), then docs/RESULTS.md
	$(VENV)/bin/torta experiment paper --workers 2

experiment-reduced: $(STAMP)
	$(VENV)/bin/torta experiment paper --reduced

bench-scaling: $(STAMP)   ## scaling benchmarks -> docs/PERFORMANCE.md
	$(PY) -m benchmarks.scaling
