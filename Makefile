# The virtual environment is (re)built only when pyproject.toml or the learn2learn build changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint benchmark perf leaderboard clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_learn2learn.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,meta,parquet,ray]'
	scripts/install_learn2learn.sh $(BIN)/python
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bench run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bench learners

# Micro-benchmarks print timings rather than assert them; `make benchmark` runs them.
test: lint
	$(BIN)/python -m pytest -q --ignore=tests/benchmarks

benchmark: $(STAMP)
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only
	$(BIN)/bench perf

# The committed leaderboard: the meta and ml100k-cold suites on CPU, then `bench report`.
leaderboard: $(STAMP)
	scripts/leaderboard.sh $(BIN)/python

clean:
	rm -rf $(VENV) .bench
