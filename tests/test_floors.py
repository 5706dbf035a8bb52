"""Floors on the same tasks as every learner: a constant predictor is degenerate, at floor and
ignores its support, a real learner is none of these; the random floor is the constant's value under expected ties only; the
recbole-metarec split on MovieLens 100K has RecBole-MetaRec's counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.api import run_grid
from bench.cli import main
from bench.results.analysis import Results
from bench.results.analysis.floors import degenerate_cells, floor_marks, marks_by_line

GRID = {
    "datasets": {"synthetic": {"n_users": 200, "n_items": 120}},
    "protocol": {"name": "cold-random", "support_sizes": [5], "query_size": 8},
    "scenarios": ["user_cold"],
    "seeds": 2,
    "metrics": [
        "rmse",
        "mae",
        "ndcg@3",
        "ndcg@10",
        "accuracy",
        "precision@3/query",
        "mrr@3/query",
        "auc",
    ],
    "progress": False,
}
LEARNERS = ["floor-random", "floor-constant", "global-mean", "item-mean"]


def per_task(results: Results, learner: str, metric: str) -> np.ndarray:
    frame = results.per_task
    rows = frame[(frame["learner"] == learner) & (frame["metric"] == metric)]
    return rows.sort_values(["seed", "entity"])["value"].to_numpy(dtype=float)


@pytest.fixture(scope="module")
def expected_ties(tmp_path_factory: pytest.TempPathFactory) -> Results:
    store = tmp_path_factory.mktemp("floors") / "store.sqlite"
    return run_grid(learners=LEARNERS, store=store, **GRID)  # type: ignore[arg-type]


def test_a_constant_predictor_is_degenerate_at_floor_and_ignores_support_a_real_learner_not(
    expected_ties: Results,
) -> None:
    marks = floor_marks(expected_ties)
    at_floor = marks.set_index(["learner", "metric"])["at_floor"]
    for metric in ("ndcg@3", "precision@3/query", "mrr@3/query", "auc"):
        assert bool(at_floor[("global-mean", metric)]), metric
        assert not bool(at_floor[("item-mean", metric)]), metric
    assert not set(marks["learner"]) & {"floor-random", "floor-constant"}
    assert "rmse" not in set(marks["metric"])  # not a ranking metric
    tied = degenerate_cells(expected_ties).set_index("learner")
    assert tied.loc["global-mean", "tied_share"] == 1.0
    assert bool(tied.loc["global-mean", "degenerate"])
    assert tied.loc["item-mean", "tied_share"] < 0.5
    assert not bool(tied.loc["item-mean", "degenerate"])
    lines = {key[4]: words for key, words in marks_by_line(expected_ties).items()}
    assert any(w.startswith("degenerate") for w in lines["global-mean"])
    assert any(w.startswith("at floor: ") and "ndcg@3" in w for w in lines["global-mean"])
    assert "ignores support" in lines["global-mean"]
    assert "item-mean" not in lines  # uses its support: a new user's bias comes from it
    cells = expected_ties.cells
    for learner, ignored in zip(cells["learner"], cells["support_ignored"], strict=True):
        if learner == "global-mean":
            assert ignored == {"user_cold/5": 1.0}
        elif learner == "item-mean":
            assert ignored["user_cold/5"] < 0.5
    assert "floor-random" not in lines and "floor-constant" not in lines


def test_under_expected_ties_both_floors_equal_a_constant_predictor_task_by_task(
    expected_ties: Results,
) -> None:
    for metric in ("ndcg@3", "precision@3/query", "mrr@3/query", "auc"):
        random_floor = per_task(expected_ties, "floor-random", metric)
        assert len(random_floor) > 50
        np.testing.assert_array_equal(random_floor, per_task(expected_ties, "global-mean", metric))
        np.testing.assert_array_equal(
            random_floor, per_task(expected_ties, "floor-constant", metric)
        )


def test_under_query_order_the_constant_floor_departs_from_the_random_one(
    tmp_path: Path, expected_ties: Results
) -> None:
    results = run_grid(
        learners=LEARNERS,
        store=tmp_path / "store.sqlite",
        tie_policy="query-order",
        **GRID,  # type: ignore[arg-type]
    )
    constant = per_task(results, "floor-constant", "ndcg@3")
    # The random floor ignores the suite's policy; the constant one ranks by query order.
    np.testing.assert_array_equal(
        per_task(results, "floor-random", "ndcg@3"),
        per_task(expected_ties, "floor-random", "ndcg@3"),
    )
    np.testing.assert_array_equal(constant, per_task(results, "global-mean", "ndcg@3"))
    assert not np.allclose(constant, per_task(results, "floor-random", "ndcg@3"))
    policies = dict(zip(results.cells["learner"], results.cells["tie_policy"], strict=True))
    assert policies == {
        "floor-random": "expected",
        "floor-constant": "query-order",
        "global-mean": "query-order",
        "item-mean": "query-order",
    }


def test_bench_check_warns_of_a_degenerate_cell_and_fails_with_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "flat.toml"
    suite.write_text(
        'name = "flat"\ndatasets = ["synthetic"]\nscenarios = ["user_cold"]\n'
        'learners = ["global-mean", "item-mean"]\nseeds = 1\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [5]\nquery_size = 6\n'
        "[dataset.synthetic]\nn_users = 120\nn_items = 80\n",
        encoding="utf-8",
    )
    store, baseline = tmp_path / "s.sqlite", tmp_path / "b.json"
    common = ["--store", str(store), "--no-progress"]
    assert main(["baseline", "--suite", str(suite), "--out", str(baseline), *common]) == 0
    capsys.readouterr()
    check = ["check", "--baseline", str(baseline), "--no-timing", *common]
    assert main(check) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: degenerate predictions: global-mean")
    assert "user_cold k=5" in err[0] and "100% of a seed's tasks" in err[0]
    assert main([*check, "--fail-on-degenerate"]) == 1
    assert capsys.readouterr().err.startswith("error: degenerate predictions: global-mean")
