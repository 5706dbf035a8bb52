"""The ranking candidates of an exported split: per scenario and support size, the full-ranking
candidate sets and the sampled negatives, built by the code the runner ranks with.

Tables (names under ``FOLDER``, ``SCENARIO/k-K/``), for suites whose ``ranking`` has ``full`` or
``sampled`` on the dataset:

- ``pool`` (``item``): the items any task of the scenario may rank (the whole catalogue, or the
  split's new items in ``item_cold`` and ``user_item_cold``);
- ``excluded`` (``task, item``): per task the pool items it does not rank (its training and
  support items). A task's full-ranking candidates are the pool minus its exclusions;
- ``sampled`` (``task, role, position, item``), with ``sampled`` ranking only: per task its
  relevant items (``role = relevant``: query items rated at or above the like threshold) and its
  sampled negatives (``role = negative``, in the order drawn). A task's sampled candidates are
  exactly its rows here.

The pool and the exclusions are the compact form of the full candidate sets: listing every
(task, candidate) pair would repeat the catalogue once per task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.data.dataset import Dataset
from bench.engine.splits import SplitCache
from bench.protocol import Split, SupportSize
from bench.protocol.candidates import CandidateSets, resolve_views
from bench.protocol.episodes import make_meta_train
from bench.protocol.manifest import SplitTables, k_folder

CANDIDATE_TABLES = ("pool", "excluded", "sampled")


class _Fixed:
    """The protocol stand-in a :class:`SplitCache` needs when its split is adopted, not drawn."""

    def split(self, dataset: Dataset, seed: int) -> Split:
        raise AssertionError("the split is adopted, never drawn here")


def ranking_settings(
    settings: dict[str, Any], dataset: Dataset, task_axis: str
) -> tuple[tuple[str, ...], int | None]:
    """The ranking views of ``dataset`` under a suite's resolved ``settings`` and the negatives
    per task (None without the sampled view)."""
    ranking = settings.get("ranking")
    views = resolve_views(
        tuple(ranking) if ranking is not None else None,
        synthetic=dataset.truth is not None,
        task_axis=task_axis,
    )
    negatives = int(settings["negatives"]) if "sampled" in views else None
    return views, negatives


def split_candidates(
    dataset: Dataset,
    split: Split,
    seed: int,
    evaluated: list[tuple[str, SupportSize]] | tuple[tuple[str, SupportSize], ...],
    negatives: int | None,
    cache: SplitCache | None = None,
) -> dict[tuple[str, SupportSize], CandidateSets]:
    """The candidate sets of every evaluated (scenario, k), as the runner builds them."""
    if cache is None:
        cache = SplitCache(_Fixed())  # type: ignore[arg-type]
        cache.adopt(dataset, seed, split, make_meta_train(dataset, split))
    return {
        (scenario, k): cache.candidates(dataset, seed, scenario, k, negatives)
        for scenario, k in evaluated
    }


def candidate_frames(
    dataset: Dataset, sets: CandidateSets, task_users: np.ndarray
) -> dict[str, pd.DataFrame]:
    """One scenario's ``pool``, ``excluded`` and (with negatives) ``sampled`` tables."""
    ids = dataset.raw_ids
    out = {"pool": pd.DataFrame({"item": ids("item", sets.pool)})}
    counts = [len(e) for e in sets.excluded]
    excluded = np.concatenate(sets.excluded) if counts else np.zeros(0, np.int64)
    out["excluded"] = pd.DataFrame(
        {
            "task": ids("user", np.repeat(task_users, counts)),
            "item": ids("item", excluded.astype(np.int64)),
        }
    )
    if sets.negatives is not None:
        tasks, roles, positions, items = [], [], [], []
        for t, user in enumerate(task_users):
            relevant = sets.relevant[t]
            row = sets.negatives[t]
            drawn = row[row >= 0]
            tasks += [user] * (len(relevant) + len(drawn))
            roles += ["relevant"] * len(relevant) + ["negative"] * len(drawn)
            positions += list(range(len(relevant))) + list(range(len(drawn)))
            items.append(np.concatenate([relevant, drawn]))
        joined = np.concatenate(items) if items else np.zeros(0, np.int64)
        out["sampled"] = pd.DataFrame(
            {
                "task": ids("user", np.asarray(tasks, dtype=np.int64)),
                "role": roles,
                "position": np.asarray(positions, dtype=np.int64),
                "item": ids("item", joined.astype(np.int64)),
            }
        )
    return out


def candidate_tables(
    dataset: Dataset, split: Split, tables: SplitTables, settings: dict[str, Any]
) -> dict[str, pd.DataFrame]:
    """The provider of :data:`bench.engine.split_export.EXTRA_TABLES` for ranking suites: every
    evaluated scenario's candidate tables, and their counts added to the split's counts."""
    views, negatives = ranking_settings(settings, dataset, split.config.task_axis)
    if not {"full", "sampled"} & set(views):
        return {}
    cache = SplitCache(_Fixed())  # type: ignore[arg-type]
    cache.adopt(dataset, tables.seed, split, make_meta_train(dataset, split))
    out: dict[str, pd.DataFrame] = {}
    for (scenario, k), sets in split_candidates(
        dataset, split, tables.seed, tables.evaluated, negatives, cache
    ).items():
        users = cache.tasks(dataset, tables.seed, scenario, k).entities.numpy()
        prefix = f"{scenario}/{k_folder(k)}"
        for name, frame in candidate_frames(dataset, sets, users).items():
            out[f"{prefix}/{name}"] = frame
        tables.counts[f"{prefix}/full_candidates"] = int(sets.n_candidates.sum())
        if sets.negatives is not None:
            tables.counts[f"{prefix}/negatives"] = int((sets.negatives >= 0).sum())
    return out
