"""What a shilling attack achieves, measured on every cell of a suite that declares one: how
high a learner scores the attack's target items for each test user, and how often one of them
reaches the user's top 10 under full ranking. The clean cells measure the same targets, so the
prediction shift of an attacked cell is its value minus the clean cell's, task by task.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from bench.evaluation.topk import Scorer, topn_values
from bench.evaluation.topn import topn_name
from bench.protocol.candidates import CandidateSets
from bench.protocol.episodes import TaskBatch

TARGET_SCORE = "target-score"
"""Per task: the mean score (a rating learner's predicted rating) of the target items among
the task's full-ranking candidates; NaN when none is a candidate."""
MEAN_PREDICTION = "mean-prediction"
"""Per task: the mean predicted rating over its query. Stored where a suite poisons support sets
(``push``): against the clean run it is the prediction shift the poisoning buys."""
TARGET_DEPTH = 10
TARGET_HIT = f"target-hit@{TARGET_DEPTH}"
"""Per task: 1 when a target item ranks among the top 10 of all the task's candidates."""


def target_rows(
    score: Scorer,
    tasks: TaskBatch,
    sets: CandidateSets,
    targets: np.ndarray,
    *,
    tie_seed: int,
    learner: str,
    label: str,
    k_label: str,
) -> list[tuple[Any, ...]]:
    """The ``TARGET_SCORE`` and ``TARGET_HIT`` metric rows of one (scenario, k), stored under
    ``label``; ``tasks`` hold their support and no query."""
    relevant = tuple(
        np.intersect1d(targets, sets.candidates(t), assume_unique=True) for t in range(len(sets))
    )
    pushed = replace(sets, relevant=relevant, negatives=None)
    ranked = topn_values(
        score, tasks, pushed, ("full",), (TARGET_DEPTH,), tie_seed=tie_seed, learner=learner
    )
    hit = next(v for v in ranked if v.name == topn_name("hr", TARGET_DEPTH, "full"))
    candidates = torch.as_tensor(targets, dtype=torch.long, device=tasks.support_items.device)
    with torch.no_grad():
        scores = score(tasks, candidates).double().cpu().numpy()
    available = np.array([np.isin(targets, r) for r in relevant], dtype=bool).reshape(scores.shape)
    counts = available.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_task = np.where(counts > 0, np.where(available, scores, 0).sum(1) / counts, np.nan)
    scored = ~np.isnan(per_task)
    mean = float(per_task[scored].mean()) if scored.any() else float("nan")
    return [
        (label, k_label, TARGET_SCORE, mean, int(scored.sum()), int((~scored).sum()), per_task),
        (
            label,
            k_label,
            TARGET_HIT,
            hit.value,
            hit.n_scored,
            hit.n_unscored,
            hit.per_task,
        ),
    ]


def mean_prediction_row(
    predicted: np.ndarray, mask: np.ndarray, label: str, k_label: str
) -> tuple[Any, ...]:
    """The ``MEAN_PREDICTION`` metric row of one (scenario, k) from its query predictions."""
    counts = mask.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_task = np.where(counts > 0, np.where(mask, predicted, 0).sum(1) / counts, np.nan)
    scored = ~np.isnan(per_task)
    mean = float(per_task[scored].mean()) if scored.any() else float("nan")
    return (
        label,
        k_label,
        MEAN_PREDICTION,
        mean,
        int(scored.sum()),
        int((~scored).sum()),
        per_task,
    )
