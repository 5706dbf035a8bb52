"""Tuning inside the harness: the planted best config is found, test labels never reach the
objective, trials resume after an interruption, and bad ``[tune]`` tables are clear errors."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data.synthetic import SyntheticConfig, generate
from bench.engine.cells import TRIAL_SINKS, CellFailure, CellJob
from bench.engine.executors import LocalExecutor
from bench.engine.executors.process import ProcessExecutor
from bench.engine.runner import run_suite
from bench.engine.suite import Suite, suite_from_dict
from bench.engine.tuning import TuneSpec, parse_tuning, search
from bench.errors import ConfigError
from bench.protocol import make_protocol
from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain
from bench.protocol.learner_registry import LEARNERS
from bench.results.analysis import load_results
from bench.results.records import CellRecord, TrialRecord
from bench.results.store import ResultStore
from bench.results.tuning_text import tuning_lines
from bench.seeding import Seeds
from learners.baselines import BiasBaseline

PLANTED_RANK = 3
SYNTHETIC = {"n_users": 300, "n_items": 200, "rank": PLANTED_RANK, "noise": 0.3, "seed": 3}
PROTOCOL = {
    "name": "cold-random",
    "support_sizes": [10],
    "query_size": 10,
    "validation_fraction": 0.2,
}


def tuned_suite(tune: dict[str, Any], **fields: Any) -> Suite:
    raw: dict[str, Any] = {
        "name": "tuned",
        "datasets": ["synthetic"],
        "learners": ["mf"],
        "seeds": [0],
        "floors": False,  # the tuned learners' cells alone
        "protocol": dict(PROTOCOL),
        "dataset": {"synthetic": dict(SYNTHETIC)},
        "tune": tune,
        **fields,
    }
    return suite_from_dict(raw, "<test suite>")


def trials_of(store: ResultStore) -> list[tuple[Any, ...]]:
    """The stored trials, comparable across stores: learner, seed, number, params, value."""
    learners = {r["cell_key"]: (r["learner"], r["seed"]) for r in store.tuning_rows()}
    return sorted(
        (
            *learners.get(t["cell_key"], ("?", -1)),
            t["number"],
            json.dumps(t["params"], sort_keys=True),
            t["value"],
            t["state"],
        )
        for t in store.trial_rows()
    )


def chosen_of(store: ResultStore) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["learner"], r["seed"]): r["chosen"] for r in store.tuning_rows()}


# The planted best config ------------------------------------------------------------------------


def test_tuning_finds_the_generators_rank_on_validation_tasks(tmp_path: Path) -> None:
    suite = tuned_suite(
        {"trials": 3, "objective": "rmse", "mf": {"rank": [1, PLANTED_RANK, 4 * PLANTED_RANK]}},
        seeds=[0, 1],
    )
    with ResultStore(tmp_path / "s.sqlite") as store:
        outcome = run_suite(suite, store, progress=False)
        assert outcome.exit_code == 0 and outcome.computed == 2
        tunings = store.tuning_rows()
        trials = store.trial_rows()
        configs = store.conn.execute("SELECT config, config_hash FROM cells").fetchall()
    assert len(tunings) == 2
    for row in tunings:
        assert row["chosen"] == {"rank": PLANTED_RANK}
        assert row["trials"] == 3 and row["validation_tasks"] > 0
    # the grid covered every rank once per seed, and the planted one scored best on validation
    for seed in (0, 1):
        key = next(r["cell_key"] for r in tunings if r["seed"] == seed)
        values = {t["params"]["rank"]: t["value"] for t in trials if t["cell_key"] == key}
        assert sorted(values) == [1, PLANTED_RANK, 4 * PLANTED_RANK]
        assert min(values, key=values.__getitem__) == PLANTED_RANK
    # each cell fitted the chosen config; both seeds share one config hash (the search's)
    assert [json.loads(config)["rank"] for config, _ in configs] == [PLANTED_RANK] * 2
    assert len({config_hash for _, config_hash in configs}) == 1


def test_tpe_over_ranges_is_seeded_and_reproducible(tmp_path: Path) -> None:
    tune = {
        "trials": 6,
        "mf": {"reg": {"low": 0.01, "high": 1.0, "log": True}, "rank": {"low": 1, "high": 12}},
    }
    chosen, trials = [], []
    for name in ("a", "b"):
        with ResultStore(tmp_path / f"{name}.sqlite") as store:
            assert run_suite(tuned_suite(tune), store, progress=False).exit_code == 0
            chosen.append(chosen_of(store))
            trials.append(trials_of(store))
    assert chosen[0] == chosen[1] and trials[0] == trials[1]
    ranks = [json.loads(t[3])["rank"] for t in trials[0]]
    assert len(ranks) == 6 and all(isinstance(r, int) and 1 <= r <= 12 for r in ranks)
    assert len({t[3] for t in trials[0]}) > 1  # it explored


# Test labels never reach the objective ---------------------------------------------------------


def test_test_task_labels_never_reach_the_tuning_objective(tmp_path: Path) -> None:
    """Every rating outside the training data and the validation tasks (the test tasks' queries
    and cold supports) is reversed (r -> 6 - r); the search must not change at all, while the
    reported test metrics do."""
    dataset = generate(SyntheticConfig(**SYNTHETIC), name="planted")
    protocol = make_protocol("cold-random", dict(PROTOCOL))
    split = protocol.split(dataset, 0)
    seen = np.zeros(dataset.n_ratings, dtype=bool)
    seen[split.train] = True
    for rows in (*split.validation.pools, *split.validation.queries):
        seen[rows] = True
    test_queries = np.concatenate([q for s in split.scenarios.values() for q in s.queries])
    assert not seen[test_queries].any()
    assert (~seen).sum() > len(test_queries) > 0

    flipped = np.where(seen, dataset.rating, 6.0 - dataset.rating)
    assert (flipped[test_queries] != dataset.rating[test_queries]).any()
    files = {}
    for name, ratings in (("original", dataset.rating), ("flipped", flipped)):
        path = tmp_path / f"{name}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user", "item", "rating", "timestamp"])
            writer.writerows(
                zip(dataset.user, dataset.item, ratings.astype(int), dataset.timestamp, strict=True)
            )
        files[name] = f"csv:{path}"

    results = {}
    for name, source in files.items():
        suite = tuned_suite(
            {
                "trials": 4,
                "mf": {"rank": [1, 3, 12], "reg": {"low": 0.01, "high": 1.0}},
                "item-mean": {"user_shrinkage": [1.0, 5.0, 25.0]},
            },
            datasets=[source],
            learners=["item-mean", "mf"],
            dataset={source: {"rating_scale": [1, 5], "like_threshold": 4}},
        )
        with ResultStore(tmp_path / f"{name}.sqlite") as store:
            assert run_suite(suite, store, progress=False).exit_code == 0
            metrics = {
                (r["learner"], r["scenario"], r["metric"]): r["value"] for r in store.metric_rows()
            }
            results[name] = (trials_of(store), chosen_of(store), metrics)
    original, flipped_run = results["original"], results["flipped"]
    assert len(original[0]) == 4 + 3
    assert original[0] == flipped_run[0]  # every trial's params and validation value
    assert original[1] == flipped_run[1]  # the chosen configs
    assert original[2][("mf", "user_cold", "rmse")] != flipped_run[2][("mf", "user_cold", "rmse")]


# Resuming an interrupted search ----------------------------------------------------------------


class StopsAfterFits(BiasBaseline):
    """item-mean that raises ``error`` (a Ctrl-C unless set) on the fit after ``limit`` fits."""

    limit: ClassVar[int | None] = None
    fits: ClassVar[int] = 0
    error: ClassVar[type[BaseException]] = KeyboardInterrupt

    def fit(
        self,
        train: MetaTrain,
        *,
        rng: Seeds,
        device: torch.device,
        budget: Budget | None = None,
    ) -> None:
        if self.limit is not None and StopsAfterFits.fits >= self.limit:
            raise self.error("stopped on purpose")
        StopsAfterFits.fits += 1
        super().fit(train, rng=rng, device=device, budget=budget)


if "test-stops-after-fits" not in LEARNERS:
    LEARNERS.register("test-stops-after-fits", StopsAfterFits)

RANGES = {
    "user_shrinkage": {"low": 0.1, "high": 50.0, "log": True},
    "item_shrinkage": {"low": 0.1, "high": 50.0, "log": True},
}
GRID = {"user_shrinkage": [0.5, 5.0, 50.0], "item_shrinkage": [1.0, 10.0]}


@pytest.mark.parametrize("space", [RANGES, GRID], ids=["tpe", "grid"])
def test_an_interrupted_search_resumes_without_duplicates_and_chooses_the_same(
    tmp_path: Path, space: dict[str, Any]
) -> None:
    suite = tuned_suite(
        {"trials": 6, "test-stops-after-fits": space},
        learners=["test-stops-after-fits"],
        seeds=[0, 1],
    )
    StopsAfterFits.limit = None
    with ResultStore(tmp_path / "whole.sqlite") as store:
        assert run_suite(suite, store, progress=False).exit_code == 0
        reference = trials_of(store), chosen_of(store)
    assert len(reference[0]) == 12

    path = tmp_path / "resumed.sqlite"
    StopsAfterFits.fits, StopsAfterFits.limit = 0, 9  # seed 0 searched and fitted, seed 1 half
    try:
        with ResultStore(path) as store, pytest.raises(KeyboardInterrupt):
            run_suite(suite, store, progress=False)
    finally:
        StopsAfterFits.limit = None
    with ResultStore(path) as store:
        stored = store.trial_rows()
        assert len(stored) == 6 + 2 and len(store.tuning_rows()) == 1
        StopsAfterFits.fits = 0
        outcome = run_suite(suite, store, progress=False)
        assert outcome.exit_code == 0 and outcome.computed == 1 and outcome.reused == 1
        assert StopsAfterFits.fits == 4 + 1  # the 4 missing trials of seed 1, then its fit
        resumed = trials_of(store), chosen_of(store)
        numbers = [(t["cell_key"], t["number"]) for t in store.trial_rows()]
    assert len(numbers) == len(set(numbers)) == 12
    assert resumed == reference


class WithoutTrialSink(LocalExecutor):
    """Computes cells in this process as a worker elsewhere would: without the run's trial sink,
    so a search's trials travel back only with its cell (or its failure)."""

    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        run_id = self._work.context.run_id
        sink = TRIAL_SINKS.pop(run_id)
        try:
            return super().submit(job)
        finally:
            TRIAL_SINKS[run_id] = sink


@pytest.mark.parametrize("executor", [LocalExecutor, WithoutTrialSink])
def test_a_cell_that_fails_after_its_search_keeps_the_trials_for_the_next_run(
    tmp_path: Path, executor: type[LocalExecutor]
) -> None:
    suite = tuned_suite(
        {"trials": 3, "test-stops-after-fits": RANGES},
        learners=["test-stops-after-fits"],
        seeds=[0],
    )
    StopsAfterFits.fits, StopsAfterFits.limit, StopsAfterFits.error = 0, 3, RuntimeError
    try:  # the three trials run, then the final fit fails
        with ResultStore(tmp_path / "s.sqlite") as store:
            failed = run_suite(
                suite, store, progress=False, log=lambda _: None, executor=executor()
            )
            kept = [(t["cell_key"], t["number"], t["run_id"]) for t in store.trial_rows()]
    finally:
        StopsAfterFits.limit, StopsAfterFits.error = None, KeyboardInterrupt
    assert [message for _, message in failed.failed] == ["RuntimeError: stopped on purpose"]
    assert kept == [(failed.cell_keys[0], n, failed.run_id) for n in range(3)]
    StopsAfterFits.fits = 0
    with ResultStore(tmp_path / "s.sqlite") as store:
        again = run_suite(suite, store, progress=False)
    assert (again.exit_code, again.computed, StopsAfterFits.fits) == (0, 1, 1)  # no trial again


def test_a_process_pool_returns_each_search_with_its_cell(tmp_path: Path) -> None:
    """Workers cannot write the store: their trials come back with the cell, and the driver
    stores the same searches and choices as a run in its own process."""
    suite = tuned_suite({"trials": 3, "mf": {"rank": [1, PLANTED_RANK, 8]}}, seeds=[0, 1])
    found = []
    for name, executor in (("local", None), ("pool", ProcessExecutor(2))):
        with ResultStore(tmp_path / f"{name}.sqlite") as store:
            assert run_suite(suite, store, progress=False, executor=executor).exit_code == 0
            found.append((trials_of(store), chosen_of(store)))
    assert len(found[0][0]) == 6
    assert found[0] == found[1]


def test_a_time_budget_stops_starting_trials_once_spent(tmp_path: Path) -> None:
    suite = tuned_suite(
        {"seconds": 0.3, "mf": {"reg": {"low": 0.01, "high": 1.0}}}, learners=["mf"]
    )
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert run_suite(suite, store, progress=False).exit_code == 0
        seconds = [t["seconds"] for t in store.trial_rows()]
        (tuning,) = store.tuning_rows()
    assert len(seconds) == tuning["trials"] >= 1
    assert sum(seconds[:-1]) < 0.3 <= sum(seconds)  # the last trial started within the budget
    assert tuning["seconds"] == pytest.approx(sum(seconds))


def test_a_failing_trial_is_recorded_and_the_search_goes_on() -> None:
    spec = TuneSpec(
        parse_tuning({"trials": 4, "mf": {"rank": [1, 2, 3, 4]}}, ["mf"], {}, (5,), "<test>")[
            "mf"
        ].space,
        "rmse",
        5,
        trials=4,
    )

    def objective(params: dict[str, Any]) -> float:
        if params["rank"] == 2:
            raise RuntimeError("no rank 2 today")
        return float(params["rank"])

    stored = []
    tuned = search(spec, objective, seeds=Seeds(0), on_trial=stored.append)
    assert [t.state for t in sorted(stored, key=lambda t: t.params["rank"])] == [
        "complete",
        "failed",
        "complete",
        "complete",
    ]
    failed = next(t for t in stored if t.state == "failed")
    assert failed.value is None and "no rank 2 today" in (failed.error or "")
    assert tuned.params == {"rank": 1} and tuned.failed == 1 and tuned.record.trials == 4


def test_a_search_where_every_trial_fails_fails_its_cell() -> None:
    spec = TuneSpec(
        parse_tuning({"trials": 2, "mf": {"rank": [1, 2]}}, ["mf"], {}, (5,), "<test>")["mf"].space,
        "rmse",
        5,
        trials=2,
    )

    def objective(params: dict[str, Any]) -> float:
        raise RuntimeError("broken")

    with pytest.raises(ValueError, match=r"no trial of the search succeeded.*broken"):
        search(spec, objective, seeds=Seeds(0))


# The cell key, the summary and the export -----------------------------------------------------


def test_the_search_spec_is_part_of_the_cell_key(tmp_path: Path) -> None:
    base = {"trials": 2, "mf": {"rank": [2, 4]}}
    with ResultStore(tmp_path / "s.sqlite") as store:
        first = run_suite(tuned_suite(base), store, progress=False)
        again = run_suite(tuned_suite(base), store, progress=False)
        wider = run_suite(
            tuned_suite({"trials": 3, "mf": {"rank": [2, 4, 8]}}), store, progress=False
        )
        untuned = run_suite(tuned_suite({}), store, progress=False)
    assert again.reused == 1 and again.cell_keys == first.cell_keys
    assert wider.computed == 1 and untuned.computed == 1
    assert len({*first.cell_keys, *wider.cell_keys, *untuned.cell_keys}) == 3


def test_the_run_summary_and_export_show_each_learners_choice_and_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        """
name = "tuned"
datasets = ["synthetic"]
learners = ["global-mean", "item-mean", "mf"]
seeds = 1
floors = false
[protocol]
name = "cold-random"
support_sizes = [1, 5]
query_size = 5
[dataset.synthetic]
n_users = 200
n_items = 150
[tune]
trials = 2
objective = "ndcg@3"
[tune.mf]
rank = [2, 4]
[tune.item-mean]
user_shrinkage = {low = 1.0, high = 20.0}
trials = 3
""",
        encoding="utf-8",
    )
    store = str(tmp_path / "s.sqlite")
    code = main(["run", "--suite", str(path), "--store", store, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("tuned ")]
    assert [line.split()[1] for line in lines] == ["item-mean", "mf"]
    assert "budget 3 trials; ndcg@3 at k=5" in lines[0] and "user_shrinkage=" in lines[0]
    assert "budget 2 trials; ndcg@3 at k=5" in lines[1] and "seed 0: rank=" in lines[1]
    assert "untuned (their configs as set): global-mean" in out

    assert main(["export", "--format", "json", "--store", store]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert {t["learner"] for t in exported["tunings"]} == {"item-mean", "mf"}
    assert all(t["objective"] == "ndcg@3" and t["k"] == "5" for t in exported["tunings"])
    budgets = {t["learner"]: (t["budget_trials"], t["budget_seconds"]) for t in exported["tunings"]}
    assert budgets == {"item-mean": (3, None), "mf": (2, None)}

    # The report shows each learner's budget and chosen config, in Markdown, HTML and JSON.
    reports = tmp_path / "report"
    assert main(["report", "--store", store, "--out", str(reports), "--reference", "mf"]) == 0
    capsys.readouterr()
    chosen = {t["learner"]: t["chosen"] for t in exported["tunings"]}
    markdown = (reports / "report.md").read_text(encoding="utf-8")
    tuning = markdown.split("## Tuning", 1)[1].split("\n## ", 1)[0]
    rows = {line.split(" | ")[1]: line for line in tuning.splitlines() if line.startswith("| ")}
    assert "untuned (config as set)" in rows["global-mean"]
    assert "| 3 trials | ndcg@3 at k=5 on " in rows["item-mean"]
    assert "user_shrinkage in [1, 20]" in rows["item-mean"]
    assert f"rank={chosen['mf']['rank']}" in rows["mf"] and "| 2 trials |" in rows["mf"]
    assert "rank in [2, 4]" in rows["mf"]
    html = (reports / "report.html").read_text(encoding="utf-8")
    assert 'id="tuning"' in html and f"rank={chosen['mf']['rank']}" in html
    report_json = json.loads((reports / "report.json").read_text(encoding="utf-8"))
    assert {t["learner"]: t["chosen"] for t in report_json["tunings"]} == chosen

    code = main(["run", "--suite", str(path), "--store", store, "--no-progress", "--no-tune"])
    out = capsys.readouterr().out
    assert code == 0 and "2 cell(s) computed, 1 reused" in out and "tuned " not in out


# Bad [tune] tables -----------------------------------------------------------------------------

BAD_TABLES = [
    ("budget = 3", "unknown setting(s) 'budget'"),
    ("trials = 0\n[tune.mf]\nrank = [2, 4]", "'trials' must be a whole number"),
    ("seconds = -1\n[tune.mf]\nrank = [2, 4]", "'seconds' must be a positive number"),
    ('objective = "rsme"\n[tune.mf]\nrank = [2, 4]', "unknown metric 'rsme'"),
    ("k = 7\ntrials = 2\n[tune.mf]\nrank = [2, 4]", "k must be one of the protocol's support"),
    ("trials = 2\n[tune.maml]\ninner_lr = [0.1]", "[tune.maml] tunes a learner the suite does"),
    ("trials = 2\n[tune.mf]\nrnak = [2, 4]", "unknown field 'rnak'"),
    ("[tune.mf]\nrank = [2, 4]", "[tune.mf] has no budget"),
    ("trials = 2\n[tune.mf]\nrank = 4", "'rank' must be a list of choices or a range"),
    ("trials = 2\n[tune.mf]\nrank = []", "'rank' lists no choices"),
    ("trials = 2\n[tune.mf]\nrank = [2, 2]", "'rank' lists a choice twice"),
    ('trials = 2\n[tune.mf]\nrank = [2, "big"]', "field 'rank'"),
    ("trials = 2\n[tune.mf]\nrank = {low = 1.5, high = 8}", "integer field"),
    ("trials = 2\n[tune.mf]\nreg = {low = 1.0, high = 0.1}", "low < high"),
    ("trials = 2\n[tune.mf]\nreg = {low = 0.0, high = 1.0, log = true}", "needs low > 0"),
    ("trials = 2\n[tune.mf]\nreg = {low = 0.1, hi = 1.0}", "must be a range"),
    ("trials = 2\n[tune.mf]\ninit = {low = 1, high = 2}", "cannot take a range"),
    ("trials = 2\n[tune.mf]\nrank = [2, 4]\n[learner.mf]\nrank = 8", "fixed in [learner.mf]"),
    ("trials = 2\n[tune.mf]", "[tune.mf] searches no field"),
]


@pytest.mark.parametrize(("table", "message"), BAD_TABLES)
def test_a_bad_tune_table_is_a_clear_error_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "bad"\nlearners = ["item-mean", "mf"]\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [1, 5]\n'
        f"[tune]\n{table}\n",
        encoding="utf-8",
    )
    for command in (["validate", str(path)], ["run", "--suite", str(path), "--no-progress"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err, err


def test_tuning_needs_a_protocol_with_validation_tasks() -> None:
    with pytest.raises(ConfigError, match="protocol predefined@1 makes none"):
        tuned_suite(
            {"trials": 2, "mf": {"rank": [2, 4]}},
            datasets=["ml-100k"],
            protocol={"name": "predefined"},
            dataset={},
        )
    with pytest.raises(ConfigError, match="validation_fraction = 0"):
        tuned_suite(
            {"trials": 2, "mf": {"rank": [2, 4]}},
            protocol={**PROTOCOL, "validation_fraction": 0.0},
        )


def test_narrowing_the_learners_keeps_their_search_only() -> None:
    from bench.engine.suite import override

    suite = tuned_suite(
        {"trials": 2, "mf": {"rank": [2, 4]}, "item-mean": {"user_shrinkage": [1.0, 2.0]}},
        learners=["item-mean", "mf"],
    )
    narrowed = override(suite, learners=("item-mean",))
    assert narrowed.tune == {"trials": 2, "item-mean": {"user_shrinkage": [1.0, 2.0]}}


def test_choices_that_are_lists_are_searched_as_such() -> None:
    specs = parse_tuning(
        {"trials": 2, "fine-tune": {"hidden": [[32], [64, 64]]}},
        ["fine-tune"],
        {},
        (5,),
        "<test>",
    )
    spec = specs["fine-tune"]
    assert spec.uses_grid and spec.grid_size == 2
    seen = []
    tuned = search(spec, lambda p: seen.append(p["hidden"]) or len(p["hidden"]), seeds=Seeds(1))
    assert sorted(seen) == [[32], [64, 64]] and tuned.params == {"hidden": [32]}


# The shipped suites --------------------------------------------------------------------------


def test_shipped_suites_default_and_ci_stay_untuned_and_ml100k_cold_tunes_every_learner() -> None:
    import dataclasses

    from bench.engine.suite import SUITES, load_suite, tuning_specs
    from bench.protocol.learner_registry import learner_class

    for name in SUITES.names():
        suite = load_suite(name)  # every shipped suite validates, its searches included
        specs = tuning_specs(suite, make_protocol(suite.protocol["name"], suite.protocol))
        if name in ("default", "ci"):
            assert specs == {}, name
    cold = load_suite("ml100k-cold")
    specs = tuning_specs(cold, make_protocol(cold.protocol["name"], cold.protocol))
    tunable = [n for n in cold.learners if dataclasses.fields(learner_class(n).config_class)]
    assert sorted(specs) == sorted(tunable)
    assert len({(s.trials, s.seconds, s.objective, s.k) for s in specs.values()}) == 1
    assert specs["mf"].uses_grid and {d.name for d in specs["mf"].space} == {"rank", "reg"}


def test_every_learner_gets_the_tables_budget_unless_it_sets_its_own() -> None:
    tune = {
        "trials": 5,
        "seconds": 60,
        "mf": {"rank": [2, 4]},
        "item-mean": {"user_shrinkage": [1.0, 5.0]},
        "maml": {"inner_lr": [0.1, 0.3], "trials": 2},
    }
    specs = parse_tuning(tune, ["mf", "item-mean", "maml"], {}, (5,), "<test>")
    budgets = {name: (spec.trials, spec.seconds) for name, spec in specs.items()}
    assert budgets == {"mf": (5, 60), "item-mean": (5, 60), "maml": (2, 60)}
    assert len({(s.objective, s.k) for s in specs.values()}) == 1


# The store ---------------------------------------------------------------------------------


def test_a_trial_that_finishes_while_the_store_is_busy_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    notes: list[str] = []
    with ResultStore(path, busy_wait_s=60, log=notes.append) as store:
        other = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 2 s
        threading.Timer(2.0, lambda: (other.execute("ROLLBACK"), other.close())).start()
        trial = TrialRecord(0, {"rank": 4}, 0.93, 1.5, "complete")
        store.write_trial("cell-a", "run-1", trial)
        assert store.finished_trials("cell-a") == [trial]
    assert any("is busy" in n and "writing a finished trial" in n for n in notes), notes


def test_a_store_without_the_tuning_tables_reads_as_untuned_and_gains_them_on_writing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        assert run_suite(tuned_suite({}), store, progress=False).exit_code == 0
    with sqlite3.connect(path) as conn:  # as a store written before searches were stored
        conn.execute("DROP TABLE trials")
        conn.execute("DROP TABLE tunings")
    with ResultStore(path, mode="read") as store:
        assert store.tuning_rows() == [] and store.trial_rows() == []
    results = load_results(path)
    assert results.tunings.empty and len(results.cells) == 1
    with ResultStore(path) as store:
        assert (
            run_suite(
                tuned_suite({"trials": 2, "mf": {"rank": [2, 4]}}), store, progress=False
            ).exit_code
            == 0
        )
        assert len(store.tuning_rows()) == 1 and len(store.trial_rows()) == 2


def test_the_summary_line_gives_the_range_of_validation_tasks_over_seeds() -> None:
    spec = {"objective": "rmse", "k": "all", "trials": 6, "seconds": None}
    rows = [
        {
            "dataset": "d",
            "protocol": "p",
            "learner": "mf",
            "seed": seed,
            "device": "cpu",
            "spec": spec,
            "chosen": {"rank": 16},
            "trials": 6,
            "seconds": 1.0,
            "best_value": 0.9,
            "validation_tasks": tasks,
        }
        for seed, tasks in ((0, 106), (1, 100), (2, 98))
    ]
    (line,) = tuning_lines(rows)
    assert "rmse at k=all on 98-106 validation tasks" in line
    assert "seed 2: rank=16 (6 trials" in line
