"""Load a results store into pandas DataFrames with explicit columns.

Every frame names a row by the same keys: ``dataset``, ``protocol``, ``scenario``, ``k``,
``learner``, ``device``, ``seed`` (and ``metric`` where there is one). ``dataset``, ``protocol`` and
``learner`` are display labels: the plain name, with ``~`` and six characters of the hash appended
only where one selection holds two versions of it (two configs of ``mf`` on one split, a dataset
whose content changed), so that different things are never averaged together. ``k`` is text
(``"1"``, ``"10"``, ``"all"``); :func:`k_order` sorts it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError, StoreError, excerpt
from bench.evaluation.metrics import DEFAULT_GAIN
from bench.limits import load_json
from bench.protocol import SCENARIOS
from bench.results.analysis.columns import (
    CELL_COLUMNS,
    COVERAGE_COLUMNS,
    METRIC_COLUMNS,
    PER_TASK_COLUMNS,
    PREDICTION_COLUMNS,
    TIMING_COLUMNS,
    TUNING_COLUMNS,
)
from bench.results.store import ResultStore

LOAD_MARGIN = 0.5
"""A phase ran *under load* when the 1-minute load average at its start exceeded the run's own
torch threads by at least this fraction of the machine's CPUs."""


def k_order(k: str) -> tuple[int, int]:
    """Sort key of a support size label: numbers in order, then ``all``."""
    return (1, 0) if k == "all" else (0, int(k))


def scenario_order(scenario: str) -> int:
    return SCENARIOS.index(scenario) if scenario in SCENARIOS else len(SCENARIOS)


@dataclass(frozen=True, eq=False)
class TaskValues:
    """One (cell, scenario, k, metric) of a store: its per-task values (NaN where the metric
    could not score the task), in the order of the evaluation's task entities (text), with each
    task's number of query ratings."""

    cell_key: str
    scenario: str
    k: str
    metric: str
    entities: list[str]
    values: np.ndarray
    lengths: np.ndarray


@dataclass(frozen=True, eq=False)
class Results:
    """The selected cells of a store as DataFrames.

    Attributes:
        path: the store read.
        cells: one row per cell (``CELL_COLUMNS``): what was fitted, on which split, by which run;
            ``config`` and ``split_summary`` hold dicts; ``like_threshold`` is the split's (it
            may come from the training ratings' median), ``ndcg_gain`` the suite's and
            ``tie_policy`` the one its ranking metrics were scored under.
        metrics: one row per (cell, scenario, k, metric) (``METRIC_COLUMNS``): ``value`` is the
            metric on that seed (``rmse``, ``mae`` and ``accuracy`` pooled over the query ratings,
            ``ndcg@k`` and ``auc`` averaged over the tasks they can score); ``n_tasks`` tasks were
            evaluated, ``n_scored`` of them scored and ``n_unscored`` not.
        timings: one row per timed phase (``TIMING_COLUMNS``): ``phase`` is ``fit`` (scenario and
            k ``*``) or ``adapt+predict``; ``under_load`` flags phases started under load.
        runs: one row per run: ``run_id``, ``suite``, ``started_at``, ``finished_at``, ``status``,
            ``config`` and ``provenance`` (dicts).
        failures: the failed cells of the selected runs, with tracebacks.
        tunings: one row per tuned cell (``TUNING_COLUMNS``): the search's ``objective`` at
            support size ``k`` on the split's validation tasks, its budget (``budget_trials``,
            ``budget_seconds``; None where unset), its ``space`` (field: the choices, or a range
            dict), the ``chosen`` config (field: value), the ``trials`` run, the ``best_trial``
            and its ``best_value``, the search's wall ``seconds`` and the number of
            ``validation_tasks``. Cells of learners run with their configs as set have no row.
        superseded: how many older cells were left out because a later cell recomputed them.

    ``task_values``, ``per_task`` and ``predictions`` are read from the store on first use.

    Stability: stable.
    """

    path: Path
    cells: pd.DataFrame
    metrics: pd.DataFrame
    timings: pd.DataFrame
    runs: pd.DataFrame
    failures: pd.DataFrame
    superseded: int = 0
    tunings: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({c: pd.Series(dtype=object) for c in TUNING_COLUMNS})
    )

    @property
    def cell_keys(self) -> list[str]:
        return list(self.cells["cell_key"])

    @cached_property
    def task_values(self) -> list[TaskValues]:
        """The stored per-task values, one entry per (cell, scenario, k, metric) in the store's
        order of metric rows; the entries of one evaluation share its list of entities."""
        with ResultStore(self.path, mode="read") as store:
            evaluations = store.evaluation_rows(self.cell_keys)
            rows = store.metric_rows(self.cell_keys, with_per_task=True)
        tasks = {(e["cell_key"], e["scenario"], e["k"]): e for e in evaluations}
        entities: dict[tuple[Any, Any, Any], list[str]] = {}
        found = []
        for row in rows:
            where = (row["cell_key"], row["scenario"], row["k"])
            evaluation = tasks.get(where)
            if evaluation is None:
                raise BenchError(
                    f"results store {self.path}: cell {excerpt(row['cell_key'])} has "
                    f"{excerpt(row['metric'])} values for {excerpt(row['scenario'])}, "
                    f"k={excerpt(row['k'])} but no tasks stored for it; the store is damaged"
                )
            if len(row["per_task"]) != len(evaluation["entities"]):
                raise BenchError(
                    f"results store {self.path}: cell {row['cell_key']} ({row['scenario']}, "
                    f"k={row['k']}, {row['metric']}) has {len(row['per_task'])} per-task values "
                    f"for {len(evaluation['entities'])} tasks"
                )
            if where not in entities:
                entities[where] = [str(e) for e in evaluation["entities"]]
            found.append(
                TaskValues(
                    row["cell_key"],
                    row["scenario"],
                    row["k"],
                    row["metric"],
                    entities[where],
                    np.asarray(row["per_task"], dtype=np.float64),
                    np.asarray(evaluation["query_lengths"], dtype=np.int64),
                )
            )
        return found

    @cached_property
    def per_task(self) -> pd.DataFrame:
        """One row per (cell, scenario, k, metric, task) (``PER_TASK_COLUMNS``).

        ``entity`` is the task's user (or item, for item-as-task protocols) in the dataset's own
        ids, as text; ``value`` is NaN where the metric cannot score the task; ``n_ratings`` is
        the task's number of query ratings, which weighs it in the pooled metrics: for example a
        seed's ``rmse`` is ``sqrt(sum(n_ratings * value**2) / sum(n_ratings))``.
        """
        found = self.task_values
        if not found:
            return self._with_cell_keys([], PER_TASK_COLUMNS)
        labels = {
            "cell_key": [t.cell_key for t in found],
            "scenario": [t.scenario for t in found],
            "k": [t.k for t in found],
            "metric": [t.metric for t in found],
        }
        # One frame built from whole columns: a frame per (cell, scenario, k, metric) made the
        # per-task table the slowest part of a report.
        counts = [len(t.values) for t in found]
        frame = pd.DataFrame(
            {
                **_repeated(labels, counts),
                "entity": pd.Series([e for t in found for e in t.entities], dtype=str),
                "value": np.concatenate([t.values for t in found]),
                "n_ratings": np.concatenate([t.lengths for t in found]),
            }
        )
        return self._with_cell_keys([frame], PER_TASK_COLUMNS)

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """One row per query rating of the cells that kept predictions (``PREDICTION_COLUMNS``).

        ``entity`` is the task entity, ``position`` the rating's place in the task's query,
        ``user`` and ``item`` the rated pair (dataset ids, as text), ``rating`` the true rating and
        ``prediction`` the learner's prediction; ``like_threshold``, ``rating_min`` and
        ``rating_max`` are the dataset's (accuracy and AUC need them).
        """
        with ResultStore(self.path, mode="read") as store:
            evaluations = store.evaluation_rows(self.cell_keys)
            rows = store.prediction_rows(self.cell_keys)
        tasks = {(e["cell_key"], e["scenario"], e["k"]): e for e in evaluations}
        labels: dict[str, list[str]] = {"cell_key": [], "scenario": [], "k": []}
        counts: list[int] = []
        texts: dict[str, list[str]] = {"entity": [], "user": [], "item": []}
        numbers: dict[str, list[np.ndarray]] = {"position": [], "rating": [], "prediction": []}
        for row in rows:
            evaluation = tasks[(row["cell_key"], row["scenario"], row["k"])]
            lengths = np.asarray(evaluation["query_lengths"], dtype=np.int64)
            starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
            for name, column in labels.items():
                column.append(row[name])
            counts.append(int(lengths.sum()))
            texts["entity"] += map(str, np.repeat(np.asarray(evaluation["entities"]), lengths))
            texts["user"] += map(str, row["users"])
            texts["item"] += map(str, row["items"])
            numbers["position"].append(np.arange(int(lengths.sum())) - starts)
            numbers["rating"].append(np.asarray(row["ratings"]))
            numbers["prediction"].append(np.asarray(row["predicted"]))
        if not counts:
            return self._with_cell_keys([], PREDICTION_COLUMNS)
        frame = pd.DataFrame(  # whole columns at once, as for the per-task frame
            {
                **_repeated(labels, counts),
                "entity": pd.Series(texts["entity"], dtype=str),
                "position": np.concatenate(numbers["position"]),
                "user": pd.Series(texts["user"], dtype=str),
                "item": pd.Series(texts["item"], dtype=str),
                "rating": np.concatenate(numbers["rating"]),
                "prediction": np.concatenate(numbers["prediction"]),
            }
        )
        return self._with_cell_keys([frame], PREDICTION_COLUMNS)

    def _with_cell_keys(self, parts: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
        cell_columns = [c for c in columns if c in self.cells.columns and c != "cell_key"]
        if not parts:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        frame = pd.concat(parts, ignore_index=True)
        cells = self.cells[["cell_key", *cell_columns]]
        return frame.merge(cells, on="cell_key", how="left", validate="many_to_one")[list(columns)]

    @property
    def coverage(self) -> pd.DataFrame:
        """One row per (dataset, protocol, seed, scenario) split (``COVERAGE_COLUMNS``).

        ``tasks`` were evaluated; ``left_out`` candidates had fewer than ``min_pool`` ratings in
        their pool; ``outside_activity_filter`` entities (protocol-wide) fell outside the
        protocol's activity filter and are in no scenario; ``validation_tasks`` were held out for
        the learners' own validation.
        """
        rows = []
        seen: set[tuple[Any, ...]] = set()
        for cell in self.cells.itertuples(index=False):
            split_key = (cell.dataset, cell.protocol, cell.seed)
            if split_key in seen:
                continue
            seen.add(split_key)
            summary = cell.split_summary
            axis = cell.task_axis
            outside = summary.get(f"{axis}s_outside_activity_filter", 0)
            for scenario, counts in summary.get("scenarios", {}).items():
                rows.append(
                    {
                        "dataset": cell.dataset,
                        "protocol": cell.protocol,
                        "seed": cell.seed,
                        "scenario": scenario,
                        "task_axis": axis,
                        "tasks": counts.get("tasks", 0),
                        "left_out": counts.get("ineligible", 0),
                        "min_pool": summary.get("min_pool"),
                        "outside_activity_filter": outside,
                        "validation_tasks": summary.get("validation_tasks", 0),
                        "audit": _audit_outcome(summary.get("audit")),
                    }
                )
        if not rows:
            return pd.DataFrame(columns=list(COVERAGE_COLUMNS))
        return pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))


def _audit_outcome(outcome: Any) -> str:
    """``passed``, ``failed: CHECK, ...``, or empty where the split was not audited."""
    if not isinstance(outcome, dict):
        return ""
    if outcome.get("passed"):
        return "passed"
    return "failed: " + ", ".join(outcome.get("failed", {}))


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.DataFrame(rows)


def _label(name: str, version: str, ambiguous: bool) -> str:
    return f"{name}~{version[:6]}" if ambiguous else name


def _labelled_cells(rows: list[dict[str, Any]]) -> pd.DataFrame:
    cells = _frame(rows, ["cell_key"])
    if cells.empty:
        return pd.DataFrame(columns=list(CELL_COLUMNS))
    cells = cells.rename(
        columns={"dataset": "dataset_name", "protocol": "protocol_name", "learner": "learner_name"}
    )
    hashes = cells.groupby("dataset_name")["dataset_hash"].transform("nunique")
    cells["dataset"] = [
        _label(n, h, a > 1)
        for n, h, a in zip(cells["dataset_name"], cells["dataset_hash"], hashes, strict=True)
    ]
    hashes = cells.groupby(["dataset", "protocol_name"])["protocol_hash"].transform("nunique")
    cells["protocol"] = [
        _label(n, h, a > 1)
        for n, h, a in zip(cells["protocol_name"], cells["protocol_hash"], hashes, strict=True)
    ]
    hashes = cells.groupby(["dataset", "protocol", "learner_name"])["config_hash"].transform(
        "nunique"
    )
    cells["learner"] = [
        _label(n, h, a > 1)
        for n, h, a in zip(cells["learner_name"], cells["config_hash"], hashes, strict=True)
    ]
    info = cells["dataset_info"]
    cells["task_axis"] = [i.get("task_axis", "user") for i in info]
    cells["like_threshold"] = [float(i.get("like_threshold", np.nan)) for i in info]
    cells["ndcg_gain"] = [i.get("ndcg_gain", DEFAULT_GAIN) for i in info]
    # Cells stored before tie policies existed were ranked with ties in query order.
    cells["tie_policy"] = [i.get("tie_policy", "query-order") for i in info]
    # Per "scenario/k" of a cold scenario: the share of tasks whose predictions did not move
    # when the support set was taken away.
    cells["support_ignored"] = [dict(i.get("support_ignored", {})) for i in info]
    cells["rating_min"] = [float(i.get("rating_scale", [np.nan])[0]) for i in info]
    cells["rating_max"] = [float(i.get("rating_scale", [np.nan, np.nan])[-1]) for i in info]
    return cells[list(CELL_COLUMNS)].reset_index(drop=True)


def _training_arm(row: dict[str, Any]) -> str:
    """The training-data arm a cell was fitted under ('' for the clean training data)."""
    info = row.get("dataset_info")
    arm = info.get("training_arm", "") if isinstance(info, dict) else ""
    return arm if isinstance(arm, str) else ""


def _latest(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Keep the latest cell of each (split, learner config, seed, device, training-data arm): an
    older one was computed by code since changed."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        identity = (
            row["dataset"],
            row["dataset_hash"],
            row["protocol"],
            row["protocol_hash"],
            row["learner"],
            row["config_hash"],
            row["seed"],
            row["device"],
            _training_arm(row),
        )
        kept = latest.get(identity)
        if kept is None or (row["finished_at"], row["cell_key"]) > (
            kept["finished_at"],
            kept["cell_key"],
        ):
            latest[identity] = row
    kept_rows = sorted(latest.values(), key=lambda r: r["cell_key"])
    return kept_rows, len(rows) - len(kept_rows)


def load_results(
    store: str | Path,
    *,
    run_ids: Iterable[str] | None = None,
    cell_keys: Iterable[str] | None = None,
    latest_only: bool = True,
) -> Results:
    """Read the cells of ``store`` into :class:`Results`.

    Args:
        store: path of a results store (it must exist).
        run_ids: only the cells these runs computed or reused.
        cell_keys: only these cells.
        latest_only: where several cells share a split, learner config, seed and device (the
            code changed between runs), keep the most recent one.

    Raises:
        BenchError: the store does not exist, is of another schema version, or a run id is
            unknown.

    Stability: stable.
    """
    path = Path(store)
    with ResultStore(path, mode="read") as st:
        runs = st.runs()
        keys: list[str] | None = None
        if run_ids is not None:
            wanted = list(run_ids)
            known = {r["run_id"] for r in runs}
            unknown = [r for r in wanted if r not in known]
            if unknown:
                recent = ", ".join(r["run_id"] for r in runs[-3:]) or "none"
                raise BenchError(
                    f"--run: no run {', '.join(map(repr, unknown))} in {path} (latest run ids: "
                    f"{recent}; `bench export --format json` lists them all)"
                )
            keys = st.run_cell_keys(wanted)
            runs = [r for r in runs if r["run_id"] in wanted]
        if cell_keys is not None:
            chosen = list(cell_keys)
            keys = chosen if keys is None else [k for k in keys if k in set(chosen)]
        cell_rows = st.cell_rows(keys)
        superseded = 0
        if latest_only:
            cell_rows, superseded = _latest(cell_rows)
        cells = _labelled_cells(cell_rows)
        selected = list(cells["cell_key"])
        metric_rows = st.metric_rows(selected) if selected else []
        timing_rows = st.timing_rows(selected) if selected else []
        tuning_rows = st.tuning_rows(selected) if selected else []
        failures = [
            f
            for f in st.failures()
            if run_ids is None or f["run_id"] in {r["run_id"] for r in runs}
        ]
    for run in runs:
        for column in ("config", "provenance"):
            where = f"results store {path}: column {column} of run {excerpt(run['run_id'])}"
            if not isinstance(run[column], str):
                raise StoreError(f"{where} is not JSON text; the store is damaged")
            run[column] = load_json(run[column], where, StoreError)
    results = Results(
        path=path,
        cells=cells,
        metrics=_metric_frame(metric_rows, cells),
        timings=_timing_frame(timing_rows, cells),
        runs=_frame(runs, ["run_id", "suite", "started_at", "status", "config", "provenance"]),
        failures=_frame(failures, ["run_id", "cell_key", "description", "error", "traceback"]),
        superseded=superseded,
        tunings=_tuning_frame(tuning_rows, cells),
    )
    return results


def _relabel(frame: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Replace the store's plain names by the cells' display labels."""
    labels = cells[["cell_key", "dataset", "protocol", "learner"]]
    frame = frame.drop(columns=["dataset", "protocol", "learner"])
    return frame.merge(labels, on="cell_key", how="left", validate="many_to_one")


def _metric_frame(rows: list[dict[str, Any]], cells: pd.DataFrame) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in METRIC_COLUMNS})
    frame = _relabel(pd.DataFrame(rows), cells)
    frame = frame.rename(columns={"n_tasks": "n_scored"})
    frame["n_tasks"] = frame["n_scored"] + frame["n_unscored"]
    return frame[list(METRIC_COLUMNS)]


def under_load(load_1m: pd.Series, threads: pd.Series, cpus: pd.Series) -> pd.Series:
    """Whether each phase started under load (see :data:`LOAD_MARGIN`)."""
    own = np.minimum(threads, cpus)
    return (load_1m - own) >= LOAD_MARGIN * cpus


def _timing_frame(rows: list[dict[str, Any]], cells: pd.DataFrame) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TIMING_COLUMNS})
    frame = _relabel(pd.DataFrame(rows), cells)
    frame["load_1m"] = frame["load_1m"].astype(float)
    frame["tasks_per_s"] = frame["tasks_per_s"].astype(float)
    frame["under_load"] = under_load(frame["load_1m"], frame["torch_threads"], frame["cpus"])
    return frame[list(TIMING_COLUMNS)]


def _tuning_frame(rows: list[dict[str, Any]], cells: pd.DataFrame) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TUNING_COLUMNS})
    frame = _relabel(pd.DataFrame(rows), cells)
    specs = frame["spec"]
    frame["objective"] = [spec["objective"] for spec in specs]
    frame["k"] = [str(spec["k"]) for spec in specs]
    # object columns: an unset budget stays None rather than turning the column into NaN floats
    frame["budget_trials"] = pd.Series([spec.get("trials") for spec in specs], dtype=object)
    frame["budget_seconds"] = pd.Series([spec.get("seconds") for spec in specs], dtype=object)
    frame["space"] = [spec["space"] for spec in specs]
    return frame[list(TUNING_COLUMNS)].reset_index(drop=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as JSON-ready dicts (NaN becomes None, numpy scalars plain)."""
    return [
        {column: _plain(value) for column, value in zip(frame.columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def _repeated(labels: dict[str, list[str]], counts: list[int]) -> dict[str, pd.Series]:
    """Text columns holding each label ``counts`` times, in order."""
    return {
        name: pd.Series(np.repeat(np.asarray(column, dtype=object), counts), dtype=str)
        for name, column in labels.items()
    }
