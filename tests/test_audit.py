"""``bench audit``: each planted leak is caught with its offending ids (exit 1), in an exported
split and in the training view a learner is given; every shipped suite passes; ``bench run``
keeps the audit's outcome with each split."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.cards import load_dataset
from bench.engine.suite import SUITES
from bench.protocol import make_protocol
from bench.protocol.audit import audit, check_cut_off
from bench.protocol.episodes import make_meta_train
from bench.protocol.manifest import split_tables

from real_formats import real_data_dir, write

SUITE = """
name = "audit"
datasets = ["synthetic"]
learners = ["global-mean"]
seeds = 1
[protocol]
name = "{protocol}"
support_sizes = [1, 5]
query_size = 5
[dataset.synthetic]
n_users = 150
n_items = 100
"""


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def exported(tmp_path: Path, protocol: str = "cold-random") -> Path:
    suite = write(tmp_path / "audit.toml", SUITE.format(protocol=protocol))
    out = tmp_path / "split"
    assert main(["split", "export", "--suite", str(suite), "--out", str(out)]) == 0
    return out


def read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype={"user": str, "item": str, "task": str})


def audited(split: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["audit", "--split", str(split)])
    return code, capsys.readouterr().out.splitlines()


def failed(lines: list[str]) -> dict[str, str]:
    return {
        line.split("FAIL", 1)[1].strip().split(":", 1)[0]: line
        for line in lines
        if line.strip().startswith("FAIL")
    }


def failure(split: Path, capsys: pytest.CaptureFixture[str], check: str) -> str:
    """The FAIL line of ``check`` in an audit of ``split``, which must exit 1."""
    code, lines = audited(split, capsys)
    assert code == 1, lines
    return failed(lines)[check]


def test_an_exported_split_passes_before_anything_is_planted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = audited(exported(tmp_path), capsys)
    assert code == 0 and lines[-1] == "audit: every check passed"
    assert any("ok    no new user or item in training:" in line for line in lines)


def test_a_new_items_rating_put_back_into_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = exported(tmp_path)
    folder = split / "synthetic" / "seed-0"
    leaked = read(folder, "item_cold/k-1/query").iloc[[3]]
    train = pd.concat([read(folder, "train"), leaked[["user", "item", "rating", "timestamp"]]])
    train.to_csv(folder / "train.csv", index=False)
    line = failure(split, capsys, "no new user or item in training")
    user, item = leaked.iloc[0]["user"], leaked.iloc[0]["item"]
    assert f"1 offending: (user {user}, item {item})" in line


def test_warm_query_ratings_copied_into_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two query ratings of different task tables put into training: each is named, and nothing
    else is (the pairs are looked up in the sorted training pairs, once for every table)."""
    split = exported(tmp_path)
    folder = split / "synthetic" / "seed-0"
    first = read(folder, "warm/k-1/query").iloc[[0]]
    second = read(folder, "warm/k-5/query").iloc[[-1]]
    columns = ["user", "item", "rating", "timestamp"]
    train = pd.concat([read(folder, "train"), first[columns], second[columns]])
    train.to_csv(folder / "train.csv", index=False)
    line = failure(split, capsys, "no query rating in training")
    # the query is the same at every k, so each pair is offending in both warm tables
    for leaked in (first, second):
        pair = f"(user {leaked.iloc[0]['user']}, item {leaked.iloc[0]['item']})"
        assert f"warm k-1: {pair}" in line and f"warm k-5: {pair}" in line
    assert "4 offending" in line


def test_a_query_rating_copied_into_support(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = exported(tmp_path)
    folder = split / "synthetic" / "seed-0"
    query = read(folder, "user_cold/k-5/query")
    support = read(folder, "user_cold/k-5/support")
    copied = query.iloc[[0]].assign(position=5)
    pd.concat([support, copied]).to_csv(folder / "user_cold/k-5/support.csv", index=False)
    line = failure(split, capsys, "support and query disjoint")
    assert f"user_cold k-5: (user {copied.iloc[0]['user']}, item {copied.iloc[0]['item']})" in line


def test_a_query_rating_that_differs_at_another_k(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = exported(tmp_path)
    folder = split / "synthetic" / "seed-0"
    query = read(folder, "user_cold/k-5/query")
    other = next(i for i in read(folder, "items")["id"].astype(str) if i != query.at[2, "item"])
    query.at[2, "item"] = other  # same task and position as at k-1, another item
    query.to_csv(folder / "user_cold/k-5/query.csv", index=False)
    line = failure(split, capsys, "query the same at every k")
    assert f"user_cold task {query.at[2, 'task']} (k-1 vs k-5)" in line and "1 offending" in line


def test_a_validation_user_in_the_test_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = exported(tmp_path)
    folder = split / "synthetic" / "seed-0"
    validation = read(folder, "validation")
    user = validation.iloc[0]["task"]
    theirs = validation[(validation["task"] == user) & (validation["role"] == "query")]
    query = read(folder, "warm/k-1/query")
    moved = theirs.drop(columns="role")[list(query.columns)]
    pd.concat([query, moved]).to_csv(folder / "warm/k-1/query.csv", index=False)
    line = failure(split, capsys, "validation tasks apart from test tasks and training")
    assert f"user {user} in warm k-1" in line


def test_a_validation_user_in_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = exported(tmp_path)
    folder = split / "synthetic" / "seed-0"
    validation = read(folder, "validation")
    users = sorted(set(validation["task"]))[:2]
    train = read(folder, "train")
    theirs = validation[validation["task"].isin(users) & (validation["role"] == "support")]
    moved = theirs.groupby("task").head(1)[list(train.columns)]
    pd.concat([train, moved]).to_csv(folder / "train.csv", index=False)
    line = failure(split, capsys, "validation tasks apart from test tasks and training")
    assert all(f"user {user} in training" in line for user in users) and "2 offending" in line


def test_an_item_mean_computed_with_query_ratings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = exported(tmp_path)
    folder = split / "synthetic" / "seed-0"
    train, query = read(folder, "train"), read(folder, "warm/k-1/query")
    item = query.iloc[0]["item"]
    with_query = pd.concat([train, query])
    means = read(folder, "item_means")
    rows = with_query[with_query["item"] == item]["rating"]
    means.loc[means["item"] == item, ["ratings", "mean"]] = [len(rows), rows.mean()]
    means.to_csv(folder / "item_means.csv", index=False)
    line = failure(split, capsys, "statistics from training only")
    assert f"1 offending: item {item} mean" in line


def test_a_view_whose_training_holds_query_ratings_fails_the_statistics() -> None:
    """The suite's audit looks at the training view a learner is given, not at the split's rows."""
    dataset = load_dataset("synthetic", {"n_users": 150, "n_items": 100})
    protocol = make_protocol("cold-random", {"support_sizes": [1, 5], "query_size": 5})
    split = protocol.split(dataset, 0)
    evaluated = [(s, k) for s in protocol.scenarios for k in (1, 5)]
    clean = split_tables(dataset, protocol, split, 0, evaluated, make_meta_train(dataset, split))
    assert all(check.passed for check in audit(clean))
    queries = np.concatenate(split.scenarios["warm"].queries)
    leaky = replace(split, train=np.sort(np.concatenate([split.train, queries[:1]])))
    view = make_meta_train(dataset, leaky)
    checks = {c.name: c for c in audit(split_tables(dataset, protocol, split, 0, evaluated, view))}
    item = dataset.raw_ids("item", dataset.item[queries[:1]])[0]
    assert checks["statistics from training only"].offending == [f"item {item} mean"]


def test_a_support_rating_after_the_query_in_a_temporal_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = exported(tmp_path, "temporal")
    folder = split / "synthetic" / "seed-0"
    code, lines = audited(split, capsys)
    assert code == 0 and any("ok    nothing after a task's cut-off" in line for line in lines)
    support = read(folder, "user_cold/k-1/support")
    late = support.iloc[0]["task"]
    support.loc[0, "timestamp"] = 2**40
    support.to_csv(folder / "user_cold/k-1/support.csv", index=False)
    line = failure(split, capsys, "nothing after a task's cut-off")
    assert f"user_cold k-1 task {late}: support after its query" in line


def test_the_cut_off_is_checked_only_in_temporal_protocols(tmp_path: Path) -> None:
    from bench.engine.split_export import load_tables

    tables = load_tables(exported(tmp_path))[0]
    assert not tables.temporal
    assert "nothing after a task's cut-off" not in {c.name for c in audit(tables)}
    assert check_cut_off(replace(tables, temporal=True)).checked > 0


@pytest.mark.parametrize("name", ["ci", "default", "meta"])
def test_every_synthetic_shipped_suite_passes(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--suite", name, "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("  ok  ") == 6 and "FAIL" not in out


@pytest.mark.real_data
@pytest.mark.parametrize(
    "name",
    ["ml100k-cold", "ml100k-warm", "ml100k-recbole-metarec", "ml100k-robust", "ml100k-attack"],
)
def test_every_ml100k_shipped_suite_passes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = real_data_dir("ml-100k")
    assert main(["audit", "--suite", name, "--data-dir", str(data)]) == 0
    assert "audit: every check passed" in capsys.readouterr().out


def test_every_shipped_suite_is_audited_here() -> None:
    assert set(SUITES.names()) == {
        "ci",
        "default",
        "meta",
        "ml100k-cold",
        "ml100k-warm",
        "ml100k-recbole-metarec",
        "ml100k-robust",
        "ml100k-attack",
    }


def test_run_keeps_the_audit_with_each_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.results.analysis import load_results

    suite = write(tmp_path / "audit.toml", SUITE.format(protocol="cold-random"))
    store = tmp_path / "s.sqlite"
    assert main(["run", "--suite", str(suite), "--store", str(store), "--no-progress"]) == 0
    assert "leakage audit passed (6 checks)" in capsys.readouterr().out
    coverage = load_results(store).coverage
    assert set(coverage["audit"]) == {"passed"}


def test_statistics_a_split_computes_are_checked_against_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file without a declared scale or like threshold: the split likes its training median
    and the scale is the observed range; an edited threshold or an extra level is caught."""
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 120, 9000), rng.integers(0, 80, 9000)
    ratings = pd.DataFrame({"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items]})
    ratings["rating"] = rng.integers(1, 11, len(ratings)) / 2
    ratings["timestamp"] = rng.integers(0, 10**6, len(ratings))
    ratings = ratings.drop_duplicates(["user", "item"])
    source = tmp_path / "mine.csv"
    ratings.to_csv(source, index=False)
    text = SUITE.format(protocol="cold-random").split("[dataset.synthetic]")[0]
    suite = write(tmp_path / "mine.toml", text.replace('"synthetic"', f'"csv:{source}"'))
    out = tmp_path / "split"
    assert main(["split", "export", "--suite", str(suite), "--out", str(out)]) == 0
    assert main(["split", "verify", str(out)]) == 0
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    entry = manifest["splits"][0]
    assert entry["like_threshold_source"] == "median of the training ratings"
    assert entry["rating_scale_from"] == "inferred"
    assert audited(out, capsys)[0] == 0
    entry["like_threshold"] += 0.5
    entry["rating_levels"] = [*entry["rating_levels"], 5.25]
    path.write_text(json.dumps(manifest))
    line = failure(out, capsys, "statistics from training only")
    assert "training median" in line and "rating levels 5.25 given" in line
