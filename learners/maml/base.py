"""The config and the model both MAML implementations share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench.protocol.episodes import MetaTrain
from learners.network.adaptation import Adapt, check_adapt
from learners.network.episodic import EpisodicConfig, EpisodicLearner
from learners.network.explain import NetworkFields
from learners.network.model import RatingNetwork


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


class MAMLBase(EpisodicLearner, NetworkFields):
    """MAML on the MeLU-style rating network."""

    config_class = MAMLConfig
    algorithm: ClassVar[str | None] = "maml"
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "hidden": (16, 16),
        "meta_steps": 4,
        "meta_batch": 8,
        "eval_every": 2,
    }
    config: MAMLConfig
    model: RatingNetwork

    def build(self, train: MetaTrain, generator: torch.Generator) -> RatingNetwork:
        cfg = self.config
        return RatingNetwork.for_training_data(train, cfg.embedding_dim, cfg.hidden, generator)

    def adaptation(self) -> tuple[float, int, Adapt]:
        cfg = self.config
        return cfg.inner_lr, cfg.inner_steps, cfg.adapt
