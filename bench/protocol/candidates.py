"""Candidate sets for ranking the catalogue: per scenario and task, the items a learner ranks and
which of them are relevant.

Tasks are seen from the user side (``task_axis = "user"``):

| scenario                        | the task's candidates                                      |
|---------------------------------|------------------------------------------------------------|
| ``warm``, ``user_cold``         | every item of the catalogue but the user's training and support items |
| ``item_cold``, ``user_item_cold`` | every new item of the split but the task's support items |

Relevant items are the task's query items rated at or above the split's like threshold; a task
without one is not scored by the top-N metrics (and counted as such). Query items are never
training or support items of their task, so every relevant item is a candidate.

Sampled ranking ranks each task's relevant items among ``negatives`` items drawn, without
replacement, from its candidates that are not relevant (all of them where fewer are left). They
are drawn once per split seed, scenario and support size from the ``negatives`` stream of the
seed tree, so every learner and every run of the seed ranks the same ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import ConfigError
from bench.protocol.base import SCENARIO_NEWNESS

if TYPE_CHECKING:  # imports torch: not needed to check a suite
    from bench.protocol.episodes import MetaTrain, TaskBatch

RANKING_VIEWS: tuple[str, ...] = ("query", "full", "sampled")
"""``query``: each task's own query (the in-query metrics); ``full``: every candidate item;
``sampled``: the relevant items among sampled negatives."""


MAX_NEGATIVES = 100_000
"""At most this many sampled negatives per task (they are held as a tasks x N array)."""
MAX_TOP_K = 10_000
"""The deepest cut-off: a top-K is held per task while ranking."""


@dataclass(frozen=True, eq=False)
class CandidateSets:
    """One scenario's candidate sets at one support size.

    ``pool`` lists the items any task of the scenario may rank (sorted). A task ranks the pool
    minus ``excluded[t]`` (its training and support items that lie in the pool); ``relevant[t]``
    holds its liked query items. ``negatives`` is ``[tasks, N]`` of sampled items, -1 padding a
    task with fewer than N non-relevant candidates; None when sampled ranking is not asked for.
    """

    scenario: str
    pool: np.ndarray
    excluded: tuple[np.ndarray, ...]
    relevant: tuple[np.ndarray, ...]
    negatives: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.relevant)

    @property
    def n_candidates(self) -> np.ndarray:
        """How many items each task ranks under full ranking."""
        return len(self.pool) - np.array([len(e) for e in self.excluded], dtype=np.int64)

    @property
    def n_relevant(self) -> np.ndarray:
        return np.array([len(r) for r in self.relevant], dtype=np.int64)

    def candidates(self, t: int) -> np.ndarray:
        """Task ``t``'s full-ranking candidates (sorted item ids)."""
        return np.setdiff1d(self.pool, self.excluded[t], assume_unique=True)

    def sampled(self, t: int) -> np.ndarray:
        """Task ``t``'s sampled-ranking candidates: its relevant items, then its negatives."""
        if self.negatives is None:
            raise ValueError("these candidate sets hold no sampled negatives")
        row = self.negatives[t]
        return np.concatenate([self.relevant[t], row[row >= 0]])

    def negatives_digest(self) -> str:
        """A short hash of the sampled negatives (the same for every learner of a split seed)."""
        if self.negatives is None:
            return ""
        return hashlib.sha256(np.ascontiguousarray(self.negatives).tobytes()).hexdigest()[:16]


def resolve_views(
    ranking: tuple[str, ...] | None, *, synthetic: bool, task_axis: str
) -> tuple[str, ...]:
    """A suite's ranking views, or where it sets none the default: ``query`` and ``full`` on real
    data with user tasks; ``query`` alone on synthetic data (its suites are quick checks whose
    stored baselines rank in-query) and on item tasks (which rank users, not the catalogue)."""
    if ranking is not None:
        return ranking
    return ("query",) if synthetic or task_axis != "user" else ("query", "full")


def check_ranking(
    ranking: tuple[str, ...], negatives: int, top_k: tuple[int, ...], where: str
) -> None:
    """Check a suite's ``ranking``, ``negatives`` and ``top_k``; errors name ``where``."""
    unknown = [v for v in ranking if v not in RANKING_VIEWS]
    if unknown:
        raise ConfigError(
            f"{where}: 'ranking' has unknown view(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(RANKING_VIEWS)}"
        )
    if not ranking:
        raise ConfigError(
            f"{where}: 'ranking' is empty; give at least one of {', '.join(RANKING_VIEWS)}"
        )
    if len(set(ranking)) < len(ranking):
        raise ConfigError(f"{where}: 'ranking' lists a view twice: {list(ranking)}")
    if (
        isinstance(negatives, bool)
        or not isinstance(negatives, int)
        or not 1 <= negatives <= MAX_NEGATIVES
    ):
        raise ConfigError(
            f"{where}: 'negatives' must be a whole number from 1 to {MAX_NEGATIVES:,}, got {negatives!r}"
        )
    if not top_k:
        raise ConfigError(f"{where}: 'top_k' is empty; give cut-offs such as [10, 20]")
    for k in top_k:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
            raise ConfigError(
                f"{where}: 'top_k' entries must be whole numbers from 1 to {MAX_TOP_K:,}, got {k!r}"
            )
    if len(set(top_k)) < len(top_k):
        raise ConfigError(f"{where}: 'top_k' lists a cut-off twice: {list(top_k)}")


def candidate_pool(scenario: str, n_items: int, new_items: np.ndarray) -> np.ndarray:
    """The items a scenario's tasks rank from: the whole catalogue, or the split's new items."""
    _, pool_is_new = SCENARIO_NEWNESS[scenario]
    return np.flatnonzero(new_items) if pool_is_new else np.arange(n_items, dtype=np.int64)


def items_by_user(
    user: np.ndarray, item: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training items grouped by user: ``(items, starts)`` with user u's at ``starts[u]:starts[u+1]``."""
    order = np.argsort(user, kind="stable")
    starts = np.searchsorted(user[order], np.arange(n_users + 1))
    return item[order], starts


def task_candidate_sets(
    scenario: str,
    tasks: TaskBatch,
    train: MetaTrain,
    *,
    n_items: int,
    n_users: int,
    new_items: np.ndarray,
    negatives: int | None = None,
    seed: int | None = None,
    k_label: str = "",
) -> CandidateSets:
    """:func:`build_candidate_sets` of a labelled task batch on the training view it is ranked
    against (what the runner ranks; a benchmark may pass a sample of a scenario's tasks)."""
    assert tasks.query_ratings is not None, "candidate sets need the tasks' query labels"
    return build_candidate_sets(
        scenario,
        axis=tasks.axis,
        n_items=n_items,
        new_items=new_items,
        train_user=train.user,
        train_item=train.item,
        n_users=n_users,
        task_users=tasks.entities.numpy(),
        support_items=tasks.support_items.numpy(),
        support_mask=tasks.support_mask.numpy(),
        query_items=tasks.query_items.numpy(),
        query_ratings=tasks.query_ratings.numpy(),
        query_mask=tasks.query_mask.numpy(),
        like_threshold=train.like_threshold,
        negatives=negatives,
        seed=seed,
        k_label=k_label,
    )


def build_candidate_sets(
    scenario: str,
    *,
    axis: str,
    n_items: int,
    new_items: np.ndarray,
    train_user: np.ndarray,
    train_item: np.ndarray,
    n_users: int,
    task_users: np.ndarray,
    support_items: np.ndarray,
    support_mask: np.ndarray,
    query_items: np.ndarray,
    query_ratings: np.ndarray,
    query_mask: np.ndarray,
    like_threshold: float,
    negatives: int | None = None,
    seed: int | None = None,
    k_label: str = "",
) -> CandidateSets:
    """The candidate sets of one scenario's tasks (user tasks only).

    ``support_*`` and ``query_*`` are the tasks' padded ``[tasks, width]`` arrays; ``negatives``
    and ``seed`` ask for sampled negatives, drawn from the seed's ``negatives`` stream.
    """
    if axis != "user":
        raise ConfigError(
            "ranking the catalogue ('full' or 'sampled') needs user tasks (task_axis = 'user'); "
            f"this split's tasks are {axis}s"
        )
    pool = candidate_pool(scenario, n_items, new_items)
    in_pool = np.zeros(n_items, dtype=bool)
    in_pool[pool] = True
    trained, starts = items_by_user(train_user, train_item, n_users)
    excluded, relevant = [], []
    for t, user in enumerate(task_users):
        seen = np.concatenate(
            [trained[starts[user] : starts[user + 1]], support_items[t][support_mask[t]]]
        )
        excluded.append(np.unique(seen[in_pool[seen]]))
        liked = query_mask[t] & (query_ratings[t] >= like_threshold)
        relevant.append(np.unique(query_items[t][liked]))
    drawn = None
    if negatives is not None:
        if seed is None:
            raise ValueError("sampled negatives need the split's seed")
        from bench.seeding import Seeds  # imports torch: not needed to check a suite

        rng = Seeds(seed).numpy("negatives", scenario, k_label)
        drawn = np.full((len(task_users), negatives), -1, dtype=np.int64)
        for t in range(len(task_users)):
            drawn[t] = _draw_negatives(rng, pool, in_pool, excluded[t], relevant[t], negatives)
    return CandidateSets(scenario, pool, tuple(excluded), tuple(relevant), drawn)


def _draw_negatives(
    rng: np.random.Generator,
    pool: np.ndarray,
    in_pool: np.ndarray,
    excluded: np.ndarray,
    relevant: np.ndarray,
    n: int,
) -> np.ndarray:
    """``n`` distinct candidates of one task that are not relevant, in a random order (padded
    with -1 where fewer exist). Draws enough pool positions to cover what is ruled out, so a
    large catalogue is never shuffled whole."""
    ruled_out = np.concatenate([excluded, relevant[in_pool[relevant]]])
    available = len(pool) - len(np.unique(ruled_out))
    want = min(n, available)
    out = np.full(n, -1, dtype=np.int64)
    if want <= 0:
        return out
    size = min(len(pool), want + len(ruled_out))
    picked = pool[rng.choice(len(pool), size=size, replace=False)]
    picked = picked[~np.isin(picked, ruled_out)][:want]
    out[: len(picked)] = picked
    return out
