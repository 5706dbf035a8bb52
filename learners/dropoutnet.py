"""DropoutNet (Volkovs, Yu and Poutanen, "DropoutNet: Addressing Cold Start in Recommender Systems",
NeurIPS 2017), registered as ``dropoutnet``.

A warm model, here the biased matrix factorisation of :mod:`learners.mf` (the paper uses WMF), gives
every entity seen in training a preference vector ``[factors..., bias]``. Two towers, one per side,
map an entity's preference vector concatenated with its content (dense tanh layers, then a linear
output) to a latent vector and a bias; a rating is the dot product of the two latent vectors plus
both biases and an offset. The towers learn to reproduce the warm model's scores (paper, Sec. 3) on
the observed training pairs and on as many random pairs of seen users and items (the released code
mixes each user's top-scored and random items). *Preference dropout*: in every minibatch, each
pair's user preference input and, independently, its item preference input are set to zero with
probability ``dropout``, so the content path alone must predict the warm scores (Sec. 3, Algorithm
1). An entity never seen in training enters with a zero preference input: its content decides. A new
task entity with support ratings gets its preference input from them instead (the paper's
*transform*, Algorithm 1, which averages the preference vectors of the items a user interacted with;
for explicit ratings it is here the ridge fold-in of ``mf`` on the support).

Explicit ratings, not implicit relevance, are reproduced, hence the bias outputs. Defaults: the
dropout rate 0.5 and the tanh layers are the paper's (experiments, Sec. 4, and the released code:
two hidden layers of 800 and 400 units, an output rank equal to the input rank of 200, SGD with
momentum 0.9 at 0.005 on batches of 100 pairs, 10 epochs). Those sizes serve 1.5 million users; here
the layers are 200 and 100 wide, the output rank is the warm model's rank, and Adam at 1e-3 on
batches of 512 pairs trains them in a few epochs, with early stopping on the validation tasks.
Preference inputs are standardised per column (as the released code does) over seen entities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.explaining import FieldView
from bench.seeding import Seeds
from learners.mf import MatrixFactorisation, MFConfig, fold_in
from learners.mf_fields import content_fields
from learners.network.explain import NetworkFields
from learners.network.learner import NetworkLearner
from learners.network.model import NetworkConfig, initialise_linear
from learners.network.trainer import Schedule


@dataclass(frozen=True)
class DropoutNetConfig(NetworkConfig):
    embedding_dim: int = 16
    """Output rank of each tower (the paper: the warm model's rank, 200)."""
    hidden: tuple[int, ...] = (200, 100)
    """Tanh layers of each tower (the released code: 800 and 400, for 1.5 million users)."""
    dropout: float = 0.5
    """Probability that a pair's user (and, independently, item) preference input is dropped
    (Sec. 3, Algorithm 1; 0.5 in the released code, the rate's effect studied in Sec. 4)."""
    content: bool = True
    """Feed side features into the towers (the content path); off, only preferences go in."""
    transform: bool = True
    """A new task entity's preference input from its support ratings (the transform of Algorithm
    1), else zero."""
    rank: int = 16
    """Rank of the warm ``mf`` model (its default)."""
    reg: float = 0.05
    """The warm model's ridge penalty per rating (``mf``'s default)."""
    fold_in_reg: float = 8.0
    """Ridge penalty of the support fold-in (``mf``'s default)."""
    random_pairs: float = 1.0
    """Random seen (user, item) pairs per observed training pair in each minibatch."""
    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3
    """Epochs without validation improvement before training stops."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"dropout must lie in [0, 1], got {self.dropout}")
        if self.rank < 1 or self.reg < 0 or self.fold_in_reg < 0 or self.random_pairs < 0:
            raise ValueError("rank >= 1 and non-negative reg, fold_in_reg, random_pairs required")
        if self.epochs < 0 or self.batch_size < 2 or self.lr <= 0 or self.patience < 1:
            raise ValueError("epochs >= 0, batch_size >= 2, lr > 0 and patience >= 1 required")


def _tower(width: int, hidden: tuple[int, ...], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.Tanh()]
        width = size
    layers.append(nn.Linear(width, out + 1))  # the latent vector and a bias
    return nn.Sequential(*layers)


class TwoTowers(nn.Module):
    """A user tower and an item tower over (preference, content); a score is their dot product
    plus both bias outputs and an offset."""

    user_content: torch.Tensor | None
    item_content: torch.Tensor | None

    def __init__(
        self,
        pref_width: int,
        user_content: np.ndarray | None,
        item_content: np.ndarray | None,
        hidden: tuple[int, ...],
        dim: int,
    ) -> None:
        super().__init__()
        for side, content in (("user", user_content), ("item", item_content)):
            table = None if content is None else torch.tensor(content, dtype=torch.float32)
            self.register_buffer(f"{side}_content", table)
        self.user_tower = _tower(pref_width + _width(self.user_content), hidden, dim)
        self.item_tower = _tower(pref_width + _width(self.item_content), hidden, dim)
        self.offset = nn.Parameter(torch.zeros(()))

    def initialise(self, generator: torch.Generator) -> TwoTowers:
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    initialise_linear(module, generator)
        return self

    def forward(
        self,
        users: torch.Tensor,
        user_pref: torch.Tensor,
        items: torch.Tensor,
        item_pref: torch.Tensor,
    ) -> torch.Tensor:
        """Scores of (user, item) pairs given their preference inputs ``[..., pref_width]``."""
        u = self.user_tower(_with_content(user_pref, self.user_content, users))
        v = self.item_tower(_with_content(item_pref, self.item_content, items))
        score: torch.Tensor = (u[..., :-1] * v[..., :-1]).sum(-1) + u[..., -1] + v[..., -1]
        return score + self.offset


def _width(content: torch.Tensor | None) -> int:
    return 0 if content is None else int(content.shape[1])


def _with_content(
    pref: torch.Tensor, content: torch.Tensor | None, ids: torch.Tensor
) -> torch.Tensor:
    return pref if content is None else torch.cat([pref, content[ids]], -1)


class DropoutNet(NetworkLearner, NetworkFields):
    """DropoutNet (Volkovs et al., NeurIPS 2017): MF preferences and content, preference dropout."""

    config_class = DropoutNetConfig
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "hidden": (16, 16),
        "rank": 4,
        "epochs": 2,
    }
    config: DropoutNetConfig
    model: TwoTowers

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        cfg = self.config
        self.warm = MatrixFactorisation(MFConfig(rank=cfg.rank, reg=cfg.reg, use_features=False))
        self.warm.fit(train, rng=rng.child("warm"), device=device)
        known_u = torch.as_tensor(train.known_users, device=device)
        known_i = torch.as_tensor(train.known_items, device=device)
        self.pref_stats = {
            "user": _column_stats(self.warm.users[known_u].float()),
            "item": _column_stats(self.warm.items[known_i].float()),
        }
        # Preference inputs of seen entities, standardised; unseen entities' rows are dropped (0).
        self.user_pref = torch.where(known_u[:, None], self._scaled("user", self.warm.users), 0.0)
        self.item_pref = torch.where(known_i[:, None], self._scaled("item", self.warm.items), 0.0)
        self.known = {"user": known_u, "item": known_i}
        super().setup(train, rng=rng, device=device)
        self.train_users = torch.as_tensor(train.user, dtype=torch.long, device=device)
        self.train_items = torch.as_tensor(train.item, dtype=torch.long, device=device)
        self.seen_users = torch.nonzero(known_u).squeeze(1)
        self.seen_items = torch.nonzero(known_i).squeeze(1)
        self.observed = max(1, math.ceil(cfg.batch_size / (1.0 + cfg.random_pairs)))
        self.batches_per_epoch = max(1, math.ceil(len(train.rating) / self.observed))

    def build(self, train: MetaTrain, generator: torch.Generator) -> TwoTowers:
        cfg = self.config
        width = int(self.user_pref.shape[1])
        user_content = train.user_features if cfg.content else None
        item_content = train.item_features if cfg.content else None
        towers = TwoTowers(width, user_content, item_content, cfg.hidden, cfg.embedding_dim)
        return towers.initialise(generator)

    def optimiser(self) -> torch.optim.Optimizer:
        cfg = self.config
        return torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def schedule(self, train: MetaTrain) -> Schedule:
        cfg = self.config
        return Schedule(cfg.epochs * self.batches_per_epoch, self.batches_per_epoch, cfg.patience)

    def _scaled(self, side: str, params: torch.Tensor) -> torch.Tensor:
        mean, std = self.pref_stats[side]
        return (params.float() - mean) / std

    def warm_score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The warm model's score of each pair, in the ratings the towers learn."""
        p, q = self.warm.users[users], self.warm.items[items]
        score = self.warm.mean + p[..., -1] + q[..., -1] + (p[..., :-1] * q[..., :-1]).sum(-1)
        return self.warm.standardiser.back(score.float())

    def train_step(self, train: MetaTrain, step: int, rng: np.random.Generator) -> None:
        cfg = self.config
        batch = (step - 1) % self.batches_per_epoch
        if batch == 0:
            self.order = torch.as_tensor(rng.permutation(len(self.train_users)), device=self.device)
        rows = self.order[batch * self.observed : (batch + 1) * self.observed]
        n_random = max(0, cfg.batch_size - len(rows))
        pick_u = torch.as_tensor(
            rng.integers(len(self.seen_users), size=n_random), device=self.device
        )
        pick_i = torch.as_tensor(
            rng.integers(len(self.seen_items), size=n_random), device=self.device
        )
        users = torch.cat([self.train_users[rows], self.seen_users[pick_u]])
        items = torch.cat([self.train_items[rows], self.seen_items[pick_i]])
        keep_u = torch.as_tensor(rng.random(len(users)) >= cfg.dropout, device=self.device)
        keep_i = torch.as_tensor(rng.random(len(users)) >= cfg.dropout, device=self.device)
        user_pref = self.user_pref[users] * keep_u[:, None]
        item_pref = self.item_pref[items] * keep_i[:, None]
        self.optimizer.zero_grad(set_to_none=True)
        pred = self.model(users, user_pref, items, item_pref)
        loss = torch.mean((pred - self.warm_score(users, items)) ** 2)
        loss.backward()
        self.optimizer.step()

    def release(self) -> None:
        del self.train_users, self.train_items, self.seen_users, self.seen_items, self.order

    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        users, user_pref, items, item_pref = self._pairs(tasks, adapted=True)
        out: torch.Tensor = self.model(users, user_pref, items, item_pref)
        return out

    def _pairs(
        self, tasks: TaskBatch, *, adapted: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each query pair's user ids, user preference inputs, item ids and item preference
        inputs ``[T, Q, ...]``; a new task entity's preference input folded in on its support
        (``adapted``, with ``transform``), else zero."""
        by_user = tasks.axis == "user"
        own = "user" if by_user else "item"
        own_pref_table = self.user_pref if by_user else self.item_pref
        other_pref_table = self.item_pref if by_user else self.user_pref
        entities = tasks.entities
        own_pref = own_pref_table[entities]
        if self.config.transform and adapted:
            # A new task entity with support: its preference vector folded in on the support.
            other_params = self.warm.items if by_user else self.warm.users
            support_other = tasks.support_items if by_user else tasks.support_users
            ratings = self.warm.standardiser.tasks(tasks).support_ratings
            folded = fold_in(
                other_params,
                support_other,
                ratings,
                tasks.support_mask,
                self.warm.mean,
                self.config.fold_in_reg,
                other_params.new_zeros(len(entities), other_params.shape[1]),
            )
            new = ~self.known[own][entities] & tasks.support_mask.any(1)
            own_pref = torch.where(new[:, None], self._scaled(own, folded), own_pref)
        query_other = tasks.query_items if by_user else tasks.query_users
        own_ids = entities[:, None].expand_as(query_other)
        own_pref = own_pref[:, None, :].expand(*query_other.shape, -1)
        other_pref = other_pref_table[query_other]
        if by_user:
            return own_ids, own_pref, query_other, other_pref
        return query_other, other_pref, own_ids, own_pref

    def _layout(self) -> list[tuple[str, str, list[int]]]:
        """(side, field name, content columns) of every content field, users first."""
        out = []
        for side in ("user", "item"):
            content = getattr(self.model, f"{side}_content")
            if content is None:
                continue
            names = getattr(self, "feature_names", {}).get(side)
            out += [
                (side, f"{side}:{name}", cols)
                for name, cols in content_fields(names, int(content.shape[1]))
            ]
        return out

    def feature_fields(self) -> tuple[str, ...]:
        return tuple(name for _, name, _ in self._layout())

    def field_view(self, tasks: TaskBatch, *, adapted: bool = True) -> FieldView:
        """The towers' content inputs as fields; preference inputs stay as the pair has them."""
        m, layout = self.model, self._layout()
        standardised = self.standardiser.tasks(tasks)  # as predict hands them to adapt_predict
        users, user_pref, items, item_pref = self._pairs(standardised, adapted=adapted)
        task, position = torch.nonzero(tasks.query_mask, as_tuple=True)
        ids = {"user": users[task, position], "item": items[task, position]}
        prefs = {"user": user_pref[task, position], "item": item_pref[task, position]}
        tables = {side: getattr(m, f"{side}_content") for side in ("user", "item")}
        parts = [tables[side][ids[side]][:, cols] for side, _, cols in layout]
        width = sum(len(cols) for _, _, cols in layout)
        inputs = torch.cat(parts, 1) if parts else torch.zeros(len(task), 0)
        base = torch.cat([tables[side][:, cols].mean(0) for side, _, cols in layout])
        groups = torch.cat(
            [torch.full((len(c),), n, dtype=torch.long) for n, (_, _, c) in enumerate(layout)]
        )

        def forward(x: torch.Tensor, *_: Any) -> torch.Tensor:
            blocks = x.reshape(-1, len(task), width)
            towers = {}
            for side in ("user", "item"):
                pref = prefs[side].expand(blocks.shape[0], -1, -1)
                content = tables[side]
                if content is not None:
                    rows = blocks.new_zeros((*blocks.shape[:2], content.shape[1]))
                    start = 0
                    for field_side, _name, cols in layout:
                        if field_side == side:
                            rows[..., cols] = blocks[..., start : start + len(cols)]
                        start += len(cols)
                    pref = torch.cat([pref, rows], -1)
                towers[side] = getattr(m, f"{side}_tower")(pref)
            u, v = towers["user"], towers["item"]
            with torch.no_grad():
                score = (u[..., :-1] * v[..., :-1]).sum(-1) + u[..., -1] + v[..., -1] + m.offset
            return self.standardiser.back(score).reshape(-1)

        fields = tuple(name for _, name, _ in layout)
        return FieldView(fields, inputs, groups, base, forward, task, position)


def _column_stats(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and spread (1 where a column is constant, or with fewer than 2 rows)."""
    if len(params) < 2:
        return params.new_zeros(params.shape[1]), params.new_ones(params.shape[1])
    mean, std = params.mean(0), params.std(0)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))
