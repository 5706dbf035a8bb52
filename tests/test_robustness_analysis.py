"""The robustness analysis on hand-computed curves, and on a run: slope through the origin,
normalised area, breakdown strength, paired degradation tests, and a support-blind learner's flat
line under every kind."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.engine.runner import run_suite
from bench.engine.suite import load_suite, suite_from_dict
from bench.evaluation.floors import FLOORS
from bench.protocol.learner_registry import learner_class
from bench.results.analysis import load_results
from bench.results.analysis.robustness import (
    breakdown_strength,
    degradation_slope,
    normalised_area,
    paired_degradation,
    robustness_curves,
    robustness_summary,
    robustness_verdict,
    robustness_verdicts,
)
from bench.results.report import ReportOptions, build_document
from bench.results.report.markdown import render_markdown
from bench.results.store import ResultStore

STRENGTHS = np.array([0.0, 0.2, 0.4, 0.8])


def test_slope_through_the_origin_by_hand() -> None:
    # ΔM = 0, 0.1, 0.1, 0.5: Σ sΔ = 0.02 + 0.04 + 0.4 = 0.46; Σ s² = 0.04 + 0.16 + 0.64 = 0.84
    deltas = np.array([0.0, 0.1, 0.1, 0.5])
    assert degradation_slope(STRENGTHS, deltas) == pytest.approx(0.46 / 0.84)
    assert degradation_slope(STRENGTHS, 2 * STRENGTHS) == pytest.approx(2.0)
    assert math.isnan(degradation_slope(np.array([0.0]), np.array([0.0])))


def test_normalised_area_by_hand() -> None:
    # trapezoids: 0.2·(0+0.1)/2 + 0.2·(0.1+0.1)/2 + 0.4·(0.1+0.5)/2 = 0.01 + 0.02 + 0.12 = 0.15
    deltas = np.array([0.0, 0.1, 0.1, 0.5])
    assert normalised_area(STRENGTHS, deltas) == pytest.approx(0.15 / 0.8)
    # a straight line ΔM = c·s has mean c·s_max/2 over the range; strength 0 may be left out
    assert normalised_area(STRENGTHS[1:], 3 * STRENGTHS[1:]) == pytest.approx(1.2)


def test_breakdown_strength_by_hand() -> None:
    learner = np.array([0.80, 0.85, 0.95, 1.20])
    baseline = np.array([0.90, 0.90, 0.90, 0.90])
    assert breakdown_strength(STRENGTHS, learner, baseline, higher_better=False) == 0.4
    assert math.isnan(breakdown_strength(STRENGTHS, learner - 0.5, baseline, False))
    # higher is better: worse means below
    assert breakdown_strength(STRENGTHS, 1 - learner, 1 - baseline, higher_better=True) == 0.4
    # order of the strengths does not matter
    shuffled = np.array([3, 0, 2, 1])
    assert breakdown_strength(STRENGTHS[shuffled], learner[shuffled], baseline, False) == 0.4


@pytest.fixture(scope="module")
def robust_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "results.sqlite"
    raw = {
        "name": "robust-analysis",
        "datasets": ["synthetic"],
        "scenarios": ["user_cold"],
        "learners": ["global-mean", "item-mean", "mf"],
        "seeds": 3,
        "protocol": {"name": "cold-random", "support_sizes": [10], "query_size": 5},
        "dataset": {"synthetic": {"n_users": 150, "n_items": 80}},
        "learner": {"mf": {"rank": 4, "iterations": 3}},
        "robustness": {
            "kinds": ["gauss", "flip", "reverse", "outlier", "drop"],
            "strengths": [0, 0.3, 0.6, 1.0],
            "baseline": "global-mean",
        },
    }
    with ResultStore(path) as store:
        outcome = run_suite(suite_from_dict(raw, "robust.toml"), store, progress=False)
    assert not outcome.failed
    return path


def test_a_support_blind_learner_is_flat_under_every_kind(robust_store: Path) -> None:
    results = load_results(robust_store)
    summary = robustness_summary(results, ("rmse", "mae"), baseline="global-mean")
    assert set(summary["kind"]) == {"gauss", "flip", "reverse", "outlier", "drop"}
    blind = summary[summary["learner"] == "global-mean"]
    assert len(blind) == 10 and (blind["slope"] == 0).all() and (blind["area"] == 0).all()
    used = summary[(summary["learner"] == "mf") & (summary["metric"] == "rmse")]
    assert (used.set_index("kind")["slope"][["reverse", "outlier"]] > 0).all()


def test_curves_and_summary_match_the_stored_rows(robust_store: Path) -> None:
    results = load_results(robust_store)
    curves = robustness_curves(results)
    metrics = results.metrics[(results.metrics["metric"] == "rmse")]
    mf = metrics[metrics["learner"] == "mf"].set_index(["scenario", "seed"])["value"]
    clean = np.array([mf[("user_cold", s)] for s in range(3)])
    dirty = np.array([mf[("user_cold~outlier@0.6", s)] for s in range(3)])
    row = curves[
        (curves["learner"] == "mf") & (curves["kind"] == "outlier") & (curves["strength"] == 0.6)
    ].iloc[0]
    assert row["mean"] == pytest.approx(dirty.mean())
    assert row["delta"] == pytest.approx((dirty - clean).mean())
    # the slope over seeds is the mean of each seed's least-squares slope
    strengths = [0.3, 0.6, 1.0]
    per_seed = []
    for seed in range(3):
        deltas = [mf[(f"user_cold~outlier@{s:g}", seed)] - clean[seed] for s in strengths]
        per_seed.append(np.dot(strengths, deltas) / np.dot(strengths, strengths))
    summary = robustness_summary(results, baseline="global-mean")
    line = summary[(summary["learner"] == "mf") & (summary["kind"] == "outlier")].iloc[0]
    assert line["slope"] == pytest.approx(np.mean(per_seed))
    assert line["baseline"] == "global-mean"


def test_paired_degradation_and_the_report(robust_store: Path) -> None:
    results = load_results(robust_store)
    paired = paired_degradation(results)
    outlier = paired[(paired["kind"] == "outlier") & (paired["strength"] == 1.0)]
    versus = outlier[(outlier["learner"] == "global-mean") & (outlier["other"] == "mf")].iloc[0]
    # global-mean does not degrade; mf does on every seed: global-mean degrades less
    assert versus["mean_diff"] < 0 and versus["verdict"] == "less"
    assert (paired["p_holm"] >= paired["p_value"]).all()
    text = render_markdown(build_document(results, ReportOptions(reference="mf")), Path("."))
    assert "## Robustness to corrupted support sets" in text
    assert "user_cold, k=10, outlier: rmse" in text
    assert "## synthetic · cold-random@0 · user_cold~" not in text
    assert "user_cold~" not in text.split("## Robustness")[0]


FEWER = {"melu": {"epochs": 1}, "fine-tune": {"epochs": 1}}


def quick(name: str) -> dict[str, Any]:
    return dict(getattr(learner_class(name), "quick_config", {}))


def test_the_shipped_suite_in_a_test_sized_form(tmp_path: Path) -> None:
    """ml100k-robust as shipped, on small synthetic data with one seed, k = 5 and quick configs:
    every learner fits once and is evaluated at every (kind, strength) of both scenarios."""
    suite = load_suite("ml100k-robust")
    small = replace(
        suite,
        datasets=("synthetic",),
        dataset={"synthetic": {"n_users": 100, "n_items": 80}},
        protocol={"name": "cold-random", "support_sizes": [5], "query_size": 5},
        seeds=(0,),
        learner={name: {**quick(name), **FEWER.get(name, {})} for name in suite.learners},
    )
    with ResultStore(tmp_path / "r.sqlite") as store:
        outcome = run_suite(small, store, progress=False)
    assert not outcome.failed
    results = load_results(tmp_path / "r.sqlite")
    labels = set(results.metrics["scenario"])
    assert len(labels) == 2 + 2 * 5 * 5  # clean, and five kinds at five strengths above 0
    fits = results.timings[results.timings["phase"] == "fit"]
    assert len(fits) == len(suite.learners)
    summary = robustness_summary(results)
    # the floors run beside the suite's learners but ignore the support: left out
    assert FLOORS and set(FLOORS) <= set(results.cells["learner"])
    assert set(summary["learner"]) == set(suite.learners) - set(FLOORS)
    assert not set(robustness_verdicts(results)[["learner", "other"]].stack()) & set(FLOORS)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # A flatter, significantly less degraded at both top strengths, as accurate: robust
        ((0.1, 0.5, [True, True], 0.90, 0.90, True), "more robust"),
        # flatter but its clean error is 0.05 worse than B's (delta 0.01)
        ((0.1, 0.5, [True, True], 0.95, 0.90, True), "flatter but less accurate"),
        # flatter, but the paired difference is not significant at one of the top strengths
        ((0.1, 0.5, [True, False], 0.90, 0.90, True), "no difference"),
        # B ignores its support: its flat line says nothing about robustness
        ((0.1, 0.5, [True, True], 0.90, 0.90, False), "no difference"),
        # A is steeper
        ((0.5, 0.1, [True, True], 0.90, 0.90, True), "no difference"),
        # within delta: 0.005 worse is allowed
        ((0.1, 0.5, [True, True], 0.905, 0.90, True), "more robust"),
    ],
)
def test_the_verdict_rule_on_constructed_cases(case: tuple[Any, ...], expected: str) -> None:
    assert robustness_verdict(*case)[0] == expected


def test_the_verdict_rule_for_a_metric_where_higher_is_better() -> None:
    # NDCG falls under corruption: a slope of -0.1 is flatter than -0.5
    assert robustness_verdict(-0.1, -0.5, [True, True], 0.80, 0.80, True, True)[0] == (
        "more robust"
    )
    assert robustness_verdict(-0.1, -0.5, [True, True], 0.70, 0.80, True, True)[0] == (
        "flatter but less accurate"
    )


def test_verdicts_on_a_run(robust_store: Path) -> None:
    results = load_results(robust_store)
    verdicts = robustness_verdicts(results, baseline="global-mean")
    outlier = verdicts[(verdicts["kind"] == "outlier")].set_index(["learner", "other"])
    # global-mean is flatter than mf but far less accurate on clean data
    assert outlier.loc[("global-mean", "mf"), "verdict"] == "flatter but less accurate"
    # mf against the support-blind global-mean: mf is steeper, no difference in its favour
    assert outlier.loc[("mf", "global-mean"), "verdict"] == "no difference"
