# livesight — the two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap .venv idempotently (CPU torch first, then the project with its extras).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  ?= torch==2.13.0

.PHONY: demo test lint soak bench system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/livesight demo

lint: $(STAMP)
	$(BIN)/ruff check livesight tests
	$(BIN)/ruff format --check livesight tests

test: system-deps $(STAMP)  # system packages first: the dev extra builds llama-cpp-python
	$(BIN)/ruff check livesight tests
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: system-deps $(STAMP)
	$(BIN)/livesight bench all --out bench-out --docs docs

# the fault-and-abuse suite (docs/reliability.md), chaos included: about 15 minutes on 2 cores
soak: system-deps $(STAMP)
	$(BIN)/python -m tests.soak --out soak-out --docs docs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench-out soak-out
