"""The rules of ``bench check`` on hand-made snapshots: direction, tolerance, significance,
Holm's correction across cells, timing ratios, and how tolerances are parsed and layered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.results.gate.baseline import read_baseline, write_baseline
from bench.results.gate.compare import Comparison, compare
from bench.results.gate.snapshot import CellName, CellValues, Origin, Snapshot, TimingValues
from bench.results.gate.tolerance import Limit, Tolerances, apply_flags, apply_table

ORIGIN = Origin(2, "d" * 16, "p" * 16, "exponential", "c" * 16)
TASKS = [str(i) for i in range(40)]


def name(metric: str, learner: str = "mf") -> CellName:
    return ("synthetic", "cold-random", "user_cold", "5", learner, "cpu", metric)


def snapshot(
    cells: dict[CellName, np.ndarray], *, per_task: bool = True, fit_s: float = 1.0
) -> Snapshot:
    """One seed; each cell's value is the mean of its per-task values."""
    return Snapshot(
        cells={
            n: CellValues(
                ORIGIN,
                {0: float(np.mean(values))},
                len(values),
                {0: values} if per_task else {},
            )
            for n, values in cells.items()
        },
        timings={
            ("synthetic", "cold-random", "mf", "cpu", "fit"): TimingValues(
                ORIGIN, fit_s, 1, "host", "1", 0
            )
        },
        tasks={"synthetic/cold-random/user_cold/k=5/seed=0": TASKS},
        suite="test",
    )


def run(old: Snapshot, new: Snapshot, tolerances: Tolerances | None = None) -> Comparison:
    return compare(old, new, tolerances or Tolerances(), baseline=Path("b.json"))


def verdict(comparison: Comparison, metric: str, learner: str = "mf") -> str:
    return next(
        v.verdict for v in comparison.verdicts if v.metric == metric and v.learner == learner
    )


BASE = np.linspace(0.5, 1.5, len(TASKS))
SHIFT = np.full(len(TASKS), 0.1)


def test_direction_comes_from_the_metric() -> None:
    old = snapshot({name("rmse"): BASE, name("ndcg@10"): BASE})
    new = snapshot({name("rmse"): BASE + SHIFT, name("ndcg@10"): BASE + SHIFT})
    comparison = run(old, new)
    assert verdict(comparison, "rmse") == "worse"  # lower is better
    assert verdict(comparison, "ndcg@10") == "better"
    assert comparison.exit_code == 1


def test_a_change_within_the_tolerance_is_the_same() -> None:
    old, new = snapshot({name("rmse"): BASE}), snapshot({name("rmse"): BASE + SHIFT})
    assert verdict(run(old, new, Tolerances(default=Limit(absolute=0.11))), "rmse") == "same"
    assert verdict(run(old, new, Tolerances(default=Limit(absolute=0.09))), "rmse") == "worse"
    # relative to the baseline's mean of 1.0
    assert verdict(run(old, new, Tolerances(default=Limit(0.0, 0.11))), "rmse") == "same"


def test_a_relative_tolerance_scales_with_a_baseline_far_from_one() -> None:
    """At a mean of 1.0 a relative and an absolute tolerance coincide; at 4.0 they do not."""
    far = BASE + 3.0  # mean 4.0
    old, new = snapshot({name("rmse"): far}), snapshot({name("rmse"): far + SHIFT})
    assert verdict(run(old, new, Tolerances(default=Limit(0.0, 0.03))), "rmse") == "same"
    assert verdict(run(old, new, Tolerances(default=Limit(0.0, 0.02))), "rmse") == "worse"
    assert verdict(run(old, new, Tolerances(default=Limit(absolute=0.03))), "rmse") == "worse"
    # against the absolute value of a negative baseline mean (-4.0), not the signed one
    low = BASE - 5.0
    old, new = snapshot({name("ndcg@10"): low}), snapshot({name("ndcg@10"): low - SHIFT})
    assert verdict(run(old, new, Tolerances(default=Limit(0.0, 0.03))), "ndcg@10") == "same"


def test_a_change_beyond_the_tolerance_that_is_noise_is_the_same() -> None:
    # Half the tasks up, half down by 0.05, and one outlier: the mean rises by 0.1, the
    # signed ranks balance.
    noise = np.where(np.arange(len(TASKS)) % 2 == 0, 0.05, -0.05)
    noise[0] += 4.0
    comparison = run(snapshot({name("rmse"): BASE}), snapshot({name("rmse"): BASE + noise}))
    (v,) = comparison.verdicts[:1]
    assert v.change == pytest.approx(0.1)
    assert v.verdict == "same" and v.p_holm >= 0.05
    assert "not significant" in v.note
    # Without per-task values only the tolerance decides.
    comparison = run(
        snapshot({name("rmse"): BASE}, per_task=False),
        snapshot({name("rmse"): BASE + noise}, per_task=False),
    )
    assert comparison.verdicts[0].verdict == "worse"
    assert "tolerance only" in comparison.verdicts[0].note


def test_holm_adjusts_across_the_cells_compared() -> None:
    # A small shift on 8 of 40 tasks: significant alone, not among many unchanged cells' tests.
    shift = np.where(np.arange(len(TASKS)) < 8, 0.2, 0.0) + np.linspace(0, 0.01, len(TASKS))
    alone = run(snapshot({name("rmse"): BASE}), snapshot({name("rmse"): BASE + shift}))
    assert alone.verdicts[0].verdict == "worse"
    p_alone = alone.verdicts[0].p_value
    others = {
        name("rmse", f"l{i}"): BASE + 0.05 * np.sin(np.arange(len(TASKS)) + i) for i in range(30)
    }
    old = snapshot({name("rmse"): BASE, **others})
    new = snapshot({name("rmse"): BASE + shift, **{n: v[::-1] for n, v in others.items()}})
    together = run(old, new)
    mf = next(v for v in together.verdicts if v.learner == "mf" and v.kind == "metric")
    assert mf.p_value == pytest.approx(p_alone)
    assert mf.p_holm > mf.p_value


def test_timing_ratio_and_slack() -> None:
    cells = {name("rmse"): BASE}
    slower = run(snapshot(cells, fit_s=1.0), snapshot(cells, fit_s=1.6))
    timing = next(v for v in slower.verdicts if v.kind == "timing")
    assert timing.verdict == "worse" and timing.change == pytest.approx(1.6)
    assert slower.exit_code == 1
    # within 1.5x, or slower by less than the slack in seconds
    assert run(snapshot(cells, fit_s=1.0), snapshot(cells, fit_s=1.4)).exit_code == 0
    assert run(snapshot(cells, fit_s=0.01), snapshot(cells, fit_s=0.05)).exit_code == 0
    faster = run(snapshot(cells, fit_s=1.0), snapshot(cells, fit_s=0.5))
    assert next(v for v in faster.verdicts if v.kind == "timing").verdict == "better"
    untimed = compare(
        snapshot(cells, fit_s=1.0), snapshot(cells, fit_s=9.0), Tolerances(), baseline=Path("b"),
        timing=False,
    )  # fmt: skip
    assert untimed.exit_code == 0 and all(v.kind == "metric" for v in untimed.verdicts)


def test_seeds_in_common_only() -> None:
    old = snapshot({name("rmse"): BASE})
    new_cell = CellValues(ORIGIN, {1: 5.0}, 40, {})
    new = Snapshot({name("rmse"): new_cell}, {}, {}, "test")
    comparison = run(old, new)
    assert comparison.verdicts[0].verdict == "not comparable"
    assert "no seed in common (baseline 0, now 1)" in comparison.verdicts[0].note
    assert comparison.exit_code == 2


def test_the_file_round_trips(tmp_path: Path) -> None:
    values = BASE.copy()
    values[3] = np.nan  # a task the metric could not score
    original = snapshot({name("auc"): values})
    path = tmp_path / "sub" / "b.json"
    write_baseline(original, path, "bench baseline --suite test")
    again = read_baseline(path)
    cell = again.cells[name("auc")]
    assert np.isnan(cell.per_task[0][3])
    np.testing.assert_allclose(cell.per_task[0], values, rtol=1e-6)
    assert again.timings == original.timings and again.tasks == original.tasks
    assert run(again, original).exit_code == 0
    with pytest.raises(BenchError, match="is a folder"):
        read_baseline(tmp_path)


def test_tolerances_layer_in_order() -> None:
    tolerances = apply_table(
        Tolerances(),
        {"relative": 0.0, "absolute": 0.01, "metric": {"rmse": {"absolute": 0.05}}},
        "suite: [check]",
    )
    assert tolerances.limit("rmse") == Limit(0.05, 0.0)
    assert tolerances.limit("mae") == Limit(0.01, 0.0)
    # A later table's default reaches the metrics that did not set that part themselves.
    later = apply_table(tolerances, {"relative": 0.2}, "later")
    assert later.limit("rmse") == Limit(0.05, 0.2)
    flags = apply_flags(later, ["ndcg@10=2%", "0.003", "rmse=0.1"])
    assert flags.limit("ndcg@10") == Limit(0.003, 0.02)
    assert flags.limit("rmse") == Limit(0.1, 0.2)
    assert flags.limit("auc") == Limit(0.003, 0.2)
    assert Limit(0.01, 0.1).allowed(-0.5) == pytest.approx(0.05)
    assert apply_table(Tolerances(), flags.as_table(), "round trip") == flags


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"alpha": 1.5}, "'alpha' must lie between 0 and 1"),
        ({"alpha": 0}, "'alpha' must lie strictly between 0 and 1"),
        ({"timing": 0.5}, "'timing' must lie between 1 and inf"),
        ({"absolute": "tight"}, "'absolute' must be a number, got 'tight'"),
        ({"metric": {"rmse": {"abs": 1}}}, "metric.rmse: unknown key(s) 'abs'"),
        ({"metric": {"rmse": 1}}, "metric.rmse must be a table"),
    ],
)
def test_bad_tables_name_the_field(table: dict[str, object], message: str) -> None:
    with pytest.raises(BenchError) as error:
        apply_table(Tolerances(), table, "s.toml: [check]")
    assert str(error.value).startswith("s.toml: [check]")
    assert message in str(error.value)
