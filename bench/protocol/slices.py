"""What a split shows of each task entity outside its query, for slicing results by it.

Two attributes per task entity (a user, or an item for item tasks), both computed from the
ratings the split holds of the entity outside its task's query: its training ratings plus its
task's support pool (the ratings it can show as support; for a warm task the pool lies inside
training, for a cold one outside). The query is never read, so a slice cannot sort tasks by the
very ratings they are scored on.

- ``activity``: how many such ratings the entity has;
- ``coherence``: their spread (population standard deviation; NaN without any rating). A user
  who rates everything alike has spread 0; a larger spread means less coherent ratings.

A new user of ``user_cold`` has no training rating, so its activity is the length of its held-out
history before the query; an existing user of ``item_cold`` counts its training ratings and its
ratings of the new items in its pool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.protocol.base import Split, TaskSet

ATTRIBUTES = ("activity", "coherence")


def entity_attributes(dataset: Dataset, split: Split, tasks: TaskSet) -> dict[str, np.ndarray]:
    """``activity`` and ``coherence`` of every task entity of ``tasks``, in task order."""
    side = dataset.user if tasks.axis == "user" else dataset.item
    size = int(dataset.n_users if tasks.axis == "user" else dataset.n_items)
    rating = np.asarray(dataset.rating, dtype=np.float64)
    train = np.asarray(split.train, dtype=np.int64)
    in_train = np.zeros(len(rating), dtype=bool)
    in_train[train] = True
    count = np.bincount(side[train], minlength=size).astype(np.float64)
    total = np.bincount(side[train], weights=rating[train], minlength=size)
    squares = np.bincount(side[train], weights=rating[train] ** 2, minlength=size)
    n = np.zeros(len(tasks))
    s = np.zeros(len(tasks))
    q = np.zeros(len(tasks))
    for t, entity in enumerate(tasks.entities):
        outside = tasks.pools[t][~in_train[tasks.pools[t]]]  # pool ratings training lacks
        n[t] = count[entity] + len(outside)
        s[t] = total[entity] + rating[outside].sum()
        q[t] = squares[entity] + (rating[outside] ** 2).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        spread = np.sqrt(np.maximum(q / n - mean**2, 0.0))
    return {"activity": n.astype(np.int64), "coherence": np.where(n > 0, spread, np.nan)}


def split_attributes(
    dataset: Dataset, split: Split, scenarios: list[str]
) -> dict[str, dict[str, Any]]:
    """Per scenario: the task entities in the dataset's own ids and their attributes, as plain
    lists (``coherence`` rounded to 6 decimals; None where undefined), ready to store as JSON."""
    out: dict[str, dict[str, Any]] = {}
    for scenario in scenarios:
        tasks = split.scenarios.get(scenario)
        if tasks is None:
            continue
        values = entity_attributes(dataset, split, tasks)
        coherence = [None if np.isnan(v) else round(float(v), 6) for v in values["coherence"]]
        out[scenario] = {
            "entities": [str(e) for e in dataset.raw_ids(tasks.axis, tasks.entities)],
            "activity": [int(v) for v in values["activity"]],
            "coherence": coherence,
        }
    return out
