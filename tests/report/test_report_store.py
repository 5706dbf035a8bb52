"""The store's schema version 2: per-task values come back keyed by task entity, predictions are
kept when a suite asks, each run records the cells it used, and timing rows carry what is needed
to flag them. (Older stores are refused: see test_store_errors.py.)"""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.engine.runner import run_suite
from bench.engine.suite import Suite, load_suite, suite_from_dict
from bench.errors import BenchError, ConfigError
from bench.results.analysis import load_results
from bench.results.analysis.frames import under_load
from bench.results.store import ResultStore


def small_suite(**changes: object) -> Suite:
    # One learner without the floors: one cell per run, one row per task entity.
    settings: dict[str, object] = {
        "learners": ("item-mean",),
        "seeds": (0,),
        "floors": False,
        **changes,
    }
    return replace(load_suite("ci"), **settings)


def test_predictions_are_kept_only_when_asked_and_added_on_a_later_run(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        plain = run_suite(small_suite(), store, progress=False)
        assert plain.computed == 1
    assert load_results(path).predictions.empty
    with ResultStore(path) as store:
        kept = run_suite(small_suite(keep_predictions=True), store, progress=False)
        assert kept.computed == 1 and kept.reused == 0  # recomputed to keep its predictions
        again = run_suite(small_suite(keep_predictions=True), store, progress=False)
        assert again.computed == 0 and again.reused == 1
    results = load_results(path)
    predictions = results.predictions
    evaluated = results.metrics[results.metrics["metric"] == "rmse"]
    # One row per query rating: the ci suite asks for 5 per task.
    assert len(predictions) == 5 * evaluated["n_tasks"].sum()
    # 8 metrics and tied_share; nothing duplicated by the recompute.
    assert len(results.metrics) == len(evaluated) * 9


def test_each_run_records_the_cells_it_computed_or_reused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        first = run_suite(small_suite(), store, progress=False)
        second = run_suite(
            small_suite(learners=("item-mean", "global-mean")), store, progress=False
        )
    assert second.reused == 1 and second.computed == 1
    only_first = load_results(path, run_ids=[first.run_id])
    assert set(only_first.cells["learner"]) == {"item-mean"}
    both = load_results(path, run_ids=[second.run_id])
    assert set(both.cells["learner"]) == {"item-mean", "global-mean"}
    with pytest.raises(BenchError, match="--run: no run 'missing'"):
        load_results(path, run_ids=["missing"])


def test_per_task_values_carry_the_datasets_own_ids(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        run_suite(small_suite(), store, progress=False)
    results = load_results(path)
    per_task = results.per_task
    assert per_task["entity"].map(type).eq(str).all()
    counts = per_task.groupby(["scenario", "k", "metric"])["entity"].agg(["size", "nunique"])
    assert (counts["size"] == counts["nunique"]).all()  # one value per task entity
    tasks = results.metrics.set_index(["scenario", "k", "metric"])["n_tasks"]
    assert (counts["size"] == tasks.loc[counts.index]).all()


def test_timing_rows_record_cpu_time_threads_load_and_host(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        run_suite(small_suite(), store, progress=False)
    timings = load_results(path).timings
    assert set(timings["phase"]) == {"fit", "adapt+predict"}
    assert (timings["cpu_seconds"] >= 0).all() and (timings["seconds"] > 0).all()
    assert (timings["torch_threads"] == torch.get_num_threads()).all()
    assert (timings["host"] == socket.gethostname()).all()
    assert timings["load_1m"].notna().all() and (timings["cpus"] >= 1).all()


def test_under_load_means_load_beyond_the_runs_own_threads() -> None:
    load = pd.Series([2.0, 3.1, 0.5, 9.0])
    threads = pd.Series([2, 2, 8, 16])
    cpus = pd.Series([2, 2, 16, 16])
    # 2 - 2 = 0; 3.1 - 2 >= 1; 0.5 - 8 < 0; 9 - 16 < 8
    assert list(under_load(load, threads, cpus)) == [False, True, False, False]
    assert np.issubdtype(under_load(load, threads, cpus).dtype, np.bool_)


def test_keep_predictions_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="'keep_predictions' must be true or false"):
        suite_from_dict({"keep_predictions": "yes"}, "suite.toml")
    assert suite_from_dict({"keep_predictions": True}, "suite.toml").keep_predictions is True


def test_of_superseded_cells_the_latest_finished_is_kept_whatever_the_order() -> None:
    """Three versions of one cell (code changed between runs) and a second config of the learner:
    the first listed, the last listed and the largest key are each the wrong one to keep."""
    from bench.results.analysis.frames import _latest

    def cell(key: str, finished: str, config: str = "c1") -> dict[str, object]:
        return {
            "dataset": "synthetic", "dataset_hash": "d", "protocol": "cold-random",
            "protocol_hash": "p", "learner": "mf", "config_hash": config, "seed": 0,
            "device": "cpu", "cell_key": key, "finished_at": finished,
        }  # fmt: skip

    rows = [
        cell("b", "2026-01-02T00:00:00"),
        cell("a", "2026-01-03T00:00:00"),  # the latest
        cell("c", "2026-01-01T00:00:00"),
        cell("z", "2025-12-01T00:00:00", config="c2"),  # another config: its own cell
    ]
    kept, superseded = _latest(rows)
    assert sorted(r["cell_key"] for r in kept) == ["a", "z"]
    assert superseded == 2
