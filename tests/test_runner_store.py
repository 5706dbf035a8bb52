"""The runner and the results store: resume after an interruption, no duplicates, failures kept."""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from bench.engine.cells import TRIAL_SINKS, CellFailure, CellJob, Workload
from bench.engine.executors import LocalExecutor
from bench.engine.runner import run_suite
from bench.engine.suite import Suite, load_suite
from bench.errors import ConfigError, StoreError
from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain
from bench.protocol.learner_registry import LEARNERS
from bench.results.records import CellRecord
from bench.results.store import ResultStore
from bench.seeding import Seeds
from learners.baselines import BiasBaseline

from shared import InAThread


class Interruptible(BiasBaseline):
    """item-mean, but its fit on seed 1 raises what the flags say (a crash or a Ctrl-C)."""

    raise_on_seed_1: ClassVar[type[BaseException] | None] = None

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        if self.raise_on_seed_1 is not None and rng.root == 1:
            raise self.raise_on_seed_1("stopped on purpose")
        super().fit(train, rng=rng, device=device, budget=budget)


if "test-interruptible" not in LEARNERS:
    LEARNERS.register("test-interruptible", Interruptible)


def suite(learners: tuple[str, ...] = ("item-mean", "test-interruptible", "mf")) -> Suite:
    # The ci suite with these learners alone (no floors), so that cells count as one per seed.
    return replace(load_suite("ci"), learners=learners, seeds=(0, 1, 2), floors=False)


def comparable(rows: list[dict[str, Any]]) -> list[tuple]:
    keys = ("dataset", "protocol", "scenario", "k", "learner", "seed", "device", "metric")
    return sorted((*(r[k] for k in keys), round(r["value"], 12)) for r in rows)


@pytest.fixture()
def reference(tmp_path: Path) -> list[tuple]:
    Interruptible.raise_on_seed_1 = None
    with ResultStore(tmp_path / "reference.sqlite") as store:
        outcome = run_suite(suite(), store, progress=False)
        assert outcome.exit_code == 0
        return comparable(store.metric_rows())


def test_interrupted_run_resumes_with_identical_rows_and_no_duplicates(
    tmp_path: Path, reference: list[tuple]
) -> None:
    path = tmp_path / "resumed.sqlite"
    Interruptible.raise_on_seed_1 = KeyboardInterrupt
    with ResultStore(path) as store, pytest.raises(KeyboardInterrupt):
        run_suite(suite(), store, progress=False)
    with ResultStore(path) as store:
        partial = store.metric_rows()
        assert 0 < len(partial) < len(reference)
        assert store.runs()[-1]["status"] == "interrupted"

    Interruptible.raise_on_seed_1 = None
    with ResultStore(path) as store:
        outcome = run_suite(suite(), store, progress=False)
        assert outcome.reused > 0 and outcome.computed > 0
        resumed = comparable(store.metric_rows())
    assert resumed == reference
    assert len(set(resumed)) == len(resumed)

    with ResultStore(path) as store:  # a third run computes nothing and adds nothing
        outcome = run_suite(suite(), store, progress=False)
        assert outcome.computed == 0
        assert comparable(store.metric_rows()) == reference


def test_fresh_recomputes_without_duplicating(tmp_path: Path, reference: list[tuple]) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        run_suite(suite(), store, progress=False)
        outcome = run_suite(suite(), store, fresh=True, progress=False)
        assert outcome.reused == 0 and outcome.computed == len(outcome.cell_keys)
        assert comparable(store.metric_rows()) == reference


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    Interruptible.raise_on_seed_1 = RuntimeError
    try:
        with ResultStore(tmp_path / "s.sqlite") as store:
            outcome = run_suite(suite(), store, progress=False, log=lambda _: None)
            assert outcome.exit_code == 1
            assert len(outcome.failed) == 1 and "stopped on purpose" in outcome.failed[0][1]
            failures = store.failures(outcome.run_id)
            assert len(failures) == 1 and "RuntimeError" in failures[0]["traceback"]
            learners_seeds = {(r["learner"], r["seed"]) for r in store.metric_rows()}
            assert ("test-interruptible", 1) not in learners_seeds
            assert {("mf", s) for s in (0, 1, 2)} <= learners_seeds
            assert store.runs()[-1]["status"] == "failed"
    finally:
        Interruptible.raise_on_seed_1 = None


def test_same_seed_gives_identical_metrics_on_cpu(tmp_path: Path) -> None:
    rows = []
    for name in ("a", "b"):
        with ResultStore(tmp_path / f"{name}.sqlite") as store:
            run_suite(suite(("mf",)), store, progress=False)
            rows.append(comparable(store.metric_rows()))
    assert rows[0] == rows[1]


def test_changed_learner_config_is_a_different_cell(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        first = run_suite(suite(("mf",)), store, progress=False)
        tuned = replace(suite(("mf",)), learner={"mf": {"rank": 4}})
        second = run_suite(tuned, store, progress=False)
        assert second.computed == len(second.cell_keys) > 0
        assert not set(first.cell_keys) & set(second.cell_keys)


def test_store_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store, store.transaction() as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(Exception, match="schema version 99"):
        ResultStore(path)


def test_store_uses_wal_and_records_provenance(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        run_suite(suite(("item-mean",)), store, progress=False)
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        run = store.runs()[-1]
    import json

    provenance = json.loads(run["provenance"])
    assert {"git", "packages", "code_fingerprint", "devices"} <= set(provenance)
    assert provenance["packages"]["torch"] == torch.__version__.split("+")[0] or provenance[
        "packages"
    ]["torch"].startswith(torch.__version__.split("+")[0])
    config = json.loads(run["config"])
    assert config["seeds"] == [0, 1, 2] and config["learners"] == ["item-mean"]


# The runner's side of the executor contract ---------------------------------------------------


class Recording(LocalExecutor):
    """The local executor, recording what the run hands it and how the run closes it."""

    def __init__(self) -> None:
        self.work: Workload | None = None
        self.closed: list[bool] = []

    def start(self, work: Workload) -> None:
        self.work = work
        super().start(work)

    def close(self, cancel: bool) -> None:
        self.closed.append(cancel)


class ResolvesDevicesWhereCellsRun(Recording):
    """Like a cluster's executor, it takes device names that need not exist on the driver."""

    resolves_devices_here = False


@pytest.mark.parametrize("progress", [True, False])
def test_an_in_process_run_hands_its_progress_flag_and_closes_the_executor(
    tmp_path: Path, progress: bool
) -> None:
    executor = Recording()
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite(("item-mean",)), store, progress=progress, executor=executor)
    assert executor.work is not None and executor.work.context.progress is progress
    assert executor.work.context.run_id == outcome.run_id
    assert executor.closed == [False]
    assert outcome.run_id not in TRIAL_SINKS  # the run's trial sink goes with it


def test_an_interrupted_run_cancels_its_workers(tmp_path: Path) -> None:
    Interruptible.raise_on_seed_1 = KeyboardInterrupt
    executor = Recording()
    try:
        with ResultStore(tmp_path / "s.sqlite") as store, pytest.raises(KeyboardInterrupt):
            run_suite(suite(("test-interruptible",)), store, progress=False, executor=executor)
    finally:
        Interruptible.raise_on_seed_1 = None
    assert executor.closed == [True]


def test_devices_resolved_where_cells_run_are_checked_by_name_only(tmp_path: Path) -> None:
    executor = ResolvesDevicesWhereCellsRun()
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite(("item-mean",)), store, progress=False, executor=executor)
        assert outcome.exit_code == 0 and outcome.computed == 3
        assert executor.work is not None
        assert executor.work.devices == {"cpu": torch.device("cpu")}
        bad = replace(suite(("item-mean",)), devices=("gpu0",))
        # The plan checks the names (an error naming the suite) before any cell runs.
        with pytest.raises(ConfigError, match="device must be 'cpu' or 'cuda\\[:N\\]', got 'gpu0'"):
            run_suite(bad, store, progress=False, executor=ResolvesDevicesWhereCellsRun())


def test_a_run_that_cannot_be_recorded_cancels_its_workers(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ResultStore(path).close()
    executor = Recording()
    with ResultStore(path, mode="read") as store, pytest.raises(StoreError, match="read-only"):
        run_suite(suite(("item-mean",)), store, progress=False, executor=executor)
    assert executor.work is not None and executor.closed == [True]


def test_cells_still_computed_when_the_queue_empties_are_waited_for(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite(("item-mean",)), store, progress=False, executor=InAThread())
        seeds = {r["seed"] for r in store.metric_rows()}
    assert (outcome.computed, seeds) == (3, {0, 1, 2})


class LosesTheWorkerOfSeed1(LocalExecutor):
    """The local executor, but the worker given seed 1 dies: its future raises."""

    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        if job.fields["seed"] != 1:
            return super().submit(job)
        future: Future[CellRecord | CellFailure] = Future()
        future.set_exception(BrokenProcessPool("a worker died"))
        return future


def test_a_worker_that_dies_fails_its_cell_and_the_run_goes_on(tmp_path: Path) -> None:
    executor = LosesTheWorkerOfSeed1()
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(
            suite(("item-mean",)), store, progress=False, executor=executor, log=lambda _: None
        )
        (failure,) = store.failures(outcome.run_id)
        seeds = {r["seed"] for r in store.metric_rows()}
    assert (outcome.exit_code, outcome.computed, seeds) == (1, 2, {0, 2})
    assert [message for _, message in outcome.failed] == ["BrokenProcessPool: a worker died"]
    assert failure["error"] == "BrokenProcessPool: a worker died"
    assert failure["traceback"].startswith("Traceback (most recent call last)")
    assert failure["traceback"].rstrip().endswith("BrokenProcessPool: a worker died")
