# medimg-fast: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast bench lint clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev extra (only when missing)

demo: $(STAMP) ## Run the main job on the bundled default (writes demo-output/)
	$(PY) -m medimg_fast demo --out demo-output

test: $(STAMP) ## Run the test suite (GPU tests skip without a device)
	$(PY) -m pytest -q -p no:cacheprovider --benchmark-disable $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks (throughput vs scipy.ndimage and dask-image) and print the table
	@mkdir -p .benchmarks
	$(PY) -m pytest benchmarks -q -p no:cacheprovider -o python_files='bench_*.py' --benchmark-only \
		--benchmark-columns=min,median,rounds --benchmark-json=.benchmarks/latest.json $(PYTEST_ARGS)
	$(PY) benchmarks/report.py .benchmarks/latest.json

lint: $(STAMP) ## Run ruff
	$(VENV)/bin/ruff check src tests benchmarks

clean: ## Remove build artefacts and caches (keeps .venv)
	rm -rf build dist src/*.egg-info .pytest_cache .benchmarks .hypothesis demo-output
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
