"""The results store: SQLite in WAL mode, one transaction per finished cell, unique keys per cell.

A *cell* is one fit of one learner on one split (dataset, protocol, seed, device): it is keyed by
everything that can change its results, including a fingerprint of the project's own code. Inside a
cell, each (scenario, k) evaluation is unique too, so re-running skips what is finished and never
writes duplicates.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, config TEXT NOT NULL, provenance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, dataset TEXT NOT NULL,
    dataset_hash TEXT NOT NULL, protocol TEXT NOT NULL, protocol_hash TEXT NOT NULL,
    learner TEXT NOT NULL, config_hash TEXT NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL,
    device TEXT NOT NULL, code_fingerprint TEXT NOT NULL, split_summary TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key), scenario TEXT NOT NULL, k TEXT NOT NULL,
    n_tasks INTEGER NOT NULL, PRIMARY KEY (cell_key, scenario, k)
);
CREATE TABLE IF NOT EXISTS metrics (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key), scenario TEXT NOT NULL, k TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, n_tasks INTEGER NOT NULL, n_unscored INTEGER NOT NULL,
    per_task BLOB NOT NULL, PRIMARY KEY (cell_key, scenario, k, metric)
);
CREATE TABLE IF NOT EXISTS timings (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key), scenario TEXT NOT NULL, k TEXT NOT NULL,
    phase TEXT NOT NULL, seconds REAL NOT NULL, tasks INTEGER NOT NULL, tasks_per_s REAL,
    peak_memory_bytes INTEGER NOT NULL, memory_kind TEXT NOT NULL,
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
    evaluations: list[tuple[str, str, int]] = field(default_factory=list)
    metrics: list[tuple[str, str, str, float, int, int, np.ndarray]] = field(default_factory=list)
    timings: list[tuple[str, str, str, float, int, float, int, str]] = field(default_factory=list)


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30)
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
        elif int(row[0]) > SCHEMA_VERSION:
            raise BenchError(
                f"results store {self.path} has schema version {row[0]}, newer than this "
                f"version of the harness understands ({SCHEMA_VERSION}); upgrade the harness"
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

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET finished_at=?, status=? WHERE run_id=?", (now(), status, run_id)
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

    def finished_evaluations(self, cell_key: str) -> set[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT scenario, k FROM evaluations WHERE cell_key=?", (cell_key,)
        ).fetchall()
        return {(s, k) for s, k in rows}

    def delete_cell(self, cell_key: str) -> None:
        with self.transaction() as c:
            for table in ("metrics", "timings", "evaluations", "cells"):
                c.execute(f"DELETE FROM {table} WHERE cell_key=?", (cell_key,))

    def write_cell(self, record: CellRecord) -> None:
        """Write a finished cell atomically; (scenario, k) pairs already present are kept."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    now(),
                ),
            )
            c.executemany(
                "INSERT OR IGNORE INTO evaluations VALUES (?,?,?,?)",
                [(record.cell_key, *e) for e in record.evaluations],
            )
            c.executemany(
                "INSERT OR IGNORE INTO metrics VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        record.cell_key,
                        s,
                        k,
                        m,
                        None if np.isnan(v) else v,
                        n,
                        u,
                        np.asarray(per_task, dtype=np.float32).tobytes(),
                    )
                    for s, k, m, v, n, u, per_task in record.metrics
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO timings VALUES (?,?,?,?,?,?,?,?,?)",
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
        where, params = self._where_cells(cell_keys)
        extra = ", m.per_task" if with_per_task else ""
        rows = self._query(
            "SELECT c.run_id, r.suite, c.dataset, c.protocol, m.scenario, m.k, c.learner, "
            "c.config_hash, c.seed, c.device, m.metric, m.value, m.n_tasks, m.n_unscored"
            f"{extra} FROM metrics m JOIN cells c USING (cell_key) "
            f"JOIN runs r ON r.run_id = c.run_id{where} "
            "ORDER BY c.dataset, c.protocol, m.scenario, c.learner, m.k, c.seed, c.device, m.metric",
            params,
        )
        for row in rows:
            if row["value"] is None:
                row["value"] = float("nan")
            if with_per_task:
                row["per_task"] = np.frombuffer(row["per_task"], dtype=np.float32)
        return rows

    def timing_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        where, params = self._where_cells(cell_keys)
        return self._query(
            "SELECT c.run_id, r.suite, c.dataset, c.protocol, t.scenario, t.k, c.learner, "
            "c.config_hash, c.seed, c.device, t.phase, t.seconds, t.tasks, t.tasks_per_s, "
            "t.peak_memory_bytes, t.memory_kind FROM timings t JOIN cells c USING (cell_key) "
            f"JOIN runs r ON r.run_id = c.run_id{where} "
            "ORDER BY c.dataset, c.protocol, c.learner, c.device, c.seed, t.phase, t.scenario, t.k",
            params,
        )

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
