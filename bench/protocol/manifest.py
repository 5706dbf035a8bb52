"""A split as plain tables in the dataset's own ids, and the manifest that pins it.

One (dataset, seed) split becomes named tables (:func:`split_tables`):

- ``train``: the training ratings (``user, item, rating, timestamp``);
- ``validation``: the validation tasks, one row per rating: ``task`` (the task entity), ``role``
  (``support`` for the task's whole support pool in order, ``query``), ``position`` and the rating;
- ``SCENARIO/k-K/support`` and ``SCENARIO/k-K/query``: each scenario's tasks at support size K;
- ``new_entities``: the users and items the split holds out as new (``side, id``);
- ``item_means``: each item's number of training ratings and their mean, the statistic rating
  learners start from;
- ``users`` and ``items``: every id of the catalogue with its side features, where it has any.

Ids are text, as the dataset's files spell them, so any tool can join the tables. The statistics
a learner is given (like threshold, rating scale, rating levels) travel in the manifest with where
they came from, so an audit can recompute them from the training table alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.data.dataset import Dataset
from bench.protocol.base import Protocol, Split, SupportSize, split_like_threshold
from bench.protocol.episodes import MetaTrain

MANIFEST_VERSION = 1
RATING_COLUMNS = ("user", "item", "rating", "timestamp")
TASK_COLUMNS = ("task", "position", *RATING_COLUMNS)
VALIDATION_COLUMNS = ("task", "role", "position", *RATING_COLUMNS)
ITEM_MEAN_COLUMNS = ("item", "ratings", "mean")
ENTITY_COLUMNS = ("side", "id")


def k_folder(k: SupportSize) -> str:
    return f"k-{k}"


def task_table(scenario: str, k: SupportSize, role: str) -> str:
    """The name of a scenario's support or query table at support size ``k``."""
    return f"{scenario}/{k_folder(k)}/{role}"


def safe_name(name: str) -> str:
    """A dataset name usable as one folder name (a suite may name a card by its path)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "dataset"


@dataclass(frozen=True, eq=False)
class SplitTables:
    """One (dataset, seed) split as tables, with the statistics a learner is given."""

    dataset: str
    seed: int
    task_axis: str
    tables: dict[str, pd.DataFrame]
    statistics: dict[str, Any]
    counts: dict[str, int]
    temporal: bool = False
    """Whether the protocol orders or splits by time (the audit then checks the cut-off)."""
    evaluated: tuple[tuple[str, SupportSize], ...] = field(default_factory=tuple)


def _ratings(dataset: Dataset, rows: np.ndarray) -> dict[str, Any]:
    return {
        "user": dataset.raw_id_column("user", dataset.user[rows]),
        "item": dataset.raw_id_column("item", dataset.item[rows]),
        "rating": dataset.rating[rows].astype(np.float64),
        "timestamp": dataset.timestamp[rows].astype(np.int64),
    }


def _tasks(
    dataset: Dataset, axis: str, entities: np.ndarray, groups: list[np.ndarray]
) -> dict[str, Any]:
    """Rows of several tasks: the task entity's id and each rating's position in its task."""
    lengths = np.asarray([len(g) for g in groups], dtype=np.int64)
    rows = np.concatenate(groups).astype(np.int64) if groups else np.zeros(0, dtype=np.int64)
    names = dataset.raw_id_column(axis, np.repeat(np.asarray(entities, dtype=np.int64), lengths))
    positions = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else rows
    return {"task": names, "position": positions.astype(np.int64), **_ratings(dataset, rows)}


def item_means(item: list[str] | pd.Series, rating: np.ndarray | pd.Series) -> pd.DataFrame:
    """Each rated item's number of ratings and mean rating, sorted by item id as text."""
    items = item.astype(str).reset_index(drop=True) if isinstance(item, pd.Series) else item
    frame = pd.DataFrame({"item": items, "rating": np.asarray(rating, dtype=np.float64)})
    grouped = frame.groupby("item", sort=True)["rating"]
    out = pd.DataFrame({"ratings": grouped.size(), "mean": grouped.mean()}).reset_index()
    out["ratings"] = out["ratings"].astype(np.int64)
    return out[list(ITEM_MEAN_COLUMNS)]


def _catalogue(dataset: Dataset, side: str) -> pd.DataFrame:
    count = dataset.n_users if side == "user" else dataset.n_items
    features = dataset.user_features if side == "user" else dataset.item_features
    frame = pd.DataFrame({"id": dataset.raw_id_column(side, np.arange(count))})
    if features is not None:
        names = dataset.extras.get(f"{side}_feature_names")
        if names is None or len(names) != features.shape[1]:
            names = [f"f{j}" for j in range(features.shape[1])]
        columns = {f"feature:{n}": features[:, j].astype(np.float64) for j, n in enumerate(names)}
        frame = pd.concat([frame, pd.DataFrame(columns)], axis=1)
    return frame


def statistics(dataset: Dataset, split: Split, view: MetaTrain | None) -> dict[str, Any]:
    """What a learner is given besides the ratings, and where each came from."""
    report = dataset.extras.get("load_report", {})
    threshold = view.like_threshold if view is not None else split_like_threshold(dataset, split)
    scale = view.rating_scale if view is not None else dataset.rating_scale
    levels = view.rating_levels if view is not None else dataset.rating_levels
    return {
        "like_threshold": float(threshold),
        "like_threshold_source": split.summary.get("like_threshold_source", ""),
        "rating_scale": [float(scale[0]), float(scale[1])],
        "rating_scale_from": report.get("rating_scale_from", "declared"),
        "rating_levels": [float(v) for v in np.asarray(levels, dtype=np.float64)],
    }


def split_tables(
    dataset: Dataset,
    protocol: Protocol,
    split: Split,
    seed: int,
    evaluated: list[tuple[str, SupportSize]],
    view: MetaTrain | None = None,
) -> SplitTables:
    """The tables of one split, its (scenario, k) pairs ``evaluated``.

    With ``view`` (the training view a learner fits on), ``item_means`` and the statistics are
    taken from what the learner is given rather than from the split's training rows, so that an
    audit compares the two."""
    axis = split.config.task_axis
    tables: dict[str, pd.DataFrame] = {}
    tables["train"] = pd.DataFrame(_ratings(dataset, split.train))
    val = split.validation
    pools = _tasks(dataset, axis, val.entities, list(val.pools))
    queries = _tasks(dataset, axis, val.entities, list(val.queries))
    validation = pd.concat(
        [
            pd.DataFrame({**pools, "role": "support"}),
            pd.DataFrame({**queries, "role": "query"}),
        ],
        ignore_index=True,
    )
    tables["validation"] = validation[list(VALIDATION_COLUMNS)].reset_index(drop=True)
    counts: dict[str, int] = {
        "users": dataset.n_users,
        "items": dataset.n_items,
        "ratings": dataset.n_ratings,
        "train": len(split.train),
        "validation_tasks": len(val),
        "new_users": int(split.new_users.sum()),
        "new_items": int(split.new_items.sum()),
    }
    for scenario, k in evaluated:
        tasks = split.scenarios[scenario]
        supports = [tasks.support(t, k) for t in range(len(tasks))]
        tables[task_table(scenario, k, "support")] = pd.DataFrame(
            _tasks(dataset, axis, tasks.entities, supports)
        )
        tables[task_table(scenario, k, "query")] = pd.DataFrame(
            _tasks(dataset, axis, tasks.entities, list(tasks.queries))
        )
        counts[f"{scenario}/{k_folder(k)}/tasks"] = len(tasks)
        counts[f"{scenario}/{k_folder(k)}/support"] = int(sum(len(s) for s in supports))
        counts[f"{scenario}/{k_folder(k)}/query"] = int(sum(len(q) for q in tasks.queries))
    new_users = dataset.raw_ids("user", np.flatnonzero(split.new_users))
    new_items = dataset.raw_ids("item", np.flatnonzero(split.new_items))
    tables["new_entities"] = pd.DataFrame(
        {"side": ["user"] * len(new_users) + ["item"] * len(new_items), "id": new_users + new_items}
    )
    if view is not None:
        tables["item_means"] = item_means(dataset.raw_id_column("item", view.item), view.rating)
    else:
        tables["item_means"] = item_means(tables["train"]["item"], tables["train"]["rating"])
    tables["users"] = _catalogue(dataset, "user")
    tables["items"] = _catalogue(dataset, "item")
    cfg = split.config
    temporal = cfg.order == "time" or "temporal" in (cfg.user_split, cfg.item_split)
    return SplitTables(
        dataset=dataset.name,
        seed=seed,
        task_axis=axis,
        tables=tables,
        statistics=statistics(dataset, split, view),
        counts=counts,
        temporal=temporal,
        evaluated=tuple(evaluated),
    )


def protocol_record(protocol: Protocol, params: dict[str, Any]) -> dict[str, Any]:
    """The protocol as a manifest pins it: the suite's ``[protocol]`` table and what it builds.
    (A dataset card may fill in defaults per dataset; each split records its own config hash.)"""
    return {
        "name": protocol.config.name,
        "version": protocol.config.version,
        "label": protocol.label,
        "hash": protocol.config.fingerprint(),
        "params": params,
    }
