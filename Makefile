# Two commands matter: `make dev` runs the stack, `make test` runs the tests.
# Both create or refresh the virtualenv in .venv first.
SHELL := /bin/bash
# The Lambda runtime is Python 3.12; use it when the machine has it, else any python3 >= 3.11.
PYTHON ?= $(shell for p in python3.12 /root/.pyenv/versions/3.12.*/bin/python3.12 python3.11 python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv browser-deps dev test lint typecheck layer tools bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# Flags for `comfyroute dev`: make dev ARGS="--port 3002 --host 0.0.0.0 --token ..."
dev: $(STAMP)
	$(BIN)/comfyroute dev $(ARGS)

# Chromium (Debian) and playwright for the browser tests; without root on a laptop this may
# fail, and the browser tests then skip themselves (never in CI, where CI=true).
browser-deps: $(STAMP)
	bash .ci/browser-deps.sh || echo "browser test dependencies not installed; browser tests will be skipped"

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) typecheck
	$(BIN)/ruff check .

# mypy on the library and the tools ([tool.mypy] in pyproject.toml says which files and how strict).
typecheck: $(STAMP)
	$(BIN)/mypy

# The Lambda layer as `sam build` makes it (layers/comfyroute/Makefile), into artifacts/layer.
layer:
	$(MAKE) -f layers/comfyroute/Makefile build-ComfyrouteLayer ARTIFACTS_DIR=$(CURDIR)/artifacts/layer

# cfn-lint, sam validate and sam build, in their own virtualenv (.venv-tools).
tools:
	bash .ci/tools.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/follow_cost.py --quick
	$(BIN)/python benchmarks/cold_start.py

clean:
	rm -rf $(VENV) .venv-tools .aws-sam .pytest_cache artifacts
