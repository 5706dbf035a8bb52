"""How every learner uses a task's support set, seen from outside: padding changes nothing, and
more support ratings lower the error where the data says they must."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate
from bench.protocol import Split, make_protocol
from bench.protocol.episodes import (
    MetaTrain,
    TaskBatch,
    batch_from_rows,
    build_tasks,
    make_meta_train,
)
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import LEARNERS, make_learner
from bench.seeding import Seeds

from shared import QUICK, SMALL_NET, rmse_at

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def split(small_dataset: Dataset) -> Split:
    protocol = make_protocol("cold-random", {"support_sizes": [1, "all"], "query_size": 5})
    return protocol.split(small_dataset, 0)


@pytest.fixture(scope="module")
def train(small_dataset: Dataset, split: Split) -> MetaTrain:
    return make_meta_train(small_dataset, split)


def fitted(name: str, train: MetaTrain, overrides: dict[str, Any] | None) -> Learner:
    learner = make_learner(name, overrides)
    learner.fit(train, rng=Seeds(0), device=CPU)
    return learner


@pytest.fixture(scope="module")
def fitted_once() -> dict[str, Learner]:
    """Each learner fitted once for the padding tests of every scenario (the same seed and
    config fit the same model); each test predicts with its own copy."""
    return {}


def widened(batch: TaskBatch, extra_support: int, extra_query: int) -> TaskBatch:
    """The same tasks with more padding columns."""

    def pad(t: torch.Tensor, extra: int, fill: Any) -> torch.Tensor:
        return torch.cat([t, torch.full((t.shape[0], extra), fill, dtype=t.dtype)], 1)

    return TaskBatch(
        axis=batch.axis,
        entities=batch.entities,
        support_users=pad(batch.support_users, extra_support, 0),
        support_items=pad(batch.support_items, extra_support, 0),
        support_ratings=pad(batch.support_ratings, extra_support, 0.0),
        support_mask=pad(batch.support_mask, extra_support, False),
        query_users=pad(batch.query_users, extra_query, 0),
        query_items=pad(batch.query_items, extra_query, 0),
        query_mask=pad(batch.query_mask, extra_query, False),
    )


@pytest.mark.parametrize(
    "name", sorted(n for n in LEARNERS.names() if "built in" in LEARNERS.origin(n))
)
@pytest.mark.parametrize("scenario", ["user_cold", "user_item_cold", "warm"])
def test_a_padded_batch_predicts_what_each_unpadded_task_does(
    name: str,
    scenario: str,
    small_dataset: Dataset,
    split: Split,
    train: MetaTrain,
    fitted_once: dict[str, Learner],
) -> None:
    if name not in fitted_once:
        fitted_once[name] = fitted(name, train, QUICK.get(name))
    learner = copy.deepcopy(fitted_once[name])
    taskset = split.scenarios[scenario]
    n = min(len(taskset), 12)
    pools = [taskset.pools[t] for t in range(n)]
    # Supports of different lengths, the longest first and one empty, so most rows carry padding.
    supports = [
        pool[: max(len(pool) - 3 * t, 0)] if t != 3 else pool[:0] for t, pool in enumerate(pools)
    ]
    queries = [taskset.queries[t][: 5 - t % 3] for t in range(n)]
    entities = taskset.entities[:n]
    data = (small_dataset.user, small_dataset.item, small_dataset.rating, taskset.axis)
    batch = batch_from_rows(*data, entities, supports, queries, with_labels=False)
    assert (batch.support_mask.sum(1) < batch.support_mask.shape[1]).sum() >= n - 1

    with torch.no_grad():
        together = learner.predict(batch)
        wider = learner.predict(widened(batch, 4, 3))
    assert torch.allclose(wider[:, : together.shape[1]], together, rtol=1e-5, atol=1e-5)
    for t in range(n):
        alone = batch_from_rows(
            *data, entities[t : t + 1], [supports[t]], [queries[t]], with_labels=False
        )
        with torch.no_grad():
            single = learner.predict(alone)[0]
        width = len(queries[t])
        assert torch.allclose(together[t, :width], single, rtol=1e-5, atol=1e-5), (name, t)


def rmse_by_k(learner: Learner, dataset: Dataset, split: Split, scenario: str) -> dict[Any, float]:
    taskset = split.scenarios[scenario]
    return {k: rmse_at(learner, dataset, taskset, k) for k in split.config.support_sizes}


@pytest.fixture(scope="module")
def rich() -> Dataset:
    """Users with many ratings and a strong personal taste: more support must help."""
    config = SyntheticConfig(
        n_users=400,
        n_items=200,
        mean_ratings_per_user=70,
        user_bias_std=0.7,
        feature_share=0.3,
        seed=3,
    )
    return generate(config)


BASELINES: list[tuple[str, dict[str, Any] | None]] = [
    ("item-mean", None),
    ("mf", {"rank": 8, "iterations": 6}),
    ("mf", {"rank": 8, "iterations": 6, "use_features": False}),
]
NETWORKS: list[tuple[str, dict[str, Any] | None]] = [
    ("maml", {**SMALL_NET, "meta_steps": 150}),
    ("fine-tune", {**SMALL_NET, "epochs": 3}),
]
# The baselines on both task axes; the slower network learners on the user axis.
K_SHOT_CASES = [(*case, axis) for case in BASELINES for axis in ("user", "item")]
K_SHOT_CASES += [(*case, "user") for case in NETWORKS]


@pytest.mark.parametrize(("name", "overrides", "axis"), K_SHOT_CASES)
def test_error_falls_as_the_support_of_new_entities_grows(
    name: str, overrides: dict[str, Any] | None, axis: str, rich: Dataset
) -> None:
    params = {"support_sizes": [1, 20, "all"], "query_size": 5, "task_axis": axis}
    split = make_protocol("cold-random", params).split(rich, 0)
    learner = fitted(name, make_meta_train(rich, split), overrides)
    scenario = "user_cold" if axis == "user" else "item_cold"
    assert len(split.scenarios[scenario]) >= 30
    rmse = rmse_by_k(learner, rich, split, scenario)
    assert rmse[20] < rmse[1] - 0.01, rmse
    assert rmse["all"] < rmse[1] - 0.01, rmse


def test_mf_feature_prior_helps_new_users_without_support(rich: Dataset) -> None:
    params = {"support_sizes": [0, 20], "query_size": 5}
    split = make_protocol("cold-random", params).split(rich, 0)
    train = make_meta_train(rich, split)
    with_prior = rmse_by_k(fitted("mf", train, {"rank": 8}), rich, split, "user_cold")
    without = rmse_by_k(
        fitted("mf", train, {"rank": 8, "use_features": False}), rich, split, "user_cold"
    )
    # Features explain most of a synthetic user's taste: with no support they must help a lot.
    assert with_prior[0] < without[0] - 0.03, (with_prior, without)
    # With a large support the prior matters less.
    assert without[0] - with_prior[0] > without[20] - with_prior[20], (with_prior, without)


def test_known_users_predictions_do_not_depend_on_their_support(
    small_dataset: Dataset, split: Split, train: MetaTrain
) -> None:
    """A trained user is not folded in again: warm predictions are the same for every k."""
    mf = fitted("mf", train, QUICK["mf"])
    taskset = split.scenarios["warm"]
    with torch.no_grad():
        one = mf.predict(build_tasks(small_dataset, taskset, 1).without_labels())
        every = mf.predict(build_tasks(small_dataset, taskset, "all").without_labels())
    assert torch.equal(one, every)
