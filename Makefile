# livesight — the two commands a newcomer needs: `make demo` and `make test` (and `make test-quick` while you work).
#
# Two installs, each with its own stamp, so neither repeats the other:
#   .venv/.runtime-stamp  torch, then the package with the extras the demo runs (runtime + `fast`): `make demo`
#   .venv/.test-stamp     on top of it, the `dev` extra (test tooling, the benchmarks' extras and the llama.cpp
#                         server of tests/remote, built from source: minutes the first time): `make test`, `lint`, …
# PyPI's default torch wheel is the CUDA build on Linux x86-64; on a machine without a GPU take the smaller CPU build
# from the PyTorch CPU index:  make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-stamp
TEST_STAMP    := $(VENV)/.test-stamp
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
# pytest-xdist workers for `make test` (most slow tests wait on processes, brokers and browsers rather than compute)
WORKERS ?= 4
# --no-compile: Python compiles what it imports on first use; compiling every installed file (torch's thousands)
# up front is most of an install's CPU time
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check --no-compile

.PHONY: demo test test-quick test-figures lint soak bench system-deps clean

$(RUNTIME_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) -e '.[fast]'
	@touch $@

$(TEST_STAMP): $(RUNTIME_STAMP)
	$(PIP) -e '.[dev]'
	@touch $@

system-deps:
	@bash scripts/system-deps.sh

demo: $(RUNTIME_STAMP)
	$(BIN)/livesight demo

# ruff (lint + format), and deptry: every import declared, none unused, nothing dev-only imported by the package
lint: $(TEST_STAMP)
	$(BIN)/ruff check livesight tests
	$(BIN)/ruff format --check livesight tests
	$(BIN)/deptry livesight

test: system-deps $(TEST_STAMP)  # system packages first: the dev extra builds llama-cpp-python (cmake, g++)
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -m serial
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(WORKERS) --dist loadgroup --durations=15 -m "not serial"

# the loop while you work: everything but what is marked slow (subprocess fleets, browsers, benchmarks, soak)
test-quick: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" -n $(WORKERS) --dist loadgroup

# the figures the README gives about the tests: how many there are (per marker) and how long `make test` takes
test-figures: system-deps $(TEST_STAMP)
	@bash scripts/test-figures.sh $(WORKERS)

bench: system-deps $(TEST_STAMP)
	$(BIN)/livesight bench all --out bench-out --docs docs

# the fault-and-abuse suite (docs/reliability.md), chaos included: about 15 minutes on 2 cores
soak: system-deps $(TEST_STAMP)
	$(BIN)/python -m tests.soak --out soak-out --docs docs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench-out soak-out
