# eegcache — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3
DEMO_DIR ?= data/tusz_demo
PYTEST_ARGS ?=
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
UV_VERSION := 0.13.9
UV_VENV ?= .eegcache/uv
UPGRADE ?=
UPGRADE_PACKAGE ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## create .venv from the pinned lock (requirements-dev.lock), the package editable

$(UV_VENV)/bin/uv:
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install -q uv==$(UV_VERSION)

# uv keeps the pins already in a lock while they satisfy pyproject.toml; `make lock UPGRADE=1` moves to the newest,
# `make lock UPGRADE_PACKAGE=name` moves that one package only.
# The dev lock is constrained by the runtime lock, so the venv and the Modal image share every version.
lock: $(UV_VENV)/bin/uv ## regenerate requirements.lock (runtime: the Modal image) and requirements-dev.lock (+test, bench, torch)
	$(UV_VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --custom-compile-command "make lock" -q \
		$(if $(UPGRADE),--upgrade) $(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE)) -o $(LOCK)
	$(UV_VENV)/bin/uv pip compile pyproject.toml --extra test --extra bench --extra torch -c $(LOCK) --python-version 3.11 \
		--custom-compile-command "make lock" -q $(if $(UPGRADE),--upgrade) \
		$(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE)) -o $(DEV_LOCK)

demo: venv ## demo corpus -> `dvc repro` (cache, verify, baseline) -> push to local S3 -> remote-verify -> Modal train body
	$(BIN)/eegcache demo-corpus $(DEMO_DIR)
	$(BIN)/eegcache params
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro build_cache
	$(BIN)/eegcache verify cache/tusz
	$(BIN)/eegcache summary cache/tusz
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro train
	$(BIN)/dvc metrics show metrics/train.json
	$(BIN)/eegcache s3-local start --configure-dvc
	$(BIN)/eegcache push
	$(BIN)/eegcache remote-verify
	PATH="$(abspath $(BIN)):$$PATH" $(PY) deploy/modal/app.py .eegcache/demo-volume  # Modal's train body, locally

s3-stop: venv ## stop the local S3 server that `make demo` started (its data stays in .eegcache/s3)
	$(BIN)/eegcache s3-local stop

check: venv ## the inner loop: lint and format check (ruff, pyproject.toml), then the unit tier
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

format: venv ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv ## run the whole test suite (what CI runs, after `make check`)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

stress: venv ## fault tests with 10 kills per operation; the reliability table goes to bench/README.md
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/reliability.py --kills 10

bench: venv ## run the benchmarks (results go to bench/README.md)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/bench_build.py
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/bench_remote.py
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/bench_resolve.py
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/bench_memory.py
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/bench_scale.py
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/bench_loader.py

clean: ## remove generated data, caches and the venv
	rm -rf $(VENV) data cache metrics models .eegcache

.PHONY: help venv lock demo s3-stop check format test stress bench clean
