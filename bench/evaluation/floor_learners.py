"""The floor learners: one score for every item. Which tie policy scores each is in
:mod:`bench.evaluation.floors`."""

from __future__ import annotations

import torch

from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.learner import Learner
from bench.seeding import Seeds


class ConstantFloor(Learner):
    """One score for every item (the training mean): what the tie policy alone earns."""

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        self.level = float(train.rating.mean()) if len(train.rating) else 0.0

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        return torch.full(tasks.query_items.shape, self.level, device=tasks.query_items.device)


class RandomFloor(ConstantFloor):
    """The expected ranking metrics of a uniformly random order (scored under expected ties)."""
