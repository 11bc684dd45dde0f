# livesight — the two commands a newcomer needs: `make demo` and `make test` (and `make test-quick` while you work).
# Both bootstrap .venv idempotently (torch first, then the project with its extras). PyPI's default torch wheel is the
# CUDA build on Linux x86-64; on a machine without a GPU take the smaller CPU build from the PyTorch CPU index:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test test-quick lint soak bench system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
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

# the loop while you work: unit, model, contract, web, MQTT, memory, daemon-in-process tests; no subprocess fleets,
# browsers, benchmarks or soak (those are marked slow). About 4 minutes on 2 cores.
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

bench: system-deps $(STAMP)
	$(BIN)/livesight bench all --out bench-out --docs docs

# the fault-and-abuse suite (docs/reliability.md), chaos included: about 15 minutes on 2 cores
soak: system-deps $(STAMP)
	$(BIN)/python -m tests.soak --out soak-out --docs docs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench-out soak-out
