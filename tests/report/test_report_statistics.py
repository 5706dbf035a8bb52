"""The interval, the paired test and Holm's correction against scipy and hand-worked values; a
planted difference is found and identical learners are never marked different."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bench.evaluation.metrics import DEFAULT_METRICS
from bench.results.analysis import (
    best_marks,
    compare_to_reference,
    holm,
    load_results,
    paired_test,
    summarise,
    t_interval,
)
from bench.results.records import CellRecord, Evaluation
from bench.results.store import ResultStore


def test_t_interval_matches_scipy() -> None:
    values = [0.912, 0.948, 0.887, 0.931, 0.905]
    interval = t_interval(values)
    low, high = stats.t.interval(
        0.95, df=len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
    assert interval.mean == pytest.approx(np.mean(values), abs=1e-15)
    assert interval.low == pytest.approx(low, abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)
    assert interval.n == 5


def test_t_interval_ignores_missing_values_and_needs_two() -> None:
    assert t_interval([0.5, float("nan"), 0.7]).n == 2
    one = t_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.half_width)
    assert math.isnan(t_interval([]).mean)


def test_paired_test_matches_scipy_exact_and_approximate() -> None:
    rng = np.random.default_rng(3)
    for n in (12, 200):  # exact distribution, then the normal approximation with ties
        a = rng.normal(size=n)
        b = a + rng.normal(0.3, 1.0, size=n)
        if n == 200:
            a, b = np.round(a, 1), np.round(b, 1)
        result = paired_test(a, b)
        reference = stats.wilcoxon(a - b)
        assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
        assert result.statistic == pytest.approx(reference.statistic)
        diff = a - b
        low, high = stats.t.interval(0.95, df=n - 1, loc=diff.mean(), scale=stats.sem(diff))
        assert result.difference.low == pytest.approx(low, abs=1e-12)
        assert result.difference.high == pytest.approx(high, abs=1e-12)
        assert result.n_pairs == n


def test_paired_test_leaves_out_unscored_pairs() -> None:
    a = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.5, 7.0, 8.5])
    b = np.array([1.5, np.nan, 3.0, 4.5, 5.2, 6.0, 7.9, 8.0])
    result = paired_test(a, b)
    keep = ~np.isnan(a) & ~np.isnan(b)
    assert result.n_pairs == keep.sum() == 6
    assert result.p_value == pytest.approx(stats.wilcoxon(a[keep] - b[keep]).pvalue)


def test_identical_values_are_not_different() -> None:
    a = np.linspace(0.5, 1.5, 30)
    result = paired_test(a, a.copy())
    assert result.p_value == 1.0 and result.difference.mean == 0.0


def test_holm_against_hand_worked_values() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.02, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.04) and adjusted[2] == pytest.approx(0.04)
    assert math.isnan(adjusted[1])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_planted_difference_is_found_and_twins_are_not_marked(planted_store: Path) -> None:
    results = load_results(planted_store)
    versus = compare_to_reference(results, "mf")
    planted = versus[versus["learner"] == "meta-a"]
    assert set(planted["verdict"]) == {"better"}
    assert (planted["p_holm"] < 1e-6).all()
    lower = planted["metric"].isin(["rmse", "mae"])
    assert planted[lower]["mean_diff"].between(-0.09, -0.07).all()
    assert planted[~lower]["mean_diff"].between(0.07, 0.09).all()

    twin = versus[versus["learner"] == "mf-twin"]
    assert len(twin) == 2 * 2 * len(DEFAULT_METRICS)  # scenarios x k x metrics, cpu only
    assert set(twin["verdict"]) == {"same"}
    assert (twin["p_holm"] == 1.0).all() and (twin["mean_diff"] == 0.0).all()
    # meta-b differs from mf by noise only: the tests keep their 5% error rate per family.
    noise = versus[versus["learner"] == "meta-b"]
    assert (noise["verdict"] != "same").mean() <= 0.05

    marks = best_marks(results, summarise(results))
    assert set(marks[marks["is_best"]]["learner"]) == {"meta-a", "meta-c"}
    cpu = marks[marks["device"] == "cpu"].set_index(["scenario", "k", "metric", "learner"])
    families = {k[:3] for k in cpu.index}
    for key in families:
        assert cpu.loc[(*key, "meta-a")]["not_worse"] and cpu.loc[(*key, "meta-c")]["not_worse"]
        for behind in ("mf", "mf-twin", "meta-b"):
            assert not cpu.loc[(*key, behind)]["not_worse"], (key, behind)
    assert len(families) == 2 * 2 * 8


def test_tasks_are_paired_by_entity_not_by_position(
    tmp_path: Path, make_cell: Callable[..., CellRecord]
) -> None:
    entities = [f"user-{i}" for i in range(30)]
    values = np.linspace(0.2, 1.4, 30)
    order = np.random.default_rng(0).permutation(30)
    # The same values for the same users, stored in another task order.
    stored = {"mf": (entities, values), "same": ([entities[i] for i in order], values[order])}
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.start_run("r", "s", {"learners": ["mf", "same"]}, {})
        for learner, (ids, vals) in stored.items():
            record = make_cell(learner, learner, "r")
            record.evaluations.append(Evaluation("user_cold", "5", ids, [5] * len(ids)))
            record.metrics.append(("user_cold", "5", "mae", float(np.mean(vals)), 30, 0, vals))
            store.write_cell(record)
        store.finish_run("r", "finished", list(stored))
    versus = compare_to_reference(load_results(tmp_path / "s.sqlite"), "mf")
    assert len(versus) == 1
    assert versus["p_holm"].iat[0] == 1.0 and versus["mean_diff"].iat[0] == 0.0
    assert versus["n_pairs"].iat[0] == 30
