"""A small grid that the executor tests run on every executor, and its results as comparable
frames: every stored row except what names the run or measures time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.engine.executors import Executor
from bench.engine.runner import RunOutcome, run_suite
from bench.engine.suite import Suite, suite_from_dict
from bench.results.analysis import load_results
from bench.results.store import ResultStore


def grid(**changes: Any) -> Suite:
    """Three learners (one of them fitted by ALS) on two seeds of a small synthetic dataset."""
    raw: dict[str, Any] = {
        "name": "executors",
        "learners": ["global-mean", "item-mean", "mf"],
        "seeds": 2,
        "protocol": {"name": "cold-random", "support_sizes": [1, 3], "query_size": 4},
        "dataset": {"synthetic": {"n_users": 80, "n_items": 50, "min_ratings_per_user": 10}},
        "learner": {"mf": {"rank": 4, "iterations": 3}},
        "floors": False,  # the learners named, so that the tests count their cells
    }
    raw.update(changes)
    raw["learner"] = {k: v for k, v in raw["learner"].items() if k in raw["learners"]}
    return suite_from_dict(raw, "test")


def run_on(path: Path, suite: Suite, executor: Executor | None = None) -> RunOutcome:
    with ResultStore(path) as store:
        return run_suite(suite, store, progress=False, executor=executor)


RUN_SPECIFIC = {"run_id", "finished_at", "started_at"}


def comparable(path: Path) -> dict[str, pd.DataFrame]:
    """The metrics, per-task values and cells of a store, sorted, without run ids or times."""
    results = load_results(path)
    frames = {
        "metrics": results.metrics,
        "per_task": results.per_task,
        "cells": results.cells[["cell_key", "dataset", "learner", "seed", "device"]],
    }
    out = {}
    for name, frame in frames.items():
        kept = frame[[c for c in frame.columns if c not in RUN_SPECIFIC]]
        keys = [c for c in kept.columns if kept[c].map(_sortable).all()]
        out[name] = kept.sort_values(keys).reset_index(drop=True)
    return out


def _sortable(value: object) -> bool:
    return isinstance(value, str | int | float)


def assert_same_rows(left: Path, right: Path) -> None:
    a, b = comparable(left), comparable(right)
    for name in a:
        assert len(a[name]) > 0, name
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
