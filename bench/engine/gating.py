"""``bench baseline`` and ``bench check``: run or read results, then write or compare a baseline."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.engine.plan import RunPlan, as_plan
from bench.engine.suite import Suite
from bench.errors import BenchError
from bench.results.analysis import Results, load_results
from bench.results.gate.baseline import read_baseline, write_baseline
from bench.results.gate.compare import Comparison, compare
from bench.results.gate.snapshot import Snapshot, snapshot_of
from bench.results.gate.tolerance import Tolerances, apply_flags, apply_table


def _log(message: str) -> None:
    print(message, file=sys.stderr)  # stdout carries the table or the JSON


@dataclass(frozen=True)
class SuiteRun:
    results: Results
    failed: list[tuple[str, str]]


def run_for_check(suite: Suite | RunPlan, store: Path, *, progress: bool) -> SuiteRun:
    """Run ``suite`` into ``store`` (reusing the cells it already holds) and read back the cells
    of this run."""
    from bench.engine.runner import run_suite
    from bench.results.store import ResultStore

    with ResultStore(store) as st:
        outcome = run_suite(suite, st, progress=progress, log=_log)
    _log(
        f"run {outcome.run_id} of suite {suite.name}: {outcome.computed} cell(s) computed, "
        f"{outcome.reused} reused from {store}"
    )
    for description, message in outcome.failed:
        _log(f"FAILED {description}: {message}")
    if not outcome.cell_keys:
        raise BenchError(f"suite {suite.name} ran no cell to compare")
    return SuiteRun(load_results(store, cell_keys=outcome.cell_keys), outcome.failed)


def make_baseline(
    suite: Suite | RunPlan, store: Path, out: Path, *, progress: bool, command: str
) -> int:
    """Run ``suite`` and write its baseline to ``out``; 1 (and no file) when a cell failed."""
    plan = as_plan(suite)
    suite = plan.suite
    run = run_for_check(plan, store, progress=progress)
    if run.failed:
        _log(f"{len(run.failed)} cell(s) failed: no baseline written to {out}")
        return 1
    tolerances = apply_table(Tolerances(), suite.check, f"{suite.source}: [check]")
    snapshot = snapshot_of(run.results, suite=suite.name, check=tolerances.as_table())
    write_baseline(snapshot, out, command)
    print(
        f"baseline {out}: {len(snapshot.cells)} metric cell(s), {len(snapshot.timings)} "
        f"timing(s) of suite {suite.name}"
    )
    return 0


@dataclass(frozen=True)
class CheckRequest:
    baseline: Path
    store: Path
    suite: Suite | RunPlan | None = None
    run_ids: tuple[str, ...] | None = None
    tolerance_flags: tuple[str, ...] = ()
    alpha: float | None = None
    timing_ratio: float | None = None
    timing: bool = True
    allow_missing: bool = False
    progress: bool = True


def _tolerances(request: CheckRequest, baseline: Snapshot) -> Tolerances:
    """Defaults, then the baseline's recorded table, the suite's table, then the flags."""
    tolerances = apply_table(Tolerances(), baseline.check, f"baseline {request.baseline}: check")
    if request.suite is not None:
        suite = as_plan(request.suite).suite
        tolerances = apply_table(tolerances, suite.check, f"{suite.source}: [check]")
    tolerances = apply_flags(tolerances, request.tolerance_flags)
    settings: dict[str, float] = {}
    if request.alpha is not None:
        settings["alpha"] = request.alpha
    if request.timing_ratio is not None:
        settings["timing"] = request.timing_ratio
    return apply_table(tolerances, settings, "command line") if settings else tolerances


def degenerate_warnings(results: Results) -> list[str]:
    """One line per (table, k, learner, device) whose predictions are degenerate: in at least
    half the tasks of a seed, every query item got the same prediction (floors excepted)."""
    from bench.evaluation.floors import is_floor
    from bench.results.analysis.floors import degenerate_cells

    frame = degenerate_cells(results)
    lines = []
    for row in frame[frame["degenerate"].astype(bool)].itertuples(index=False):
        if is_floor(str(row.learner)):
            continue
        lines.append(
            f"degenerate predictions: {row.learner} on {row.dataset} / {row.protocol} / "
            f"{row.scenario} k={row.k} / {row.device}: {row.tied_share:.0%} of a seed's tasks got "
            "one prediction for every query item"
        )
    return lines


def check(request: CheckRequest) -> tuple[Comparison, bool]:
    """Compare the suite's run (or the store's cells) with the baseline. Returns the comparison
    and whether a cell of the run failed."""
    comparison, failed, _ = check_with_warnings(request)
    return comparison, failed


def check_with_warnings(request: CheckRequest) -> tuple[Comparison, bool, list[str]]:
    """:func:`check`, and the warnings of the degenerate cells compared."""
    baseline = read_baseline(request.baseline)  # a bad baseline stops before any run
    tolerances = _tolerances(request, baseline)
    failed = False
    if request.suite is not None:
        run = run_for_check(request.suite, request.store, progress=request.progress)
        results, failed = run.results, bool(run.failed)
    else:
        results = load_results(request.store, run_ids=request.run_ids)
    current = snapshot_of(results)
    comparison = compare(
        baseline,
        current,
        tolerances,
        baseline=request.baseline,
        timing=request.timing,
        allow_missing=request.allow_missing,
    )
    return comparison, failed, degenerate_warnings(results)
