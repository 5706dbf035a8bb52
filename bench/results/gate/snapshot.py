"""What a check compares: per cell and metric the value of each seed and the per-task values
behind it, and per learner its timings; built from a results store's
:class:`~bench.results.analysis.Results` or read from a baseline file.

A cell is named by (dataset, protocol, scenario, k, learner, device, metric) with the plain
names; the protocol's version, the dataset's content hash and the protocol's parameter hash
travel beside the name, so that a changed split is reported as not comparable instead of as
one cell missing and another new. The learner's config hash is kept but is not part of the name:
a changed config is exactly what a check is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.results.analysis import Results, t_interval, timing_summary

PER_TASK_DIGITS = 6
"""Significant digits kept of per-task values: enough for the paired test, and both sides of a
comparison are rounded alike, so an unchanged task pairs with a zero difference."""

CellName = tuple[str, str, str, str, str, str, str]
"""(dataset, protocol, scenario, k, learner, device, metric)"""
TimingName = tuple[str, str, str, str, str]
"""(dataset, protocol, learner, device, phase)"""
TIMING_PHASES = ("fit", "predict")


def split_label(label: str) -> tuple[str, int]:
    """``cold-random@2`` -> (``cold-random``, 2)."""
    name, _, version = label.rpartition("@")
    if not name or not version.isdigit():
        return label, 0
    return name, int(version)


@dataclass(frozen=True)
class Origin:
    """What a cell's numbers were computed on."""

    protocol_version: int
    dataset_hash: str
    protocol_hash: str
    ndcg_gain: str
    config_hash: str
    tie_policy: str = "query-order"
    """How ranking metrics ordered tied predictions (before tie policies: query order)."""


@dataclass(frozen=True)
class CellValues:
    """One metric of one cell: its value on each seed and, per seed, the per-task values in the
    order of the snapshot's task list for that seed."""

    origin: Origin
    seeds: dict[int, float]
    n_tasks: int
    per_task: dict[int, np.ndarray]

    def mean(self, seeds: list[int]) -> float:
        return t_interval([self.seeds[s] for s in seeds]).mean


@dataclass(frozen=True)
class TimingValues:
    """A learner's phase: seconds per seed (the median over seeds of fit seconds; for
    adapt+predict, the seconds of every scenario and support size, summed, averaged over the
    seeds)."""

    origin: Origin
    seconds: float
    n_seeds: int
    host: str
    torch_threads: str
    under_load: int


@dataclass(frozen=True)
class Snapshot:
    """Cells, task lists and timings, with where they came from."""

    cells: dict[CellName, CellValues]
    timings: dict[TimingName, TimingValues]
    tasks: dict[str, list[str]]
    """Task entities per (dataset, protocol, scenario, k, seed), see :func:`task_list_key`."""
    suite: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    """The ``[check]`` table in force when the snapshot was taken."""

    def per_task(self, name: CellName, seed: int) -> pd.Series:
        """The per-task values of a cell's seed, indexed by task entity."""
        values = self.cells[name].per_task.get(seed)
        entities = self.tasks.get(task_list_key(name, seed))
        if values is None or entities is None:
            return pd.Series(dtype=np.float64)
        return pd.Series(values, index=pd.Index(entities, dtype=str), dtype=np.float64)

    def listed(self, name: CellName, seed: int) -> tuple[list[str], np.ndarray] | None:
        """The task entities of a cell's seed and its per-task values in their order (None
        where either is missing): :meth:`per_task` without building the series."""
        values = self.cells[name].per_task.get(seed)
        entities = self.tasks.get(task_list_key(name, seed))
        if values is None or entities is None:
            return None
        return entities, values

    def describe(self) -> str:
        """The datasets, protocols and learners it holds, for messages."""

        def names(position: int) -> str:
            return ", ".join(sorted({name[position] for name in self.cells})) or "none"

        return f"datasets {names(0)}; protocols {names(1)}; learners {names(4)}; devices {names(5)}"


def task_list_key(name: CellName, seed: int) -> str:
    dataset, protocol, scenario, k = name[:4]
    return f"{dataset}/{protocol}/{scenario}/k={k}/seed={seed}"


def rounded(values: np.ndarray, digits: int = PER_TASK_DIGITS) -> np.ndarray:
    """``values`` to ``digits`` significant digits (NaN stays NaN)."""
    return np.array([float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=np.float64)])


def _cell_origins(results: Results) -> pd.DataFrame:
    """One row per stored cell with its plain names and what it was computed on; refuses a
    selection where one name and seed would stand for two cells."""
    cells = results.cells.copy()
    parts = [split_label(label) for label in cells["protocol_name"]]
    cells["protocol_base"] = [name for name, _ in parts]
    cells["protocol_version"] = [version for _, version in parts]
    identity = ["dataset_name", "protocol_base", "learner_name", "device", "seed"]
    counts = cells.groupby(identity)["cell_key"].transform("count")
    if (counts > 1).any():
        row = cells[counts > 1].iloc[0]
        twins = cells[(cells[identity] == row[identity]).all(axis=1)]  # sharing its name
        variants = "; ".join(
            f"{r.protocol_name}, dataset {r.dataset_hash[:8]}, config {r.config_hash[:8]}, "
            f"run {r.run_id}"
            for r in twins.itertuples()
        )
        raise BenchError(
            f"results store {results.path} holds {len(twins)} versions of {row.learner_name} on "
            f"{row.dataset_name} {row.protocol_base} seed {row.seed} {row.device} ({variants}); "
            "choose one run with --run ID"
        )
    return cells.set_index("cell_key")


def _origin(cell: pd.Series) -> Origin:
    return Origin(
        protocol_version=int(cell["protocol_version"]),
        dataset_hash=str(cell["dataset_hash"]),
        protocol_hash=str(cell["protocol_hash"]),
        ndcg_gain=str(cell["ndcg_gain"]),
        config_hash=str(cell["config_hash"]),
        tie_policy=str(cell["tie_policy"]),
    )


def snapshot_of(
    results: Results, *, suite: str = "", check: dict[str, Any] | None = None
) -> Snapshot:
    """The snapshot of every cell in ``results``."""
    if results.cells.empty:
        raise BenchError(f"results store {results.path} holds no finished cells to compare")
    origins = _cell_origins(results)
    per_task = results.per_task
    groups = {
        key: group
        for key, group in per_task.groupby(["cell_key", "scenario", "k", "metric"], sort=False)
    }
    tasks: dict[str, list[str]] = {}
    values: dict[CellName, dict[str, Any]] = {}
    cell_rows: dict[str, pd.Series] = {}  # each cell's row, looked up once for all its metrics
    for row in results.metrics.itertuples(index=False):
        if row.cell_key not in cell_rows:
            cell_rows[row.cell_key] = origins.loc[row.cell_key]
        cell = cell_rows[row.cell_key]
        name: CellName = (
            str(cell.dataset_name),
            str(cell.protocol_base),
            str(row.scenario),
            str(row.k),
            str(cell.learner_name),
            str(row.device),
            str(row.metric),
        )
        seed = int(row.seed)
        entry = values.setdefault(
            name,
            {
                "origin": _origin(cell),
                "seeds": {},
                "n_tasks": 0,
                "per_task": {},
            },
        )
        entry["seeds"][seed] = float(row.value) if row.value is not None else float("nan")
        entry["n_tasks"] += int(row.n_tasks)
        group = groups.get((row.cell_key, row.scenario, row.k, row.metric))
        if group is None:
            continue
        entities = [str(e) for e in group["entity"]]
        listed = tasks.setdefault(task_list_key(name, seed), entities)
        if listed != entities:
            raise BenchError(
                f"results store {results.path}: cell {row.cell_key} ({row.scenario}, k={row.k}) "
                "lists other tasks than the cells it shares its split with"
            )
        entry["per_task"][seed] = rounded(group["value"].to_numpy(dtype=np.float64))
    cells = {name: CellValues(**entry) for name, entry in values.items()}
    provenance = _provenance(results)
    return Snapshot(
        cells=cells,
        timings=_timings(results, origins),
        tasks=tasks,
        suite=suite,
        provenance=provenance,
        check=dict(check or {}),
    )


def _timings(results: Results, origins: pd.DataFrame) -> dict[TimingName, TimingValues]:
    summary = timing_summary(results)
    if summary.empty:
        return {}
    # The summary names cells by their display labels; map them back to the plain names.
    cells = results.cells.set_index(["dataset", "protocol", "learner", "device"])
    chosen: dict[TimingName, tuple[int, TimingValues]] = {}
    for row in summary.itertuples(index=False):
        key = (row.dataset, row.protocol, row.learner, row.device)
        cell = origins.loc[cells.loc[[key], "cell_key"].iloc[0]]
        origin = _origin(cell)
        per_phase = {
            "fit": float(row.fit_s_median),
            "predict": float(row.predict_s) / row.n_fits if row.n_fits else float("nan"),
        }
        for phase, seconds in per_phase.items():
            name: TimingName = (
                str(cell.dataset_name),
                str(cell.protocol_base),
                str(cell.learner_name),
                str(row.device),
                phase,
            )
            timing = TimingValues(
                origin=origin,
                seconds=seconds,
                n_seeds=int(row.n_fits),
                host=str(row.host),
                torch_threads=str(row.torch_threads),
                under_load=int(row.n_under_load),
            )
            # Timed on several hosts: keep the host that timed the most seeds.
            if name not in chosen or chosen[name][0] < row.n_fits:
                chosen[name] = (int(row.n_fits), timing)
    return {name: timing for name, (_, timing) in chosen.items()}


def _provenance(results: Results) -> dict[str, Any]:
    runs = results.runs
    if runs.empty:
        return {}
    latest = runs.iloc[-1]
    provenance = dict(latest["provenance"])
    return {
        "runs": [str(r) for r in runs["run_id"]],
        "git": provenance.get("git"),
        "packages": provenance.get("packages"),
        "code_fingerprint": provenance.get("code_fingerprint"),
        "devices": provenance.get("devices"),
        "host": provenance.get("host"),
        "platform": provenance.get("platform"),
    }
