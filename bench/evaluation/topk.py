"""Chunked top-K over candidate sets: a learner's scores are turned into the relevance of its top
K items per task without ever holding a tasks x items matrix larger than a memory budget.

Ties are broken by a seeded pseudo-random order of (task entity, item): scores are compared
first, then a 31-bit key hashed from the tie seed, the task's entity and the item. The key
depends on no chunking, device or position, so a learner that scores everything alike ranks its
candidates in a random order, never by item id, and a relevant item gains nothing from a tie.
Scores are compared at float32 precision.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from bench.evaluation.topn import Ranked, TopNValue, evaluate_ranked
from bench.protocol.candidates import CandidateSets
from bench.protocol.episodes import TaskBatch

Scorer = Callable[[TaskBatch, torch.Tensor], torch.Tensor]
"""``score(tasks, candidates)``: candidates ``[C]`` (the same items for every task) or
``[tasks, C]``; returns ``[tasks, C]`` scores, higher ranks first."""

DEFAULT_BUDGET = 1 << 22
"""Most (task, item) scores held at once: 4M, about 200 MB at the peak with their sort keys."""

_PRIME = 2_147_483_647  # 2^31 - 1: every product below stays within int64
_MIX = (1_103_515_245, 2_013_265_921, 1_664_525_013)
_EMPTY = torch.iinfo(torch.int64).min


def tie_keys(seed: int, entities: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """A pseudo-random 31-bit key per (task, item): ``entities [T]`` with ``items [C]`` or
    ``[T, C]``; the same on every device and for every chunking."""
    grid = items if items.dim() == 2 else items[None, :]
    h = (entities[:, None] % _PRIME) * _MIX[0] % _PRIME
    h = (h + (seed % _PRIME)) * _MIX[1] % _PRIME
    h = (h ^ (grid % _PRIME)) * _MIX[2] % _PRIME
    h = (h ^ (h >> 13)) * _MIX[0] % _PRIME
    return (h ^ (h >> 16)) * _MIX[1] % _PRIME


def sort_keys(scores: torch.Tensor, ties: torch.Tensor) -> torch.Tensor:
    """int64 keys that order (score, tie key) lexicographically, higher first."""
    bits = (scores.float() + 0.0).contiguous().view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    return ordered * (1 << 32) + ties


def _checked_scores(scores: torch.Tensor, shape: tuple[int, int], learner: str) -> torch.Tensor:
    if tuple(scores.shape) != shape:
        raise ValueError(
            f"learner {learner!r} returned scores of shape {tuple(scores.shape)}, expected {shape}"
        )
    if torch.isnan(scores).any():
        raise ValueError(f"learner {learner!r} returned NaN scores")
    return scores


def _merge(
    best: tuple[torch.Tensor, torch.Tensor] | None, keys: torch.Tensor, items: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of the running best and a new block of (key, item)."""
    if best is not None:
        keys = torch.cat([best[0], keys], 1)
        items = torch.cat([best[1], items], 1)
    top = min(k, keys.shape[1])
    values, index = torch.topk(keys, top, dim=1)
    return values, torch.gather(items, 1, index)


def _padded(rows: tuple[np.ndarray, ...] | list[np.ndarray], fill: int = -1) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), fill, dtype=np.int64)
    for t, r in enumerate(rows):
        out[t, : len(r)] = r
    return out


def _hits(
    top_keys: torch.Tensor, top_items: torch.Tensor, relevant: torch.Tensor, k: int
) -> torch.Tensor:
    found = (top_items[:, :, None] == relevant[:, None, :]) & (relevant[:, None, :] >= 0)
    hits = found.any(-1) & (top_keys > _EMPTY)
    if hits.shape[1] < k:
        hits = torch.nn.functional.pad(hits, (0, k - hits.shape[1]), value=False)
    return hits


def rank_full(
    score: Scorer,
    tasks: TaskBatch,
    sets: CandidateSets,
    k: int,
    *,
    tie_seed: int,
    budget: int = DEFAULT_BUDGET,
    learner: str = "",
) -> Ranked:
    """Rank every task's full candidate set (the pool minus its exclusions) to depth ``k``."""
    _check_sizes(tasks, sets)
    device = tasks.entities.device
    pool = torch.as_tensor(sets.pool, dtype=torch.long, device=device)
    n_pool = len(sets.pool)
    positions = [np.searchsorted(sets.pool, e) for e in sets.excluded]
    excluded = torch.as_tensor(_padded(positions), device=device)
    relevant = torch.as_tensor(_padded(sets.relevant), device=device)
    columns = max(1, min(n_pool, budget))
    rows = max(1, budget // columns)
    hits = []
    for start in range(0, tasks.n_tasks, rows):
        chunk = tasks.select(slice(start, start + rows))
        best: tuple[torch.Tensor, torch.Tensor] | None = None
        for c0 in range(0, n_pool, columns):
            items = pool[c0 : c0 + columns]
            scores = _checked_scores(score(chunk, items), (chunk.n_tasks, len(items)), learner)
            keys = sort_keys(scores, tie_keys(tie_seed, chunk.entities, items))
            local = excluded[start : start + rows] - c0
            inside = (local >= 0) & (local < len(items))
            mask = torch.zeros(chunk.n_tasks, len(items) + 1, dtype=torch.bool, device=device)
            mask.scatter_(1, torch.where(inside, local, len(items)), True)
            keys = keys.masked_fill(mask[:, : len(items)], _EMPTY)
            best = _merge(best, keys, items.expand(chunk.n_tasks, -1), k)
        if best is None:
            empty = torch.zeros(chunk.n_tasks, k, dtype=torch.bool, device=device)
            hits.append(empty)
            continue
        hits.append(_hits(best[0], best[1], relevant[start : start + rows], k))
    return Ranked(_joined(hits, k), sets.n_relevant, sets.n_candidates)


def rank_sampled(
    score: Scorer,
    tasks: TaskBatch,
    sets: CandidateSets,
    k: int,
    *,
    tie_seed: int,
    budget: int = DEFAULT_BUDGET,
    learner: str = "",
) -> Ranked:
    """Rank each task's relevant items among its sampled negatives to depth ``k``."""
    if sets.negatives is None:
        raise ValueError("sampled ranking needs candidate sets drawn with negatives")
    _check_sizes(tasks, sets)
    device = tasks.entities.device
    per_task = [sets.sampled(t) for t in range(len(sets))]
    candidates = torch.as_tensor(_padded(per_task), device=device)
    relevant = torch.as_tensor(_padded(sets.relevant), device=device)
    width = candidates.shape[1]
    rows = max(1, budget // max(width, 1))
    hits = []
    for start in range(0, tasks.n_tasks, rows):
        chunk = tasks.select(slice(start, start + rows))
        items = candidates[start : start + rows]
        padding = items < 0
        safe = items.clamp(min=0)
        scores = _checked_scores(score(chunk, safe), (safe.shape[0], safe.shape[1]), learner)
        keys = sort_keys(scores, tie_keys(tie_seed, chunk.entities, safe))
        keys = keys.masked_fill(padding, _EMPTY)
        top_keys, top_items = _merge(None, keys, safe, k)
        hits.append(_hits(top_keys, top_items, relevant[start : start + rows], k))
    n_candidates = np.array([len(c) for c in per_task], dtype=np.int64)
    return Ranked(_joined(hits, k), sets.n_relevant, n_candidates)


def _check_sizes(tasks: TaskBatch, sets: CandidateSets) -> None:
    if tasks.n_tasks != len(sets):
        raise ValueError(
            f"{tasks.n_tasks} tasks but candidate sets for {len(sets)}: they must be the same tasks"
        )


def _joined(hits: list[torch.Tensor], k: int) -> np.ndarray:
    if not hits:
        return np.zeros((0, k), dtype=bool)
    return torch.cat(hits).cpu().numpy()


def topn_values(
    score: Scorer,
    tasks: TaskBatch,
    sets: CandidateSets,
    views: tuple[str, ...],
    top_k: tuple[int, ...],
    *,
    tie_seed: int,
    budget: int = DEFAULT_BUDGET,
    learner: str = "",
) -> list[TopNValue]:
    """Every top-N metric of one (scenario, k) for the ``full`` and ``sampled`` views asked for."""
    depth = max(top_k)
    out: list[TopNValue] = []
    for view, rank in (("full", rank_full), ("sampled", rank_sampled)):
        if view in views:
            ranked = rank(
                score, tasks, sets, depth, tie_seed=tie_seed, budget=budget, learner=learner
            )
            out.extend(evaluate_ranked(ranked, view, top_k))
    return out
