"""Opening a results store: the checks every open makes (an intact SQLite file holding a results
store and nothing that could run), the schema created or upgraded, retries while another process
keeps the store locked, and the transactions every write goes through."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import numpy as np

from bench.errors import StoreError, excerpt, shorten
from bench.processes import is_gone
from bench.results.store.schema import MIGRATABLE_FROM, SCHEMA, SCHEMA_VERSION, TABLE_COLUMNS
from bench.results.stored import (
    BLOBS,
    sqlite_own,
)

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


def floats(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run_died(run: dict[str, Any]) -> bool:
    """A run marked running whose process no longer exists on this host."""
    if run["status"] != "running":
        return False
    try:
        owner = json.loads(run["provenance"])
    except (TypeError, ValueError, RecursionError):
        return False
    return isinstance(owner, dict) and is_gone(owner)


class StoreConnection:
    """A checked connection to the store at ``path`` (see :class:`bench.results.store.ResultStore`
    for the arguments)."""

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
        self.conn.executescript(SCHEMA)
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
            if kind == "table" and name in TABLE_COLUMNS:
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
        for table in sorted(tables & set(TABLE_COLUMNS)):
            columns = [r[1] for r in self.conn.execute(f'PRAGMA table_info("{table}")')]
            if columns != TABLE_COLUMNS[table]:
                raise StoreError(
                    f"{where}: table {table} has columns {', '.join(columns)}, not those of a "
                    f"results store ({', '.join(TABLE_COLUMNS[table])}); it is not opened"
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
            # Versions from MIGRATABLE_FROM on differ only by tables that SCHEMA has just
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

    def sibling(self, busy_wait_s: float | None = None) -> Self:
        """Another connection to this store, for another thread; the store was checked when this
        one was opened, so the sibling skips the checks."""
        other = object.__new__(type(self))
        other.path, other.mode, other.log = self.path, self.mode, self.log
        other.busy_wait_s = self.busy_wait_s if busy_wait_s is None else busy_wait_s
        other.conn = other._connect()
        return other

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.conn:
            yield self.conn

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
