"""Training-data arms: rating noise on the training ratings (exact counts, nested strengths) and
shilling profiles (count, filler size and target ratings as declared, present only in
training)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.dataset import Dataset
from bench.protocol import Split, make_protocol
from bench.protocol.episodes import MetaTrain, make_meta_train
from bench.protocol.perturbation_labels import corrupted_count
from bench.protocol.training_arms import (
    ATTACKS,
    NOISE_KINDS,
    ShillingAttack,
    TrainingNoise,
    attack_targets,
    attacked_training,
    noise_positions,
    noisy_training,
    shilling_profiles,
)


@pytest.fixture(scope="module")
def split(small_dataset: Dataset) -> Split:
    return make_protocol("cold-random", {"support_sizes": [3], "query_size": 5}).split(
        small_dataset, 0
    )


@pytest.fixture(scope="module")
def train(small_dataset: Dataset, split: Split) -> MetaTrain:
    return make_meta_train(small_dataset, split)


@pytest.mark.parametrize("kind", [k for k in NOISE_KINDS if k != "drop"])
def test_noise_corrupts_exactly_m_ratings_nested_across_strengths(
    train: MetaTrain, kind: str
) -> None:
    n = len(train.rating)
    before: tuple[np.ndarray, np.ndarray] | None = None
    for strength in (0.05, 0.2, 0.5):
        hit, _ = noise_positions(n, TrainingNoise(kind, strength), seed=0)
        assert len(hit) == corrupted_count(strength, n) and len(set(hit.tolist())) == len(hit)
        noisy = noisy_training(train, TrainingNoise(kind, strength), seed=0)
        moved = np.flatnonzero(noisy.rating != train.rating)
        assert set(moved.tolist()) <= set(hit.tolist())  # only chosen ratings move
        assert np.array_equal(noisy.user, train.user) and np.array_equal(noisy.item, train.item)
        assert noisy.rating.min() >= train.rating_scale[0]
        assert noisy.rating.max() <= train.rating_scale[1]
        if before is not None:  # a lower strength's ratings keep their new values
            assert set(before[0].tolist()) <= set(hit.tolist())
            assert np.array_equal(noisy.rating[before[0]], before[1][before[0]])
        before = (hit, noisy.rating)
    if kind == "outlier":  # every chosen rating moves to an end of the scale
        assert before is not None and np.array_equal(moved, np.sort(before[0]))


def test_noise_drop_removes_exactly_m_and_strength_zero_is_the_identity(
    train: MetaTrain,
) -> None:
    dropped = noisy_training(train, TrainingNoise("drop", 0.1), seed=0)
    assert len(dropped.rating) == len(train.rating) - corrupted_count(0.1, len(train.rating))
    assert dropped.sampler.counts.sum() == len(dropped.rating)
    assert noisy_training(train, TrainingNoise("flip", 0.0), seed=0) is train
    one, other = (
        noise_positions(len(train.rating), TrainingNoise("flip", 0.1), s)[0] for s in (0, 1)
    )
    assert set(one.tolist()) != set(other.tolist())  # a seed draws its own corruption


@pytest.mark.parametrize("kind", ATTACKS)
def test_profiles_are_as_declared(train: MetaTrain, kind: str) -> None:
    attack = ShillingAttack(kind, size=0.05, filler=0.1, targets=3, selected=0.02)
    profiles = shilling_profiles(train, attack, seed=0)
    users = int(train.known_users.sum())
    items = int(train.known_items.sum())
    assert profiles.n_profiles == round(0.05 * users) > 0
    assert profiles.filler_size == round(0.1 * items)
    high = train.rating_scale[1]
    levels = set(np.unique(train.rating).tolist())
    for j in range(profiles.n_profiles):
        mine = profiles.user == train.n_users + j
        rated = dict(zip(profiles.item[mine].tolist(), profiles.rating[mine].tolist(), strict=True))
        assert len(rated) == mine.sum()  # no item twice
        assert all(rated[t] == high for t in profiles.targets.tolist())
        assert all(rated[s] == high for s in profiles.selected.tolist())
        assert len(rated) == len(profiles.targets) + len(profiles.selected) + profiles.filler_size
        assert set(rated.values()) <= levels  # drawn ratings snap to the training levels
    if kind == "bandwagon":  # the selected items are the most rated ones
        popularity = np.bincount(train.item, minlength=train.n_items)
        assert len(profiles.selected) == round(0.02 * items)
        assert (
            popularity[profiles.selected].min() >= np.sort(popularity)[-len(profiles.selected) - 3]
        )
    else:
        assert len(profiles.selected) == 0


def test_average_attack_follows_the_item_means(train: MetaTrain) -> None:
    profiles = shilling_profiles(train, ShillingAttack("average", 0.2, filler=0.3), seed=0)
    filler = ~np.isin(profiles.item, profiles.targets)
    sums = np.bincount(train.item, weights=train.rating, minlength=train.n_items)
    means = sums / np.maximum(np.bincount(train.item, minlength=train.n_items), 1)
    fake = np.bincount(profiles.item[filler], weights=profiles.rating[filler], minlength=len(means))
    count = np.bincount(profiles.item[filler], minlength=len(means))
    seen = count >= 5
    assert np.corrcoef(fake[seen] / count[seen], means[seen])[0, 1] > 0.5


def test_unpopular_targets_have_at_most_the_median_count(train: MetaTrain) -> None:
    counts = np.bincount(train.item, minlength=train.n_items)
    median = np.median(counts[counts > 0])
    for seed in range(5):
        targets = attack_targets(train, 5, seed, "unpopular")
        assert len(set(targets.tolist())) == 5 and (counts[targets] > 0).all()
        assert (counts[targets] <= median).all()
    profiles = shilling_profiles(train, ShillingAttack("random", 0.05, target_pool="unpopular"), 0)
    assert np.array_equal(profiles.targets, attack_targets(train, 5, 0, "unpopular"))
    with pytest.raises(ValueError, match="unknown target pool"):
        ShillingAttack("random", 0.05, target_pool="famous")


def test_targets_are_shared_and_sizes_nested(train: MetaTrain) -> None:
    small = shilling_profiles(train, ShillingAttack("random", 0.02), seed=0)
    large = shilling_profiles(train, ShillingAttack("random", 0.1), seed=0)
    other = shilling_profiles(train, ShillingAttack("average", 0.1), seed=0)
    assert np.array_equal(small.targets, large.targets)
    assert np.array_equal(small.targets, other.targets)
    first = large.user < train.n_users + small.n_profiles
    assert np.array_equal(large.item[first], small.item)
    assert np.array_equal(large.rating[first], small.rating)
    assert not np.array_equal(
        shilling_profiles(train, ShillingAttack("random", 0.1), seed=1).targets, large.targets
    )


def test_profiles_enter_training_only(
    small_dataset: Dataset, split: Split, train: MetaTrain
) -> None:
    attacked = attacked_training(train, ShillingAttack("random", 0.1), seed=0)
    added = len(attacked.rating) - len(train.rating)
    assert added > 0 and attacked.n_users > train.n_users
    assert np.array_equal(attacked.user[: len(train.user)], train.user)
    assert attacked.user[len(train.user) :].min() >= small_dataset.n_users
    assert attacked.known_users[small_dataset.n_users :].all()
    # the split's test tasks name real users and ratings only
    for tasks in split.scenarios.values():
        assert (tasks.entities < small_dataset.n_users).all()
    assert attacked_training(train, ShillingAttack("random", 0.0), seed=0) is train
    with pytest.raises(ValueError, match="adds no fake profile"):
        attacked_training(train, ShillingAttack("random", 0.001), seed=0)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"kind": "sybil", "size": 0.1}, "unknown attack"),
        ({"kind": "random", "size": 1.5}, "size"),
        ({"kind": "random", "size": 0.1, "filler": 0}, "filler"),
        ({"kind": "random", "size": 0.1, "targets": 0}, "target"),
    ],
)
def test_bad_attacks_are_refused(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ShillingAttack(**fields)  # type: ignore[arg-type]
