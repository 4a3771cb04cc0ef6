# Two commands matter: `make dev` runs the stack, `make test` runs the tests.
# Both create or refresh the virtualenv in .venv first.
SHELL := /bin/bash
# The Lambda runtime is Python 3.12; use it when the machine has it, else any python3 >= 3.11.
PYTHON ?= $(shell command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'print(1)' >/dev/null 2>&1 && echo python3.12 || (test -x /root/.pyenv/versions/3.12.1/bin/python3.12 && echo /root/.pyenv/versions/3.12.1/bin/python3.12) || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv dev test lint validate build bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

dev: $(STAMP)
	$(BIN)/comfyroute dev

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_convert.py

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
