"""Episodes: the padded task tensors, the training view, and the episode sampler, checked against
the ratings they are built from."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.protocol import make_protocol
from bench.protocol.episodes import (
    EpisodeSampler,
    TaskBatch,
    batch_from_rows,
    build_tasks,
    make_meta_train,
    predict_in_chunks,
)

# Six ratings of three users; rows are indices into these arrays.
USER = np.array([0, 0, 0, 1, 2, 2])
ITEM = np.array([4, 5, 6, 4, 5, 7])
RATING = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.5], dtype=np.float32)


def test_rows_are_gathered_and_padded() -> None:
    batch = batch_from_rows(
        USER,
        ITEM,
        RATING,
        "user",
        np.array([0, 2]),
        [np.array([2, 0]), np.array([], dtype=int)],
        [np.array([1]), np.array([4, 5])],
    )
    assert batch.axis == "user" and batch.n_tasks == 2
    assert batch.entities.tolist() == [0, 2]
    assert batch.support_users.tolist() == [[0, 0], [0, 0]]
    assert batch.support_items.tolist() == [[6, 4], [0, 0]]
    assert batch.support_ratings.tolist() == [[3.0, 1.0], [0.0, 0.0]]
    assert batch.support_mask.tolist() == [[True, True], [False, False]]
    assert batch.query_users.tolist() == [[0, 0], [2, 2]]
    assert batch.query_items.tolist() == [[5, 0], [5, 7]]
    assert batch.query_mask.tolist() == [[True, False], [True, True]]
    assert batch.query_ratings is not None
    assert batch.query_ratings.tolist() == [[2.0, 0.0], [5.0, 0.5]]
    assert batch.support_users.dtype == torch.long and batch.support_ratings.dtype == torch.float32
    assert batch.support_mask.dtype == torch.bool and batch.entities.dtype == torch.long
    unlabelled = batch_from_rows(
        USER,
        ITEM,
        RATING,
        "item",
        np.array([4]),
        [np.array([0])],
        [np.array([3])],
        with_labels=False,
    )
    assert unlabelled.query_ratings is None and unlabelled.axis == "item"


def test_rows_given_as_a_padded_array() -> None:
    support = np.array([[0, -1], [3, -1]])
    query = np.array([[1, 2], [-1, -1]])
    batch = batch_from_rows(USER, ITEM, RATING, "user", np.array([0, 1]), support, query)
    assert batch.support_items.tolist() == [[4, 0], [4, 0]]
    assert batch.query_mask.tolist() == [[True, True], [False, False]]
    assert batch.query_ratings is not None and batch.query_ratings.tolist() == [
        [2.0, 3.0],
        [0.0, 0.0],
    ]


def test_an_empty_batch_has_the_right_shapes() -> None:
    batch = batch_from_rows(USER, ITEM, RATING, "user", [], [], [])  # type: ignore[arg-type]
    assert batch.entities.dtype == torch.long
    assert batch.n_tasks == 0
    assert tuple(batch.query_items.shape) == (0, 0) and tuple(batch.support_mask.shape) == (0, 0)
    assert batch.query_ratings is not None and batch.query_ratings.dtype == torch.float32


def test_padding_needs_no_second_rating() -> None:
    one = batch_from_rows(
        USER[:1],
        ITEM[:1],
        RATING[:1],
        "user",
        np.array([0, 0]),
        [np.array([0]), np.array([], dtype=int)],
        [np.array([0]), np.array([0])],
    )
    assert one.support_mask.tolist() == [[True], [False]]
    assert one.support_items.tolist() == [[4], [0]]


def test_select_move_and_drop_labels() -> None:
    batch = batch_from_rows(
        USER,
        ITEM,
        RATING,
        "user",
        np.array([0, 1, 2]),
        [np.array([0]), np.array([3]), np.array([4])],
        [np.array([1, 2]), np.array([], dtype=int), np.array([5])],
    )
    picked = batch.select(torch.tensor([2, 0]))
    assert picked.entities.tolist() == [2, 0] and picked.axis == "user"
    assert picked.query_items.tolist() == [[7, 0], [5, 6]]
    assert picked.query_ratings is not None and picked.query_ratings.tolist() == [
        [0.5, 0.0],
        [2.0, 3.0],
    ]
    sliced = batch.select(slice(1, 3))
    assert sliced.entities.tolist() == [1, 2] and sliced.support_items.tolist() == [[4], [5]]
    moved = batch.to("cpu")
    assert isinstance(moved, TaskBatch) and moved.axis == "user"
    assert torch.equal(moved.query_items, batch.query_items)
    assert moved.query_ratings is not None
    # The meta device holds shapes without data: every tensor moves, the labels included.
    on_meta = batch.to("meta")
    for name in ("entities", "support_items", "support_mask", "query_users", "query_ratings"):
        assert getattr(on_meta, name).device.type == "meta", name
    assert on_meta.axis == "user" and on_meta.query_items.shape == batch.query_items.shape
    bare = batch.without_labels()
    assert bare.query_ratings is None and torch.equal(bare.support_ratings, batch.support_ratings)
    assert batch.query_ratings is not None  # the original keeps its labels
    assert batch.without_labels().to("cpu").query_ratings is None


def test_prediction_in_chunks_equals_one_call() -> None:
    rows = [np.array([i]) for i in range(6)]
    batch = batch_from_rows(USER, ITEM, RATING, "user", USER, rows, rows, with_labels=False)
    calls: list[int] = []

    def predict(tasks: TaskBatch) -> torch.Tensor:
        calls.append(tasks.n_tasks)
        return tasks.query_items.float() * 10 + tasks.entities[:, None]

    whole = predict(batch)
    calls.clear()
    assert torch.equal(predict_in_chunks(predict, batch, 4), whole)
    assert calls == [4, 2]
    calls.clear()
    assert torch.equal(predict_in_chunks(predict, batch, 6), whole) and calls == [6]
    one = batch.select(slice(2, 3))
    assert torch.equal(predict_in_chunks(predict, one, 4), predict(one))
    calls.clear()
    empty = batch.select(slice(0, 0))
    out = predict_in_chunks(predict, empty, 4)
    assert tuple(out.shape) == (0, 1) and out.dtype == torch.float32
    assert calls == []  # nothing to predict: the learner is not asked
    on_meta = predict_in_chunks(predict, empty.to("meta"), 4)
    assert on_meta.device.type == "meta"


def test_build_tasks_follows_the_task_set(small_dataset: Dataset) -> None:
    split = make_protocol("cold-random", {"support_sizes": [2, "all"], "query_size": 3}).split(
        small_dataset, 0
    )
    taskset = split.scenarios["user_cold"]
    for k in (2, "all"):
        batch = build_tasks(small_dataset, taskset, k)
        assert batch.entities.tolist() == taskset.entities.tolist()
        for t in range(len(taskset)):
            rows = taskset.support(t, k)
            s = batch.support_mask[t]
            assert batch.support_items[t][s].tolist() == small_dataset.item[rows].tolist()
            assert batch.support_ratings[t][s].tolist() == small_dataset.rating[rows].tolist()
            assert (
                batch.query_items[t][batch.query_mask[t]].tolist()
                == small_dataset.item[taskset.queries[t]].tolist()
            )


# The training view -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "validation_k"), [([1, 4, "all"], "all"), ([1, 4, 2], 4), (["all"], "all")]
)
def test_meta_train_holds_training_ratings_and_validation_tasks(
    small_dataset: Dataset, sizes: list[Any], validation_k: Any
) -> None:
    split = make_protocol(
        "cold-random", {"support_sizes": sizes, "query_size": 3, "validation_fraction": 0.2}
    ).split(small_dataset, 0)
    meta = make_meta_train(small_dataset, split)
    d = small_dataset
    assert meta.axis == "user" and (meta.n_users, meta.n_items) == (d.n_users, d.n_items)
    assert len(meta.sampler.counts) == d.n_users
    for name in ("user", "item", "rating", "timestamp"):
        assert np.array_equal(getattr(meta, name), getattr(d, name)[split.train]), name
    assert meta.user_features is d.user_features and meta.item_features is d.item_features
    assert meta.rating_scale == d.rating_scale and meta.like_threshold == d.like_threshold
    assert meta.rating_levels.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert meta.support_sizes == split.config.support_sizes and meta.query_size == 3
    assert meta.truth is d.truth
    assert (
        meta.known_users.tolist()
        == (np.bincount(d.user[split.train], minlength=d.n_users) > 0).tolist()
    )
    assert (
        meta.known_items.tolist()
        == (np.bincount(d.item[split.train], minlength=d.n_items) > 0).tolist()
    )
    assert meta.validation is not None
    expected = build_tasks(d, split.validation, validation_k)
    assert meta.validation.entities.tolist() == split.validation.entities.tolist()
    assert torch.equal(meta.validation.support_mask, expected.support_mask)
    assert meta.validation.query_ratings is not None
    assert meta.sampler.axis == "user"
    # The sampler draws training tasks from exactly the training ratings.
    for name in ("user", "item", "rating"):
        assert np.array_equal(getattr(meta.sampler, name), getattr(meta, name)), name


def test_meta_train_names_feature_columns_only_where_the_dataset_names_each(
    small_dataset: Dataset,
) -> None:
    named = replace(
        small_dataset,
        user_features=np.zeros((small_dataset.n_users, 2), dtype=np.float32),
        item_features=np.zeros((small_dataset.n_items, 3), dtype=np.float32),
        extras={
            "user_feature_names": np.array([7, "age<25"], dtype=object),
            "item_feature_names": ["genre=Drama", "genre=Crime"],
        },
    )
    split = make_protocol("cold-random", {"query_size": 3}).split(named, 0)
    meta = make_meta_train(named, split)
    assert meta.user_feature_names == ("7", "age<25")  # one name per column, as strings
    assert meta.item_feature_names is None  # two names for three columns: not trusted
    swapped = replace(
        named, extras={"item_feature_names": ["a", "b", "c"], "user_feature_names": ["x"]}
    )
    meta = make_meta_train(swapped, split)
    assert meta.item_feature_names == ("a", "b", "c") and meta.user_feature_names is None
    without = replace(named, user_features=None, item_features=None)
    meta = make_meta_train(without, split)
    assert meta.user_feature_names is None and meta.item_feature_names is None


def test_meta_train_without_validation_tasks(small_dataset: Dataset) -> None:
    split = make_protocol("cold-random", {"validation_fraction": 0.0, "task_axis": "item"}).split(
        small_dataset, 0
    )
    meta = make_meta_train(small_dataset, split)
    assert meta.validation is None and meta.axis == "item" and meta.sampler.axis == "item"
    assert len(meta.sampler.counts) == small_dataset.n_items


# The episode sampler ---------------------------------------------------------------------------


def sampler_for(dataset: Dataset, axis: str) -> EpisodeSampler:
    n = dataset.n_users if axis == "user" else dataset.n_items
    return EpisodeSampler(dataset.user, dataset.item, dataset.rating, axis, n)


@pytest.mark.parametrize("axis", ["user", "item"])
def test_sampled_tasks_are_disjoint_ratings_of_their_entity(
    small_dataset: Dataset, axis: str
) -> None:
    d = small_dataset
    sampler = sampler_for(d, axis)
    task_of = d.user if axis == "user" else d.item
    counts = np.bincount(task_of, minlength=len(sampler.counts))
    assert sampler.counts.tolist() == counts.tolist()
    batch = sampler.sample(np.random.default_rng(0), 40, 7, 4)
    assert batch.n_tasks == 40 and batch.axis == axis
    assert (counts[batch.entities.numpy()] >= 11).all()
    assert batch.support_mask.sum(1).tolist() == [7] * 40
    assert batch.query_mask.sum(1).tolist() == [4] * 40
    by_pair = {
        (u, i): r
        for u, i, r in zip(d.user.tolist(), d.item.tolist(), d.rating.tolist(), strict=True)
    }
    for t in range(40):
        s, q = batch.support_mask[t], batch.query_mask[t]
        support = list(
            zip(batch.support_users[t][s].tolist(), batch.support_items[t][s].tolist(), strict=True)
        )
        query = list(
            zip(batch.query_users[t][q].tolist(), batch.query_items[t][q].tolist(), strict=True)
        )
        assert len(set(support) | set(query)) == 11  # no rating twice
        own = 0 if axis == "user" else 1
        assert {p[own] for p in support + query} == {int(batch.entities[t])}
        assert batch.support_ratings[t][s].tolist() == [by_pair[p] for p in support]
        assert batch.query_ratings is not None
        assert batch.query_ratings[t][q].tolist() == [by_pair[p] for p in query]


def test_sampling_is_seeded_and_shuffles_each_entity(small_dataset: Dataset) -> None:
    sampler = sampler_for(small_dataset, "user")
    a = sampler.sample(np.random.default_rng(5), 30, 3, 2)
    b = sampler.sample(np.random.default_rng(5), 30, 3, 2)
    c = sampler.sample(np.random.default_rng(6), 30, 3, 2)
    assert torch.equal(a.support_items, b.support_items) and torch.equal(a.entities, b.entities)
    assert not torch.equal(a.entities, c.entities)
    # The same user drawn again gets another subset of its ratings.
    user = int(np.argmin(sampler.counts))
    same = np.full(1000, user)
    d = sampler.sample(np.random.default_rng(1), 1000, 3, 2, entities=same)
    subsets = {tuple(sorted(row)) for row in d.support_items.tolist()}
    assert len(subsets) > 900
    # Every rating of the user is picked for the support about equally often.
    picked = Counter(d.support_items.flatten().tolist())
    assert set(picked) == set(small_dataset.item[small_dataset.user == user].tolist())
    expected = 3000 / len(picked)
    assert max(picked.values()) < 1.5 * expected and min(picked.values()) > expected / 1.5


def test_sampling_given_entities_with_few_ratings() -> None:
    user = np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 2])
    item = np.arange(10)
    rating = np.arange(10, dtype=np.float32)
    sampler = EpisodeSampler(user, item, rating, "user", 4)
    batch = sampler.sample(np.random.default_rng(0), 4, 5, 2, entities=np.array([0, 1, 2, 3]))
    # 3 ratings: 1 support, 2 query; 1 rating: only a query; 6 ratings: 4 support, 2 query; none.
    assert batch.support_mask.sum(1).tolist() == [1, 0, 4, 0]
    assert batch.query_mask.sum(1).tolist() == [2, 1, 2, 0]
    assert batch.support_mask.shape[1] == 5 and batch.query_mask.shape[1] == 2
    assert set(batch.query_items[1][batch.query_mask[1]].tolist()) == {3}
    rows = batch.support_items[2][batch.support_mask[2]].tolist() + batch.query_items[2].tolist()
    assert len(set(rows)) == 6 and set(rows) <= set(range(4, 10))
    assert sampler.entities_with(0).tolist() == [0, 1, 2]  # entity 3 has no rating at all
    assert sampler.entities_with(3).tolist() == [0, 2]
    assert sampler.entities_with(7).tolist() == []
    # Every entity has fewer ratings than the query size: the query takes what there is.
    short = sampler.sample(np.random.default_rng(0), 1, 2, 2, entities=np.array([1]))
    assert short.query_mask.tolist() == [[True, False]] and short.query_items.tolist() == [[3, 0]]
    assert short.support_mask.sum().item() == 0


def test_sampling_draws_from_qualifying_entities_only() -> None:
    user = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    sampler = EpisodeSampler(user, np.arange(11), np.ones(11, dtype=np.float32), "user", 3)
    batch = sampler.sample(np.random.default_rng(0), 50, 2, 2)
    assert set(batch.entities.tolist()) == {0, 2}  # user 1 has too few ratings
    few = sampler.sample(np.random.default_rng(0), 2, 3, 2)
    assert few.entities.tolist() == [2, 2]  # only user 2 has five ratings
    with pytest.raises(ValueError, match=r"no training user has 7 ratings"):
        sampler.sample(np.random.default_rng(0), 3, 5, 2)
    distinct = sampler.sample(np.random.default_rng(3), 3, 1, 1)
    assert sorted(distinct.entities.tolist()) == [0, 1, 2]  # enough entities: no repeats
