"""What a learner exposes to be explained: its model opened at its feature fields, and how its
prediction depends on each support rating.

Explanations sit on top of the learner contract. A learner opts in by implementing
:class:`ExplainsFields` (its model takes feature fields: user gender, item genres, ...) and, where
it has a cheaper exact form than re-adapting without each support rating, :class:`ExplainsSupport`.
The attribution methods and their sanity checks live in :mod:`bench.evaluation`; they only see
what these interfaces return.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.protocol.episodes import TaskBatch


@dataclass(frozen=True, eq=False)
class FieldView:
    """A model, as adapted to each task, opened at the inputs of its feature fields.

    Each row is one (task, query position) pair. ``inputs`` ``[N, W]`` holds, per field, the
    columns the model sees for it (a field's embedding, or its raw feature columns where the model
    embeds all columns at once); ``groups`` ``[W]`` gives the field index of every column.
    ``baseline`` ``[W]`` is the frequency-weighted mean of each field's columns over the entities
    of its side: a field replaced by it is "unknown". ``forward`` maps inputs ``[N, W]`` to the
    rows' predicted ratings ``[N]`` (rating units, not clamped to the scale), each row through its
    own task's adapted model.
    """

    fields: tuple[str, ...]
    inputs: torch.Tensor
    groups: torch.Tensor
    baseline: torch.Tensor
    forward: Callable[[torch.Tensor], torch.Tensor]
    task: torch.Tensor
    """``[N]``: the task index of each row."""
    position: torch.Tensor
    """``[N]``: the query position of each row within its task."""

    @property
    def n_fields(self) -> int:
        return len(self.fields)

    def masked(self, keep: torch.Tensor) -> torch.Tensor:
        """Inputs with the fields where ``keep`` ``[N, F]`` (or ``[F]``) is False set to the
        baseline."""
        keep_rows = keep if keep.dim() == 2 else keep.expand(self.inputs.shape[0], -1)
        columns = keep_rows[:, self.groups]
        return torch.where(columns, self.inputs, self.baseline.expand_as(self.inputs))


class ExplainsFields(abc.ABC):
    """A learner whose model takes feature fields and can be opened at them.

    Stability: experimental.
    """

    @abc.abstractmethod
    def feature_fields(self) -> tuple[str, ...]:
        """The names of the fields the fitted model takes (``user:gender``, ``item:genre``); empty
        when it takes none (then it cannot be explained by fields)."""

    @abc.abstractmethod
    def field_view(self, tasks: TaskBatch, *, adapted: bool = True) -> FieldView:
        """The fitted model opened at its fields on ``tasks``' query pairs: adapted to each task's
        support (``adapted``) or as meta-trained, before adaptation."""

    @property
    @abc.abstractmethod
    def parameter_layers(self) -> tuple[str, ...]:
        """The model's layers with parameters, from the output down (for randomisation checks)."""

    @abc.abstractmethod
    def randomised(self, layers: tuple[str, ...], generator: torch.Generator) -> ExplainsFields:
        """A copy whose parameters in ``layers`` are drawn afresh from their initial distribution."""


class ExplainsSupport(abc.ABC):
    """A learner with an exact, cheap form of how much each support rating moves its predictions.

    Stability: experimental.
    """

    @abc.abstractmethod
    def support_attributions(self, tasks: TaskBatch) -> torch.Tensor:
        """``[T, Q, S]``: each query prediction minus the prediction after re-adapting without
        support rating ``s`` (0 at padding); the same numbers as re-adapting once per rating."""
