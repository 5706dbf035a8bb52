"""Reading a store back: metric, timing, evaluation, prediction, tuning and trial rows, runs and
failures, each checked as data it did not write itself (see docs/threat-model.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.errors import StoreError, excerpt
from bench.results.store.opening import StoreConnection, run_died
from bench.results.stored import (
    check_numbers,
    stored_floats,
    stored_json,
)


class StoreReading(StoreConnection):
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
        """Every run in the order they started (start times are kept to the second: runs started
        in the same second in the order they were stored); one still marked running whose
        process has died shows as interrupted."""
        rows = self._query("SELECT * FROM runs ORDER BY started_at, rowid")
        for row in rows:
            if run_died(row):
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
