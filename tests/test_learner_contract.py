"""The contract every built-in learner keeps: default config, config round-trip, no use of query
labels, predictions of the query's shape within the rating scale in every scenario, and training
data left as it was."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest
import torch

from bench.config import build_config, config_hash
from bench.data import Dataset
from bench.episodes import MetaTrain, build_tasks, make_meta_train
from bench.learner import make_learner
from bench.protocol import SCENARIOS, Split, make_protocol
from learners import _BUILTIN

SMALL_NET: dict[str, Any] = {"embedding_dim": 8, "hidden": [16, 16]}
EPISODIC: dict[str, Any] = {**SMALL_NET, "meta_steps": 4, "meta_batch": 8, "eval_every": 2}
QUICK: dict[str, dict[str, Any]] = {
    "maml-l2l": EPISODIC,
    "maml": EPISODIC,
    "protonet": {**EPISODIC, "proto_dim": 8},
    "fine-tune": {**SMALL_NET, "epochs": 1},
    "mf": {"rank": 4, "iterations": 3},
}
LEARNER_NAMES = sorted(_BUILTIN)


@pytest.fixture(scope="module")
def split(small_dataset: Dataset) -> Split:
    protocol = make_protocol("cold-random", {"support_sizes": [0, 3], "query_size": 5})
    return protocol.split(small_dataset, 0)


@pytest.fixture(scope="module")
def train(small_dataset: Dataset, split: Split) -> MetaTrain:
    return make_meta_train(small_dataset, split)


@pytest.mark.parametrize("name", LEARNER_NAMES)
def test_default_config_builds_and_round_trips(name: str) -> None:
    learner = make_learner(name)
    as_dict = dataclasses.asdict(learner.config)
    rebuilt = build_config(type(learner.config), as_dict)
    assert rebuilt == learner.config
    assert config_hash(rebuilt) == learner.config_hash


@pytest.mark.parametrize("name", LEARNER_NAMES)
def test_predicts_every_scenario_without_labels_and_leaves_training_data_alone(
    name: str, small_dataset: Dataset, split: Split, train: MetaTrain
) -> None:
    before = {f: getattr(train, f).copy() for f in ("user", "item", "rating", "timestamp")}
    learner = make_learner(name, QUICK.get(name))
    learner.fit(train, rng=np.random.default_rng(0), device=torch.device("cpu"))
    for scenario in SCENARIOS:
        for k in (0, 3):  # k = 0: no support at all, the hardest cold start
            labelled = build_tasks(small_dataset, split.scenarios[scenario], k)
            tasks = labelled.without_labels()
            with torch.no_grad():
                pred = learner.predict(tasks)
            assert tuple(pred.shape) == tuple(tasks.query_items.shape), (scenario, k)
            valid = pred[tasks.query_mask]
            assert torch.isfinite(valid).all(), (scenario, k)
            low, high = small_dataset.rating_scale
            assert ((valid >= low - 1e-5) & (valid <= high + 1e-5)).all(), (scenario, k)
    for field, values in before.items():
        assert np.array_equal(getattr(train, field), values), field


@pytest.mark.parametrize("name", LEARNER_NAMES)
def test_a_fitted_learner_pickles_and_predicts_the_same(
    name: str, small_dataset: Dataset, split: Split, train: MetaTrain
) -> None:
    learner = make_learner(name, QUICK.get(name))
    learner.fit(train, rng=np.random.default_rng(0), device=torch.device("cpu"))
    tasks = build_tasks(small_dataset, split.scenarios["user_cold"], 3).without_labels()
    copy = pickle.loads(pickle.dumps(learner))
    with torch.no_grad():
        assert torch.allclose(learner.predict(tasks), copy.predict(tasks))
