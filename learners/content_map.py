"""Content-to-factor map (registered as ``content-map``): the simplest "zero-shot" cold-start model.

A biased matrix factorisation (:mod:`learners.mf`, the same ALS and the same fields, so a suite
tunes it like ``mf``) is fitted on the training ratings. Then, per side that has content (item
features; user features where the dataset has them), a ridge regression maps an entity's content
to its ``[factors..., bias]``, fitted on the entities seen in training. Entities seen in training
keep their own factors; every other entity, task or query side, gets the mapped ones. This is the
linear mapping baseline of the content-to-embedding family (Gantner et al., "Learning
attribute-to-feature mappings for cold-start recommendations", ICDM 2010, map attributes to the
factors of a trained factorisation model in this way).

By default the support set is not used: a new entity is predicted from its content alone. With
``fold_in = true`` a new task entity's factors are instead folded in on its support ratings by
the ridge solve of ``mf``, centred on the mapped factors; ``mf`` with side features does the same
around its own map, whose intercept is penalised (here it is not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.protocol.episodes import TaskBatch
from bench.protocol.learner import clamp_to_scale
from learners.als import ridge_solve
from learners.mf import DTYPES, MatrixFactorisation


@dataclass(frozen=True)
class ContentMapConfig:
    # The warm model: the fields and defaults of ``mf`` (learners/mf.py), so that a suite can
    # search the same grid for both.
    rank: int = 16
    reg: float = 0.05
    reg_floor: float = 1.0
    iterations: int = 4
    init: Literal["svd", "random"] = "svd"
    init_std: float = 0.1
    dtype: Literal["float32", "float64"] = "float32"
    threads: int = 1
    # The map.
    map_reg: float = 10.0
    """Ridge penalty of the map from content to ``[factors..., bias]`` (the intercept is not
    penalised); the same default as ``mf``'s ``feature_reg``."""
    fold_in: bool = False
    """Fold a new task entity in on its support, centred on its mapped factors (else: content
    alone, whatever the support)."""
    fold_in_reg: float = 8.0
    """Ridge penalty of that fold-in (``mf``'s default)."""

    def __post_init__(self) -> None:
        if self.rank < 1 or self.iterations < 1:
            raise ValueError("rank and iterations must be at least 1")
        if min(self.reg, self.reg_floor, self.map_reg, self.fold_in_reg) < 0:
            raise ValueError("penalties must be non-negative")
        if self.threads < 0:
            raise ValueError("threads must be non-negative")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")


def ridge_map(
    features: torch.Tensor, targets: torch.Tensor, reg: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``W`` and intercept ``c`` minimising ``|X W + c - Y|^2 + reg |W|^2``.

    Centring both sides takes the intercept out of the penalty: ``W = (Xc'Xc + reg I)^-1 Xc'Yc``
    and ``c = mean(Y) - mean(X) W``.
    """
    x_mean, y_mean = features.mean(0), targets.mean(0)
    xc, yc = features - x_mean, targets - y_mean
    weights = ridge_solve(xc.T @ xc, (xc.T @ yc).T, reg).T
    return weights, y_mean - x_mean @ weights


class ContentMap(MatrixFactorisation):
    """Ridge map from content to MF factors for new users and items; seen ones keep their own."""

    config_class = ContentMapConfig  # type: ignore[assignment]
    quick_config: ClassVar[Mapping[str, Any]] = {"rank": 4, "iterations": 3}
    config: ContentMapConfig  # type: ignore[assignment]

    def folds_in(self) -> bool:
        return self.config.fold_in

    def _prior(
        self, features: np.ndarray | None, params: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        """The mapped parameters of every entity of one side (zero without content)."""
        if features is None or int(known.sum()) == 0:
            self._maps.append(None)
            return torch.zeros_like(params)
        x = torch.tensor(np.asarray(features), dtype=params.dtype, device=params.device)
        weights, intercept = ridge_map(x[known], params[known], self.config.map_reg)
        self._maps.append((weights, intercept))
        return x @ weights + intercept

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        if self.config.fold_in or tasks.axis != "user":
            return super().score(tasks, candidates)
        # As in predict: without fold-in a new user keeps its mapped parameters.
        return self._candidate_scores(self.users[tasks.entities], self.items, candidates)

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        if self.config.fold_in:
            return super().predict(tasks)
        # Unseen entities already hold their mapped parameters (see MatrixFactorisation._fit).
        by_user = tasks.axis == "user"
        own, other = (self.users, self.items) if by_user else (self.items, self.users)
        query_other = tasks.query_items if by_user else tasks.query_users
        entity, other_q = own[tasks.entities], other[query_other]
        pred = self.mean + entity[:, None, -1] + other_q[..., -1]
        pred = pred + (entity[:, None, :-1] * other_q[..., :-1]).sum(-1)
        return self.standardiser.back(clamp_to_scale(pred.float(), self.scale))
