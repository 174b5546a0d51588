# glaciermap: `make run` (demo region end to end) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
REGION ?= $(shell awk '/^region:/ {print $$2}' config.yaml)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat envs/requirements.txt pyproject.toml | sha1sum | cut -c1-12)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env demo run report test test-fast lint dag clean

env: $(STAMP)

$(STAMP): envs/requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch pinned in the same call: an unpinned resolve would pull a multi-GB CUDA build
	$(BIN)/pip install -q --disable-pip-version-check --no-compile torch==2.13.0 -r envs/requirements.txt
	# byte-compile on all cores (pip does it on one: ~20 s more on 2 cores); like pip, a file that does
	# not compile (e.g. test data written for another Python) is not an error
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

demo: env
	$(BIN)/python -m glaciermap.demo --out resources/demo --seed 0 --preset demo

# the demo end to end, then its HTML report (results/<region>/report.html)
run: demo
	# every job imports glaciermap afresh; compiled once here, not in each job (PYTHONDONTWRITEBYTECODE)
	$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES)
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --report results/$(REGION)/report.html

# HTML report of a finished run (figures with captions, run statistics): results/<region>/report.html
report: env
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --report results/$(REGION)/report.html

test: env
	$(BIN)/python -m pytest -q

# the fast tier for a development loop: everything but the tests marked slow (end-to-end Snakemake runs, the tiny
# modelling run; tests/conftest.py)
test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

lint: env
	$(BIN)/snakemake --lint

dag: env
	$(BIN)/snakemake -n --quiet rules

clean:
	rm -rf results .snakemake
