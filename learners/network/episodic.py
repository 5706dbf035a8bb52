"""Episodic meta-training shared by the meta-learners: meta-batches of training tasks with mixed
support sizes, one outer Adam step per meta-batch, under the shared training loop."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import torch

from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.network.learner import NetworkLearner
from learners.network.model import NetworkConfig
from learners.network.support import mixed_support, pad_support, training_support_sizes
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
    skipped_steps: int = 0
    """Meta-steps :meth:`step_if_finite` refused in the last ``fit``."""
    step_name = "meta-step"

    @abc.abstractmethod
    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean query loss over the batch after adaptation (differentiable in the model)."""

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        self.skipped_steps = 0
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

    def step_if_finite(self, loss: torch.Tensor) -> float:
        """Back-propagate ``loss`` and take the optimiser's step, unless the loss or a gradient is
        not finite: such a step would turn every parameter into NaN, so it is skipped and counted."""
        loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not torch.isfinite(loss) or not all(bool(torch.isfinite(g).all()) for g in grads):
            self.skipped_steps += 1
            return float("nan")
        self.optimizer.step()
        return float(loss.detach())


@dataclass(frozen=True)
class EpochConfig(EpisodicConfig):
    """Episodic training counted in epochs over the training tasks, as the papers count it."""

    epochs: int = 20
    """Passes over the training tasks (one task per task entity with enough ratings)."""
    meta_steps: int = 0
    """Meta-steps to train for; 0 (the default) derives them from ``epochs``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 0:
            raise ValueError("epochs must be >= 0")


class WholeSupportEpisodes(EpisodicLearner):
    """Episodes shaped like the evaluated tasks, counted in epochs.

    When the protocol evaluates a task's whole support (``"all"``), training tasks keep theirs too,
    up to the widest validation task (a heavy training entity's support is a random subset that
    wide); otherwise they mix the protocol's finite support sizes. Every meta-batch is padded to
    one support width, so its shape never changes. A protocol that evaluates ``k = 0`` gets
    training tasks without support among the others.
    """

    config: EpochConfig

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        super().setup(train, rng=rng, device=device)
        self.whole_support = "all" in train.support_sizes
        finite = [k for k in train.support_sizes if isinstance(k, int) and k > 0]
        # Tasks evaluated without support train without it too (a model that reads its task
        # from the support set must still tell query pairs apart then).
        empty = [0] if 0 in train.support_sizes else []
        if train.validation is not None and train.validation.n_tasks:
            widest = int(train.validation.support_mask.sum(1).max())
        else:
            widest = int(train.sampler.counts.max(initial=0)) - self.query_size
        self.support_width = max(widest, 1)
        if self.whole_support:
            self.sizes = sorted({*empty, *finite, self.support_width})
        else:
            self.sizes = sorted({*empty, *training_support_sizes(train)})
        needed = self.query_size + 1 if self.whole_support else max(self.sizes) + self.query_size
        self.task_pool = train.sampler.entities_with(needed)
        if len(self.task_pool) == 0:
            self.task_pool = train.sampler.entities_with(1)

    def schedule(self, train: MetaTrain) -> Schedule:
        cfg = self.config
        per_epoch = -(-len(self.task_pool) // cfg.meta_batch)
        steps = cfg.meta_steps or cfg.epochs * per_epoch
        return Schedule(steps, cfg.eval_every, cfg.patience)

    def sample(self, train: MetaTrain, rng: np.random.Generator) -> TaskBatch:
        cfg = self.config
        pool = self.task_pool
        entities = rng.choice(pool, size=cfg.meta_batch, replace=len(pool) < cfg.meta_batch)
        width = max(self.sizes)
        batch = train.sampler.sample(rng, cfg.meta_batch, width, self.query_size, entities=entities)
        return mixed_support(pad_support(batch, width), self.sizes, rng).to(self.device)
