"""Losses over padded task tensors: only the valid (masked) positions count."""

from __future__ import annotations

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid positions of the last dimension (0 where none are)."""
    weight = mask.to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


def mean_over_tasks(per_task: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of per-task losses over the tasks that have at least one valid position."""
    has = mask.any(-1).to(per_task.dtype)
    return (per_task * has).sum() / has.sum().clamp(min=1.0)
