"""Compare a snapshot of results with a baseline, cell by cell.

A metric cell is *worse* when it moved against the metric's direction by more than its tolerance
and, where both sides have per-task values, the paired Wilcoxon signed-rank test on the same
tasks of the same seeds finds the change significant (p-values Holm-adjusted across all the
cells compared, at ``alpha``); *better* mirrors it; anything else is *same*. Cells present on one
side only are *new* or *missing*; a cell whose split changed (protocol version, protocol
parameters, dataset content, NDCG gain) or that shares no seed with the baseline is *not
comparable*. Values are means over the seeds both sides have.

Timings compare as ratios (new / old) of a learner's fit seconds and adapt+predict seconds per
seed: *worse* above the timing tolerance when the slow-down is also more than ``timing_slack``
seconds, *better* below its inverse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.evaluation.metrics import DEFAULT_METRICS, METRICS, is_ranking_metric
from bench.evaluation.topn import is_topn_metric
from bench.results.analysis import holm, k_order, paired_test, scenario_order
from bench.results.analysis.summary import higher_is_better
from bench.results.gate.snapshot import CellName, Origin, Snapshot, TimingName
from bench.results.gate.tolerance import Tolerances

WORSE, BETTER, SAME, NEW, MISSING, NOT_COMPARABLE = (
    "worse",
    "better",
    "same",
    "new",
    "missing",
    "not comparable",
)
VERDICTS = (WORSE, BETTER, SAME, NEW, MISSING, NOT_COMPARABLE)
PENDING = ""  # a comparable metric cell before its p-value is adjusted
FIT, PREDICT = "fit seconds", "predict seconds"
TIMING_METRICS = {"fit": FIT, "predict": PREDICT}


@dataclass(frozen=True)
class Verdict:
    """One cell's outcome. ``old`` and ``new`` are means over the common seeds (timings: seconds);
    ``change`` is new - old (timings: new / old); ``allowed`` the tolerance on that change;
    ``p_value`` the paired test's (``p_holm`` adjusted), NaN where it could not be formed."""

    kind: str
    dataset: str
    protocol: str
    scenario: str
    k: str
    learner: str
    device: str
    metric: str
    verdict: str
    old: float = math.nan
    new: float = math.nan
    change: float = math.nan
    allowed: float = math.nan
    n_pairs: int = 0
    p_value: float = math.nan
    p_holm: float = math.nan
    note: str = ""

    @property
    def title(self) -> str:
        where = f"{self.dataset} {self.protocol}"
        if self.kind == "metric":
            where += f" {self.scenario} k={self.k}"
        return f"{where} {self.learner} {self.device} {self.metric}"


@dataclass(frozen=True)
class Comparison:
    """Every verdict of one check, and what its exit status is."""

    baseline: Path
    verdicts: list[Verdict]
    tolerances: Tolerances
    timing: bool
    allow_missing: bool = False

    def count(self, verdict: str) -> int:
        return sum(v.verdict == verdict for v in self.verdicts)

    def where(self, verdict: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.verdict == verdict]

    @property
    def exit_code(self) -> int:
        """1 when a cell regressed; else 2 when some could not be compared (missing cells
        too, unless allowed); else 0."""
        if self.count(WORSE):
            return 1
        if self.count(NOT_COMPARABLE) or (self.count(MISSING) and not self.allow_missing):
            return 2
        return 0

    @property
    def outcome(self) -> str:
        """One sentence on the exit status."""
        if self.count(WORSE):
            return f"{self.count(WORSE)} cell(s) regressed"
        problems = []
        if self.count(NOT_COMPARABLE):
            problems.append(f"{self.count(NOT_COMPARABLE)} cell(s) not comparable")
        if self.count(MISSING) and not self.allow_missing:
            problems.append(f"{self.count(MISSING)} baseline cell(s) missing")
        if problems:
            return " and ".join(problems) + ": refresh the baseline if the change is intended"
        return "nothing regressed"


def _changed_split(old: Origin, new: Origin, protocol: str, metric: str) -> str:
    """Why two cells were computed on different splits, or ``""``."""
    if old.protocol_version != new.protocol_version:
        return (
            f"protocol version changed: {protocol}@{old.protocol_version} -> "
            f"{protocol}@{new.protocol_version}"
        )
    if old.protocol_hash != new.protocol_hash:
        return (
            f"protocol parameters changed (hash {old.protocol_hash[:8]} -> {new.protocol_hash[:8]})"
        )
    if old.dataset_hash != new.dataset_hash:
        return f"dataset changed (hash {old.dataset_hash[:8]} -> {new.dataset_hash[:8]})"
    graded = metric.startswith("ndcg") and not is_topn_metric(metric)  # top-N gain is binary
    if graded and old.ndcg_gain != new.ndcg_gain:
        return f"NDCG gain changed: {old.ndcg_gain} -> {new.ndcg_gain}"
    if is_ranking_metric(metric) and old.tie_policy != new.tie_policy:
        return f"tie policy changed: {old.tie_policy} -> {new.tie_policy}"
    return ""


def _seeds_text(seeds: Iterable[int]) -> str:
    return ",".join(map(str, sorted(seeds))) or "none"


def _same_unique(a: list[str], b: list[str]) -> bool:
    return a == b and len(set(a)) == len(a)


def _paired(old: Snapshot, new: Snapshot, name: CellName, seeds: list[int]) -> tuple[int, float]:
    """Pairs and p-value of new against old on the tasks both scored, over the common seeds."""
    olds, news = [], []
    for seed in seeds:
        mine, theirs = new.listed(name, seed), old.listed(name, seed)
        if mine is not None and theirs is not None and _same_unique(mine[0], theirs[0]):
            # the same tasks in the same order: what the intersection below would pair
            news.append(np.asarray(mine[1], dtype=np.float64))
            olds.append(np.asarray(theirs[1], dtype=np.float64))
            continue
        a, b = new.per_task(name, seed), old.per_task(name, seed)
        common = a.index.intersection(b.index)
        news.append(a.loc[common].to_numpy())
        olds.append(b.loc[common].to_numpy())
    if not news:
        return 0, math.nan
    test = paired_test(np.concatenate(news), np.concatenate(olds))
    return test.n_pairs, test.p_value


def _metric_verdict(old: Snapshot, new: Snapshot, name: CellName) -> Verdict:
    dataset, protocol, scenario, k, learner, device, metric = name
    base = Verdict("metric", dataset, protocol, scenario, k, learner, device, metric, PENDING)
    if name not in new.cells:
        o = old.cells[name]
        return replace(
            base,
            protocol=f"{protocol}@{o.origin.protocol_version}",
            verdict=MISSING,
            old=o.mean(sorted(o.seeds)),
        )
    n = new.cells[name]
    base = replace(base, protocol=f"{protocol}@{n.origin.protocol_version}")
    if name not in old.cells:
        return replace(base, verdict=NEW, new=n.mean(sorted(n.seeds)))
    o = old.cells[name]
    seeds = sorted(set(o.seeds) & set(n.seeds))
    reason = _changed_split(o.origin, n.origin, protocol, metric)
    if not reason and metric not in METRICS and not is_topn_metric(metric):
        reason = f"metric {metric!r} is no longer registered"
    if not reason and not seeds:
        reason = f"no seed in common (baseline {_seeds_text(o.seeds)}, now {_seeds_text(n.seeds)})"
    if reason:
        return replace(
            base,
            verdict=NOT_COMPARABLE,
            old=o.mean(sorted(o.seeds)),
            new=n.mean(sorted(n.seeds)),
            note=reason,
        )
    notes = []
    if set(o.seeds) != set(n.seeds):
        notes.append(
            f"seeds {_seeds_text(seeds)} in common (baseline {_seeds_text(o.seeds)}, "
            f"now {_seeds_text(n.seeds)})"
        )
    if o.origin.config_hash != n.origin.config_hash:
        notes.append("learner config changed")
    n_pairs, p_value = _paired(old, new, name, seeds)
    old_mean, new_mean = o.mean(seeds), n.mean(seeds)
    return replace(
        base,
        old=old_mean,
        new=new_mean,
        change=new_mean - old_mean,
        n_pairs=n_pairs,
        p_value=p_value,
        note="; ".join(notes),
    )


def _decide(verdict: Verdict, tolerances: Tolerances) -> Verdict:
    """The verdict of a comparable metric cell, from its change, tolerance and p-value."""
    old, new = verdict.old, verdict.new
    if math.isnan(old) and math.isnan(new):
        return replace(verdict, verdict=SAME, note=_join(verdict.note, "no value on either side"))
    if math.isnan(old) or math.isnan(new):
        side = "the baseline" if math.isnan(old) else "the new results"
        return replace(
            verdict, verdict=NOT_COMPARABLE, note=_join(verdict.note, f"no value in {side}")
        )
    allowed = tolerances.limit(verdict.metric).allowed(old)
    gain = verdict.change if higher_is_better(verdict.metric) else -verdict.change
    outcome = SAME
    if abs(gain) > allowed:
        outcome = BETTER if gain > 0 else WORSE
        if math.isfinite(verdict.p_holm) and verdict.p_holm >= tolerances.alpha:
            outcome = SAME
            note = f"beyond the tolerance but not significant (p_holm={verdict.p_holm:.3g})"
            verdict = replace(verdict, note=_join(verdict.note, note))
        elif verdict.n_pairs == 0:
            verdict = replace(
                verdict, note=_join(verdict.note, "no per-task values: tolerance only")
            )
    return replace(verdict, verdict=outcome, allowed=allowed)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _timing_verdict(
    old: Snapshot, new: Snapshot, name: TimingName, tolerances: Tolerances
) -> Verdict:
    dataset, protocol, learner, device, phase = name
    base = Verdict(
        "timing", dataset, protocol, "*", "*", learner, device, TIMING_METRICS[phase], SAME
    )
    if name not in new.timings:
        o = old.timings[name]
        return replace(
            base, protocol=f"{protocol}@{o.origin.protocol_version}", verdict=MISSING, old=o.seconds
        )
    n = new.timings[name]
    base = replace(base, protocol=f"{protocol}@{n.origin.protocol_version}", new=n.seconds)
    if name not in old.timings:
        return replace(base, verdict=NEW)
    o = old.timings[name]
    base = replace(base, old=o.seconds)
    reason = _changed_split(o.origin, n.origin, protocol, "")
    if reason:
        return replace(base, verdict=NOT_COMPARABLE, note=reason)
    notes = []
    if o.host != n.host:
        notes.append(f"timed on {n.host}, baseline on {o.host}")
    if o.torch_threads != n.torch_threads:
        notes.append(f"torch threads {o.torch_threads} -> {n.torch_threads}")
    if n.under_load:
        notes.append(f"{n.under_load} phase(s) timed under load")
    if not (o.seconds > 0 and math.isfinite(n.seconds)):
        return replace(base, note=_join(*notes, "no time to compare"))
    ratio = n.seconds / o.seconds
    outcome = SAME
    if ratio > tolerances.timing and n.seconds - o.seconds > tolerances.timing_slack:
        outcome = WORSE
    elif ratio < 1 / tolerances.timing and o.seconds - n.seconds > tolerances.timing_slack:
        outcome = BETTER
    return replace(
        base, verdict=outcome, change=ratio, allowed=tolerances.timing, note=_join(*notes)
    )


def compare(
    old: Snapshot,
    new: Snapshot,
    tolerances: Tolerances,
    *,
    baseline: Path,
    timing: bool = True,
    allow_missing: bool = False,
) -> Comparison:
    """Every cell of ``old`` and ``new`` with its verdict.

    Raises:
        BenchError: the two share no cell at all.
    """
    if not set(old.cells) & set(new.cells):
        raise BenchError(
            f"nothing in common with baseline {baseline}: it holds {old.describe()} "
            f"(suite {old.suite or '?'}); the results hold {new.describe()}"
        )
    names = sorted(set(old.cells) | set(new.cells), key=_cell_order)
    verdicts = [_metric_verdict(old, new, name) for name in names]
    tested = [i for i, v in enumerate(verdicts) if v.verdict == PENDING]
    adjusted = holm([verdicts[i].p_value for i in tested])
    for i, p_holm in zip(tested, adjusted, strict=True):
        verdicts[i] = _decide(replace(verdicts[i], p_holm=float(p_holm)), tolerances)
    if timing:
        timing_names = sorted(set(old.timings) | set(new.timings))
        verdicts += [_timing_verdict(old, new, name, tolerances) for name in timing_names]
    return Comparison(baseline, verdicts, tolerances, timing, allow_missing)


def _cell_order(name: CellName) -> tuple[object, ...]:
    dataset, protocol, scenario, k, learner, device, metric = name
    metric_rank = DEFAULT_METRICS.index(metric) if metric in DEFAULT_METRICS else 99
    k_rank = k_order(k) if k == "all" or k.isdigit() else (2, 0)
    return (
        dataset,
        protocol,
        scenario_order(scenario),
        k_rank,
        learner,
        device,
        metric_rank,
        metric,
    )
