"""Episodic meta-training shared by the meta-learners: meta-batches of training tasks with mixed
support sizes, one outer Adam step per meta-batch, under the shared training loop."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import torch

from bench.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.network.learner import NetworkLearner
from learners.network.model import NetworkConfig
from learners.network.support import mixed_support, training_support_sizes
from learners.network.trainer import Schedule


@dataclass(frozen=True)
class EpisodicConfig(NetworkConfig):
    meta_batch: int = 32
    """Tasks per meta-step."""
    meta_steps: int = 600
    """Upper bound on meta-steps (early stopping may end training sooner)."""
    outer_lr: float = 3e-3
    weight_decay: float = 0.0
    eval_every: int = 25
    """Meta-steps between validation checks; 0 disables validation and early stopping."""
    patience: int = 6
    """Validation checks without improvement before training stops."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_batch < 1 or self.meta_steps < 0 or self.outer_lr <= 0:
            raise ValueError("meta_batch must be >= 1, meta_steps >= 0 and outer_lr > 0")
        if self.eval_every < 0 or self.patience < 1:
            raise ValueError("eval_every must be >= 0 and patience >= 1")


class EpisodicLearner(NetworkLearner):
    """A learner trained on sampled episodes to minimise query loss after adapting on support.

    Subclasses build their model in :meth:`build` and define the per-batch :meth:`meta_loss` and
    the label-free :meth:`adapt_predict`.
    """

    config: EpisodicConfig
    step_name = "meta-step"

    @abc.abstractmethod
    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean query loss over the batch after adaptation (differentiable in the model)."""

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        self.sizes = training_support_sizes(train)
        self.query_size = train.query_size
        super().setup(train, rng=rng, device=device)

    def optimiser(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.model.parameters(),
            lr=self.config.outer_lr,
            weight_decay=self.config.weight_decay,
            capturable=self.uses_cuda_graph(),
        )

    def uses_cuda_graph(self) -> bool:
        """Whether meta-steps are captured as a CUDA graph (subclasses that support it say so)."""
        return False

    def schedule(self, train: MetaTrain) -> Schedule:
        cfg = self.config
        return Schedule(cfg.meta_steps, cfg.eval_every, cfg.patience)

    def sample(self, train: MetaTrain, rng: np.random.Generator) -> TaskBatch:
        """A meta-batch of training tasks on the learner's device."""
        batch = train.sampler.sample(rng, self.config.meta_batch, max(self.sizes), self.query_size)
        return mixed_support(batch, self.sizes, rng).to(self.device)

    def meta_step(self, batch: TaskBatch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.meta_loss(batch)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def train_step(self, train: MetaTrain, step: int, rng: np.random.Generator) -> None:
        self.meta_step(self.sample(train, rng))
