"""The results store row by row, and the runner's resume logic on a grid small enough to run in a
second: what a re-run computes, what it reuses, and what it never duplicates."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from bench.data.cards import load_dataset
from bench.engine.cells import cell_key, ranking_key
from bench.engine.learner_keys import learner_code
from bench.engine.runner import run_suite
from bench.engine.suite import Suite, suite_from_dict
from bench.errors import BenchError
from bench.protocol import SCENARIOS, make_protocol
from bench.protocol.learner_registry import LEARNERS, make_learner
from bench.provenance import code_fingerprint
from bench.results.records import FIT_SCOPE, Evaluation, Predictions, TrialRecord, TuningRecord
from bench.results.store import SCHEMA_VERSION, ResultStore
from learners.baselines import GlobalMean

from real_formats import shipped_card, write_ml100k
from shared import NeverApplicable, record


@pytest.fixture()
def store(tmp_path: Path) -> ResultStore:
    s = ResultStore(tmp_path / "deep" / "folder" / "s.sqlite")
    s.start_run("run-1", "toy-suite", {"seeds": [3]}, {"git": {"commit": None}})
    return s


def test_a_written_cell_reads_back_row_for_row(store: ResultStore) -> None:
    store.write_cell(record())
    assert store.finished_evaluations("cell-a") == {("warm", "1"), ("user_cold", "all")}
    assert store.finished_evaluations("other") == set()
    rows = store.metric_rows(with_per_task=True)
    assert [(r["scenario"], r["k"], r["metric"]) for r in rows] == [
        ("user_cold", "all", "ndcg@3"),
        ("warm", "1", "rmse"),
    ]
    ndcg, rmse = rows
    assert rmse["value"] == 0.5 and rmse["n_tasks"] == 2 and rmse["n_unscored"] == 0
    assert rmse["per_task"].tolist() == [0.25, 0.75]
    assert math.isnan(ndcg["value"]) and ndcg["n_unscored"] == 3
    assert np.isnan(ndcg["per_task"]).all() and len(ndcg["per_task"]) == 3
    for key, value in {
        "run_id": "run-1",
        "suite": "toy-suite",
        "dataset": "toy",
        "protocol": "cold-random@1",
        "learner": "item-mean",
        "config_hash": "c" * 16,
        "seed": 3,
        "device": "cpu",
    }.items():
        assert rmse[key] == value, key
    assert "per_task" not in store.metric_rows()[0]
    # NaN is stored as SQL NULL, never as a number.
    raw = store.conn.execute("SELECT value FROM metrics WHERE metric='ndcg@3'").fetchone()
    assert raw == (None,)

    timings = store.timing_rows()
    assert [(t["phase"], t["scenario"], t["k"]) for t in timings] == [
        ("adapt+predict", "warm", "1"),
        ("fit", FIT_SCOPE, FIT_SCOPE),
    ]
    assert timings[0]["seconds"] == 0.25 and timings[0]["tasks"] == 2
    assert timings[0]["tasks_per_s"] == 8.0 and timings[0]["peak_memory_bytes"] == 2048
    assert timings[1]["memory_kind"] == "rss" and timings[1]["learner"] == "item-mean"
    summaries = store.cell_summaries(["cell-a"])
    assert summaries == {"cell-a": record().split_summary}
    cells = store.conn.execute(
        "SELECT config, dataset_hash, code_fingerprint FROM cells"
    ).fetchall()
    assert json.loads(cells[0][0]) == {"user_shrinkage": 5.0}
    assert cells[0][1:] == ("d" * 16, "f" * 16)


def test_writing_an_evaluation_again_replaces_it_and_adds_no_row(store: ResultStore) -> None:
    store.write_cell(record(value=0.5))
    later = record(value=9.0)
    later.evaluations.append(Evaluation("item_cold", "1", ["u6", "u7", "u8", "u9"], [1] * 4))
    later.metrics.append(("item_cold", "1", "rmse", 1.25, 4, 0, np.ones(4)))
    store.write_cell(later)
    rows = store.metric_rows()
    assert len(rows) == 3
    # An evaluation is rewritten whole (a run that now keeps predictions recomputes it).
    assert [r["value"] for r in rows if r["scenario"] == "warm"] == [9.0]
    assert [r["value"] for r in rows if r["scenario"] == "item_cold"] == [1.25]
    assert store.finished_evaluations("cell-a") == {
        ("warm", "1"),
        ("user_cold", "all"),
        ("item_cold", "1"),
    }
    counts = {
        table: store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("cells", "evaluations", "metrics", "timings")
    }
    assert counts == {"cells": 1, "evaluations": 3, "metrics": 3, "timings": 2}


def test_cells_can_be_selected_and_deleted(store: ResultStore) -> None:
    store.write_cell(record("cell-a"))
    store.write_cell(record("cell-b"))
    assert len(store.metric_rows(["cell-b"])) == 2
    assert len(store.timing_rows(["cell-a"])) == 2
    assert set(store.cell_summaries(["cell-b"])) == {"cell-b"}
    assert set(store.cell_summaries(["cell-a", "cell-b"])) == {"cell-a", "cell-b"}
    assert store.metric_rows([]) == []
    store.delete_cell("cell-a")
    for table in ("cells", "evaluations", "metrics", "timings"):
        keys = {k for (k,) in store.conn.execute(f"SELECT cell_key FROM {table}")}
        assert keys == {"cell-b"}, table
    assert store.finished_evaluations("cell-a") == set()


def test_every_reader_returns_the_cells_asked_for_and_no_other(store: ResultStore) -> None:
    store.start_run("run-2", "toy-suite", {"seeds": [4]}, {"host": "here"})
    for key, run_id in (("cell-a", "run-1"), ("cell-b", "run-1"), ("cell-c", "run-2")):
        rec = record(key, run_id)
        rec.predictions.append(
            Predictions("warm", "1", ["u1"], ["i1"], np.array([4.0]), np.array([3.5]))
        )
        store.write_cell(rec)
        store.write_trial(key, run_id, TrialRecord(0, {"rank": 2}, 0.9, 0.1, "complete"))
    readers = (store.cell_rows, store.evaluation_rows, store.prediction_rows, store.trial_rows)
    for reader in readers:
        assert {r["cell_key"] for r in reader(["cell-b"])} == {"cell-b"}, reader.__name__
        assert {r["cell_key"] for r in reader(["cell-a", "cell-c"])} == {"cell-a", "cell-c"}
        assert {r["cell_key"] for r in reader()} == {"cell-a", "cell-b", "cell-c"}
    assert store.run_cell_keys(["run-1", "run-2"]) == ["cell-a", "cell-b", "cell-c"]
    assert store.run_cell_keys(["run-2"]) == ["cell-c"]
    kept = store.prediction_rows(["cell-c"])[0]
    assert kept["users"] == ["u1"] and kept["items"] == ["i1"]
    assert kept["ratings"].tolist() == [4.0] and kept["predicted"].tolist() == [3.5]


def test_a_value_json_cannot_hold_is_stored_as_its_text(store: ResultStore) -> None:
    path = Path("data") / "ratings.csv"
    rec = record()
    rec.config = {"ratings": path, "rank": 4}
    rec.split_summary = {"new_users": np.int64(4), "source": path}
    rec.dataset_info = {"file": path}
    store.write_cell(rec)
    (row,) = store.cell_rows()
    assert row["config"] == {"ratings": str(path), "rank": 4}
    assert row["split_summary"] == {"new_users": "4", "source": str(path)}
    assert row["dataset_info"] == {"file": str(path)}


def test_a_runs_config_and_provenance_keep_what_json_cannot_hold_as_text(
    store: ResultStore,
) -> None:
    store.start_run("run-2", "toy-suite", {"data_dir": Path("data")}, {"cwd": Path("/srv")})
    run = {r["run_id"]: r for r in store.runs()}["run-2"]
    assert json.loads(run["config"]) == {"data_dir": "data"}
    assert json.loads(run["provenance"]) == {"cwd": str(Path("/srv"))}


def test_a_search_outcome_reads_back_with_its_keys_sorted(store: ResultStore) -> None:
    rec = record()
    space = {"rank": {"choices": [2, 4]}, "lr": {"low": 0.001, "high": 0.1, "log": True}}
    spec = {"trials": 8, "objective": "rmse", "k": 3, "space": space}
    rec.tuning = TuningRecord(spec, {"rank": 4, "lr": 0.01}, 8, 5, 0.91, 1.5, 12)
    store.write_cell(rec)
    (row,) = store.tuning_rows()
    # Stored with sorted keys, so reports list a config in one order whatever the search's.
    assert list(row["chosen"].items()) == [("lr", 0.01), ("rank", 4)]
    assert list(row["spec"]) == ["k", "objective", "space", "trials"]
    assert list(row["spec"]["space"]) == ["lr", "rank"] and row["spec"]["space"] == space
    assert (row["trials"], row["best_trial"], row["best_value"]) == (8, 5, 0.91)


def test_a_failed_trial_reads_back_with_its_error(store: ResultStore) -> None:
    failed = TrialRecord(1, {"rank": 64}, None, 0.25, "failed", "MemoryError: out of memory")
    complete = TrialRecord(0, {"rank": 2, "lr": 0.1}, 0.9, 0.1, "complete")
    store.write_trial("cell-a", "run-1", complete)
    store.write_trial("cell-a", "run-1", failed)
    first, again = store.finished_trials("cell-a")
    assert again == failed
    assert first == complete and list(first.params) == ["lr", "rank"]  # stored sorted
    assert store.finished_trials("cell-b") == []


def test_releasing_some_claims_keeps_the_others(store: ResultStore) -> None:
    for key in ("cell-a", "cell-b", "cell-c"):
        assert store.claim(key, "run-1", lease_s=60) is None
    assert store.claim("cell-d", "run-2", lease_s=60) is None
    store.release_claims("run-1", ["cell-a", "cell-c"])
    assert [(c.cell_key, c.owner) for c in store.claims()] == [
        ("cell-b", "run-1"),
        ("cell-d", "run-2"),
    ]
    store.release_claims("run-1", iter(["cell-b"]))  # any iterable, read once
    store.release_claims("run-2", [])
    assert [c.cell_key for c in store.claims()] == ["cell-d"]
    store.release_claims("run-2")
    assert store.claims() == []


def test_times_are_stored_in_utc_with_their_offset(store: ResultStore) -> None:
    store.write_cell(record())
    (run,) = store.runs()
    (cell,) = store.cell_rows()
    for stamp in (run["started_at"], cell["finished_at"]):
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0), stamp
        assert abs(datetime.now(UTC) - datetime.fromisoformat(stamp)) < timedelta(minutes=5)


def test_runs_and_failures_are_kept(store: ResultStore) -> None:
    store.start_run("run-2", "toy-suite", {"seeds": [1]}, {"host": "here"})
    store.record_failure("run-2", "cell-x", "toy / seed 1", "ValueError: bad", "Traceback ...")
    store.finish_run("run-1", "finished")
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs["run-1"]["status"] == "finished" and runs["run-1"]["finished_at"]
    assert runs["run-2"]["status"] == "running" and runs["run-2"]["finished_at"] is None
    assert json.loads(runs["run-2"]["config"]) == {"seeds": [1]}
    assert json.loads(runs["run-2"]["provenance"]) == {"host": "here"}
    (failure,) = store.failures("run-2")
    assert failure["error"] == "ValueError: bad" and failure["cell_key"] == "cell-x"
    assert failure["description"] == "toy / seed 1" and failure["traceback"] == "Traceback ..."
    assert store.failures("run-1") == [] and len(store.failures()) == 1


def test_a_store_reopens_with_its_rows_and_refuses_what_it_cannot_read(
    store: ResultStore, tmp_path: Path
) -> None:
    store.write_cell(record())
    path = store.path
    store.close()
    with ResultStore(path) as again:
        assert len(again.metric_rows()) == 2
        version = again.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(BenchError, match=rf"schema version {SCHEMA_VERSION + 1}, newer"):
        ResultStore(path)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BenchError, match=r"garbage\.sqlite is not a SQLite database"):
        ResultStore(garbage)


# The runner's resume logic -------------------------------------------------------------------


class FailingOnce(GlobalMean):
    """global-mean whose second fit in a run (its seed-1 cell) raises what ``failure`` says."""

    failure: ClassVar[type[BaseException] | None] = None
    fits: ClassVar[int] = 0

    def fit(self, train: Any, **kwargs: Any) -> None:
        FailingOnce.fits += 1
        if self.failure is not None and FailingOnce.fits == 2:
            raise self.failure("stopped on purpose")
        super().fit(train, **kwargs)


def failing(failure: type[BaseException] | None) -> None:
    FailingOnce.failure, FailingOnce.fits = failure, 0


if "test-failing-once" not in LEARNERS:
    LEARNERS.register("test-failing-once", FailingOnce)


def tiny(**changes: Any) -> Suite:
    raw: dict[str, Any] = {
        "name": "tiny",
        "learners": ["global-mean", "test-failing-once"],
        "seeds": 2,
        "protocol": {"name": "cold-random", "support_sizes": [1, 3], "query_size": 4},
        "dataset": {"synthetic": {"n_users": 60, "n_items": 40, "min_ratings_per_user": 10}},
        # The resume logic is counted cell by cell: no floor learners beside these.
        "floors": False,
    }
    raw.update(changes)
    return suite_from_dict(raw, "test")


def rows_of(store: ResultStore) -> list[tuple[Any, ...]]:
    return sorted(
        (r["learner"], r["seed"], r["scenario"], r["k"], r["metric"], r["value"])
        for r in store.metric_rows()
        if not math.isnan(r["value"])
    )


def test_a_rerun_reuses_every_cell_and_fresh_recomputes_them(tmp_path: Path) -> None:
    failing(None)
    with ResultStore(tmp_path / "s.sqlite") as store:
        first = run_suite(tiny(), store, progress=False)
        assert (first.computed, first.reused, first.exit_code) == (4, 0, 0)
        reference = rows_of(store)
        again = run_suite(tiny(), store, progress=False)
        assert (again.computed, again.reused) == (0, 4)
        assert again.cell_keys == first.cell_keys
        fresh = run_suite(tiny(), store, fresh=True, progress=False)
        assert (fresh.computed, fresh.reused) == (4, 0)
        assert rows_of(store) == reference
        statuses = [r["status"] for r in store.runs()]
        assert statuses == ["finished", "finished", "finished"]


def test_a_new_scenario_computes_only_what_is_missing(tmp_path: Path) -> None:
    failing(None)
    with ResultStore(tmp_path / "s.sqlite") as store:
        run_suite(tiny(scenarios=["warm"]), store, progress=False)
        warm = rows_of(store)
        assert {r[2] for r in warm} == {"warm"}
        warm_times = warm_timings(store)
        wider = run_suite(tiny(scenarios=["warm", "user_cold"]), store, progress=False)
        assert (wider.computed, wider.reused) == (4, 0)
        rows = rows_of(store)
        assert [r for r in rows if r[2] == "warm"] == warm  # not duplicated
        assert warm_timings(store) == warm_times  # nor recomputed: measured once
        assert {r[2] for r in rows} == {"warm", "user_cold"}
        for key in wider.cell_keys:
            assert store.finished_evaluations(key) == {
                (s, k) for s in ("warm", "user_cold") for k in ("1", "3")
            }
        narrower = run_suite(tiny(scenarios=["user_cold"]), store, progress=False)
        assert (narrower.computed, narrower.reused) == (0, 4)
        fresh = run_suite(tiny(scenarios=["user_cold"]), store, fresh=True, progress=False)
        assert (fresh.computed, fresh.reused) == (4, 0)
        assert {r[2] for r in rows_of(store)} == {"user_cold"}  # a fresh cell replaces the old


def warm_timings(store: ResultStore) -> list[tuple[Any, ...]]:
    rows = store.timing_rows()
    return sorted(
        (r["cell_key"], r["k"], r["phase"], r["seconds"]) for r in rows if r["scenario"] == "warm"
    )


def test_an_interrupted_run_resumes_with_the_missing_cells_only(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    failing(None)
    with ResultStore(tmp_path / "reference.sqlite") as store:
        run_suite(tiny(), store, progress=False)
        reference = rows_of(store)
    failing(KeyboardInterrupt)
    try:
        with ResultStore(path) as store, pytest.raises(KeyboardInterrupt):
            run_suite(tiny(), store, progress=False)
        with ResultStore(path) as store:
            assert store.runs()[-1]["status"] == "interrupted"
            done = {r[:2] for r in rows_of(store)}
            assert ("test-failing-once", 1) not in done and ("global-mean", 0) in done
    finally:
        failing(None)
    with ResultStore(path) as store:
        resumed = run_suite(tiny(), store, progress=False)
        assert resumed.computed + resumed.reused == 4
        assert resumed.computed == 4 - len(done)
        assert rows_of(store) == reference


def test_a_failed_cell_is_not_finished_and_a_rerun_computes_it(tmp_path: Path) -> None:
    failing(RuntimeError)
    try:
        with ResultStore(tmp_path / "s.sqlite") as store:
            failed = run_suite(tiny(), store, progress=False, log=lambda _: None)
            assert failed.exit_code == 1 and failed.computed == 3
            assert store.runs()[-1]["status"] == "failed"
            failing(None)
            rerun = run_suite(tiny(), store, progress=False)
            assert (rerun.computed, rerun.reused, rerun.exit_code) == (1, 3, 0)
            assert store.runs()[-1]["status"] == "finished"
            assert {(r[0], r[1]) for r in rows_of(store)} == {
                (learner, seed)
                for learner in ("global-mean", "test-failing-once")
                for seed in (0, 1)
            }
    finally:
        failing(None)


def test_the_cells_after_a_failed_one_still_run(tmp_path: Path) -> None:
    failing(RuntimeError)  # the failing learner's seed-1 cell comes before global-mean's cells
    try:
        with ResultStore(tmp_path / "s.sqlite") as store:
            suite = tiny(learners=["test-failing-once", "global-mean"])
            outcome = run_suite(suite, store, progress=False, log=lambda _: None)
            assert (outcome.computed, len(outcome.failed)) == (3, 1)
            assert {(r[0], r[1]) for r in rows_of(store)} == {
                ("test-failing-once", 0),
                ("global-mean", 0),
                ("global-mean", 1),
            }
    finally:
        failing(None)


def test_a_rerun_that_keeps_predictions_recomputes_cells_stored_without_them(
    tmp_path: Path,
) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        plain = run_suite(tiny(learners=["global-mean"], seeds=1), store, progress=False)
        assert plain.computed == 1 and store.prediction_rows() == []
        suite = tiny(learners=["global-mean"], seeds=1, keep_predictions=True)
        kept = run_suite(suite, store, progress=False)
        assert (kept.computed, kept.reused) == (1, 0)
        assert len(store.prediction_rows()) > 0
        again = run_suite(suite, store, progress=False)
        assert (again.computed, again.reused) == (0, 1)


def test_a_run_lists_the_cells_it_computed_or_reused(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        first = run_suite(tiny(learners=["global-mean"]), store, progress=False)
        second = run_suite(tiny(learners=["global-mean"]), store, progress=False)
        assert (first.computed, second.reused) == (2, 2)
        for outcome in (first, second):
            assert store.run_cell_keys([outcome.run_id]) == sorted(first.cell_keys)


if "test-never" not in LEARNERS:
    LEARNERS.register("test-never", NeverApplicable)


def test_what_a_run_reports_about_skipped_and_failed_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing(RuntimeError)
    messages: list[str] = []
    try:
        with ResultStore(tmp_path / "s.sqlite") as store:
            suite = tiny(learners=["test-never", "test-failing-once"])
            outcome = run_suite(suite, store, progress=False, log=messages.append)
            rows = store.metric_rows()
            failures = store.failures(outcome.run_id)
    finally:
        failing(None)
    protocol = "cold-random@2"
    assert outcome.skipped == [
        (f"synthetic / {protocol} / test-never / seed {s} / cpu", "nothing to learn from synthetic")
        for s in (0, 1)
    ]
    description = f"synthetic / {protocol} / test-failing-once / seed 1 / cpu"
    assert outcome.failed == [(description, "RuntimeError: stopped on purpose")]
    assert messages == [f"cell failed: {description}: RuntimeError: stopped on purpose"]
    assert len(outcome.cell_keys) == 2 and outcome.computed == 1
    assert {r["learner"] for r in rows} == {"test-failing-once"}
    (failure,) = failures
    assert failure["cell_key"] == outcome.cell_keys[1] and failure["description"] == description
    assert failure["error"] == "RuntimeError: stopped on purpose"
    assert "Traceback" in failure["traceback"] and "stopped on purpose" in failure["traceback"]
    assert capsys.readouterr().err == ""  # no progress bar when asked for none


class SlowFit(GlobalMean):
    """global-mean whose fit outlasts the progress bar's redraw interval (0.1 s)."""

    def fit(self, train: Any, **kwargs: Any) -> None:
        time.sleep(0.15)
        super().fit(train, **kwargs)


if "test-slow-fit" not in LEARNERS:
    LEARNERS.register("test-slow-fit", SlowFit)


def test_the_progress_bar_names_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        run_suite(tiny(learners=["test-slow-fit"], seeds=2), store, progress=True)
    err = capsys.readouterr().err
    assert "cells:" in err and "test-slow-fit seed 0 cpu" in err
    assert "cell/s" in err or "s/cell" in err  # the bar counts cells
    # The bar names the cell being computed, counts it out of all of them once it is written,
    # and still names it then.
    lines = err.split("\r")
    for done in ("0/2 [", "1/2 ["):
        assert any(done in line and "test-slow-fit seed 0 cpu" in line for line in lines)
    assert err.endswith("\r") and err.rsplit("\r", 2)[1].strip() == ""  # wiped when done


def test_a_suite_with_nothing_to_run_says_why(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(BenchError) as info:
            run_suite(replace(tiny(), learners=()), store, progress=False)
        assert str(info.value) == "test: no learners: the grid would be empty"
        assert store.metric_rows() == []


def test_a_run_records_what_it_ran(tmp_path: Path) -> None:
    failing(None)
    suite = tiny(learners=["global-mean"], seeds=[3])
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite, store, progress=False)
        (run,) = store.runs()
        assert run["run_id"] == outcome.run_id and run["suite"] == "tiny"
        assert json.loads(run["config"]) == json.loads(json.dumps(suite.resolved(), default=str))
        provenance = json.loads(run["provenance"])
        assert provenance["devices"].keys() == {"cpu"}
        (row,) = {(r["seed"], r["device"], r["protocol"]) for r in store.metric_rows()}
        assert row == (3, "cpu", "cold-random@2")
        assert len(outcome.run_id) == 12
        evaluations = store.finished_evaluations(outcome.cell_keys[0])
        assert evaluations == {(s, k) for s in SCENARIOS for k in ("1", "3")}


def test_a_run_shows_progress_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        run_suite(tiny(learners=["global-mean"], seeds=1), store)
    assert "cells:" in capsys.readouterr().err


def test_a_run_keys_its_cells_and_reads_files_from_the_suites_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "parsed"))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "nowhere"))
    write_ml100k(tmp_path / "data" / "ml-100k", n_users=12, n_items=10)
    card = shipped_card("ml-100k", tmp_path / "cards")
    raw: dict[str, Any] = {
        "name": "files",
        "datasets": [str(card)],
        "data_dir": str(tmp_path / "data"),
        "learners": ["global-mean", "item-mean"],
        "seeds": [0, 1],
        "protocol": {"name": "predefined"},
        "floors": False,
    }
    suite = suite_from_dict(raw, "test")
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite, store, progress=False)
        rows = store.metric_rows(outcome.cell_keys)
        stored = store.conn.execute("SELECT DISTINCT code_fingerprint FROM cells").fetchall()
    assert outcome.exit_code == 0 and outcome.computed == 4
    assert {r["scenario"] for r in rows} == {"warm"}  # the protocol offers warm only
    dataset = load_dataset(str(card), data_dir=tmp_path / "data")
    protocol = make_protocol("predefined")
    fingerprint = code_fingerprint()
    # Real data ranks the catalogue by default: the ranking settings are part of the key.
    ranking = ranking_key(suite, dataset, protocol)
    assert ranking == {"views": ["full", "query"], "top_k": [10, 20]}
    expected = [
        cell_key(
            dataset,
            protocol,
            name,
            make_learner(name).config_hash,
            seed,
            "cpu",
            f"{fingerprint}+{learner_code(name)}",
            ranking=ranking,
        )
        for seed in (0, 1)
        for name in ("global-mean", "item-mean")
    ]
    assert outcome.cell_keys == expected
    assert stored == [(fingerprint,)]
