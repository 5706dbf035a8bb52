"""The base of every network learner: it builds the model from the learner's own seed stream,
moves what training needs to the device once, runs the shared training loop under the budget,
and predicts clamped ratings.

Models train and adapt on standardised ratings (:mod:`learners.standardise`): ``fit`` hands
:meth:`NetworkLearner.setup` a standardised training view, ``predict`` standardises each task's
support and maps the predictions back, so learning rates hold on any rating scale.
"""

from __future__ import annotations

import abc
import time
from dataclasses import replace
from functools import partial
from typing import ClassVar

import numpy as np
import torch

from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch, predict_in_chunks
from bench.protocol.learner import Learner, clamp_to_scale
from bench.seeding import Seeds
from learners.network.losses import masked_mse, mean_over_tasks
from learners.network.model import NetworkConfig
from learners.network.trainer import Schedule, TrainingLog, train_model
from learners.standardise import Standardiser


class NetworkLearner(Learner):
    """A learner whose model is a torch module trained by :func:`~learners.network.trainer.train_model`.

    Subclasses say how to build the model (:meth:`build`), the optimiser (:meth:`optimiser`), the
    schedule (:meth:`schedule`), one training step (:meth:`train_step`) and the label-free
    per-task prediction (:meth:`adapt_predict`).
    """

    config: NetworkConfig
    model: torch.nn.Module
    device: torch.device
    log: TrainingLog
    standardiser: Standardiser = Standardiser()
    """Ratings as the model sees them; the identity until ``fit`` sets it."""
    step_name: ClassVar[str] = "step"
    """What one training step is called in progress reports."""

    @abc.abstractmethod
    def build(self, train: MetaTrain, generator: torch.Generator) -> torch.nn.Module:
        """The untrained model, its parameters drawn from ``generator`` (on the CPU)."""

    @abc.abstractmethod
    def optimiser(self) -> torch.optim.Optimizer: ...

    @abc.abstractmethod
    def schedule(self, train: MetaTrain) -> Schedule:
        """Steps, validation interval and patience (the deadline is added from the budget)."""

    @abc.abstractmethod
    def train_step(self, train: MetaTrain, step: int, rng: np.random.Generator) -> None:
        """One optimisation step (step numbers start at 1)."""

    def release(self) -> None:
        """Drop what only training needed, once ``fit`` is done (a fitted learner pickles small)."""

    @abc.abstractmethod
    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        """Query predictions ``[T, Q]`` after adapting on each task's support."""

    @property
    def predict_chunk(self) -> int:
        return self.config.predict_chunk

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        """Build the model and optimiser without training (``fit`` starts with it; ``bench perf``
        and tests use it alone)."""
        self.device = device
        self.scale = train.rating_scale
        # Field names, for explanations that name the fields the model takes.
        self.feature_names = {"user": train.user_feature_names, "item": train.item_feature_names}
        self.model = self.build(train, rng.torch("init")).to(device)
        self.optimizer = self.optimiser()

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        started = time.perf_counter()
        self.standardiser = Standardiser.of(train.rating)
        standardised = self.standardiser.meta_train(train)
        self.setup(standardised, rng=rng, device=device)
        self.scale = train.rating_scale  # predictions are clamped after mapping back
        validation = train.validation  # in ratings: validation_rmse predicts like predict does
        validate = None
        if validation is not None and validation.n_tasks:
            validate = partial(self.validation_rmse, validation.to(device))
        schedule = self.schedule(standardised)
        if budget is not None and budget.max_seconds is not None:
            schedule = replace(schedule, deadline=started + budget.max_seconds)
        if budget is not None and budget.progress is not None:
            schedule = replace(schedule, progress=partial(budget.progress, self.step_name))
        sampling = rng.numpy("sampling")
        self.log = train_model(
            self.model, lambda i: self.train_step(standardised, i, sampling), validate, schedule
        )
        self.finish(standardised, sampling, schedule.deadline)
        self.release()

    def finish(self, train: MetaTrain, rng: np.random.Generator, deadline: float | None) -> None:
        """A second training phase after the model's own, before :meth:`release` (none by default;
        ``deadline`` is the budget's end as a ``time.perf_counter()`` value, or None)."""

    @property
    def history(self) -> list[tuple[int, float]]:
        """(step, validation RMSE) of every check of the last ``fit``."""
        return self.log.history

    def validation_rmse(self, validation: TaskBatch) -> float:
        """RMSE on labelled tasks already on the device, predicted in chunks."""
        assert validation.query_ratings is not None
        pred = predict_in_chunks(self.predict, validation.without_labels(), self.predict_chunk)
        per_task = masked_mse(pred, validation.query_ratings, validation.query_mask)
        return float(mean_over_tasks(per_task, validation.query_mask).sqrt())

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        standardised = self.adapt_predict(self.standardiser.tasks(tasks)).detach()
        return clamp_to_scale(self.standardiser.back(standardised), self.scale)
