"""Standardised ratings: learners fit and adapt on ``(r - mean) / std`` of the training ratings and
map their predictions back, so that learning rates, penalties and initial scales chosen for one
rating scale hold on any other (1-5 stars, -10..10, 0-100).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from bench.protocol.episodes import MetaTrain, TaskBatch


@dataclass(frozen=True)
class Standardiser:
    """The affine map from ratings to standardised ratings, fitted on training ratings."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def of(cls, ratings: np.ndarray) -> Standardiser:
        """Mean and standard deviation of ``ratings`` (a spread of 1 when they are all equal)."""
        if len(ratings) == 0:
            return cls()
        values = np.asarray(ratings, dtype=np.float64)
        mean, std = float(values.mean()), float(values.std())
        return cls(mean, std if math.isfinite(std) and std > 1e-12 else 1.0)

    def forward(self, ratings: np.ndarray) -> np.ndarray:
        return ((np.asarray(ratings, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def value(self, rating: float) -> float:
        return (rating - self.mean) / self.std

    def back(self, standardised: torch.Tensor) -> torch.Tensor:
        """Standardised predictions mapped back to the rating scale."""
        return standardised * self.std + self.mean

    def tasks(self, batch: TaskBatch) -> TaskBatch:
        """The batch with standardised support (and query, when present) ratings; padding stays 0."""

        def scaled(ratings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            # In float64, as forward() computes it, so a rating equal to a standardised threshold
            # or level stays exactly equal to it.
            z = ((ratings.double() - self.mean) / self.std).to(ratings.dtype)
            return torch.where(mask, z, torch.zeros_like(z))

        query = batch.query_ratings
        return replace(
            batch,
            support_ratings=scaled(batch.support_ratings, batch.support_mask),
            query_ratings=None if query is None else scaled(query, batch.query_mask),
        )

    def meta_train(self, train: MetaTrain) -> MetaTrain:
        """The training view in standardised units: ratings, scale, like threshold, rating levels,
        validation tasks and the episode sampler."""
        rating = self.forward(train.rating)
        lo, hi = train.rating_scale
        sampler = copy.copy(train.sampler)  # the same grouping of ratings by task entity
        sampler.rating = rating
        return replace(
            train,
            rating=rating,
            rating_scale=(self.value(lo), self.value(hi)),
            like_threshold=self.value(train.like_threshold),
            rating_levels=self.forward(train.rating_levels),
            validation=None if train.validation is None else self.tasks(train.validation),
            sampler=sampler,
        )
