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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench.protocol.episodes import MetaTrain
from learners.maml.vectorised import VectorisedMAML, VectorisedMAMLConfig
from learners.network.episodic import EpochConfig, WholeSupportEpisodes
from learners.network.model import RatingNetwork


@dataclass(frozen=True)
class MeLUConfig(EpochConfig, VectorisedMAMLConfig):
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
    embed_ids: bool = False
    """Also embed the other side's id (not MeLU: the paper embeds content alone)."""


class MeLU(WholeSupportEpisodes, VectorisedMAML):
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
