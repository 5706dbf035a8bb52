"""The MeLU-style rating network shared by the meta-learners, and its vectorised adaptation.

A rating of (user, item) is predicted from three embeddings, concatenated:

- the id of the *other* entity (the item when tasks are users, the user when tasks are items);
  ids never seen in training embed to zero, so unseen entities rely on their features;
- the other entity's side features, through a linear map (when the dataset has them);
- the task entity's side features, through a linear map (when the dataset has them).

The task entity's own id is not embedded: a new task entity has none worth learning, and
personalisation is what adaptation on the support set is for. The embeddings feed the *decision*
layers (hidden layers with ReLU, then the rating output). Parameter names start with
``embedding.`` or ``decision.``, so a learner can adapt only the decision layers (MeLU's local
update) or every parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from bench.episodes import MetaTrain, TaskBatch

Adapt = Literal["decision", "all"]


def check_adapt(adapt: str) -> None:
    if adapt not in ("decision", "all"):
        raise ValueError(f"adapt must be 'decision' or 'all', got {adapt!r}")


Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class NetworkConfig:
    """Network shape; learner configs inherit these fields."""

    embedding_dim: int = 32
    hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self) -> None:
        if self.embedding_dim < 1 or any(h < 1 for h in self.hidden):
            raise ValueError("embedding_dim and hidden sizes must be positive")


class RatingNetwork(nn.Module):
    """Embeddings of (other id, other features, task features), then the decision layers."""

    def __init__(
        self,
        axis: str,
        n_users: int,
        n_items: int,
        user_features: np.ndarray | None,
        item_features: np.ndarray | None,
        known_users: np.ndarray,
        known_items: np.ndarray,
        embedding_dim: int = 32,
        hidden: Sequence[int] = (64, 64),
        out_dim: int = 1,
        output_bias: float = 0.0,
    ) -> None:
        super().__init__()
        if axis not in ("user", "item"):
            raise ValueError(f"task axis must be 'user' or 'item', got {axis!r}")
        self.axis = axis
        by_user = axis == "user"
        n_other = n_items if by_user else n_users
        other_features = item_features if by_user else user_features
        task_features = user_features if by_user else item_features
        known_other = known_items if by_user else known_users

        self.embedding = nn.ModuleDict()
        self.embedding["other_id"] = nn.Embedding(n_other, embedding_dim)
        nn.init.normal_(self.embedding["other_id"].weight, std=0.1)
        self.register_buffer(
            "other_known", torch.tensor(np.asarray(known_other), dtype=torch.float32)
        )
        width = embedding_dim
        self.has_other_features = other_features is not None
        self.has_task_features = task_features is not None
        if other_features is not None:
            self.register_buffer(
                "other_table", torch.tensor(np.asarray(other_features), dtype=torch.float32)
            )
            self.embedding["other_features"] = nn.Linear(other_features.shape[1], embedding_dim)
            width += embedding_dim
        if task_features is not None:
            self.register_buffer(
                "task_table", torch.tensor(np.asarray(task_features), dtype=torch.float32)
            )
            self.embedding["task_features"] = nn.Linear(task_features.shape[1], embedding_dim)
            width += embedding_dim
        self.input_width = width

        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, out_dim))
        self.decision = nn.Sequential(*layers)
        self.out_dim = out_dim
        with torch.no_grad():
            # Starting at the mean rating saves the first meta-steps from learning an offset.
            self.decision[-1].bias.fill_(output_bias)

    @classmethod
    def for_training_data(
        cls,
        train: MetaTrain,
        embedding_dim: int,
        hidden: Sequence[int],
        out_dim: int = 1,
        output_bias: float | None = None,
    ) -> RatingNetwork:
        return cls(
            train.axis,
            train.n_users,
            train.n_items,
            train.user_features,
            train.item_features,
            train.known_users,
            train.known_items,
            embedding_dim,
            hidden,
            out_dim,
            float(train.rating.mean()) if output_bias is None else output_bias,
        )

    def embed(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Input features ``[..., input_width]`` of each (user, item) pair."""
        other, task = (items, users) if self.axis == "user" else (users, items)
        parts = [self.embedding["other_id"](other) * self.other_known[other].unsqueeze(-1)]
        if self.has_other_features:
            parts.append(self.embedding["other_features"](self.other_table[other]))
        if self.has_task_features:
            parts.append(self.embedding["task_features"](self.task_table[task]))
        return torch.cat(parts, dim=-1)

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decision(x)
        return out.squeeze(-1) if self.out_dim == 1 else out

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.decide(self.embed(users, items))

    def group(self, name: str) -> Params:
        """The named parameters of one group ("embedding" or "decision"), or of all ("all")."""
        params = dict(self.named_parameters())
        if name == "all":
            return params
        return {k: v for k, v in params.items() if k.startswith(name + ".")}


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid positions of the last dimension (0 where none are)."""
    weight = mask.to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


def mean_over_tasks(per_task: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of per-task losses over the tasks that have at least one valid position."""
    has = mask.any(-1).to(per_task.dtype)
    return (per_task * has).sum() / has.sum().clamp(min=1.0)


def adapted_predictions(
    net: RatingNetwork,
    tasks: TaskBatch,
    *,
    lr: float,
    steps: int,
    adapt: Adapt,
    first_order: bool,
    params: Params | None = None,
) -> torch.Tensor:
    """Predicted query ratings ``[T, Q]`` after ``steps`` gradient steps per task on its support.

    Every task is adapted independently with ``torch.func``: ``vmap`` over tasks of an inner loop
    of ``grad`` steps on the masked support MSE. The starting parameters are ``params`` (by
    default the network's own), so the result stays differentiable with respect to them: the
    outer (meta) gradient flows through the inner loop unless ``first_order`` drops it.
    """
    start = net.group(adapt) if params is None else params

    def inner_steps(
        loss_of: object, fast: Params, *args: torch.Tensor
    ) -> Params:  # one task's inner loop
        for _ in range(steps):
            g = grad(loss_of)(fast, *args)  # type: ignore[arg-type]
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            fast = {k: fast[k] - lr * g[k] for k in fast}
        return fast

    if adapt == "decision":
        # The embeddings are shared by every task: compute them once, outside the vmap.
        x_s = net.embed(tasks.support_users, tasks.support_items)
        x_q = net.embed(tasks.query_users, tasks.query_items)
        head = {k.removeprefix("decision."): v for k, v in start.items()}

        def support_loss(fast: Params, x: torch.Tensor, r: torch.Tensor, m: torch.Tensor):
            return masked_mse(functional_call(net.decision, fast, (x,)).squeeze(-1), r, m)

        def one_task(x: torch.Tensor, r: torch.Tensor, m: torch.Tensor, xq: torch.Tensor):
            fast = inner_steps(support_loss, head, x, r, m)
            return functional_call(net.decision, fast, (xq,)).squeeze(-1)

        return vmap(one_task)(x_s, tasks.support_ratings, tasks.support_mask, x_q)

    def support_loss_all(
        fast: Params, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        return masked_mse(functional_call(net, fast, (u, i)), r, m)

    def one_task_all(
        u: torch.Tensor,
        i: torch.Tensor,
        r: torch.Tensor,
        m: torch.Tensor,
        qu: torch.Tensor,
        qi: torch.Tensor,
    ) -> torch.Tensor:
        fast = inner_steps(support_loss_all, dict(start), u, i, r, m)
        return functional_call(net, fast, (qu, qi))

    return vmap(one_task_all)(
        tasks.support_users,
        tasks.support_items,
        tasks.support_ratings,
        tasks.support_mask,
        tasks.query_users,
        tasks.query_items,
    )


def mixed_support(batch: TaskBatch, sizes: Sequence[int], rng: np.random.Generator) -> TaskBatch:
    """Shorten each task's support to a size drawn from ``sizes``, so one meta-batch mixes
    support sizes as evaluation does."""
    if not sizes:
        return batch
    device = batch.support_mask.device
    k = torch.as_tensor(rng.choice(np.asarray(sizes), size=batch.n_tasks), device=device)
    width = batch.support_mask.shape[1]
    mask = batch.support_mask & (torch.arange(width, device=device)[None, :] < k[:, None])
    return TaskBatch(
        axis=batch.axis,
        entities=batch.entities,
        support_users=torch.where(mask, batch.support_users, 0),
        support_items=torch.where(mask, batch.support_items, 0),
        support_ratings=torch.where(mask, batch.support_ratings, 0.0),
        support_mask=mask,
        query_users=batch.query_users,
        query_items=batch.query_items,
        query_mask=batch.query_mask,
        query_ratings=batch.query_ratings,
    )
