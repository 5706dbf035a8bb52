"""What a run writes: its record, each finished cell in one transaction (with its evaluations,
metrics, predictions, timings and tuning), the trials of searches, failures, and cells kept as
JSON beside a store that was too busy to take them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import numpy as np

from bench.errors import StoreError
from bench.results.records import CellRecord, TrialRecord
from bench.results.store.opening import StoreConnection, floats, now, run_died
from bench.results.stored import (
    stored_json,
)


class StoreWriting(StoreConnection):
    # Runs -----------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, suite: str, config: dict[str, Any], provenance: dict[str, Any]
    ) -> None:
        """Record a new run (its provenance names the process, see :mod:`bench.processes`), and
        mark earlier runs whose process has died as interrupted."""
        gone = [r["run_id"] for r in self._query(
            "SELECT run_id, status, provenance FROM runs WHERE status='running'"
        ) if run_died(r)]  # fmt: skip

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
                (record.cell_key, s, k, m, None if np.isnan(v) else v, n, u, floats(per_task))
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
                    floats(p.ratings),
                    floats(p.predicted),
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
        StoreWriting._insert_trials(c, record.cell_key, record.run_id, record.trials)
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
