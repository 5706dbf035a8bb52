"""The families of paired per-task values are laid out as ``DataFrame.pivot`` lays them out (same
families in the same order, same learners, same rows: sums over them add up in the same order),
and each paired test runs once however many comparisons read it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.results.analysis import (
    Results,
    best_marks,
    compare_to_reference,
    load_results,
    summarise,
)
from bench.results.analysis.floors import floor_marks
from bench.results.analysis.pairs import (
    PairedFamilies,
    _families_from_frame,
    _families_from_values,
    row_groups,
)
from bench.results.analysis.summary import paired_families
from bench.results.records import CellRecord, Evaluation
from bench.results.store import ResultStore


def ragged_store(path: Path, make_cell: Callable[..., CellRecord]) -> Path:
    """Learners that scored different tasks, stored in different orders, with entity ids whose
    text order is not their numeric order, NaN values and two seeds, two metrics and k; the
    first learner in the store's order has no task at k = 1, so that family comes second."""
    rng = np.random.default_rng(4)
    learners = ("mf", "zeta", "alpha", "floor-random")
    with ResultStore(path) as store:
        store.start_run("r", "s", {"learners": list(learners)}, {})
        keys = []
        for learner in learners:
            for seed in (1, 0):
                key = f"{learner}-{seed}"
                record = make_cell(key, learner, "r", seed)
                for k in ("5", "1"):
                    size = 0 if (learner, k) == ("alpha", "1") else int(rng.integers(20, 40))
                    chosen = rng.choice(40, size=size, replace=False)
                    ids = [str(9 - i) if i < 12 else f"u{i}" for i in chosen]
                    record.evaluations.append(Evaluation("user_cold", k, ids, [5] * len(ids)))
                    for metric in ("ndcg@3", "mae"):
                        values = np.round(rng.random(len(ids)), 2)
                        values[rng.random(len(ids)) < 0.1] = np.nan
                        mean = float(np.nanmean(values)) if size else float("nan")
                        record.metrics.append(("user_cold", k, metric, mean, len(ids), 0, values))
                store.write_cell(record)
                keys.append(key)
        store.finish_run("r", "finished", keys)
    return path


def assert_same_as_pivot(results: Results) -> None:
    """Both ways of building the families (from the stored values, from the per-task frame)
    give ``paired_families``' pivots, in its order."""
    expected = list(paired_families(results))
    from_values = _families_from_values(results)
    assert from_values is not None
    for families in (from_values, _families_from_frame(results.per_task)):
        assert len(families) == len(expected) > 0
        for family, (key, wide) in zip(families, expected, strict=True):
            assert family.key == key
            assert family.learners == list(wide.columns)
            for learner in family.learners:
                column = family.column(learner)
                assert column.flags.c_contiguous
                np.testing.assert_array_equal(column, wide[learner].to_numpy())
    pairs = PairedFamilies(results)
    assert [i for i, _ in pairs] == list(range(len(expected)))


def test_families_match_the_pandas_pivot(
    tmp_path: Path, planted_store: Path, make_cell: Callable[..., CellRecord]
) -> None:
    assert_same_as_pivot(load_results(planted_store))
    assert_same_as_pivot(load_results(ragged_store(tmp_path / "r.sqlite", make_cell)))


def test_each_test_runs_once_and_shared_tests_change_nothing(
    tmp_path: Path, make_cell: Callable[..., CellRecord]
) -> None:
    results = load_results(ragged_store(tmp_path / "r.sqlite", make_cell))
    pairs = PairedFamilies(results)
    assert pairs.test(0, "zeta", "mf") is pairs.test(0, "zeta", "mf")
    summary = summarise(results)
    shared = (
        compare_to_reference(results, "mf", pairs=pairs),
        best_marks(results, summary, pairs=pairs),
        floor_marks(results, pairs=pairs),
    )
    alone = (
        compare_to_reference(results, "mf"),
        best_marks(results, summary),
        floor_marks(results),
    )
    for a, b in zip(shared, alone, strict=True):
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_a_task_scored_twice_by_one_learner_is_refused(
    tmp_path: Path, make_cell: Callable[..., CellRecord]
) -> None:
    with ResultStore(tmp_path / "d.sqlite") as store:
        store.start_run("r", "s", {"learners": ["mf"]}, {})
        record = make_cell("mf-0", "mf", "r")
        record.evaluations.append(Evaluation("user_cold", "5", ["a", "a"], [5, 5]))
        values = np.array([0.5, 0.6])
        record.metrics.append(("user_cold", "5", "mae", 0.55, 2, 0, values))
        store.write_cell(record)
        store.finish_run("r", "finished", ["mf-0"])
    results = load_results(tmp_path / "d.sqlite")
    assert _families_from_values(results) is None  # left to the frame, which refuses it
    with pytest.raises(ValueError, match="duplicate"):
        PairedFamilies(results)


def test_row_groups_are_the_groupby_groups() -> None:
    frame = pd.DataFrame(
        {"a": ["y", "x", "y", None, "x"], "b": [2, 1, 2, 1, 3], "v": [1.0, 2.0, 3.0, 4.0, 5.0]}
    )
    found = [(key, rows.tolist()) for key, rows in row_groups(frame, ["a", "b"])]
    expected = [
        (key, list(frame.index.get_indexer(group.index)))
        for key, group in frame.groupby(["a", "b"], sort=False)
    ]
    assert found == expected == [(("y", 2), [0, 2]), (("x", 1), [1]), (("x", 3), [4])]
    rng = np.random.default_rng(0)
    many = pd.DataFrame({"a": rng.choice(list("pqr"), 500), "b": rng.integers(0, 4, 500)})
    found = [(key, rows.tolist()) for key, rows in row_groups(many, ["a", "b"])]
    expected = [(key, group.index.tolist()) for key, group in many.groupby(["a", "b"], sort=False)]
    assert found == expected  # rows in their order within each group
