"""Per-task metrics and their aggregates.

Each metric scores every task (NaN where the task cannot be scored) and aggregates either by
pooling all query ratings (``rmse``, ``mae``, ``accuracy``) or by averaging over the scored tasks
(``ndcg@k``, ``auc``). Tasks that cannot be scored are counted, never dropped silently:

- ``ndcg@k`` needs at least two query ratings (a one-item ranking says nothing);
- ``auc`` needs both a liked and a disliked query rating;
- every metric needs at least one query rating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from bench.registry import Registry

GAINS: dict[str, str] = {
    "exponential": "2^r - 1, as in MeLU",
    "linear": "r",
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

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)


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
    exponent = ratings - min(scale_min, 0.0)
    if kind == "linear":
        return exponent
    if mask is None:
        return np.power(2.0, exponent) - 1.0
    top = np.where(mask, exponent, -np.inf).max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.exp2(exponent - top) - np.exp2(-top)


def ndcg_per_task(q: Queries, k: int) -> np.ndarray:
    """NDCG@k ranking each task's query items by predicted rating (ties keep query order)."""
    width = q.predicted.shape[1]
    lengths = q.lengths
    gains = np.where(q.mask, gain(q.actual, q.rating_scale[0], q.mask, q.gain), 0.0)
    pred = np.where(q.mask, q.predicted, -np.inf)
    by_pred = np.argsort(-pred, axis=1, kind="stable")
    by_gain = np.argsort(-np.where(q.mask, gains, -np.inf), axis=1, kind="stable")
    top = min(k, width)
    discounts = 1.0 / np.log2(np.arange(2, top + 2))
    dcg = (np.take_along_axis(gains, by_pred[:, :top], 1) * discounts).sum(1)
    idcg = (np.take_along_axis(gains, by_gain[:, :top], 1) * discounts).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 1.0)
    out[lengths < 2] = np.nan
    return out


def auc_per_task(q: Queries) -> np.ndarray:
    """Probability that a liked query item is scored above a disliked one (ties count half)."""
    like = (q.actual >= q.like_threshold) & q.mask
    dislike = (q.actual < q.like_threshold) & q.mask
    diff = q.predicted[:, :, None] - q.predicted[:, None, :]
    pair = like[:, :, None] & dislike[:, None, :]
    wins = np.where(pair, (diff > 0) + 0.5 * (diff == 0), 0.0).sum((1, 2))
    pairs = pair.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)


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
            "(gain 2^r - 1 or r: the suite's ndcg_gain), mean over tasks",
        ),
    )
METRICS.register(
    "auc",
    Metric(
        "auc",
        auc_per_task,
        True,
        description="chance a liked query item outranks a disliked one; mean over tasks with both",
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


def higher_is_better(name: str) -> bool:
    return METRICS.get(name).higher_is_better


def evaluate(q: Queries, names: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, MetricValue]:
    return {name: METRICS.get(name)(q) for name in names}
