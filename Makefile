# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test cluster clean

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
cluster: $(VENV)/.test-deps
	$(PY) manage.py cluster

## Set up and run the whole test suite (starts PostgreSQL and Redis when none is configured).
test: $(VENV)/.test-deps
	$(PY) -m tests.harness $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var
