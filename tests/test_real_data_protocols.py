"""Protocols and learners on MovieLens 100K: item-as-task, the temporal protocol on both sides and
MeLU's protocol, with the split invariants and the learners' behaviour checked, not only that rows
exist. The data is found through ``BENCH_DATA_DIR`` (never copied into the repository); without
it these tests are skipped with the reason (a failure in CI, see ``conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from bench.data.cards import load_dataset
from bench.data.dataset import Dataset
from bench.protocol import SCENARIOS, Split, make_protocol
from bench.protocol.episodes import make_meta_train
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds

from real_formats import real_data_dir
from shared import check_batches, check_taskset, rmse_at

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("parsed")))
        yield


@pytest.fixture(scope="module")
def ml100k() -> Dataset:
    return load_dataset("ml-100k", data_dir=real_data_dir("ml-100k"))


def rmse(learner: Learner, dataset: Dataset, split: Split, scenario: str, k: Any) -> float:
    return rmse_at(learner, dataset, split.scenarios[scenario], k)


def fitted(
    name: str, split: Split, dataset: Dataset, overrides: dict[str, Any] | None = None
) -> Learner:
    learner = make_learner(name, overrides)
    learner.fit(make_meta_train(dataset, split), rng=Seeds(0), device=torch.device("cpu"))
    return learner


@pytest.fixture(scope="module")
def item_split(ml100k: Dataset) -> Split:
    params = {"task_axis": "item", "support_sizes": [1, 10, "all"], "query_size": 5}
    return make_protocol("cold-random", params).split(ml100k, 0)


def test_item_tasks_on_ml100k_keep_the_roles_and_the_invariants(
    ml100k: Dataset, item_split: Split
) -> None:
    new_users, new_items = item_split.new_users, item_split.new_items
    for scenario, (task_new, pool_new) in {
        "warm": (False, False),
        "user_cold": (False, True),
        "item_cold": (True, False),
        "user_item_cold": (True, True),
    }.items():
        taskset = item_split.scenarios[scenario]
        assert taskset.axis == "item" and len(taskset) >= 20, scenario
        assert (new_items[taskset.entities] == task_new).all(), scenario
        for pool, query in zip(taskset.pools, taskset.queries, strict=True):
            raters = ml100k.user[np.concatenate([pool, query])]
            assert (new_users[raters] == pool_new).all(), scenario
        check_taskset(ml100k, item_split, taskset, [1, 10, "all"])
    check_batches(ml100k, item_split.scenarios["item_cold"], [1, "all"])


def test_item_tasks_on_ml100k_learn_from_their_support(ml100k: Dataset, item_split: Split) -> None:
    mf = fitted("mf", item_split, ml100k, {"rank": 8, "iterations": 6})
    bias = fitted("item-mean", item_split, ml100k)
    floor = fitted("global-mean", item_split, ml100k)
    for learner in (mf, bias):
        one, many = (
            rmse(learner, ml100k, item_split, "item_cold", 1),
            rmse(learner, ml100k, item_split, "item_cold", "all"),
        )
        assert many < one - 0.02, (type(learner).__name__, one, many)
        assert many < rmse(floor, ml100k, item_split, "item_cold", "all") - 0.02
    # A new item is folded in on its support; known items are not, so warm error ignores k.
    assert rmse(mf, ml100k, item_split, "warm", 1) == rmse(mf, ml100k, item_split, "warm", "all")


@pytest.mark.parametrize("axis", ["user", "item"])
def test_temporal_protocol_on_ml100k(ml100k: Dataset, axis: str) -> None:
    params = {"task_axis": axis, "support_sizes": [1, 5, "all"], "query_size": 5}
    params |= {"new_user_fraction": 0.2, "new_item_fraction": 0.2}
    split = make_protocol("temporal", params).split(ml100k, 0)
    time = ml100k.timestamp
    for new, entity, count in (
        (split.new_users, ml100k.user, ml100k.n_users),
        (split.new_items, ml100k.item, ml100k.n_items),
    ):
        first = np.full(count, np.iinfo(np.int64).max)
        np.minimum.at(first, entity, time)
        assert new.sum() == round(0.2 * count)
        assert first[new].min() >= first[~new].max()
    for scenario in SCENARIOS:
        taskset = split.scenarios[scenario]
        assert len(taskset) > 0, scenario
        check_taskset(ml100k, split, taskset, [1, 5, "all"])
        for pool, query in zip(taskset.pools, taskset.queries, strict=True):
            assert time[pool].max() <= time[query].min(), scenario
            assert (np.diff(time[pool]) >= 0).all()


def test_melu_protocol_on_ml100k_keeps_support_and_query_apart(ml100k: Dataset) -> None:
    split = make_protocol("melu").split(ml100k, 1)
    assert split.config.support_sizes == ("all",)
    for scenario in SCENARIOS:
        taskset = split.scenarios[scenario]
        assert len(taskset) > 0, scenario
        check_taskset(ml100k, split, taskset, ["all"])
        check_batches(ml100k, taskset, ["all"])
        for pool, query in zip(taskset.pools, taskset.queries, strict=True):
            # Ten query ratings, and every other rating of the scenario's pool as support.
            assert len(query) == 10 and len(pool) >= 1


def test_recbole_metarec_split_on_ml100k_has_its_counts(ml100k: Dataset) -> None:
    # RecBole-MetaRec on ML-100K: 582 users with 13-100 ratings, cut 466 / 58 / 58.
    activity = np.bincount(ml100k.user, minlength=ml100k.n_users)
    protocol = make_protocol("recbole-metarec")
    assert protocol.scenarios == ("user_cold",)
    for seed in (0, 1):
        split = protocol.split(ml100k, seed)
        test, validation = split.scenarios["user_cold"], split.validation
        train_users = np.unique(ml100k.user[split.train])
        assert split.summary["users_in_activity_range"] == 582
        assert (len(train_users), len(validation), len(test)) == (466, 58, 58)
        everyone = np.concatenate([train_users, validation.entities, test.entities])
        assert len(np.unique(everyone)) == 582
        assert ((activity[everyone] >= 13) & (activity[everyone] <= 100)).all()
        # Training holds every rating of the training users and nothing else.
        assert len(split.train) == int(activity[train_users].sum())
        for taskset in (test, validation):
            for t, user in enumerate(taskset.entities):
                pool, query = taskset.pools[t], taskset.queries[t]
                assert len(query) == 10
                rows = np.concatenate([pool, query])
                assert len(np.unique(rows)) == activity[user]
                assert (ml100k.user[rows] == user).all()
        relevant = split.config.relevance_rule.relevant(
            np.stack([ml100k.rating[q] for q in test.queries]),
            np.ones((len(test), 10), dtype=bool),
            4.0,
        )
        assert (relevant.sum(axis=1) == 5).all()
    other = protocol.split(ml100k, 2).scenarios["user_cold"].entities
    assert set(other) != set(test.entities)  # the seed draws the users
