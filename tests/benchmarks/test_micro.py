"""Micro-benchmarks (pytest-benchmark): episode batching, metrics and the vectorised inner loop.

Skipped by ``make test`` (``--benchmark-skip``); ``make benchmark`` runs them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.evaluation.metrics import Queries, evaluate
from bench.protocol import make_protocol
from bench.protocol.episodes import MetaTrain, TaskBatch, make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds
from learners.network import adapted_predictions

pytestmark = pytest.mark.benchmark
TASKS = 256


@pytest.fixture(scope="module")
def train(small_dataset: Dataset) -> MetaTrain:
    protocol = make_protocol("cold-random", {"name": "cold-random"})
    return make_meta_train(small_dataset, protocol.split(small_dataset, 0))


@pytest.fixture(scope="module")
def tasks(train: MetaTrain) -> TaskBatch:
    return train.sampler.sample(np.random.default_rng(0), TASKS, 10, 10)


def test_episode_batching(benchmark, train: MetaTrain) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    batch = benchmark(train.sampler.sample, rng, TASKS, 10, 10)
    assert batch.n_tasks == TASKS


def test_metrics(benchmark, tasks: TaskBatch) -> None:  # type: ignore[no-untyped-def]
    assert tasks.query_ratings is not None
    actual = tasks.query_ratings.numpy().astype(np.float64)
    noise = np.random.default_rng(0).normal(scale=0.5, size=actual.shape)
    queries = Queries(actual + noise, actual, tasks.query_mask.numpy(), 4.0, (1.0, 5.0))
    values = benchmark(evaluate, queries)
    assert np.isfinite(values["rmse"].value)


@pytest.mark.parametrize("adapt", ["decision", "all"])
def test_vectorised_inner_loop(benchmark, train: MetaTrain, tasks: TaskBatch, adapt: str) -> None:  # type: ignore[no-untyped-def]
    learner = make_learner("maml", {"adapt": adapt})
    learner.setup(train, rng=Seeds(0), device=torch.device("cpu"))  # type: ignore[attr-defined]
    net = learner.model  # type: ignore[attr-defined]
    start = {k: v.detach() for k, v in net.group(adapt).items()}

    def inner_loop() -> torch.Tensor:
        with torch.no_grad():
            return adapted_predictions(
                net, tasks, lr=0.1, steps=3, adapt=adapt, first_order=True, params=start
            )

    pred = benchmark(inner_loop)
    assert pred.shape == tasks.query_items.shape
