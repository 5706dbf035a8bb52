"""Metric values against hand-computed cases, and properties that must hold for any input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bench.evaluation.metrics import Queries, evaluate

SCALE = (1.0, 5.0)


def q(
    pred: list[list[float]],
    actual: list[list[float]],
    mask: list[list[bool]] | None = None,
    threshold: float = 4.0,
    scale: tuple[float, float] = SCALE,
) -> Queries:
    p, a = np.asarray(pred, dtype=float), np.asarray(actual, dtype=float)
    m = np.ones_like(p, dtype=bool) if mask is None else np.asarray(mask)
    return Queries(p, a, m, threshold, scale)


def test_rmse_and_mae_pool_over_all_ratings() -> None:
    out = evaluate(
        q([[3, 4, 0], [5, 5, 5]], [[4, 4, 9], [2, 5, 5]], [[True, True, False], [True, True, True]])
    )
    # Errors: 1, 0, (masked), 3, 0, 0 -> squared 1, 0, 9, 0, 0.
    assert out["rmse"].value == pytest.approx(math.sqrt(10 / 5))
    assert out["mae"].value == pytest.approx(4 / 5)
    assert out["rmse"].per_task == pytest.approx([math.sqrt(0.5), math.sqrt(3.0)])


def test_ndcg_uses_exponential_gain_and_predicted_order() -> None:
    # Predicted order: item 1 (r=3), item 0 (r=5), item 2 (r=1).
    out = evaluate(q([[4.0, 4.5, 1.0]], [[5.0, 3.0, 1.0]]))
    gains = [2**3 - 1, 2**5 - 1, 2**1 - 1]
    dcg = gains[0] / math.log2(2) + gains[1] / math.log2(3) + gains[2] / math.log2(4)
    ideal = 31 / math.log2(2) + 7 / math.log2(3) + 1 / math.log2(4)
    assert out["ndcg@10"].value == pytest.approx(dcg / ideal)
    assert out["ndcg@1"].value == pytest.approx(7 / 31)
    assert out["ndcg@3"].value == pytest.approx(dcg / ideal)


def test_accuracy_uses_like_threshold_minus_half() -> None:
    # like = rating >= 4; predicted like = prediction >= 3.5.
    out = evaluate(q([[3.5, 3.4, 4.9, 1.0]], [[4, 4, 2, 1]]))
    assert out["accuracy"].value == pytest.approx(2 / 4)


def test_auc_counts_ties_as_half() -> None:
    out = evaluate(q([[4.0, 3.0, 3.0, 1.0]], [[5, 4, 2, 1]]))
    # Pairs (like, dislike): (4.0 vs 3.0) win, (4.0 vs 1.0) win, (3.0 vs 3.0) tie, (3.0 vs 1.0) win.
    assert out["auc"].value == pytest.approx(3.5 / 4)


def test_unscorable_tasks_are_counted_not_dropped() -> None:
    out = evaluate(
        q(
            [[4.0, 0.0], [3.0, 2.0], [1.0, 1.0]],
            [[5.0, 0.0], [5.0, 4.0], [1.0, 2.0]],
            [[True, False], [True, True], [False, False]],
        )
    )
    assert out["ndcg@3"].n_scored == 1 and out["ndcg@3"].n_unscored == 2
    assert out["auc"].n_unscored == 3  # one class only, or no ratings at all
    assert out["rmse"].n_unscored == 1
    assert np.isnan(out["rmse"].per_task[2])


def test_negative_scales_keep_gains_non_negative() -> None:
    out = evaluate(q([[-1.0, 2.0]], [[-3.0, 3.0]], threshold=1.0, scale=(-3.0, 3.0)))
    assert out["ndcg@3"].value == pytest.approx(1.0)
    swapped = evaluate(q([[2.0, -1.0]], [[-3.0, 3.0]], threshold=1.0, scale=(-3.0, 3.0)))
    assert 0.0 <= swapped["ndcg@3"].value < 1.0


ratings = st.integers(1, 5).map(float)


@st.composite
def query_sets(draw: st.DrawFn) -> Queries:
    tasks = draw(st.integers(1, 6))
    width = draw(st.integers(2, 8))
    actual = draw(arrays(float, (tasks, width), elements=ratings))
    pred = draw(arrays(float, (tasks, width), elements=st.floats(0.5, 5.5)))
    mask = draw(arrays(bool, (tasks, width), elements=st.booleans()))
    mask[:, 0] = True
    return Queries(pred, actual, mask, 4.0, SCALE)


@given(query_sets())
@settings(max_examples=60, deadline=None)
def test_properties_hold_for_any_queries(queries: Queries) -> None:
    out = evaluate(queries)
    assert out["rmse"].value >= out["mae"].value - 1e-12
    for name in ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "accuracy", "auc"):
        scored = out[name].per_task[~np.isnan(out[name].per_task)]
        assert ((scored >= -1e-12) & (scored <= 1 + 1e-12)).all(), name


@given(query_sets())
@settings(max_examples=40, deadline=None)
def test_perfect_predictions_score_perfectly(queries: Queries) -> None:
    perfect = Queries(queries.actual, queries.actual, queries.mask, 4.0, SCALE)
    out = evaluate(perfect)
    assert out["rmse"].value == pytest.approx(0.0)
    assert out["accuracy"].value == pytest.approx(1.0)
    for name in ("ndcg@1", "ndcg@3", "ndcg@10"):
        assert np.nanmin(np.append(out[name].per_task, 1.0)) == pytest.approx(1.0)


@given(query_sets(), st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None)
def test_task_order_does_not_change_pooled_metrics(queries: Queries, rnd) -> None:
    order = list(range(queries.predicted.shape[0]))
    rnd.shuffle(order)
    shuffled = Queries(
        queries.predicted[order], queries.actual[order], queries.mask[order], 4.0, SCALE
    )
    a, b = evaluate(queries), evaluate(shuffled)
    for name in ("rmse", "mae", "accuracy", "ndcg@3"):
        assert a[name].value == pytest.approx(b[name].value, nan_ok=True)


def test_wide_scales_do_not_overflow_ndcg() -> None:
    narrow = evaluate(q([[3.0, 1.0, 2.0]], [[2.0, 3.0, 1.0]]))
    wide = evaluate(
        q([[3.0, 1.0, 2.0]], [[2000.0, 3000.0, 1000.0]], threshold=2500.0, scale=(0.0, 5000.0))
    )
    assert np.isfinite(wide["ndcg@3"].value)
    assert 0.0 < wide["ndcg@3"].value < 1.0
    assert narrow["ndcg@3"].value < 1.0


def test_like_margin_scales_with_the_rating_scale() -> None:
    # On 0-1 with threshold 0.75 the margin is 1/8: 0.63 is a predicted like, 0.6 is not.
    out = evaluate(q([[0.63, 0.6]], [[0.8, 0.8]], threshold=0.75, scale=(0.0, 1.0)))
    assert out["accuracy"].value == pytest.approx(0.5)
