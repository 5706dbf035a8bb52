"""The run plan: one front door for ``bench run`` and :func:`bench.api.run`. The same suite and
overrides give equal plans whichever face builds them, the plan is immutable and carries what
the runner needs, and errors name each override as its caller spells it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bench import api
from bench.cli import build_parser
from bench.cli.run import plan_from_args
from bench.engine.plan import RatingScale, RunPlan
from bench.errors import BenchError

TUNED = """
name = "tuned"
datasets = ["synthetic"]
learners = ["global-mean", "item-mean", "mf"]
seeds = 3

[protocol]
name = "cold-random"
support_sizes = [1, 3]
query_size = 3
validation_fraction = 0.2

[dataset.synthetic]
n_users = 80
n_items = 50

[learner.mf]
iterations = 3
max_fit_seconds = 30

[tune]
trials = 2
objective = "rmse"

[tune.mf]
rank = [2, 8]
"""


def cli_plan(*flags: str) -> RunPlan:
    args = build_parser().parse_args(["run", *flags])
    plan: RunPlan = plan_from_args(args)
    return plan


def write_csv(path: Path) -> Path:
    lines = ["user,item,rating"]
    for user in range(30):
        lines += [f"u{user},i{(user * 7 + j) % 25},{1 + (user + j) % 5}" for j in range(10)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_cli_and_the_api_build_equal_plans_from_the_same_overrides(tmp_path: Path) -> None:
    suite = tmp_path / "tuned.toml"
    suite.write_text(TUNED, encoding="utf-8")
    by_flags = cli_plan(
        "--suite",
        str(suite),
        "--learners",
        "item-mean,mf",
        "--seeds",
        "2",
        "--scenarios",
        "warm,user_cold",
        "--support-sizes",
        "1,2",
        "--query-size",
        "4",
        "--no-floors",
        "--data-dir",
        str(tmp_path),
    )
    by_arguments = api.plan(
        suite,
        learners=["item-mean", "mf"],
        seeds=2,
        scenarios=["warm", "user_cold"],
        support_sizes=[1, 2],
        query_size=4,
        floors=False,
        data_dir=tmp_path,
    )
    assert by_flags == by_arguments
    assert by_flags.seeds == (0, 1) and [p.name for p in by_flags.learners] == ["item-mean", "mf"]
    mf = by_flags.learner("mf")
    # The table's budget key is the budget, not a config field; the search stays with its learner.
    assert dict(mf.config) == {"iterations": 3} and mf.budget.max_seconds == 30.0
    assert mf.tuning is not None and mf.tuning.trials == 2
    assert by_flags.protocol.config.support_sizes == (1, 2)
    # A changed override is a different plan.
    assert api.plan(suite, learners=["item-mean", "mf"], seeds=3, floors=False) != by_arguments


def test_no_tune_and_dataset_options_reach_the_plan_alike(tmp_path: Path) -> None:
    suite = tmp_path / "tuned.toml"
    suite.write_text(TUNED, encoding="utf-8")
    dataset = f"csv:{write_csv(tmp_path / 'r.csv')}"
    flags = ["--suite", str(suite), "--datasets", dataset, "--no-tune"]
    by_flags = cli_plan(*flags, "--rating-scale", "0,10", "--dataset-option", 'delimiter=","')
    by_arguments = api.plan(
        suite,
        datasets=[dataset],
        no_tune=True,
        rating_scale=(0, 10),
        dataset_options={"delimiter": ","},
    )
    assert by_flags == by_arguments
    assert by_flags.tuning == {} and by_flags.learner("mf").tuning is None
    (only,) = by_flags.datasets
    assert only.rating_scale == RatingScale(0.0, 10.0)
    assert dict(only.options) == {"delimiter": ",", "rating_scale": [0.0, 10.0]}


def test_a_plan_cannot_be_changed_in_place() -> None:
    plan = api.plan("ci", seeds=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.seeds = (5,)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.learners[0].config_hash = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("flags", "arguments", "flag_says", "argument_says"),
    [
        (
            ["--learners", "nope"],
            {"learners": ["nope"]},
            "--learners: unknown learner 'nope'",
            "api.run(learners=...): unknown learner 'nope'",
        ),
        (
            ["--device", "gpu"],
            {"devices": ["gpu"]},
            "--device: device must be",
            "api.run(devices=...): device must be",
        ),
        (
            ["--scenarios", "cold"],
            {"scenarios": ["cold"]},
            "--scenarios: unknown scenario 'cold'",
            "api.run(scenarios=...): unknown scenario 'cold'",
        ),
        (
            ["--claim-wait", "-1"],
            {"claim_wait": -1},
            "--claim-wait must be a number of seconds >= 0",
            "api.run(claim_wait=...) must be a number of seconds >= 0",
        ),
    ],
)
def test_an_error_names_the_flag_or_the_argument(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    arguments: dict[str, Any],
    flag_says: str,
    argument_says: str,
) -> None:
    from bench.cli import main

    store = tmp_path / "s.sqlite"
    code = main(["run", "--suite", "ci", "--store", str(store), "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2 and flag_says in err and "api.run" not in err
    with pytest.raises(BenchError) as info:
        api.run("ci", store=store, progress=False, **arguments)
    assert argument_says in str(info.value) and "--" not in str(info.value).split(":")[0]
    assert not store.exists()


def test_a_bad_rating_scale_through_the_api_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"api\.plan\(rating_scale=\.\.\.\): expected finite"):
        api.plan("ci", rating_scale=[5, 1])
    with pytest.raises(BenchError, match=r"api\.plan\(dataset_options=\.\.\.\): expected a"):
        api.plan("ci", dataset_options=["rating"])  # type: ignore[arg-type]


def test_a_suite_file_is_checked_once_with_its_overrides(tmp_path: Path) -> None:
    # The file alone would fail (it names a learner that does not exist); the flags replace it
    # before the one check, so the plan is built.
    suite = tmp_path / "broken.toml"
    suite.write_text(TUNED.replace('"global-mean", ', '"nope", '), encoding="utf-8")
    with pytest.raises(BenchError, match="unknown learner 'nope'"):
        api.plan(suite)
    plan = cli_plan("--suite", str(suite), "--learners", "item-mean,mf")
    assert [p.name for p in plan.learners] == ["item-mean", "mf", "floor-random", "floor-constant"]


def test_a_run_checks_its_suite_once_and_the_runner_reads_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.engine.plan as plan_module
    from bench.engine.runner import run_suite
    from bench.results.store import ResultStore

    checks: list[str] = []
    real_check = plan_module.check_suite

    def counted(suite: Any, given_as: Any = None) -> Any:
        checks.append(suite.name)
        return real_check(suite, given_as)

    monkeypatch.setattr(plan_module, "check_suite", counted)
    flags = ["--suite", "ci", "--learners", "global-mean", "--seeds", "1", "--no-floors"]
    plan = cli_plan(*flags, "--scenarios", "warm", "--dataset-option", "n_users=120")
    assert checks == ["ci"]
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(plan, store, progress=False, log=lambda _: None)
        (row,) = store.runs()
    assert checks == ["ci"] and outcome.computed == 1
    # The run stores the plan's suite as its config: the overrides are in it.
    import json

    config = json.loads(row["config"])
    assert (
        config["learners"] == ["global-mean"] and config["dataset"]["synthetic"]["n_users"] == 120
    )


def test_run_and_plan_take_the_same_plan_arguments() -> None:
    """``run`` hands ``plan``'s arguments over by name: an argument added to one and not listed
    in ``PLAN_ARGUMENTS`` (or missing from the other) would be dropped silently."""
    import inspect

    planned = set(inspect.signature(api.plan).parameters) - {"suite"}
    assert planned == set(api.PLAN_ARGUMENTS)
    assert planned <= set(inspect.signature(api.run).parameters)
