"""The store's tables (schema version 3) and the versions this harness reads and upgrades."""

from __future__ import annotations

from bench.results.stored import columns_of

SCHEMA_VERSION = 3
MIGRATABLE_FROM = 2
"""The oldest schema version this harness upgrades in place (by adding tables)."""

SCHEMA = """
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


TABLE_COLUMNS = columns_of(SCHEMA)
