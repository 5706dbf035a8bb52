"""``maml``: MAML vectorised over tasks with ``torch.func``, optionally replayed from a CUDA graph."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.maml.base import MAMLBase, MAMLConfig
from learners.maml.cuda_graph import GraphedMetaStep
from learners.network.adaptation import adapt_and_predict, adapted_predictions
from learners.network.losses import masked_mse, mean_over_tasks


@dataclass(frozen=True)
class VectorisedMAMLConfig(MAMLConfig):
    cuda_graph: bool = True
    """On CUDA, capture each meta-step as a CUDA graph and replay it (same mathematics, fewer
    launches); ignored on CPU."""


class VectorisedMAML(MAMLBase):
    """MAML vectorised over tasks with torch.func; on CUDA each meta-step replays a CUDA graph."""

    config_class = VectorisedMAMLConfig
    config: VectorisedMAMLConfig
    graphed: GraphedMetaStep | None = None

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        self.graphed = None  # a graph holds the previous model's tensors
        super().setup(train, rng=rng, device=device)

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
        return adapt_and_predict(
            self.model, tasks, lr=cfg.inner_lr, steps=cfg.inner_steps, adapt=cfg.adapt
        )
