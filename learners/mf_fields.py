"""Matrix factorisation opened at its feature fields, for field attributions.

``mf`` (and ``content-map``) take side features in one place only: a linear map from an unseen
entity's feature row to its starting ``[factors, bias]`` (its *prior*). A new task entity is folded
in by a ridge solve on its support centred on that prior, ``theta = A^-1 (D^T t + reg prior)``,
which is linear in the prior; a new query entity keeps its prior. So a field's columns are its raw
feature columns, its baseline their mean over the side's entities (the map being linear, that is
the mean of the field's contribution), and a known entity's fields move nothing: it has its own
trained parameters.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

from bench.protocol.episodes import TaskBatch
from bench.protocol.explaining import ExplainsFields, FieldView

FIELD = re.compile(r"^(.+?)\s*(?:=|<|>)")


def content_fields(names: tuple[str, ...] | None, width: int) -> list[tuple[str, list[int]]]:
    """Columns grouped by the part of their name before ``=``, ``<`` or ``>``; unnamed columns
    form one field."""
    if names is None or len(names) != width:
        return [("features", list(range(width)))]
    grouped: dict[str, list[int]] = {}
    for column, name in enumerate(names):
        match = FIELD.match(name)
        grouped.setdefault(match.group(1) if match else name, []).append(column)
    return sorted(grouped.items(), key=lambda kv: kv[1][0])


class MFFields(ExplainsFields):
    """Field attributions for the matrix factorisation learners (see the module's docstring)."""

    users: torch.Tensor
    items: torch.Tensor
    known_users: torch.Tensor
    known_items: torch.Tensor
    mean: float
    standardiser: Any
    config: Any
    feature_names: dict[str, tuple[str, ...] | None]
    feature_tables: dict[str, torch.Tensor]
    """Per side with a prior map: its feature rows."""

    def prior_of(self, side: str, rows: torch.Tensor) -> torch.Tensor:
        """The prior ``[..., rank + 1]`` of entities of ``side`` with feature rows ``rows``."""
        weights, intercept = getattr(self, f"{side}_map")
        out: torch.Tensor = rows @ weights + intercept
        return out

    def folds_in(self) -> bool:
        """Whether unseen task entities are folded in on their support (else they keep their
        prior)."""
        return True

    def _sides(self, axis: str) -> list[str]:
        task, other = ("user", "item") if axis == "user" else ("item", "user")
        return [s for s in (task, other) if s in getattr(self, "feature_tables", {})]

    def _layout(self, axis: str) -> list[tuple[str, str, list[int]]]:
        out = []
        for side in self._sides(axis):
            width = self.feature_tables[side].shape[1]
            out += [
                (side, f"{side}:{name}", cols)
                for name, cols in content_fields(self.feature_names.get(side), width)
            ]
        return out

    def feature_fields(self) -> tuple[str, ...]:
        return tuple(name for _, name, _ in self._layout("user"))

    def field_view(self, tasks: TaskBatch, *, adapted: bool = True) -> FieldView:
        std = self.standardiser.tasks(tasks)
        axis = std.axis
        by_user = axis == "user"
        layout = self._layout(axis)
        task_side, other_side = ("user", "item") if by_user else ("item", "user")
        own, other = (self.users, self.items) if by_user else (self.items, self.users)
        known_own = (self.known_users if by_user else self.known_items)[std.entities]
        known_other = self.known_items if by_user else self.known_users
        support_other = std.support_items if by_user else std.support_users
        query_other = std.query_items if by_user else std.query_users
        dtype = own.dtype

        # The fold-in's parts that do not depend on the prior: A^-1 and A^-1 D^T t per task.
        other_s = other[support_other]
        design = torch.cat([other_s[..., :-1], torch.ones_like(other_s[..., :1])], -1)
        design = design * std.support_mask.to(dtype)[..., None]
        target = std.support_ratings.to(dtype) - self.mean - other_s[..., -1]
        system = design.transpose(1, 2) @ design
        system.diagonal(dim1=-2, dim2=-1).add_(self.config.fold_in_reg)
        inverse = torch.linalg.inv(system)
        free = (inverse @ (design * target[..., None]).sum(1)[..., None]).squeeze(-1)
        fold = adapted and self.folds_in()

        task, position = torch.nonzero(tasks.query_mask, as_tuple=True)
        entity_of_row = std.entities[task]
        other_of_row = query_other[task, position]
        parts, baselines = [], []
        for side, _, cols in layout:
            ids = entity_of_row if side == task_side else other_of_row
            table = self.feature_tables[side]
            parts.append(table[ids][:, cols])
            baselines.append(table[:, cols].mean(0))
        width = sum(len(c) for _, _, c in layout)
        inputs = torch.cat(parts, 1).float() if parts else torch.zeros(len(task), 0)
        base = torch.cat(baselines).float() if baselines else torch.zeros(0)
        groups = torch.cat(
            [torch.full((len(c),), n, dtype=torch.long) for n, (_, _, c) in enumerate(layout)]
        ) if layout else torch.zeros(0, dtype=torch.long)  # fmt: skip

        def rows_of(x: torch.Tensor, side: str) -> torch.Tensor | None:
            """The feature rows of ``side`` rebuilt from field columns ``[..., W]``."""
            if side not in self.feature_tables:
                return None
            table = self.feature_tables[side]
            out = x.new_zeros((*x.shape[:-1], table.shape[1]), dtype=dtype)
            start = 0
            for s, _, cols in layout:
                if s == side:
                    out[..., cols] = x[..., start : start + len(cols)].to(dtype)
                start += len(cols)
            return out

        def forward(x: torch.Tensor, *_: Any) -> torch.Tensor:
            n = len(task)
            blocks = x.reshape(-1, n, width)
            own_rows = rows_of(blocks, task_side)
            prior = (
                self.prior_of(task_side, own_rows)
                if own_rows is not None
                else torch.zeros(*blocks.shape[:2], own.shape[1], dtype=dtype)
            )
            if fold:
                folded = free[task] + self.config.fold_in_reg * (
                    inverse[task] @ prior[..., None]
                ).squeeze(-1)
            else:
                folded = prior
            theta = torch.where(known_own[task][:, None], own[entity_of_row], folded)
            other_rows = rows_of(blocks, other_side)
            o = other[other_of_row].expand(blocks.shape[0], -1, -1)
            if other_rows is not None:
                mapped = self.prior_of(other_side, other_rows)
                o = torch.where(known_other[other_of_row][:, None], o, mapped)
            pred = self.mean + theta[..., -1] + o[..., -1] + (theta[..., :-1] * o[..., :-1]).sum(-1)
            return self.standardiser.back(pred.float()).reshape(-1)

        return FieldView(
            tuple(name for _, name, _ in layout), inputs, groups, base, forward, task, position
        )

    @property
    def parameter_layers(self) -> tuple[str, ...]:
        # From the output down: the trained factors of both sides, then the feature maps.
        return ("items", "users", "item_map", "user_map")

    def randomised(self, layers: tuple[str, ...], generator: torch.Generator) -> ExplainsFields:
        twin = copy.deepcopy(self)
        with torch.no_grad():
            for name in layers:
                value = getattr(twin, name, None)
                tensors = value if isinstance(value, tuple) else (value,)
                for tensor in tensors:
                    if isinstance(tensor, torch.Tensor):
                        scale = float(tensor.std()) if tensor.numel() > 1 else 1.0
                        fresh = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
                        tensor.copy_((fresh * scale).to(tensor.dtype))
        return twin
