"""``mf-huber``: mf's trained model with a Huber-loss fold-in. Close to mf on clean support, moved
less by one outlier support rating, and its fold-in solves the Huber problem it states."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.data.dataset import Dataset
from bench.errors import ConfigError
from bench.protocol import Split, make_protocol
from bench.protocol.episodes import MetaTrain, TaskBatch, build_tasks, make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds
from learners.mf import MatrixFactorisation
from learners.mf_huber import MatrixFactorisationHuber, huber_weights

CPU = torch.device("cpu")
K = 10


@pytest.fixture(scope="module")
def split(small_dataset: Dataset) -> Split:
    protocol = make_protocol("cold-random", {"support_sizes": [K], "query_size": 5})
    return protocol.split(small_dataset, 0)


@pytest.fixture(scope="module")
def train(small_dataset: Dataset, split: Split) -> MetaTrain:
    return make_meta_train(small_dataset, split)


@pytest.fixture(scope="module")
def tasks(small_dataset: Dataset, split: Split) -> TaskBatch:
    return build_tasks(small_dataset, split.scenarios["user_cold"], K)


def fitted(train: MetaTrain, name: str, **overrides: object) -> MatrixFactorisation:
    learner = make_learner(name, {"rank": 4, **overrides})
    assert isinstance(learner, MatrixFactorisation)
    # both draw from mf's branch of the seed tree, as the engine gives them
    learner.fit(train, rng=Seeds(0).child("learner", "mf"), device=CPU)
    return learner


def predicted(learner: MatrixFactorisation, tasks: TaskBatch) -> torch.Tensor:
    with torch.no_grad():
        return learner.predict(tasks.without_labels())[tasks.query_mask]


def with_one_outlier(tasks: TaskBatch, scale: tuple[float, float]) -> TaskBatch:
    """Each task's first support rating moved to the end of the scale farther from it."""
    low, high = scale
    ratings = tasks.support_ratings.clone()
    first = ratings[:, 0]
    ratings[:, 0] = torch.where(first < (low + high) / 2, high, low).to(ratings.dtype)
    return replace(tasks, support_ratings=ratings)


def rmse(pred: torch.Tensor, tasks: TaskBatch) -> float:
    assert tasks.query_ratings is not None
    return float(((pred - tasks.query_ratings[tasks.query_mask]) ** 2).mean().sqrt())


def test_training_is_mf_s_and_clean_support_gives_close_predictions(
    train: MetaTrain, tasks: TaskBatch
) -> None:
    mf, huber = fitted(train, "mf"), fitted(train, "mf-huber")
    assert isinstance(huber, MatrixFactorisationHuber)
    assert torch.equal(mf.users, huber.users) and torch.equal(mf.items, huber.items)
    a, b = predicted(mf, tasks), predicted(huber, tasks)
    assert not torch.equal(a, b)  # the fold-in differs ...
    assert float((a - b).abs().mean()) < 0.05  # ... by little on clean ratings (1-5 scale)
    assert abs(rmse(a, tasks) - rmse(b, tasks)) < 0.01


def test_one_outlier_moves_the_huber_fold_in_less_than_mf_s(
    small_dataset: Dataset, train: MetaTrain, tasks: TaskBatch
) -> None:
    dirty = with_one_outlier(tasks, small_dataset.rating_scale)
    shifts = {}
    for name in ("mf", "mf-huber"):
        learner = fitted(train, name)
        shifts[name] = float((predicted(learner, dirty) - predicted(learner, tasks)).abs().mean())
    assert shifts["mf"] > 0.05  # the outlier does move mf
    assert shifts["mf-huber"] < 0.8 * shifts["mf"]


def test_without_reweighting_or_with_a_wide_delta_it_is_mf(
    train: MetaTrain, tasks: TaskBatch
) -> None:
    mf = predicted(fitted(train, "mf"), tasks)
    assert torch.equal(predicted(fitted(train, "mf-huber", huber_iterations=0), tasks), mf)
    wide = predicted(fitted(train, "mf-huber", huber_delta=1e6), tasks)
    torch.testing.assert_close(wide, mf)


def test_the_fold_in_reaches_the_huber_optimum(train: MetaTrain, tasks: TaskBatch) -> None:
    """At the minimum of sum rho(e) + reg |x - prior|^2 the gradient vanishes:
    X^T clip(e, -delta, delta) = reg (x - prior), checked per task from the learner's parts."""
    delta = 0.5
    learner = fitted(train, "mf-huber", dtype="float64", huber_delta=delta, huber_iterations=200)
    scaled = learner.standardiser.tasks(tasks)
    folded = learner._fold_in(
        learner.items, scaled.support_items, scaled, learner.user_prior[scaled.entities]
    )
    reg = learner.config.fold_in_reg
    clipped_any = False
    for t in range(tasks.n_tasks):
        mask = scaled.support_mask[t]
        q = learner.items[scaled.support_items[t][mask]]
        x = torch.cat([q[:, :-1], torch.ones(len(q), 1, dtype=q.dtype)], 1)
        target = scaled.support_ratings[t][mask].double() - learner.mean - q[:, -1]
        residual = target - x @ folded[t]
        clipped_any |= bool((residual.abs() > delta).any())
        gradient = x.T @ residual.clamp(-delta, delta) - reg * (
            folded[t] - learner.user_prior[scaled.entities[t]]
        )
        assert float(gradient.abs().max()) < 1e-6
    assert clipped_any  # the linear part of the loss was reached, not only the squared one


def test_weights_are_one_inside_delta_and_shrink_beyond() -> None:
    weights = huber_weights(torch.tensor([0.0, -0.5, 1.0, 2.0, -4.0]), 1.0)
    torch.testing.assert_close(weights, torch.tensor([1.0, 1.0, 1.0, 0.5, 0.25]))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [({"huber_delta": 0}, "huber_delta"), ({"huber_iterations": -1}, "huber_iterations")],
)
def test_bad_config_is_a_clear_error(overrides: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        make_learner("mf-huber", overrides)
