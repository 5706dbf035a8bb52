"""Side features embedded field by field, as MeLU embeds content and demographics.

A dataset names its feature columns (``gender=F``, ``age>=25``, ``genre=Drama``,
``release_year_scaled``). Columns whose names share the part before ``=``, ``<`` or ``>`` and hold
only 0 and 1 form a *categorical* field: one-hot (gender, age bracket, occupation) or multi-hot
(genres). Each categorical field has its own embedding, the mean of the embeddings of its active
values: a lookup for one-hot fields, the average MeLU takes over a film's genres for multi-hot ones.
Every other column is a *numeric* field of its own with a linear embedding. Without names, the 0/1
columns form one categorical field and the rest one numeric field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

_FIELD = re.compile(r"^(.+?)\s*(?:=|<|>)")


@dataclass(frozen=True)
class Field:
    """A group of feature columns embedded together."""

    name: str
    columns: tuple[int, ...]
    categorical: bool


def _binary(column: np.ndarray) -> bool:
    return bool(np.isin(column, (0.0, 1.0)).all())


def feature_fields(features: np.ndarray, names: Sequence[str] | None = None) -> list[Field]:
    """Group the columns of ``features`` into fields, by name where names are given."""
    width = features.shape[1]
    binary = [_binary(features[:, c]) for c in range(width)]
    if names is None:
        groups = [
            Field("categorical", tuple(c for c in range(width) if binary[c]), True),
            Field("numeric", tuple(c for c in range(width) if not binary[c]), False),
        ]
        return [g for g in groups if g.columns]
    if len(names) != width:
        raise ValueError(f"{len(names)} feature names for {width} feature columns")
    grouped: dict[str, list[int]] = {}
    fields: list[Field] = []
    for column, name in enumerate(names):
        match = _FIELD.match(name)
        if match is None:
            fields.append(Field(name, (column,), False))
        else:
            grouped.setdefault(match.group(1), []).append(column)
    for name, columns in grouped.items():
        if all(binary[c] for c in columns):
            fields.append(Field(name, tuple(columns), True))
        else:  # a named group that is not 0/1 is embedded as numbers
            fields.append(Field(name, tuple(columns), False))
    return sorted(fields, key=lambda f: f.columns[0])


class FieldEmbedding(nn.Module):
    """Rows of side features ``[..., n_columns]`` to concatenated field embeddings
    ``[..., n_fields * dim]``."""

    def __init__(self, fields: Sequence[Field], dim: int) -> None:
        super().__init__()
        if not fields:
            raise ValueError("a field embedding needs at least one field")
        self.fields = tuple(fields)
        self.maps = nn.ModuleList(
            nn.Linear(len(f.columns), dim, bias=not f.categorical) for f in self.fields
        )
        for n, f in enumerate(self.fields):
            self.register_buffer(f"columns_{n}", torch.tensor(f.columns, dtype=torch.long))
        self.width = dim * len(self.fields)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        parts = []
        for n, (f, linear) in enumerate(zip(self.fields, self.maps, strict=True)):
            x = rows.index_select(-1, getattr(self, f"columns_{n}"))
            if f.categorical:
                # The mean over active values; a row with none embeds to zero.
                x = x / x.sum(-1, keepdim=True).clamp(min=1.0)
            parts.append(linear(x))
        return torch.cat(parts, dim=-1)
