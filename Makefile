# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-repeat test-loaded cluster clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

## Set up and start the whole single-node archive (Ctrl-C stops it).
run: $(VENV)/.run-deps
	$(PY) manage.py run

## Start a cluster on this machine: PostgreSQL, Redis, PACS_CLUSTER_NODES nodes, HAProxy.
## Its data stay for the next start; CLUSTER_ARGS=--clean removes them when it stops.
cluster: $(VENV)/.test-deps
	$(PY) manage.py cluster $(CLUSTER_ARGS)

## Set up and run the whole test suite (starts PostgreSQL and Redis when none is configured).
test: $(VENV)/.test-deps
	$(PY) -m tests.harness $(PYTEST_ARGS)

## Run the suite RUNS times (default 3), stopping at the first red run: races show up here before CI.
RUNS ?= 3
test-repeat: $(VENV)/.test-deps
	@for run in $$(seq $(RUNS)); do echo "== run $$run of $(RUNS)"; $(PY) -m tests.harness $(PYTEST_ARGS) || exit 1; done

## Run the suite while CPU_LOAD processes (default: one per core) keep every core busy.
CPU_LOAD ?= $(shell nproc)
test-loaded: $(VENV)/.test-deps
	PACS_TEST_CPU_LOAD=$(CPU_LOAD) $(PY) -m tests.harness $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var
