"""Prototypical networks for ratings (registered as ``protonet``).

A learned encoder (the MeLU-style network with a ``proto_dim`` output instead of a rating) maps
each (task entity, other entity) pair to a point. Per task, each rating class gets a prototype: the
mean encoding of the support ratings in that class. A query's class probabilities are the softmax
over negative squared distances to the prototypes (times a learned scale); its predicted rating is
the expected class value.

Classes (``classes``):
  - ``"levels"``: one class per distinct rating level of the dataset, valued at the level;
  - ``"like"``: dislike (rating < like threshold) and like, each valued at the mean training rating
    of its class.

A class missing from a task's support set (common at k = 1 or 5) falls back to a learned global
prototype of that class: every class prototype is shrunk towards its global prototype with
``prior_weight`` pseudo-ratings, ``(sum of encodings + w * global) / (count + w)``, so a class with
no support ratings sits exactly at its global prototype and a well-supported class is dominated by
its support.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.network.episodic import EpisodicConfig, EpisodicLearner
from learners.network.explain import Head, NetworkFields
from learners.network.losses import masked_mse, mean_over_tasks
from learners.network.model import RatingNetwork


@dataclass(frozen=True)
class ProtoConfig(EpisodicConfig):
    proto_dim: int = 32
    """Dimension of the encoding in which prototypes live."""
    classes: Literal["levels", "like"] = "levels"
    prior_weight: float = 1.0
    """Pseudo-ratings pulling each class prototype towards its learned global prototype."""
    ce_weight: float = 0.1
    """Weight of the class cross-entropy added to the expected-rating squared error."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.proto_dim < 1:
            raise ValueError("proto_dim must be >= 1")
        if self.prior_weight <= 0:
            raise ValueError("prior_weight must be > 0 (it is what handles missing classes)")
        if self.classes not in ("levels", "like"):
            raise ValueError(f"classes must be 'levels' or 'like', got {self.classes!r}")


class ProtoModel(nn.Module):
    """The encoder plus the global class prototypes and the distance scale."""

    class_values: torch.Tensor
    class_bounds: torch.Tensor

    def __init__(
        self, encoder: RatingNetwork, n_classes: int, proto_dim: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.encoder = encoder
        start = torch.randn(n_classes, proto_dim, generator=generator) * 0.1
        self.global_prototypes = nn.Parameter(start)
        self.log_scale = nn.Parameter(torch.zeros(()))


class PrototypicalNetwork(EpisodicLearner, NetworkFields):
    """Prototypical networks: prototypes per rating class from the support set."""

    config_class = ProtoConfig
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "hidden": (16, 16),
        "meta_steps": 4,
        "meta_batch": 8,
        "eval_every": 2,
        "proto_dim": 8,
    }
    config: ProtoConfig
    model: ProtoModel

    def build(self, train: MetaTrain, generator: torch.Generator) -> ProtoModel:
        cfg = self.config
        if cfg.classes == "levels":
            levels = np.unique(np.asarray(train.rating_levels, dtype=np.float64))
            self.bounds = (levels[1:] + levels[:-1]) / 2  # a rating's class is its nearest level
            values = levels
        else:
            like = train.rating >= train.like_threshold
            lo, hi = train.rating_scale
            values = np.array(
                [
                    train.rating[~like].mean() if (~like).any() else lo,
                    train.rating[like].mean() if like.any() else hi,
                ]
            )
            self.bounds = np.array([train.like_threshold])
        encoder = RatingNetwork.for_training_data(
            train, cfg.embedding_dim, cfg.hidden, generator, out_dim=cfg.proto_dim, output_bias=0.0
        )
        model = ProtoModel(encoder, len(values), cfg.proto_dim, generator)
        model.register_buffer("class_values", torch.tensor(values, dtype=torch.float32))
        model.register_buffer("class_bounds", torch.tensor(self.bounds, dtype=torch.float32))
        return model

    def _classes(self, ratings: torch.Tensor) -> torch.Tensor:
        # "like" bounds are the threshold itself (rating >= threshold is a like).
        right = self.config.classes == "like"
        return torch.bucketize(ratings, self.model.class_bounds, right=right)

    def prototypes(self, tasks: TaskBatch) -> torch.Tensor:
        """``[T, C, D]``: each class's support mean, shrunk towards its global prototype."""
        m = self.model
        emb = m.encoder(tasks.support_users, tasks.support_items)
        onehot = F.one_hot(self._classes(tasks.support_ratings), len(m.class_values))
        onehot = onehot.to(emb.dtype) * tasks.support_mask.unsqueeze(-1).to(emb.dtype)
        sums = torch.einsum("tsc,tsd->tcd", onehot, emb)
        counts = onehot.sum(1).unsqueeze(-1)
        w = self.config.prior_weight
        return (sums + w * m.global_prototypes) / (counts + w)

    def logits(self, tasks: TaskBatch) -> torch.Tensor:
        """``[T, Q, C]`` negative scaled squared distances of queries to the class prototypes."""
        protos = self.prototypes(tasks)
        emb = self.model.encoder(tasks.query_users, tasks.query_items)
        dist = ((emb.unsqueeze(2) - protos.unsqueeze(1)) ** 2).sum(-1)
        return -dist * self.model.log_scale.exp()

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        assert batch.query_ratings is not None
        logits = self.logits(batch)
        pred = logits.softmax(-1) @ self.model.class_values
        loss = mean_over_tasks(
            masked_mse(pred, batch.query_ratings, batch.query_mask), batch.query_mask
        )
        if self.config.ce_weight:
            target = self._classes(batch.query_ratings)
            ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            loss = loss + self.config.ce_weight * mean_over_tasks(
                (ce * batch.query_mask).sum(-1) / batch.query_mask.sum(-1).clamp(min=1),
                batch.query_mask,
            )
        return loss

    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        return self.logits(tasks).softmax(-1) @ self.model.class_values

    def predict_proba_like(self, tasks: TaskBatch) -> torch.Tensor:
        """Probability that each query rating is a like (at or above the like threshold)."""
        probs = self.logits(self.standardiser.tasks(tasks)).softmax(-1)
        liked = (self.model.class_values >= self.like_threshold).to(probs.dtype)
        return (probs @ liked).detach()

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        self.like_threshold = train.like_threshold
        super().setup(train, rng=rng, device=device)

    def fields_network(self) -> RatingNetwork:
        return self.model.encoder

    def task_heads(self, tasks: TaskBatch, adapted: bool) -> list[tuple[RatingNetwork, Head]]:
        """Each task's distances to its class prototypes: from its support (``adapted``), or the
        global prototypes alone (an empty support)."""
        m = self.model
        support = (
            tasks if adapted else replace(tasks, support_mask=torch.zeros_like(tasks.support_mask))
        )
        protos = self.prototypes(support)

        def head_of(n: int) -> Head:
            def head(x: torch.Tensor) -> torch.Tensor:
                emb = m.encoder.decide(x)
                dist = ((emb.unsqueeze(-2) - protos[n]) ** 2).sum(-1)
                out: torch.Tensor = (-dist * m.log_scale.exp()).softmax(-1) @ m.class_values
                return out

            return head

        return [(m.encoder, head_of(n)) for n in range(tasks.n_tasks)]
