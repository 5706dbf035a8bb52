"""The RMSE floor on synthetic data: the expected observed rating under the true parameters."""

from __future__ import annotations

from typing import Any

import torch

from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.learner import Learner
from bench.seeding import Seeds


class Oracle(Learner):
    """Synthetic data only: the expected rating under the true parameters, the RMSE floor.

    Predicts E[rating | true factors], accounting for rounding and clipping to the scale: no learner
    can have a lower expected squared error. Runs only on datasets with generator truth.
    """

    @classmethod
    def not_applicable(cls, dataset: Any) -> str | None:
        return None if dataset.truth is not None else "needs a synthetic dataset's true parameters"

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        if train.truth is None:
            raise ValueError("the oracle needs a synthetic dataset (one with generator truth)")
        self.truth = train.truth

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        users = tasks.query_users.cpu().numpy()
        items = tasks.query_items.cpu().numpy()
        expected = self.truth.expected_rating(users, items)
        return torch.as_tensor(expected, dtype=torch.float32, device=tasks.query_users.device)
