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

from bench.results.store.claiming import StoreClaims
from bench.results.store.opening import (
    BUSY_WAIT_S,
    DEFAULT_STORE,
    default_store,
    now,
)
from bench.results.store.reading import StoreReading
from bench.results.store.schema import MIGRATABLE_FROM, SCHEMA_VERSION
from bench.results.store.writing import StoreWriting

__all__ = [
    "BUSY_WAIT_S",
    "DEFAULT_STORE",
    "MIGRATABLE_FROM",
    "SCHEMA_VERSION",
    "ResultStore",
    "default_store",
    "now",
]


class ResultStore(StoreWriting, StoreClaims, StoreReading):
    """The SQLite results store at ``path``.

    Args:
        mode: ``"write"`` (runs) checks up front that the store can be written; ``"read"``
            (export, reports) opens an existing store read-only, so a read-only file still works.
        busy_wait_s: how long a write retries while another process holds the store's lock.
        log: where notes go (a busy store, cells kept from an earlier run); stderr by default.

    Opening and its checks live in :mod:`bench.results.store.opening`, the tables in
    :mod:`~bench.results.store.schema`, what runs write in :mod:`~bench.results.store.writing`,
    claims in :mod:`~bench.results.store.claiming` and the readers in
    :mod:`~bench.results.store.reading`.
    """
