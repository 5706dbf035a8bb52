"""Tie policies, relevance rules and random floors of the in-query ranking metrics against values
worked out by hand from the definitions."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from bench.evaluation.metrics import Queries, evaluate, hit_per_task
from bench.evaluation.ranking import RelevanceRule, position_weights, shuffled_expectation

LOG2_3 = math.log2(3)
RANKING = (
    "ndcg@1",
    "ndcg@3",
    "ndcg@5",
    "precision@3/query",
    "recall@3/query",
    "hit@1/query",
    "mrr@3/query",
    "auc",
)


def task(
    pred: list[float],
    actual: list[float],
    policy: str = "expected",
    relevance: str = "threshold",
    ties: str = "lower-position-first",
) -> Queries:
    return Queries(
        np.asarray([pred], dtype=float),
        np.asarray([actual], dtype=float),
        np.ones((1, len(pred)), dtype=bool),
        4.0,
        (1.0, 5.0),
        tie_policy=policy,
        relevance=RelevanceRule.parse(relevance, ties),
    )


def values(q: Queries, names: tuple[str, ...] = RANKING) -> dict[str, float]:
    return {name: value.value for name, value in evaluate(q, names).items()}


def test_random_floor_on_a_query_with_tied_ratings() -> None:
    # Ratings 5, 4, 4, 1 with threshold 4: items 0-2 relevant, item 3 not; gains 31, 15, 15, 1.
    # Every order equally likely: each position holds a relevant item with probability 3/4.
    out = values(
        task([2.0] * 4, [5.0, 4.0, 4.0, 1.0]),
        (
            "precision@1/query",
            "precision@3/query",
            "recall@1/query",
            "hit@1/query",
            "mrr@1/query",
            "mrr@3/query",
            "ndcg@1",
            "ndcg@3",
            "auc",
        ),
    )
    assert out["precision@1/query"] == pytest.approx(3 / 4)
    assert out["precision@3/query"] == pytest.approx(3 / 4)
    assert out["recall@1/query"] == pytest.approx(1 / 4)
    assert out["hit@1/query"] == pytest.approx(3 / 4)
    assert out["mrr@1/query"] == pytest.approx(3 / 4)
    # First relevant at position 0 (p 3/4) or at position 1 (p 1/4: the non-relevant item first).
    assert out["mrr@3/query"] == pytest.approx(3 / 4 + 1 / 4 * 1 / 2)
    mean_gain = (31 + 15 + 15 + 1) / 4
    assert out["ndcg@1"] == pytest.approx(mean_gain / 31)
    assert out["ndcg@3"] == pytest.approx(
        mean_gain * (1 + 1 / LOG2_3 + 1 / 2) / (31 + 15 / LOG2_3 + 15 / 2)
    )
    assert out["auc"] == pytest.approx(0.5)


def test_a_constant_predictor_scores_the_random_floor_only_under_expected_ties() -> None:
    actual = [1.0, 5.0, 4.0, 2.0, 5.0]
    constant = values(task([3.0] * 5, actual))
    # The random floor written out: with a single tie group every position carries the mean.
    hits = 3 / 5  # three relevant of five
    assert constant["precision@3/query"] == pytest.approx(hits)
    assert constant["recall@3/query"] == pytest.approx(hits * 3 / 3)
    assert constant["hit@1/query"] == pytest.approx(hits)
    # Under query order the constant ranks 1, 5, 4: one relevant item fewer in the top 1.
    ordered = values(task([3.0] * 5, actual, "query-order"))
    assert ordered["hit@1/query"] == 0.0
    assert ordered["precision@3/query"] == pytest.approx(2 / 3)
    assert ordered["mrr@3/query"] == pytest.approx(1 / 2)
    # Liked at positions 1, 2, 4, disliked at 0 and 3: a liked item wins only against position 3
    # when it is listed before it (positions 1 and 2): 2 of 6 pairs.
    assert ordered["auc"] == pytest.approx(2 / 6)
    # Reversing the query moves query-order values and leaves expected ones alone.
    backwards = actual[::-1]
    assert values(task([3.0] * 5, backwards)) == pytest.approx(constant)
    reversed_order = values(task([3.0] * 5, backwards, "query-order"))
    assert reversed_order["hit@1/query"] == 1.0
    assert reversed_order["ndcg@1"] != pytest.approx(ordered["ndcg@1"])
    # lower-position-first orders a query exactly as query-order does.
    assert values(task([3.0] * 5, actual, "lower-position-first")) == pytest.approx(ordered)


def test_partial_ties_share_only_the_positions_they_span() -> None:
    # Items 0-2 tie at the top, item 3 below; only item 2 is relevant.
    q = task([1.0, 1.0, 1.0, 0.0], [1.0, 2.0, 5.0, 1.0])
    out = values(q, ("mrr@5/query", "precision@3/query", "hit@1/query"))
    assert hit_per_task(q, 2).tolist() == pytest.approx([2 / 3])  # 1 - C(2,2)/C(3,2)
    assert out["mrr@5/query"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert out["precision@3/query"] == pytest.approx(1 / 3)  # the group fills the top 3
    assert out["hit@1/query"] == pytest.approx(1 / 3)
    # A strict order keeps its value whatever the policy.
    strict = task([4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 5.0, 1.0])
    assert values(strict) == pytest.approx(values(replace(strict, tie_policy="query-order")))


def test_position_weights_average_the_discounts_of_a_tied_group() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]])
    mask = np.array([[True, True, True, True, False]])
    weights = position_weights(scores, mask, np.array([8.0, 4.0, 2.0, 1.0]), "expected")
    # Item 1 first (8); items 0, 2, 3 share positions 1-3: (4 + 2 + 1) / 3; item 4 is masked.
    assert weights[0].tolist() == pytest.approx([7 / 3, 8.0, 7 / 3, 7 / 3, 0.0])
    ordered = position_weights(scores, mask, np.array([8.0, 4.0, 2.0, 1.0]), "query-order")
    assert ordered.tolist() == [[4.0, 8.0, 2.0, 1.0, 0.0]]


def test_shuffled_expectation_agrees_with_the_closed_form() -> None:
    rng = np.random.default_rng(7)
    q = Queries(
        rng.integers(0, 3, (6, 8)).astype(float),
        rng.integers(1, 6, (6, 8)).astype(float),
        np.ones((6, 8), dtype=bool),
        4.0,
        (1.0, 5.0),
    )
    exact = evaluate(q, ("mrr@3/query", "ndcg@3"))
    for name in ("mrr@3/query", "ndcg@3"):

        def by_order(scores: np.ndarray, name: str = name) -> np.ndarray:
            shuffled = replace(q, predicted=scores, tie_policy="query-order")
            return evaluate(shuffled, (name,))[name].per_task

        estimate = shuffled_expectation(by_order, q.predicted, q.mask, seed=3)
        assert estimate == pytest.approx(exact[name].per_task, abs=0.05, nan_ok=True)
    with pytest.raises(ValueError, match="at least 1000"):
        shuffled_expectation(lambda s: s[:, 0], q.predicted, q.mask, draws=10)


def test_top_n_relevance_with_ties_at_the_cut() -> None:
    actual = np.array([[3.0, 5.0, 4.0, 4.0, 4.0, 1.0]])
    mask = np.ones_like(actual, dtype=bool)
    # Top 3: rating 5 (item 1), then three 4s for two places: the lower positions 2 and 3 win.
    lower = RelevanceRule.parse("top:3").relevant(actual, mask, 4.0)
    assert lower.tolist() == [[False, True, True, True, False, False]]
    include = RelevanceRule.parse("top:3", "include").relevant(actual, mask, 4.0)
    assert include.tolist() == [[False, True, True, True, True, False]]
    # A masked item never counts, and a top larger than the query takes every valid item.
    masked = RelevanceRule.parse("top:9").relevant(actual, np.array([[1, 1, 1, 1, 1, 0]]) > 0, 4.0)
    assert masked.tolist() == [[True, True, True, True, True, False]]
    for bad in ("top:0", "top", "best:3"):
        with pytest.raises(ValueError, match="'threshold' or 'top:N'"):
            RelevanceRule.parse(bad)
    with pytest.raises(ValueError, match="relevance tie rule"):
        RelevanceRule.parse("top:3", "random")


def test_recbole_style_metrics_on_a_ten_item_query() -> None:
    # Relevant: the top 5 by rating, ties to the lower position (RecBole-MetaRec's cut).
    actual = [5.0, 1.0, 4.0, 2.0, 4.0, 3.0, 4.0, 1.0, 5.0, 3.0]  # top 5: items 0, 8, 2, 4, 6
    names = ("precision@5/query", "recall@5/query", "hit@5/query", "mrr@5/query", "ndcg@5")
    pred = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]  # predicted top 5: items 0-4
    q = replace(task(pred, actual, "lower-position-first", "top:5"), gain="binary")
    out = values(q, names)
    # Hits at positions 0, 2, 4 of the top 5 (items 0, 2, 4).
    assert out["precision@5/query"] == pytest.approx(3 / 5)
    assert out["recall@5/query"] == pytest.approx(3 / 5)
    assert out["hit@5/query"] == 1.0
    assert out["mrr@5/query"] == 1.0
    idcg = sum(1 / math.log2(i + 2) for i in range(5))
    assert out["ndcg@5"] == pytest.approx((1 + 1 / 2 + 1 / math.log2(6)) / idcg)
    # HR@5 is 1 exactly when the predicted top 5 holds a relevant item: scoring the five
    # non-relevant items highest is the one way to miss, and it gives 0 on every metric.
    relevant = {0, 2, 4, 6, 8}
    worst = [1.0 if i not in relevant else 0.0 for i in range(10)]
    miss = values(replace(q, predicted=np.asarray([worst])), names)
    assert miss == pytest.approx(dict.fromkeys(names, 0.0))
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.random(10)
        top5 = set(np.argsort(-scores, kind="stable")[:5].tolist())
        got = values(replace(q, predicted=scores[None, :]), ("hit@5/query",))["hit@5/query"]
        assert got == float(bool(top5 & relevant))


def test_tied_share_counts_fully_tied_queries() -> None:
    q = Queries(
        np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 2.0], [3.0, 0.0, 0.0]]),
        np.ones((3, 3)),
        np.array([[1, 1, 1], [1, 1, 1], [1, 0, 0]]) > 0,
        4.0,
        (1.0, 5.0),
    )
    out = evaluate(q, ("tied_share",))["tied_share"]
    assert out.per_task.tolist()[:2] == [1.0, 0.0]
    assert math.isnan(out.per_task[2])  # one item: nothing to tie
    assert out.value == 0.5 and out.n_unscored == 1


def test_an_unknown_tie_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tie policy 'random'"):
        task([1.0, 2.0], [1.0, 2.0], "random")
