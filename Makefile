# The virtual environment is (re)built only when pyproject.toml or the learn2learn build changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint benchmark perf leaderboard mutate clean

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

# Mutation testing of the core modules against their fast tests (slow: not part of `make test`).
# `make mutate` covers every module; `make mutate-metrics` (or protocol, episodes, runner, store,
# mf, maml) one of them. Each run starts from a fresh mutants/ copy of the sources.
MUTANTS_metrics := 'bench.metrics.*'
MUTANTS_protocol := 'bench.protocol.*'
MUTANTS_episodes := 'bench.episodes.*'
MUTANTS_runner := 'bench.runner.x_cell_key__mutmut_*' 'bench.runner.x_run_suite__mutmut_*'
MUTANTS_store := 'bench.store.*'
MUTANTS_mf := 'learners.mf.*' 'learners.als.*'
MUTANTS_maml := 'learners.network.adaptation.*' 'learners.network.losses.*'
MUTATE_MODULES := metrics protocol episodes runner store mf maml

mutate: $(STAMP)
	rm -rf mutants
	OMP_NUM_THREADS=1 $(BIN)/mutmut run $(foreach m,$(MUTATE_MODULES),$(MUTANTS_$(m)))
	$(BIN)/python tests/mutation/report.py

mutate-%: $(STAMP)
	rm -rf mutants
	OMP_NUM_THREADS=1 $(BIN)/mutmut run $(MUTANTS_$*)
	$(BIN)/python tests/mutation/report.py $*

clean:
	rm -rf $(VENV) .bench mutants
