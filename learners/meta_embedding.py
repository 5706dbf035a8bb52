"""Meta-Embedding (Pan, Li, Ao, Tang and He, "Warm Up Cold-start Advertisements: Improving CTR
Predictions via Learning to Learn ID Embeddings", SIGIR 2019), registered as ``meta-embedding``.

The base model is the shared rating network (:mod:`learners.network.model`) with id embeddings of
the other side (items when tasks are users), pre-trained on all training ratings exactly as
``fine-tune`` pre-trains it. An id never seen in training has no embedding worth the name (the
network gives it zero). Meta-Embedding learns a *generator* of initial id embeddings from content: a
dense layer with a tanh output over the entity's content embedding, taken from the pre-trained
network and frozen (paper, Sec. 3, where the generator reuses the base model's embedding layers,
frozen, under a light compositional layer; the authors' released code uses one dense layer without
bias and divides its tanh output by 5, which ``output_scale`` keeps).

The generator trains with the paper's two-batch meta objective (Sec. 3, Algorithm 1), the base model
frozen: each seen entity is a task; two disjoint minibatches ``a`` and ``b`` of its training ratings
are drawn; the generated embedding predicts ``a`` (the cold-start loss), takes one gradient step of
size ``cold_lr`` on it, and the updated embedding predicts ``b`` (the warm-up loss); the generator
minimises ``alpha * loss_a + (1 - alpha) * loss_b`` through that step. After training, every unseen
id of the other side gets its generated embedding, and tasks adapt on their support as in
``fine-tune``.

Defaults: ``alpha`` 0.1, the warm-up step 1e-4 and the generator's Adam step 1e-3 of the released
code (the paper's experiments, Sec. 4); 20 ratings per minibatch (our choice: the paper draws two
minibatches of K samples per ad, Sec. 3); the base model and the per-task adaptation are
``fine-tune``'s defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.protocol.episodes import EpisodeSampler, MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.finetune import FineTune, FineTuneConfig
from learners.network.losses import masked_mse, mean_over_tasks
from learners.network.model import initialise_linear
from learners.network.trainer import Schedule, TrainingLog, train_model


@dataclass(frozen=True)
class MetaEmbeddingConfig(FineTuneConfig):
    alpha: float = 0.1
    """Weight of the cold-start loss against the warm-up loss in the meta objective (Sec. 3; 0.1 in
    the released code)."""
    cold_lr: float = 1e-4
    """Step size of the one warm-up step on the generated embedding (the released code's)."""
    generator_lr: float = 1e-3
    """Adam step size of the generator (the released code's)."""
    shots: int = 20
    """Ratings in each of the two minibatches of one entity."""
    meta_batch: int = 32
    """Entities per generator step."""
    meta_steps: int = 300
    """Generator steps."""
    output_scale: float = 0.2
    """The tanh output's scale (the released code divides it by 5)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.cold_lr < 0 or self.generator_lr <= 0 or self.output_scale <= 0:
            raise ValueError("cold_lr >= 0, generator_lr > 0 and output_scale > 0 required")
        if self.shots < 1 or self.meta_batch < 1 or self.meta_steps < 0:
            raise ValueError("shots >= 1, meta_batch >= 1 and meta_steps >= 0 required")


class Generator(nn.Module):
    """Content embedding to initial id embedding: ``scale * tanh(W x)``."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, dim, bias=False)
        self.scale = scale

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.layer(content))


class MetaEmbedding(FineTune):
    """Meta-Embedding (Pan et al., SIGIR 2019): new ids get embeddings generated from content."""

    config_class = MetaEmbeddingConfig
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "hidden": (16, 16),
        "epochs": 1,
        "meta_steps": 4,
        "meta_batch": 8,
    }
    config: MetaEmbeddingConfig
    generator_log: TrainingLog

    @classmethod
    def not_applicable(cls, dataset: Any) -> str | None:
        if dataset.user_features is None and dataset.item_features is None:
            return "needs side features (it generates id embeddings from content)"
        return None

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        super().setup(train, rng=rng, device=device)
        if "other_features" not in self.model.embedding:
            other = "item" if train.axis == "user" else "user"
            raise ValueError(
                f"meta-embedding generates {other} id embeddings from {other} features, "
                f"and the dataset has none"
            )
        cfg = self.config
        self.generator = Generator(cfg.embedding_dim, cfg.output_scale)
        with torch.no_grad():
            initialise_linear(self.generator.layer, rng.torch("generator"))
        self.generator.to(device)

    def content_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """The frozen pre-trained embedding of the other side's content."""
        net = self.model
        return net.embedding["other_features"](net.other_table[ids]).detach()

    def finish(self, train: MetaTrain, rng: np.random.Generator, deadline: float | None) -> None:
        cfg = self.config
        net = self.model
        other_axis = "item" if train.axis == "user" else "user"
        n_other = train.n_items if other_axis == "item" else train.n_users
        sampler = EpisodeSampler(train.user, train.item, train.rating, other_axis, n_other)
        pool = sampler.entities_with(2 * cfg.shots)
        if len(pool) == 0:
            pool = sampler.entities_with(2)
        optimiser = torch.optim.Adam(self.generator.parameters(), lr=cfg.generator_lr)
        frozen = [p for p in net.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)

        def step(_: int) -> None:
            chosen = rng.choice(pool, size=cfg.meta_batch, replace=len(pool) < cfg.meta_batch)
            batch = sampler.sample(rng, cfg.meta_batch, cfg.shots, cfg.shots, entities=chosen)
            optimiser.zero_grad(set_to_none=True)
            self.meta_loss(batch.to(self.device)).backward()
            optimiser.step()

        try:
            steps = cfg.meta_steps if len(pool) else 0
            self.generator_log = train_model(
                self.generator, step, None, Schedule(steps, 0, 1, deadline)
            )
        finally:
            for p in frozen:
                p.requires_grad_(True)
        # Every id unseen in training starts from its generated embedding.
        with torch.no_grad():
            unseen = torch.nonzero(net.other_known == 0).squeeze(1)
            table = net.embedding["other_id"]
            assert isinstance(table, nn.Embedding)
            table.weight[unseen] = self.generator(self.content_embedding(unseen))
            net.other_known[unseen] = 1.0

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """The two-batch objective on tasks of the other side (support = batch a, query = b)."""
        cfg = self.config
        net = self.model
        initial = self.generator(self.content_embedding(batch.entities))[:, None, :]

        def loss(embedding: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
                 ratings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # fmt: skip
            pred = net.decide(net.embed(users, items, other_embedding=embedding))
            return masked_mse(pred, ratings, mask)

        cold = loss(
            initial,
            batch.support_users,
            batch.support_items,
            batch.support_ratings,
            batch.support_mask,
        )
        (grad,) = torch.autograd.grad(cold.sum(), initial, create_graph=True)
        warmed = initial - cfg.cold_lr * grad
        assert batch.query_ratings is not None
        warm = loss(
            warmed, batch.query_users, batch.query_items, batch.query_ratings, batch.query_mask
        )
        cold_mean = mean_over_tasks(cold, batch.support_mask)
        warm_mean = mean_over_tasks(warm, batch.query_mask)
        return cfg.alpha * cold_mean + (1.0 - cfg.alpha) * warm_mean
