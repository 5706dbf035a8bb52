"""The shipped dataset cards and the protocols built on them, on generated files in the real
formats (always) and on the real files in $BENCH_DATA_DIR (marked ``real_data``: skipped with the
reason when absent, a failure in CI). The real files are never copied into the repository: their
terms forbid redistribution."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.data.cards import get_card, load_dataset
from bench.data.dataset import Dataset
from bench.data.loaders import sources
from bench.errors import ConfigError, DataError
from bench.protocol import make_protocol

from real_formats import (
    real_data_dir,
    shipped_card,
    write,
    write_filmtrust,
    write_latest_small,
    write_ml100k,
)

real_data = pytest.mark.real_data
SOURCES = ["generated", pytest.param("real", marks=real_data)]


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("parsed")))
        mp.delenv("BENCH_DATA_DIR", raising=False)  # every test names its data directory
        yield


@dataclass(frozen=True)
class Source:
    """Where a dataset's files are and how to name its card (a path for a generated copy)."""

    data_dir: Path
    card: str
    real: bool

    def load(self, options: dict | None = None) -> Dataset:
        return load_dataset(self.card, options, data_dir=self.data_dir)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_ml100k(root / "ml-100k")
    write_latest_small(root / "ml-latest-small")
    write_filmtrust(root / "filmtrust")
    for name in ("ml-100k", "ml-latest-small", "filmtrust"):
        shipped_card(name, root / "cards")
    return root


def source(kind: str, name: str, generated: Path) -> Source:
    if kind == "real":
        return Source(real_data_dir(name), name, True)
    return Source(generated, str(generated / "cards" / f"{name}.toml"), False)


@pytest.fixture(scope="module", params=SOURCES)
def ml100k_source(request: pytest.FixtureRequest, generated: Path) -> Source:
    return source(request.param, "ml-100k", generated)


@pytest.fixture(scope="module")
def ml100k(ml100k_source: Source) -> Dataset:
    return ml100k_source.load()


# ML-100K ------------------------------------------------------------------------------------


def test_ml100k_features_and_folds(ml100k: Dataset) -> None:
    assert ml100k.rating_scale == (1.0, 5.0) and ml100k.like_threshold == 4  # from the card
    assert set(np.unique(ml100k.rating).tolist()) <= {1, 2, 3, 4, 5}
    assert ml100k.user_features is not None and ml100k.user_features.shape[0] == ml100k.n_users
    # Each user has exactly one age bracket, one gender and one occupation.
    assert np.allclose(ml100k.user_features[:, :7].sum(1), 1)
    assert np.allclose(ml100k.user_features[:, 7:9].sum(1), 1)
    assert ml100k.item_features is not None and ml100k.item_features.shape == (ml100k.n_items, 20)
    year = ml100k.item_attributes["release_year"]
    assert year.shape == (ml100k.n_items,) and int(np.isnan(year).sum()) == 1
    folds = ml100k.extras["folds"]
    assert ml100k.extras["fold_names"] == ["u1", "u2", "u3", "u4", "u5"]
    tests = np.concatenate([folds[f]["test"] for f in ml100k.extras["fold_names"]])
    # The five test files partition u.data, and each base file is its complement.
    assert np.array_equal(np.sort(tests), np.arange(ml100k.n_ratings))
    for fold in folds.values():
        assert len(fold["train"]) + len(fold["test"]) == ml100k.n_ratings
        assert not np.intersect1d(fold["train"], fold["test"]).size
    report = ml100k.extras["load_report"]
    assert report["duplicates_dropped"] == 0 and report["rating_scale_from"] == "declared"


@real_data
def test_real_ml100k_counts() -> None:
    data = load_dataset("ml-100k", data_dir=real_data_dir("ml-100k"))
    assert (data.n_users, data.n_items, data.n_ratings) == (943, 1682, 100_000)
    levels, counts = np.unique(data.rating, return_counts=True)
    assert levels.tolist() == [1, 2, 3, 4, 5]
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
    assert data.user_ids is not None and data.user_ids.tolist() == list(range(1, 944))
    assert data.user_features is not None and data.user_features.shape == (943, 7 + 2 + 21 + 11)
    year = data.item_attributes["release_year"]
    assert np.nanmin(year) == 1922 and np.nanmax(year) == 1998  # item 267 has no year
    for fold in data.extras["folds"].values():
        assert len(fold["train"]) == 80_000 and len(fold["test"]) == 20_000


@real_data
def test_real_files_match_the_cards_checksums() -> None:
    root = real_data_dir("ml-100k")
    card = get_card("ml-100k")
    for name in ("u.data", "u.item", "u.user", "u1.base", "u5.test"):
        assert sources.sha256_file(root / "ml-100k" / name) == card.files[name]


def test_cards_name_their_source_terms_and_sums() -> None:
    assert get_card("ml-latest-small").archive_sha256.startswith("859da233")
    assert get_card("ml-1m").files["ratings.dat"] == sources.UNVERIFIED
    for name in ("ml-1m", "ml-10m", "ml-20m", "ml-25m", "book-crossing", "filmtrust"):
        card = get_card(name)
        assert card.url.startswith("http") and card.licence and card.citation


def test_second_load_comes_from_the_parse_cache(ml100k_source: Source, ml100k: Dataset) -> None:
    cache = Path(os.environ["BENCH_CACHE_DIR"])
    entries = sorted(cache.glob("ml-100k-*.arrow"))
    sources._hash_memo.clear()  # a fresh process would hash the files again
    again = ml100k_source.load()
    assert sorted(cache.glob("ml-100k-*.arrow")) == entries  # nothing new was written
    assert again.content_hash == ml100k.content_hash
    assert np.array_equal(again.extras["folds"]["u3"]["test"], ml100k.extras["folds"]["u3"]["test"])
    assert again.extras["protocol_defaults"] == {"melu": {"item_cutoff": 1997}}
    assert again.extras["load_report"] == ml100k.extras["load_report"]


def test_data_dir_from_the_environment(
    ml100k_source: Source, ml100k: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_DATA_DIR", str(ml100k_source.data_dir))
    assert load_dataset(ml100k_source.card).n_ratings == ml100k.n_ratings


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
    # The filter chooses task users only; MeLU's own construction drops the others from training.
    paper = make_protocol("melu-paper").split(ml100k, 0)
    assert paper.config.item_cutoff == 1997  # melu-paper reads the same card table
    filtered = (activity < 13) | (activity > 100)
    kept = split.train[~filtered[ml100k.user[split.train]]]
    assert np.array_equal(np.sort(paper.train), np.sort(kept))
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


@real_data
def test_ml100k_warm_item_mean_matches_the_reference(tmp_path: Path) -> None:
    from bench.engine.runner import run_suite
    from bench.engine.suite import load_suite, override
    from bench.results.store import ResultStore

    root = str(real_data_dir("ml-100k"))
    suite = override(
        load_suite("ml100k-warm"), learners=("item-mean",), data_dir=root, floors=False
    )
    with ResultStore(tmp_path / "warm.sqlite") as store:
        outcome = run_suite(suite, store, fresh=True, progress=False)
        rows = store.metric_rows(outcome.cell_keys)
    assert outcome.exit_code == 0
    rmse = [r["value"] for r in rows if r["metric"] == "rmse"]
    assert len(rmse) == 5 and {r["scenario"] for r in rows} == {"warm"}
    assert abs(float(np.mean(rmse)) - 0.946) < 0.005


def test_item_as_task_runs_end_to_end_on_ml100k(ml100k_source: Source, tmp_path: Path) -> None:
    from bench.engine.runner import run_suite
    from bench.engine.suite import suite_from_dict
    from bench.results.store import ResultStore

    suite = suite_from_dict(
        {
            "name": "items",
            "datasets": [ml100k_source.card],
            "learners": ["global-mean", "item-mean", "mf"],
            "seeds": 1,
            "data_dir": str(ml100k_source.data_dir),
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
    split = make_protocol("cold-random", suite.protocol).split(ml100k_source.load(), 0)
    cold = split.scenarios["item_cold"]
    assert cold.axis == "item" and split.new_items[cold.entities].all()
    assert all(len(cold.support(t, 5)) == 5 for t in range(len(cold)))


def test_cli_data_dir_flag_runs_the_warm_folds(
    ml100k_source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main
    from bench.engine.suite import SUITES

    shipped = SUITES.get("ml100k-warm").read_text(encoding="utf-8")
    suite = write(tmp_path / "warm.toml", shipped.replace('"ml-100k"', repr(ml100k_source.card), 1))
    store = str(tmp_path / "s.sqlite")
    args = ["run", "--suite", str(suite), "--learners", "global-mean", "--seeds", "2"]
    code = main(
        [*args, "--data-dir", str(ml100k_source.data_dir), "--store", store, "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "ml-100k · predefined@1 · warm" in out and "user_cold" not in out
    assert "rating scale 1-5 (declared), like threshold 4 (declared)" in out


# ML latest-small and FilmTrust --------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_ml_latest_small(kind: str, generated: Path) -> None:
    data = source(kind, "ml-latest-small", generated).load()
    assert data.rating_scale == (0.5, 5.0)
    assert set(np.unique(data.rating).tolist()) <= {x / 2 for x in range(1, 11)}
    assert data.item_features is not None and data.item_features.shape[0] == data.n_items
    assert data.user_features is None
    year = data.item_attributes["release_year"]
    assert np.isfinite(year).mean() > 0.99  # the year comes from the title; a few have none
    if kind == "real":
        assert (data.n_users, data.n_items, data.n_ratings) == (610, 9724, 100_836)
        assert np.unique(data.rating).tolist() == [x / 2 for x in range(1, 11)]


@pytest.mark.parametrize("kind", SOURCES)
def test_filmtrust_duplicates_and_trust(kind: str, generated: Path) -> None:
    ft = source(kind, "filmtrust", generated)
    data = ft.load()
    ratings_file = ft.data_dir / "filmtrust" / "ratings.txt"
    assert data.rating_scale == (0.5, 4.0) and data.like_threshold == 3
    lines = [ln.split() for ln in ratings_file.read_text().splitlines()]
    pairs = Counter((u, i) for u, i, _ in lines)
    repeated = [p for p, n in pairs.items() if n > 1]
    assert data.extras["duplicates_dropped"] == len(lines) - len(pairs) > 0
    assert data.extras["load_report"]["duplicates_dropped"] == data.extras["duplicates_dropped"]
    # A pair rated twice keeps its later line ("last").
    user, item = repeated[-1]
    later = [float(r) for u, i, r in lines if (u, i) == (user, item)][-1]
    assert data.user_ids is not None and data.item_ids is not None
    u = int(np.flatnonzero(data.user_ids == int(user))[0])
    i = int(np.flatnonzero(data.item_ids == int(item))[0])
    assert data.rating[(data.user == u) & (data.item == i)].tolist() == [later]
    edges = data.extras["trust_edges"]
    trust_lines = (ft.data_dir / "filmtrust" / "trust.txt").read_text().splitlines()
    assert edges.shape[1] == 2 and len(edges) + data.extras["trust_edges_dropped"] == len(
        trust_lines
    )
    with pytest.raises(DataError, match=r"ratings.txt: duplicate \(user, item\) pair on lines"):
        ft.load({"duplicates": "error", "cache": False})
    mean = ft.load({"duplicates": "mean", "trust": False})
    assert mean.n_ratings == data.n_ratings and "trust_edges" not in mean.extras
    if kind == "real":
        assert (data.n_users, data.n_items, data.n_ratings) == (1508, 2071, 35_494)
        assert data.extras["duplicates_dropped"] == 3 and len(trust_lines) == 1853
