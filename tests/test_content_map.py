"""The content-map learner: the ridge map in closed form, a linear content-to-factor map recovered,
seen entities keeping their MF factors, and new items ranked by content that item-mean cannot see."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.synthetic import SyntheticConfig
from bench.errors import ConfigError
from bench.evaluation.contract import score
from bench.protocol.episodes import build_tasks
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from learners.content_map import ContentMap, ridge_map

from shared import fitted, synthetic_split

# Every latent column (factors and bias) is exactly a linear map of the features, on both sides.
LINEAR = SyntheticConfig(
    n_users=400, n_items=300, mean_ratings_per_user=60, feature_share=1.0, noise=0.3, seed=5
)


def test_the_ridge_map_is_the_closed_form_and_recovers_an_exact_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    y = rng.normal(size=(50, 3))
    weights, intercept = ridge_map(torch.tensor(x), torch.tensor(y), 2.5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.solve(xc.T @ xc + 2.5 * np.eye(6), xc.T @ yc)
    assert np.allclose(weights.numpy(), expected, atol=1e-10)
    assert np.allclose(intercept.numpy(), y.mean(0) - x.mean(0) @ expected, atol=1e-10)
    # The intercept is not shrunk: a large penalty leaves the mean, not zero.
    _, flat = ridge_map(torch.tensor(x), torch.tensor(y + 7.0), 1e9)
    assert np.allclose(flat.numpy(), y.mean(0) + 7.0, atol=1e-6)
    # Targets that are a linear map of the content give the map back.
    true_w, true_c = rng.normal(size=(6, 3)), rng.normal(size=3)
    w, c = ridge_map(torch.tensor(x), torch.tensor(x @ true_w + true_c), 1e-9)
    assert np.allclose(w.numpy(), true_w, atol=1e-6) and np.allclose(c.numpy(), true_c, atol=1e-6)


def test_new_items_get_the_closed_form_map_of_the_mf_factors_and_it_recovers_the_truth() -> None:
    data, split, train = synthetic_split(LINEAR)
    learner = fitted("content-map", train)
    assert isinstance(learner, ContentMap)
    known = train.known_items
    assert (~known).sum() > 50
    # The map, recomputed in float64 from the learner's own factors of the seen items.
    items = learner.items.double().numpy()
    x = data.item_features.astype(np.float64)
    xc = x[known] - x[known].mean(0)
    yc = items[known] - items[known].mean(0)
    w = np.linalg.solve(xc.T @ xc + learner.config.map_reg * np.eye(x.shape[1]), xc.T @ yc)
    mapped = (x[~known] - x[known].mean(0)) @ w + items[known].mean(0)
    assert np.allclose(items[~known], mapped, atol=1e-3)

    # MF factors are identified up to a rotation; the ratings they give are not. On new items the
    # mapped factors come as close to the generator's mean ratings as the fitted factors of seen
    # items do on warm pairs, and far closer than item biases alone.
    def error_to_truth(model: Learner, scenario: str) -> float:
        batch = build_tasks(data, split.scenarios[scenario], 0)
        with torch.no_grad():
            pred = model.predict(batch.without_labels()).double().numpy()
        mask = batch.query_mask.numpy()
        users, queried = batch.query_users.numpy()[mask], batch.query_items.numpy()[mask]
        truth = data.truth.expected_rating(users, queried)
        return float(np.sqrt(np.mean((pred[mask] - truth) ** 2)))

    mapped, warm = error_to_truth(learner, "item_cold"), error_to_truth(learner, "warm")
    base = error_to_truth(fitted("item-mean", train), "item_cold")
    assert mapped < 1.1 * warm and mapped < base / 2, (mapped, warm, base)


def test_seen_entities_keep_their_mf_factors_and_new_ones_ignore_the_support() -> None:
    data, split, train = synthetic_split()
    learner = fitted("content-map", train, {"rank": 8})
    mf = fitted("mf", train, {"rank": 8}, stream="content-map")  # the same starting factors

    def predicted(model: Learner, scenario: str, k: int) -> torch.Tensor:
        batch = build_tasks(data, split.scenarios[scenario], k).without_labels()
        with torch.no_grad():
            return model.predict(batch)

    assert torch.equal(predicted(learner, "warm", 5), predicted(mf, "warm", 5))
    assert torch.equal(predicted(learner, "user_cold", 0), predicted(learner, "user_cold", 5))
    folding = fitted("content-map", train, {"rank": 8, "fold_in": True})
    # With no support the fold-in returns the mapped factors (up to the solve's rounding).
    assert torch.allclose(
        predicted(folding, "user_cold", 0), predicted(learner, "user_cold", 0), atol=1e-5
    )
    assert not torch.allclose(
        predicted(folding, "user_cold", 5), predicted(learner, "user_cold", 5)
    )


def test_content_map_beats_item_mean_on_new_items_from_their_content() -> None:
    data, split, train = synthetic_split()
    metrics = ("rmse", "ndcg@3")
    baseline = score(fitted("item-mean", train), data, split, "item_cold", 5, metrics)
    mapped = score(fitted("content-map", train), data, split, "item_cold", 5, metrics)
    assert mapped["rmse"] < baseline["rmse"] - 0.1
    assert mapped["ndcg@3"] > baseline["ndcg@3"] + 0.1


def test_negative_penalties_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"\[learner.content-map\]: penalties must be non-negative"
    ):
        make_learner("content-map", {"map_reg": -1.0})


@pytest.mark.parametrize("fold", [False, True])
def test_candidate_scores_rank_as_the_predictions_do(fold: bool) -> None:
    """Full ranking uses ``score``; for the query items it must agree with ``predict`` (up to
    the clamp to the rating scale), with the support folded in or not."""
    data, split, train = synthetic_split()
    learner = fitted("content-map", train, {"rank": 8, "fold_in": fold})
    batch = build_tasks(data, split.scenarios["user_cold"], 5).without_labels()
    with torch.no_grad():
        predicted = learner.predict(batch)
        scored = learner.score(batch, batch.query_items)
    low, high = data.rating_scale
    assert torch.allclose(scored.clamp(low, high), predicted, atol=1e-4)
