"""MeLU (Lee et al., "MeLU: Meta-Learned User Preference Estimator for Cold-Start Recommendation",
KDD 2019), registered as ``melu``.

The user preference estimator (paper, Sec. 3.2) embeds content only: the item's fields (ML-1M in the
paper: rate, genre, director, actors; here whatever the dataset names, e.g. ML-100K's genres and
release year) and the user's demographic fields (gender, age, occupation, zip code; here the zip
code's first digit), one embedding per field, multi-hot fields averaged. No id is embedded, so a new
user or item is as known as an old one. The concatenated embeddings feed a decision MLP. Meta-
learning (Sec. 3.3, Algorithm 1) is MAML whose local update touches the decision layers only; the
embeddings learn in the global update. It is the vectorised MAML of :mod:`learners.maml` on the
shared network with content-only, field-wise embeddings.

Defaults are the paper's (Sec. 4, experimental settings, which the authors' released
configuration repeats): embeddings of 32 per field, two hidden layers of 64, one local update
(MeLU-1; the paper also reports five) with step size 5e-6, global updates with Adam at 5e-5 on
batches of 32 tasks, 20 epochs over the training tasks. Tasks train with their whole support
when the protocol evaluates ``all`` of it (as the paper's tasks do; a heavy training user's support
is a random subset as large as the largest evaluated one), else with the protocol's k. The output
layer starts at zero, so the untrained estimator predicts the mean rating.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.maml.vectorised import VectorisedMAML, VectorisedMAMLConfig
from learners.network.model import RatingNetwork
from learners.network.support import mixed_support, training_support_sizes
from learners.network.trainer import Schedule


@dataclass(frozen=True)
class MeLUConfig(VectorisedMAMLConfig):
    embedding_dim: int = 32
    hidden: tuple[int, ...] = (64, 64)
    inner_lr: float = 5e-6
    """The local update's step size (the paper's alpha)."""
    inner_steps: int = 1
    """Local updates per task (MeLU-1; the paper also runs MeLU-5)."""
    outer_lr: float = 5e-5
    """The global update's step size (the paper's beta), for Adam."""
    meta_batch: int = 32
    epochs: int = 20
    """Passes over the training tasks (one task per task entity with enough ratings)."""
    meta_steps: int = 0
    """Meta-steps to train for; 0 (the default) derives them from ``epochs``."""
    embed_ids: bool = False
    """Also embed the other side's id (not MeLU: the paper embeds content alone)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 0:
            raise ValueError("epochs must be >= 0")


class MeLU(VectorisedMAML):
    """MeLU (Lee et al., KDD 2019): content embeddings, a decision MLP, local update of its layers."""

    config_class = MeLUConfig
    algorithm: ClassVar[str | None] = (
        None  # its own: the local update touches the decision layers only
    )
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "hidden": (16, 16),
        "meta_steps": 4,
        "meta_batch": 8,
        "eval_every": 2,
    }
    config: MeLUConfig

    @classmethod
    def not_applicable(cls, dataset: Any) -> str | None:
        if dataset.user_features is None and dataset.item_features is None:
            return "needs user or item side features (MeLU embeds content, not ids)"
        return None

    def build(self, train: MetaTrain, generator: torch.Generator) -> RatingNetwork:
        cfg = self.config
        net = RatingNetwork.for_training_data(
            train,
            cfg.embedding_dim,
            cfg.hidden,
            generator,
            embed_ids=cfg.embed_ids,
            by_field=True,
        )
        # The paper leaves initialisation open. A zero output layer makes the untrained estimator
        # predict the mean rating, so the paper's small step sizes improve on the mean rather than
        # on random outputs; the first global update gives the output weights a gradient.
        last = net.decision[-1]
        assert isinstance(last, torch.nn.Linear)
        with torch.no_grad():
            last.weight.zero_()
        return net

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        super().setup(train, rng=rng, device=device)
        # The whole support when the protocol evaluates it, as wide as the validation tasks'
        # widest (they are drawn like the evaluated tasks), else as the largest training pool.
        self.whole_support = "all" in train.support_sizes
        finite = [k for k in train.support_sizes if isinstance(k, int) and k > 0]
        if train.validation is not None and train.validation.n_tasks:
            widest = int(train.validation.support_mask.sum(1).max())
        else:
            widest = int(train.sampler.counts.max(initial=0)) - self.query_size
        self.support_width = max(widest, 1)
        if self.whole_support:
            self.sizes = sorted({*finite, self.support_width})
        else:
            self.sizes = training_support_sizes(train)
        needed = self.query_size + 1 if self.whole_support else max(self.sizes) + self.query_size
        self.task_pool = train.sampler.entities_with(needed)
        if len(self.task_pool) == 0:
            self.task_pool = train.sampler.entities_with(1)

    def schedule(self, train: MetaTrain) -> Schedule:
        cfg = self.config
        per_epoch = math.ceil(len(self.task_pool) / cfg.meta_batch)
        steps = cfg.meta_steps or cfg.epochs * per_epoch
        return Schedule(steps, cfg.eval_every, cfg.patience)

    def sample(self, train: MetaTrain, rng: np.random.Generator) -> TaskBatch:
        cfg = self.config
        pool = self.task_pool
        entities = rng.choice(pool, size=cfg.meta_batch, replace=len(pool) < cfg.meta_batch)
        batch = train.sampler.sample(
            rng, cfg.meta_batch, max(self.sizes), self.query_size, entities=entities
        )
        # A fixed support width keeps every meta-batch the same shape (one CUDA graph serves all).
        batch = _pad_support(batch, max(self.sizes))
        return mixed_support(batch, self.sizes, rng).to(self.device)


def _pad_support(batch: TaskBatch, width: int) -> TaskBatch:
    extra = width - batch.support_mask.shape[1]
    if extra <= 0:
        return batch

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, extra))

    return replace(
        batch,
        support_users=pad(batch.support_users),
        support_items=pad(batch.support_items),
        support_ratings=pad(batch.support_ratings),
        support_mask=pad(batch.support_mask),
    )
