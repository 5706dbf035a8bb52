"""Checks on what a results store holds, for stores that may come from someone else.

SQLite keeps any value in any column and runs whatever triggers and views a file defines, so a
store is checked when it is opened (only the harness's own tables, see :func:`sqlite_own` and
:func:`columns_of`) and every value is checked as it is read back (:func:`check_numbers`,
:func:`stored_json`, :func:`stored_floats`): a damaged or planted value is one error line naming
its column, never a traceback or a silently wrong number.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import StoreError, excerpt
from bench.limits import load_json

SQLITE_TABLES = {"sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"}
JSON_LISTS = {"entities", "query_lengths", "users", "items"}
"""JSON columns that hold a list; every other JSON column holds an object."""
BLOBS = {"per_task", "ratings", "predicted"}
"""The columns that hold float64 values as bytes."""
NUMBERS = {
    "value": True, "n_tasks": False, "n_unscored": False, "seconds": False,
    "cpu_seconds": False, "tasks": False, "tasks_per_s": True, "peak_memory_bytes": False,
    "torch_threads": False, "load_1m": True, "cpus": False, "seed": False, "trials": False,
    "best_trial": False, "best_value": False, "validation_tasks": False, "number": False,
}  # fmt: skip
"""Numeric columns of the rows the store hands out, and whether each may be NULL."""


def columns_of(schema: str) -> dict[str, list[str]]:
    """Each table ``schema`` creates, with its column names in order."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(schema)
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: [r[1] for r in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}
    finally:
        conn.close()


def sqlite_own(kind: str, name: str, sql: str | None) -> bool:
    """A table or index SQLite makes itself (statistics, autoincrement, primary keys)."""
    if kind == "table":
        return name in SQLITE_TABLES
    return kind == "index" and sql is None and name.startswith("sqlite_autoindex_")


def stored_floats(value: object, where: str) -> np.ndarray:
    """A float64 column read back, checked: a store from elsewhere may hold anything there."""
    if not isinstance(value, bytes) or len(value) % 8:
        raise StoreError(f"{where} is not a list of float64 values; the store is damaged")
    return np.frombuffer(value, dtype="<f8")


def check_numbers(rows: list[dict[str, Any]], path: Path) -> None:
    """Every numeric column of ``rows`` holds a number (SQLite stores whatever it is given)."""
    for row in rows:
        for column, nullable in NUMBERS.items():
            value = row.get(column, 0)
            if isinstance(value, int | float) and not isinstance(value, bool):
                continue
            if value is None and nullable:
                continue
            raise StoreError(
                f"results store {path}: column {column} of cell {excerpt(row.get('cell_key'))} "
                f"holds {excerpt(value)}, not a number; the store is damaged"
            )


def stored_json(value: object, where: str, column: str = "") -> Any:
    """A JSON column read back, checked (syntax, nesting, and an object or a list as stored)."""
    if not isinstance(value, str | bytes):
        raise StoreError(f"{where} is not JSON text; the store is damaged")
    decoded = load_json(value, where, StoreError)
    kind = list if column in JSON_LISTS else dict
    if not isinstance(decoded, kind):
        raise StoreError(f"{where} is not a JSON {kind.__name__}; the store is damaged")
    return decoded
