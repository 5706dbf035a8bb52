"""The MeLU-style rating network shared by the network learners.

A rating of (user, item) is predicted from three embeddings, concatenated:

- the id of the *other* entity (the item when tasks are users, the user when tasks are items);
  ids never seen in training embed to zero, so unseen entities rely on their features;
- the other entity's side features, through a linear map (when the dataset has them);
- the task entity's side features, through a linear map (when the dataset has them).

The task entity's own id is not embedded: a new task entity has none worth learning, and
personalisation is what adaptation on the support set is for. MeLU's variant (``embed_ids=False``,
``by_field=True``) embeds content alone, one embedding per feature field (``fields``). The
embeddings feed the *decision*
layers (hidden layers with ReLU, then the rating output). Parameter names start with
``embedding.`` or ``decision.``, so a learner can adapt only the decision layers (MeLU's local
update) or every parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.protocol.episodes import MetaTrain
from learners.network.fields import FieldEmbedding, feature_fields

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class NetworkConfig:
    """Network shape and prediction chunking; learner configs inherit these fields."""

    embedding_dim: int = 32
    hidden: tuple[int, ...] = (64, 64)
    predict_chunk: int = 512
    """Tasks adapted at once when predicting (bounds memory)."""

    def __post_init__(self) -> None:
        if self.embedding_dim < 1 or any(h < 1 for h in self.hidden):
            raise ValueError("embedding_dim and hidden sizes must be positive")
        if self.predict_chunk < 1:
            raise ValueError("predict_chunk must be >= 1")


def initialise_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of a linear layer, drawn from ``generator``."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        bound = 1 / math.sqrt(layer.in_features) if layer.in_features else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class RatingNetwork(nn.Module):
    """Embeddings of (other id, other features, task features), then the decision layers."""

    other_known: torch.Tensor
    other_table: torch.Tensor
    task_table: torch.Tensor

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
        *,
        embed_ids: bool = True,
        by_field: bool = False,
        user_feature_names: Sequence[str] | None = None,
        item_feature_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if axis not in ("user", "item"):
            raise ValueError(f"task axis must be 'user' or 'item', got {axis!r}")
        self.axis = axis
        by_user = axis == "user"
        n_other = n_items if by_user else n_users
        other_features = item_features if by_user else user_features
        task_features = user_features if by_user else item_features
        other_names = item_feature_names if by_user else user_feature_names
        task_names = user_feature_names if by_user else item_feature_names
        known_other = known_items if by_user else known_users
        if not embed_ids and other_features is None and task_features is None:
            raise ValueError("a network without id embeddings needs side features")

        def features_embedding(features: np.ndarray, names: Sequence[str] | None) -> nn.Module:
            if by_field:
                return FieldEmbedding(feature_fields(features, names), embedding_dim)
            return nn.Linear(features.shape[1], embedding_dim)

        self.embedding = nn.ModuleDict()
        self.embed_ids = embed_ids
        width = 0
        if embed_ids:
            self.embedding["other_id"] = nn.Embedding(n_other, embedding_dim)
            width += embedding_dim
        self.register_buffer(
            "other_known", torch.tensor(np.asarray(known_other), dtype=torch.float32)
        )
        self.has_other_features = other_features is not None
        self.has_task_features = task_features is not None
        for side, features, names in (
            ("other", other_features, other_names),
            ("task", task_features, task_names),
        ):
            if features is None:
                continue
            table = torch.tensor(np.asarray(features), dtype=torch.float32)
            self.register_buffer(f"{side}_table", table)
            module = features_embedding(np.asarray(features), names)
            self.embedding[f"{side}_features"] = module
            width += module.width if isinstance(module, FieldEmbedding) else embedding_dim
        self.input_width = width

        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, out_dim))
        self.decision = nn.Sequential(*layers)
        self.out_dim = out_dim
        self.output_bias = output_bias

    def initialise(self, generator: torch.Generator) -> RatingNetwork:
        """Draw every parameter from ``generator`` (the module's own defaults are discarded)."""
        with torch.no_grad():
            if self.embed_ids:
                ids = self.embedding["other_id"]
                assert isinstance(ids, nn.Embedding)
                nn.init.normal_(ids.weight, std=0.1, generator=generator)
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    initialise_linear(module, generator)
            # Starting at the mean rating saves the first training steps from learning an offset.
            last = self.decision[-1]
            assert isinstance(last, nn.Linear)
            last.bias.fill_(self.output_bias)
        return self

    @classmethod
    def for_training_data(
        cls,
        train: MetaTrain,
        embedding_dim: int,
        hidden: Sequence[int],
        generator: torch.Generator,
        out_dim: int = 1,
        output_bias: float | None = None,
        *,
        embed_ids: bool = True,
        by_field: bool = False,
    ) -> RatingNetwork:
        net = cls(
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
            embed_ids=embed_ids,
            by_field=by_field,
            user_feature_names=train.user_feature_names,
            item_feature_names=train.item_feature_names,
        )
        return net.initialise(generator)

    def embed(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        other_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Input features ``[..., input_width]`` of each (user, item) pair; ``other_embedding``
        (broadcast to the pairs) replaces the other side's id embeddings from the table."""
        other, task = (items, users) if self.axis == "user" else (users, items)
        parts = []
        if self.embed_ids and other_embedding is not None:
            parts.append(other_embedding.expand(*other.shape, -1))
        elif self.embed_ids:
            parts.append(self.embedding["other_id"](other) * self.other_known[other].unsqueeze(-1))
        if self.has_other_features:
            parts.append(self.embedding["other_features"](self.other_table[other]))
        if self.has_task_features:
            parts.append(self.embedding["task_features"](self.task_table[task]))
        return torch.cat(parts, dim=-1)

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decision(x)
        return out.squeeze(-1) if self.out_dim == 1 else out

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.decide(self.embed(users, items))

    def group(self, name: str) -> Params:
        """The named parameters of one group ("embedding" or "decision"), or of all ("all")."""
        params: Params = dict(self.named_parameters())
        if name == "all":
            return params
        return {k: v for k, v in params.items() if k.startswith(name + ".")}


def field_embeddings(
    train: MetaTrain, embedding_dim: int, generator: torch.Generator, *, embed_ids: bool
) -> RatingNetwork:
    """The shared network's field-by-field embeddings of a pair without its decision layers, for
    models that decode pairs their own way (TaNP, MAMO)."""
    net = RatingNetwork.for_training_data(
        train, embedding_dim, (), generator, embed_ids=embed_ids, by_field=True
    )
    net.decision = nn.Sequential()  # only the embeddings are used
    return net


def needs_content(dataset: Any, learner: str) -> str | None:
    """Why ``learner``, which embeds content and not ids, cannot run on ``dataset``, or None."""
    if dataset.user_features is None and dataset.item_features is None:
        return f"needs user or item side features ({learner} embeds content, not ids)"
    return None
