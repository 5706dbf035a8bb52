"""Training episodes shaped like evaluation: support sizes mixed within one meta-batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from bench.protocol.episodes import MetaTrain, TaskBatch


def training_support_sizes(train: MetaTrain) -> list[int]:
    """The finite support sizes the protocol evaluates, used to mix support sizes in training."""
    finite = sorted({int(k) for k in train.support_sizes if isinstance(k, int) and k > 0})
    return finite or [10]


def mixed_support(batch: TaskBatch, sizes: Sequence[int], rng: np.random.Generator) -> TaskBatch:
    """Shorten each task's support to a size drawn from ``sizes``, so one meta-batch mixes
    support sizes as evaluation does."""
    if not sizes:
        return batch
    device = batch.support_mask.device
    k = torch.as_tensor(rng.choice(np.asarray(sizes), size=batch.n_tasks), device=device)
    width = batch.support_mask.shape[1]
    mask = batch.support_mask & (torch.arange(width, device=device)[None, :] < k[:, None])
    return TaskBatch(
        axis=batch.axis,
        entities=batch.entities,
        support_users=torch.where(mask, batch.support_users, 0),
        support_items=torch.where(mask, batch.support_items, 0),
        support_ratings=torch.where(mask, batch.support_ratings, 0.0),
        support_mask=mask,
        query_users=batch.query_users,
        query_items=batch.query_items,
        query_mask=batch.query_mask,
        query_ratings=batch.query_ratings,
    )


def pad_support(batch: TaskBatch, width: int) -> TaskBatch:
    """The same tasks with their support padded (masked out) to ``width`` columns."""
    extra = width - batch.support_mask.shape[1]
    if extra <= 0:
        return batch

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, extra))

    return replace(
        batch,
        support_users=pad(batch.support_users),
        support_items=pad(batch.support_items),
        support_ratings=pad(batch.support_ratings),
        support_mask=pad(batch.support_mask),
    )
