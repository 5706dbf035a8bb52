"""The per-task values of every family laid out once for all the paired comparisons of a summary.

A family is one (dataset, protocol, scenario, k, device, metric); its learners are compared on
the tasks they share, matched by seed and task entity. The comparison with the reference, the
best marks and the floor marks each test learners of the same families, often the same pairs:
:class:`PairedFamilies` builds every family's table of values once and runs each paired test
once, for as long as the caller keeps it (one report, one export).

Stability: experimental.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.results.analysis.frames import Results, TaskValues
from bench.results.analysis.stats import PairedTest, paired_test

TABLE_KEYS = ("dataset", "protocol", "scenario")
FAMILY_KEYS = (*TABLE_KEYS, "k", "device", "metric")


@dataclass(frozen=True, eq=False)
class Family:
    """One family's per-task values side by side.

    Attributes:
        key: the family's ``FAMILY_KEYS`` and their values.
        learners: the learners that scored any of its tasks, by label, sorted.
        values: one row per learner, one column per (seed, task entity) sorted by both (NaN
            where a learner did not score the task): the transpose of the table
            ``DataFrame.pivot`` makes, in the same order, so that sums over a learner's values
            add up in the same order too.
    """

    key: dict[str, Any]
    learners: list[str]
    values: np.ndarray
    _columns: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._columns.update((name, i) for i, name in enumerate(self.learners))

    def column(self, learner: str) -> np.ndarray:
        """A learner's values over the family's tasks (NaN where it scored none)."""
        return self.values[self._columns[learner]]


class PairedFamilies:
    """Every family of ``results`` with its per-task table, and paired tests computed on first
    request and kept: ``test(i, a, b)`` is the test of ``a - b`` in the ``i``-th family."""

    def __init__(self, results: Results) -> None:
        self.families = _families(results)
        self._tests: dict[tuple[int, str, str], PairedTest] = {}

    def __iter__(self) -> Iterator[tuple[int, Family]]:
        return iter(enumerate(self.families))

    def test(self, index: int, a: str, b: str) -> PairedTest:
        key = (index, a, b)
        found = self._tests.get(key)
        if found is None:
            family = self.families[index]
            found = self._tests[key] = paired_test(family.column(a), family.column(b))
        return found


def row_groups(
    frame: pd.DataFrame, keys: Sequence[str]
) -> list[tuple[tuple[Any, ...], np.ndarray]]:
    """The groups of ``frame.groupby(keys, sort=False)`` as (key values, row positions), in the
    same order and with the same keys, without a frame per group."""
    codes = frame.groupby(list(keys), sort=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    order = order[codes[order] >= 0]  # rows with a missing key belong to no group
    if len(order) == 0:
        return []
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    firsts = frame[list(keys)].iloc[order[np.append(0, bounds)]]
    return list(
        zip(firsts.itertuples(index=False, name=None), np.split(order, bounds), strict=True)
    )


def _table(
    seed: np.ndarray, entity: np.ndarray, learner: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """One family's table from its rows sorted by seed, entity and learner (codes that sort as
    the names do): the learner codes present, and their values, one row per learner and one
    column per (seed, entity). None when a learner has two values for one task."""
    new_task = np.concatenate(([True], (seed[1:] != seed[:-1]) | (entity[1:] != entity[:-1])))
    if not (new_task[1:] | (learner[1:] != learner[:-1])).all():
        return None
    column = np.cumsum(new_task) - 1
    present, row = np.unique(learner, return_inverse=True)
    table = np.full((len(present), int(column[-1]) + 1), np.nan)
    table[row, column] = values
    return present, table


def _families(results: Results) -> list[Family]:
    """The families in the order they first occur in ``results.per_task``."""
    found = _families_from_values(results)
    return found if found is not None else _families_from_frame(results.per_task)


def _families_from_frame(per_task: pd.DataFrame) -> list[Family]:
    """The families of the per-task frame, grouped as ``groupby(FAMILY_KEYS, sort=False)``."""
    if per_task.empty:
        return []
    entity_codes, _ = pd.factorize(per_task["entity"], sort=True)
    learner_codes, learners = pd.factorize(per_task["learner"], sort=True)
    seeds = per_task["seed"].to_numpy()
    values = per_task["value"].to_numpy(dtype=np.float64)
    learner_names = [str(name) for name in learners]
    families = []
    for key_values, positions in row_groups(per_task, FAMILY_KEYS):
        # A family's rows sorted by seed, entity and learner (stable: ties keep frame order)
        rows = positions[
            np.lexsort((learner_codes[positions], entity_codes[positions], seeds[positions]))
        ]
        table = _table(seeds[rows], entity_codes[rows], learner_codes[rows], values[rows])
        if table is None:  # a learner with two values for one task: pandas says so
            per_task.iloc[rows].pivot(index=["seed", "entity"], columns="learner", values="value")
            raise ValueError(f"a learner has two values for one task in {key_values}")
        present, matrix = table
        key = dict(zip(FAMILY_KEYS, key_values, strict=True))
        families.append(Family(key, [learner_names[c] for c in present], matrix))
    return families


def _families_from_values(results: Results) -> list[Family] | None:
    """The families built from ``results.task_values`` and the cells, without the per-task frame
    (whose text columns alone take longer than all of this). None where the store holds what the
    frame would treat otherwise (a label that is not text, a cell key twice, text that is not
    valid Unicode, a task scored twice by one learner): the frame then decides."""
    found = results.task_values
    described: dict[str, tuple[str, str, str, str, int]] = {}
    columns = ["cell_key", "dataset", "protocol", "learner", "device", "seed"]
    for cell_key, *texts, seed in results.cells[columns].itertuples(index=False, name=None):
        if cell_key in described or not all(isinstance(t, str) for t in (cell_key, *texts)):
            return None
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            return None
        described[cell_key] = (*texts, int(seed))
    learner_names = sorted({cell[2] for cell in described.values()})
    learner_code = {name: i for i, name in enumerate(learner_names)}
    entity_code: dict[str, int] = {}
    coded: dict[int, np.ndarray] = {}  # each evaluation's entities as codes, by its list's id
    members: dict[tuple[str, ...], list[TaskValues]] = {}
    for stored in found:
        if len(stored.values) == 0:  # no row in the frame: no part in its families
            continue
        cell = described.get(stored.cell_key)
        labels = (stored.scenario, stored.k, stored.metric)
        if cell is None or not all(isinstance(t, str) for t in labels):
            return None
        dataset, protocol, _, device, _ = cell
        family = (dataset, protocol, stored.scenario, stored.k, device, stored.metric)
        members.setdefault(family, []).append(stored)
        if id(stored.entities) not in coded:
            codes = [entity_code.setdefault(e, len(entity_code)) for e in stored.entities]
            coded[id(stored.entities)] = np.asarray(codes, dtype=np.int64)
    names = list(entity_code)
    try:
        "".join(names).encode("utf-8")
    except UnicodeEncodeError:
        return None
    rank = np.empty(len(names), dtype=np.int64)  # entity code -> place in text order
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    families = []
    for where, parts in members.items():
        sizes = [len(p.values) for p in parts]
        seed = np.repeat([described[p.cell_key][4] for p in parts], sizes)
        learner = np.repeat([learner_code[described[p.cell_key][2]] for p in parts], sizes)
        entity = rank[np.concatenate([coded[id(p.entities)] for p in parts])]
        joined = np.concatenate([p.values for p in parts])
        order = np.lexsort((learner, entity, seed))
        table = _table(seed[order], entity[order], learner[order], joined[order])
        if table is None:
            return None
        present, matrix = table
        learners = [learner_names[c] for c in present]
        families.append(Family(dict(zip(FAMILY_KEYS, where, strict=True)), learners, matrix))
    return families
