"""Invariants of every split, asserted for every protocol, task axis, scenario and support size
(``all`` included): a task's support and query never share a rating, queries never reach training,
and the labels of the query never reach a learner's ``predict``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.engine.runner import run_suite
from bench.engine.suite import suite_from_dict
from bench.protocol import SCENARIOS, make_protocol
from bench.protocol.episodes import TaskBatch, make_meta_train
from bench.protocol.learner_registry import LEARNERS
from bench.results.store import ResultStore
from learners.baselines import BiasBaseline

from shared import check_batches, check_taskset, pairs

SIZES: list[Any] = [0, 1, 4, "all"]
CASES = [
    ("cold-random", "user", {}),
    ("cold-random", "item", {}),
    ("cold-random", "user", {"max_tasks": 7, "min_ratings": 40, "max_ratings": 120}),
    ("temporal", "user", {}),
    ("temporal", "item", {}),
    ("melu", "user", {"support_sizes": SIZES, "min_ratings": 20}),
    ("melu", "item", {"support_sizes": SIZES, "min_ratings": 20, "max_ratings": None}),
]


def with_folds(dataset: Dataset) -> Dataset:
    """The dataset with three predefined folds: a random partition of its ratings."""
    part = np.random.default_rng(5).integers(0, 3, size=dataset.n_ratings)
    rows = np.arange(dataset.n_ratings)
    folds = {f"f{i}": {"train": rows[part != i], "test": rows[part == i]} for i in range(3)}
    return replace(dataset, extras={"folds": folds, "fold_names": list(folds)}, content_hash="")


@pytest.mark.parametrize(("name", "axis", "params"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_support_and_query_never_share_a_rating(
    name: str, axis: str, params: dict[str, Any], seed: int, small_dataset: Dataset
) -> None:
    overrides = {"support_sizes": SIZES, "query_size": 5, "task_axis": axis, **params}
    split = make_protocol(name, overrides).split(small_dataset, seed)
    assert set(split.scenarios) == set(SCENARIOS)
    for scenario in SCENARIOS:
        taskset = split.scenarios[scenario]
        assert len(taskset) > 0, scenario
        check_taskset(small_dataset, split, taskset, SIZES)
        check_batches(small_dataset, taskset, SIZES)
        query_size = split.config.query_size
        assert all(len(q) == query_size for q in taskset.queries), scenario
    check_taskset(small_dataset, split, split.validation, SIZES)


@pytest.mark.parametrize("axis", ["user", "item"])
@pytest.mark.parametrize("seed", [0, 2])
def test_predefined_folds_keep_support_and_query_apart(
    axis: str, seed: int, small_dataset: Dataset
) -> None:
    dataset = with_folds(small_dataset)
    split = make_protocol("predefined", {"task_axis": axis}).split(dataset, seed)
    warm = split.scenarios["warm"]
    assert len(warm) > 0 and set(split.scenarios) == {"warm"}
    check_taskset(dataset, split, warm, ["all", 0, 3])
    check_batches(dataset, warm, ["all", 3])
    fold = dataset.extras["folds"][f"f{seed}"]
    assert np.array_equal(np.sort(np.concatenate(warm.queries)), np.sort(fold["test"]))
    assert np.array_equal(np.sort(split.train), np.sort(fold["train"]))


def test_training_holds_no_query_of_any_scenario(small_dataset: Dataset) -> None:
    for name in ("cold-random", "temporal", "melu"):
        split = make_protocol(name, {"support_sizes": SIZES, "min_ratings": 0}).split(
            small_dataset, 0
        )
        meta = make_meta_train(small_dataset, split)
        train_pairs = set(zip(meta.user.tolist(), meta.item.tolist(), strict=True))
        for taskset in split.scenarios.values():
            for query in taskset.queries:
                assert not pairs(small_dataset, query) & train_pairs, name
        # New entities never appear in training, whatever the scenario.
        assert not split.new_users[meta.user].any() and not split.new_items[meta.item].any()


# Temporal protocol, both sides and every scenario ---------------------------------------------


def first_rating_time(entity: np.ndarray, timestamp: np.ndarray, count: int) -> np.ndarray:
    first = np.full(count, np.iinfo(np.int64).max)
    for e, t in zip(entity.tolist(), timestamp.tolist(), strict=True):
        first[e] = min(first[e], t)
    return first


@pytest.mark.parametrize("axis", ["user", "item"])
def test_temporal_split_makes_the_latest_users_and_items_new(
    axis: str, small_dataset: Dataset
) -> None:
    params = {"support_sizes": [1, 4, "all"], "query_size": 5, "task_axis": axis}
    params |= {"new_user_fraction": 0.25, "new_item_fraction": 0.3}
    split = make_protocol("temporal", params).split(small_dataset, 0)
    d = small_dataset
    for new, entity, count, fraction in (
        (split.new_users, d.user, d.n_users, 0.25),
        (split.new_items, d.item, d.n_items, 0.3),
    ):
        first = first_rating_time(entity, d.timestamp, count)
        assert new.sum() == round(fraction * count)
        assert first[new].min() >= first[~new].max()


@pytest.mark.parametrize("axis", ["user", "item"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_temporal_queries_follow_their_support_in_time(
    axis: str, scenario: str, small_dataset: Dataset
) -> None:
    params = {"support_sizes": [1, 4, "all"], "query_size": 5, "task_axis": axis}
    split = make_protocol("temporal", params).split(small_dataset, 1)
    taskset = split.scenarios[scenario]
    assert len(taskset) > 0
    time = small_dataset.timestamp
    for t in range(len(taskset)):
        pool, query = taskset.pools[t], taskset.queries[t]
        assert (np.diff(time[pool]) >= 0).all()  # the support grows forward in time
        assert (np.diff(time[query]) >= 0).all()
        assert time[pool].max() <= time[query].min()
        # The query is the task's latest ratings of the scenario's pool.
        later = np.concatenate([pool, query])
        assert np.sort(time[later])[-len(query) :].tolist() == sorted(time[query].tolist())


def test_temporal_and_random_orders_differ(small_dataset: Dataset) -> None:
    params = {"support_sizes": ["all"], "query_size": 5}
    temporal = make_protocol("temporal", params).split(small_dataset, 0)
    shuffled = make_protocol("temporal", {**params, "order": "random"}).split(small_dataset, 0)
    time = small_dataset.timestamp
    in_order = [
        bool(time[p].max() <= time[q].min())
        for p, q in zip(
            shuffled.scenarios["user_cold"].pools,
            shuffled.scenarios["user_cold"].queries,
            strict=True,
        )
    ]
    assert not all(in_order)  # a random order does not put the query last in time
    assert np.array_equal(temporal.new_users, shuffled.new_users)


# Query labels never reach predict -----------------------------------------------------------


class LabelSpy(BiasBaseline):
    """item-mean that records every batch it is asked to predict and every training view."""

    seen: ClassVar[list[TaskBatch]] = []
    trained_on: ClassVar[list[set[tuple[int, int]]]] = []

    def fit(self, train: Any, **kwargs: Any) -> None:
        type(self).trained_on.append(
            set(zip(train.user.tolist(), train.item.tolist(), strict=True))
        )
        if train.validation is not None:
            assert train.validation.query_ratings is not None  # validation tasks are for fitting
        super().fit(train, **kwargs)

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        type(self).seen.append(tasks)
        return super().predict(tasks)


if "test-label-spy" not in LEARNERS:
    LEARNERS.register("test-label-spy", LabelSpy)


def test_query_labels_never_reach_predict(tmp_path: Any, small_dataset: Dataset) -> None:
    LabelSpy.seen.clear()
    LabelSpy.trained_on.clear()
    suite = suite_from_dict(
        {
            "name": "spy",
            "learners": ["test-label-spy"],
            "seeds": 1,
            "protocol": {"name": "cold-random", "support_sizes": [2, "all"], "query_size": 4},
            "dataset": {"synthetic": {"n_users": 150, "n_items": 90}},
        },
        "test",
    )
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite, store, progress=False)
        rows = store.metric_rows(outcome.cell_keys)
    assert outcome.exit_code == 0 and rows
    assert len(LabelSpy.seen) >= 2 * len(SCENARIOS)
    (trained,) = LabelSpy.trained_on
    for batch in LabelSpy.seen:
        assert batch.query_ratings is None
        s, q = batch.support_mask, batch.query_mask
        for t in range(batch.n_tasks):
            query_pairs = set(
                zip(
                    batch.query_users[t][q[t]].tolist(),
                    batch.query_items[t][q[t]].tolist(),
                    strict=True,
                )
            )
            support_pairs = set(
                zip(
                    batch.support_users[t][s[t]].tolist(),
                    batch.support_items[t][s[t]].tolist(),
                    strict=True,
                )
            )
            assert not query_pairs & support_pairs
            assert not query_pairs & trained
