# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
EXTRAS ?= dev,serve,airflow,postgres,spark,airflow-spark,mlflow
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: venv demo test test-fast lint format bench bench-quick clean airflow

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
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider tests/architecture/test_private_imports.py tests/architecture/test_module_sizes.py tests/architecture/test_type_checking.py
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks dags
	$(VENV)/bin/ruff check --fix src tests benchmarks dags

# Local Airflow 3 (standalone: api-server, scheduler, dag-processor, triggerer) on the project's dags/.
# Stop it with Ctrl-C in its terminal; started in the background (`setsid make airflow > airflow.log 2>&1 &`),
# stop the whole process group: `kill -TERM -- -<pid of make>`. Tasks run with CINEMATCH_HOME (default ./cinematch-home).
AIRFLOW_DIR ?= $(CURDIR)/airflow-home
AIRFLOW_PORT ?= 8080
# the API server (UI) listens on this machine only; `make airflow AIRFLOW_HOST=0.0.0.0` opens it to the network
AIRFLOW_HOST ?= 127.0.0.1
AIRFLOW := $(CURDIR)/$(VENV)/bin/airflow
AIRFLOW_PASSWORDS := $(AIRFLOW_DIR)/simple_auth_manager_passwords.json.generated
AIRFLOW_ENV = AIRFLOW_HOME=$(AIRFLOW_DIR) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__API__HOST=$(AIRFLOW_HOST) AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__API__BASE_URL=http://localhost:$(AIRFLOW_PORT) \
	AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY=$${AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY:-30} \
	CINEMATCH_HOME=$${CINEMATCH_HOME:-$(CURDIR)/cinematch-home} PATH=$(CURDIR)/$(VENV)/bin:$$PATH

airflow: $(STAMP)
	@mkdir -p $(AIRFLOW_DIR)
	@env $(AIRFLOW_ENV) $(AIRFLOW) db migrate >/dev/null
	@env $(AIRFLOW_ENV) $(AIRFLOW) pools set cinematch_warehouse 1 "CineMatch warehouse: DuckDB has one writer" >/dev/null
	@echo "Airflow UI: http://localhost:$(AIRFLOW_PORT)  (listening on $(AIRFLOW_HOST); AIRFLOW_HOME $(AIRFLOW_DIR), DAGs $(CURDIR)/dags)"
	@if [ -f $(AIRFLOW_PASSWORDS) ]; then echo "login: admin, password: $$(cat $(AIRFLOW_PASSWORDS))"; \
	else echo "login: admin, password: printed below on this first start, then kept in $(AIRFLOW_PASSWORDS)"; fi
	@echo "stop: Ctrl-C here (in the background: kill -TERM -- -<process group of make>)"
	@exec env $(AIRFLOW_ENV) $(AIRFLOW) standalone

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-quick: $(STAMP)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) cinematch-home airflow-home .pytest_cache .ruff_cache
