"""Pre-train, then fine-tune on each task's support set (registered as ``fine-tune``).

The MeLU-style network is trained by plain minibatch regression on all training ratings. At
prediction time each task takes ``finetune_steps`` gradient steps of size ``finetune_lr`` on its
support ratings (the decision layers only, or every parameter), all tasks at once with
``torch.func``. Nothing here is meta-learned: this is the baseline that meta-learning must beat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.network.adaptation import Adapt, adapt_and_predict, check_adapt
from learners.network.explain import NetworkFields
from learners.network.learner import NetworkLearner
from learners.network.model import NetworkConfig, RatingNetwork
from learners.network.trainer import Schedule


@dataclass(frozen=True)
class FineTuneConfig(NetworkConfig):
    epochs: int = 20
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 3
    """Epochs without validation improvement before pre-training stops."""
    finetune_lr: float = 0.005
    finetune_steps: int = 10
    adapt: Adapt = "decision"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.patience < 1:
            raise ValueError("epochs >= 0, batch_size >= 1, lr > 0 and patience >= 1 required")
        if self.finetune_steps < 0 or self.finetune_lr < 0:
            raise ValueError("finetune_steps and finetune_lr must be >= 0")
        check_adapt(self.adapt)


class FineTune(NetworkLearner, NetworkFields):
    """The same network pre-trained on all ratings, then a few gradient steps per task."""

    config_class = FineTuneConfig
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "hidden": (16, 16),
        "epochs": 1,
    }
    config: FineTuneConfig
    model: RatingNetwork

    def build(self, train: MetaTrain, generator: torch.Generator) -> RatingNetwork:
        cfg = self.config
        return RatingNetwork.for_training_data(train, cfg.embedding_dim, cfg.hidden, generator)

    def optimiser(self) -> torch.optim.Optimizer:
        cfg = self.config
        return torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        super().setup(train, rng=rng, device=device)
        self.users = torch.as_tensor(train.user, dtype=torch.long, device=device)
        self.items = torch.as_tensor(train.item, dtype=torch.long, device=device)
        self.ratings = torch.as_tensor(train.rating, dtype=torch.float32, device=device)
        self.batches_per_epoch = max(1, math.ceil(len(self.ratings) / self.config.batch_size))

    def schedule(self, train: MetaTrain) -> Schedule:
        # One step per minibatch, one validation check per epoch.
        cfg = self.config
        return Schedule(cfg.epochs * self.batches_per_epoch, self.batches_per_epoch, cfg.patience)

    def train_step(self, train: MetaTrain, step: int, rng: np.random.Generator) -> None:
        batch = (step - 1) % self.batches_per_epoch
        if batch == 0:
            self.order = torch.as_tensor(rng.permutation(len(self.ratings)), device=self.device)
        size = self.config.batch_size
        rows = self.order[batch * size : (batch + 1) * size]
        self.optimizer.zero_grad(set_to_none=True)
        pred = self.model(self.users[rows], self.items[rows])
        loss = torch.mean((pred - self.ratings[rows]) ** 2)
        loss.backward()
        self.optimizer.step()

    def release(self) -> None:
        del self.users, self.items, self.ratings, self.order

    def adapt_predict(self, tasks: TaskBatch, steps: int | None = None) -> torch.Tensor:
        """Query predictions after ``steps`` (default ``finetune_steps``) support steps."""
        cfg = self.config
        return adapt_and_predict(
            self.model,
            tasks,
            lr=cfg.finetune_lr,
            steps=cfg.finetune_steps if steps is None else steps,
            adapt=cfg.adapt,
        )

    def adaptation(self) -> tuple[float, int, Adapt]:
        cfg = self.config
        return cfg.finetune_lr, cfg.finetune_steps, cfg.adapt
