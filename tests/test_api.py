"""The Python API end to end on small synthetic grids: its frames are the rows ``bench export``
writes, a grid equals its suite file, a second call reuses every cell, bad input names its field,
and the example of the Python API page runs as printed."""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import attrgetter, methodcaller
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench import api
from bench.cli import main
from bench.engine.suite import load_suite
from bench.errors import BenchError
from bench.evaluation.floors import FLOORS
from bench.protocol.learner_registry import LEARNERS
from bench.results.analysis import ROW_KEYS
from learners.baselines import GlobalMean

API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "python-api.md"

# A grid of a few seconds, written once as a suite file and once as run_grid's arguments.
GRID_TOML = """
name = "tiny"
datasets = ["synthetic"]
learners = ["item-mean", "mf"]
scenarios = ["warm", "user_cold"]
seeds = 2

[protocol]
name = "cold-random"
support_sizes = [1, 3]
query_size = 4

[learner.mf]
rank = 4

[dataset.synthetic]
n_users = 60
n_items = 40
min_ratings_per_user = 10
"""
GRID: dict[str, Any] = {
    "datasets": {"synthetic": {"n_users": 60, "n_items": 40, "min_ratings_per_user": 10}},
    "learners": {"item-mean": None, "mf": {"rank": 4}},
    "protocol": {"name": "cold-random", "support_sizes": [1, 3], "query_size": 4},
    "scenarios": ["warm", "user_cold"],
    "seeds": 2,
}
# What each export flag writes, and where the API's Results hold the same rows.
EXPORTS: dict[str, tuple[list[str], Callable[[api.Results], pd.DataFrame]]] = {
    "metrics": ([], attrgetter("metrics")),
    "timings": (["--timings"], attrgetter("timings")),
    "per-task": (["--per-task"], attrgetter("per_task")),
    "predictions": (["--predictions"], attrgetter("predictions")),
    "summary": (["--summary"], methodcaller("summary")),
}


class FailingFit(GlobalMean):
    """global-mean whose fit always raises."""

    def fit(self, train: Any, **kwargs: Any) -> None:
        raise RuntimeError("fit stopped on purpose")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, api.Results]:
    """The shipped ``ci`` suite run through the API into a store that holds another run too."""
    store = tmp_path_factory.mktemp("api") / "results.sqlite"
    api.run_grid(**GRID, store=store, keep_predictions=True, progress=False)
    results = api.run("ci", store=store, keep_predictions=True, progress=False)
    return store, results


def exported(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> str:
    assert main(["export", "--format", "csv", "--store", str(store), *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("kind", list(EXPORTS))
def test_run_returns_the_rows_bench_export_writes_for_the_run(
    shipped: tuple[Path, api.Results], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    store, results = shipped
    assert results.outcome is not None
    run_id = results.outcome.run_id
    flags, rows = EXPORTS[kind]
    frame = rows(results)
    assert len(frame) > 0
    text = exported(capsys, store, *flags, "--run", run_id)
    assert frame.to_csv(index=False).splitlines() == text.splitlines()
    # The store holds a second run: without --run, export writes more rows than the API returned.
    everything = exported(capsys, store, *flags)
    assert len(everything.splitlines()) > len(text.splitlines())


def test_run_covers_the_suites_grid_and_records_its_outcome(
    shipped: tuple[Path, api.Results],
) -> None:
    _, results = shipped
    suite = load_suite("ci")
    assert results.outcome is not None
    # The suite's 4 learners and the 2 floor learners that run by default, over 2 seeds.
    assert set(FLOORS) < set(suite.learners) and len(suite.learners) == 6
    assert (results.outcome.computed, results.outcome.reused) == (12, 0)
    assert not results.outcome.failed and results.failures.empty
    assert sorted(results.cell_keys) == sorted(results.outcome.cell_keys)
    cells = results.cells
    assert set(cells["learner"]) == set(suite.learners)
    assert set(cells["seed"]) == set(suite.seeds)
    assert set(results.metrics["scenario"]) == set(suite.scenarios)
    assert set(results.metrics["k"]) == {"1", "5"}
    assert list(results.runs["run_id"]) == [results.outcome.run_id]
    assert set(results.predictions["cell_key"]) == set(results.cell_keys)


def test_load_reads_back_a_run_and_the_whole_store(shipped: tuple[Path, api.Results]) -> None:
    store, results = shipped
    assert results.outcome is not None
    again = api.load(store, run_id=results.outcome.run_id)
    assert again.outcome is None
    pd.testing.assert_frame_equal(again.metrics, results.metrics)
    pd.testing.assert_frame_equal(again.per_task, results.per_task)
    pd.testing.assert_frame_equal(again.summary(), results.summary())
    whole = api.load(store)
    assert set(results.cell_keys) < set(whole.cell_keys)
    assert len(whole.runs) == 2


def test_a_second_run_computes_nothing_and_returns_the_same_rows(
    shipped: tuple[Path, api.Results],
) -> None:
    store, first = shipped
    second = api.run("ci", store=store, keep_predictions=True, progress=False)
    assert second.outcome is not None and first.outcome is not None
    assert (second.outcome.computed, second.outcome.reused) == (0, 12)
    assert second.outcome.run_id != first.outcome.run_id
    pd.testing.assert_frame_equal(second.metrics, first.metrics)
    pd.testing.assert_frame_equal(second.predictions, first.predictions)


def test_run_grid_equals_its_suite_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(GRID_TOML, encoding="utf-8")
    from_file = api.run(path, store=tmp_path / "file.sqlite", progress=False)
    grid = api.run_grid(**GRID, store=tmp_path / "grid.sqlite", progress=False)
    assert grid.outcome is not None and from_file.outcome is not None
    # Both run the floors by default: (2 learners + 2 floors) x 2 seeds.
    assert grid.outcome.computed == from_file.outcome.computed == 8
    assert sorted(grid.cell_keys) == sorted(from_file.cell_keys)
    assert set(grid.cells["learner"]) == {"item-mean", "mf", *FLOORS}
    keys = [*ROW_KEYS, "metric", "cell_key"]

    def values(results: api.Results) -> pd.DataFrame:
        rows = results.metrics[[*keys, "value", "n_tasks", "n_scored"]]
        return rows.sort_values(keys).reset_index(drop=True)

    pd.testing.assert_frame_equal(values(grid), values(from_file))
    # The same cells: the grid run on the file's store reuses all of them.
    reused = api.run_grid(**GRID, store=tmp_path / "file.sqlite", progress=False)
    assert reused.outcome is not None
    assert (reused.outcome.computed, reused.outcome.reused) == (0, 8)
    # floors=False is the suite key floors = false: the same cells less the floors'.
    bare = api.run_grid(**GRID, floors=False, store=tmp_path / "file.sqlite", progress=False)
    assert bare.outcome is not None and (bare.outcome.computed, bare.outcome.reused) == (0, 4)
    assert set(bare.cells["learner"]) == {"item-mean", "mf"}


def test_overrides_narrow_the_suite_and_config_overrides_make_new_cells(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    alone = {"store": store, "floors": False, "progress": False}  # the named learners only
    narrow = api.run("ci", learners=["item-mean"], scenarios="warm", seeds=[1], **alone)
    assert set(narrow.cells["learner"]) == {"item-mean"}
    assert set(narrow.metrics["scenario"]) == {"warm"}
    assert set(narrow.cells["seed"]) == {1}
    configured = api.run("ci", learners={"mf": {"rank": 3}}, seeds=1, **alone)
    assert configured.cells["config"].iloc[0]["rank"] == 3
    default_mf = api.run("ci", learners=["mf"], seeds=1, **alone)
    assert default_mf.cells["config"].iloc[0]["rank"] != 3
    assert set(default_mf.cell_keys).isdisjoint(configured.cell_keys)


def test_a_failing_cell_is_reported_and_the_others_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Registered here, not on import: tests that collect every learner name must not see it.
    if "test-api-failing" not in LEARNERS:
        LEARNERS.register("test-api-failing", FailingFit)
    grid = {**GRID, "learners": ["item-mean", "test-api-failing"], "floors": False}
    results = api.run_grid(**grid, store=tmp_path / "s.sqlite", progress=False)
    assert results.outcome is not None
    assert results.outcome.computed == 2 and len(results.outcome.failed) == 2
    assert set(results.cells["learner"]) == {"item-mean"}
    assert len(results.failures) == 2
    assert all("fit stopped on purpose" in t for t in results.failures["traceback"])
    assert "cell failed" in capsys.readouterr().err


def run_bad(call: str, store: Path, **kwargs: Any) -> None:
    if call == "run":
        api.run("ci", store=store, progress=False, **kwargs)
    else:
        api.run_grid(**{**GRID, **kwargs}, store=store, progress=False)


@pytest.mark.parametrize(
    ("call", "kwargs", "message"),
    [
        ("run", {"learners": ["nope"]}, r"api\.run\(learners=\.\.\.\): unknown learner 'nope'"),
        ("run", {"seeds": 0}, r"api\.run\(seeds=\.\.\.\): 'seeds' must be a count"),
        ("run", {"devices": ["gpu"]}, r"api\.run\(devices=\.\.\.\): device must be"),
        ("run", {"scenarios": ["cold"]}, r"api\.run\(scenarios=\.\.\.\): unknown scenario 'cold'"),
        ("run", {"datasets": ["nowhere"]}, r"api\.run\(datasets=\.\.\.\): unknown dataset"),
        ("run", {"learners": {"mf": {"rnk": 1}}}, r"unknown field 'rnk' .*in \[learner\.mf\]"),
        ("run", {"learners": {"mf": 3}}, r"api\.run\(learners=\.\.\.\): the config of 'mf'"),
        ("run", {"learners": 5}, r"api\.run\(learners=\.\.\.\): expected a list of names"),
        ("grid", {"learners": ["nope"]}, r"api\.run_grid\(\): unknown learner 'nope'"),
        ("grid", {"seeds": [1, 1]}, r"api\.run_grid\(\): 'seeds' lists a seed twice"),
        ("grid", {"protocol": "cold-rand"}, r"unknown protocol 'cold-rand'; did you mean"),
        (
            "grid",
            {"protocol": {"name": "cold-random", "query": 2}},
            r"unknown field 'query' .*in \[protocol\]",
        ),
        ("grid", {"learners": {"mf": {"rank": "x"}}}, r"field 'rank' in \[learner\.mf\] expects"),
        ("grid", {"ndcg_gain": "cubic"}, r"api\.run_grid\(\): ndcg_gain must be one of"),
    ],
)
def test_bad_input_raises_a_bench_error_naming_the_field_and_writes_nothing(
    tmp_path: Path, call: str, kwargs: dict[str, Any], message: str
) -> None:
    store = tmp_path / "s.sqlite"
    with pytest.raises(BenchError, match=message):
        run_bad(call, store, **kwargs)
    assert not store.exists()


def test_unknown_suites_stores_and_runs_are_bench_errors(
    shipped: tuple[Path, api.Results], tmp_path: Path
) -> None:
    store, _ = shipped
    with pytest.raises(BenchError, match=r"unknown suite 'nosuite'"):
        api.run("nosuite", store=tmp_path / "s.sqlite")
    with pytest.raises(BenchError, match=r"suite file .*missing\.toml does not exist"):
        api.run(tmp_path / "missing.toml", store=tmp_path / "s.sqlite")
    with pytest.raises(BenchError, match=r"absent\.sqlite does not exist"):
        api.load(tmp_path / "absent.sqlite")
    with pytest.raises(BenchError, match=r"api\.load\(run_id=\.\.\.\): no run 'nosuchrun'"):
        api.load(store, run_id="nosuchrun")


def documented_example() -> str:
    text = API_PAGE.read_text(encoding="utf-8")
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found, f"{API_PAGE}: the page has no python code block"
    return found.group(1)


def test_the_documented_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH_STORE", raising=False)
    namespace: dict[str, Any] = {}
    exec(compile(documented_example(), str(API_PAGE), "exec"), namespace)
    out = capsys.readouterr().out
    assert "half_width" in out and "cells computed" in out
    results, grid, again = namespace["results"], namespace["grid"], namespace["again"]
    assert (tmp_path / ".bench" / "results.sqlite").is_file()
    # The default suite's 4 learners and the 2 floors, 2 seeds; the grid runs the floors too.
    assert results.outcome.computed == 12
    assert set(results.cells["learner"]) >= set(FLOORS)
    assert set(grid.cells["learner"]) == {"item-mean", "mf", *FLOORS}
    pd.testing.assert_frame_equal(again.metrics, grid.metrics)


def test_a_process_pool_stores_the_rows_the_local_executor_stores(tmp_path: Path) -> None:
    local = api.run("ci", store=tmp_path / "local.sqlite", seeds=1, progress=False)
    pooled = api.run(
        "ci",
        store=tmp_path / "pool.sqlite",
        seeds=1,
        progress=False,
        executor="process",
        workers=2,
    )
    columns = ["dataset", "scenario", "k", "learner", "seed", "metric", "value"]
    ordered = [local.metrics[columns], pooled.metrics[columns]]
    left, right = (f.sort_values(columns[:6]).reset_index(drop=True) for f in ordered)
    pd.testing.assert_frame_equal(left, right)
    assert sorted(local.cell_keys) == sorted(pooled.cell_keys)


def test_executor_arguments_are_checked_with_the_apis_names(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"api\.run\(executor='local'\): workers needs"):
        api.run("ci", store=tmp_path / "s.sqlite", workers=2)
    with pytest.raises(BenchError, match=r"api\.run_grid\(executor='nope'\): executor must be"):
        api.run_grid(**GRID, store=tmp_path / "s.sqlite", executor="nope")
    assert not (tmp_path / "s.sqlite").exists()
