"""Ranking a task's items by score under an explicit tie policy, and which items are relevant.

Every ranking metric (in-query today; full and sampled candidate rankings reuse the same calls)
ranks items by descending score. Items with equal scores are *tied*, and how ties are ordered can
move a metric a long way: a model that scores every item the same ranks nothing, yet under a fixed
tie-break it earns whatever that order earns. The policy is therefore explicit:

- ``expected`` (default): ties are scored by their exact expectation under a uniformly random
  order among the tied items, so a constant score earns exactly the random floor;
- ``query-order``: tied items keep the order the task lists them in (the harness's rule before
  tie policies existed);
- ``lower-position-first``: tied items go to the lower index of the score vector first, as
  ``torch.topk`` returns them in RecBole and RecBole-MetaRec. Inside a query the index is the
  query position, so it orders exactly as ``query-order`` does; the two differ only where a
  candidate list is stored in another order than it is shown (e.g. by item id).

The building blocks work on ``[tasks, items]`` arrays with a validity mask:

- :func:`position_weights`: each item's (expected) weight when position ``p`` is worth
  ``weights[p]``: enough for any metric that sums a per-position value (DCG, hits);
- :func:`rank_groups`: per task, the tie groups in rank order, for metrics that need the first
  relevant position (MRR, hit rate): closed forms over a group are in :func:`expected_first_hit`;
- :func:`shuffled_expectation`: a metric's expectation over random tie-breaks by seeded shuffles,
  for a metric without a closed form (at least :data:`MIN_SHUFFLES` draws).
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import numpy as np

from bench.protocol.relevance import (
    DEFAULT_RELEVANCE,
    DEFAULT_RELEVANCE_TIES,
    RELEVANCE_KINDS,
    RELEVANCE_TIES,
    THRESHOLD_RELEVANCE,
    RelevanceRule,
)

__all__ = [
    "DEFAULT_RELEVANCE",
    "DEFAULT_RELEVANCE_TIES",
    "DEFAULT_TIE_POLICY",
    "MIN_SHUFFLES",
    "RELEVANCE_KINDS",
    "RELEVANCE_TIES",
    "THRESHOLD_RELEVANCE",
    "TIE_POLICIES",
    "RelevanceRule",
    "check_tie_policy",
    "expected_first_hit",
    "position_weights",
    "rank_groups",
    "rank_order",
    "shuffled_expectation",
]

TIE_POLICIES: dict[str, str] = {
    "expected": "tied items scored by their exact expectation under a random order among them",
    "query-order": "tied items keep the order the task lists them in",
    "lower-position-first": "tied items go to the lower score-vector index first (torch.topk, "
    "RecBole); inside a query the same order as query-order",
}
DEFAULT_TIE_POLICY = "expected"
DETERMINISTIC_POLICIES = ("query-order", "lower-position-first")

MIN_SHUFFLES = 1000


def check_tie_policy(policy: str) -> str:
    if policy not in TIE_POLICIES:
        raise ValueError(f"unknown tie policy {policy!r}; valid: {', '.join(TIE_POLICIES)}")
    return policy


def rank_order(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Item indices by descending score, ties by index, masked items last."""
    keyed = np.where(mask, scores, -np.inf)
    return np.argsort(-keyed, axis=1, kind="stable")


def position_weights(
    scores: np.ndarray, mask: np.ndarray, weights: np.ndarray, policy: str
) -> np.ndarray:
    """Each item's weight ``[tasks, items]`` when the item ranked at position ``p`` (from 0)
    receives ``weights[p]`` (zero past its length); masked items get zero.

    Under ``expected`` a tied group of items that occupies positions ``a..b`` shares the mean of
    ``weights[a..b]``: the exact expectation over the orders of the group. Under the other
    policies each item gets the weight of its position in the deterministic order.
    """
    check_tie_policy(policy)
    n_tasks, width = scores.shape
    full = np.zeros(width)
    full[: min(width, len(weights))] = weights[:width]
    order = rank_order(scores, mask)
    if policy == DEFAULT_TIE_POLICY:
        ranked = np.take_along_axis(np.where(mask, scores, -np.inf), order, axis=1)
        ranked_mask = np.take_along_axis(mask, order, axis=1)
        # A new group starts where the score or validity changes.
        starts = np.ones((n_tasks, width), dtype=bool)
        starts[:, 1:] = (ranked[:, 1:] != ranked[:, :-1]) | (
            ranked_mask[:, 1:] != ranked_mask[:, :-1]
        )
        pos = np.broadcast_to(np.arange(width), (n_tasks, width))
        first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
        ends = np.ones((n_tasks, width), dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        last = np.minimum.accumulate(np.where(ends, pos, width - 1)[:, ::-1], axis=1)[:, ::-1]
        cumulative = np.concatenate([[0.0], np.cumsum(full)])
        per_rank = (cumulative[last + 1] - cumulative[first]) / (last - first + 1)
    else:
        per_rank = np.broadcast_to(full, (n_tasks, width))
    out = np.zeros((n_tasks, width))
    np.put_along_axis(out, order, per_rank, axis=1)
    return np.where(mask, out, 0.0)


def rank_groups(scores: np.ndarray, mask: np.ndarray, policy: str) -> list[list[np.ndarray]]:
    """Per task, its valid items as groups in rank order: tied items form one group under
    ``expected``; every item is its own group under a deterministic policy."""
    check_tie_policy(policy)
    order = rank_order(scores, mask)
    out = []
    for row, items in enumerate(order):
        items = items[: int(mask[row].sum())]
        if policy != DEFAULT_TIE_POLICY or len(items) == 0:
            out.append([items[i : i + 1] for i in range(len(items))])
            continue
        values = scores[row, items]
        cuts = np.flatnonzero(values[1:] != values[:-1]) + 1
        out.append(np.split(items, cuts))
    return out


def expected_first_hit(
    groups: list[np.ndarray], relevant: np.ndarray, value: Callable[[int], float], k: int
) -> float:
    """The expectation of ``value(p)`` at the position ``p`` of the first relevant item, zero when
    none lies in the top ``k``; each group's order is uniformly random.

    Among ``g`` tied items of which ``r`` are relevant, the first relevant one is the ``j``-th of
    the group (from 0) with probability ``C(g-1-j, r-1) / C(g, r)``.
    """
    start = 0
    for group in groups:
        if start >= k:
            return 0.0
        size, hits = len(group), int(relevant[group].sum())
        if hits:
            total = comb(size, hits)
            return sum(
                comb(size - 1 - j, hits - 1) / total * value(start + j)
                for j in range(size - hits + 1)
                if start + j < k
            )
        start += size
    return 0.0


def shuffled_expectation(
    per_task: Callable[[np.ndarray], np.ndarray],
    scores: np.ndarray,
    mask: np.ndarray,
    seed: int = 0,
    draws: int = MIN_SHUFFLES,
) -> np.ndarray:
    """The mean of ``per_task(scores')`` over ``draws`` seeded random tie-breaks, where ``scores'``
    orders tied items at random and keeps every strict order: for a metric without a closed form.

    ``per_task`` must rank by descending score with ties by index (a deterministic policy).
    """
    if draws < MIN_SHUFFLES:
        raise ValueError(f"a shuffled expectation needs at least {MIN_SHUFFLES} draws, got {draws}")
    rng = np.random.default_rng(seed)
    order = rank_order(scores, mask)
    ranked = np.take_along_axis(np.where(mask, scores, -np.inf), order, axis=1)
    # Dense ranks of the distinct scores: a tie-break key in (0, 1) can then never cross groups.
    dense = np.zeros(scores.shape)
    dense[:, 1:] = np.cumsum(ranked[:, 1:] != ranked[:, :-1], axis=1)
    level = np.zeros(scores.shape)
    np.put_along_axis(level, order, -dense, axis=1)
    total = np.zeros(scores.shape[0])
    for _ in range(draws):
        total += per_task(level + 0.5 * rng.random(scores.shape))
    return total / draws
