"""``bench import``: ``mf``'s own predictions, imported, give exactly the cells ``mf`` computed;
missing, duplicated, extra and NaN predictions are each a clear error with counts and nothing is
stored; imported cells take part in reports and ``bench check`` like any learner's. The worked
example trains Surprise's SVD on the exported ``ci`` split and reports it beside ``mf``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.engine.suite import SUITES
from bench.results.analysis import load_results
from bench.results.gate.baseline import write_baseline
from bench.results.gate.snapshot import snapshot_of
from bench.results.store import ResultStore

from real_formats import write

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "referee_surprise.py"
KEYS = ["seed", "scenario", "k", "metric"]


@pytest.fixture(scope="module")
def ci_keep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The ``ci`` suite keeping its predictions, run with ``mf``: (suite, store, run id)."""
    root = tmp_path_factory.mktemp("ci")
    text = SUITES.get("ci").read_text(encoding="utf-8")
    suite = write(
        root / "ci-keep.toml", text.replace('name = "ci"', 'name = "ci"\nkeep_predictions = true')
    )
    store = root / "s.sqlite"
    args = [
        "run",
        "--suite",
        str(suite),
        "--learners",
        "mf",
        "--no-floors",  # mf's cells alone, to be imported back
        "--store",
        str(store),
        "--no-progress",
    ]
    assert main(args) == 0
    with ResultStore(store, mode="read") as st:
        run_id = st.runs()[-1]["run_id"]
    return suite, store, run_id


@pytest.fixture()
def store(ci_keep: tuple[Path, Path, str], tmp_path: Path) -> Path:
    """A copy of the module's store, so that each test starts from the ``mf`` run alone."""
    copy = tmp_path / "s.sqlite"
    for suffix in ("", "-wal", "-shm"):  # the write-ahead log may still hold the last writes
        source = ci_keep[1].with_name(ci_keep[1].name + suffix)
        if source.exists():
            shutil.copy(source, copy.with_name(copy.name + suffix))
    return copy


@pytest.fixture(scope="module")
def mf_predictions(
    ci_keep: tuple[Path, Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    _, store, _ = ci_keep
    out = tmp_path_factory.mktemp("preds") / "all.csv"
    assert main(["export", "--predictions", "--store", str(store), "-o", str(out)]) == 0
    frame = pd.read_csv(out, dtype=str)
    assert set(frame["learner"]) == {"mf"}
    path = out.with_name("mf.csv")
    frame[["dataset", "seed", "scenario", "k", "user", "item", "prediction"]].to_csv(
        path, index=False
    )
    return path


def import_file(suite: Path, store: Path, path: Path, learner: str = "mf-imported") -> int:
    args = ["import", "--suite", str(suite), "--learner", learner, "--predictions", str(path)]
    return main([*args, "--store", str(store)])


def test_mfs_own_predictions_give_exactly_its_cells(
    ci_keep: tuple[Path, Path, str], store: Path, mf_predictions: Path
) -> None:
    suite = ci_keep[0]
    assert import_file(suite, store, mf_predictions) == 0
    results = load_results(store)
    metrics = results.metrics
    mf = metrics[metrics["learner"] == "mf"].set_index(KEYS).sort_index()
    imported = metrics[metrics["learner"] == "mf-imported"].set_index(KEYS).sort_index()
    assert len(mf) == len(imported) == 2 * 4 * 2 * len(set(mf.index.get_level_values("metric")))
    assert mf.index.equals(imported.index)
    assert np.array_equal(mf["value"], imported["value"], equal_nan=True)
    assert (mf["n_scored"] == imported["n_scored"]).all()
    per_task = results.per_task
    a = per_task[per_task["learner"] == "mf"].sort_values([*KEYS, "entity"])
    b = per_task[per_task["learner"] == "mf-imported"].sort_values([*KEYS, "entity"])
    assert np.array_equal(a["value"].to_numpy(), b["value"].to_numpy(), equal_nan=True)
    digest = hashlib.sha256(mf_predictions.read_bytes()).hexdigest()
    cells = results.cells[results.cells["learner"] == "mf-imported"]
    assert len(cells) == 2
    for config in cells["config"]:
        assert config["provenance"] == "imported" and config["sha256"] == digest
    run = results.runs[results.runs["run_id"] == cells["run_id"].iloc[0]].iloc[0]
    assert run["provenance"]["imported"]["sha256"] == digest


def broken(source: Path, kind: str) -> Path:
    frame = pd.read_csv(source, dtype=str)
    if kind == "missing":
        frame = frame.drop(index=[0, 5, 9])
    elif kind == "duplicated":
        frame = pd.concat([frame, frame.iloc[[2, 4]]])
    elif kind == "extra":
        extra = frame.iloc[[0]].assign(item="no-such-item")
        frame = pd.concat([frame, extra])
    else:
        frame.loc[[1, 3], "prediction"] = "nan"
    path = source.with_name(f"{kind}.csv")
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "3 required pair(s) missing (of 10260 required)"),
        ("duplicated", "2 duplicate row(s) (of 10260 required)"),
        ("extra", "1 row(s) for pairs the split does not score"),
        ("nan", "2 prediction(s) NaN or infinite"),
    ],
)
def test_bad_predictions_are_an_error_and_nothing_is_stored(
    ci_keep: tuple[Path, Path, str],
    store: Path,
    mf_predictions: Path,
    kind: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ResultStore(store, mode="read") as st:
        runs, cells = st.runs(), st.cell_rows()
    capsys.readouterr()
    assert import_file(ci_keep[0], store, broken(mf_predictions, kind)) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was stored" in err
    assert len(err.strip().splitlines()) == 1
    with ResultStore(store, mode="read") as st:
        assert st.runs() == runs and st.cell_rows() == cells


def test_a_registered_name_scores_and_missing_columns_are_refused(
    ci_keep: tuple[Path, Path, str],
    store: Path,
    mf_predictions: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suite = ci_keep[0]
    assert import_file(suite, store, mf_predictions, learner="mf") == 2
    assert "'mf' is a registered learner" in capsys.readouterr().err
    args = ["import", "--suite", str(suite), "--learner", "x", "--scores", str(mf_predictions)]
    assert main([*args, "--store", str(store)]) == 2
    assert "ranks no candidate items" in capsys.readouterr().err
    frame = pd.read_csv(mf_predictions).drop(columns="prediction")
    frame.to_csv(mf_predictions.with_name("cols.csv"), index=False)
    assert import_file(suite, store, mf_predictions.with_name("cols.csv")) == 2
    assert "no column(s) prediction" in capsys.readouterr().err


def test_bench_check_compares_imported_cells_like_any_learners(
    ci_keep: tuple[Path, Path, str],
    store: Path,
    mf_predictions: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suite, _, mf_run = ci_keep
    assert import_file(suite, store, mf_predictions) == 0
    with ResultStore(store, mode="read") as st:
        imported_run = st.runs()[-1]["run_id"]
    runs = [mf_run, imported_run]
    baseline = tmp_path / "baseline.json"
    write_baseline(snapshot_of(load_results(store, run_ids=runs), suite="ci"), baseline)
    capsys.readouterr()
    args = ["check", "--baseline", str(baseline), "--run", ",".join(runs), "--store", str(store)]
    assert main([*args, "--no-timing", "--format", "json"]) == 0
    verdicts = json.loads(capsys.readouterr().out)
    assert "mf-imported" in json.dumps(verdicts)


def test_worked_example_an_outside_model_beside_mf(
    ci_keep: tuple[Path, Path, str], store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("referee_surprise", SCRIPT)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    split = tmp_path / "split"
    assert main(["split", "export", "--suite", "ci", "--out", str(split)]) == 0
    predictions = tmp_path / "svd.csv"
    example.predict_split(split).to_csv(predictions, index=False)
    assert import_file(Path("ci"), store, predictions, learner="surprise-svd") == 0
    report = tmp_path / "report"
    assert main(["report", "--store", str(store), "--out", str(report), "--format", "md"]) == 0
    text = (report / "report.md").read_text(encoding="utf-8")
    for scenario in ("warm", "user_cold", "item_cold", "user_item_cold"):
        section = text.split(f"synthetic · cold-random@2 · {scenario}", 1)[1]
        rows = [
            line.split("|")[1].strip()
            for line in section.splitlines()[:40]
            if line.startswith("| ")
        ]
        assert "mf" in rows and "surprise-svd" in rows
    metrics = load_results(store).metrics
    svd = metrics[(metrics["learner"] == "surprise-svd") & (metrics["metric"] == "rmse")]
    assert len(svd) == 2 * 4 * 2 and svd["value"].between(0.3, 2.0).all()
