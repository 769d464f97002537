# One entry point for people and CI. Everything installs into .venv from pinned versions.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup study paper-check test bench lint clean

setup: $(VENV)/.installed

# torch first, alone and exact: 2.13.0 resolves to the local CPU wheel; anything looser pulls CUDA builds.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

study: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/report.html

# The paper's headline against null models on three cohorts (docs/methods.md): the study plus two cohorts.
paper-check: setup
	$(BIN)/snakemake --cores $(CORES) all paper_check
	$(BIN)/snakemake --cores 1 --report results/report.html all paper_check

test: setup
	$(BIN)/python -m pytest -q --durations=25

bench: setup
	$(BIN)/layer bench

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

clean:
	rm -rf results .snakemake
