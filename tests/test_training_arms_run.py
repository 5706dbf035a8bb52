"""Training-data arms in a run: one refit per arm on the clean split's tasks, clean rows as
without the arms, attack measures on every cell, and bad settings refused before anything is
written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.engine.runner import run_suite
from bench.engine.suite import suite_from_dict
from bench.errors import ConfigError
from bench.evaluation.floors import FLOORS
from bench.results.analysis import load_results
from bench.results.analysis.frames import Results
from bench.results.analysis.robustness import robustness_curves
from bench.results.report import ReportOptions, build_document
from bench.results.report.markdown import render_markdown
from bench.results.store import ResultStore

ARMS = {
    "training": {"kinds": ["flip"], "strengths": [0, 0.3]},
    "shilling": {"attacks": ["random", "bandwagon"], "sizes": [0, 0.3], "targets": 3},
}
LEARNERS = ["global-mean", "mf"]


def suite(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "arms-test",
        "datasets": ["synthetic"],
        "scenarios": ["warm", "user_cold"],
        "learners": LEARNERS,
        "seeds": 2,
        "protocol": {"name": "cold-random", "support_sizes": [5], "query_size": 5},
        "dataset": {"synthetic": {"n_users": 120, "n_items": 80}},
        "learner": {"mf": {"rank": 4, "iterations": 3}},
    }
    raw.update(extra)
    return raw


def run(path: Path, **extra: Any) -> Results:
    with ResultStore(path) as store:
        outcome = run_suite(suite_from_dict(suite(**extra), "arms-test"), store, progress=False)
    assert not outcome.failed
    return load_results(path)


@pytest.fixture(scope="module")
def armed(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return run(tmp_path_factory.mktemp("armed") / "r.sqlite", robustness=ARMS)


def test_one_refit_per_arm_on_the_clean_tasks(armed: Results) -> None:
    arms = ["train-flip@0.3", "shill-random@0.3", "shill-bandwagon@0.3"]
    per_seed = len(LEARNERS) * (1 + len(arms)) + len(FLOORS)  # floors fit on clean data only
    assert len(armed.cells) == 2 * per_seed  # none is superseded by another arm's cell
    fits = armed.timings[armed.timings["phase"] == "fit"]
    assert len(fits) == len(armed.cells)
    labels = set(armed.metrics["scenario"])
    assert labels == {"warm", "user_cold"} | {
        f"{s}~{a}" for s in ("warm", "user_cold") for a in arms
    }
    # an arm's tasks are the clean ones: the same entities and query lengths
    per_task = armed.per_task[armed.per_task["metric"] == "rmse"]
    for arm in arms:
        for scenario in ("warm", "user_cold"):
            clean = per_task[(per_task["scenario"] == scenario) & (per_task["learner"] == "mf")]
            dirty = per_task[
                (per_task["scenario"] == f"{scenario}~{arm}") & (per_task["learner"] == "mf")
            ]
            key = ["seed", "entity", "n_ratings"]
            assert clean[key].to_numpy().tolist() == dirty[key].to_numpy().tolist()
    attacked = armed.cells[armed.cells["split_summary"].map(lambda s: "training_arm" in s)]
    for summary in attacked["split_summary"]:
        arm = summary["training_arm"]
        added = arm["train_ratings"] - arm["clean_train_ratings"]
        if arm["arm"].startswith("shill-"):  # 30% of the training users, 3 targets + filler each
            assert arm["fake_profiles"] == round(0.3 * arm["train_users"]) > 0
            assert added > arm["fake_profiles"] * 3
        else:  # flip changes values, not the number of ratings
            assert arm["fake_profiles"] == 0 and added == 0


def test_clean_rows_equal_a_run_without_arms(tmp_path: Path, armed: Results) -> None:
    plain = run(tmp_path / "plain.sqlite")
    keys = ["scenario", "learner", "seed", "metric", "value"]
    mine = armed.metrics[
        armed.metrics["scenario"].isin(["warm", "user_cold"])
        & ~armed.metrics["metric"].str.startswith("target-")
    ]
    assert sorted(map(tuple, mine[keys].to_numpy().tolist())) == sorted(
        map(tuple, plain.metrics[keys].to_numpy().tolist())
    )


def test_an_attack_pushes_its_targets_up_for_mf(armed: Results) -> None:
    per_task = armed.per_task
    scores = per_task[(per_task["metric"] == "target-score") & (per_task["learner"] == "mf")]
    wide = scores.pivot_table(index=["seed", "entity"], columns="scenario", values="value")
    for scenario in ("warm", "user_cold"):
        for attack in ("random", "bandwagon"):
            shift = wide[f"{scenario}~shill-{attack}@0.3"] - wide[scenario]
            assert float(np.nanmean(shift)) > 0.02  # target items rated higher after the attack
    hits = armed.metrics[armed.metrics["metric"] == "target-hit@10"]
    assert hits["value"].between(0, 1).all() and len(hits) > 0
    # the curves of the robustness analysis cover the arms as kinds, strength = size
    curves = robustness_curves(armed, ("rmse", "target-score"))
    assert {"train-flip", "shill-random", "shill-bandwagon"} <= set(curves["kind"])
    pushed = curves[(curves["kind"] == "shill-random") & (curves["metric"] == "target-score")]
    assert (pushed[(pushed["learner"] == "mf") & (pushed["strength"] == 0.3)]["delta"] > 0).all()


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"training": {"kinds": ["blur"], "strengths": [0.1]}}, "robustness.training.kinds"),
        (
            {"training": {"kinds": ["push"], "strengths": [0.1]}},
            "(gauss, flip, reverse, outlier, drop)",
        ),
        ({"training": {"kinds": ["flip"], "strengths": [1.5]}}, "1.5 lies outside [0, 1]"),
        ({"training": {"kinds": ["flip"]}}, "robustness.training.strengths must be"),
        ({"shilling": {"attacks": ["sybil"], "sizes": [0.1]}}, "robustness.shilling.attacks"),
        ({"shilling": {"attacks": ["random"], "sizes": [2]}}, "2 lies outside [0, 1]"),
        ({"shilling": {"attacks": ["random"], "sizes": [0.1], "filler": 0}}, "filler"),
        ({"shilling": {"attacks": ["random"], "sizes": [0.1], "targets": 0}}, "targets"),
        ({"shilling": {"attacks": ["random"], "sizes": [0.1], "size": 1}}, "unknown key(s) 'size'"),
        (
            {"shilling": {"attacks": ["random"], "sizes": [0.1], "target_pool": "famous"}},
            "target_pool must be one of any, unpopular",
        ),
    ],
)
def test_bad_arms_are_refused(table: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        suite_from_dict(suite(robustness=table), "suite.toml")
    assert words in str(caught.value) and str(caught.value).startswith("suite.toml")


def test_an_attack_too_small_for_the_users_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    tiny = {"shilling": {"attacks": ["random"], "sizes": [0.001]}}
    parsed = suite_from_dict(suite(robustness=tiny), "suite.toml")
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store, pytest.raises(ConfigError) as caught:
        run_suite(parsed, store, progress=False)
    assert "robustness.shilling.sizes: 0.001 of the 120 users" in str(caught.value)
    with ResultStore(path, mode="read") as store:
        assert store.runs() == []


def test_the_report_shows_the_attacks_and_the_arms(armed: Results) -> None:
    text = render_markdown(build_document(armed, ReportOptions(reference="mf")), Path("."))
    attacks = text.split("## Shilling attacks")[1].split("\n## ")[0]
    assert "user_cold, k=5: bandwagon attack" in attacks and "warm, k=5: random attack" in attacks
    assert "| mf |" in attacks and "shift at 0.3" in attacks
    robustness = text.split("## Robustness")[1].split("\n## ")[0]
    assert "user_cold, k=5, train-flip: rmse" in robustness
    # the clean tables above show neither arm labels nor the attack measures
    assert "~train-" not in text.split("## Robustness")[0]
    assert "target-score" not in text.split("## Robustness")[0]


def test_push_poisons_a_new_items_support_and_its_predictions_rise(tmp_path: Path) -> None:
    """Item tasks: an item_cold task is a new item, its support its first ratings; push raises
    the lowest of them to the maximum and the item's predictions follow."""
    results = run(
        tmp_path / "push.sqlite",
        scenarios=["item_cold"],
        protocol={
            "name": "cold-random",
            "task_axis": "item",
            "support_sizes": [5],
            "query_size": 5,
        },
        robustness={"kinds": ["push"], "strengths": [0, 0.4, 1.0]},
    )
    curves = robustness_curves(results, ("mean-prediction",))
    mf = curves[curves["learner"] == "mf"].set_index("strength")["delta"]
    assert 0 < mf[0.4] < mf[1.0]  # nested strengths: more pushed ratings, a larger shift
    blind = curves[curves["learner"] == "global-mean"]["delta"]
    assert (blind.abs() < 1e-12).all()  # a learner that ignores the support does not move
    text = render_markdown(build_document(results, ReportOptions(reference="mf")), Path("."))
    section = text.split("## Shilling attacks and support poisoning")[1].split("\n## ")[0]
    assert "item_cold, k=5: push" in section and "shift at 1" in section


def test_noise_arms_reuse_the_clean_cells_and_key_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    base = {"learners": ["mf"], "seeds": 1, "floors": False}
    noise = {"training": {"kinds": ["gauss"], "strengths": [0, 0.2]}}
    with ResultStore(path) as store:
        plain = run_suite(suite_from_dict(suite(**base), "a"), store, progress=False)
        armed = run_suite(
            suite_from_dict(suite(**base, robustness=noise), "b"), store, progress=False
        )
        wider = run_suite(
            suite_from_dict(suite(**base, robustness={**noise, "sigma": 0.5}), "c"),
            store,
            progress=False,
        )
    assert plain.computed == 1
    assert (armed.reused, armed.computed) == (1, 1)  # the clean cell is the plain run's
    assert (wider.reused, wider.computed) == (1, 1)  # another sigma: another gauss arm
    assert len(load_results(path, latest_only=False).cells) == 3
    # read back, the later gauss arm stands for its label, as a recomputed cell would
    assert len(load_results(path).cells) == 2
