"""MAML on the MeLU-style network, twice: vectorised with ``torch.func`` (``maml``) and with
learn2learn's per-task ``clone()``/``adapt()`` loop (``maml-l2l``).

Both minimise the same objective: for each task, ``inner_steps`` gradient steps of size
``inner_lr`` on the masked mean squared error of its support ratings, starting from the shared
parameters, then the mean squared error on its query ratings; the meta-loss is the mean over
tasks. ``adapt = "decision"`` adapts only the decision layers (MeLU's local update) while the
embeddings are learned by the outer loop alone; ``adapt = "all"`` adapts every parameter.
``first_order`` drops the second-order terms (the inner gradients are treated as constants).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from bench.episodes import MetaTrain, TaskBatch
from bench.errors import RegistryError
from learners.cuda_graph import GraphedMetaStep
from learners.episodic import EpisodicConfig, EpisodicLearner
from learners.network import (
    Adapt,
    RatingNetwork,
    adapted_predictions,
    check_adapt,
    masked_mse,
    mean_over_tasks,
)

INSTALL_HINT = (
    "learn2learn is not installed in this environment; install it with `make setup` "
    "(or scripts/install_learn2learn.sh .venv/bin/python)"
)


def import_learn2learn() -> ModuleType:
    """Import learn2learn on first use, with a clear message when it is missing."""
    try:
        # learn2learn imports gym, which prints a deprecation banner on import; keep output clean.
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import learn2learn
    except ImportError as exc:
        raise RegistryError(f"{INSTALL_HINT} ({exc})") from exc
    return learn2learn


@dataclass(frozen=True)
class MAMLConfig(EpisodicConfig):
    inner_lr: float = 0.05
    inner_steps: int = 1
    first_order: bool = False
    adapt: Adapt = "decision"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inner_steps < 0 or self.inner_lr < 0:
            raise ValueError("inner_steps and inner_lr must be >= 0")
        check_adapt(self.adapt)


class _MAMLBase(EpisodicLearner):
    config_class = MAMLConfig
    config: MAMLConfig
    model: RatingNetwork

    def build(self, train: MetaTrain) -> RatingNetwork:
        return RatingNetwork.for_training_data(train, self.config.embedding_dim, self.config.hidden)


@dataclass(frozen=True)
class VectorisedMAMLConfig(MAMLConfig):
    cuda_graph: bool = True
    """On CUDA, capture each meta-step as a CUDA graph and replay it (same mathematics, fewer
    launches); ignored on CPU."""


class VectorisedMAML(_MAMLBase):
    """MAML vectorised over tasks with ``torch.func`` (registered as ``maml``)."""

    config_class = VectorisedMAMLConfig
    config: VectorisedMAMLConfig
    graphed: GraphedMetaStep | None = None

    def setup(self, train: MetaTrain, **kwargs: Any) -> None:
        self.graphed = None  # a graph holds the previous model's tensors
        super().setup(train, **kwargs)

    def uses_cuda_graph(self) -> bool:
        return self.config.cuda_graph and self.device.type == "cuda"

    def meta_step(self, batch: TaskBatch) -> float:
        if not self.uses_cuda_graph():
            return super().meta_step(batch)
        if self.graphed is None or not self.graphed.fits(batch):
            self.graphed = GraphedMetaStep(
                self.meta_loss, self.optimizer, list(self.model.parameters()), batch
            )
        return self.graphed.step(batch)

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        cfg = self.config
        pred = adapted_predictions(
            self.model,
            batch,
            lr=cfg.inner_lr,
            steps=cfg.inner_steps,
            adapt=cfg.adapt,
            first_order=cfg.first_order,
        )
        assert batch.query_ratings is not None
        per_task = masked_mse(pred, batch.query_ratings, batch.query_mask)
        return mean_over_tasks(per_task, batch.query_mask)

    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        cfg = self.config
        # Start from detached copies: prediction needs the inner gradients, not an outer graph.
        start = {k: v.detach() for k, v in self.model.group(cfg.adapt).items()}
        with torch.enable_grad():
            return adapted_predictions(
                self.model,
                tasks,
                lr=cfg.inner_lr,
                steps=cfg.inner_steps,
                adapt=cfg.adapt,
                first_order=True,
                params=start,
            ).detach()


class Learn2LearnMAML(_MAMLBase):
    """MAML with learn2learn's ``MAML`` wrapper, one ``clone()``/``adapt()`` per task (registered
    as ``maml-l2l``): the reference implementation that ``maml`` must agree with."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        import_learn2learn()  # fail at construction, with the install hint, when it is missing

    def setup(self, train: MetaTrain, **kwargs: Any) -> None:
        super().setup(train, **kwargs)
        cfg = self.config
        # With adapt = "decision" only the decision layers are wrapped, so adapt() touches them
        # alone; the embeddings stay shared by all clones and learn in the outer loop.
        wrapped = self.model.decision if cfg.adapt == "decision" else self.model
        self.maml = import_learn2learn().algorithms.MAML(
            wrapped, lr=cfg.inner_lr, first_order=cfg.first_order
        )

    def _task_losses(self, batch: TaskBatch, with_labels: bool) -> list[torch.Tensor]:
        """Per task: the query predictions (or its query loss when ``with_labels``)."""
        cfg = self.config
        out = []
        for t in range(batch.n_tasks):
            s = batch.support_mask[t]
            q = batch.query_mask[t]
            learner = self.maml.clone()
            su, si, sr = (
                batch.support_users[t][s],
                batch.support_items[t][s],
                batch.support_ratings[t][s],
            )
            qu, qi = batch.query_users[t][q], batch.query_items[t][q]
            if cfg.adapt == "decision":
                x_s, x_q = self.model.embed(su, si), self.model.embed(qu, qi)
                for _ in range(cfg.inner_steps):
                    if len(sr):
                        learner.adapt(torch.mean((learner(x_s).squeeze(-1) - sr) ** 2))
                pred = learner(x_q).squeeze(-1)
            else:
                for _ in range(cfg.inner_steps):
                    if len(sr):
                        learner.adapt(torch.mean((learner(su, si) - sr) ** 2))
                pred = learner(qu, qi)
            if with_labels:
                assert batch.query_ratings is not None
                out.append(torch.mean((pred - batch.query_ratings[t][q]) ** 2))
            else:
                full = torch.zeros(q.shape, dtype=pred.dtype, device=pred.device)
                out.append(full.masked_scatter(q, pred))
        return out

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        has_query = batch.query_mask.any(1)
        losses = self._task_losses(batch, with_labels=True)
        kept = [loss for loss, ok in zip(losses, has_query.tolist(), strict=True) if ok]
        if not kept:
            return torch.zeros((), device=batch.query_mask.device, requires_grad=True)
        return torch.stack(kept).sum() / len(kept)

    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        with torch.enable_grad():
            preds = self._task_losses(tasks, with_labels=False)
        if not preds:
            return torch.zeros(tasks.query_items.shape, device=self.device)
        return torch.stack(preds).detach()
