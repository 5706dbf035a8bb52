# The virtual environment is (re)built only when pyproject.toml or the learn2learn build changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: gpu-check setup run test lint docs benchmark benchmark-save benchmark-check regression-check refresh-baseline perf leaderboard mutate clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh scripts/install_learn2learn.sh
	scripts/setup.sh $(PYTHON) $(VENV) dev,meta,parquet,ray,docs
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bench run

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bench learners

# Micro-benchmarks print timings rather than assert them; `make benchmark` runs them.
# The tests run on every core (pytest-xdist, one torch thread per worker); tests that share a
# costly or exclusive fixture run together on one worker (tests/conftest.py). `-rs` lists why
# each skipped test was skipped. TEST_WORKERS=0 runs them in one process. Bytecode is written even
# where PYTHONDONTWRITEBYTECODE is set, so that the many child interpreters the tests start
# (commands, pools, Ray workers) do not each compile the project's modules again.
TEST_WORKERS ?= auto

test: lint
	env -u PYTHONDONTWRITEBYTECODE OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -rs \
		-n $(TEST_WORKERS) --dist loadgroup --ignore=tests/benchmarks

# The documentation site (docs/, mkdocs.yml) into site/; --strict turns every warning (a broken
# link, an unreadable API docstring) into an error. The CLI page is generated from the parser.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

benchmark: $(STAMP)
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only
	$(BIN)/bench perf

# Timing micro-benchmarks against a saved reference run (pytest-benchmark, kept in .benchmarks/):
# `make benchmark-save` once on a quiet machine, then `make benchmark-check` fails when a
# benchmark's median is slower than the reference by more than BENCHMARK_FAIL.
BENCHMARK_FAIL ?= median:25%
BENCHMARK_ARGS := -q tests/benchmarks --benchmark-only --benchmark-storage=.benchmarks

benchmark-save: $(STAMP)
	$(BIN)/python -m pytest $(BENCHMARK_ARGS) --benchmark-save=reference

benchmark-check: $(STAMP)
	@ls .benchmarks/*/*_reference.json >/dev/null 2>&1 || \
		{ echo "no saved reference run in .benchmarks/: run 'make benchmark-save' first" >&2; exit 2; }
	$(BIN)/python -m pytest $(BENCHMARK_ARGS) --benchmark-compare \
		--benchmark-compare-fail=$(BENCHMARK_FAIL)

# The metric regression check of CI: the ci suite, run into a fresh store, against the committed
# baseline (timings are not gated: CI machines are shared). `make refresh-baseline` rewrites the
# baseline on purpose, after a change that is meant to move the numbers.
CI_BASELINE := reports/baselines/ci.json

regression-check: $(STAMP)
	$(BIN)/python -m bench check --suite ci --baseline $(CI_BASELINE) --no-timing \
		--changes-only --no-progress --store "$$(mktemp -d)/ci.sqlite"

refresh-baseline: $(STAMP)
	$(BIN)/python -m bench baseline --suite ci --out $(CI_BASELINE) --no-progress \
		--store "$$(mktemp -d)/ci.sqlite"

# One prepared check on a CUDA machine without network, in under 8 minutes: CUDA tests, `bench
# perf` at 256/1024/4096 tasks, ml100k-cold on cuda and cpu into one store, one report in
# reports/gpu-check/ (docs/gpu-check.md).
gpu-check: $(STAMP)
	scripts/gpu_check.sh $(BIN)/python

# The committed leaderboard: the meta, ml100k-cold, ml100k-recbole-metarec and ml100k-robust
# suites on CPU, then `bench report` and the README's results block.
leaderboard: $(STAMP)
	scripts/leaderboard.sh $(BIN)/python

# Mutation testing of the core modules against their fast tests (slow: not part of `make test`).
# `make mutate` covers every module; `make mutate-metrics` (or protocol, episodes, runner, store,
# mf, maml) one of them. Each run starts from a fresh mutants/ copy of the sources.
MUTANTS_metrics := 'bench.evaluation.metrics.*'
MUTANTS_protocol := 'bench.protocol.*'
MUTANTS_episodes := 'bench.protocol.episodes.*'
MUTANTS_runner := 'bench.engine.cells.x_cell_key__mutmut_*' $(foreach f,x_run_suite x__drive x__needed x__store_result x__release,'bench.engine.runner.$(f)__mutmut_*')
MUTANTS_store := 'bench.results.store.*'
MUTANTS_mf := 'learners.mf.*' 'learners.als.*'
MUTANTS_maml := 'learners.network.adaptation.*' 'learners.network.losses.*'
MUTATE_MODULES := metrics protocol episodes runner store mf maml
# mutmut on the given mutants, with the watchdog that ends a test run hung past 180 s of wall
# time (mutmut's own limit counts CPU time, which a hang does not use).
run_mutmut = tests/mutation/watchdog.sh & w=$$!; \
	OMP_NUM_THREADS=1 $(BIN)/mutmut run $(1); status=$$?; kill $$w; exit $$status

mutate: $(STAMP)
	rm -rf mutants
	$(call run_mutmut,$(foreach m,$(MUTATE_MODULES),$(MUTANTS_$(m))))
	$(BIN)/python tests/mutation/report.py

mutate-%: $(STAMP)
	rm -rf mutants
	$(call run_mutmut,$(MUTANTS_$*))
	$(BIN)/python tests/mutation/report.py $*

clean:
	rm -rf $(VENV) .bench mutants site
