"""Metric values and confidence intervals against numbers worked out by hand.

Every expected value here is written out from the definition (the gains, the discounts, the
t-quantile from a printed table), never computed with the function under test.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from bench.evaluation.metrics import (
    DEFAULT_METRICS,
    METRICS,
    Queries,
    evaluate,
    gain,
    higher_is_better,
)
from bench.results.terminal import format_mean_ci, mean_ci

LOG2_3 = math.log2(3)
LOG2_5 = math.log2(5)


def one_task(
    pred: list[float],
    actual: list[float],
    scale: tuple[float, float] = (1.0, 5.0),
    threshold: float = 4.0,
    mask: list[bool] | None = None,
    tie_policy: str = "expected",
) -> Queries:
    m = np.ones(len(pred), dtype=bool) if mask is None else np.asarray(mask)
    return Queries(
        np.asarray([pred], dtype=float),
        np.asarray([actual], dtype=float),
        m[None, :],
        threshold,
        scale,
        tie_policy=tie_policy,
    )


# NDCG ----------------------------------------------------------------------------------------


def test_a_constant_predictor_is_ranked_in_query_order_not_by_the_truth() -> None:
    # All predictions tie: the ranking is the query order 1, 2, 4, 5 (gains 1, 3, 15, 31).
    out = evaluate(one_task([3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 4.0, 5.0], tie_policy="query-order"))
    dcg = 1 / 1 + 3 / LOG2_3 + 15 / 2 + 31 / LOG2_5
    ideal = 31 / 1 + 15 / LOG2_3 + 3 / 2 + 1 / LOG2_5
    assert out["ndcg@10"].value == pytest.approx(dcg / ideal)
    assert out["ndcg@10"].value == pytest.approx(0.5601, abs=1e-4)
    assert out["ndcg@1"].value == pytest.approx(1 / 31)
    assert out["ndcg@3"].value == pytest.approx(
        (1 + 3 / LOG2_3 + 15 / 2) / (31 + 15 / LOG2_3 + 3 / 2)
    )


def test_a_constant_predictor_under_expected_ties_scores_the_mean_over_orders() -> None:
    # Every item is equally likely at every position: each position carries the mean gain
    # (1 + 3 + 15 + 31) / 4 = 12.5 and the order of the query does not matter.
    mean_gain = (1 + 3 + 15 + 31) / 4
    ideal = 31 / 1 + 15 / LOG2_3 + 3 / 2 + 1 / LOG2_5
    for actual in ([1.0, 2.0, 4.0, 5.0], [5.0, 4.0, 2.0, 1.0]):
        out = evaluate(one_task([3.0] * 4, actual))
        dcg = mean_gain * (1 + 1 / LOG2_3 + 1 / 2 + 1 / LOG2_5)
        assert out["ndcg@10"].value == pytest.approx(dcg / ideal)
        assert out["ndcg@1"].value == pytest.approx(12.5 / 31)


def test_ties_inside_a_ranking_keep_query_order() -> None:
    # Items 0 and 1 tie at the top; item 2 is last. Query order puts 0 (r=2) before 1 (r=5).
    out = evaluate(one_task([3.0, 3.0, 1.0], [2.0, 5.0, 4.0], tie_policy="query-order"))
    dcg = 3 / 1 + 31 / LOG2_3 + 15 / 2
    ideal = 31 / 1 + 15 / LOG2_3 + 3 / 2
    assert out["ndcg@3"].value == pytest.approx(dcg / ideal)
    assert out["ndcg@1"].value == pytest.approx(3 / 31)
    # The same scores with the tied pair swapped in the query: now the better item comes first.
    swapped = evaluate(one_task([3.0, 3.0, 1.0], [5.0, 2.0, 4.0], tie_policy="query-order"))
    assert swapped["ndcg@3"].value == pytest.approx((31 + 3 / LOG2_3 + 15 / 2) / ideal)
    # Expected ties: the pair shares positions 1 and 2, gains (3 + 31) / 2 each, either order.
    for actual in ([2.0, 5.0, 4.0], [5.0, 2.0, 4.0]):
        out = evaluate(one_task([3.0, 3.0, 1.0], actual))
        assert out["ndcg@3"].value == pytest.approx((17 + 17 / LOG2_3 + 15 / 2) / ideal)
        assert out["ndcg@1"].value == pytest.approx(17 / 31)


def reference_ndcg(pred: list[float], actual: list[float], k: int) -> float:
    """NDCG@k written plainly: a stable sort by prediction (ties in query order), gain 2^r - 1."""
    order = sorted(range(len(pred)), key=lambda i: -pred[i])  # Python's sort is stable
    ideal = sorted(actual, reverse=True)
    dcg = sum((2 ** actual[i] - 1) / math.log2(rank + 2) for rank, i in enumerate(order[:k]))
    idcg = sum((2**r - 1) / math.log2(rank + 2) for rank, r in enumerate(ideal[:k]))
    return dcg / idcg


def test_ties_in_a_long_query_keep_query_order() -> None:
    # Twenty items on three predicted levels: long enough for an unstable sort to reorder ties.
    pred = [3, 3, 3, 1, 1, 3, 3, 3, 3, 5, 5, 3, 3, 3, 3, 1, 3, 3, 3, 3]
    actual = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5]
    out = evaluate(
        one_task([float(p) for p in pred], [float(a) for a in actual], tie_policy="query-order")
    )
    for k in (1, 3, 5, 10):
        assert out[f"ndcg@{k}"].value == pytest.approx(reference_ndcg(pred, actual, k)), k
    assert out["ndcg@10"].value == pytest.approx(
        (
            31
            + 31 / LOG2_3
            + 1 / 2
            + 3 / LOG2_5
            + 7 / math.log2(6)
            + 1 / math.log2(7)
            + 3 / 3
            + 7 / math.log2(9)
            + 15 / math.log2(10)
            + 15 / math.log2(11)
        )
        / sum((2**r - 1) / math.log2(i + 2) for i, r in enumerate([5, 5, 5, 5, 4, 4, 4, 4, 3, 3]))
    )


def test_ndcg_on_a_scale_reaching_below_zero_shifts_the_gains() -> None:
    # Scale -3..3: gain 2^(r + 3) - 1, so -3 -> 0, 0 -> 7, 3 -> 63.
    q = one_task([0.0, 3.0, -3.0], [-3.0, 0.0, 3.0], scale=(-3.0, 3.0), threshold=1.0)
    out = evaluate(q)
    # Predicted order: item 1 (r=0), item 0 (r=-3), item 2 (r=3).
    dcg = 7 / 1 + 0 / LOG2_3 + 63 / 2
    ideal = 63 / 1 + 7 / LOG2_3 + 0 / 2
    assert out["ndcg@3"].value == pytest.approx(dcg / ideal)
    assert out["ndcg@1"].value == pytest.approx(7 / 63)


def test_ndcg_on_a_wide_negative_scale() -> None:
    # Scale -10..10: gains 2^(r + 10) - 1; ratings -10, -9, 10 -> 0, 1, 1048575.
    q = one_task([1.0, 2.0, 0.0], [-10.0, -9.0, 10.0], scale=(-10.0, 10.0), threshold=5.0)
    out = evaluate(q)
    dcg = 1 / 1 + 0 / LOG2_3 + 1048575 / 2
    ideal = 1048575 / 1 + 1 / LOG2_3 + 0
    assert out["ndcg@3"].value == pytest.approx(dcg / ideal, rel=1e-9)


def test_ndcg_with_the_linear_gain() -> None:
    # Gain r: predicted order item 1 (r=1), item 2 (r=2), item 0 (r=3); ideal 3, 2, 1.
    q = replace(one_task([0.1, 0.3, 0.2], [3.0, 1.0, 2.0]), gain="linear")
    out = evaluate(q)
    assert out["ndcg@3"].value == pytest.approx((1 + 2 / LOG2_3 + 3 / 2) / (3 + 2 / LOG2_3 + 1 / 2))
    assert out["ndcg@1"].value == pytest.approx(1 / 3)
    # On a scale reaching below zero the linear gain is shifted too: r + 2 on -2..2.
    shifted = replace(
        one_task([2.0, 1.0], [-2.0, 2.0], scale=(-2.0, 2.0), threshold=1.0), gain="linear"
    )
    assert evaluate(shifted)["ndcg@3"].value == pytest.approx((0 + 4 / LOG2_3) / 4)


def test_gain_values() -> None:
    assert gain(np.array([1.0, 3.0, 5.0]), 1.0).tolist() == [1.0, 7.0, 31.0]
    assert gain(np.array([0.5, 4.0]), 0.5).tolist() == pytest.approx([2**0.5 - 1, 15.0])
    # A scale starting at zero is not shifted; one starting below zero is shifted to zero.
    assert gain(np.array([0.0, 2.0]), 0.0).tolist() == [0.0, 3.0]
    assert gain(np.array([-2.0, 0.0, 1.0]), -2.0).tolist() == [0.0, 3.0, 7.0]
    # Row-normalised gains are the plain gains divided by 2^(top rating of the row).
    ratings = np.array([[1.0, 3.0, 2.0], [5.0, 4.0, 0.0]])
    mask = np.array([[True, True, True], [True, True, False]])
    normalised = gain(ratings, 1.0, mask)
    assert normalised[0] == pytest.approx([1 / 8, 7 / 8, 3 / 8])
    assert normalised[1, :2] == pytest.approx([31 / 32, 15 / 32])
    # A row without any valid rating is left as it is (nothing to divide by).
    all_masked = gain(ratings, 1.0, np.zeros_like(mask))
    assert all_masked.tolist() == [[1.0, 7.0, 3.0], [31.0, 15.0, 0.0]]
    # The linear gain is the rating itself, shifted the same way; an unknown gain is named.
    assert gain(np.array([1.0, 4.0]), 1.0, kind="linear").tolist() == [1.0, 4.0]
    assert gain(np.array([-1.0, 2.0]), -3.0, kind="linear").tolist() == [2.0, 5.0]
    with pytest.raises(ValueError) as info:
        gain(np.array([1.0]), 1.0, kind="cubic")
    assert str(info.value) == "unknown NDCG gain 'cubic'; valid: exponential, linear, binary"


def test_padding_never_enters_a_ranking() -> None:
    # The padded position has the highest prediction and the highest "rating".
    q = one_task([2.0, 9.0, 1.0], [3.0, 5.0, 1.0], mask=[True, False, True])
    out = evaluate(q)
    assert out["ndcg@3"].value == pytest.approx(1.0)
    reversed_ = evaluate(one_task([1.0, 9.0, 2.0], [3.0, 5.0, 1.0], mask=[True, False, True]))
    assert reversed_["ndcg@3"].value == pytest.approx((1 + 7 / LOG2_3) / (7 + 1 / LOG2_3))


def test_ndcg_cut_off_and_per_task_values() -> None:
    q = Queries(
        np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]]),
        np.array([[2.0, 5.0, 5.0, 1.0], [1.0, 2.0, 3.0, 4.0]]),
        np.ones((2, 4), dtype=bool),
        4.0,
        (1.0, 5.0),
    )
    out = evaluate(q)
    # Task 0 ranks ratings 2, 5, 5, 1 (gains 3, 31, 31, 1); task 1 is ranked perfectly.
    first_at_3 = (3 + 31 / LOG2_3 + 31 / 2) / (31 + 31 / LOG2_3 + 3 / 2)
    first_at_1 = 3 / 31
    assert out["ndcg@3"].per_task.tolist() == pytest.approx([first_at_3, 1.0])
    assert out["ndcg@1"].per_task.tolist() == pytest.approx([first_at_1, 1.0])
    assert out["ndcg@3"].value == pytest.approx((first_at_3 + 1.0) / 2)
    first_at_5 = (3 + 31 / LOG2_3 + 31 / 2 + 1 / LOG2_5) / (31 + 31 / LOG2_3 + 3 / 2 + 1 / LOG2_5)
    assert out["ndcg@5"].per_task[0] == pytest.approx(first_at_5)


def test_a_task_whose_ratings_all_have_zero_gain_is_ideal_in_any_order() -> None:
    q = one_task([1.0, 3.0, 2.0], [0.0, 0.0, 0.0], scale=(0.0, 5.0), threshold=4.0)
    assert evaluate(q)["ndcg@3"].value == pytest.approx(1.0)


# Pooled and per-task error metrics -------------------------------------------------------------


def test_rmse_mae_accuracy_pool_ratings_but_score_tasks_separately() -> None:
    q = Queries(
        np.array([[2.0, 5.0, 0.0], [4.0, 0.0, 0.0]]),
        np.array([[4.0, 5.0, 0.0], [1.0, 0.0, 0.0]]),
        np.array([[True, True, False], [True, False, False]]),
        4.0,
        (1.0, 5.0),
    )
    out = evaluate(q)
    # Errors 2, 0 (task 0) and 3 (task 1): pooled over 3 ratings, not averaged over 2 tasks.
    assert out["rmse"].value == pytest.approx(math.sqrt((4 + 0 + 9) / 3))
    assert out["mae"].value == pytest.approx(5 / 3)
    assert out["rmse"].per_task.tolist() == pytest.approx([math.sqrt(2.0), 3.0])
    assert out["mae"].per_task.tolist() == pytest.approx([1.0, 3.0])
    # Likes (r >= 4): task 0 actual like/like, predicted 2 (no) / 5 (yes); task 1 actual no,
    # predicted 4 (yes): one right out of three.
    assert out["accuracy"].value == pytest.approx(1 / 3)
    assert out["accuracy"].per_task.tolist() == pytest.approx([0.5, 0.0])
    for name in ("rmse", "mae", "accuracy"):
        assert out[name].n_scored == 2 and out[name].n_unscored == 0


def test_accuracy_on_a_negative_scale_uses_an_eighth_of_the_span() -> None:
    # Scale -4..4, threshold 1: the margin is 8 / 8 = 1, so a prediction >= 0 is a like.
    q = one_task([0.0, -0.1, 3.0, -3.0], [1.0, 2.0, 0.5, -4.0], scale=(-4.0, 4.0), threshold=1.0)
    # Actual likes: yes, yes, no, no. Predicted likes: yes, no, yes, no.
    assert evaluate(q)["accuracy"].value == pytest.approx(2 / 4)


def test_auc_over_masked_pairs() -> None:
    q = one_task(
        [4.0, 2.0, 3.0, 9.0, 1.0],
        [5.0, 4.0, 1.0, 1.0, 2.0],
        mask=[True, True, True, False, True],
    )
    # Likes: 4.0, 2.0. Dislikes (unmasked): 3.0, 1.0. Pairs: 4>3 win, 4>1 win, 2<3 loss, 2>1 win.
    assert evaluate(q)["auc"].value == pytest.approx(3 / 4)


@pytest.mark.parametrize("policy", ["expected", "query-order"])
def test_auc_equals_the_count_over_every_pair(policy: str) -> None:
    """The sorted computation of AUC against the definition, pair by pair, with many ties."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        tasks, width = int(rng.integers(1, 6)), int(rng.integers(1, 10))
        predicted = rng.integers(0, 4, size=(tasks, width)).astype(np.float64)
        actual = rng.integers(1, 6, size=(tasks, width)).astype(np.float64)
        mask = rng.random((tasks, width)) < 0.8
        q = Queries(predicted, actual, mask, 4.0, (1.0, 5.0), tie_policy=policy)
        found = evaluate(q, ("auc",))["auc"].per_task
        for t in range(tasks):
            likes = [i for i in range(width) if mask[t, i] and actual[t, i] >= 4.0]
            dislikes = [j for j in range(width) if mask[t, j] and actual[t, j] < 4.0]
            if not likes or not dislikes:
                assert np.isnan(found[t])
                continue
            tie = (lambda i, j: 0.5) if policy == "expected" else (lambda i, j: float(i < j))
            wins = sum(
                1.0 if predicted[t, i] > predicted[t, j] else
                tie(i, j) if predicted[t, i] == predicted[t, j] else 0.0
                for i in likes for j in dislikes
            )  # fmt: skip
            assert found[t] == wins / (len(likes) * len(dislikes))


def test_unscored_tasks_are_counted_per_metric() -> None:
    q = Queries(
        np.array([[3.0, 0.0], [3.0, 2.0], [4.0, 4.0]]),
        np.array([[3.0, 0.0], [4.0, 4.0], [5.0, 2.0]]),
        np.array([[True, False], [True, True], [True, True]]),
        4.0,
        (1.0, 5.0),
    )
    out = evaluate(q)
    # Task 0 has one rating: no NDCG, no AUC. Task 1 has only likes: no AUC.
    assert (out["ndcg@3"].n_scored, out["ndcg@3"].n_unscored) == (2, 1)
    assert (out["auc"].n_scored, out["auc"].n_unscored) == (1, 2)
    assert (out["rmse"].n_scored, out["rmse"].n_unscored) == (3, 0)
    assert np.isnan(out["ndcg@3"].per_task[0]) and np.isnan(out["auc"].per_task[1])
    # A tied pair counts half: task 2 predicts 4.0 for both the like and the dislike.
    assert out["auc"].value == pytest.approx(0.5)


def test_a_batch_without_any_rating_scores_nothing() -> None:
    q = Queries(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3), dtype=bool), 4.0, (1.0, 5.0))
    out = evaluate(q)
    for name in DEFAULT_METRICS:
        assert math.isnan(out[name].value), name
        assert out[name].n_scored == 0 and out[name].n_unscored == 2, name


def test_empty_and_unscorable_batches_raise_no_warnings() -> None:
    q = Queries(
        np.array([[3.0, 0.0], [0.0, 0.0]]),
        np.array([[4.0, 0.0], [0.0, 0.0]]),
        np.array([[True, False], [False, False]]),
        4.0,
        (1.0, 5.0),
    )
    empty = Queries(
        np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2), dtype=bool), 4.0, (1.0, 5.0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, nothing = evaluate(q), evaluate(empty)
    assert out["rmse"].value == pytest.approx(1.0) and math.isnan(out["ndcg@3"].value)
    assert all(math.isnan(v.value) for v in nothing.values())


def test_each_value_names_its_metric() -> None:
    out = evaluate(one_task([1.0, 2.0], [2.0, 4.0]))
    assert {name: value.name for name, value in out.items()} == {n: n for n in DEFAULT_METRICS}


def test_metric_directions() -> None:
    assert not higher_is_better("rmse") and not higher_is_better("mae")
    for name in ("accuracy", "auc", "ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10"):
        assert higher_is_better(name), name
    assert set(DEFAULT_METRICS) <= set(METRICS.names())
    assert [METRICS.get(n).name for n in DEFAULT_METRICS] == list(DEFAULT_METRICS)


# Confidence intervals -------------------------------------------------------------------------

# Two-sided 95% quantiles of Student's t, from a printed table.
T_975 = {1: 12.7062047, 2: 4.30265273, 3: 3.18244631, 4: 2.77644511, 9: 2.26215716}


def test_mean_ci_is_a_student_t_interval() -> None:
    # 1..5: mean 3, sample variance 2.5, standard error sqrt(2.5 / 5).
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == pytest.approx(3.0)
    assert half == pytest.approx(T_975[4] * math.sqrt(2.5 / 5), rel=1e-6)
    assert half == pytest.approx(1.9632, abs=1e-4)
    # Two values: the t-quantile with one degree of freedom is 12.71, not 1.96.
    mean, half = mean_ci([0.0, 1.0])
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(T_975[1] * math.sqrt(0.5 / 2), rel=1e-6)
    mean, half = mean_ci([0.8, 0.9, 1.3])
    assert mean == pytest.approx(1.0)
    assert half == pytest.approx(T_975[2] * math.sqrt(0.07 / 3), rel=1e-6)
    ten = [float(v) for v in range(10)]  # mean 4.5, sample variance 55 / 6
    assert mean_ci(ten)[1] == pytest.approx(T_975[9] * math.sqrt(55 / 6 / 10), rel=1e-6)


def test_mean_ci_ignores_nan_and_needs_two_values() -> None:
    mean, half = mean_ci([float("nan"), 2.0, float("nan"), 4.0, 6.0])
    assert mean == pytest.approx(4.0)
    assert half == pytest.approx(T_975[2] * math.sqrt(4.0 / 3), rel=1e-6)
    mean, half = mean_ci([7.0, float("nan")])
    assert mean == 7.0 and math.isnan(half)
    assert all(math.isnan(v) for v in mean_ci([]))
    assert all(math.isnan(v) for v in mean_ci([float("nan")]))


def test_format_mean_ci() -> None:
    assert format_mean_ci([1.0, 2.0, 3.0, 4.0, 5.0]) == "3.0000 ±1.9632"
    assert format_mean_ci([1.0, 2.0, 3.0, 4.0, 5.0], 2) == "3.00 ±1.96"
    assert format_mean_ci([0.25]) == "0.2500"
    assert format_mean_ci([float("nan")]) == "n/a"
