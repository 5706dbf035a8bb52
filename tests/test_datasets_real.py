"""The dataset cards and protocols against the real files in ../shared/datasets (never copied into
the repository: their terms forbid redistribution)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.cards import get_card, load_dataset
from bench.data import Dataset
from bench.errors import ConfigError, DataError
from bench.loaders import sources
from bench.protocol import make_protocol

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("parsed")))
        mp.delenv("BENCH_DATA_DIR", raising=False)
        yield


@pytest.fixture(scope="module")
def ml100k() -> Dataset:
    return load_dataset("ml-100k", data_dir=DATA)


def test_ml100k_counts_features_and_folds(ml100k: Dataset) -> None:
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_ratings) == (943, 1682, 100_000)
    assert ml100k.rating_scale == (1.0, 5.0) and ml100k.like_threshold == 4
    levels, counts = np.unique(ml100k.rating, return_counts=True)
    assert levels.tolist() == [1, 2, 3, 4, 5]
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ml100k.user_ids is not None and ml100k.user_ids.tolist() == list(range(1, 944))
    assert ml100k.user_features is not None and ml100k.user_features.shape == (943, 7 + 2 + 21 + 11)
    # Each user has exactly one age bracket, one gender and one occupation.
    assert np.allclose(ml100k.user_features[:, :7].sum(1), 1)
    assert ml100k.item_features is not None and ml100k.item_features.shape == (1682, 20)
    year = ml100k.item_attributes["release_year"]
    assert year.shape == (1682,) and np.nanmin(year) == 1922 and np.nanmax(year) == 1998
    assert int(np.isnan(year).sum()) == 1  # item 267 has no date or title year
    folds = ml100k.extras["folds"]
    assert ml100k.extras["fold_names"] == ["u1", "u2", "u3", "u4", "u5"]
    tests = np.concatenate([folds[f]["test"] for f in ml100k.extras["fold_names"]])
    # The five test files partition u.data, and each base file is its complement.
    assert np.array_equal(np.sort(tests), np.arange(100_000))
    for fold in folds.values():
        assert len(fold["train"]) == 80_000 and len(fold["test"]) == 20_000
        assert not np.intersect1d(fold["train"], fold["test"]).size


def test_cards_carry_the_readme_checksums() -> None:
    card = get_card("ml-100k")
    for name in ("u.data", "u.item", "u.user", "u1.base", "u5.test"):
        assert sources.sha256_file(DATA / "ml-100k" / name) == card.files[name]
    assert get_card("ml-latest-small").archive_sha256.startswith("859da233")
    assert get_card("ml-1m").files["ratings.dat"] == sources.UNVERIFIED
    for name in ("ml-1m", "ml-10m", "ml-20m", "ml-25m", "book-crossing", "filmtrust"):
        card = get_card(name)
        assert card.url.startswith("http") and card.licence and card.citation


def test_second_load_of_ml100k_is_fast(ml100k: Dataset) -> None:
    sources._hash_memo.clear()  # a fresh process would hash the files again
    start = time.perf_counter()
    again = load_dataset("ml-100k", data_dir=DATA)
    assert time.perf_counter() - start < 1.0
    assert again.content_hash == ml100k.content_hash
    assert np.array_equal(again.extras["folds"]["u3"]["test"], ml100k.extras["folds"]["u3"]["test"])
    assert again.extras["protocol_defaults"] == {"melu": {"item_cutoff": 1997}}


def test_data_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DATA_DIR", str(DATA))
    assert load_dataset("ml-100k").n_ratings == 100_000


def test_ml_latest_small() -> None:
    data = load_dataset("ml-latest-small", data_dir=DATA)
    assert (data.n_users, data.n_items, data.n_ratings) == (610, 9724, 100_836)
    assert data.rating_scale == (0.5, 5.0)
    assert np.unique(data.rating).tolist() == [x / 2 for x in range(1, 11)]
    assert data.item_features is not None and data.item_features.shape[0] == 9724
    assert data.user_features is None


def test_filmtrust_duplicates_and_trust() -> None:
    data = load_dataset("filmtrust", data_dir=DATA)
    assert (data.n_users, data.n_items, data.n_ratings) == (1508, 2071, 35_494)
    assert data.extras["duplicates_dropped"] == 3
    assert data.rating_scale == (0.5, 4.0)
    edges = data.extras["trust_edges"]
    assert edges.shape[1] == 2 and len(edges) + data.extras["trust_edges_dropped"] == 1853
    # (308, 207) appears twice with different ratings: "last" keeps the later line.
    lines = [ln.split() for ln in (DATA / "filmtrust" / "ratings.txt").read_text().splitlines()]
    later = [float(r) for u, i, r in lines if (u, i) == ("308", "207")][-1]
    assert data.user_ids is not None and data.item_ids is not None
    u = int(np.flatnonzero(data.user_ids == 308)[0])
    i = int(np.flatnonzero(data.item_ids == 207)[0])
    assert data.rating[(data.user == u) & (data.item == i)].tolist() == [later]
    with pytest.raises(DataError, match=r"ratings.txt.*duplicate.*lines"):
        load_dataset("filmtrust", {"duplicates": "error", "cache": False}, data_dir=DATA)
    mean = load_dataset("filmtrust", {"duplicates": "mean", "trust": False}, data_dir=DATA)
    assert mean.n_ratings == 35_494 and "trust_edges" not in mean.extras


def test_melu_protocol_on_ml100k(ml100k: Dataset) -> None:
    split = make_protocol("melu").split(ml100k, 0)
    assert split.config.item_cutoff == 1997  # from the card's [protocol.melu]
    year = ml100k.item_attributes["release_year"]
    assert np.array_equal(split.new_items, year >= 1997)
    assert abs(split.new_users.mean() - 0.2) < 0.01
    activity = np.bincount(ml100k.user, minlength=ml100k.n_users)
    for name, tasks in split.scenarios.items():
        assert len(tasks) > 0, name
        assert ((activity[tasks.entities] >= 13) & (activity[tasks.entities] <= 100)).all()
        assert all(len(q) == 10 for q in tasks.queries)
    train_users = ml100k.user[split.train]
    assert (activity[train_users] > 100).any()  # the filter chooses task users only
    paper = make_protocol("melu-paper").split(ml100k, 0)
    assert paper.config.item_cutoff == 1997  # melu-paper reads the same card table
    assert (activity[ml100k.user[paper.train]] <= 100).all()  # MeLU's own: dropped from training
    assert len(paper.train) < len(split.train) / 4
    # A suite's explicit value wins over the card's default.
    assert make_protocol("melu", {"item_cutoff": 1995}).split(ml100k, 0).config.item_cutoff == 1995


def test_predefined_folds_are_warm_only(ml100k: Dataset) -> None:
    protocol = make_protocol("predefined")
    assert protocol.scenarios == ("warm",)
    split = protocol.split(ml100k, 0)
    assert set(split.scenarios) == {"warm"}
    warm = split.scenarios["warm"]
    test_rows = ml100k.extras["folds"]["u1"]["test"]
    assert np.array_equal(np.sort(np.concatenate(warm.queries)), np.sort(test_rows))
    assert len(warm) == len(np.unique(ml100k.user[test_rows]))
    assert not np.isin(split.train, test_rows).any()
    for t in range(len(warm)):
        assert (ml100k.user[warm.queries[t]] == warm.entities[t]).all()
        assert np.isin(warm.support(t, "all"), split.train).all()
    with pytest.raises(ConfigError, match=r"seeds 0\.\.4"):
        protocol.split(ml100k, 5)


def test_ml100k_warm_item_mean_matches_the_reference() -> None:
    from bench.runner import run_suite
    from bench.store import ResultStore
    from bench.suite import load_suite, override

    suite = override(load_suite("ml100k-warm"), learners=("item-mean",), data_dir=str(DATA))
    with ResultStore(Path(os.environ["BENCH_CACHE_DIR"]) / "warm.sqlite") as store:
        outcome = run_suite(suite, store, fresh=True, progress=False)
        rows = store.metric_rows(outcome.cell_keys)
    assert outcome.exit_code == 0
    rmse = [r["value"] for r in rows if r["metric"] == "rmse"]
    assert len(rmse) == 5 and {r["scenario"] for r in rows} == {"warm"}
    assert abs(float(np.mean(rmse)) - 0.946) < 0.005


def test_item_as_task_runs_end_to_end_on_ml100k(tmp_path: Path) -> None:
    from bench.runner import run_suite
    from bench.store import ResultStore
    from bench.suite import suite_from_dict

    suite = suite_from_dict(
        {
            "name": "items",
            "datasets": ["ml-100k"],
            "learners": ["global-mean", "item-mean", "mf"],
            "seeds": 1,
            "data_dir": str(DATA),
            "protocol": {
                "name": "cold-random",
                "task_axis": "item",
                "support_sizes": [1, 5],
                "query_size": 5,
                "max_tasks": 200,
            },
            "learner": {"mf": {"rank": 4, "iterations": 3}},
        },
        "test",
    )
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite, store, progress=False)
        rows = store.metric_rows(outcome.cell_keys)
    assert outcome.exit_code == 0, outcome.failed
    scored = {(r["scenario"], r["learner"]) for r in rows if r["metric"] == "rmse"}
    for scenario in ("warm", "user_cold", "item_cold", "user_item_cold"):
        for learner in ("global-mean", "item-mean", "mf"):
            assert (scenario, learner) in scored
    split = make_protocol("cold-random", suite.protocol).split(
        load_dataset("ml-100k", data_dir=DATA), 0
    )
    cold = split.scenarios["item_cold"]
    assert cold.axis == "item" and split.new_items[cold.entities].all()
    assert all(len(cold.support(t, 5)) == 5 for t in range(len(cold)))


def test_cli_data_dir_flag_runs_the_warm_folds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    store = str(tmp_path / "s.sqlite")
    args = ["run", "--suite", "ml100k-warm", "--learners", "global-mean", "--seeds", "2"]
    code = main([*args, "--data-dir", str(DATA), "--store", store, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "ml-100k · predefined@1 · warm" in out and "user_cold" not in out
