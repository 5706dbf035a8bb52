"""Simple baselines: the global mean, and user and item biases with shrinkage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.learner import Learner, clamp_to_scale
from bench.seeding import Seeds


class GlobalMean(Learner):
    """Predicts the mean training rating everywhere: the floor any learner must clear."""

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        self.mean = float(train.rating.mean())

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        return torch.full(tasks.query_items.shape, self.mean, device=tasks.query_items.device)

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        shape = (tasks.n_tasks, candidates.shape[-1])
        return torch.full(shape, self.mean, device=candidates.device)


@dataclass(frozen=True)
class BiasConfig:
    user_shrinkage: float = 5.0
    """Pseudo-count pulling a user's bias towards zero."""
    item_shrinkage: float = 10.0
    """Pseudo-count pulling an item's bias towards zero."""
    iterations: int = 3
    """Alternating passes over user and item biases."""


def bias_fit(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    n_users: int,
    n_items: int,
    config: BiasConfig,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Shrunk user and item biases around the global mean, fitted by alternating averages."""
    mean = float(rating.mean())
    user_bias = np.zeros(n_users)
    item_bias = np.zeros(n_items)
    user_count = np.bincount(user, minlength=n_users)
    item_count = np.bincount(item, minlength=n_items)
    residual = rating - mean
    for _ in range(max(config.iterations, 1)):
        item_bias = np.bincount(item, residual - user_bias[user], n_items) / (
            item_count + config.item_shrinkage
        )
        user_bias = np.bincount(user, residual - item_bias[item], n_users) / (
            user_count + config.user_shrinkage
        )
    return mean, user_bias, item_bias


class BiasBaseline(Learner):
    """User and item biases with shrinkage around the global mean (registered as item-mean).

    Predicts ``mean + b_user + b_item``. A task entity unseen in training gets its bias from its support ratings, shrunk the same way;
    an unseen entity on the other side gets bias zero.
    """

    config_class = BiasConfig

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        self.scale = train.rating_scale
        self.mean, user_bias, item_bias = bias_fit(
            train.user, train.item, train.rating, train.n_users, train.n_items, self.config
        )
        self.user_bias = torch.as_tensor(user_bias, dtype=torch.float32, device=device)
        self.item_bias = torch.as_tensor(item_bias, dtype=torch.float32, device=device)
        self.known_users = torch.as_tensor(train.known_users, device=device)
        self.known_items = torch.as_tensor(train.known_items, device=device)

    def _entity_bias(self, tasks: TaskBatch) -> torch.Tensor:
        """Each task entity's bias: trained, or folded in from its support."""
        by_user = tasks.axis == "user"
        own_bias, other_bias = (
            (self.user_bias, self.item_bias) if by_user else (self.item_bias, self.user_bias)
        )
        known = self.known_users if by_user else self.known_items
        shrink = self.config.user_shrinkage if by_user else self.config.item_shrinkage
        support_other = tasks.support_items if by_user else tasks.support_users

        mask = tasks.support_mask.float()
        residual = (tasks.support_ratings - self.mean - other_bias[support_other]) * mask
        folded = residual.sum(1) / (mask.sum(1) + shrink)
        return torch.where(known[tasks.entities], own_bias[tasks.entities], folded)

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        # Both tasks' query sides are named: a task ranks the other side's entities.
        other_bias = self.item_bias if tasks.axis == "user" else self.user_bias
        query_other = tasks.query_items if tasks.axis == "user" else tasks.query_users
        pred = self.mean + self._entity_bias(tasks)[:, None] + other_bias[query_other]
        return clamp_to_scale(pred, self.scale)

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        """The unclamped predicted rating of every candidate item."""
        if tasks.axis != "user":
            return super().score(tasks, candidates)
        items = self.item_bias[candidates]
        return (
            self.mean
            + self._entity_bias(tasks)[:, None]
            + (items if items.dim() == 2 else items[None, :])
        )


NUDGE = 1e-4
"""How far, as a share of the rating scale's span, popularity moves its rating predictions."""


class Popularity(Learner):
    """Most-rated item first: the popularity floor of top-N ranking (counts of training ratings).

    Its score of an item is the number of training ratings it has, the same for every task; a
    new item has none. As a rating it predicts the global mean, nudged by at most a ten-thousandth
    of the scale's span in the order of popularity: its RMSE is the global mean's, and in-query
    rankings order by popularity too.
    """

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        by_user = train.axis == "user"
        other = train.item if by_user else train.user
        n_other = train.n_items if by_user else train.n_users
        counts = np.bincount(other, minlength=n_other).astype(np.float64)
        self.counts = torch.as_tensor(counts, dtype=torch.float32, device=device)
        self.mean = float(train.rating.mean())
        self.nudge = NUDGE * (train.rating_scale[1] - train.rating_scale[0])
        self.top = float(max(counts.max(initial=0.0), 1.0))

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        query_other = tasks.query_items if tasks.axis == "user" else tasks.query_users
        share = self.counts[query_other] / self.top
        return self.mean + self.nudge * (share - 0.5)

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        counts = self.counts[candidates]
        return counts.expand(tasks.n_tasks, -1) if counts.dim() == 1 else counts
