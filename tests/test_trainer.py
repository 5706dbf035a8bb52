"""The shared training loop: early stopping keeps the best state, the time budget stops training,
and a suite's ``max_fit_seconds`` reaches the learner and the cell key."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.data.dataset import Dataset
from bench.engine.runner import run_suite
from bench.engine.suite import load_suite
from bench.errors import ConfigError
from bench.protocol import make_protocol
from bench.protocol.budget import Budget, split_budget
from bench.protocol.episodes import make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.results.store import ResultStore
from bench.seeding import Seeds
from learners.network.trainer import Schedule, train_model


def counting_model() -> torch.nn.Linear:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    return model


def test_early_stopping_restores_the_best_check() -> None:
    model = counting_model()

    def step(i: int) -> None:
        with torch.no_grad():
            model.weight.add_(1.0)

    scores = iter([3.0, 1.0, 2.0, 2.5, 0.5])  # best at the second check, then no improvement
    log = train_model(model, step, lambda: next(scores), Schedule(100, 2, patience=2))
    assert log.history == [(2, 3.0), (4, 1.0), (6, 2.0), (8, 2.5)]
    assert log.stopped == "patience" and log.best_step == 4 and log.steps == 8
    assert model.weight.item() == 4.0  # the parameters of step 4, not of step 8
    assert not model.training


def test_without_validation_the_last_state_stays() -> None:
    model = counting_model()
    log = train_model(model, lambda i: model.weight.data.add_(1.0), None, Schedule(5, 2, 1))
    assert log.steps == 5 and log.stopped == "steps" and model.weight.item() == 5.0


def test_a_passed_deadline_stops_after_one_step_and_validates_it() -> None:
    model = counting_model()
    past = time.perf_counter() - 1.0
    log = train_model(
        model, lambda i: model.weight.data.add_(1.0), lambda: 1.0, Schedule(10_000, 50, 3, past)
    )
    assert log.steps == 1 and log.stopped == "budget" and log.history == [(1, 1.0)]


@pytest.mark.parametrize("name", ["maml", "fine-tune"])
def test_network_learners_respect_the_budget(name: str, small_dataset: Dataset) -> None:
    protocol = make_protocol("cold-random", {"support_sizes": [1, 5], "query_size": 5})
    train = make_meta_train(small_dataset, protocol.split(small_dataset, 0))
    long = {"maml": {"meta_steps": 10**6}, "fine-tune": {"epochs": 10**5, "batch_size": 64}}
    learner = make_learner(name, {"embedding_dim": 8, "hidden": [8], **long[name]})
    learner.fit(train, rng=Seeds(0), device=torch.device("cpu"), budget=Budget(0.05))
    log = learner.log  # type: ignore[attr-defined]
    assert log.stopped == "budget" and log.steps < 10**5
    assert log.history and log.history[-1][0] == log.steps  # the last state was validated


def test_budget_in_a_suite_table(tmp_path: Path) -> None:
    overrides, budget = split_budget({"meta_steps": 5, "max_fit_seconds": 2}, "[learner.maml]")
    assert overrides == {"meta_steps": 5} and budget == Budget(2.0)
    for bad in (0, -1, "ten", True):
        with pytest.raises(ConfigError, match=r"max_fit_seconds.*\[learner.maml\]"):
            split_budget({"max_fit_seconds": bad}, "[learner.maml]")

    tiny = {"embedding_dim": 8, "hidden": [8], "meta_batch": 8, "eval_every": 0}
    base = replace(
        load_suite("ci"), learners=("maml",), seeds=(0,), scenarios=("user_cold",), floors=False
    )
    capped = replace(base, learner={"maml": {**tiny, "meta_steps": 10**6, "max_fit_seconds": 1}})
    uncapped = replace(base, learner={"maml": {**tiny, "meta_steps": 10**6}})
    with ResultStore(tmp_path / "s.sqlite") as store:
        done = run_suite(capped, store, progress=False)  # would not end without the budget
        assert done.exit_code == 0 and done.computed == 1
        fit = [r for r in store.timing_rows() if r["phase"] == "fit"]
        assert len(fit) == 1
        config = store.runs()[-1]["config"]
        assert '"max_fit_seconds": 1' in config
    from bench.data.cards import load_dataset
    from bench.engine.cells import iter_cells

    dataset = load_dataset("synthetic", base.dataset.get("synthetic"))
    protocol = make_protocol("cold-random", base.protocol)
    keys = [next(iter_cells([dataset], protocol, s, "code")).key for s in (capped, uncapped)]
    assert keys[0] != keys[1]
