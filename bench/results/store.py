"""The results store: SQLite in WAL mode, one transaction per finished cell, unique keys per cell.

A *cell* is one fit of one learner on one split (dataset, protocol, seed, device): it is keyed by
everything that can change its results, including a fingerprint of the project's own code. Inside a
cell, each (scenario, k) evaluation is unique too, so re-running skips what is finished and never
writes duplicates.

Opening a store for writing checks everything that could stop a run later (the path, the folder,
write permission, that it is an intact SQLite database), so a problem is one :class:`StoreError`
before any cell runs. Every open (read or write) also checks that the file holds a results store
and nothing else that could run: no triggers, views, or tables and indexes of its own, since a store
may come from someone else (see docs/threat-model.md). A store that another process keeps busy is
retried with back-off; a finished cell that still cannot be written is kept as JSON in a folder
beside the store and written by the next run that computes the same cell.

Schema version 3 (the tables, one row each per):

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
- ``trials``: (cell, trial number) of a tuned cell's search: the values tried, the validation
  score, seconds, and an error where it failed; written with the cell (and, by the local
  executor, each as it finishes, so an interrupted search resumes);
- ``tunings``: tuned cell, written with it: the search (space, budget, objective), the chosen
  config, the best trial and its validation value. (Both tables are created when a store is
  opened for writing; a store without them reads as one whose cells were not tuned.)
- ``failures``: failed cell, with its traceback;
- ``claims``: cell a run is computing now: the owning run, its host, pid and process start time,
  and when its lease expires (see :mod:`bench.results.claims`). Version 3 added this table; a version-2
  store is migrated by creating it when opened for writing, and is read as it is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from bench.errors import StoreError, excerpt, shorten
from bench.processes import identity, is_gone
from bench.results.claims import Claim
from bench.results.records import (
    CellRecord,
    TrialRecord,
)
from bench.results.stored import (
    BLOBS,
    check_numbers,
    columns_of,
    sqlite_own,
    stored_floats,
    stored_json,
)

SCHEMA_VERSION = 3
MIGRATABLE_FROM = 2
"""The oldest schema version this harness upgrades in place (by adding tables)."""

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
CREATE TABLE IF NOT EXISTS trials (
    cell_key TEXT NOT NULL, number INTEGER NOT NULL, run_id TEXT NOT NULL, params TEXT NOT NULL,
    value REAL, seconds REAL NOT NULL, state TEXT NOT NULL, error TEXT, finished_at TEXT NOT NULL,
    PRIMARY KEY (cell_key, number)
);
CREATE TABLE IF NOT EXISTS tunings (
    cell_key TEXT PRIMARY KEY REFERENCES cells(cell_key), spec TEXT NOT NULL,
    chosen TEXT NOT NULL, trials INTEGER NOT NULL, best_trial INTEGER NOT NULL,
    best_value REAL NOT NULL, seconds REAL NOT NULL, validation_tasks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT NOT NULL, cell_key TEXT NOT NULL, description TEXT NOT NULL, error TEXT NOT NULL,
    traceback TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    cell_key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    process_started TEXT, claimed_at TEXT NOT NULL, expires_at REAL NOT NULL
);
"""


_TABLE_COLUMNS = columns_of(_SCHEMA)

BUSY_WAIT_S = 600.0
"""How long a write waits, retrying, for a store that another process keeps locked."""
_ATTEMPT_S = 1.0  # SQLite's own wait per attempt, between the retries' back-off
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
T = TypeVar("T")

DEFAULT_STORE = Path(".bench") / "results.sqlite"
"""Where runs are stored unless ``--store`` or ``BENCH_STORE`` says otherwise."""


def default_store() -> Path:
    return Path(os.environ.get("BENCH_STORE", DEFAULT_STORE))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _floats(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class ResultStore:
    """The SQLite results store at ``path``.

    Args:
        mode: ``"write"`` (runs) checks up front that the store can be written; ``"read"``
            (export, reports) opens an existing store read-only, so a read-only file still works.
        busy_wait_s: how long a write retries while another process holds the store's lock.
        log: where notes go (a busy store, cells kept from an earlier run); stderr by default.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        mode: Literal["write", "read"] = "write",
        busy_wait_s: float = BUSY_WAIT_S,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        self.path = Path(path)
        self.mode = mode
        self.busy_wait_s = busy_wait_s
        self.log = log
        self.conn = self._connect()
        try:
            self._retrying("opening the store", self._prepare)
        except sqlite3.Error as exc:
            self.conn.close()
            if not self._read_only_medium(exc):
                raise StoreError(self._explain(exc)) from exc
            # A WAL store on a read-only medium: SQLite cannot create the -shm file it reads
            # through, so the file is opened as immutable (nothing can change it there).
            self.conn = self._connect(immutable=True)
            try:
                self._retrying("opening the store", self._prepare)
            except sqlite3.Error as again:
                self.conn.close()
                raise StoreError(self._explain(again)) from again
        except BaseException:  # a refused store is closed too
            self.conn.close()
            raise

    def _read_only_medium(self, exc: sqlite3.Error) -> bool:
        """Whether a store opened for reading failed only because its folder cannot be written,
        with no write-ahead log holding changes that an immutable reading would miss."""
        if self.mode != "read":
            return False
        name = getattr(exc, "sqlite_errorname", "")
        text = str(exc)
        if not (
            name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY"))
            or "unable to open" in text
            or "readonly" in text
        ):
            return False
        wal = self.path.with_name(self.path.name + "-wal")
        return not wal.exists() or wal.stat().st_size == 0

    @property
    def kept_cells_dir(self) -> Path:
        """Where finished cells wait when the store could not take them."""
        return self.path.with_name(self.path.name + ".unsaved")

    def _explain(self, exc: BaseException) -> str:
        """One line on what is wrong with the store and what to do."""
        where = f"results store {self.path}"
        name = getattr(exc, "sqlite_errorname", "")
        text = shorten(str(exc))  # one line, whatever SQLite reports
        if name == "SQLITE_NOTADB" or "not a database" in text:
            return f"{where} is not a SQLite database; point --store at another file"
        if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
            return f"{where} is damaged ({text}); restore it from a copy or move it away"
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return (
                f"{where} is read-only: the file or its folder cannot be written; make them "
                "writable or point --store elsewhere"
            )
        if isinstance(exc, sqlite3.Error) and _is_busy(exc):
            return (
                f"{where} stayed locked by another process for {self.busy_wait_s:g} s; "
                "try again when that process has finished"
            )
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            return (
                f"{where} cannot be opened: its folder must exist and be writable "
                "(SQLite also creates the files -wal and -shm beside the store)"
            )
        if isinstance(exc, OSError):
            return f"{where}: {exc.strerror or exc}"
        return f"{where}: {text}"

    def _connect(self, *, immutable: bool = False) -> sqlite3.Connection:
        where = f"results store {self.path}"
        if self.path.is_dir():
            raise StoreError(
                f"{where} is a folder; give a file such as {self.path / 'results.sqlite'}"
            )
        if self.mode == "read":
            if not self.path.is_file():
                raise StoreError(f"{where} does not exist; run `python -m bench run` first")
            uri = f"{self.path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"{where}: its folder {self.path.parent} cannot be created "
                    f"({exc.strerror or exc})"
                ) from exc
            uri = self.path.resolve().as_uri()
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=_ATTEMPT_S)
            # Functions with side effects never run from the schema (views, triggers, defaults).
            conn.execute("PRAGMA trusted_schema=OFF")
            return conn
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from exc

    def _prepare(self) -> None:
        """Check the store is an intact results store of a known schema, creating it if new; in
        write mode prove that it can be written (and roll the proof back)."""
        self._check_objects()  # before anything reads through a view or writes under a trigger
        if self.mode == "read":
            self._check_schema_version()
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        problem = self.conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":
            raise sqlite3.DatabaseError(f"malformed: {problem}")
        self.conn.executescript(_SCHEMA)
        self._check_schema_version()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('write_check', ?)", (now(),))
        finally:
            self.conn.rollback()

    def _check_objects(self) -> None:
        """Refuse a file whose schema holds anything a results store does not: a SQLite file of
        another program (never converted into a store), or a store with triggers, views, extra
        tables or indexes, or tables of other columns. Triggers and views could rewrite what is
        written or change what is read, so they are refused before anything else runs."""
        rows = self.conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        if not rows:
            return  # a new, empty file
        where = f"results store {self.path}"
        tables = {name for kind, name, _, _ in rows if kind == "table"}
        if "meta" not in tables and "cells" not in tables:  # "cells" alone: a version-1 store
            shown = ", ".join(sorted(tables)[:8]) or "none"
            raise StoreError(
                f"{where} is a SQLite database but not a results store (tables: {shown}; no meta "
                "table); it is left untouched: point --store at another file"
            )
        odd: list[str] = []
        for kind, name, _, sql in sorted(rows):
            if kind == "table" and name in _TABLE_COLUMNS:
                if (sql or "").lstrip().upper().startswith("CREATE VIRTUAL"):
                    odd.append(f"virtual table {name}")
            elif not sqlite_own(kind, name, sql):
                odd.append(f"{kind} {name}")
        if odd:
            listed = ", ".join(excerpt(o, 60) for o in odd[:8])
            more = f" and {len(odd) - 8} more" if len(odd) > 8 else ""
            raise StoreError(
                f"{where} holds what no results store has ({listed}{more}); triggers and views "
                "could change its results, so it is not opened: use a store this harness wrote"
            )
        self._refuse_older_schema()  # a version-1 store has other columns: say so first
        for table in sorted(tables & set(_TABLE_COLUMNS)):
            columns = [r[1] for r in self.conn.execute(f'PRAGMA table_info("{table}")')]
            if columns != _TABLE_COLUMNS[table]:
                raise StoreError(
                    f"{where}: table {table} has columns {', '.join(columns)}, not those of a "
                    f"results store ({', '.join(_TABLE_COLUMNS[table])}); it is not opened"
                )

    def _schema_version(self, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit() and len(value) < 10:
            return int(value)
        raise StoreError(
            f"results store {self.path} has an invalid schema version {excerpt(value)}; "
            "it is damaged or not a results store"
        )

    def _refuse_older_schema(self) -> None:
        """A store older than :data:`MIGRATABLE_FROM` cannot be migrated: its per-task values
        carry no task ids. Say so, naming the file, and leave it untouched."""
        tables = {
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        found = None
        if "meta" in tables:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            found = None if row is None else self._schema_version(row[0])
        elif "cells" in tables:
            found = 1
        if found is not None and found < MIGRATABLE_FROM:
            raise StoreError(
                f"results store {self.path} has schema version {found}; this harness reads "
                f"versions {MIGRATABLE_FROM} to {SCHEMA_VERSION}, which key every per-task value by its task "
                "entity (version 1 kept them unkeyed, so they cannot be migrated). Its cells "
                "would be recomputed anyway, because the code changed: move the file aside and "
                "re-run the suite, or pass --store with a new path"
            )

    def _check_schema_version(self) -> None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            raise StoreError(
                f"results store {self.path} is a SQLite database but not a results store"
            ) from exc
        if row is None:
            if self.mode == "read":
                raise StoreError(f"results store {self.path} has no schema version")
            with self.conn:
                self.conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
        elif self._schema_version(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"results store {self.path} has schema version {row[0]}, newer than this "
                f"version of the harness understands ({SCHEMA_VERSION}); upgrade the harness"
            )
        elif self._schema_version(row[0]) < SCHEMA_VERSION and self.mode == "write":
            # Versions from MIGRATABLE_FROM on differ only by tables that _SCHEMA has just
            # created; a store opened for reading is left as it is.
            with self.conn:
                self.conn.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION,)
                )

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """``action()``, retried with growing pauses while another process holds the lock."""
        deadline = time.monotonic() + self.busy_wait_s
        pause = 0.05
        noted = False
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if self.conn.in_transaction:
                    self.conn.rollback()
                left = deadline - time.monotonic()
                if not _is_busy(exc) or left <= 0:
                    raise
                if not noted:
                    self.log(
                        f"results store {self.path} is busy (another process is writing to it); "
                        f"{what} is retried for up to {self.busy_wait_s:g} s"
                    )
                    noted = True
                time.sleep(min(pause, left))
                pause = min(pause * 2, 2.0)

    def _write(self, what: str, action: Callable[[sqlite3.Connection], object]) -> None:
        """One write transaction, retried while the store is busy; a failure is a StoreError."""

        def attempt() -> None:
            with self.conn:
                action(self.conn)

        try:
            self._retrying(what, attempt)
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from exc

    def sibling(self, busy_wait_s: float | None = None) -> ResultStore:
        """Another connection to this store, for another thread; the store was checked when this
        one was opened, so the sibling skips the checks."""
        other = object.__new__(ResultStore)
        other.path, other.mode, other.log = self.path, self.mode, self.log
        other.busy_wait_s = self.busy_wait_s if busy_wait_s is None else busy_wait_s
        other.conn = other._connect()
        return other

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
        """Record a new run (its provenance names the process, see :mod:`bench.processes`), and
        mark earlier runs whose process has died as interrupted."""
        gone = [r["run_id"] for r in self._query(
            "SELECT run_id, status, provenance FROM runs WHERE status='running'"
        ) if self._died(r)]  # fmt: skip

        def insert(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE runs SET status='interrupted' WHERE run_id=? AND status='running'",
                [(g,) for g in gone],
            )
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

        self._write("recording the run", insert)

    def finish_run(self, run_id: str, status: str, cell_keys: Iterable[str] = ()) -> None:
        """Record how a run ended and the cells it computed or reused (``bench report --run``).
        Best effort: if the store cannot take it, the run is shown as interrupted once its
        process has gone, and nothing else is lost."""

        def finish(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE runs SET finished_at=?, status=? WHERE run_id=?", (now(), status, run_id)
            )
            c.executemany(
                "INSERT OR IGNORE INTO run_cells VALUES (?, ?)", [(run_id, k) for k in cell_keys]
            )

        try:
            self._write("recording the run's end", finish)
        except StoreError as exc:
            self.log(f"could not record the end of run {run_id}: {exc}")

    def record_failure(
        self, run_id: str, cell_key: str, description: str, error: str, traceback: str
    ) -> None:
        self._write(
            "recording a failed cell",
            lambda c: c.execute(
                "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, cell_key, description, error, traceback, now()),
            ),
        )

    @staticmethod
    def _died(run: dict[str, Any]) -> bool:
        """A run marked running whose process no longer exists on this host."""
        if run["status"] != "running":
            return False
        try:
            owner = json.loads(run["provenance"])
        except (TypeError, ValueError, RecursionError):
            return False
        return isinstance(owner, dict) and is_gone(owner)

    # Cells ----------------------------------------------------------------------------------

    def finished_evaluations(
        self, cell_key: str, with_predictions: bool = False
    ) -> set[tuple[str, str]]:
        """The (scenario, k) pairs stored for a cell; with ``with_predictions``, only those whose
        predictions are stored too."""
        table = "predictions" if with_predictions else "evaluations"
        rows = self._query(f"SELECT scenario, k FROM {table} WHERE cell_key=?", (cell_key,))
        return {(r["scenario"], r["k"]) for r in rows}

    def delete_cell(self, cell_key: str) -> None:
        def delete(c: sqlite3.Connection) -> None:
            tables = ("metrics", "predictions", "timings", "evaluations", "tunings", "trials")
            for table in (*tables, "cells"):
                c.execute(f"DELETE FROM {table} WHERE cell_key=?", (cell_key,))

        self._write("removing a cell", delete)

    def write_cell(self, record: CellRecord) -> None:
        """Write a finished cell atomically. The (scenario, k) pairs it carries replace stored
        ones (a cell recomputed to keep its predictions); the others are kept.

        A busy store is retried for ``busy_wait_s``; if the cell still cannot be written it is
        kept beside the store (:attr:`kept_cells_dir`) for the next run to write, and the
        StoreError says so."""
        try:
            self._write("writing a finished cell", lambda c: self._insert_cell(c, record))
        except StoreError as exc:
            raise StoreError(f"{exc}; {self._keep(record)}") from exc

    def _keep(self, record: CellRecord) -> str:
        from bench.results import kept_cells

        target = self.kept_cells_dir / f"{record.cell_key}{kept_cells.SUFFIX}"
        if self.kept_cells_dir.is_symlink():
            return f"the finished cell could not be kept either ({self.kept_cells_dir} is a link)"
        try:
            self.kept_cells_dir.mkdir(exist_ok=True)
            incomplete = target.with_suffix(".partial")
            incomplete.unlink(missing_ok=True)  # never write through a link planted there
            incomplete.write_text(kept_cells.encode(record), encoding="utf-8")
            incomplete.replace(target)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            return f"the finished cell could not be kept either ({reason})"
        return f"the finished cell was kept in {target} and the next run writes it"

    def write_kept_cells(self, expected: Mapping[str, Mapping[str, Any]]) -> int:
        """Write the cells an earlier run kept beside the store, then remove their files.

        ``expected`` maps the cell keys of the current run to their identity fields (see
        :data:`bench.results.kept_cells.IDENTITY`): a kept cell is written only when it is one of
        them, field for field. Files that are not valid cells, or cells of another suite, are
        reported and left in place; files of the older pickle format are never read, only
        reported. Returns the number of cells written."""
        from bench.results import kept_cells

        folder = self.kept_cells_dir
        if folder.is_symlink():
            self.log(f"results store {self.path}: {folder} is a link, not a folder; it is ignored")
            return 0
        if not folder.is_dir():
            return 0
        where = f"results store {self.path}"
        written = 0
        for path in sorted(folder.iterdir()):
            if path.suffix == ".pickle":
                self.log(
                    f"{where}: kept cell {path} is in the old pickle format, which is never read "
                    "(it could run code); it is ignored: delete it"
                )
                continue
            if path.suffix != kept_cells.SUFFIX:
                continue
            try:
                if path.is_symlink() or not path.is_file():
                    raise kept_cells.KeptCellError("not a regular file")
                record = kept_cells.read(path)
            except (OSError, kept_cells.KeptCellError) as exc:
                self.log(f"{where}: kept cell {path} cannot be written: {exc}")
                continue
            why = kept_cells.mismatch(record, expected)
            if why is not None:
                self.log(f"{where}: kept cell {path} is not written: {why}; it is left in place")
                continue
            self._write("writing a kept cell", partial(self._insert_cell, record=record))
            path.unlink()
            written += 1
        if written:
            self.log(f"{where}: wrote {written} finished cell(s) kept by an earlier run")
        if not any(folder.iterdir()):
            folder.rmdir()
        return written

    def finished_trials(self, cell_key: str) -> list[TrialRecord]:
        """The stored trials of a cell's search, by trial number."""
        rows = self._query(
            "SELECT number, params, value, seconds, state, error FROM trials WHERE cell_key=? "
            "ORDER BY number",
            (cell_key,),
        )
        return [
            TrialRecord(
                r["number"],
                stored_json(r["params"], f"results store {self.path}: params of a trial"),
                r["value"],
                r["seconds"],
                r["state"],
                r["error"],
            )
            for r in rows
        ]

    def write_trial(self, cell_key: str, run_id: str, trial: TrialRecord) -> None:
        """Store one finished trial in its own transaction (a trial already stored is kept)."""
        self._write(
            "writing a finished trial", lambda c: self._insert_trials(c, cell_key, run_id, [trial])
        )

    @staticmethod
    def _insert_trials(
        c: sqlite3.Connection, cell_key: str, run_id: str, trials: list[TrialRecord]
    ) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO trials VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
                    cell_key,
                    t.number,
                    run_id,
                    json.dumps(t.params, sort_keys=True),
                    t.value,
                    t.seconds,
                    t.state,
                    t.error,
                    now(),
                )
                for t in trials
            ],
        )

    @staticmethod
    def _insert_cell(c: sqlite3.Connection, record: CellRecord) -> None:
        """The rows of one finished cell, inside the caller's transaction."""
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
        # The trials were stored one by one as they finished; writing them again here (kept
        # where present) makes sure a finished cell never lacks the search that chose its config.
        ResultStore._insert_trials(c, record.cell_key, record.run_id, record.trials)
        tuning = record.tuning
        if tuning is not None:
            c.execute(
                "INSERT OR REPLACE INTO tunings VALUES (?,?,?,?,?,?,?,?)",
                (
                    record.cell_key,
                    json.dumps(tuning.spec, sort_keys=True),
                    json.dumps(tuning.chosen, sort_keys=True),
                    tuning.trials,
                    tuning.best_trial,
                    tuning.best_value,
                    tuning.seconds,
                    tuning.validation_tasks,
                ),
            )

    # Claims ---------------------------------------------------------------------------------

    def claim(self, cell_key: str, owner: str, lease_s: float) -> Claim | None:
        """Claim a cell for run ``owner`` for ``lease_s`` seconds. Returns None when the claim is
        now ``owner``'s (new, its own already, or taken over from a dead one), else the live claim
        of another run. The check and the claim are one transaction, so two runs cannot both win."""
        me = identity()
        held: list[Claim] = []

        def take(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")  # take the write lock before reading the claim
            row = c.execute("SELECT * FROM claims WHERE cell_key=?", (cell_key,)).fetchone()
            if row is not None:
                found = Claim(*row)
                if found.owner != owner and found.is_live():
                    held.append(found)
                    return
            c.execute(
                "INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?,?)",
                (
                    cell_key,
                    owner,
                    me["host"],
                    me["pid"],
                    me["process_started"],
                    now(),
                    time.time() + lease_s,
                ),
            )

        self._write("claiming a cell", take)
        return held[0] if held else None

    def renew_claims(self, owner: str, cell_keys: list[str], lease_s: float) -> None:
        """Extend ``owner``'s claims on ``cell_keys`` to ``lease_s`` seconds from now."""
        if not cell_keys:
            return
        expires = time.time() + lease_s
        self._write(
            "renewing claims",
            lambda c: c.executemany(
                "UPDATE claims SET expires_at=? WHERE cell_key=? AND owner=?",
                [(expires, key, owner) for key in cell_keys],
            ),
        )

    def release_claims(self, owner: str, cell_keys: Iterable[str] | None = None) -> None:
        """Drop ``owner``'s claims on ``cell_keys`` (all of them when None)."""
        keys = None if cell_keys is None else list(cell_keys)

        def release(c: sqlite3.Connection) -> None:
            if keys is None:
                c.execute("DELETE FROM claims WHERE owner=?", (owner,))
            else:
                c.executemany(
                    "DELETE FROM claims WHERE cell_key=? AND owner=?", [(k, owner) for k in keys]
                )

        self._write("releasing claims", release)

    def claims(self) -> list[Claim]:
        """Every claim in the store, live or not."""
        rows = self._query("SELECT * FROM claims ORDER BY cell_key")
        return [Claim(**row) for row in rows]

    # Reading --------------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            cur = self.conn.execute(sql, tuple(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        try:
            rows = self._retrying("reading", read)
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from exc
        for row in rows:  # SQLite keeps any type in any column: bytes only where blobs belong
            for column, value in row.items():
                if isinstance(value, bytes) and column not in BLOBS:
                    raise StoreError(
                        f"results store {self.path}: column {column} holds bytes where text or "
                        "a number belongs; the store is damaged"
                    )
        return rows

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
        check_numbers(rows, self.path)
        for row in rows:
            if row["value"] is None:
                row["value"] = float("nan")
            if with_per_task:
                where = f"results store {self.path}: per_task of cell {excerpt(row['cell_key'])}"
                row["per_task"] = stored_floats(row["per_task"], where)
                tasks = (row["n_tasks"] or 0) + (row["n_unscored"] or 0)
                if len(row["per_task"]) != tasks:
                    raise StoreError(
                        f"{where} holds {len(row['per_task'])} values for {tasks} tasks; "
                        "the store is damaged"
                    )
        return rows

    def timing_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        where, params = self._where_cells(cell_keys)
        rows = self._query(
            "SELECT c.run_id, r.suite, c.dataset, c.protocol, t.scenario, t.k, c.learner, "
            "c.config_hash, c.seed, c.device, t.phase, t.seconds, t.cpu_seconds, t.tasks, "
            "t.tasks_per_s, t.peak_memory_bytes, t.memory_kind, t.torch_threads, t.load_1m, "
            "t.cpus, t.host, c.cell_key FROM timings t JOIN cells c USING (cell_key) "
            f"JOIN runs r ON r.run_id = c.run_id{where} "
            "ORDER BY c.dataset, c.protocol, c.learner, c.device, c.seed, t.phase, t.scenario, t.k",
            params,
        )
        check_numbers(rows, self.path)
        return rows

    def _decoded(
        self,
        sql: str,
        params: Iterable[Any],
        json_columns: tuple[str, ...] = (),
        float_columns: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        rows = self._query(sql, params)
        check_numbers(rows, self.path)
        for row in rows:
            if "cell_key" in row and not isinstance(row["cell_key"], str):
                raise StoreError(
                    f"results store {self.path} holds a cell key {excerpt(row['cell_key'])} that is "
                    "not text; the store is damaged"
                )
            for column in (*json_columns, *float_columns):
                where = f"results store {self.path}: column {column} of cell {excerpt(row.get('cell_key'))}"
                if column in json_columns:
                    row[column] = stored_json(row[column], where, column)
                else:
                    row[column] = stored_floats(row[column], where)
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
        rows = self._decoded(
            "SELECT e.cell_key, e.scenario, e.k, e.n_tasks, e.entities, e.query_lengths "
            f"FROM evaluations e JOIN cells c USING (cell_key){where} "
            "ORDER BY e.cell_key, e.scenario, e.k",
            params,
            json_columns=("entities", "query_lengths"),
        )
        for row in rows:
            if not len(row["entities"]) == len(row["query_lengths"]) == row["n_tasks"]:
                raise StoreError(
                    f"results store {self.path}: evaluation {row['scenario']}/{row['k']} of cell "
                    f"{excerpt(row['cell_key'])} lists {len(row['entities'])} entities for "
                    f"{row['n_tasks']} tasks; the store is damaged"
                )
        return rows

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
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT DISTINCT cell_key FROM run_cells WHERE run_id IN ({marks}) "
            f"UNION SELECT cell_key FROM cells WHERE run_id IN ({marks}) ORDER BY cell_key",
            ids + ids,
        )
        return [r["cell_key"] for r in rows]

    def runs(self) -> list[dict[str, Any]]:
        """Every run; one still marked running whose process has died shows as interrupted."""
        rows = self._query("SELECT * FROM runs ORDER BY started_at")
        for row in rows:
            if self._died(row):
                row["status"] = "interrupted"
        return rows

    def failures(self, run_id: str | None = None) -> list[dict[str, Any]]:
        if run_id is None:
            return self._query("SELECT * FROM failures ORDER BY at")
        return self._query("SELECT * FROM failures WHERE run_id=? ORDER BY at", [run_id])

    def _has_table(self, name: str) -> bool:
        rows = self._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", [name])
        return bool(rows)

    def tuning_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        """One row per tuned cell: its learner, seed and device, the search's spec and outcome."""
        if not self._has_table("tunings"):  # a store no tuned run has written to
            return []
        where, params = self._where_cells(cell_keys)
        return self._decoded(
            "SELECT c.cell_key, c.run_id, c.dataset, c.protocol, c.learner, c.config_hash, "
            "c.seed, c.device, t.spec, t.chosen, t.trials, t.best_trial, t.best_value, "
            "t.seconds, t.validation_tasks FROM tunings t JOIN cells c USING (cell_key)"
            f"{where} ORDER BY c.dataset, c.protocol, c.learner, c.seed, c.device",
            params,
            json_columns=("spec", "chosen"),
        )

    def trial_rows(self, cell_keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Every stored trial (of finished cells and of searches still under way)."""
        if not self._has_table("trials"):
            return []
        where, params = ("", []) if cell_keys is None else self._where_cells(cell_keys)
        return self._decoded(
            "SELECT cell_key, number, run_id, params, value, seconds, state, error, finished_at "
            f"FROM trials c{where} ORDER BY cell_key, number",
            params,
            json_columns=("params",),
        )

    def cell_summaries(self, cell_keys: list[str]) -> dict[str, dict[str, Any]]:
        where, params = self._where_cells(cell_keys)
        rows = self._query(f"SELECT c.cell_key, c.split_summary FROM cells c{where}", params)
        where = f"results store {self.path}: split_summary of cell"
        return {
            r["cell_key"]: stored_json(
                r["split_summary"], f"{where} {excerpt(r['cell_key'])}", "split_summary"
            )
            for r in rows
        }
