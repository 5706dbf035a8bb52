"""Per-task metrics and their aggregates.

Each metric scores every task (NaN where the task cannot be scored) and aggregates either by
pooling all query ratings (``rmse``, ``mae``, ``accuracy``) or by averaging over the scored tasks
(``ndcg@k``, ``auc``, the ``…@k/query`` hit metrics). Tasks that cannot be scored are counted,
never dropped silently:

- a ranking metric needs at least two query ratings (a one-item ranking says nothing);
- ``precision``/``recall``/``hit``/``mrr@k/query`` also need a relevant query item;
- ``auc`` needs both a relevant and a non-relevant query rating;
- every metric needs at least one query rating.

Every ranking metric orders items under the queries' tie policy and decides relevance by the
protocol's relevance rule (:mod:`bench.evaluation.ranking`). ``tied_share`` is not a quality
metric: the share of tasks whose query predictions are all equal (a degenerate model scores 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from bench.evaluation.ranking import (
    DEFAULT_TIE_POLICY,
    THRESHOLD_RELEVANCE,
    RelevanceRule,
    check_tie_policy,
    expected_first_hit,
    position_weights,
    rank_groups,
)
from bench.registry import Registry

RANKING_VERSION = 2
"""Version 2: ties in the predictions follow an explicit tie policy (``expected`` by default);
version 1 kept query order."""

GAINS: dict[str, str] = {
    "exponential": "2^r - 1, as in MeLU",
    "linear": "r",
    "binary": "1 for a relevant item (the protocol's relevance rule), else 0, as in RecBole",
}
"""NDCG gains a suite may choose (``ndcg_gain``), with how each turns a rating ``r`` into gain.

Either is shifted to start at zero on scales that reach below zero. The exponential gain lets the
top-rated item dominate the ideal DCG on wide scales; the linear gain weighs ratings as they are.
"""
DEFAULT_GAIN = "exponential"


@dataclass(frozen=True)
class Queries:
    """Predictions and labels ``[tasks, query_len]`` with a validity mask."""

    predicted: np.ndarray
    actual: np.ndarray
    mask: np.ndarray
    like_threshold: float
    rating_scale: tuple[float, float]
    gain: str = DEFAULT_GAIN
    """The NDCG gain, a key of :data:`GAINS`."""
    tie_policy: str = DEFAULT_TIE_POLICY
    """How ranking metrics order tied predictions (:data:`bench.evaluation.ranking.TIE_POLICIES`)."""
    relevance: RelevanceRule = THRESHOLD_RELEVANCE
    """Which query items are relevant, for the metrics that need a yes or no."""

    def __post_init__(self) -> None:
        check_tie_policy(self.tie_policy)

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    @property
    def relevant(self) -> np.ndarray:
        return self.relevance.relevant(self.actual, self.mask, self.like_threshold)


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float
    per_task: np.ndarray
    n_scored: int
    n_unscored: int


@dataclass(frozen=True)
class Metric:
    """A metric: a per-task function plus how it aggregates."""

    name: str
    per_task: Callable[[Queries], np.ndarray]
    higher_is_better: bool
    pooled: Callable[[Queries], float] | None = None
    description: str = ""
    """One line for ``bench ls``."""

    def __call__(self, q: Queries) -> MetricValue:
        values = self.per_task(q)
        scored = ~np.isnan(values)
        n_scored = int(scored.sum())
        if self.pooled is not None:
            value = self.pooled(q) if q.mask.any() else float("nan")
        else:
            value = float(values[scored].mean()) if n_scored else float("nan")
        return MetricValue(self.name, value, values, n_scored, len(values) - n_scored)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=1)
    sums = np.where(mask, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _sq_err(q: Queries) -> np.ndarray:
    return (q.predicted - q.actual) ** 2


def rmse_per_task(q: Queries) -> np.ndarray:
    return np.sqrt(_masked_mean(_sq_err(q), q.mask))


def rmse_pooled(q: Queries) -> float:
    return float(np.sqrt(_sq_err(q)[q.mask].mean()))


def mae_per_task(q: Queries) -> np.ndarray:
    return _masked_mean(np.abs(q.predicted - q.actual), q.mask)


def mae_pooled(q: Queries) -> float:
    return float(np.abs(q.predicted - q.actual)[q.mask].mean())


def like_margin(rating_scale: tuple[float, float]) -> float:
    """How far below the like threshold a prediction still counts as a predicted like: half a
    star on a 1-5 scale, the same fraction (an eighth of the span) on other scales."""
    return (rating_scale[1] - rating_scale[0]) / 8.0


def _correct(q: Queries) -> np.ndarray:
    actual_like = q.actual >= q.like_threshold
    predicted_like = q.predicted >= q.like_threshold - like_margin(q.rating_scale)
    return (actual_like == predicted_like).astype(np.float64)


def accuracy_per_task(q: Queries) -> np.ndarray:
    return _masked_mean(_correct(q), q.mask)


def accuracy_pooled(q: Queries) -> float:
    return float(_correct(q)[q.mask].mean())


def gain(
    ratings: np.ndarray,
    scale_min: float,
    mask: np.ndarray | None = None,
    kind: str = DEFAULT_GAIN,
) -> np.ndarray:
    """The NDCG gain of each rating: ``2^r - 1`` (``exponential``, as in the MeLU paper) or ``r``
    (``linear``); scales reaching below zero are shifted to start at zero.

    With ``mask``, each row's exponential gains are divided by ``2^max(r)`` of that row: NDCG is a
    ratio, so this leaves it unchanged while keeping wide rating scales from overflowing.
    """
    if kind not in GAINS:
        raise ValueError(f"unknown NDCG gain {kind!r}; valid: {', '.join(GAINS)}")
    if kind == "binary":
        raise ValueError("the binary NDCG gain comes from relevance, not from a rating")
    exponent = ratings - min(scale_min, 0.0)
    if kind == "linear":
        return exponent
    if mask is None:
        return np.power(2.0, exponent) - 1.0
    top = np.where(mask, exponent, -np.inf).max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.exp2(exponent - top) - np.exp2(-top)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_per_task(q: Queries, k: int) -> np.ndarray:
    """NDCG@k ranking each task's query items by prediction, ties under ``q.tie_policy``."""
    lengths = q.lengths
    if q.gain == "binary":
        gains = q.relevant.astype(np.float64)
    else:
        gains = np.where(q.mask, gain(q.actual, q.rating_scale[0], q.mask, q.gain), 0.0)
    discounts = _discounts(min(k, q.predicted.shape[1]))
    dcg = (gains * position_weights(q.predicted, q.mask, discounts, q.tie_policy)).sum(1)
    # The ideal order does not depend on how equal gains are ordered.
    ideal = -np.sort(-gains, axis=1)[:, : len(discounts)]
    idcg = (ideal * discounts[: ideal.shape[1]]).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 1.0)
    out[lengths < 2] = np.nan
    return out


def _with_relevant(q: Queries, values: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """``values`` where the task can be scored by a hit metric, else NaN."""
    return np.where((q.lengths >= 2) & relevant.any(axis=1), values, np.nan)


def _hits(q: Queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    relevant = q.relevant
    inside = position_weights(q.predicted, q.mask, np.ones(k), q.tie_policy)
    return (inside * relevant).sum(1), relevant


def precision_per_task(q: Queries, k: int) -> np.ndarray:
    """Relevant items in the top k, divided by k (RecBole's Precision@K)."""
    hits, relevant = _hits(q, k)
    return _with_relevant(q, hits / k, relevant)


def recall_per_task(q: Queries, k: int) -> np.ndarray:
    """Relevant items in the top k, divided by the task's relevant items."""
    hits, relevant = _hits(q, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _with_relevant(q, hits / relevant.sum(1), relevant)


def _first_hit(q: Queries, k: int, value: Callable[[int], float]) -> np.ndarray:
    relevant = q.relevant
    groups = rank_groups(q.predicted, q.mask, q.tie_policy)
    values = [expected_first_hit(g, r, value, k) for g, r in zip(groups, relevant, strict=True)]
    return _with_relevant(q, np.asarray(values, dtype=np.float64), relevant)


def hit_per_task(q: Queries, k: int) -> np.ndarray:
    """1 when a relevant item is in the top k, else 0 (its probability under ``expected``)."""
    return _first_hit(q, k, lambda _: 1.0)


def mrr_per_task(q: Queries, k: int) -> np.ndarray:
    """1 / rank of the first relevant item, 0 beyond the top k (its expectation under
    ``expected``)."""
    return _first_hit(q, k, lambda position: 1.0 / (position + 1))


def tied_per_task(q: Queries) -> np.ndarray:
    """1 when every query prediction of the task is equal, else 0; NaN under two items."""
    low = np.where(q.mask, q.predicted, np.inf).min(axis=1)
    high = np.where(q.mask, q.predicted, -np.inf).max(axis=1)
    return np.where(q.lengths >= 2, (low == high).astype(np.float64), np.nan)


def auc_per_task(q: Queries) -> np.ndarray:
    """Probability that a relevant query item is scored above a non-relevant one; a tie counts
    half under ``expected``, and for the item listed first under a deterministic policy."""
    like = q.relevant
    dislike = ~like & q.mask
    pairs = like.sum(1) * dislike.sum(1)
    if np.isfinite(q.predicted[q.mask]).all():
        wins = _auc_wins_sorted(q, like, dislike)
    else:  # NaN and infinite scores compare as the pairwise differences do
        wins = _auc_wins_pairwise(q, like, dislike)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)


def _auc_wins_pairwise(q: Queries, like: np.ndarray, dislike: np.ndarray) -> np.ndarray:
    """Per task, the (relevant, non-relevant) pairs the relevant item wins, from every pair's
    difference: ``[tasks, items, items]``, so for short queries or scores that are not finite."""
    diff = q.predicted[:, :, None] - q.predicted[:, None, :]
    pair = like[:, :, None] & dislike[:, None, :]
    if q.tie_policy == DEFAULT_TIE_POLICY:
        tie_win = np.full(diff.shape[1:], 0.5)
    else:
        positions = np.arange(diff.shape[1])
        tie_win = (positions[:, None] < positions[None, :]).astype(np.float64)
    return np.asarray(np.where(pair, (diff > 0) + tie_win * (diff == 0), 0.0).sum((1, 2)))


def _auc_wins_sorted(q: Queries, like: np.ndarray, dislike: np.ndarray) -> np.ndarray:
    """The wins of :func:`_auc_wins_pairwise` for finite scores, from one sort of each task's
    items instead of every pair (a task of L items costs L log L, not L squared): a relevant item
    wins against each non-relevant one below it and half of those tied with it (under
    ``expected``); under a deterministic policy an item listed later sorts below an equal score
    listed earlier. Wins are counts of halves, so their sums are exact and equal the pairwise ones."""
    rows, cols = np.nonzero(q.mask)
    values = q.predicted[rows, cols]
    if q.tie_policy == DEFAULT_TIE_POLICY:
        order = np.lexsort((values, rows))
    else:
        order = np.lexsort((-cols, values, rows))
    rows, values = rows[order], values[order]
    is_like, is_dislike = like[rows, cols[order]], dislike[rows, cols[order]]
    n = len(rows)
    # below[i]: non-relevant items sorted before position i, over all tasks so far.
    below = np.concatenate(([0], np.cumsum(is_dislike)))
    row_start = np.searchsorted(rows, rows, side="left")
    first = np.ones(n, dtype=bool)  # the first item of a run of equal scores in one task
    if q.tie_policy == DEFAULT_TIE_POLICY:
        first[1:] = (rows[1:] != rows[:-1]) | (values[1:] != values[:-1])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)
    run = np.cumsum(first) - 1
    lower = below[starts[run]] - below[row_start]
    tied = below[ends[run]] - below[starts[run]]
    won = lower + 0.5 * tied
    return np.bincount(rows[is_like], weights=won[is_like], minlength=q.mask.shape[0])


METRICS: Registry[Metric] = Registry("metric")
_POOLED = "pooled over all query ratings"
METRICS.register(
    "rmse", Metric("rmse", rmse_per_task, False, rmse_pooled, f"root mean squared error, {_POOLED}")
)
METRICS.register(
    "mae", Metric("mae", mae_per_task, False, mae_pooled, f"mean absolute error, {_POOLED}")
)
METRICS.register(
    "accuracy",
    Metric(
        "accuracy",
        accuracy_per_task,
        True,
        accuracy_pooled,
        f"like/dislike agreement (predicted like: at least threshold - span/8), {_POOLED}",
    ),
)
for _k in (1, 3, 5, 10):
    METRICS.register(
        f"ndcg@{_k}",
        Metric(
            f"ndcg@{_k}",
            partial(ndcg_per_task, k=_k),
            True,
            description=f"NDCG of the top {_k} of a task's query items ranked by prediction "
            "(gain 2^r - 1, r or binary: the suite's ndcg_gain), mean over tasks",
        ),
    )
_IN_QUERY = "of a task's query items ranked by prediction; relevance: the protocol's rule"
for _k in (1, 3, 5, 10):
    for _name, _fn, _what in (
        ("precision", precision_per_task, "relevant items in the top {k} / {k}"),
        ("recall", recall_per_task, "relevant items in the top {k} / relevant items"),
        ("hit", hit_per_task, "1 if a relevant item is in the top {k}"),
        ("mrr", mrr_per_task, "1 / rank of the first relevant item within the top {k}"),
    ):
        METRICS.register(
            f"{_name}@{_k}/query",
            Metric(
                f"{_name}@{_k}/query",
                partial(_fn, k=_k),
                True,
                description=f"{_what.format(k=_k)}, {_IN_QUERY}, mean over tasks",
            ),
        )
METRICS.register(
    "tied_share",
    Metric(
        "tied_share",
        tied_per_task,
        False,
        description="share of tasks whose query predictions are all equal (recorded in every cell)",
    ),
)
METRICS.register(
    "auc",
    Metric(
        "auc",
        auc_per_task,
        True,
        description="chance a relevant query item outranks another; mean over tasks with both",
    ),
)

DEFAULT_METRICS: tuple[str, ...] = (
    "rmse",
    "mae",
    "ndcg@1",
    "ndcg@3",
    "ndcg@5",
    "ndcg@10",
    "accuracy",
    "auc",
)


ALWAYS_RECORDED: tuple[str, ...] = ("tied_share",)
"""Recorded in every evaluation whatever the suite's metrics, to flag degenerate predictions."""


def recorded_metrics(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics an evaluation records: the suite's, then those always recorded."""
    return (*metrics, *(m for m in ALWAYS_RECORDED if m not in metrics))


def is_ranking_metric(name: str) -> bool:
    """Whether the metric's value depends on the order of the predictions (so on ties)."""
    return "@" in name or name == "auc"


def higher_is_better(name: str) -> bool:
    return METRICS.get(name).higher_is_better


def evaluate(q: Queries, names: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, MetricValue]:
    return {name: METRICS.get(name)(q) for name in names}
