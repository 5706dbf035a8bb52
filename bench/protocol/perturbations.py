"""Support-set perturbations: episode transforms that corrupt the k-shot support of test tasks.

A perturbation maps a task batch to a task batch, touching only the support ratings (or, for
``drop``, the support mask); query ratings, query items and every training rating stay as they
are. Its strength ``p`` corrupts exactly ``m = round(p * n)`` of a task's ``n`` support ratings
(rounding half up), so every task of a support size carries the same load.

Common random numbers: each task draws from its own stream, named by (seed, kind, scenario,
task entity), two numbers per support position: an order key and a value draw. The ``m``
positions with the smallest keys are the ones corrupted, and a corrupted rating's new value comes
from its own value draw only, so

- the ratings corrupted at a lower strength are a subset of those at a higher one, with the same
  new values;
- support size ``k`` is a prefix of the task's pool, so the draw of a position is the same at
  every ``k``;
- every learner of a split sees the same corrupted support (nothing here depends on the learner).

Strength 0 is the identity: the batch is returned unchanged.

Kinds (:data:`KINDS`): ``gauss`` adds N(0, (sigma x rating range)^2) and clips to the scale;
``flip`` replaces the rating by a uniform draw over the dataset's rating levels (the same level
may come back); ``reverse`` maps r to min + max - r; ``outlier`` sets the rating to the end of
the scale farther from it (max for a rating below the middle, min otherwise); ``drop`` removes
the rating from the support set (the remaining ones keep their order and padding stays at the
end). ``push`` is an attacker's: the m lowest support ratings (ties in key order) are raised to
the maximum, as a seller poisons a new item's first ratings. Its choice depends on the ratings,
so unlike the other kinds the positions it picks at k = 5 need not be among those at k = 10;
strengths stay nested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from bench.protocol.episodes import TaskBatch
from bench.protocol.perturbation_labels import (
    ATTACKER_KINDS,
    DEFAULT_SIGMA,
    MAX_LEVELS,
    Perturbation,
    corrupted_count,
)
from bench.seeding import Seeds


def task_draws(seed: int, kind: str, scenario: str, entity: str, width: int) -> np.ndarray:
    """The ``[2, width]`` draws of one task's stream: order keys, then value draws, one of each
    per support position. The stream is read position by position (key, value, next position),
    so a position's draws are the same whatever the support size."""
    rng = Seeds(seed).numpy("perturb", kind, scenario, entity)
    return rng.random((width, 2)).T


def perturb(
    tasks: TaskBatch,
    perturbation: Perturbation,
    *,
    seed: int,
    scenario: str,
    entity_ids: Sequence[str],
    rating_scale: tuple[float, float],
    rating_levels: np.ndarray,
) -> TaskBatch:
    """``tasks`` with their support corrupted by ``perturbation``; ``entity_ids`` are the task
    entities in the dataset's own ids (they name each task's stream, so the corruption can be
    re-derived from an exported split)."""
    if perturbation.strength == 0 or tasks.n_tasks == 0:
        return tasks
    low, high = float(rating_scale[0]), float(rating_scale[1])
    mask = tasks.support_mask.cpu().numpy()
    ratings = tasks.support_ratings.cpu().numpy().astype(np.float64)
    hit, values = corrupted_positions(mask, perturbation, seed, scenario, entity_ids, ratings)
    new = ratings.copy()
    levels = np.asarray(rating_levels, dtype=np.float64)
    new[hit] = corrupted_values(perturbation, ratings[hit], values[hit], low, high, levels)
    if perturbation.kind == "drop":
        return _dropped(tasks, mask & ~hit)
    corrupted = torch.as_tensor(new, dtype=tasks.support_ratings.dtype)
    return replace(tasks, support_ratings=corrupted.to(tasks.support_ratings.device))


def corrupted_positions(
    support_mask: np.ndarray,
    perturbation: Perturbation,
    seed: int,
    scenario: str,
    entity_ids: Sequence[str],
    support_ratings: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which support positions a perturbation corrupts (``[T, S]``, exactly ``round(p * n)`` per
    task) and every position's value draw. An attacker's kind (``push``) takes the lowest
    ``support_ratings`` first, ties in the order of the stream's keys."""
    attacker = perturbation.kind in ATTACKER_KINDS
    if attacker and support_ratings is None:
        raise ValueError(f"{perturbation.kind!r} chooses by rating: pass the support ratings")
    hit = np.zeros(support_mask.shape, dtype=bool)
    values = np.zeros(support_mask.shape, dtype=np.float64)
    width = support_mask.shape[1]
    for t in range(support_mask.shape[0]):
        positions = np.flatnonzero(support_mask[t])
        m = corrupted_count(perturbation.strength, len(positions))
        if m == 0:
            continue
        keys, values[t] = task_draws(seed, perturbation.kind, scenario, str(entity_ids[t]), width)
        if attacker:
            assert support_ratings is not None
            order = np.lexsort((keys[positions], support_ratings[t, positions]))
        else:
            order = np.argsort(keys[positions], kind="stable")
        hit[t, positions[order[:m]]] = True
    return hit, values


def corrupted_values(
    p: Perturbation,
    ratings: np.ndarray,
    draws: np.ndarray,
    low: float,
    high: float,
    levels: np.ndarray,
) -> np.ndarray:
    """The new values of the chosen ratings, each from its own value draw."""
    if p.kind == "gauss":
        from scipy.special import ndtri  # the normal quantile of a uniform draw

        noise = ndtri(np.clip(draws, 1e-12, 1 - 1e-12)) * p.sigma * (high - low)
        return np.clip(ratings + noise, low, high)
    if p.kind == "flip":
        if 0 < len(levels) <= MAX_LEVELS:
            return levels[np.minimum((draws * len(levels)).astype(np.int64), len(levels) - 1)]
        return low + draws * (high - low)
    if p.kind == "reverse":
        return low + high - ratings
    if p.kind == "outlier":
        return np.where(ratings < (low + high) / 2, high, low)
    if p.kind == "push":
        return np.full_like(ratings, high)
    return ratings  # drop: the mask changes, not the values


def _dropped(tasks: TaskBatch, keep: np.ndarray) -> TaskBatch:
    """The batch with only the ``keep`` support positions, moved to the front in order."""
    order = np.argsort(~keep, axis=1, kind="stable")  # kept positions first, in order
    index = torch.as_tensor(order, device=tasks.support_mask.device)
    mask = torch.as_tensor(np.take_along_axis(keep, order, axis=1), device=index.device)

    def gathered(values: torch.Tensor) -> torch.Tensor:
        moved = torch.gather(values, 1, index)
        return torch.where(mask, moved, torch.zeros_like(moved))

    return replace(
        tasks,
        support_users=gathered(tasks.support_users),
        support_items=gathered(tasks.support_items),
        support_ratings=gathered(tasks.support_ratings),
        support_mask=mask,
    )


def robustness_perturbations(
    kinds: Sequence[str], strengths: Sequence[float], sigma: float = DEFAULT_SIGMA
) -> list[Perturbation]:
    """Every (kind, strength) a suite evaluates besides the clean run (strength 0 is the clean
    run itself)."""
    return [Perturbation(k, float(s), sigma) for k in kinds for s in strengths if float(s) > 0]
