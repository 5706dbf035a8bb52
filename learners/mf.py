"""Biased matrix factorisation by alternating least squares, with closed-form fold-in.

Model: ``r = mean + b_u + b_i + p_u . q_i``. Training starts from the biases and the truncated SVD
of what they leave unexplained, then alternates exact ridge solves for every user and every item,
with the normal equations of each half-step built by sparse products (see :mod:`learners.als`).
From that start a few sweeps suffice. A task entity unseen in training is folded in by one ridge
solve on its support ratings with the other side fixed. Where side features exist, a ridge map
from features to (factors, bias) is fitted on the trained entities; it gives unseen entities a
starting point, which the fold-in uses as the centre of its ridge penalty.

The arithmetic runs in the config's ``dtype`` on every device, so a CPU and a CUDA cell of the
same config compute the same model; ``fit`` runs on the config's number of torch CPU threads and
records it in ``fit_threads``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.explaining import ExplainsSupport
from bench.protocol.learner import Learner, clamp_to_scale
from bench.seeding import Seeds
from learners.als import SideRatings, ridge_solve, torch_threads, truncated_svd
from learners.baselines import BiasConfig, bias_fit
from learners.mf_fields import MFFields
from learners.standardise import Standardiser

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class MFConfig:
    rank: int = 16
    reg: float = 0.05
    """Ridge penalty per rating on each entity's factors and bias in the ALS solves."""
    reg_floor: float = 1.0
    """Added to every entity's penalty, so that entities with few ratings stay shrunk."""
    iterations: int = 4
    """ALS sweeps (one user and one item half-step each). From the SVD start more sweeps slowly
    overfit: on MovieLens 100K u1-u5 (rank 16, reg 0.1) 2 sweeps give RMSE 0.911, 4 give 0.913
    and 12 give 0.915."""
    init: Literal["svd", "random"] = "svd"
    """Starting factors: the truncated SVD of the ratings' residuals after the biases, or random
    draws of standard deviation ``init_std``."""
    init_std: float = 0.1
    """Standard deviation of the random starting factors (``init = "random"``)."""
    fold_in_reg: float = 8.0
    """Ridge penalty of the fold-in solve for unseen task entities."""
    feature_reg: float = 10.0
    """Ridge penalty of the map from side features to factors; used only when features exist."""
    use_features: bool = True
    dtype: Literal["float32", "float64"] = "float32"
    """Arithmetic precision on every device. The solves are ridge-regularised, so float32 gives
    the same RMSE as float64 to four decimals on MovieLens 100K and the synthetic suite, in about
    two thirds of the time."""
    threads: int = 1
    """torch CPU threads during ``fit`` (0: leave torch's setting). The fit is a chain of short
    sparse and batched operations on which a second thread gains little, while threads competing
    for shared cores cost far more: on two busy cores, two threads made the MovieLens 100K fit
    about 25 times as expensive in CPU seconds. Raise it for large data on an otherwise idle
    machine."""

    def __post_init__(self) -> None:
        if self.rank < 1 or self.iterations < 1:
            raise ValueError("rank and iterations must be at least 1")
        if self.reg < 0 or self.reg_floor < 0 or self.fold_in_reg < 0 or self.feature_reg < 0:
            raise ValueError("penalties must be non-negative")
        if self.threads < 0:
            raise ValueError("threads must be non-negative")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")


def _feature_map(
    features: torch.Tensor, params: torch.Tensor, known: torch.Tensor, reg: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression from side features (plus an intercept) to each entity's parameters:
    weights ``W`` and intercept ``c`` of ``features @ W + c``."""
    x = torch.cat([features, torch.ones_like(features[:, :1])], dim=1)
    xk = x[known]
    weights = ridge_solve(xk.T @ xk, (xk.T @ params[known]).T, reg).T
    return weights[:-1], weights[-1]


def support_system(
    other: torch.Tensor,
    support_other: torch.Tensor,
    support_ratings: torch.Tensor,
    support_mask: torch.Tensor,
    mean: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per task the design rows ``[q, 1]`` of its support ratings (zero at padding) and their
    targets ``r - mean - b_other``: a task entity's ``[p, b]`` predicts ``design @ [p, b]``."""
    other_s = other[support_other]
    design = torch.cat([other_s[..., :-1], torch.ones_like(other_s[..., :1])], -1)
    design = design * support_mask.to(design.dtype)[..., None]
    target = support_ratings.to(design.dtype) - mean - other_s[..., -1]
    return design, target


def fold_in(
    other: torch.Tensor,
    support_other: torch.Tensor,
    support_ratings: torch.Tensor,
    support_mask: torch.Tensor,
    mean: float,
    reg: float,
    prior: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each task entity's ``[factors..., bias]`` from its support ratings by one ridge solve with
    the other side's parameters ``other`` fixed, centred on ``prior`` (one row per task);
    ``weights`` (one per support rating) weight each rating's squared residual."""
    design, target = support_system(other, support_other, support_ratings, support_mask, mean)
    weighted = design if weights is None else design * weights.to(design.dtype)[..., None]
    gram = weighted.transpose(1, 2) @ design
    rhs = (weighted * target[..., None]).sum(1)
    return ridge_solve(gram, rhs, reg, prior)


class MatrixFactorisation(Learner, ExplainsSupport, MFFields):
    """Biased matrix factorisation (ALS); unseen entities folded in by a ridge solve on the support."""

    config_class = MFConfig
    quick_config: ClassVar[Mapping[str, Any]] = {"rank": 4, "iterations": 3}

    fit_threads: int | None = None
    """torch CPU threads the last ``fit`` ran with."""
    user_map: tuple[torch.Tensor, torch.Tensor] | None = None
    item_map: tuple[torch.Tensor, torch.Tensor] | None = None
    """The fitted ``(weights, intercept)`` of each side's map from features to parameters (None
    without features)."""

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        threads = self.config.threads or torch.get_num_threads()
        # Penalties and starting scales are sized for standardised ratings: they hold on any scale.
        self.standardiser = Standardiser.of(train.rating)
        with torch_threads(threads):
            self.fit_threads = threads
            self._fit(self.standardiser.meta_train(train), rng, device)

    def _fit(self, train: MetaTrain, rng: Seeds, device: torch.device) -> None:
        cfg = self.config
        dtype = DTYPES[cfg.dtype]
        self.scale = train.rating_scale
        self.device = device
        mean, user_bias, item_bias = bias_fit(
            train.user, train.item, train.rating, train.n_users, train.n_items, BiasConfig()
        )
        self.mean = mean
        gen = rng.torch("init")
        u = torch.as_tensor(train.user, device=device)
        i = torch.as_tensor(train.item, device=device)
        r = torch.as_tensor(train.rating, device=device).to(dtype) - mean
        by_user = SideRatings.build(u, i, r, train.n_users, train.n_items)
        by_item = SideRatings.build(i, u, r, train.n_items, train.n_users)
        user_reg = cfg.reg_floor + cfg.reg * by_user.count
        item_reg = cfg.reg_floor + cfg.reg * by_item.count
        known_u = torch.as_tensor(train.known_users, device=device)
        known_i = torch.as_tensor(train.known_items, device=device)

        # Parameters per entity: [factors..., bias].
        b_u = torch.as_tensor(user_bias, device=device).to(dtype)
        b_i = torch.as_tensor(item_bias, device=device).to(dtype)
        if cfg.init == "svd":
            residual = r - b_u[u] - b_i[i]
            left, singular, right = truncated_svd(
                by_user.matrix(residual), by_item.matrix(residual), cfg.rank, gen
            )
            p_u, q_i = left * singular.sqrt(), right * singular.sqrt()
        else:
            # Drawn in float64 so that the start does not depend on the precision.
            p_u = torch.randn(train.n_users, cfg.rank, generator=gen, dtype=torch.float64)
            q_i = torch.randn(train.n_items, cfg.rank, generator=gen, dtype=torch.float64)
            p_u = (p_u * cfg.init_std).to(device, dtype)
            q_i = (q_i * cfg.init_std).to(device, dtype)
        users = torch.cat([p_u, b_u[:, None]], 1)
        items = torch.cat([q_i, b_i[:, None]], 1)

        for _ in range(cfg.iterations):
            users = torch.where(known_u[:, None], by_user.solve(items, user_reg), users)
            items = torch.where(known_i[:, None], by_item.solve(users, item_reg), items)

        # Unseen entities start from what their features predict (or zero without features).
        self._maps: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        self.user_prior = self._prior(train.user_features, users, known_u)
        self.item_prior = self._prior(train.item_features, items, known_i)
        self.user_map, self.item_map = self._maps  # _prior runs for users, then for items
        del self._maps
        # For explanations: the feature rows of each side that has a map, and the columns' names.
        self.feature_tables = {
            side: torch.tensor(np.asarray(features), dtype=users.dtype, device=device)
            for side, features, fitted in (
                ("user", train.user_features, self.user_map),
                ("item", train.item_features, self.item_map),
            )
            if features is not None and fitted is not None
        }
        self.feature_names = {"user": train.user_feature_names, "item": train.item_feature_names}
        self.users = torch.where(known_u[:, None], users, self.user_prior)
        self.items = torch.where(known_i[:, None], items, self.item_prior)
        self.known_users, self.known_items = known_u, known_i

    def _prior(
        self, features: np.ndarray | None, params: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        if features is None or not self.config.use_features or int(known.sum()) == 0:
            self._maps.append(None)
            return torch.zeros_like(params)
        feats = torch.tensor(features, dtype=params.dtype, device=params.device)
        weights, intercept = _feature_map(feats, params, known, self.config.feature_reg)
        self._maps.append((weights, intercept))
        return feats @ weights + intercept

    def _task_entities(self, tasks: TaskBatch) -> tuple[TaskBatch, torch.Tensor, torch.Tensor]:
        """The standardised tasks, each task entity's ``[p, b]`` (trained or folded in) and the
        other side's parameters."""
        tasks = self.standardiser.tasks(tasks)
        by_user = tasks.axis == "user"
        own, other = (self.users, self.items) if by_user else (self.items, self.users)
        own_prior = self.user_prior if by_user else self.item_prior
        known = self.known_users if by_user else self.known_items
        support_other = tasks.support_items if by_user else tasks.support_users

        folded = self._fold_in(other, support_other, tasks, own_prior[tasks.entities])
        entity = torch.where(known[tasks.entities][:, None], own[tasks.entities], folded)
        return tasks, entity, other

    def _fold_in(
        self,
        other: torch.Tensor,
        support_other: torch.Tensor,
        tasks: TaskBatch,
        prior: torch.Tensor,
    ) -> torch.Tensor:
        """Every task entity's ``[p, b]`` from its (standardised) support ratings."""
        return fold_in(
            other,
            support_other,
            tasks.support_ratings,
            tasks.support_mask,
            self.mean,
            self.config.fold_in_reg,
            prior,
        )

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        tasks, entity, other = self._task_entities(tasks)
        query_other = tasks.query_items if tasks.axis == "user" else tasks.query_users
        other_q = other[query_other]
        pred = self.mean + entity[:, None, -1] + other_q[..., -1]
        pred = pred + (entity[:, None, :-1] * other_q[..., :-1]).sum(-1)
        return self.standardiser.back(clamp_to_scale(pred.float(), self.scale))

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        """The unclamped predicted rating of every candidate: one matrix product per call."""
        if tasks.axis != "user":
            return super().score(tasks, candidates)
        _, entity, items = self._task_entities(tasks)
        return self._candidate_scores(entity, items, candidates)

    def _candidate_scores(
        self, entity: torch.Tensor, items: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """Each task's ``[p, b]`` against the candidate items' parameters, unclamped."""
        if candidates.dim() == 1:
            chosen = items[candidates]
            pred = entity[:, :-1] @ chosen[:, :-1].T + chosen[None, :, -1]
        else:
            chosen = items[candidates]
            pred = (entity[:, None, :-1] * chosen[..., :-1]).sum(-1) + chosen[..., -1]
        return self.standardiser.back((pred + entity[:, -1:] + self.mean).float())

    def support_attributions(self, tasks: TaskBatch) -> torch.Tensor:
        """``[T, Q, S]``: each query's score minus its score after folding in without one support
        rating, in closed form. The fold-in is a ridge solve ``theta = A^-1 (D^T t + reg prior)``,
        so dropping row ``j`` moves ``theta`` by ``A^-1 d_j e_j / (1 - h_j)``, with ``e_j`` the
        row's residual and ``h_j = d_j^T A^-1 d_j`` its leverage. Entities seen in training are not
        folded in: their support moves nothing."""
        std = self.standardiser.tasks(tasks)
        by_user = std.axis == "user"
        other = self.items if by_user else self.users
        prior = (self.user_prior if by_user else self.item_prior)[std.entities]
        known = (self.known_users if by_user else self.known_items)[std.entities]
        support_other = std.support_items if by_user else std.support_users
        query_other = std.query_items if by_user else std.query_users
        other_s = other[support_other]
        design = torch.cat([other_s[..., :-1], torch.ones_like(other_s[..., :1])], -1)
        design = design * std.support_mask.to(design.dtype)[..., None]
        target = std.support_ratings.to(design.dtype) - self.mean - other_s[..., -1]
        theta = fold_in(
            other, support_other, std.support_ratings, std.support_mask, self.mean,
            self.config.fold_in_reg, prior,
        )  # fmt: skip
        system = design.transpose(1, 2) @ design
        system.diagonal(dim1=-2, dim2=-1).add_(self.config.fold_in_reg)
        inverse = torch.linalg.inv(system)  # [T, r+1, r+1], small
        moved = design @ inverse  # rows d_j^T A^-1: [T, S, r+1]
        leverage = (moved * design).sum(-1)
        residual = target - (design * theta[:, None, :]).sum(-1)
        shift = moved * (residual / (1 - leverage))[..., None]  # theta - theta_without_j
        other_q = other[query_other]
        x_q = torch.cat([other_q[..., :-1], torch.ones_like(other_q[..., :1])], -1)
        out = x_q @ shift.transpose(1, 2)  # [T, Q, S]
        out = torch.where(known[:, None, None], torch.zeros_like(out), out)
        out = out * std.support_mask[:, None, :] * std.query_mask[:, :, None]
        return (out * self.standardiser.std).float()
