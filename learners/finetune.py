"""Pre-train, then fine-tune on each task's support set (registered as ``fine-tune``).

The MeLU-style network is trained by plain minibatch regression on all training ratings. At
prediction time each task takes ``finetune_steps`` gradient steps of size ``finetune_lr`` on its
support ratings (the decision layers only, or every parameter), all tasks at once with
``torch.func``. Nothing here is meta-learned: this is the baseline that meta-learning must beat.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from bench.episodes import MetaTrain, TaskBatch, predict_in_chunks
from bench.learner import Budget, Learner, clamp_to_scale
from learners.network import (
    Adapt,
    NetworkConfig,
    RatingNetwork,
    adapted_predictions,
    check_adapt,
    masked_mse,
    mean_over_tasks,
)


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
    predict_chunk: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.patience < 1:
            raise ValueError("epochs >= 0, batch_size >= 1, lr > 0 and patience >= 1 required")
        if self.finetune_steps < 0 or self.finetune_lr < 0 or self.predict_chunk < 1:
            raise ValueError("finetune_steps and finetune_lr must be >= 0, predict_chunk >= 1")
        check_adapt(self.adapt)


class FineTune(Learner):
    """Pre-trained network, fine-tuned per task at prediction time."""

    config_class = FineTuneConfig
    config: FineTuneConfig

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: np.random.Generator,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        cfg = self.config
        self.device, self.scale = device, train.rating_scale
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            self.model = RatingNetwork.for_training_data(train, cfg.embedding_dim, cfg.hidden)
        self.model.to(device)
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        users = torch.as_tensor(train.user, dtype=torch.long, device=device)
        items = torch.as_tensor(train.item, dtype=torch.long, device=device)
        ratings = torch.as_tensor(train.rating, dtype=torch.float32, device=device)
        validation = train.validation
        if validation is not None and validation.n_tasks == 0:
            validation = None
        deadline = (
            time.perf_counter() + budget.max_seconds
            if budget is not None and budget.max_seconds is not None
            else None
        )
        best, best_state, stale = float("inf"), None, 0
        for _ in range(cfg.epochs):
            self.model.train()
            order = torch.as_tensor(rng.permutation(len(ratings)), device=device)
            for start in range(0, len(order), cfg.batch_size):
                rows = order[start : start + cfg.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = torch.mean((self.model(users[rows], items[rows]) - ratings[rows]) ** 2)
                loss.backward()
                optimizer.step()
            if validation is not None:
                score = self.validation_rmse(validation)
                if score < best - 1e-5:
                    best, best_state, stale = score, copy.deepcopy(self.model.state_dict()), 0
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
            if deadline is not None and time.perf_counter() > deadline:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()

    def validation_rmse(self, validation: TaskBatch) -> float:
        assert validation.query_ratings is not None
        labels = validation.to(self.device)
        pred = self.predict(labels.without_labels())
        assert labels.query_ratings is not None
        per_task = masked_mse(pred, labels.query_ratings, labels.query_mask)
        return float(mean_over_tasks(per_task, labels.query_mask).sqrt())

    def adapt_predict(self, tasks: TaskBatch, steps: int | None = None) -> torch.Tensor:
        """Query predictions after ``steps`` (default ``finetune_steps``) support steps."""
        cfg = self.config
        start = {k: v.detach() for k, v in self.model.group(cfg.adapt).items()}
        with torch.enable_grad():
            return adapted_predictions(
                self.model,
                tasks,
                lr=cfg.finetune_lr,
                steps=cfg.finetune_steps if steps is None else steps,
                adapt=cfg.adapt,
                first_order=True,
                params=start,
            ).detach()

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        tasks = tasks.to(self.device)
        pred = predict_in_chunks(self.adapt_predict, tasks, self.config.predict_chunk)
        return clamp_to_scale(pred.detach(), self.scale)
