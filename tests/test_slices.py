"""Natural slices: entity attributes from the split (never the query), quantile buckets by hand,
bucket aggregation that adds back up to the stored metric, the report section, and bad settings
refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.data.dataset import Dataset
from bench.engine.runner import run_suite
from bench.engine.suite import suite_from_dict
from bench.errors import BenchError, ConfigError
from bench.evaluation.floors import FLOORS
from bench.protocol import make_protocol
from bench.protocol.slices import entity_attributes
from bench.results.analysis import load_results
from bench.results.analysis.frames import Results
from bench.results.analysis.slices import (
    UNDEFINED,
    assign_buckets,
    bucket_edges,
    bucketed_tasks,
    has_slices,
    pooled,
    sliced_metrics,
)
from bench.results.report import ReportOptions, build_document
from bench.results.report.markdown import render_markdown
from bench.results.store import ResultStore


@pytest.mark.parametrize("scenario", ["warm", "user_cold", "item_cold"])
def test_attributes_count_training_and_pool_ratings_but_never_the_query(
    small_dataset: Dataset, scenario: str
) -> None:
    split = make_protocol("cold-random", {"support_sizes": [3], "query_size": 5}).split(
        small_dataset, 0
    )
    tasks = split.scenarios[scenario]
    values = entity_attributes(small_dataset, split, tasks)
    train = set(split.train.tolist())
    for t in range(0, len(tasks), 7):
        user = int(tasks.entities[t])
        own = {i for i in np.flatnonzero(small_dataset.user == user).tolist() if i in train}
        rows = sorted(own | set(tasks.pools[t].tolist()))
        assert not set(rows) & set(tasks.queries[t].tolist())
        ratings = small_dataset.rating[rows].astype(np.float64)
        assert values["activity"][t] == len(rows)
        assert values["coherence"][t] == pytest.approx(ratings.std())
    if scenario == "user_cold":  # a new user: nothing in training, its pool is its history
        assert values["activity"].tolist() == [len(p) for p in tasks.pools]


def test_quantile_buckets_by_hand() -> None:
    edges = bucket_edges(np.array([1.0, 2, 3, 4, 5, 6]), 3)
    assert edges.tolist() == [2.0, 4.0]
    assert assign_buckets(np.array([1.0, 2, 3, 4, 5, 6, np.nan]), edges).tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        UNDEFINED,
    ]
    # ties merge buckets; the largest value never opens an empty top bucket
    assert bucket_edges(np.array([1.0, 1, 1, 1, 5]), 3).tolist() == [1.0]
    assert bucket_edges(np.array([3.0, 3, 3]), 3).tolist() == []


def test_pooled_aggregation_matches_the_metrics_own() -> None:
    errors = [np.array([1.0, -1.0]), np.array([2.0, 0.0, 0.0, 0.0])]
    per_task_rmse = np.array([np.sqrt((e**2).mean()) for e in errors])
    n = np.array([2, 4])
    everything = np.concatenate(errors)
    assert pooled("rmse", per_task_rmse, n) == pytest.approx(np.sqrt((everything**2).mean()))
    per_task_mae = np.array([np.abs(e).mean() for e in errors])
    assert pooled("mae", per_task_mae, n) == pytest.approx(np.abs(everything).mean())
    assert pooled("ndcg@3", np.array([0.5, np.nan, 1.0]), np.array([3, 3, 3])) == 0.75


def suite(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "slices-test",
        "datasets": ["synthetic"],
        "scenarios": ["warm", "user_cold", "item_cold"],
        "learners": ["global-mean", "mf"],
        "seeds": 2,
        "protocol": {"name": "cold-random", "support_sizes": [5], "query_size": 5},
        "dataset": {"synthetic": {"n_users": 120, "n_items": 80}},
        "learner": {"mf": {"rank": 4, "iterations": 3}},
    }
    raw.update(extra)
    return raw


def run(tmp_path: Path, **extra: Any) -> Results:
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        outcome = run_suite(suite_from_dict(suite(**extra), "slices-test"), store, progress=False)
    assert not outcome.failed
    return load_results(path)


@pytest.fixture(scope="module")
def sliced(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return run(tmp_path_factory.mktemp("sliced"), slices=["activity", "coherence"])


def test_buckets_add_back_up_to_the_stored_metric(sliced: Results) -> None:
    assert has_slices(sliced)
    for attribute in ("activity", "coherence"):
        tasks = bucketed_tasks(sliced, attribute, ("rmse",))
        per_task = sliced.per_task
        clean = per_task[(per_task["metric"] == "rmse") & ~per_task["scenario"].str.contains("~")]
        assert len(tasks) == len(clean)  # every task lands in a bucket
        # one attribute per (seed, entity), whatever the learner
        assert (tasks.groupby(["scenario", "seed", "entity"])[attribute].nunique() == 1).all()
        metrics = sliced.metrics.set_index(["scenario", "learner", "seed", "metric"])["value"]
        for (scenario, learner, seed), group in tasks.groupby(["scenario", "learner", "seed"]):
            whole = pooled("rmse", group["value"].to_numpy(), group["n_ratings"].to_numpy())
            assert whole == pytest.approx(metrics[(scenario, learner, seed, "rmse")], rel=1e-9)
        table = sliced_metrics(sliced, attribute)
        assert set(table["bucket"]) <= {0, 1, 2, UNDEFINED} and len(set(table["bucket"])) >= 2
        # buckets hold disjoint ranges of the attribute, in order
        spans = table.drop_duplicates(["scenario", "bucket"]).sort_values(["scenario", "bucket"])
        for _, rows in spans.groupby("scenario"):
            assert (rows["low"].to_numpy()[1:] > rows["high"].to_numpy()[:-1]).all()
        per_seed = tasks.groupby(["scenario", "learner", "bucket", "seed"]).size()
        counted = per_seed.groupby(["scenario", "learner", "bucket"]).mean()
        for row in table.itertuples(index=False):
            assert row.n_tasks == counted[(row.scenario, row.learner, row.bucket)]
            assert row.n_seeds == 2


def test_the_report_shows_the_slices(sliced: Results) -> None:
    text = render_markdown(build_document(sliced, ReportOptions(reference="mf")), Path("."))
    assert "## Results by slice of the test entities" in text
    assert "user_cold, k=5: rmse by activity" in text
    assert "warm, k=5: rmse by coherence" in text
    # the analysis slices every learner; the report leaves the floors out of a rating metric,
    # where each predicts one constant
    assert set(FLOORS) <= set(sliced_metrics(sliced)["learner"])
    section = text.split("## Results by slice")[1].split("\n## ")[0]
    assert "| mf |" in section and not any(f"| {floor} |" in section for floor in FLOORS)


def test_without_the_setting_nothing_is_stored_and_keys_stay(
    tmp_path: Path, sliced: Results
) -> None:
    plain = run(tmp_path)
    assert not has_slices(plain)
    assert sliced_metrics(plain).empty
    from bench.results.export import rows_of

    with pytest.raises(BenchError, match="holds no slice attributes"):
        rows_of(plain, "slices")
    assert set(plain.cells["cell_key"]).isdisjoint(sliced.cells["cell_key"])
    text = render_markdown(build_document(plain, ReportOptions(reference="mf")), Path("."))
    assert "Results by slice" not in text
    keys = ["scenario", "learner", "seed", "metric", "value"]
    same = plain.metrics[keys].sort_values(keys[:-1]).to_numpy().tolist()
    assert same == sliced.metrics[keys].sort_values(keys[:-1]).to_numpy().tolist()


@pytest.mark.parametrize(
    ("value", "words"),
    [(["activity", "mood"], "unknown attribute 'mood'"), (["activity", "activity"], "twice")],
)
def test_bad_slices_are_refused(value: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=f"slices.*{words}"):
        suite_from_dict(suite(slices=value), "s.toml")


def test_the_attributes_export_and_join_the_per_task_rows(
    sliced: Results, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main
    from bench.results.export import rows_of

    frame = rows_of(sliced, "slices")
    assert set(frame.columns) >= {"cell_key", "scenario", "entity", "activity", "coherence"}
    joined = sliced.per_task.merge(frame, on=["cell_key", "scenario", "entity"])
    clean = sliced.per_task[~sliced.per_task["scenario"].str.contains("~")]
    assert len(joined) == len(clean) and joined["activity"].notna().all()
    out = tmp_path / "slices.csv"
    assert main(["export", "--store", str(sliced.path), "--slices", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines()[0].startswith("cell_key,scenario,entity")
