"""Episodic meta-training shared by the meta-learners: sampling, outer optimiser, early stopping."""

from __future__ import annotations

import abc
import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from bench.episodes import MetaTrain, TaskBatch, predict_in_chunks
from bench.learner import Budget, Learner, clamp_to_scale
from learners.network import NetworkConfig, masked_mse, mean_over_tasks, mixed_support


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
    predict_chunk: int = 512
    """Tasks adapted at once in ``predict`` (bounds memory)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_batch < 1 or self.meta_steps < 0 or self.outer_lr <= 0:
            raise ValueError("meta_batch must be >= 1, meta_steps >= 0 and outer_lr > 0")
        if self.eval_every < 0 or self.patience < 1 or self.predict_chunk < 1:
            raise ValueError("eval_every must be >= 0, patience and predict_chunk >= 1")


def training_support_sizes(train: MetaTrain) -> list[int]:
    """The finite support sizes the protocol evaluates, used to mix support sizes in training."""
    finite = sorted({int(k) for k in train.support_sizes if isinstance(k, int) and k > 0})
    return finite or [10]


class EpisodicLearner(Learner):
    """A learner trained on sampled episodes to minimise query loss after adapting on support.

    Subclasses build their model in :meth:`build`, define the per-batch :meth:`meta_loss` and the
    label-free :meth:`adapt_predict`; this class runs the meta-training loop with Adam, keeps the
    parameters with the best validation RMSE, and stops when it stops improving.
    """

    config: EpisodicConfig
    model: torch.nn.Module

    @abc.abstractmethod
    def build(self, train: MetaTrain) -> torch.nn.Module: ...

    @abc.abstractmethod
    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean query loss over the batch after adaptation (differentiable in the model)."""

    @abc.abstractmethod
    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        """Query predictions ``[T, Q]`` after adapting on each task's support."""

    def setup(self, train: MetaTrain, *, rng: np.random.Generator, device: torch.device) -> None:
        """Build the model and optimiser without training (used by ``fit`` and by ``bench perf``)."""
        self.device = device
        self.scale = train.rating_scale
        self.sizes = training_support_sizes(train)
        self.query_size = train.query_size
        # The initialisation depends on ``rng`` only, not on the global torch seed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            self.model = self.build(train).to(device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=self.config.outer_lr,
            weight_decay=self.config.weight_decay,
            capturable=self.uses_cuda_graph(),
        )

    def uses_cuda_graph(self) -> bool:
        """Whether meta-steps are captured as a CUDA graph (subclasses that support it say so)."""
        return False

    def sample(self, train: MetaTrain, rng: np.random.Generator) -> TaskBatch:
        batch = train.sampler.sample(rng, self.config.meta_batch, max(self.sizes), self.query_size)
        return mixed_support(batch, self.sizes, rng).to(self.device)

    def meta_step(self, batch: TaskBatch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.meta_loss(batch)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def validation_rmse(self, validation: TaskBatch) -> float:
        assert validation.query_ratings is not None
        pred = self.predict(validation.without_labels())
        mse = mean_over_tasks(
            masked_mse(pred, validation.query_ratings, validation.query_mask),
            validation.query_mask,
        )
        return float(mse.sqrt())

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: np.random.Generator,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        cfg = self.config
        self.setup(train, rng=rng, device=device)
        validation = train.validation.to(device) if train.validation is not None else None
        if validation is not None and validation.n_tasks == 0:
            validation = None
        deadline = (
            time.perf_counter() + budget.max_seconds
            if budget is not None and budget.max_seconds is not None
            else None
        )
        best, best_state, stale = float("inf"), None, 0
        self.history: list[tuple[int, float]] = []
        for step in range(1, cfg.meta_steps + 1):
            self.model.train()
            self.meta_step(self.sample(train, rng))
            last = step == cfg.meta_steps or (
                deadline is not None and time.perf_counter() > deadline
            )
            if validation is not None and cfg.eval_every and (step % cfg.eval_every == 0 or last):
                score = self.validation_rmse(validation)
                self.history.append((step, score))
                if score < best - 1e-5:
                    best, best_state, stale = score, copy.deepcopy(self.model.state_dict()), 0
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
            if last:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        tasks = tasks.to(self.device)
        pred = predict_in_chunks(self.adapt_predict, tasks, self.config.predict_chunk)
        return clamp_to_scale(pred.detach(), self.scale)
