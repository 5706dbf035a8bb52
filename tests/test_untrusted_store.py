"""Results stores and kept cells from elsewhere: nothing in them runs, nothing unexpected is
written or read through, and a damaged one is one error line."""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from untrusted import FAST_RUN, bench, refused

from bench.results import kept_cells
from bench.results.claims import MAX_LEASE_S, Claim
from bench.results.records import Evaluation
from bench.results.store import ResultStore


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one finished cell of the fast run."""
    path = tmp_path_factory.mktemp("finished") / "s.sqlite"
    assert bench(*FAST_RUN, "--store", path).code == 0
    return path


def copy_of(finished: Path, tmp_path: Path) -> Path:
    path = tmp_path / "s.sqlite"
    shutil.copy(finished, path)
    return path


def the_cell(path: Path) -> dict[str, object]:
    with ResultStore(path, mode="read") as store:
        (row,) = store.cell_rows()
    return row


class Payload:
    """Unpickling this creates the file ``marker``: code run from data."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (shutil.copy, (__file__, str(self.marker)))


def test_a_planted_pickle_beside_the_store_is_never_unpickled(
    finished: Path, tmp_path: Path
) -> None:
    path = copy_of(finished, tmp_path)
    marker = tmp_path / "ran"
    planted = tmp_path / "s.sqlite.unsaved" / "cell.pickle"
    planted.parent.mkdir()
    planted.write_bytes(pickle.dumps(Payload(marker)))
    outcome = bench(*FAST_RUN, "--store", path)
    assert outcome.code == 0, outcome.err
    assert not marker.exists()  # the payload never ran
    assert f"kept cell {planted} is in the old pickle format, which is never read" in outcome.err
    assert planted.is_file()  # reported and left for the user to delete


def plant_kept(path: Path, row: dict[str, object], value: float, **identity: object) -> Path:
    """A kept cell with the stored cell's identity (changed by ``identity``) and a made-up value."""
    from shared import record

    rec = record(str(row["cell_key"]), value=value)
    for name in kept_cells.IDENTITY:
        setattr(rec, name, identity.get(name, row[name]))
    rec.evaluations = [Evaluation("warm", k, ["u1", "u2"], [1, 1]) for k in ("1", "5")]
    rec.metrics = [("warm", k, "rmse", value, 2, 0, np.array([value] * 2)) for k in ("1", "5")]
    target = path.with_name(path.name + ".unsaved") / f"{row['cell_key']}.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(kept_cells.encode(rec))
    return target


def stored_values(path: Path) -> set[float]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT value FROM metrics")}


def test_a_kept_cell_that_is_no_cell_of_the_run_is_not_inserted(
    finished: Path, tmp_path: Path
) -> None:
    path = copy_of(finished, tmp_path)
    row = the_cell(path)
    with ResultStore(path) as store:
        store.delete_cell(str(row["cell_key"]))
    planted = plant_kept(path, row, 123.0, code_fingerprint="an older version")
    outcome = bench(*FAST_RUN, "--store", path)
    assert outcome.code == 0 and "1 cell(s) computed" in outcome.out
    assert 123.0 not in stored_values(path)  # computed, not taken from the file
    assert "its code_fingerprint differs from the run's cell of that key" in outcome.err
    assert planted.is_file()


def test_a_kept_cell_that_names_a_cell_of_the_run_field_for_field_is_written(
    finished: Path, tmp_path: Path
) -> None:
    path = copy_of(finished, tmp_path)
    row = the_cell(path)
    with ResultStore(path) as store:
        store.delete_cell(str(row["cell_key"]))
    plant_kept(path, row, 0.75)
    outcome = bench(*FAST_RUN, "--store", path)
    assert outcome.code == 0 and "1 reused" in outcome.out, outcome.out
    assert "wrote 1 finished cell(s) kept by an earlier run" in outcome.err
    assert not path.with_name("s.sqlite.unsaved").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(seed="3"), "field seed: expected an integer >= 0, got str"),
        (lambda d: d["metrics"][0].update(per_task=[0.1]), "one value per task of evaluation"),
        (lambda d: d["evaluations"][0].update(entities=[1, 2]), "expected a list of strings"),
        (lambda d: d.pop("run_id"), "field run_id is missing"),
        (lambda d: d["timings"][0].update(tasks=True), "timings[0].tasks: expected an integer"),
    ],
)
def test_a_kept_cell_with_a_wrong_field_is_reported_by_that_field(
    tmp_path: Path, change: object, field: str
) -> None:
    from shared import record

    document = json.loads(kept_cells.encode(record()))
    change(document)  # type: ignore[operator]
    path = tmp_path / "cell-a.json"
    path.write_text(json.dumps(document))
    with pytest.raises(kept_cells.KeptCellError, match=field.replace("[", r"\[")):
        kept_cells.read(path)


def test_a_planted_trigger_is_refused_before_anything_is_written(
    finished: Path, tmp_path: Path
) -> None:
    path = copy_of(finished, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER falsify AFTER INSERT ON metrics BEGIN "
            "UPDATE metrics SET value = 0.001 WHERE rowid = NEW.rowid; END"
        )
    before = path.read_bytes()
    for args in ((*FAST_RUN, "--fresh", "--store", path), ("export", "--store", path)):
        refused(
            bench(*args), f"results store {path} holds what no results store has", "trigger falsify"
        )
    assert path.read_bytes() == before


def test_a_view_shadowing_a_table_is_refused(finished: Path, tmp_path: Path) -> None:
    path = copy_of(finished, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE metrics RENAME TO measured")
        conn.execute(
            "CREATE VIEW metrics AS SELECT cell_key, scenario, k, metric, 0.5 AS value, n_tasks, "
            "n_unscored, per_task FROM measured"
        )
    refused(bench("export", "--store", path), "view metrics", "table measured")


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('mine')")
    before = path.read_bytes()
    refused(
        bench(*FAST_RUN, "--store", path),
        "is a SQLite database but not a results store (tables: notes; no meta table)",
    )
    assert path.read_bytes() == before  # not converted into a store


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (
            "UPDATE meta SET value='three' WHERE key='schema_version'",
            "invalid schema version 'three'",
        ),
        (
            "UPDATE meta SET value='99999999999999999999' WHERE key='schema_version'",
            "invalid schema version",
        ),
        ("UPDATE cells SET split_summary='{\"a\": ['", "split_summary of cell"),
        ("UPDATE cells SET config='" + "[" * 100_000 + "'", "column config of cell"),
        ("UPDATE cells SET dataset_info=x'00ff'", "column dataset_info holds bytes"),
        ("UPDATE metrics SET per_task=x'0001020304'", "is not a list of float64 values"),
        ("UPDATE metrics SET per_task=zeroblob(8000)", "values for"),
        ("UPDATE cells SET split_summary='[1, 2]'", "is not a JSON dict"),
        ("UPDATE runs SET provenance='{\"pid\": '", "column provenance of run"),
        ("UPDATE runs SET config=x'01'", "column config holds bytes"),
        ("UPDATE evaluations SET entities='[\"u\"]'", "entities for"),
        ("UPDATE metrics SET n_unscored='many'", "column n_unscored of cell"),
        ("UPDATE timings SET seconds='slow'", "column seconds of cell"),
        ("UPDATE metrics SET scenario='elsewhere'", "no tasks stored for it"),
    ],
)
def test_a_damaged_store_is_one_error_line(
    finished: Path, tmp_path: Path, sql: str, fragment: str
) -> None:
    path = copy_of(finished, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(sql)
    outcome = bench("export", "--per-task", "--format", "json", "--store", path)
    refused(outcome, f"results store {path}", fragment)


def test_a_table_of_other_columns_is_refused(finished: Path, tmp_path: Path) -> None:
    path = copy_of(finished, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE runs ADD COLUMN extra TEXT DEFAULT 'x'")
    refused(bench("export", "--store", path), "table runs has columns")


def test_a_far_future_claim_of_another_host_does_not_hold_a_run(
    finished: Path, tmp_path: Path
) -> None:
    path = copy_of(finished, tmp_path)
    key = str(the_cell(path)["cell_key"])
    with ResultStore(path) as store:
        store.delete_cell(key)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO claims VALUES (?, 'someone', 'elsewhere.example', 4242, NULL, 'then', ?)",
            (key, time.time() + 10**9),
        )
    started = time.monotonic()
    outcome = bench(*FAST_RUN, "--store", path, "--claim-wait", "60")
    assert outcome.code == 0 and "1 cell(s) computed" in outcome.out, outcome.out
    assert time.monotonic() - started < 60


def test_a_lease_counts_up_to_the_maximum_only() -> None:
    now = 1_000_000.0

    def claim(expires_at: object) -> Claim:
        return Claim("c", "run", "elsewhere.example", 1, None, "then", expires_at)  # type: ignore[arg-type]

    assert claim(now + MAX_LEASE_S).is_live(now)
    assert not claim(now + MAX_LEASE_S + 1).is_live(now)
    assert not claim(float("nan")).is_live(now)
    assert not claim("soon").is_live(now)
    assert not claim(now - 1).is_live(now)


def test_a_link_in_place_of_the_kept_cells_folder_is_not_followed(
    finished: Path, tmp_path: Path
) -> None:
    path = copy_of(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    row = the_cell(path)
    with ResultStore(path) as store:
        store.delete_cell(str(row["cell_key"]))
    plant_kept(path, row, 0.75)
    (tmp_path / "s.sqlite.unsaved").rename(elsewhere / "cells")
    (tmp_path / "s.sqlite.unsaved").symlink_to(elsewhere / "cells", target_is_directory=True)
    outcome = bench(*FAST_RUN, "--store", path)
    assert outcome.code == 0 and "1 cell(s) computed" in outcome.out
    assert "is a link, not a folder; it is ignored" in outcome.err
    assert len(list((elsewhere / "cells").iterdir())) == 1  # nothing read or removed there
