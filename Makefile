# kubetrader — every target sets up what it needs itself (virtualenv, Python packages,
# Debian packages), so `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
STAMP := $(VENV)/.installed
# Image names and tags live in one place, shared with the chart's defaults (images/images.env).
include images/images.env
export
# Some machines set PYTHONDONTWRITEBYTECODE: then every Job, worker and test subprocess
# compiles MLflow, pandas and Optuna from source again (seconds each). Keep the cache.
unexport PYTHONDONTWRITEBYTECODE

# Each area may add targets in a file of its own (cluster flows, generators, ...).
-include mk/*.mk

.PHONY: help install-deps demo test pytest lint typecheck bench lock crds browser-deps \
        kind-up kind-down images kind-load install uninstall e2e clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	@$(PYTHON) -m pip install -q --upgrade uv 2>/dev/null || true
	@if [ -x $(BIN)/uv ]; then \
	  $(BIN)/uv pip sync -q --compile-bytecode --python $(PYTHON) requirements/lock.txt && \
	  $(BIN)/uv pip install -q --python $(PYTHON) --no-deps -e . ; \
	else \
	  $(PYTHON) -m pip install -q --compile -r requirements/lock.txt && \
	  $(PYTHON) -m pip install -q --no-deps -e . ; \
	fi
	@touch $@

install-deps: $(STAMP)  ## create .venv and install the pinned packages

browser-deps:  ## Debian's Chromium for the browser test (installed when missing)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

lock:  ## re-pin requirements/lock.txt (dev) and runtime.txt (images) from pyproject.toml, with hashes
	@$(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q -o requirements/lock.txt
	@$(PYTHON) -m uv pip compile pyproject.toml requirements/build.in -c requirements/lock.txt --python-version 3.11 \
	  --generate-hashes -q -o requirements/runtime.txt

demo: $(STAMP)  ## the sample Backtest and a small study on bundled data (no cluster), logged to a local MLflow
	$(BIN)/kubetrader run -f examples/backtest-sma.yaml --output results
	rm -f data/optuna/demo-sma.log
	$(BIN)/kubetrader run -f examples/study-demo.yaml --output results --workers 2
	@echo ""; echo "Done. Open what it made:"
	@echo "  the dashboard:  make dashboard      (then http://127.0.0.1:8501)"
	@echo "  MLflow's UI:    $(BIN)/$$($(BIN)/kubetrader mlflow ui-hint | tail -1)"
	@echo "  the CLI:        source $(VENV)/bin/activate  (or $(BIN)/kubetrader ...)"

lint: $(STAMP)  ## ruff, mypy and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check engine operator dashboard strategies tests bench images
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) browser-deps lint pytest  ## the whole suite

pytest: $(STAMP)
	$(PYTHON) -m pytest -n 2 --dist loadgroup -q --durations=25

bench: $(STAMP)  ## benchmarks: printed tables, ratios side by side
	$(PYTHON) bench/run.py

crds: $(STAMP)  ## regenerate crds/ from the spec models
	$(PYTHON) -m kubetrader_operator.crdgen crds

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
