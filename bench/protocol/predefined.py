"""The ``predefined`` protocol: a dataset's own fold files (ML-100K's u1-u5).

Seed N runs fold N. Training is the fold's base file; the tasks are the entities of its test file,
their query is all their test ratings (so query lengths vary) and their support their training
ratings. Only ``warm`` exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.config import build_config
from bench.data.dataset import Dataset
from bench.errors import ConfigError, DataError
from bench.protocol.base import Protocol, ProtocolConfig, Split, TaskSet, describe_likes
from bench.seeding import Seeds


class PredefinedProtocol(Protocol):
    """Warm evaluation on a dataset's predefined train/test folds (``extras["folds"]``)."""

    scenarios = ("warm",)
    validation_tasks = False  # the folds are all there is: training is the whole base file

    def split(self, dataset: Dataset, seed: int) -> Split:
        cfg = self.config
        folds = dataset.extras.get("folds")
        if not folds:
            raise ConfigError(
                f"protocol 'predefined': dataset {dataset.name!r} has no predefined folds"
            )
        names = list(dataset.extras.get("fold_names") or folds)
        if not 0 <= seed < len(names):
            raise ConfigError(
                f"protocol 'predefined': seed {seed} selects a fold, but {dataset.name!r} has "
                f"{len(names)} ({', '.join(names)}); use seeds 0..{len(names) - 1}"
            )
        fold = folds[names[seed]]
        train = np.sort(np.asarray(fold["train"], dtype=np.int64))
        test = np.asarray(fold["test"], dtype=np.int64)
        if np.isin(test, train).any():
            raise DataError(f"fold {names[seed]}: test ratings also appear in its training file")
        by_user = cfg.task_axis == "user"
        task_of = dataset.user if by_user else dataset.item
        n_task = dataset.n_users if by_user else dataset.n_items
        rng = Seeds(seed).numpy("tasks")

        def grouped(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Group by task entity, in time order or in a seeded random order within each entity.
            tie = dataset.timestamp[rows] if cfg.order == "time" else rng.random(len(rows))
            ordered = rows[np.lexsort((tie, task_of[rows]))]
            return ordered, np.searchsorted(task_of[ordered], np.arange(n_task + 1))

        test_rows, test_starts = grouped(test)
        train_rows, train_starts = grouped(train)
        activity = np.bincount(task_of, minlength=n_task)
        active = activity >= cfg.min_ratings
        if cfg.max_ratings is not None:
            active &= activity <= cfg.max_ratings
        entities = np.flatnonzero((np.diff(test_starts) > 0) & active)
        if cfg.max_tasks is not None and len(entities) > cfg.max_tasks:
            entities = np.sort(rng.permutation(entities)[: cfg.max_tasks])
        pools = tuple(train_rows[train_starts[e] : train_starts[e + 1]] for e in entities)
        queries = tuple(test_rows[test_starts[e] : test_starts[e + 1]] for e in entities)
        warm = TaskSet("warm", cfg.task_axis, entities.astype(np.int64), pools, queries)
        empty = TaskSet("validation", cfg.task_axis, np.zeros(0, dtype=np.int64), (), ())
        lengths = np.diff(test_starts)[entities]
        summary: dict[str, Any] = {
            "fold": names[seed],
            "new_users": 0,
            "existing_users": dataset.n_users,
            "new_items": 0,
            "existing_items": dataset.n_items,
            "validation_tasks": 0,
            "min_pool": 0,
            "train_ratings": len(train),
            "query_lengths": {
                "min": int(lengths.min()) if len(lengths) else 0,
                "max": int(lengths.max()) if len(lengths) else 0,
                "single_rating_tasks": int((lengths == 1).sum()),
            },
            "scenarios": {"warm": {"tasks": len(entities), "ineligible": 0}},
        }
        threshold = describe_likes(dataset, train, summary)
        no_new_users = np.zeros(dataset.n_users, dtype=bool)
        no_new_items = np.zeros(dataset.n_items, dtype=bool)
        return Split(
            cfg, train, no_new_users, no_new_items, empty, {"warm": warm}, summary, threshold
        )


def predefined(overrides: dict[str, Any] | None = None) -> Protocol:
    """A dataset's own train/test folds (ML-100K's u1-u5); seed N runs fold N; warm only."""
    merged: dict[str, Any] = {
        "name": "predefined",
        "support_sizes": ("all",),
        "validation_fraction": 0.0,
        **(overrides or {}),
    }
    merged["support_sizes"] = tuple(merged["support_sizes"])
    return PredefinedProtocol(build_config(ProtocolConfig, merged, where="[protocol] (predefined)"))
