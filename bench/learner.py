"""The narrow interface every learner implements, and the learner registry."""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bench.config import build_config, config_hash
from bench.episodes import MetaTrain, TaskBatch
from bench.errors import RegistryError
from bench.registry import Registry


@dataclass(frozen=True)
class Budget:
    """Optional limits a learner should respect while fitting."""

    max_seconds: float | None = None


@dataclass(frozen=True)
class NoConfig:
    """For learners without hyperparameters."""


class Learner(abc.ABC):
    """A recommender under test.

    ``fit`` sees only :class:`MetaTrain`; ``predict`` adapts to each task's support set and returns
    predicted ratings ``[tasks, query_len]`` (padding positions are ignored). Learners never read
    files or compute metrics.

    Stability: stable.
    """

    config_class: ClassVar[type] = NoConfig

    @classmethod
    def not_applicable(cls, dataset: Any) -> str | None:
        """Why this learner cannot run on ``dataset``, or None when it can."""
        return None

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None, name: str = "") -> Learner:
        where = f"[learner.{name}]" if name else cls.__name__
        return cls(build_config(cls.config_class, overrides, where=where))

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @abc.abstractmethod
    def fit(
        self,
        train: MetaTrain,
        *,
        rng: np.random.Generator,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None: ...

    @abc.abstractmethod
    def predict(self, tasks: TaskBatch) -> torch.Tensor: ...


def _check_learner(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Learner)):
        raise RegistryError(
            f"learner {name!r} resolves to {obj!r}, which is not a Learner subclass"
        )


LEARNERS: Registry[type[Learner]] = Registry("learner", _check_learner, "bench.learners")


def make_learner(name: str, overrides: dict[str, Any] | None = None) -> Learner:
    import learners  # noqa: F401  (registers the built-in learners)

    try:
        cls = LEARNERS.get(name)
    except ImportError as exc:
        raise RegistryError(
            f"learner {name!r} needs a package that is not installed: {exc}"
        ) from exc
    return cls.from_overrides(overrides, name)


def clamp_to_scale(pred: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    return pred.clamp(scale[0], scale[1])
