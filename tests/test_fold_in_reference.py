"""``mf`` and ``item-mean`` on a small hand-made rating table, against the same algebra done
independently in numpy: the feature prior, the ridge fold-in of an unseen task entity on its
support (on standardised ratings, as ``mf`` fits them), and the bias fold-in. The support sets are
written by hand, with different lengths (none at all included), so that padding is exercised.
The ALS sweeps themselves are checked in ``tests/test_mf.py``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.protocol import Split, make_protocol
from bench.protocol.episodes import MetaTrain, TaskBatch, batch_from_rows, make_meta_train
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds

N_USERS, N_ITEMS = 14, 9
# Penalties that float32 cannot hold exactly, so a solve in single precision would show.
MF: dict[str, Any] = {
    "rank": 3,
    "iterations": 4,
    "fold_in_reg": 2.1,
    "feature_reg": 1.3,
    "dtype": "float64",
}


def hand_made() -> Dataset:
    """Every user rates 7 of the 9 items; ratings 1..5 follow a simple taste pattern."""
    rng = np.random.default_rng(11)
    users, items, ratings = [], [], []
    taste = rng.normal(size=(N_USERS, 2))
    style = rng.normal(size=(N_ITEMS, 2))
    for u in range(N_USERS):
        for i in sorted(rng.choice(N_ITEMS, size=7, replace=False)):
            users.append(u)
            items.append(i)
            ratings.append(float(np.clip(np.round(3 + taste[u] @ style[i]), 1, 5)))
    n = len(ratings)
    return Dataset(
        name="hand-made",
        user=np.asarray(users),
        item=np.asarray(items),
        rating=np.asarray(ratings, dtype=np.float32),
        timestamp=np.arange(n),
        n_users=N_USERS,
        n_items=N_ITEMS,
        rating_scale=(1.0, 5.0),
        like_threshold=4.0,
        user_features=(taste + rng.normal(scale=0.3, size=taste.shape)).astype(np.float32),
        item_features=(style + rng.normal(scale=0.3, size=style.shape)).astype(np.float32),
    )


def split_of(dataset: Dataset, axis: str) -> Split:
    params: dict[str, Any] = {
        "task_axis": axis,
        "new_user_fraction": 0.3 if axis == "user" else 0.0,
        "new_item_fraction": 0.0 if axis == "user" else 0.3,
        "validation_fraction": 0.0,
        "support_sizes": ["all"],
        "query_size": 2,
    }
    return make_protocol("cold-random", params).split(dataset, 0)


def tasks_by_hand(dataset: Dataset, split: Split, axis: str) -> tuple[TaskBatch, list[int]]:
    """Two unseen task entities with 3 and 1 support ratings, one with none, and one seen in
    training with 2; each asks about every rating of its own not used as support."""
    task_of = dataset.user if axis == "user" else dataset.item
    unseen = np.flatnonzero(split.new_users if axis == "user" else split.new_items)
    seen = np.flatnonzero(~(split.new_users if axis == "user" else split.new_items))
    assert len(unseen) >= 3
    plan = [(int(unseen[0]), 3), (int(unseen[1]), 1), (int(unseen[2]), 0), (int(seen[0]), 2)]
    supports, queries = [], []
    for entity, k in plan:
        rows = np.flatnonzero(task_of == entity)
        supports.append(rows[:k])
        queries.append(rows[k:])
    entities = np.asarray([e for e, _ in plan])
    batch = batch_from_rows(
        dataset.user, dataset.item, dataset.rating, axis, entities, supports, queries
    )
    return batch, [e for e, _ in plan]


def fitted(name: str, train: MetaTrain, overrides: dict[str, Any] | None = None) -> Any:
    learner: Learner = make_learner(name, overrides)
    learner.fit(train, rng=Seeds(0), device=torch.device("cpu"))
    return learner


def ridge(design: np.ndarray, target: np.ndarray, reg: float, centre: np.ndarray) -> np.ndarray:
    """argmin |design w - target|^2 + reg |w - centre|^2, by the normal equations."""
    d = design.shape[1]
    return np.linalg.solve(design.T @ design + reg * np.eye(d), design.T @ target + reg * centre)


@pytest.mark.parametrize("axis", ["user", "item"])
def test_mf_fold_in_is_the_ridge_solve_around_the_feature_prior(axis: str) -> None:
    dataset = hand_made()
    split = split_of(dataset, axis)
    train = make_meta_train(dataset, split)
    mf = fitted("mf", train, MF)
    batch, entities = tasks_by_hand(dataset, split, axis)
    with torch.no_grad():
        predicted = mf.predict(batch.without_labels()).numpy()

    own = (mf.users if axis == "user" else mf.items).numpy()
    other = (mf.items if axis == "user" else mf.users).numpy()
    features = dataset.user_features if axis == "user" else dataset.item_features
    assert features is not None
    known = np.bincount(train.user if axis == "user" else train.item, minlength=len(own)) > 0

    # The prior: ridge regression from [features, 1] to the trained entities' [factors, bias].
    x = np.hstack([features.astype(np.float64), np.ones((len(own), 1))])
    weights = ridge(x[known], own[known], MF["feature_reg"], np.zeros((x.shape[1], own.shape[1])))
    prior = x @ weights
    assert np.abs(prior[~known]).max() > 0.05  # the prior is informative here
    fitted_prior = (mf.user_prior if axis == "user" else mf.item_prior).numpy()
    assert fitted_prior == pytest.approx(prior, rel=1e-10, abs=1e-12)

    # mf works on standardised ratings: (r - mean) / std of the training ratings.
    centre, spread = float(train.rating.mean()), float(train.rating.std())
    other_support = batch.support_items if axis == "user" else batch.support_users
    other_query = batch.query_items if axis == "user" else batch.query_users
    for t, entity in enumerate(entities):
        s = batch.support_mask[t].numpy()
        q = batch.query_mask[t].numpy()
        o_s = other[other_support[t].numpy()[s]]
        o_q = other[other_query[t].numpy()[q]]
        if known[entity]:
            params = own[entity]
        else:
            design = np.hstack([o_s[:, :-1], np.ones((len(o_s), 1))])
            z = (batch.support_ratings[t].numpy()[s].astype(np.float64) - centre) / spread
            params = ridge(design, z - mf.mean - o_s[:, -1], MF["fold_in_reg"], prior[entity])
            if s.sum() == 0:
                assert params == pytest.approx(prior[entity])
        z_pred = mf.mean + params[-1] + o_q[:, -1] + o_q[:, :-1] @ params[:-1]
        expected = np.clip(z_pred * spread + centre, 1.0, 5.0)
        assert predicted[t, q] == pytest.approx(expected, rel=1e-5, abs=1e-5), (t, entity)


def test_mf_without_features_folds_in_around_zero() -> None:
    dataset = hand_made()
    split = split_of(dataset, "user")
    train = make_meta_train(dataset, split)
    mf = fitted("mf", train, {**MF, "use_features": False})
    batch, entities = tasks_by_hand(dataset, split, "user")
    with torch.no_grad():
        predicted = mf.predict(batch.without_labels()).numpy()
    items = mf.items.numpy()
    centre, spread = float(train.rating.mean()), float(train.rating.std())
    # The task with no support: factors and bias stay at zero, so the prediction is
    # mean + item bias (in standardised units).
    q = batch.query_mask[2].numpy()
    z_pred = mf.mean + items[batch.query_items[2].numpy()[q], -1]
    assert predicted[2, q] == pytest.approx(np.clip(z_pred * spread + centre, 1, 5), rel=1e-5)
    # The task with one support rating: the ridge solve with a zero centre.
    s = batch.support_mask[1].numpy()
    o_s = items[batch.support_items[1].numpy()[s]]
    design = np.hstack([o_s[:, :-1], np.ones((1, 1))])
    z = (batch.support_ratings[1].numpy()[s].astype(np.float64) - centre) / spread
    params = ridge(design, z - mf.mean - o_s[:, -1], MF["fold_in_reg"], 0.0)
    o_q = items[batch.query_items[1].numpy()[batch.query_mask[1].numpy()]]
    z_pred = mf.mean + params[-1] + o_q[:, -1] + o_q[:, :-1] @ params[:-1]
    expected = np.clip(z_pred * spread + centre, 1, 5)
    assert predicted[1, batch.query_mask[1].numpy()] == pytest.approx(expected, rel=1e-5)
    assert entities[1] != entities[0]


@pytest.mark.parametrize("axis", ["user", "item"])
def test_item_mean_folds_a_shrunk_mean_residual(axis: str) -> None:
    dataset = hand_made()
    split = split_of(dataset, axis)
    train = make_meta_train(dataset, split)
    shrink = {"user_shrinkage": 3.0, "item_shrinkage": 4.0, "iterations": 1}
    model = fitted("item-mean", train, shrink)
    batch, entities = tasks_by_hand(dataset, split, axis)
    with torch.no_grad():
        predicted = model.predict(batch.without_labels()).numpy()

    # One pass of the biases by hand: item biases first, then user biases given them.
    mean = float(train.rating.mean())
    residual = train.rating - mean
    item_bias = np.zeros(N_ITEMS)
    user_bias = np.zeros(N_USERS)
    for i in range(N_ITEMS):
        rows = train.item == i
        item_bias[i] = residual[rows].sum() / (rows.sum() + shrink["item_shrinkage"])
    for u in range(N_USERS):
        rows = train.user == u
        user_bias[u] = (residual[rows] - item_bias[train.item[rows]]).sum() / (
            rows.sum() + shrink["user_shrinkage"]
        )
    own_bias, other_bias = (user_bias, item_bias) if axis == "user" else (item_bias, user_bias)
    own_shrink = shrink["user_shrinkage"] if axis == "user" else shrink["item_shrinkage"]
    known = np.bincount(train.user if axis == "user" else train.item, minlength=len(own_bias)) > 0
    other_support = batch.support_items if axis == "user" else batch.support_users
    other_query = batch.query_items if axis == "user" else batch.query_users
    for t, entity in enumerate(entities):
        s = batch.support_mask[t].numpy()
        q = batch.query_mask[t].numpy()
        if known[entity]:
            bias = own_bias[entity]
        else:
            res = batch.support_ratings[t].numpy()[s] - mean - other_bias[other_support[t][s]]
            bias = res.sum() / (s.sum() + own_shrink)
        expected = np.clip(mean + bias + other_bias[other_query[t].numpy()[q]], 1, 5)
        assert predicted[t, q] == pytest.approx(expected, rel=1e-5, abs=1e-5), (t, entity)


def test_mf_without_side_features_starts_unseen_entities_at_zero() -> None:
    dataset = replace(hand_made(), user_features=None, item_features=None, content_hash="")
    split = split_of(dataset, "user")
    mf = fitted("mf", make_meta_train(dataset, split), MF)
    unseen = torch.as_tensor(split.new_users)
    assert unseen.any() and not mf.user_prior.any() and not mf.item_prior.any()
    assert not mf.users[unseen].any()


def test_mf_handles_entities_without_training_ratings() -> None:
    """Ids past the last rated user and item (no rating at all) get their prior and no error."""
    base = hand_made()
    dataset = replace(
        base,
        n_users=N_USERS + 1,
        n_items=N_ITEMS + 1,
        user_features=np.vstack([base.user_features, np.ones((1, 2), np.float32)]),
        item_features=np.vstack([base.item_features, np.ones((1, 2), np.float32)]),
        content_hash="",
    )
    train = make_meta_train(dataset, split_of(dataset, "user"))
    mf = fitted("mf", train, MF)
    assert torch.equal(mf.users[N_USERS], mf.user_prior[N_USERS])
    assert torch.equal(mf.items[N_ITEMS], mf.item_prior[N_ITEMS])
    assert mf.item_prior[N_ITEMS].abs().sum() > 0


def test_mf_feature_prior_from_a_single_known_item() -> None:
    dataset = hand_made()
    params: dict[str, Any] = {"new_item_fraction": 0.89, "new_user_fraction": 0.0}
    params |= {"validation_fraction": 0.0, "support_sizes": ["all"], "query_size": 2}
    split = make_protocol("cold-random", params).split(dataset, 0)
    train = make_meta_train(dataset, split)
    known = np.bincount(train.item, minlength=N_ITEMS) > 0
    assert known.sum() == 1
    mf = fitted("mf", train, MF)
    items = mf.items.numpy()
    assert dataset.item_features is not None
    x = np.hstack([dataset.item_features.astype(np.float64), np.ones((N_ITEMS, 1))])
    zero = np.zeros((x.shape[1], items.shape[1]))
    expected = x @ ridge(x[known], items[known], MF["feature_reg"], zero)
    assert mf.item_prior.numpy() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert np.abs(expected[~known]).max() > 0
