"""Top-N metrics over a ranked candidate set, with binary relevance.

Every metric is computed per task from the relevance of the items a learner put at ranks 1..K
(:class:`Ranked`) and the task's number of relevant items ``R``; a task with ``R = 0`` is not
scored (NaN, counted as unscored). With ``h_i`` = 1 when the item at rank ``i`` is relevant
(0 past the end of a candidate set shorter than K):

- ``recall@K``    = sum(h_1..h_K) / R (divided by R, not by min(K, R));
- ``precision@K`` = sum(h_1..h_K) / K (K even when fewer than K items are candidates);
- ``hr@K``        = 1 if any of h_1..h_K is 1, else 0;
- ``mrr@K``       = 1 / (rank of the first relevant item) when it is within K, else 0;
- ``map@K``       = sum_i h_i * precision@i / R (trec_eval's ``map_cut``);
- ``ndcg@K``      = sum_i h_i / log2(i + 1), divided by its ideal sum_{i <= min(K, R)} 1 / log2(i + 1).

Names say the candidate set: ``recall@20`` ranks every candidate item (full ranking),
``recall@20/sampled`` the relevant items among sampled negatives. Full-ranking NDCG is
``ndcg@K/full``, because ``ndcg@K`` is the stored name of the in-query NDCG (graded gain over a
task's own query), which tables show as ``ndcg@K/query``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

MEASURES: dict[str, str] = {
    "recall": "share of the task's relevant items in the top K",
    "precision": "share of the top K that is relevant",
    "ndcg": "binary-relevance NDCG of the top K, ideal over min(K, relevant)",
    "hr": "1 when any relevant item is in the top K",
    "mrr": "1 / rank of the first relevant item within the top K, else 0",
    "map": "average precision at the relevant ranks within K, divided by the relevant count",
}
"""The top-N measures, each with one line for ``bench ls``."""

VIEWS: dict[str, str] = {
    "full": "every candidate item of the scenario",
    "sampled": "the task's relevant items among its sampled negatives",
}
DEFAULT_TOP_K: tuple[int, ...] = (10, 20)
DEFAULT_NEGATIVES = 100

_NAME = re.compile(r"^(recall|precision|ndcg|hr|mrr|map)@([1-9][0-9]*)(/full|/sampled)?$")


def topn_name(measure: str, k: int, view: str) -> str:
    """The stored name of a top-N metric: ``recall@20``, ``ndcg@20/full``, ``hr@10/sampled``."""
    if measure not in MEASURES or view not in VIEWS:
        raise ValueError(f"unknown top-N metric {measure!r} over {view!r}")
    if view == "sampled":
        return f"{measure}@{k}/sampled"
    return f"{measure}@{k}/full" if measure == "ndcg" else f"{measure}@{k}"


def parse_topn_name(name: str) -> tuple[str, int, str] | None:
    """``(measure, K, view)`` of a top-N metric name, or None for any other name."""
    match = _NAME.match(name)
    if match is None:
        return None
    measure, k, suffix = match.group(1), int(match.group(2)), match.group(3)
    if measure == "ndcg" and suffix is None:
        return None  # the in-query NDCG
    if measure != "ndcg" and suffix == "/full":
        return None  # full ranking is the bare name
    return measure, k, "sampled" if suffix == "/sampled" else "full"


def is_topn_metric(name: str) -> bool:
    return parse_topn_name(name) is not None


def topn_names(views: Iterable[str], top_k: Iterable[int]) -> tuple[str, ...]:
    """Every top-N metric a suite with these views and cut-offs stores, in a fixed order."""
    return tuple(
        topn_name(m, k, v)
        for v in VIEWS
        if v in set(views)
        for k in sorted(top_k)
        for m in MEASURES
    )


TOPN_SHOWN: tuple[str, ...] = ("recall", "ndcg")
"""The measures a terminal table shows by default, at the largest K, for each view stored."""


def shown_name(metric: str, ranked: bool) -> str:
    """A metric's name in a table: where the table also shows top-N metrics, the in-query NDCG
    is shown as ``ndcg@K/query`` so that no column leaves its candidate set unsaid."""
    if ranked and metric.startswith("ndcg@") and "/" not in metric:
        return f"{metric}/query"
    return metric


def with_topn(shown: Iterable[str], stored: Iterable[str]) -> tuple[str, ...]:
    """``shown`` plus, when it names no top-N metric, recall and NDCG at the largest stored K
    of each view stored."""
    shown = tuple(shown)
    if any(is_topn_metric(m) for m in shown):
        return shown
    parsed = [p for name in set(stored) if (p := parse_topn_name(name))]
    extra = []
    for view in VIEWS:
        ks = [k for m, k, v in parsed if v == view]
        if ks:
            extra += [topn_name(m, max(ks), view) for m in TOPN_SHOWN]
    return shown + tuple(n for n in extra if n in set(stored))


def describe(name: str) -> str:
    parsed = parse_topn_name(name)
    if parsed is None:
        raise ValueError(f"{name!r} is not a top-N metric")
    measure, k, view = parsed
    return f"{MEASURES[measure].replace('K', str(k))}; candidates: {VIEWS[view]}; mean over tasks"


@dataclass(frozen=True)
class Ranked:
    """The outcome of ranking one scenario's tasks: ``hits[t, i]`` is True when the item at rank
    ``i + 1`` of task ``t`` is relevant ([tasks, K], False past a short candidate set),
    ``n_relevant`` and ``n_candidates`` per task."""

    hits: np.ndarray
    n_relevant: np.ndarray
    n_candidates: np.ndarray

    @property
    def depth(self) -> int:
        return int(self.hits.shape[1])


def _checked(ranked: Ranked, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"K must be at least 1, got {k}")
    if k > ranked.depth:
        raise ValueError(f"ranked to depth {ranked.depth}, cannot score @{k}")
    return ranked.hits[:, :k].astype(np.float64)


def _scored(values: np.ndarray, ranked: Ranked) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ranked.n_relevant > 0, values, np.nan)


def _relevant(ranked: Ranked) -> np.ndarray:
    return np.maximum(ranked.n_relevant, 1).astype(np.float64)


def recall(ranked: Ranked, k: int) -> np.ndarray:
    return _scored(_checked(ranked, k).sum(1) / _relevant(ranked), ranked)


def precision(ranked: Ranked, k: int) -> np.ndarray:
    return _scored(_checked(ranked, k).sum(1) / k, ranked)


def hit_rate(ranked: Ranked, k: int) -> np.ndarray:
    return _scored((_checked(ranked, k).sum(1) > 0).astype(np.float64), ranked)


def reciprocal_rank(ranked: Ranked, k: int) -> np.ndarray:
    hits = _checked(ranked, k)
    first = np.argmax(hits > 0, axis=1)
    found = hits.sum(1) > 0
    return _scored(np.where(found, 1.0 / (first + 1), 0.0), ranked)


def average_precision(ranked: Ranked, k: int) -> np.ndarray:
    hits = _checked(ranked, k)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return _scored((hits * precision_at).sum(1) / _relevant(ranked), ranked)


def ndcg(ranked: Ranked, k: int) -> np.ndarray:
    hits = _checked(ranked, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    ideal = ideal_cum[np.minimum(ranked.n_relevant, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scored(dcg / np.where(ideal > 0, ideal, 1.0), ranked)


PER_TASK: dict[str, Callable[[Ranked, int], np.ndarray]] = {
    "recall": recall,
    "precision": precision,
    "ndcg": ndcg,
    "hr": hit_rate,
    "mrr": reciprocal_rank,
    "map": average_precision,
}


@dataclass(frozen=True)
class TopNValue:
    """One top-N metric of one (scenario, k): the mean over scored tasks and the per-task values."""

    name: str
    value: float
    per_task: np.ndarray
    n_scored: int
    n_unscored: int


def evaluate_ranked(ranked: Ranked, view: str, top_k: Iterable[int]) -> list[TopNValue]:
    """Every measure at every cut-off of ``top_k`` for one view's ranking."""
    out = []
    for k in sorted(top_k):
        for measure, per_task in PER_TASK.items():
            values = per_task(ranked, k)
            scored = ~np.isnan(values)
            n = int(scored.sum())
            mean = float(values[scored].mean()) if n else float("nan")
            out.append(TopNValue(topn_name(measure, k, view), mean, values, n, len(values) - n))
    return out
