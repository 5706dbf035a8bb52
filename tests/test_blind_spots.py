"""Fixtures in which two plausible formulas give different answers.

A fixture with one seed cannot tell a per-seed timing from a summed one, one config per learner
cannot tell a label with its config suffix from one without, a search shorter than its sampler's
start-up cannot tell a model-based proposal from a random one, and a store with one cell per key
cannot tell the latest cell from the first. Each test here builds the case where they differ:
several seeds with different values and timings, two configs of one learner, a search that
leaves TPE's start-up, a store holding superseded cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.engine.tuning import TuneSpec, parse_tuning, search
from bench.evaluation.timing import TimingRow
from bench.results.analysis import (
    best_marks,
    compare_to_reference,
    load_results,
    summarise,
    timing_summary,
)
from bench.results.analysis.summary import resolve_reference
from bench.results.analysis.views import agreements
from bench.results.gate.baseline import read_baseline, write_baseline
from bench.results.gate.compare import compare
from bench.results.gate.snapshot import (
    CellName,
    CellValues,
    Origin,
    Snapshot,
    TimingValues,
    snapshot_of,
)
from bench.results.gate.tolerance import Tolerances
from bench.results.records import FIT_SCOPE, CellRecord, Evaluation
from bench.results.store import ResultStore
from bench.seeding import Seeds

N_TASKS = 30
ENTITIES = [f"u{i}" for i in range(N_TASKS)]
SCENARIOS = ("user_cold", "item_cold")
# Per seed: fit seconds, and adapt+predict seconds per scenario. Median, mean, first and sum of
# the fits (2, 3, 1, 9) all differ; so do the per-seed and summed adapt+predict seconds.
FIT_S = {0: 1.0, 1: 2.0, 2: 6.0}
PREDICT_S = {0: (0.5, 0.25), 1: (1.0, 0.5), 2: (4.0, 2.0)}


def _timing(scenario: str, k: str, phase: str, seconds: float, host: str = "box") -> TimingRow:
    tasks = 0 if phase == "fit" else N_TASKS
    rate = float("nan") if phase == "fit" else tasks / seconds
    return TimingRow(
        scenario, k, phase, seconds, seconds, tasks, rate, 2**20, "rss", 1, 0.0, 2, host
    )


def _cell(
    key: str, learner: str, seed: int, *, config: str = "", values: dict[str, float] | None = None
) -> CellRecord:
    """A cell with per-task ``mae`` values around its seed's level and the timings above."""
    config = config or f"{learner}-config"
    record = CellRecord(
        cell_key=key,
        run_id="r",
        dataset="toy",
        dataset_hash="d" * 16,
        protocol="cold-random@1",
        protocol_hash="p" * 16,
        learner=learner,
        config_hash=config,
        config={"name": config},
        seed=seed,
        device="cpu",
        code_fingerprint="code",
        split_summary={},
        dataset_info={"rating_scale": [1.0, 5.0], "like_threshold": 4.0, "task_axis": "user"},
    )
    record.timings.append(_timing(FIT_SCOPE, FIT_SCOPE, "fit", FIT_S[seed]))
    level = (values or {}).get("level", 2.0 + seed)  # far from 1, different on every seed
    spread = np.linspace(-0.2, 0.2, N_TASKS)
    for scenario, seconds in zip(SCENARIOS, PREDICT_S[seed], strict=True):
        record.evaluations.append(Evaluation(scenario, "5", ENTITIES, [5] * N_TASKS))
        record.timings.append(_timing(scenario, "5", "adapt+predict", seconds))
        per_task = level + spread + (values or {}).get(scenario, 0.0)
        # the last seed scores fewer tasks, so summed and per-seed task counts differ too
        if seed == 2:
            per_task[:4] = np.nan
        scored = per_task[~np.isnan(per_task)]
        unscored = N_TASKS - len(scored)
        record.metrics.append(
            (scenario, "5", "mae", float(scored.mean()), len(scored), unscored, per_task)
        )
    return record


def _store(path: Path, cells: list[CellRecord], learners: list[str]) -> Path:
    with ResultStore(path) as store:
        store.start_run("r", "s", {"learners": learners}, {})
        for record in cells:
            store.write_cell(record)
        store.finish_run("r", "finished", [c.cell_key for c in cells])
    return path


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mf`` on three seeds with different values and timings."""
    path = tmp_path_factory.mktemp("seeds") / "s.sqlite"
    return _store(path, [_cell(f"mf-{s}", "mf", s) for s in FIT_S], ["mf"])


# Several seeds ----------------------------------------------------------------------------------


def test_timing_summary_of_seeds_with_different_timings(three_seeds: Path) -> None:
    (row,) = timing_summary(load_results(three_seeds)).itertuples(index=False)
    assert row.n_fits == 3
    assert (row.fit_s_median, row.fit_s_min, row.fit_s_max) == (2.0, 1.0, 6.0)
    assert row.spread == pytest.approx(6.0)
    total = sum(sum(s) for s in PREDICT_S.values())  # every phase of every seed: 8.25 s
    assert row.predict_s == pytest.approx(total)
    assert row.predict_tasks == 3 * len(SCENARIOS) * N_TASKS
    assert row.tasks_per_s == pytest.approx(3 * len(SCENARIOS) * N_TASKS / total)


def test_the_gate_times_a_phase_per_seed(three_seeds: Path) -> None:
    """Fit: the median over seeds; adapt+predict: the seconds of all scenarios of a seed, averaged
    over seeds (not the first seed's, nor the sum over seeds)."""
    timings = snapshot_of(load_results(three_seeds)).timings
    fit = timings[("toy", "cold-random", "mf", "cpu", "fit")]
    predict = timings[("toy", "cold-random", "mf", "cpu", "predict")]
    assert fit.seconds == pytest.approx(2.0) and fit.n_seeds == 3
    assert predict.seconds == pytest.approx(sum(sum(s) for s in PREDICT_S.values()) / 3)


def test_the_summary_of_seeds_with_different_values(three_seeds: Path) -> None:
    summary = summarise(load_results(three_seeds)).set_index("scenario")
    row = summary.loc["user_cold"]
    # per-seed means 2.0, 3.0 and (the last seed without its first four tasks) 4.0 + 0.0277
    last = 4.0 + float(np.linspace(-0.2, 0.2, N_TASKS)[4:].mean())
    assert row["mean"] == pytest.approx((2.0 + 3.0 + last) / 3)
    assert row["n_seeds"] == 3
    assert row["n_tasks"] == 3 * N_TASKS - 4 and row["n_unscored"] == 4


ORIGIN = Origin(1, "d" * 16, "p" * 16, "exponential", "c" * 16)
MAE: CellName = ("toy", "cold-random", "user_cold", "5", "mf", "cpu", "mae")


def test_the_gate_compares_the_means_of_the_seeds_both_sides_have() -> None:
    """The baseline's third seed is far from its other two: averaged in, the cell would move."""
    old = Snapshot({MAE: CellValues(ORIGIN, {0: 2.0, 1: 2.4, 2: 9.0}, 90, {})}, {}, {}, "t")
    new = Snapshot({MAE: CellValues(ORIGIN, {0: 2.0, 1: 2.4}, 60, {})}, {}, {}, "t")
    (verdict,) = compare(old, new, Tolerances(), baseline=Path("b.json")).verdicts
    assert verdict.old == pytest.approx(2.2) and verdict.new == pytest.approx(2.2)
    assert verdict.verdict == "same" and "seeds 0,1 in common" in verdict.note


# Two configs of one learner ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mf`` under two configs, ``oracle`` under two configs, and ``item-mean`` under one; on two
    seeds. ``mf~b`` is the better ``mf``; the oracle is best of all but takes no part in the
    marks."""
    path = tmp_path_factory.mktemp("configs") / "s.sqlite"
    cells = []
    for seed in (0, 1):
        level = 3.0 + seed
        for learner, config, shift in (
            ("mf", "aaaaaaaa", 0.0),
            ("mf", "bbbbbbbb", -0.5),
            ("oracle", "oooooooo", -2.0),
            ("oracle", "pppppppp", -2.1),
            ("item-mean", "iiiiiiii", 0.3),
        ):
            values = {"level": level + shift}
            cells.append(
                _cell(f"{learner}-{config}-{seed}", learner, seed, config=config, values=values)
            )
    return _store(path, cells, ["mf", "oracle", "item-mean"])


def test_two_configs_of_a_learner_get_their_suffix_and_one_config_none(two_configs: Path) -> None:
    results = load_results(two_configs)
    labels = set(results.cells["learner"])
    assert labels == {"mf~aaaaaa", "mf~bbbbbb", "oracle~oooooo", "oracle~pppppp", "item-mean"}
    summary = summarise(results)
    assert len(summary) == len(labels) * len(SCENARIOS)  # never averaged together
    # in the suite's order of learners, each learner's configs together
    assert list(summary[summary["scenario"] == "user_cold"]["learner"]) == [
        "mf~aaaaaa",
        "mf~bbbbbb",
        "oracle~oooooo",
        "oracle~pppppp",
        "item-mean",
    ]
    means = summary[summary["scenario"] == "user_cold"].set_index("learner")["mean"]
    assert means["mf~bbbbbb"] == pytest.approx(means["mf~aaaaaa"] - 0.5)


def test_a_reference_with_two_configs_is_ambiguous(two_configs: Path) -> None:
    labels = ["mf~aaaaaa", "mf~bbbbbb", "item-mean"]
    assert resolve_reference(labels, "mf") is None
    assert resolve_reference(labels, "mf~bbbbbb") == "mf~bbbbbb"
    assert resolve_reference(labels, "item-mean") == "item-mean"
    results = load_results(two_configs)
    assert compare_to_reference(results, "mf").empty
    versus = compare_to_reference(results, "mf~bbbbbb")
    assert set(versus["reference"]) == {"mf~bbbbbb"}
    assert set(versus["learner"]) == {"mf~aaaaaa", "oracle~oooooo", "oracle~pppppp", "item-mean"}


def test_a_learner_left_unranked_is_so_under_every_config(two_configs: Path) -> None:
    results = load_results(two_configs)
    marks = best_marks(results, summarise(results))
    assert set(marks[marks["is_best"]]["learner"]) == {"mf~bbbbbb"}  # mae: lower is better
    oracle = marks[marks["learner"].str.startswith("oracle")]
    assert len(oracle) == 2 * len(SCENARIOS) and not oracle["is_best"].any()
    assert oracle["n_pairs"].eq(0).all()


# A store holding superseded cells ---------------------------------------------------------------


def test_a_store_with_superseded_cells_reads_the_latest(tmp_path: Path) -> None:
    """Each seed's cell was recomputed; the newer one has the smaller key and was written first,
    so neither the first written, nor the last, nor the largest key is the one to keep."""
    path = tmp_path / "s.sqlite"
    cells = []
    for seed in (0, 1):
        cells.append(_cell(f"b-new-{seed}", "mf", seed, values={"level": 5.0 + seed}))
        cells.append(_cell(f"z-old-{seed}", "mf", seed, values={"level": 2.0 + seed}))
    _store(path, cells, ["mf"])
    with ResultStore(path) as store:
        for key, when in (
            ("b-new", "2026-02-01T00:00:00+00:00"),
            ("z-old", "2026-01-01T00:00:00+00:00"),
        ):
            for seed in (0, 1):
                store.conn.execute(
                    "UPDATE cells SET finished_at=? WHERE cell_key=?", (when, f"{key}-{seed}")
                )
        store.conn.commit()
    results = load_results(path)
    assert sorted(results.cell_keys) == ["b-new-0", "b-new-1"] and results.superseded == 2
    summary = summarise(results).set_index("scenario")
    assert summary.loc["user_cold", "mean"] == pytest.approx(5.5)
    assert summary.loc["user_cold", "n_seeds"] == 2
    (timing,) = timing_summary(results).itertuples(index=False)
    assert timing.n_fits == 2  # the superseded cells' timings are left out with them
    # the gate compares the latest cells too, and sees one version of each
    gate = snapshot_of(results).cells[MAE].seeds
    assert gate == {0: pytest.approx(5.0), 1: pytest.approx(6.0)}
    everything = load_results(path, latest_only=False)
    assert len(everything.cells) == 4 and everything.superseded == 0


# A search that leaves the sampler's start-up ----------------------------------------------------


def _spec(trials: int) -> TuneSpec:
    space = parse_tuning(
        {"trials": trials, "mf": {"reg": {"low": 0.001, "high": 1.0, "log": True}}},
        ["mf"],
        {},
        (5,),
        "<test>",
    )["mf"].space
    return TuneSpec(space, "rmse", 5, trials=trials)


def _proposals(spec: TuneSpec, objective: Any) -> list[float]:
    tuned = search(spec, objective, seeds=Seeds(4))
    return [t.params["reg"] for t in sorted(tuned.trials, key=lambda t: t.number)]


@pytest.mark.parametrize(("objective", "chosen"), [("ndcg@3", 4), ("rmse", 1)])
def test_a_search_keeps_the_best_value_in_its_objectives_direction(
    objective: str, chosen: int
) -> None:
    """The trial's value is the config's rank: the largest is best for NDCG and the smallest for
    RMSE (a search tested on RMSE alone cannot tell a minimum from a best)."""
    space = parse_tuning({"trials": 4, "mf": {"rank": [1, 2, 3, 4]}}, ["mf"], {}, (5,), "<test>")[
        "mf"
    ].space
    spec = TuneSpec(space, objective, 5, trials=4)
    tuned = search(spec, lambda p: float(p["rank"]), seeds=Seeds(2))
    assert sorted(t.params["rank"] for t in tuned.trials) == [1, 2, 3, 4]
    assert tuned.params == {"rank": chosen}
    assert tuned.record.best_value == float(chosen)
    best = next(t for t in tuned.trials if t.params["rank"] == chosen)
    assert tuned.record.best_trial == best.number


@pytest.mark.parametrize("trials", [12, 30])
def test_tpe_proposes_at_random_for_its_start_up_trials_then_from_the_values(trials: int) -> None:
    """During the start-up TPE proposes without looking at the values, so two objectives that
    rank the configs in opposite orders get the same proposals; from the first model-based trial
    on they part. A search no longer than its start-up could not tell the two phases apart."""
    spec = _spec(trials)
    startup = spec.startup_trials
    assert startup == min(10, max(2, trials // 3)) < trials
    rising = _proposals(spec, lambda p: float(np.log(p["reg"])))
    falling = _proposals(spec, lambda p: -float(np.log(p["reg"])))
    assert len(rising) == len(falling) == trials
    assert rising[:startup] == falling[:startup]
    assert rising[startup] != falling[startup]
    # and the model-based trials lean towards each objective's own best end of the range
    assert np.median(rising[startup:]) < np.median(falling[startup:])


# More of the gate -------------------------------------------------------------------------------


def test_the_gate_keeps_the_timings_of_the_host_that_timed_most_seeds(tmp_path: Path) -> None:
    """Four seeds on three hosts: the host of the first seed and that of the last timed one seed
    each, the middle one two, each at its own speed."""
    hosts = {
        0: ("first-box", 10.0),
        1: ("main-box", 3.0),
        2: ("main-box", 5.0),
        3: ("last-box", 20.0),
    }
    cells = []
    for seed, (host, seconds) in hosts.items():
        record = _cell(f"mf-{seed}", "mf", seed % 3)
        record.seed = seed
        record.timings = [_timing(FIT_SCOPE, FIT_SCOPE, "fit", seconds, host)]
        record.timings += [_timing(s, "5", "adapt+predict", seconds / 10, host) for s in SCENARIOS]
        cells.append(record)
    results = load_results(_store(tmp_path / "s.sqlite", cells, ["mf"]))
    summary = timing_summary(results)
    assert set(summary["host"]) == {"first-box", "main-box", "last-box"}
    assert summary["mixed_hosts"].all()
    timings = snapshot_of(results).timings
    fit = timings[("toy", "cold-random", "mf", "cpu", "fit")]
    predict = timings[("toy", "cold-random", "mf", "cpu", "predict")]
    assert (fit.host, fit.n_seeds, fit.seconds) == ("main-box", 2, pytest.approx(4.0))
    assert predict.host == "main-box"
    assert predict.seconds == pytest.approx(len(SCENARIOS) * (0.3 + 0.5) / 2)


FIT: tuple[str, str, str, str, str] = ("toy", "cold-random", "mf", "cpu", "fit")


def _timed(seconds: float) -> Snapshot:
    cell = CellValues(ORIGIN, {0: 2.0}, 30, {})
    timing = TimingValues(ORIGIN, seconds, 2, "box", "1", 0)
    return Snapshot({MAE: cell}, {FIT: timing}, {}, "t")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (4.0, 6.4, "worse"),  # 1.6 times and 2.4 s slower
        (0.4, 0.64, "same"),  # 1.6 times but 0.24 s slower
        (4.0, 2.4, "better"),  # 0.6 times and 1.6 s faster
        (0.4, 0.24, "same"),  # 0.6 times but 0.16 s faster
    ],
)
def test_a_timing_moves_by_its_ratio_and_by_seconds_both(
    old: float, new: float, expected: str
) -> None:
    """Against a baseline of 1 s, new - old and new / old - 1 are the same number; at 4 s and 0.4 s
    they are not, and the slack is in seconds."""
    tolerances = Tolerances(timing=1.5, timing_slack=1.0)
    comparison = compare(_timed(old), _timed(new), tolerances, baseline=Path("b.json"))
    (timing,) = [v for v in comparison.verdicts if v.kind == "timing"]
    assert timing.verdict == expected
    assert timing.change == pytest.approx(new / old)


def test_the_paired_test_of_the_gate_pairs_every_common_seed_by_task() -> None:
    """Two seeds with other task lists: the pairs are the tasks of both seeds, each new value
    against the same task's old value (a change on seed 1 alone is found)."""
    rng = np.random.default_rng(5)
    tasks = {
        0: [f"u{i}" for i in range(N_TASKS)],
        1: [f"u{i}" for i in range(N_TASKS, 2 * N_TASKS)],
    }
    old_values = {s: 2.0 + rng.random(N_TASKS) for s in (0, 1)}
    order = rng.permutation(N_TASKS)  # the new side lists seed 1's tasks in another order
    new_values = {0: old_values[0].copy(), 1: (old_values[1] + 0.5)[order]}
    task_lists = {
        0: (tasks[0], tasks[0]),
        1: (tasks[1], [tasks[1][i] for i in order]),
    }

    def side(values: dict[int, np.ndarray], which: int) -> Snapshot:
        lists = {f"toy/cold-random/user_cold/k=5/seed={s}": task_lists[s][which] for s in (0, 1)}
        means = {s: float(v.mean()) for s, v in values.items()}
        return Snapshot({MAE: CellValues(ORIGIN, means, 2 * N_TASKS, values)}, {}, lists, "t")

    (verdict,) = compare(
        side(old_values, 0), side(new_values, 1), Tolerances(), baseline=Path("b")
    ).verdicts
    assert verdict.n_pairs == 2 * N_TASKS
    assert verdict.change == pytest.approx(0.25)
    # half the pairs moved by +0.5 and half not at all: every non-zero difference is positive
    assert verdict.p_value < 1e-5 and verdict.verdict == "worse"


def test_a_baseline_file_keeps_each_seeds_values_and_tasks_apart(
    three_seeds: Path, tmp_path: Path
) -> None:
    """Seeds with other values and other scored tasks: a file that put one seed's values under
    another's number, or kept one seed for all, would read back otherwise."""
    original = snapshot_of(load_results(three_seeds))
    path = tmp_path / "b.json"
    write_baseline(original, path, "bench baseline --suite s")
    again = read_baseline(path)
    cell = again.cells[MAE]
    assert cell.seeds == original.cells[MAE].seeds
    assert len(set(cell.seeds.values())) == 3
    for seed in (0, 1, 2):
        np.testing.assert_array_equal(cell.per_task[seed], original.cells[MAE].per_task[seed])
    assert np.isnan(cell.per_task[2][:4]).all() and not np.isnan(cell.per_task[1]).any()
    assert again.timings == original.timings
    assert compare(again, original, Tolerances(), baseline=path).exit_code == 0


# The view agreement -----------------------------------------------------------------------------


def test_a_learner_left_out_of_the_view_agreement_is_so_under_every_config() -> None:
    """Two configs of the oracle, best under both views: left out, the other three decide."""
    rows = []
    means = {
        "oracle~aaaaaa": (0.9, 0.95),
        "oracle~bbbbbb": (0.8, 0.85),
        "mf": (0.3, 0.5),
        "item-mean": (0.2, 0.6),
        "popularity": (0.1, 0.4),
    }
    for learner, (full, sampled) in means.items():
        for metric, value in (("recall@10", full), ("recall@10/sampled", sampled)):
            rows.append(
                {
                    "dataset": "d", "protocol": "p@1", "scenario": "warm", "k": "5",
                    "device": "cpu", "learner": learner, "metric": metric, "mean": value,
                }
            )  # fmt: skip
    (found,) = agreements(pd.DataFrame(rows), exclude=("oracle",)).values()
    assert found.learners == 3
    assert (found.best_full, found.best_sampled) == ("mf", "item-mean") and found.disagree
    assert found.tau == pytest.approx(1 / 3)
