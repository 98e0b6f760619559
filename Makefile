# Two commands on a fresh machine with Python 3.10+ and make:
#   make demo   - run the demo on an embedded Redis
#   make test   - lint, type-check and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench install clean

demo: $(STAMP)
	$(BIN)/oodida demo

test: $(STAMP)
	VENV=$(VENV) scripts/check.sh

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .oodida .pytest_cache .mypy_cache .ruff_cache *.egg-info
