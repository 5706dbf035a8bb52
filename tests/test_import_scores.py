"""Ranking candidates in an exported split and ``bench import --scores``: the candidate sets and
sampled negatives round-trip through ``split verify`` (a changed negative is a difference);
``mf``'s own scores of the exported candidates, imported with its predictions, give exactly the
metrics ``mf`` stored (RMSE and recall@K in one cell); missing, duplicated, extra and NaN scores
are each a one-line error and nothing is stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.data.cards import load_dataset
from bench.engine.cells import learner_seeds
from bench.protocol import make_protocol
from bench.protocol.episodes import build_tasks, make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.results.analysis import load_results
from bench.results.store import ResultStore

from real_formats import write

SUITE = """
name = "ranked"
datasets = ["synthetic"]
learners = ["mf"]
floors = false
seeds = 1
scenarios = ["warm", "item_cold"]
ranking = ["query", "full", "sampled"]
negatives = 20
top_k = [5, 10]
keep_predictions = true
[protocol]
name = "cold-random"
support_sizes = [5]
query_size = 5
[dataset.synthetic]
n_users = 150
n_items = 100
"""
KEYS = ["seed", "scenario", "k", "metric"]
FILE_KEYS = ["dataset", "seed", "scenario", "k", "user", "item"]


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The suite, a store holding its ``mf`` run, and its exported split."""
    root = tmp_path_factory.mktemp("ranked")
    suite = write(root / "ranked.toml", SUITE)
    store = root / "s.sqlite"
    assert main(["run", "--suite", str(suite), "--store", str(store), "--no-progress"]) == 0
    split = root / "split"
    assert main(["split", "export", "--suite", str(suite), "--out", str(split)]) == 0
    return suite, store, split


@pytest.fixture()
def store(ranked: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "s.sqlite"
    for suffix in ("", "-wal", "-shm"):
        source = ranked[1].with_name(ranked[1].name + suffix)
        if source.exists():
            shutil.copy(source, copy.with_name(copy.name + suffix))
    return copy


def test_candidates_round_trip_and_a_changed_negative_is_a_difference(
    ranked: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, split = ranked
    manifest = json.loads((split / "manifest.json").read_text(encoding="utf-8"))
    entry = manifest["splits"][0]
    for scenario in ("warm", "item_cold"):
        for table in ("pool", "excluded", "sampled"):
            path = entry["tables"][f"{scenario}/k-5/{table}"]
            assert path in manifest["files"]
        folder = split / "synthetic" / "seed-0" / scenario / "k-5"
        pool = pd.read_csv(folder / "pool.csv")
        excluded = pd.read_csv(folder / "excluded.csv")
        tasks = pd.read_csv(folder / "query.csv")["task"].nunique()
        full = tasks * len(pool) - len(excluded)
        assert entry["counts"][f"{scenario}/k-5/full_candidates"] == full
        sampled = pd.read_csv(folder / "sampled.csv")
        negatives = sampled[sampled["role"] == "negative"]
        assert entry["counts"][f"{scenario}/k-5/negatives"] == len(negatives)
        # item_cold ranks among 20 new items: fewer than 20 negatives are left
        most = negatives.groupby("task").size().max()
        assert most == 20 if scenario == "warm" else most < 20
    assert len(pd.read_csv(split / "synthetic/seed-0/item_cold/k-5/pool.csv")) < 100
    assert main(["split", "verify", str(split)]) == 0
    assert main(["audit", "--split", str(split)]) == 0
    edited = tmp_path / "edited"
    shutil.copytree(split, edited)
    path = edited / "synthetic/seed-0/warm/k-5/sampled.csv"
    frame = pd.read_csv(path, dtype=str)
    row = int(np.flatnonzero(frame["role"] == "negative")[0])
    task, old = frame.loc[row, "task"], frame.loc[row, "item"]
    frame.loc[row, "item"] = str((int(old) + 1) % 100)
    frame.to_csv(path, index=False)
    capsys.readouterr()
    assert main(["split", "verify", str(edited)]) == 1
    out = capsys.readouterr().out
    assert "warm/k-5/sampled.csv: its SHA-256 is not the manifest's" in out
    assert f"1 row(s) recomputed only: task={task}, role=negative" in out
    assert f"item={old}" in out


def own_scores(suite: Path, split: Path) -> pd.DataFrame:
    """``mf`` refitted as the runner fits it, scoring each task's exported full candidates."""
    dataset = load_dataset("synthetic", {"n_users": 150, "n_items": 100})
    protocol = make_protocol(
        "cold-random", {"name": "cold-random", "support_sizes": [5], "query_size": 5}
    )
    data_split = protocol.split(dataset, 0)
    learner = make_learner("mf", {})
    learner.fit(
        make_meta_train(dataset, data_split), rng=learner_seeds(0, "mf"), device=torch.device("cpu")
    )
    frames = []
    for scenario in ("warm", "item_cold"):
        folder = split / "synthetic" / "seed-0" / scenario / "k-5"
        pool = pd.read_csv(folder / "pool.csv")["item"].to_numpy(dtype=np.int64)
        excluded = pd.read_csv(folder / "excluded.csv")
        tasks = build_tasks(dataset, data_split.scenarios[scenario], 5)
        with torch.no_grad():
            scores = learner.score(
                tasks.without_labels().without_queries(), torch.tensor(pool)
            ).numpy()
        for t, user in enumerate(tasks.entities.tolist()):
            skip = set(excluded.loc[excluded["task"] == user, "item"])
            keep = np.array([item not in skip for item in pool])
            frames.append(
                pd.DataFrame(
                    {
                        "dataset": "synthetic",
                        "seed": 0,
                        "scenario": scenario,
                        "k": "5",
                        "user": user,
                        "item": pool[keep],
                        "score": scores[t][keep].astype(np.float64),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def mf_files(
    ranked: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    suite, store, split = ranked
    root = tmp_path_factory.mktemp("files")
    out = root / "all.csv"
    assert main(["export", "--predictions", "--store", str(store), "-o", str(out)]) == 0
    predictions = root / "predictions.csv"
    pd.read_csv(out, dtype=str)[[*FILE_KEYS, "prediction"]].to_csv(predictions, index=False)
    scores = root / "scores.csv"
    own_scores(suite, split).to_csv(scores, index=False)
    return predictions, scores


def import_files(suite: Path, store: Path, *files: str) -> int:
    return main(
        ["import", "--suite", str(suite), "--learner", "mf-imported", *files, "--store", str(store)]
    )


def test_mfs_own_scores_give_exactly_its_cells(
    ranked: tuple[Path, Path, Path], store: Path, mf_files: tuple[Path, Path]
) -> None:
    predictions, scores = mf_files
    assert (
        import_files(ranked[0], store, "--predictions", str(predictions), "--scores", str(scores))
        == 0
    )
    results = load_results(store)
    metrics = results.metrics
    mf = metrics[metrics["learner"] == "mf"].set_index(KEYS).sort_index()
    imported = metrics[metrics["learner"] == "mf-imported"].set_index(KEYS).sort_index()
    names = set(mf.index.get_level_values("metric"))
    assert {"rmse", "recall@10", "ndcg@10/full", "recall@10/sampled"} <= names
    assert mf.index.equals(imported.index)
    assert np.array_equal(mf["value"], imported["value"], equal_nan=True)
    assert (mf["n_scored"] == imported["n_scored"]).all()
    per_task = results.per_task
    a = per_task[per_task["learner"] == "mf"].sort_values([*KEYS, "entity"])
    b = per_task[per_task["learner"] == "mf-imported"].sort_values([*KEYS, "entity"])
    assert np.array_equal(a["value"].to_numpy(), b["value"].to_numpy(), equal_nan=True)
    cells = results.cells[results.cells["learner"] == "mf-imported"]
    assert len(cells) == 1
    assert {"sha256", "scores_sha256"} <= set(cells["config"].iloc[0])


def broken(source: Path, kind: str) -> Path:
    frame = pd.read_csv(source, dtype=str)
    if kind == "missing":
        frame = frame.drop(index=[0, 7, 11])
    elif kind == "duplicated":
        frame = pd.concat([frame, frame.iloc[[2, 4]]])
    elif kind == "extra":
        # an item the task does not rank: one of its own support items
        support = pd.read_csv(source.parent.parent / "split-support.csv", dtype=str)
        first = support.iloc[0]
        row = frame.iloc[[0]].assign(user=first["task"], item=first["item"], scenario="warm")
        frame = pd.concat([frame, row])
    else:
        frame.loc[[1, 3], "score"] = "nan"
    path = source.with_name(f"{kind}.csv")
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "3 required candidate score(s) missing (of "),
        ("duplicated", "2 duplicate row(s) (of "),
        ("extra", "1 row(s) for items that are not the task's candidates"),
        ("nan", "2 score(s) NaN or infinite"),
    ],
)
def test_bad_scores_are_an_error_and_nothing_is_stored(
    ranked: tuple[Path, Path, Path],
    store: Path,
    mf_files: tuple[Path, Path],
    kind: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, scores = mf_files
    support = ranked[2] / "synthetic/seed-0/warm/k-5/support.csv"
    shutil.copy(support, scores.parent.parent / "split-support.csv")
    with ResultStore(store, mode="read") as st:
        runs, cells = st.runs(), st.cell_rows()
    capsys.readouterr()
    assert import_files(ranked[0], store, "--scores", str(broken(scores, kind))) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was stored" in err
    assert len(err.strip().splitlines()) == 1
    with ResultStore(store, mode="read") as st:
        assert st.runs() == runs and st.cell_rows() == cells


def test_sampled_ranking_alone_needs_scores_of_the_sampled_candidates_only(
    tmp_path: Path,
) -> None:
    text = SUITE.replace('ranking = ["query", "full", "sampled"]', 'ranking = ["sampled"]')
    suite = write(tmp_path / "sampled.toml", text.replace('"warm", "item_cold"', '"warm"'))
    store, split = tmp_path / "s.sqlite", tmp_path / "split"
    assert main(["run", "--suite", str(suite), "--store", str(store), "--no-progress"]) == 0
    assert main(["split", "export", "--suite", str(suite), "--out", str(split)]) == 0
    folder = split / "synthetic" / "seed-0" / "warm" / "k-5"
    assert len(pd.read_csv(folder / "pool.csv")) == 100  # negatives come from the full candidates
    sampled = pd.read_csv(folder / "sampled.csv")
    dataset = load_dataset("synthetic", {"n_users": 150, "n_items": 100})
    protocol = make_protocol(
        "cold-random", {"name": "cold-random", "support_sizes": [5], "query_size": 5}
    )
    data_split = protocol.split(dataset, 0)
    learner = make_learner("mf", {})
    learner.fit(
        make_meta_train(dataset, data_split), rng=learner_seeds(0, "mf"), device=torch.device("cpu")
    )
    tasks = build_tasks(dataset, data_split.scenarios["warm"], 5)
    users = tasks.entities.tolist()
    rows = [sampled.loc[sampled["task"] == u, "item"].to_numpy(dtype=np.int64) for u in users]
    padded = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
    for t, r in enumerate(rows):
        padded[t, : len(r)] = r
    with torch.no_grad():  # one call over every task's padded candidates, as the ranking makes it
        scores = learner.score(tasks.without_labels().without_queries(), torch.tensor(padded))
    file = pd.concat(
        [
            pd.DataFrame(
                {"dataset": "synthetic", "seed": 0, "scenario": "warm", "k": "5", "user": u}
                | {"item": r, "score": scores[t, : len(r)].numpy().astype(np.float64)}
            )
            for t, (u, r) in enumerate(zip(users, rows, strict=True))
        ]
    )
    assert len(file) == len(sampled)
    path = tmp_path / "scores.csv"
    file.to_csv(path, index=False)
    assert import_files(suite, store, "--scores", str(path)) == 0
    metrics = load_results(store).metrics
    mf = metrics[metrics["learner"] == "mf"]
    mf = mf[mf["metric"].str.endswith("/sampled")].set_index(KEYS).sort_index()
    imported = metrics[metrics["learner"] == "mf-imported"].set_index(KEYS).sort_index()
    assert len(mf) == 12 and mf.index.equals(imported.index)
    assert np.array_equal(mf["value"], imported["value"], equal_nan=True)
