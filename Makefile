# onedoor — two commands: `make run` (the service on its embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ONEDOOR_DATA_DIR ?= $(CURDIR)/data
# Debian packages the tests need (browser tests, TURN, compose validation, namespaces, CJK font).
TEST_DEBS := chromium coturn docker-compose iproute2 fonts-noto-cjk
BENCH_DEBS := janus

.PHONY: run test lint jslint typecheck pytest jstest e2e bench install test-install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $(VENV)/.installed $@

# The browser client's dev tools (ESLint), pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed

## make run: migrate the SQLite database in $(ONEDOOR_DATA_DIR), load the demo district once,
## and serve on http://127.0.0.1:8080 with the in-process bus.
run: install
	$(BIN)/onedoor db upgrade
	$(BIN)/onedoor demo load
	$(BIN)/onedoor serve

test-install: $(VENV)/.test-installed node_modules/.installed
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: test-install
	$(BIN)/ruff check server signaling media web scheduling tests bench
	$(BIN)/ruff format --check server signaling media web scheduling tests bench
	$(BIN)/lint-imports

## The browser client (web/static): ESLint, and the room model's unit tests (node --test, no DOM).
jslint: test-install
	node_modules/.bin/eslint

jstest: test-install
	node --test tests/js/

typecheck: test-install
	$(BIN)/mypy
	$(BIN)/mypy tests

## The suite in two parts: unit, component and integration tests on $(PYTEST_WORKERS) workers
## (pytest-xdist; every database, port and Redis prefix is per test), then the media, multi-node
## and benchmark smoke tests one at a time (they run real aiortc peers and servers that
## compete for the same cores). Exit code 5 (nothing collected) is not a failure.
## A media or multi-node test that fails is run once more (pytest-rerunfailures): several
## wait on real-time media (layer climbs, keyframes, leases) and failed once in a while on a
## loaded 2-core machine; a rerun is reported as such in the summary ("R"), never hidden, with
## the test's name and the first attempt's traceback (--rerun-show-tracebacks).
PYTEST_WORKERS ?= 2
pytest: test-install
	$(BIN)/pytest -m "not e2e" -p no:cacheprovider -n $(PYTEST_WORKERS) tests/unit tests/component tests/integration; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc
	$(BIN)/pytest -m "not e2e" -p no:cacheprovider --reruns 1 --rerun-show-tracebacks tests/media tests/multinode tests/bench; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

## Browser tests run inside a loopback-only network namespace (../shared/TESTING.md), on
## $(E2E_WORKERS) workers (each test starts its own server and browser).
E2E_WORKERS ?= 2
e2e: test-install
	tests/e2e/run-in-netns.sh $(BIN)/pytest -m e2e -p no:cacheprovider -n $(E2E_WORKERS)

## make test: installs what the tests need, then lint, types, the suite, and the browser tests.
test: lint jslint typecheck pytest jstest e2e

bench: test-install
	@dpkg -s $(BENCH_DEBS) >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEBS) >/dev/null)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache artifacts
