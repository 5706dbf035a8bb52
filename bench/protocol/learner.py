"""The narrow interface every learner implements (the registry of learners is
:mod:`bench.protocol.learner_registry`, their fitting budget :mod:`bench.protocol.budget`).

Learners, built-in and third-party alike, are declared as ``bench.learners`` entry points (see
``pyproject.toml``); ``bench`` itself never imports the ``learners`` package.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench.config import build_config, config_hash
from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds


@dataclass(frozen=True)
class NoConfig:
    """For learners without hyperparameters."""


class Learner(abc.ABC):
    """A recommender under test.

    ``fit`` sees only :class:`MetaTrain` and draws all its randomness from ``rng`` (its own branch
    of the run's seed tree). ``predict`` gets tasks already on the device given to ``fit``, adapts to
    each task's support set and returns predicted ratings ``[tasks, query_len]`` on that device
    (padding positions are ignored). The harness calls ``predict`` with at most
    :attr:`predict_chunk` tasks at a time. Learners never read files or compute metrics.

    The first line of the class docstring is the learner's description in ``bench ls``.

    Stability: stable.
    """

    config_class: ClassVar[type] = NoConfig
    quick_config: ClassVar[Mapping[str, Any]] = {}
    """Config overrides that keep a fit on the contract's small data to a second or so: the
    contract check and its test class use them unless told otherwise."""
    algorithm: ClassVar[str | None] = None
    """The algorithm this learner implements, when several learners implement one (``maml`` and
    ``maml-l2l`` both declare ``"maml"``): learners that declare the same algorithm draw from the
    same random streams, so a run shows them row for row. None: the learner's own name."""

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

    @property
    def predict_chunk(self) -> int:
        """The most tasks one ``predict`` call receives (bounds its memory)."""
        return 4096

    @abc.abstractmethod
    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None: ...

    @abc.abstractmethod
    def predict(self, tasks: TaskBatch) -> torch.Tensor: ...

    @property
    def score_chunk(self) -> int:
        """The most (task, candidate) pairs one ``predict`` call receives from the default
        :meth:`score` (bounds its memory)."""
        return 1 << 18

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        """Scores of candidate items for each task, higher ranked first: ``[tasks, C]``.

        ``candidates`` is ``[C]`` (the same items for every task) or ``[tasks, C]``. ``tasks``
        hold their support but an empty query: ranking never sees the query. The default asks
        :meth:`predict` for the rating of each (task, candidate) pair, in chunks; a learner whose
        score is cheaper for many items at once overrides it. Ties are broken by the harness.
        """
        return score_by_predict(
            self.predict, tasks, candidates, self.score_chunk, self.predict_chunk
        )


def score_by_predict(
    predict: Callable[[TaskBatch], torch.Tensor],
    tasks: TaskBatch,
    candidates: torch.Tensor,
    pairs: int,
    task_chunk: int,
) -> torch.Tensor:
    """Scores from ``predict``: the candidates become the tasks' query, at most ``pairs`` (task,
    item) pairs and ``task_chunk`` tasks per call. Tasks are split before candidates, so that a
    learner that adapts to each task's support in ``predict`` adapts once per task whenever all
    candidates fit in ``pairs``."""
    if tasks.axis != "user":
        raise ValueError("scoring candidate items needs user tasks")
    grid = candidates.expand(tasks.n_tasks, -1) if candidates.dim() == 1 else candidates
    n_candidates = grid.shape[1]
    if tasks.n_tasks == 0 or n_candidates == 0:
        return torch.zeros(grid.shape, device=grid.device)
    rows = max(1, min(task_chunk, pairs // n_candidates))
    width = max(1, pairs // rows)
    blocks = []
    for r in range(0, tasks.n_tasks, rows):
        sub, items = tasks.select(slice(r, r + rows)), grid[r : r + rows]
        columns = [
            predict(sub.with_queries(items[:, c : c + width]))
            for c in range(0, n_candidates, width)
        ]
        blocks.append(torch.cat(columns, 1))
    return torch.cat(blocks, 0)


def clamp_to_scale(pred: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    return pred.clamp(scale[0], scale[1])
