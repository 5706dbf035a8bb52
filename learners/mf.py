"""Biased matrix factorisation by alternating least squares, with closed-form fold-in.

Model: ``r = mean + b_u + b_i + p_u . q_i``. Training alternates exact ridge solves for every user
and every item. A task entity unseen in training is folded in by one ridge solve on its support
ratings with the other side fixed. Where side features exist, a ridge map from features to
(factors, bias) is fitted on the trained entities; it gives unseen entities a starting point, which
the fold-in uses as the centre of its ridge penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.episodes import MetaTrain, TaskBatch
from bench.learner import Budget, Learner, clamp_to_scale
from bench.seeding import Seeds
from learners.baselines import BiasConfig, bias_fit


@dataclass(frozen=True)
class MFConfig:
    rank: int = 16
    reg: float = 0.05
    """Ridge penalty per rating on each entity's factors and bias in the ALS solves."""
    reg_floor: float = 1.0
    """Added to every entity's penalty, so that entities with few ratings stay shrunk."""
    iterations: int = 12
    init_std: float = 0.1
    fold_in_reg: float = 8.0
    """Ridge penalty of the fold-in solve for unseen task entities."""
    feature_reg: float = 10.0
    """Ridge penalty of the map from side features to factors; used only when features exist."""
    use_features: bool = True
    chunk: int = 8192
    """Ratings per chunk when accumulating Gram matrices (bounds memory)."""


def _ridge_solve(
    gram: torch.Tensor,
    rhs: torch.Tensor,
    reg: float | torch.Tensor,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve ``(G + reg I) x = rhs + reg prior`` for a batch of small systems (``reg`` may be a
    per-system tensor)."""
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    reg = torch.as_tensor(reg, dtype=gram.dtype, device=gram.device).reshape(-1, 1, 1)
    if prior is not None:
        rhs = rhs + reg[:, :, 0] * prior
    return torch.linalg.solve(gram + reg * eye, rhs.unsqueeze(-1)).squeeze(-1)


def _normal_equations(
    rows: torch.Tensor, design: torch.Tensor, target: torch.Tensor, count: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-entity sums of ``x x^T`` and ``x y`` over the ratings that ``rows`` assigns to them."""
    d = design.shape[1]
    gram = torch.zeros(count, d, d, dtype=design.dtype, device=design.device)
    rhs = torch.zeros(count, d, dtype=design.dtype, device=design.device)
    for start in range(0, len(rows), chunk):
        x = design[start : start + chunk]
        gram.index_add_(0, rows[start : start + chunk], x[:, :, None] * x[:, None, :])
        rhs.index_add_(0, rows[start : start + chunk], x * target[start : start + chunk, None])
    return gram, rhs


def _feature_map(
    features: torch.Tensor, params: torch.Tensor, known: torch.Tensor, reg: float
) -> torch.Tensor:
    """Ridge regression from side features (plus an intercept) to each entity's parameters."""
    x = torch.cat([features, torch.ones_like(features[:, :1])], dim=1)
    xk = x[known]
    weights = _ridge_solve(xk.T @ xk, (xk.T @ params[known]).T, reg).T
    return x @ weights


class MatrixFactorisation(Learner):
    """Biased matrix factorisation (ALS); unseen entities folded in by a ridge solve on the support."""

    config_class = MFConfig

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        cfg = self.config
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        self.scale = train.rating_scale
        self.device = device
        mean, user_bias, item_bias = bias_fit(
            train.user, train.item, train.rating, train.n_users, train.n_items, BiasConfig()
        )
        self.mean = mean
        gen = rng.torch("init")
        # Parameters per entity: [factors..., bias].
        users = torch.randn(train.n_users, cfg.rank, generator=gen, dtype=dtype) * cfg.init_std
        items = torch.randn(train.n_items, cfg.rank, generator=gen, dtype=dtype) * cfg.init_std
        users = torch.cat([users, torch.as_tensor(user_bias, dtype=dtype)[:, None]], 1).to(device)
        items = torch.cat([items, torch.as_tensor(item_bias, dtype=dtype)[:, None]], 1).to(device)
        u = torch.as_tensor(train.user, device=device)
        i = torch.as_tensor(train.item, device=device)
        r = torch.as_tensor(train.rating, dtype=dtype, device=device) - mean
        known_u = torch.as_tensor(train.known_users, device=device)
        known_i = torch.as_tensor(train.known_items, device=device)
        ones = torch.ones(len(r), 1, dtype=dtype, device=device)
        user_count = torch.bincount(u, minlength=train.n_users).to(dtype)
        item_count = torch.bincount(i, minlength=train.n_items).to(dtype)
        for _ in range(cfg.iterations):
            # Solve users given items: features [q_i, 1], target r - b_i.
            design = torch.cat([items[i, :-1], ones], 1)
            gram, rhs = _normal_equations(u, design, r - items[i, -1], train.n_users, cfg.chunk)
            solved = _ridge_solve(gram, rhs, cfg.reg_floor + cfg.reg * user_count)
            users = torch.where(known_u[:, None], solved, users)
            design = torch.cat([users[u, :-1], ones], 1)
            gram, rhs = _normal_equations(i, design, r - users[u, -1], train.n_items, cfg.chunk)
            solved = _ridge_solve(gram, rhs, cfg.reg_floor + cfg.reg * item_count)
            items = torch.where(known_i[:, None], solved, items)

        # Unseen entities start from what their features predict (or zero without features).
        self.user_prior = self._prior(train.user_features, users, known_u)
        self.item_prior = self._prior(train.item_features, items, known_i)
        self.users = torch.where(known_u[:, None], users, self.user_prior)
        self.items = torch.where(known_i[:, None], items, self.item_prior)
        self.known_users, self.known_items = known_u, known_i

    def _prior(
        self, features: np.ndarray | None, params: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        if features is None or not self.config.use_features or int(known.sum()) == 0:
            return torch.zeros_like(params)
        feats = torch.tensor(features, dtype=params.dtype, device=params.device)
        return _feature_map(feats, params, known, self.config.feature_reg)

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        by_user = tasks.axis == "user"
        own, other = (self.users, self.items) if by_user else (self.items, self.users)
        own_prior = self.user_prior if by_user else self.item_prior
        known = self.known_users if by_user else self.known_items
        support_other = tasks.support_items if by_user else tasks.support_users
        query_other = tasks.query_items if by_user else tasks.query_users

        # Fold-in: ridge solve for [p, b] of each task entity on its support, centred on the prior.
        other_s = other[support_other]
        design = torch.cat([other_s[..., :-1], torch.ones_like(other_s[..., :1])], -1)
        mask = tasks.support_mask.to(design.dtype)[..., None]
        design = design * mask
        target = tasks.support_ratings.to(design.dtype) - self.mean - other_s[..., -1]
        gram = design.transpose(1, 2) @ design
        rhs = (design * target[..., None]).sum(1)
        folded = _ridge_solve(gram, rhs, self.config.fold_in_reg, own_prior[tasks.entities])
        entity = torch.where(known[tasks.entities][:, None], own[tasks.entities], folded)

        other_q = other[query_other]
        pred = self.mean + entity[:, None, -1] + other_q[..., -1]
        pred = pred + (entity[:, None, :-1] * other_q[..., :-1]).sum(-1)
        return clamp_to_scale(pred.float(), self.scale)
