# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
EXTRAS ?= dev,serve
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,

.PHONY: venv demo test test-fast lint format bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cinematch demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks dags
	$(VENV)/bin/ruff format --check src tests benchmarks dags

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks dags
	$(VENV)/bin/ruff check --fix src tests benchmarks dags

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-quick: $(STAMP)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) cinematch-home .pytest_cache .ruff_cache
