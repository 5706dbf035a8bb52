"""Progress inside a cell: a network learner's fit reports each step and a search each trial,
through the budget, to the run's bar; a cell that runs long says what it is doing."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tqdm import tqdm

import bench.engine.progress
from bench.engine.progress import CellProgress
from bench.engine.runner import run_suite
from bench.engine.suite import suite_from_dict
from bench.protocol.budget import Budget
from bench.protocol.learner_registry import make_learner
from bench.results.store import ResultStore
from learners.network.trainer import Schedule, train_model

from shared import EPISODIC


def test_the_training_loop_reports_every_step_of_its_schedule() -> None:
    seen: list[tuple[int, int]] = []
    model = torch.nn.Linear(2, 1)
    schedule = Schedule(
        steps=5, eval_every=0, patience=1, progress=lambda i, n: seen.append((i, n))
    )
    train_model(model, lambda i: None, None, schedule)
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_a_network_learners_fit_reports_meta_steps_through_its_budget(small_dataset: Any) -> None:
    from bench.protocol import make_protocol
    from bench.protocol.episodes import make_meta_train
    from bench.seeding import Seeds

    split = make_protocol("cold-random", {"support_sizes": [1]}).split(small_dataset, 0)
    train = make_meta_train(small_dataset, split)
    seen: list[tuple[str, int, int]] = []
    learner = make_learner("maml", {**EPISODIC, "eval_every": 0})
    budget = Budget(progress=lambda what, i, n: seen.append((what, i, n)))
    learner.fit(
        train, rng=Seeds(0).child("learner", "maml"), device=torch.device("cpu"), budget=budget
    )
    assert seen == [("meta-step", i, 4) for i in range(1, 5)]
    assert Budget() == budget  # the callable is no part of a budget's identity (nor its cell key)


def test_the_bar_shows_the_step_counts_the_cells_share_and_a_long_cell_says_so() -> None:
    now = [0.0]
    lines: list[str] = []
    bar = tqdm(total=4, file=io.StringIO(), mininterval=0)
    bar.update(2)  # two cells settled
    progress = CellProgress(bar, lines.append, clock=lambda: now[0], say_after_s=60, refresh_s=0)
    cell = SimpleNamespace(key="k", learner="maml", seed=0, description="d / maml / seed 0")
    progress(cell, "meta-step", 150, 600)
    assert bar.n == pytest.approx(2.25) and "maml seed 0: meta-step 150 of 600" in bar.postfix
    assert lines == []
    now[0] = 61.0
    progress(cell, "meta-step", 300, 600)
    now[0] = 70.0
    progress(cell, "meta-step", 310, 600)  # said once a minute, not at every step
    assert lines == ["d / maml / seed 0: running for 1 min, at meta-step 300 of 600"]
    assert bar.n == pytest.approx(2 + 310 / 600)
    other = SimpleNamespace(key="k2", learner="mf", seed=1, description="d / mf / seed 1")
    progress(other, "trial", 1, 0)  # a new cell starts its own clock; no trial limit known
    assert "mf seed 1: trial 1" in bar.postfix and len(lines) == 1


def test_a_run_tells_what_its_cells_are_doing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.engine.progress, "SAY_AFTER_S", 0.0)  # every report is "long"
    suite = suite_from_dict(
        {
            "name": "progress",
            "learners": ["maml", "mf"],
            "seeds": [0],
            "protocol": {"name": "cold-random", "support_sizes": [1], "validation_fraction": 0.2},
            "dataset": {"synthetic": {"n_users": 80, "n_items": 50, "min_ratings_per_user": 10}},
            "learner": {"maml": {**EPISODIC, "eval_every": 0}, "mf": {"iterations": 2}},
            "tune": {"trials": 2, "mf": {"rank": [2, 4]}},
        },
        "<test suite>",
    )
    lines: list[str] = []
    with ResultStore(tmp_path / "s.sqlite") as store:
        run_suite(suite, store, progress=True, log=lines.append)
    steps = [line for line in lines if "/ maml /" in line]
    trials = [line for line in lines if "/ mf /" in line]
    assert steps and all("meta-step" in line and "of 4" in line for line in steps)
    assert trials and all("trial" in line and "of 2" in line for line in trials)
    with ResultStore(tmp_path / "s.sqlite") as store:  # reused cells report nothing
        lines.clear()
        run_suite(suite, store, progress=True, log=lines.append)
    assert not [line for line in lines if "running for" in line]
