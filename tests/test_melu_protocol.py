"""The ``melu`` protocol trains on all warm data; ``melu-paper`` keeps MeLU's own construction.

Also: validation entities are always scored, and each split states its training sizes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate
from bench.protocol import Split, make_protocol

# Users from 5 to 150 ratings, so the 13-100 activity filter leaves some out on both sides.
ACTIVITY = SyntheticConfig(
    n_users=260,
    n_items=180,
    min_ratings_per_user=5,
    mean_ratings_per_user=45,
    max_ratings_per_user=150,
    seed=5,
)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    data = generate(ACTIVITY, name="activity")
    # The card's [protocol.melu] table: items released from 2012 on are new.
    extras = {"protocol_defaults": {"melu": {"item_cutoff": 2012}}}
    return dataclasses.replace(data, extras=extras, content_hash="")


def melu_split(dataset: Dataset, name: str = "melu", seed: int = 0) -> Split:
    return make_protocol(name, {}).split(dataset, seed)


def activity(dataset: Dataset) -> np.ndarray:
    return np.bincount(dataset.user, minlength=dataset.n_users)


def test_the_filter_leaves_users_out_on_both_sides(dataset: Dataset) -> None:
    counts = activity(dataset)
    assert (counts < 13).any() and (counts > 100).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_training_holds_every_existing_users_ratings_but_validation_and_warm_queries(
    dataset: Dataset, seed: int
) -> None:
    split = melu_split(dataset, seed=seed)
    new_items = dataset.item_attributes["release_year"] >= 2012
    assert np.array_equal(split.new_items, new_items)  # the card's cut-off applies
    warm_queries = np.concatenate(split.scenarios["warm"].queries)
    expected = (
        ~split.new_users[dataset.user]
        & ~new_items[dataset.item]
        & ~np.isin(dataset.user, split.validation.entities)
    )
    expected[warm_queries] = False
    assert np.array_equal(np.sort(split.train), np.flatnonzero(expected))
    counts = activity(dataset)
    in_training = np.unique(dataset.user[split.train])
    assert ((counts[in_training] < 13) | (counts[in_training] > 100)).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_melu_paper_drops_exactly_the_filtered_users(dataset: Dataset, seed: int) -> None:
    ours, paper = melu_split(dataset, seed=seed), melu_split(dataset, "melu-paper", seed)
    counts = activity(dataset)
    filtered = (counts < 13) | (counts > 100)
    kept = ours.train[~filtered[dataset.user[ours.train]]]
    assert np.array_equal(np.sort(paper.train), np.sort(kept))
    assert len(kept) < len(ours.train)
    # Only training differs: the same new entities, validation users and tasks.
    assert np.array_equal(ours.new_users, paper.new_users)
    assert np.array_equal(ours.new_items, paper.new_items)
    assert np.array_equal(ours.validation.entities, paper.validation.entities)
    for scenario, tasks in ours.scenarios.items():
        assert np.array_equal(tasks.entities, paper.scenarios[scenario].entities)


def test_the_summary_counts_both_training_sets(dataset: Dataset) -> None:
    ours, paper = melu_split(dataset), melu_split(dataset, "melu-paper")
    expected = {
        "filter chooses tasks only": len(ours.train),
        "filtered entities dropped": len(paper.train),
    }
    assert ours.summary["train_ratings_variants"] == expected
    assert paper.summary["train_ratings_variants"] == expected
    assert paper.summary["train_ratings"] == len(paper.train)


def test_versions_say_the_meaning_changed() -> None:
    assert make_protocol("melu").label == "melu@2"
    assert make_protocol("melu-paper").label == "melu-paper@1"
    assert make_protocol("cold-random").label == "cold-random@2"
    assert make_protocol("temporal").label == "temporal@2"
    assert not make_protocol("melu").config.drop_filtered
    assert make_protocol("melu-paper").config.drop_filtered


@pytest.mark.parametrize("name", ["melu", "melu-paper", "cold-random"])
def test_every_validation_entity_is_scored(dataset: Dataset, name: str) -> None:
    params = {"support_sizes": [20], "query_size": 10} if name == "cold-random" else {}
    split = make_protocol(name, params).split(dataset, 0)
    n_val = len(split.validation.entities)
    assert n_val > 0 and split.summary["validation_tasks"] == n_val
    for pool, query in zip(split.validation.pools, split.validation.queries, strict=True):
        assert len(pool) >= 1 and len(query) == split.config.query_size
    # An existing, active user with ratings of existing items is in training or a validation task.
    counts = activity(dataset)
    active = (counts >= split.config.min_ratings) & (
        counts <= (split.config.max_ratings or counts.max())
    )
    existing_rows = ~split.new_users[dataset.user] & ~split.new_items[dataset.item]
    has_existing = np.bincount(dataset.user[existing_rows], minlength=dataset.n_users) > 0
    trained = np.bincount(dataset.user[split.train], minlength=dataset.n_users) > 0
    validated = np.isin(np.arange(dataset.n_users), split.validation.entities)
    unused = has_existing & active & ~trained & ~validated
    assert not unused.any()


def test_validation_never_exceeds_max_tasks(dataset: Dataset) -> None:
    split = make_protocol("melu", {"max_tasks": 3, "validation_fraction": 0.5}).split(dataset, 0)
    assert len(split.validation.entities) == 3 == split.summary["validation_tasks"]
