"""The results store: SQLite in WAL mode, one transaction per finished cell, unique keys per cell.

A *cell* is one fit of one learner on one split (dataset, protocol, seed, device): it is keyed by
everything that can change its results, including a fingerprint of the project's own code. Inside a
cell, each (scenario, k) evaluation is unique too, so re-running skips what is finished and never
writes duplicates.

Schema version 2 (the tables, one row each per):

- ``runs``: run (suite, resolved config, provenance); ``run_cells``: cell a run computed or reused;
- ``cells``: cell, with ``dataset_info`` (rating scale, like threshold, task axis) as JSON;
- ``evaluations``: (cell, scenario, k), with the task entities in the dataset's own ids (a JSON
  list of strings, in task order) and each task's number of query ratings (a JSON list);
- ``metrics``: (cell, scenario, k, metric): the aggregate value and ``per_task``, float64 values
  (NaN where a task cannot be scored) in the order of the evaluation's entities, so every per-task
  value is keyed by its task entity;
- ``predictions`` (only when the suite sets ``keep_predictions``): (cell, scenario, k): the rated
  users and items (JSON lists of raw ids), true ratings and predictions (float64), flattened in
  task order and, within a task, in query order;
- ``timings``: (cell, scenario, k, phase): wall and process CPU seconds, tasks, peak memory, torch
  threads, the 1-minute load average at the start, the machine's CPU count and host name;
- ``failures``: failed cell, with its traceback.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.errors import BenchError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, config TEXT NOT NULL, provenance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_cells (
    run_id TEXT NOT NULL, cell_key TEXT NOT NULL, PRIMARY KEY (run_id, cell_key)
);
CREATE TABLE IF NOT EXISTS cells (
    cell_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, dataset TEXT NOT NULL,
    dataset_hash TEXT NOT NULL, protocol TEXT NOT NULL, protocol_hash TEXT NOT NULL,
    learner TEXT NOT NULL, config_hash TEXT NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL,
    device TEXT NOT NULL, code_fingerprint TEXT NOT NULL, split_summary TEXT NOT NULL,
    dataset_info TEXT NOT NULL, finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key), scenario TEXT NOT NULL, k TEXT NOT NULL,
    n_tasks INTEGER NOT NULL, entities TEXT NOT NULL, query_lengths TEXT NOT NULL,
    PRIMARY KEY (cell_key, scenario, k)
);
CREATE TABLE IF NOT EXISTS metrics (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key), scenario TEXT NOT NULL, k TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, n_tasks INTEGER NOT NULL, n_unscored INTEGER NOT NULL,
    per_task BLOB NOT NULL, PRIMARY KEY (cell_key, scenario, k, metric)
);
CREATE TABLE IF NOT EXISTS predictions (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key), scenario TEXT NOT NULL, k TEXT NOT NULL,
    users TEXT NOT NULL, items TEXT NOT NULL, ratings BLOB NOT NULL, predicted BLOB NOT NULL,
    PRIMARY KEY (cell_key, scenario, k)
);
CREATE TABLE IF NOT EXISTS timings (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key), scenario TEXT NOT NULL, k TEXT NOT NULL,
    phase TEXT NOT NULL, seconds REAL NOT NULL, cpu_seconds REAL NOT NULL, tasks INTEGER NOT NULL,
    tasks_per_s REAL, peak_memory_bytes INTEGER NOT NULL, memory_kind TEXT NOT NULL,
    torch_threads INTEGER NOT NULL, load_1m REAL, cpus INTEGER NOT NULL, host TEXT NOT NULL,
    PRIMARY KEY (cell_key, scenario, k, phase)
);
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT NOT NULL, cell_key TEXT NOT NULL, description TEXT NOT NULL, error TEXT NOT NULL,
    traceback TEXT NOT NULL, at TEXT NOT NULL
);
"""

FIT_SCOPE = "*"  # scenario and k of timing rows that belong to the whole cell (the fit)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TimingRow(NamedTuple):
    """One timed phase of a cell, as stored."""

    scenario: str
    k: str
    phase: str
    seconds: float
    cpu_seconds: float
    tasks: int
    tasks_per_s: float
    peak_memory_bytes: int
    memory_kind: str
    torch_threads: int
    load_1m: float
    cpus: int
    host: str


@dataclass
class Evaluation:
    """The tasks of one (scenario, k): entities in the dataset's own ids, and query lengths."""

    scenario: str
    k: str
    entities: list[str]
    query_lengths: list[int]

    @property
    def n_tasks(self) -> int:
        return len(self.entities)


@dataclass
class Predictions:
    """Query ratings and predictions of one (scenario, k), flattened in task, then query, order."""

    scenario: str
    k: str
    users: list[str]
    items: list[str]
    ratings: np.ndarray
    predicted: np.ndarray


@dataclass
class CellRecord:
    """Everything one finished cell writes, in one transaction."""

    cell_key: str
    run_id: str
    dataset: str
    dataset_hash: str
    protocol: str
    protocol_hash: str
    learner: str
    config_hash: str
    config: dict[str, Any]
    seed: int
    device: str
    code_fingerprint: str
    split_summary: dict[str, Any]
    dataset_info: dict[str, Any] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=list)
    metrics: list[tuple[str, str, str, float, int, int, np.ndarray]] = field(default_factory=list)
    timings: list[TimingRow] = field(default_factory=list)
    predictions: list[Predictions] = field(default_factory=list)


def _floats(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def _from_floats(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8")


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30)
            self._check_schema_version()  # before anything writes to a store it may refuse
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BenchError(f"results store {self.path} cannot be opened: {exc}") from exc
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )

    def _check_schema_version(self) -> None:
        """Refuse a store written by another schema version, before touching its tables."""
        tables = {
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "meta" not in tables:
            if "cells" in tables:
                found = "1"  # stores before version 2 may lack the meta table's row or table
            else:
                return
        else:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                return
            found = str(row[0])
        if int(found) > SCHEMA_VERSION:
            self.conn.close()
            raise BenchError(
                f"results store {self.path} has schema version {found}, newer than this "
                f"version of the harness understands ({SCHEMA_VERSION}); upgrade the harness"
            )
        if int(found) < SCHEMA_VERSION:
            self.conn.close()
            raise BenchError(
                f"results store {self.path} has schema version {found}; this harness reads and "
                f"writes version {SCHEMA_VERSION}, which keys every per-task value by its task "
                "entity (version 1 kept them unkeyed, so they cannot be migrated). Its cells "
                "would be recomputed anyway, because the code changed: move the file aside and "
                "re-run the suite, or pass --store with a new path"
            )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.conn:
            yield self.conn

    # Runs -----------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, suite: str, config: dict[str, Any], provenance: dict[str, Any]
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running', ?, ?)",
                (
                    run_id,
                    suite,
                    now(),
                    json.dumps(config, default=str),
                    json.dumps(provenance, default=str),
                ),
            )

    def finish_run(self, run_id: str, status: str, cell_keys: Iterable[str] = ()) -> None:
        """Close a run and record the cells it computed or reused (``bench report --run``)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET finished_at=?, status=? WHERE run_id=?", (now(), status, run_id)
            )
            c.executemany(
                "INSERT OR IGNORE INTO run_cells VALUES (?, ?)",
                [(run_id, key) for key in cell_keys],
            )

    def record_failure(
        self, run_id: str, cell_key: str, description: str, error: str, traceback: str
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, cell_key, description, error, traceback, now()),
            )

    # Cells ----------------------------------------------------------------------------------

    def finished_evaluations(
        self, cell_key: str, with_predictions: bool = False
    ) -> set[tuple[str, str]]:
        """The (scenario, k) pairs stored for a cell; with ``with_predictions``, only those whose
        predictions are stored too."""
        table = "predictions" if with_predictions else "evaluations"
        rows = self.conn.execute(
            f"SELECT scenario, k FROM {table} WHERE cell_key=?", (cell_key,)
        ).fetchall()
        return {(s, k) for s, k in rows}

    def delete_cell(self, cell_key: str) -> None:
        with self.transaction() as c:
            for table in ("metrics", "predictions", "timings", "evaluations", "cells"):
                c.execute(f"DELETE FROM {table} WHERE cell_key=?", (cell_key,))

    def write_cell(self, record: CellRecord) -> None:
        """Write a finished cell atomically. The (scenario, k) pairs it carries replace stored
        ones (a cell recomputed to keep its predictions); the others are kept."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.cell_key,
                    record.run_id,
                    record.dataset,
                    record.dataset_hash,
                    record.protocol,
                    record.protocol_hash,
                    record.learner,
                    record.config_hash,
                    json.dumps(record.config, default=str),
                    record.seed,
                    record.device,
                    record.code_fingerprint,
                    json.dumps(record.split_summary, default=str),
                    json.dumps(record.dataset_info, default=str),
                    now(),
                ),
            )
            c.executemany(
                "INSERT OR REPLACE INTO evaluations VALUES (?,?,?,?,?,?)",
                [
                    (
                        record.cell_key,
                        e.scenario,
                        e.k,
                        e.n_tasks,
                        json.dumps(e.entities),
                        json.dumps(e.query_lengths),
                    )
                    for e in record.evaluations
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?,?,?)",
                [
                    (record.cell_key, s, k, m, None if np.isnan(v) else v, n, u, _floats(per_task))
                    for s, k, m, v, n, u, per_task in record.metrics
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        record.cell_key,
                        p.scenario,
                        p.k,
                        json.dumps(p.users),
                        json.dumps(p.items),
                        _floats(p.ratings),
                        _floats(p.predicted),
                    )
                    for p in record.predictions
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO timings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(record.cell_key, *t) for t in record.timings],
            )

    # Reading --------------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    @staticmethod
    def _where_cells(cell_keys: list[str] | None) -> tuple[str, list[str]]:
        if cell_keys is None:
            return "", []
        return f" WHERE c.cell_key IN ({','.join('?' * len(cell_keys))})", list(cell_keys)

    def metric_rows(
        self, cell_keys: list[str] | None = None, with_per_task: bool = False
    ) -> list[dict[str, Any]]:
        """Aggregate metric rows; ``per_task`` (float64, in the evaluation's entity order) on
        request."""
        where, params = self._where_cells(cell_keys)
        extra = ", m.per_task" if with_per_task else ""
        rows = self._query(
            "SELECT c.run_id, r.suite, c.dataset, c.protocol, m.scenario, m.k, c.learner, "
            "c.config_hash, c.seed, c.device, m.metric, m.value, m.n_tasks, m.n_unscored, "
            f"c.cell_key{extra} FROM metrics m JOIN cells c USING (cell_key) "
            f"JOIN runs r ON r.run_id = c.run_id{where} "
            "ORDER BY c.dataset, c.protocol, m.scenario, c.learner, m.k, c.seed, c.device, m.metric",
            params,
        )
        for row in rows:
            if row["value"] is None:
                row["value"] = float("nan")
            if with_per_task:
                row["per_task"] = _from_floats(row["per_task"])
        return rows

    def timing_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        where, params = self._where_cells(cell_keys)
        return self._query(
            "SELECT c.run_id, r.suite, c.dataset, c.protocol, t.scenario, t.k, c.learner, "
            "c.config_hash, c.seed, c.device, t.phase, t.seconds, t.cpu_seconds, t.tasks, "
            "t.tasks_per_s, t.peak_memory_bytes, t.memory_kind, t.torch_threads, t.load_1m, "
            "t.cpus, t.host, c.cell_key FROM timings t JOIN cells c USING (cell_key) "
            f"JOIN runs r ON r.run_id = c.run_id{where} "
            "ORDER BY c.dataset, c.protocol, c.learner, c.device, c.seed, t.phase, t.scenario, t.k",
            params,
        )

    def _decoded(
        self,
        sql: str,
        params: Iterable[Any],
        json_columns: tuple[str, ...] = (),
        float_columns: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        rows = self._query(sql, params)
        for row in rows:
            for column in json_columns:
                row[column] = json.loads(row[column])
            for column in float_columns:
                row[column] = _from_floats(row[column])
        return rows

    def cell_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        """One row per cell with its run's suite; JSON columns decoded."""
        where, params = self._where_cells(cell_keys)
        return self._decoded(
            "SELECT c.*, r.suite FROM cells c JOIN runs r ON r.run_id = c.run_id"
            f"{where} ORDER BY c.dataset, c.protocol, c.learner, c.seed, c.device, c.cell_key",
            params,
            json_columns=("config", "split_summary", "dataset_info"),
        )

    def evaluation_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        """One row per (cell, scenario, k) with its task entities and query lengths decoded."""
        where, params = self._where_cells(cell_keys)
        return self._decoded(
            "SELECT e.cell_key, e.scenario, e.k, e.n_tasks, e.entities, e.query_lengths "
            f"FROM evaluations e JOIN cells c USING (cell_key){where} "
            "ORDER BY e.cell_key, e.scenario, e.k",
            params,
            json_columns=("entities", "query_lengths"),
        )

    def prediction_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        """One row per (cell, scenario, k) that kept its predictions, arrays decoded."""
        where, params = self._where_cells(cell_keys)
        return self._decoded(
            "SELECT p.cell_key, p.scenario, p.k, p.users, p.items, p.ratings, p.predicted "
            f"FROM predictions p JOIN cells c USING (cell_key){where} "
            "ORDER BY p.cell_key, p.scenario, p.k",
            params,
            json_columns=("users", "items"),
            float_columns=("ratings", "predicted"),
        )

    def run_cell_keys(self, run_ids: Iterable[str]) -> list[str]:
        """The cells the given runs computed or reused."""
        ids = list(run_ids)
        rows = self.conn.execute(
            f"SELECT DISTINCT cell_key FROM run_cells WHERE run_id IN ({','.join('?' * len(ids))}) "
            "UNION SELECT cell_key FROM cells "
            f"WHERE run_id IN ({','.join('?' * len(ids))}) ORDER BY cell_key",
            ids + ids,
        ).fetchall()
        return [r[0] for r in rows]

    def runs(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM runs ORDER BY started_at")

    def failures(self, run_id: str | None = None) -> list[dict[str, Any]]:
        if run_id is None:
            return self._query("SELECT * FROM failures ORDER BY at")
        return self._query("SELECT * FROM failures WHERE run_id=? ORDER BY at", [run_id])

    def cell_summaries(self, cell_keys: list[str]) -> dict[str, dict[str, Any]]:
        where, params = self._where_cells(cell_keys)
        rows = self._query(f"SELECT c.cell_key, c.split_summary FROM cells c{where}", params)
        return {r["cell_key"]: json.loads(r["split_summary"]) for r in rows}
