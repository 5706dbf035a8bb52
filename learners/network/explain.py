"""The shared rating network opened at its feature fields, for field attributions.

:class:`~learners.network.model.RatingNetwork` concatenates, per (user, item) pair, the other side's
id embedding and each side's feature embedding, then decides. Here those inputs are cut into
*fields*: with field-wise embeddings (MeLU) a field's columns are its own embedding; where one
linear map embeds every feature column at once (``maml``, ``fine-tune``) a field's columns are its
raw feature columns, and the map is applied after them, which gives the same prediction. The other
side's id embedding is one more field (``item:id``). A field's baseline is the mean of its columns
over every entity of its side: for a linear embedding that is the frequency-weighted mean
embedding of the field's values, the embedding of an "unknown" value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.protocol.episodes import TaskBatch
from bench.protocol.explaining import ExplainsFields, FieldView
from learners.network.adaptation import Adapt, adapted_parameters
from learners.network.fields import Field, FieldEmbedding, feature_fields
from learners.network.model import RatingNetwork, initialise_linear
from learners.standardise import Standardiser


@dataclass(frozen=True)
class _Segment:
    name: str
    part: str
    """"id", or the embedding's key: "other_features" or "task_features"."""
    field: Field | None
    index: int
    """The field's position within its embedding module."""


def _side_names(axis: str) -> dict[str, str]:
    return (
        {"other": "item", "task": "user"} if axis == "user" else {"other": "user", "task": "item"}
    )


def segments(net: RatingNetwork, names: dict[str, tuple[str, ...] | None]) -> list[_Segment]:
    """The fields of ``net``'s input, in the order of its columns."""
    sides = _side_names(net.axis)
    out: list[_Segment] = []
    if net.embed_ids:
        out.append(_Segment(f"{sides['other']}:id", "id", None, 0))
    for side in ("other", "task"):
        key = f"{side}_features"
        if key not in net.embedding:
            continue
        module = net.embedding[key]
        if isinstance(module, FieldEmbedding):
            fields = list(module.fields)
        else:
            table = getattr(net, f"{side}_table").cpu().numpy()
            fields = feature_fields(table, names[sides[side]])
        out += [_Segment(f"{sides[side]}:{f.name}", key, f, n) for n, f in enumerate(fields)]
    return out


def _field_columns(net: RatingNetwork, seg: _Segment, ids: torch.Tensor) -> torch.Tensor:
    """The columns of one field for entities ``ids`` (of the field's side)."""
    if seg.part == "id":
        embedding = net.embedding["other_id"]
        assert isinstance(embedding, nn.Embedding)
        return embedding(ids) * net.other_known[ids].unsqueeze(-1)
    assert seg.field is not None
    side = seg.part.removesuffix("_features")
    rows = getattr(net, f"{side}_table")[ids][..., list(seg.field.columns)]
    module = net.embedding[seg.part]
    if isinstance(module, FieldEmbedding):
        if seg.field.categorical:
            rows = rows / rows.sum(-1, keepdim=True).clamp(min=1.0)
        linear = module.maps[seg.index]
        out: torch.Tensor = linear(rows)
        return out
    return rows


def _entities(
    net: RatingNetwork, seg: _Segment, users: torch.Tensor, items: torch.Tensor
) -> torch.Tensor:
    other, task = (items, users) if net.axis == "user" else (users, items)
    return task if seg.part == "task_features" else other


def encode(
    net: RatingNetwork, segs: list[_Segment], users: torch.Tensor, items: torch.Tensor
) -> torch.Tensor:
    """The field columns ``[..., W]`` of (user, item) pairs."""
    return torch.cat([_field_columns(net, s, _entities(net, s, users, items)) for s in segs], -1)


def baseline(net: RatingNetwork, segs: list[_Segment]) -> torch.Tensor:
    """``[W]``: each field's columns averaged over every entity of its side."""
    parts = []
    for s in segs:
        if s.part == "id":
            count = net.other_known.shape[0]
        else:
            count = getattr(net, f"{s.part.removesuffix('_features')}_table").shape[0]
        ids = torch.arange(count, device=net.other_known.device)
        parts.append(_field_columns(net, s, ids).mean(0))
    return torch.cat(parts)


def embedded(net: RatingNetwork, segs: list[_Segment], x: torch.Tensor) -> torch.Tensor:
    """The network's embedding of pairs from their field columns ``[..., W]`` (what
    ``net.embed(users, items)`` gives when the columns are those of the pairs)."""
    chunks = torch.split(x, [_width(net, s) for s in segs], dim=-1)
    inputs: list[torch.Tensor] = []
    for part in ("id", "other_features", "task_features"):  # the order of RatingNetwork.embed
        pieces = [(s, c) for s, c in zip(segs, chunks, strict=True) if s.part == part]
        if not pieces:
            continue
        module = net.embedding[part] if part != "id" else None
        if module is None or isinstance(module, FieldEmbedding):
            inputs += [c for _, c in pieces]
            continue
        # One linear map over all of the side's columns: put each field's columns back in place.
        table = getattr(net, f"{part.removesuffix('_features')}_table")
        row = x.new_zeros((*x.shape[:-1], table.shape[1]))
        for s, c in pieces:
            assert s.field is not None
            row[..., list(s.field.columns)] = c
        inputs.append(module(row))
    return torch.cat(inputs, -1)


def _width(net: RatingNetwork, s: _Segment) -> int:
    if s.part == "id":
        embedding = net.embedding["other_id"]
        assert isinstance(embedding, nn.Embedding)
        return int(embedding.embedding_dim)
    module = net.embedding[s.part]
    assert s.field is not None
    if isinstance(module, FieldEmbedding):
        linear = module.maps[s.index]
        assert isinstance(linear, nn.Linear)
        return linear.out_features
    return len(s.field.columns)


def _with_parameters(net: RatingNetwork, params: dict[str, torch.Tensor]) -> RatingNetwork:
    copied = copy.deepcopy(net)
    with torch.no_grad():
        own = dict(copied.named_parameters())
        for name, value in params.items():
            own[name].copy_(value)
    return copied


Head = Callable[[torch.Tensor], torch.Tensor]
"""A task's model after the embeddings: pair embeddings ``[..., input_width]`` to standardised
predictions ``[...]``."""


class NetworkFields(ExplainsFields):
    """Field attributions for a learner built on the shared rating network's field embeddings.

    By default the model is the rating network itself and adaptation is support gradient steps
    (``maml``, ``melu``, ``fine-tune``: :meth:`adaptation`); a learner that decodes pairs its own
    way (TaNP, MAMO) overrides :meth:`fields_network` and :meth:`task_heads`.
    """

    model: Any
    standardiser: Standardiser
    feature_names: dict[str, tuple[str, ...] | None]

    def adaptation(self) -> tuple[float, int, Adapt]:
        """Step size, steps and adapted parameter group of the support steps."""
        raise NotImplementedError

    def fields_network(self) -> RatingNetwork:
        """The network whose embeddings take the feature fields."""
        net: RatingNetwork = self.model
        return net

    def task_heads(self, tasks: TaskBatch, adapted: bool) -> list[tuple[RatingNetwork, Head]]:
        """Per task of ``tasks`` (standardised), the field network it embeds with and its head,
        as adapted to its support (``adapted``) or before."""
        net = self.fields_network()
        lr, steps, adapt = self.adaptation()
        if not (adapted and steps > 0 and tasks.n_tasks):
            return [(net, net.decide)] * tasks.n_tasks
        fast = adapted_parameters(net, tasks, lr=lr, steps=steps, adapt=adapt)
        out: list[tuple[RatingNetwork, Head]] = []
        for t in range(tasks.n_tasks):
            own = _with_parameters(net, {k: v[t] for k, v in fast.items()})
            out.append((own, own.decide))
        return out

    def _segments(self) -> list[_Segment]:
        names = getattr(self, "feature_names", {"user": None, "item": None})
        return segments(self.fields_network(), names)

    def feature_fields(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._segments())

    def field_view(self, tasks: TaskBatch, *, adapted: bool = True) -> FieldView:
        segs = self._segments()
        width = sum(_width(self.fields_network(), s) for s in segs)
        with torch.no_grad():
            heads = self.task_heads(self.standardiser.tasks(tasks), adapted)
        task, position = torch.nonzero(tasks.query_mask, as_tuple=True)
        inputs = torch.zeros(len(task), width)
        base = torch.zeros(len(task), width)
        with torch.no_grad():
            for t in torch.unique(task).tolist():
                rows = torch.nonzero(task == t, as_tuple=True)[0]
                net = heads[t][0]
                where = position[rows]
                users, items = tasks.query_users[t, where], tasks.query_items[t, where]
                inputs[rows] = encode(net, segs, users, items)
                base[rows] = baseline(net, segs)
        groups = torch.cat(
            [
                torch.full((_width(self.fields_network(), s),), n, dtype=torch.long)
                for n, s in enumerate(segs)
            ]
        )
        forward = _forward(heads, segs, task, self.standardiser)
        return FieldView(tuple(s.name for s in segs), inputs, groups, base, forward, task, position)

    @property
    def parameter_layers(self) -> tuple[str, ...]:
        layers = [
            name
            for name, module in self.model.named_modules()
            if isinstance(module, nn.Linear | nn.Embedding)
        ]
        return tuple(reversed(layers))

    def randomised(self, layers: tuple[str, ...], generator: torch.Generator) -> ExplainsFields:
        twin = copy.deepcopy(self)
        modules = dict(twin.model.named_modules())
        with torch.no_grad():
            for name in layers:
                module = modules[name]
                if isinstance(module, nn.Embedding):
                    nn.init.normal_(module.weight, std=0.1, generator=generator)
                elif isinstance(module, nn.Linear):
                    initialise_linear(module, generator)
        return twin


def _forward(
    heads: list[tuple[RatingNetwork, Head]],
    segs: list[_Segment],
    task: torch.Tensor,
    standardiser: Standardiser,
) -> Callable[[torch.Tensor], torch.Tensor]:
    groups = [
        (heads[t], torch.nonzero(task == t, as_tuple=True)[0]) for t in torch.unique(task).tolist()
    ]

    def forward(x: torch.Tensor, *_: Any) -> torch.Tensor:
        # Attribution methods may stack several perturbed copies of the rows: ``[k * N, W]``.
        n = task.shape[0]
        blocks = x.reshape(-1, n, x.shape[-1])
        out = x.new_zeros(blocks.shape[:2])
        with torch.no_grad():
            for (net, head), rows in groups:
                out[:, rows] = head(embedded(net, segs, blocks[:, rows]))
        return standardiser.back(out).reshape(-1)

    return forward
