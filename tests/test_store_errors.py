"""The results store under hostile conditions: bad paths, read-only files and folders, files that
are not (intact) databases, another process holding the write lock, and runs that were killed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.engine.runner import run_suite
from bench.engine.suite import Suite, load_suite
from bench.errors import StoreError
from bench.processes import identity, is_gone
from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain
from bench.protocol.learner_registry import LEARNERS
from bench.provenance import PROJECT_ROOT
from bench.results import kept_cells
from bench.results.records import TrialRecord, TuningRecord
from bench.results.store import SCHEMA_VERSION, ResultStore
from bench.seeding import Seeds
from learners.baselines import BiasBaseline

from shared import held_lock, record

FAST = ("--suite", "ci", "--learners", "global-mean", "--seeds", "1", "--no-progress")
FAST += ("--no-floors",)  # one learner's cells only


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: results store"), err
    return lines[0]


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or folder unwritable for this process: permission bits for a normal user, the
    immutable attribute for root (whom permission bits do not stop)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a file read-only")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"running as root and chattr +i failed here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_file_that_is_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.sqlite"
    junk.write_bytes(b"my notes, not a database\n" * 200)
    before = junk.read_bytes()
    code, out, err = run_cli(capsys, "run", *FAST, "--store", str(junk))
    assert code == 2
    assert "is not a SQLite database" in one_line_error(err)
    assert junk.read_bytes() == before and "cell(s) computed" not in out


def test_a_damaged_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store, store.transaction() as c:
        c.executemany(
            "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)",
            [("r", f"k{i}", "d" * 50, "e", "t" * 100, "now") for i in range(2000)],
        )
    with open(path, "r+b") as handle:  # overwrite pages in the middle of the tables
        handle.seek(4096 * 3)
        handle.write(np.random.default_rng(0).bytes(4096 * 5))
    code, _, err = run_cli(capsys, "run", *FAST, "--store", str(path))
    assert code == 2 and "is damaged" in one_line_error(err)


def test_a_folder_given_as_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", *FAST, "--store", str(tmp_path))
    assert code == 2 and one_line_error(err) == (
        f"error: results store {tmp_path} is a folder; give a file such as "
        f"{tmp_path / 'results.sqlite'}"
    )


def test_a_folder_that_cannot_be_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("a file where a folder should be")
    store = tmp_path / "file" / "results" / "s.sqlite"
    code, _, err = run_cli(capsys, "run", *FAST, "--store", str(store))
    assert code == 2 and one_line_error(err) == (
        f"error: results store {store}: its folder {store.parent} cannot be created (Not a directory)"
    )


def test_a_store_to_read_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    absent = tmp_path / "absent.sqlite"
    with pytest.raises(StoreError) as raised:
        ResultStore(absent, mode="read")
    assert str(raised.value) == (
        f"results store {absent} does not exist; run `python -m bench run` first"
    )
    assert not absent.exists()


def test_a_read_only_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.sqlite"
    assert run_cli(capsys, "run", *FAST, "--store", str(path))[0] == 0
    before = path.read_bytes()
    with read_only(path):
        code, out, err = run_cli(capsys, "run", *FAST, "--fresh", "--store", str(path))
        assert code == 2 and one_line_error(err) == (
            f"error: results store {path} is read-only: the file or its folder cannot be "
            "written; make them writable or point --store elsewhere"
        )
        assert "cell(s) computed" not in out
        # Reading needs no write access: export still works.
        code, exported, _ = run_cli(capsys, "export", "--store", str(path))
        assert code == 0 and "global-mean" in exported
    assert path.read_bytes() == before


def test_a_store_on_a_read_only_medium_exports_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that cannot be written (a read-only mount): SQLite cannot create the -shm file a
    WAL store is read through, so the store is opened immutable; nothing is written."""
    folder = tmp_path / "mounted"
    folder.mkdir()
    path = folder / "s.sqlite"
    assert (
        run_cli(capsys, "run", *FAST, "--learners", "global-mean,item-mean", "--store", str(path))[
            0
        ]
        == 0
    )
    for side in ("-wal", "-shm"):  # what a cleanly closed store leaves: the file alone
        extra = path.with_name(path.name + side)
        if extra.exists():
            assert side == "-shm" or extra.stat().st_size == 0
            extra.unlink()
    before = sorted(p.name for p in folder.iterdir()), path.read_bytes()
    out_dir = tmp_path / "out"
    with read_only(folder):
        code, exported, err = run_cli(capsys, "export", "--store", str(path))
        assert code == 0 and "global-mean" in exported, err
        code, _, err = run_cli(
            capsys,
            "report",
            "--store",
            str(path),
            "--out",
            str(out_dir),
            "--reference",
            "global-mean",
            "--format",
            "md",
        )
        assert code == 0, err
    assert (out_dir / "report.md").is_file()
    assert (sorted(p.name for p in folder.iterdir()), path.read_bytes()) == before


def test_a_new_store_in_a_read_only_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder):
        code, _, err = run_cli(capsys, "run", *FAST, "--store", str(folder / "s.sqlite"))
    assert code == 2 and one_line_error(err) == (
        f"error: results store {folder / 's.sqlite'} cannot be opened: its folder must exist and "
        "be writable (SQLite also creates the files -wal and -shm beside the store)"
    )


def test_the_store_is_checked_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00garbage" * 500)
    args = ["run", *FAST, "--datasets", f"csv:{tmp_path / 'absent.csv'}", "--store", str(junk)]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "not a SQLite database" in one_line_error(err)  # not the missing file


V1_TABLES = """
CREATE TABLE cells (cell_key TEXT PRIMARY KEY, run_id TEXT NOT NULL);
CREATE TABLE metrics (cell_key TEXT NOT NULL, per_task BLOB NOT NULL);
"""
V1_META = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""


@pytest.mark.parametrize("schema", [V1_META + V1_TABLES, V1_TABLES], ids=["meta", "no-meta"])
def test_a_version_1_store_is_refused_and_left_untouched(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(schema)  # without a meta table, its cells table marks version 1
    before = path.read_bytes()
    with pytest.raises(StoreError) as caught:
        ResultStore(path)
    assert str(caught.value) == (
        f"results store {path} has schema version 1; this harness reads versions 2 to "
        f"{SCHEMA_VERSION}, which key every per-task value by its task entity (version 1 kept "
        "them unkeyed, so they cannot be migrated). Its cells would be recomputed anyway, "
        "because the code changed: move the file aside and re-run the suite, or pass --store "
        "with a new path"
    )
    assert path.read_bytes() == before


# A busy store -------------------------------------------------------------------------------


class LockingLearner(BiasBaseline):
    """item-mean, whose fit makes another connection take the store's write lock for
    ``hold_s`` seconds, so the cell finishes while the store is busy."""

    store: ClassVar[Path | None] = None
    hold_s: ClassVar[float] = 0.0
    holders: ClassVar[list[threading.Event]] = []

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        super().fit(train, rng=rng, device=device, budget=budget)
        assert self.store is not None
        other = sqlite3.connect(self.store, check_same_thread=False, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT OR REPLACE INTO meta VALUES ('held by', 'another process')")
        release = threading.Event()
        LockingLearner.holders.append(release)

        def hold() -> None:
            release.wait(self.hold_s)
            other.execute("ROLLBACK")
            other.close()

        threading.Thread(target=hold, daemon=True).start()


if "test-locking" not in LEARNERS:
    LEARNERS.register("test-locking", LockingLearner)


def locking_suite() -> Suite:
    return replace(load_suite("ci"), learners=("test-locking",), seeds=(0,), floors=False)


def test_a_finished_cell_waits_for_a_busy_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    LockingLearner.store, LockingLearner.hold_s = path, 3.0  # longer than one SQLite attempt
    notes: list[str] = []
    with ResultStore(path, busy_wait_s=60, log=notes.append) as store:
        outcome = run_suite(locking_suite(), store, progress=False)
        rows = store.metric_rows(outcome.cell_keys)
    assert outcome.exit_code == 0 and outcome.computed == 1
    assert {r["learner"] for r in rows} == {"test-locking"} and len(rows) > 0
    assert any("is busy" in n and "writing a finished cell" in n for n in notes), notes


def test_a_cell_the_busy_store_never_takes_is_kept_for_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    LockingLearner.store, LockingLearner.hold_s = path, 120.0
    LockingLearner.holders.clear()
    notes: list[str] = []
    with (
        ResultStore(path, busy_wait_s=1.5, log=notes.append) as store,
        pytest.raises(StoreError) as raised,
    ):
        run_suite(locking_suite(), store, progress=False)
    kept = list((tmp_path / "s.sqlite.unsaved").glob("*.json"))
    assert len(kept) == 1
    assert str(raised.value) == (
        f"results store {path} stayed locked by another process for 1.5 s; try again when that "
        f"process has finished; the finished cell was kept in {kept[0]} and the next run writes it"
    )
    for release in LockingLearner.holders:
        release.set()  # the other process lets go
    LockingLearner.holders.clear()
    LockingLearner.hold_s = 0.0
    with ResultStore(path, log=notes.append) as store:
        assert store.metric_rows() == []  # opening alone writes nothing: the run checks the cell
        outcome = run_suite(locking_suite(), store, progress=False, log=notes.append)
        rows = store.metric_rows()
    assert {r["learner"] for r in rows} == {"test-locking"}
    assert any("wrote 1 finished cell(s) kept by an earlier run" in n for n in notes), notes
    assert not (tmp_path / "s.sqlite.unsaved").exists()
    assert outcome.computed == 0 and outcome.reused == 1  # the kept cell counts as finished


def test_a_kept_file_that_is_no_cell_is_reported_on_stderr_and_left_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.sqlite"
    kept = tmp_path / "s.sqlite.unsaved" / "a-odd.json"
    kept.parent.mkdir()
    kept.write_text(json.dumps({"not": "a cell"}))
    (kept.parent / "cell-b.json").write_text(kept_cells.encode(record("cell-b")))
    with ResultStore(path) as store:  # notes go to stderr unless a log is given
        store.start_run("run-1", "toy", {}, {})
        store.write_kept_cells({"cell-b": kept_cells.identity(record("cell-b"))})
        assert [r["cell_key"] for r in store.cell_rows()] == ["cell-b"]  # the next is written
    err = capsys.readouterr().err
    assert err == (
        f"results store {path}: kept cell {kept} cannot be written: not a kept cell of format "
        "'bench-kept-cell' version 1\n"
        f"results store {path}: wrote 1 finished cell(s) kept by an earlier run\n"
    )
    assert json.loads(kept.read_text()) == {"not": "a cell"}  # nothing is lost
    assert [p.name for p in kept.parent.iterdir()] == ["a-odd.json"]


@pytest.mark.usefixtures("short_attempts")
def test_a_kept_cell_that_waits_for_a_busy_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    notes: list[str] = []
    with ResultStore(path, busy_wait_s=0.2, log=notes.append) as store:
        store.start_run("run-1", "toy", {}, {})
        store.kept_cells_dir.mkdir()
        (store.kept_cells_dir / "cell-a.json").write_text(kept_cells.encode(record()))
        with held_lock(path), pytest.raises(StoreError, match="stayed locked"):
            store.write_kept_cells({"cell-a": kept_cells.identity(record())})  # as a run does
    assert notes == [
        f"results store {path} is busy (another process is writing to it); "
        "writing a kept cell is retried for up to 0.2 s"
    ]
    assert (tmp_path / "s.sqlite.unsaved" / "cell-a.json").is_file()  # still kept


def test_a_store_without_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key='schema_version'")
    with pytest.raises(StoreError) as raised:
        ResultStore(path, mode="read")
    assert str(raised.value) == f"results store {path} has no schema version"
    with ResultStore(path) as store:  # a run writes it
        row = store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert row == (str(SCHEMA_VERSION),)


WRITES: dict[str, Callable[[ResultStore], object]] = {
    "recording the run": lambda s: s.start_run("run-2", "toy", {}, {}),
    "recording the run's end": lambda s: s.finish_run("run-1", "finished", ["cell-a"]),
    "recording a failed cell": lambda s: s.record_failure("run-1", "c", "d", "e", "t"),
    "removing a cell": lambda s: s.delete_cell("cell-a"),
    "writing a finished cell": lambda s: s.write_cell(record()),
    "writing a finished trial": lambda s: s.write_trial(
        "cell-a", "run-1", TrialRecord(0, {}, 1.0, 0.1, "complete")
    ),
    "claiming a cell": lambda s: s.claim("cell-a", "run-1", lease_s=60),
    "renewing claims": lambda s: s.renew_claims("run-1", ["cell-a"], lease_s=60),
    "releasing claims": lambda s: s.release_claims("run-1", ["cell-a"]),
}


@pytest.mark.parametrize("what", list(WRITES))
@pytest.mark.usefixtures("short_attempts")
def test_a_busy_store_note_names_the_write_that_waits(tmp_path: Path, what: str) -> None:
    path = tmp_path / "s.sqlite"
    notes: list[str] = []
    with ResultStore(path, busy_wait_s=0.2, log=notes.append) as store:
        store.start_run("run-1", "toy", {}, {})
        with held_lock(path), contextlib.suppress(StoreError):
            WRITES[what](store)
    assert notes[0] == (
        f"results store {path} is busy (another process is writing to it); "
        f"{what} is retried for up to 0.2 s"
    )


@pytest.mark.usefixtures("short_attempts")
def test_a_store_opened_while_another_process_writes_says_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ResultStore(path).close()
    notes: list[str] = []
    with held_lock(path), pytest.raises(StoreError, match="stayed locked by another process"):
        ResultStore(path, busy_wait_s=0.2, log=notes.append)
    assert notes == [
        f"results store {path} is busy (another process is writing to it); "
        "opening the store is retried for up to 0.2 s"
    ]


@pytest.mark.usefixtures("short_attempts")
def test_cells_kept_one_after_another_share_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path, busy_wait_s=0.1) as store:
        store.start_run("run-1", "toy", {}, {})
        with held_lock(path):
            for key in ("cell-a", "cell-b"):
                with pytest.raises(StoreError, match="the finished cell was kept in"):
                    store.write_cell(record(key))
    kept = sorted(p.name for p in (tmp_path / "s.sqlite.unsaved").iterdir())
    assert kept == ["cell-a.json", "cell-b.json"]  # no partial file is left behind
    notes: list[str] = []
    with ResultStore(path, log=notes.append) as store:
        expected = {key: kept_cells.identity(record(key)) for key in ("cell-a", "cell-b")}
        assert store.write_kept_cells(expected) == 2
        assert {r["cell_key"] for r in store.cell_rows()} == {"cell-a", "cell-b"}
    assert notes == [f"results store {path}: wrote 2 finished cell(s) kept by an earlier run"]


@pytest.mark.usefixtures("short_attempts")
def test_a_cell_that_cannot_be_kept_either_says_why(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    (tmp_path / "s.sqlite.unsaved").write_text("a file where the folder for kept cells goes")
    with (
        ResultStore(path, busy_wait_s=0.1, log=lambda _: None) as store,
        held_lock(path),
        pytest.raises(StoreError) as raised,
    ):
        store.write_cell(record())
    assert str(raised.value).endswith("; the finished cell could not be kept either (File exists)")


def test_a_sibling_connection_waits_as_long_as_asked(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite", busy_wait_s=7.5) as store:
        same, shorter = store.sibling(), store.sibling(busy_wait_s=0.5)
        assert (same.busy_wait_s, shorter.busy_wait_s) == (7.5, 0.5)
        assert same.path == store.path and same.conn is not store.conn
        same.close()
        shorter.close()


class Raised(sqlite3.DatabaseError):
    """An SQLite error as the sqlite3 module raises it, with the error name it carries."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.sqlite_errorname = name


def test_the_explanation_follows_the_error_name_and_keeps_other_errors_as_they_are(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    where = f"results store {path}"
    with ResultStore(path) as store:
        by_name = store._explain(Raised("unknown error", "SQLITE_NOTADB"))  # the text says nothing
        assert by_name == f"{where} is not a SQLite database; point --store at another file"
        io = sqlite3.OperationalError("disk I/O error")
        assert store._explain(io) == f"{where}: disk I/O error"
        denied = PermissionError(13, "Permission denied", str(path))
        assert store._explain(denied) == f"{where}: Permission denied"


def test_a_kept_cell_round_trips_through_its_json_form_with_trials_and_tuning() -> None:
    original = record()
    original.trials.append(TrialRecord(0, {"lr": 0.1}, 0.5, 1.25, "complete"))
    original.trials.append(TrialRecord(1, {"lr": 1.0}, None, 0.5, "failed", "diverged"))
    original.tuning = TuningRecord({"budget": 2}, {"lr": 0.1}, 2, 0, 0.5, 1.75, 4)
    back = kept_cells.decode(kept_cells.encode(original))
    assert back.trials == original.trials and back.tuning == original.tuning
    assert kept_cells.identity(back) == kept_cells.identity(original)
    assert back.metrics[0][:6] == original.metrics[0][:6]
    for got, want in zip(back.metrics, original.metrics, strict=True):
        np.testing.assert_array_equal(got[6], want[6])  # NaN where a task was not scored
    assert back.timings[0][:5] == original.timings[0][:5]


def test_a_sqlite_database_that_is_no_results_store(tmp_path: Path) -> None:
    other = tmp_path / "notes.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(StoreError) as raised:
        ResultStore(other, mode="read")
    assert str(raised.value) == (
        f"results store {other} is a SQLite database but not a results store (tables: notes; "
        "no meta table); it is left untouched: point --store at another file"
    )


@pytest.mark.usefixtures("short_attempts")
def test_a_read_that_stays_locked_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:  # a rollback journal, whose writer locks readers out
        conn.execute("PRAGMA journal_mode=DELETE")
    notes: list[str] = []
    with ResultStore(path, mode="read", busy_wait_s=0.2, log=notes.append) as store:
        with held_lock(path, "EXCLUSIVE"), pytest.raises(StoreError) as raised:
            store.runs()
        assert store.runs() == []  # readable again once the lock is gone
    assert str(raised.value) == (
        f"results store {path} stayed locked by another process for 0.2 s; "
        "try again when that process has finished"
    )
    assert notes == [
        f"results store {path} is busy (another process is writing to it); "
        "reading is retried for up to 0.2 s"
    ]


# Runs that died -----------------------------------------------------------------------------

KILLED_RUN = """
import os, signal, sys
from bench.provenance import collect
from bench.results.store import ResultStore
store = ResultStore(sys.argv[1])
store.start_run("killed-run", "ci", {}, collect(["cpu"]))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_shows_as_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path)], env=env)
    assert done.returncode == -9
    with ResultStore(path) as store:
        (run,) = store.runs()
        provenance = json.loads(run["provenance"])
        assert {"host", "pid", "process_started"} <= set(provenance)
        assert run["status"] == "interrupted"
        stored = store.conn.execute("SELECT status FROM runs").fetchone()[0]
        assert stored == "running"  # shown as interrupted; the next run marks it so
        run_suite(replace(load_suite("ci"), learners=("global-mean",), seeds=(0,)), store)
        statuses = dict(store.conn.execute("SELECT run_id, status FROM runs").fetchall())
    assert statuses.pop("killed-run") == "interrupted"
    assert list(statuses.values()) == ["finished"]


def test_liveness_of_a_run_process() -> None:
    me = identity()
    assert not is_gone(me)
    assert is_gone({**me, "process_started": "1"})  # the pid now names another process
    assert not is_gone({**me, "host": "another-host", "process_started": "1"})  # cannot tell


def test_a_running_run_whose_owner_cannot_be_read_is_not_called_dead(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.start_run("run-1", "ci", {}, {"host": "here"})
        store.conn.execute("UPDATE runs SET provenance='not json'")
        assert [r["status"] for r in store.runs()] == ["running"]
