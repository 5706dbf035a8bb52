"""Split invariants: who is where, what training sees, k-shot sizes, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.dataset import Dataset
from bench.errors import ConfigError
from bench.protocol import SCENARIOS, Split, make_protocol
from bench.protocol.episodes import build_tasks, make_meta_train

PARAMS = {"support_sizes": [1, 3, 5], "query_size": 5, "new_item_fraction": 0.3}
EXPECTED_NEWNESS = {
    "warm": (False, False),
    "user_cold": (True, False),
    "item_cold": (False, True),
    "user_item_cold": (True, True),
}


def split_of(dataset: Dataset, seed: int = 0, **params: object) -> Split:
    return make_protocol("cold-random", {**PARAMS, **params}).split(dataset, seed)


def all_queries(split: Split) -> np.ndarray:
    return np.concatenate([q for ts in split.scenarios.values() for q in ts.queries])


def test_training_sees_only_existing_users_and_items(small_dataset: Dataset) -> None:
    split = split_of(small_dataset)
    train_users = small_dataset.user[split.train]
    train_items = small_dataset.item[split.train]
    assert not split.new_users[train_users].any()
    assert not split.new_items[train_items].any()
    assert split.new_users.any() and split.new_items.any()


def test_query_labels_never_reach_training(small_dataset: Dataset) -> None:
    split = split_of(small_dataset)
    assert len(np.intersect1d(split.train, all_queries(split))) == 0
    meta = make_meta_train(small_dataset, split)
    train_pairs = set(zip(meta.user.tolist(), meta.item.tolist(), strict=True))
    query_rows = all_queries(split)
    query_pairs = set(
        zip(
            small_dataset.user[query_rows].tolist(),
            small_dataset.item[query_rows].tolist(),
            strict=True,
        )
    )
    assert not train_pairs & query_pairs


def test_validation_entities_are_kept_out_of_training_and_scenarios(small_dataset: Dataset) -> None:
    split = split_of(small_dataset, validation_fraction=0.2)
    val = set(split.validation.entities.tolist())
    assert val
    assert not val & set(small_dataset.user[split.train].tolist())
    for taskset in split.scenarios.values():
        assert not val & set(taskset.entities.tolist())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_pools_match_their_definition(small_dataset: Dataset, scenario: str) -> None:
    split = split_of(small_dataset)
    user_new, item_new = EXPECTED_NEWNESS[scenario]
    taskset = split.scenarios[scenario]
    assert len(taskset) > 0
    for entity, pool, query in zip(taskset.entities, taskset.pools, taskset.queries, strict=True):
        rows = np.concatenate([pool, query])
        assert (small_dataset.user[rows] == entity).all()
        assert split.new_users[entity] == user_new
        assert (split.new_items[small_dataset.item[rows]] == item_new).all()


def test_scenarios_users_and_items_are_disjoint_as_required(small_dataset: Dataset) -> None:
    split = split_of(small_dataset)
    cold_users = set(split.scenarios["user_cold"].entities.tolist())
    warm_users = set(split.scenarios["warm"].entities.tolist())
    assert not cold_users & warm_users
    train_items = set(small_dataset.item[split.train].tolist())
    for scenario in ("item_cold", "user_item_cold"):
        rows = all_queries(
            Split(
                split.config,
                split.train,
                split.new_users,
                split.new_items,
                split.validation,
                {scenario: split.scenarios[scenario]},
            )
        )
        assert not set(small_dataset.item[rows].tolist()) & train_items


def test_k_shot_sizes_are_honoured_and_nested(small_dataset: Dataset) -> None:
    split = split_of(small_dataset)
    for scenario, taskset in split.scenarios.items():
        previous = None
        for k in (1, 3, 5):
            batch = build_tasks(small_dataset, taskset, k)
            assert (batch.support_mask.sum(1) == k).all(), scenario
            assert (batch.query_mask.sum(1) == 5).all(), scenario
            if previous is not None:
                width = previous.support_items.shape[1]
                assert (batch.support_items[:, :width] == previous.support_items).all()
            previous = batch


def test_support_all_takes_the_whole_pool(small_dataset: Dataset) -> None:
    split = split_of(small_dataset, support_sizes=["all", 2])
    taskset = split.scenarios["user_cold"]
    batch = build_tasks(small_dataset, taskset, "all")
    assert batch.support_mask.sum(1).tolist() == [len(p) for p in taskset.pools]


def test_same_seed_same_split_other_seed_other_split(small_dataset: Dataset) -> None:
    a, b, c = split_of(small_dataset, 3), split_of(small_dataset, 3), split_of(small_dataset, 4)
    assert np.array_equal(a.train, b.train)
    assert np.array_equal(a.new_users, b.new_users)
    for scenario in SCENARIOS:
        assert all(
            np.array_equal(x, y)
            for x, y in zip(a.scenarios[scenario].pools, b.scenarios[scenario].pools, strict=True)
        )
    assert not np.array_equal(a.new_users, c.new_users)


def test_temporal_split_makes_the_latest_entities_new(small_dataset: Dataset) -> None:
    split = make_protocol("temporal", PARAMS).split(small_dataset, 0)
    first = np.full(small_dataset.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first, small_dataset.user, small_dataset.timestamp)
    assert first[split.new_users].min() >= first[~split.new_users].max()
    # Within a task, time order puts the query after the support.
    taskset = split.scenarios["user_cold"]
    for pool, query in zip(taskset.pools, taskset.queries, strict=True):
        assert small_dataset.timestamp[pool].max() <= small_dataset.timestamp[query].min()


def test_attribute_split_uses_the_cutoff(small_dataset: Dataset) -> None:
    split = split_of(small_dataset, item_split="attribute:release_year", item_cutoff=2010.0)
    years = small_dataset.item_attributes["release_year"]
    assert np.array_equal(split.new_items, years >= 2010)


def test_activity_filter_limits_task_entities(small_dataset: Dataset) -> None:
    counts = np.bincount(small_dataset.user, minlength=small_dataset.n_users)
    split = split_of(small_dataset, min_ratings=50, max_ratings=90)
    for taskset in split.scenarios.values():
        assert ((counts[taskset.entities] >= 50) & (counts[taskset.entities] <= 90)).all()
    assert split.summary["users_outside_activity_filter"] == int(
        ((counts < 50) | (counts > 90)).sum()
    )


def test_item_axis_mirrors_the_roles(small_dataset: Dataset) -> None:
    split = split_of(small_dataset, task_axis="item")
    taskset = split.scenarios["item_cold"]
    assert len(taskset) > 0
    for entity, pool in zip(taskset.entities, taskset.pools, strict=True):
        assert split.new_items[entity]
        assert (small_dataset.item[pool] == entity).all()
        assert not split.new_users[small_dataset.user[pool]].any()


def test_ineligible_tasks_are_counted(small_dataset: Dataset) -> None:
    split = split_of(small_dataset, support_sizes=[40], query_size=10)
    for scenario, counts in split.summary["scenarios"].items():
        assert counts["tasks"] == len(split.scenarios[scenario])
    assert sum(c["ineligible"] for c in split.summary["scenarios"].values()) > 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"task_axis": "users"}, "task_axis"),
        ({"new_user_fraction": 1.5}, "new_user_fraction"),
        ({"support_sizes": [-1]}, "support_sizes"),
        ({"user_split": "sideways"}, "user_split"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_protocol_parameters_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make_protocol("cold-random", params)
