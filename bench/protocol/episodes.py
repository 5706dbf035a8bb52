"""Support/query tasks as padded tensors, and the training view that learners fit on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from bench.data.dataset import Dataset
from bench.protocol import Split, SupportSize, TaskSet
from bench.protocol.base import split_like_threshold


@dataclass(frozen=True, eq=False)
class TaskBatch:
    """``T`` tasks, each with a padded support set ``[T, S]`` and a padded query set ``[T, Q]``.

    Every task lists the (user, item) pair of each rating, so one layout serves user-as-task and
    item-as-task protocols alike; ``axis`` says which side ``entities`` holds. Padding positions
    have mask False, id 0 and rating 0. ``query_ratings`` is None in batches given to
    ``Learner.predict``: the labels stay with the harness.
    """

    axis: str
    entities: torch.Tensor
    support_users: torch.Tensor
    support_items: torch.Tensor
    support_ratings: torch.Tensor
    support_mask: torch.Tensor
    query_users: torch.Tensor
    query_items: torch.Tensor
    query_mask: torch.Tensor
    query_ratings: torch.Tensor | None = None

    @property
    def n_tasks(self) -> int:
        return int(self.entities.shape[0])

    def to(self, device: torch.device | str) -> TaskBatch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return TaskBatch(**moved)

    def without_labels(self) -> TaskBatch:
        return replace(self, query_ratings=None)

    def without_queries(self) -> TaskBatch:
        """The tasks with an empty query: what ``Learner.score`` receives, so that ranking the
        catalogue never learns which items the task's user rated in its query."""
        empty = self.query_items[:, :0]
        return replace(
            self,
            query_users=empty,
            query_items=empty,
            query_mask=self.query_mask[:, :0],
            query_ratings=None,
        )

    def with_queries(self, items: torch.Tensor) -> TaskBatch:
        """The tasks with ``items`` ``[tasks, C]`` as an unlabelled query (user tasks)."""
        users = self.entities[:, None].expand_as(items)
        mask = torch.ones(items.shape, dtype=torch.bool, device=items.device)
        return replace(
            self, query_users=users, query_items=items, query_mask=mask, query_ratings=None
        )

    def select(self, index: slice | torch.Tensor) -> TaskBatch:
        """A sub-batch of tasks (a slice or an index tensor)."""
        picked: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            picked[f.name] = value[index] if isinstance(value, torch.Tensor) else value
        return TaskBatch(**picked)


def predict_in_chunks(
    predict: Callable[[TaskBatch], torch.Tensor], tasks: TaskBatch, chunk: int
) -> torch.Tensor:
    """``predict`` on slices of at most ``chunk`` tasks, joined: bounds the memory of one call."""
    if tasks.n_tasks == 0:
        return torch.zeros(tasks.query_items.shape, device=tasks.query_items.device)
    if tasks.n_tasks <= chunk:
        return predict(tasks)
    return torch.cat(
        [predict(tasks.select(slice(s, s + chunk))) for s in range(0, tasks.n_tasks, chunk)]
    )


def _pad(rows: Sequence[np.ndarray], fill: int = -1) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), fill, dtype=np.int64)
    for t, r in enumerate(rows):
        out[t, : len(r)] = r
    return out


def batch_from_rows(
    dataset_user: np.ndarray,
    dataset_item: np.ndarray,
    dataset_rating: np.ndarray,
    axis: str,
    entities: np.ndarray,
    support_rows: Sequence[np.ndarray] | np.ndarray,
    query_rows: Sequence[np.ndarray] | np.ndarray,
    with_labels: bool = True,
) -> TaskBatch:
    """Gather rating rows (indices into the rating arrays, -1 for padding) into a TaskBatch."""
    support = support_rows if isinstance(support_rows, np.ndarray) else _pad(support_rows)
    query = query_rows if isinstance(query_rows, np.ndarray) else _pad(query_rows)

    def gather(rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        mask = rows >= 0
        safe = np.where(mask, rows, 0)
        users = np.where(mask, dataset_user[safe], 0) if rows.size else rows
        items = np.where(mask, dataset_item[safe], 0) if rows.size else rows
        ratings = np.where(mask, dataset_rating[safe], 0.0) if rows.size else rows.astype(float)
        return (
            torch.as_tensor(users, dtype=torch.long),
            torch.as_tensor(items, dtype=torch.long),
            torch.as_tensor(ratings, dtype=torch.float32),
            torch.as_tensor(mask),
        )

    su, si, sr, sm = gather(support)
    qu, qi, qr, qm = gather(query)
    return TaskBatch(
        axis=axis,
        entities=torch.as_tensor(np.asarray(entities, dtype=np.int64)),
        support_users=su,
        support_items=si,
        support_ratings=sr,
        support_mask=sm,
        query_users=qu,
        query_items=qi,
        query_mask=qm,
        query_ratings=qr if with_labels else None,
    )


def build_tasks(dataset: Dataset, taskset: TaskSet, k: SupportSize) -> TaskBatch:
    """The tasks of one scenario at support size ``k``, with query labels attached."""
    support = [taskset.support(t, k) for t in range(len(taskset))]
    return batch_from_rows(
        dataset.user,
        dataset.item,
        dataset.rating,
        taskset.axis,
        taskset.entities,
        support,
        list(taskset.queries),
    )


class EpisodeSampler:
    """Draws training tasks from the training ratings, grouped by task entity.

    Each draw picks entities with at least ``support_size + query_size`` training ratings (or
    ``min_ratings`` when given), shuffles each entity's ratings, and takes the first ``support_size``
    as support and the next ``query_size`` as query.
    """

    def __init__(
        self, user: np.ndarray, item: np.ndarray, rating: np.ndarray, axis: str, n_entities: int
    ) -> None:
        self.user, self.item, self.rating, self.axis = user, item, rating, axis
        task_of = user if axis == "user" else item
        self.order = np.argsort(task_of, kind="stable")
        self.starts = np.searchsorted(task_of[self.order], np.arange(n_entities + 1))
        self.counts = np.diff(self.starts)

    def entities_with(self, min_ratings: int) -> np.ndarray:
        return np.flatnonzero(self.counts >= max(min_ratings, 1))

    def sample(
        self,
        rng: np.random.Generator,
        n_tasks: int,
        support_size: int,
        query_size: int,
        *,
        entities: np.ndarray | None = None,
    ) -> TaskBatch:
        if entities is None:
            pool = self.entities_with(support_size + query_size)
            if len(pool) == 0:
                raise ValueError(
                    f"no training {self.axis} has {support_size + query_size} ratings to form a task"
                )
            entities = rng.choice(pool, size=n_tasks, replace=len(pool) < n_tasks)
        counts = self.counts[entities]
        width = int(counts.max())
        # Random keys with padding pushed to the end give a per-row shuffle in one argsort.
        keys = rng.random((len(entities), width))
        keys[np.arange(width)[None, :] >= counts[:, None]] = np.inf
        perm = np.argsort(keys, axis=1)
        rows = self.order[np.minimum(self.starts[entities][:, None] + perm, len(self.order) - 1)]
        valid = np.arange(width)[None, :] < counts[:, None]
        rows = np.where(valid, rows, -1)
        s = np.minimum(support_size, np.maximum(counts - query_size, 0))
        col = np.arange(width)[None, :]
        support = np.where(col[:, :support_size] < s[:, None], rows[:, :support_size], -1)
        q_index = s[:, None] + np.arange(query_size)[None, :]
        query = np.take_along_axis(rows, np.minimum(q_index, width - 1), axis=1)
        query = np.where(q_index < counts[:, None], query, -1)
        return batch_from_rows(
            self.user, self.item, self.rating, self.axis, entities, support, query
        )


@dataclass(frozen=True, eq=False)
class MetaTrain:
    """What a learner may see when it fits: training ratings, side features and validation tasks.

    It never holds evaluation queries. ``known_users`` / ``known_items`` mark the entities that have
    at least one training rating. ``like_threshold`` is the split's (see
    :func:`bench.protocol.base.like_threshold`). ``user_feature_names`` / ``item_feature_names``
    name the feature columns where the dataset does (``genre=Drama``, ``age>=25``): a learner may
    group one-hot columns into fields by the part before ``=``, ``<`` or ``>``.
    """

    axis: str
    n_users: int
    n_items: int
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_features: np.ndarray | None
    item_features: np.ndarray | None
    rating_scale: tuple[float, float]
    like_threshold: float
    rating_levels: np.ndarray
    validation: TaskBatch | None
    sampler: EpisodeSampler
    support_sizes: tuple[SupportSize, ...]
    query_size: int
    truth: Any = None
    user_feature_names: tuple[str, ...] | None = None
    item_feature_names: tuple[str, ...] | None = None

    @property
    def known_users(self) -> np.ndarray:
        return np.bincount(self.user, minlength=self.n_users) > 0

    @property
    def known_items(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items) > 0


def make_meta_train(dataset: Dataset, split: Split) -> MetaTrain:
    rows = split.train
    user, item = dataset.user[rows], dataset.item[rows]
    rating, timestamp = dataset.rating[rows], dataset.timestamp[rows]
    axis = split.config.task_axis
    validation = None
    if len(split.validation):
        k = "all" if "all" in split.config.support_sizes else split.config.max_finite_support
        validation = build_tasks(dataset, split.validation, k)
    return MetaTrain(
        axis=axis,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        user=user,
        item=item,
        rating=rating,
        timestamp=timestamp,
        user_features=dataset.user_features,
        item_features=dataset.item_features,
        rating_scale=dataset.rating_scale,
        like_threshold=split_like_threshold(dataset, split),
        rating_levels=np.unique(rating),  # the training ratings': test values stay unseen
        validation=validation,
        sampler=EpisodeSampler(
            user, item, rating, axis, dataset.n_users if axis == "user" else dataset.n_items
        ),
        support_sizes=split.config.support_sizes,
        query_size=split.config.query_size,
        truth=dataset.truth,
        user_feature_names=_names(dataset, "user_feature_names", dataset.user_features),
        item_feature_names=_names(dataset, "item_feature_names", dataset.item_features),
    )


def _names(dataset: Dataset, key: str, features: np.ndarray | None) -> tuple[str, ...] | None:
    """The dataset's names of its feature columns, when it has one per column."""
    names = dataset.extras.get(key)
    if features is None or names is None or len(names) != features.shape[1]:
        return None
    return tuple(str(n) for n in names)
