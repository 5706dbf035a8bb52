"""Learners against the floors, and cells whose predictions are degenerate.

- :func:`floor_marks`: in each family (table, k, device, ranking metric) that holds a floor
  learner (:mod:`bench.evaluation.floors`), every other learner is tested against the higher
  floor on their paired per-task values (Wilcoxon signed-rank, Holm-adjusted across the
  family's learners, as every comparison in :mod:`bench.results.analysis.summary`); it is *at floor*
  unless the adjusted p-value is below ``alpha`` with the difference in its favour.
- :func:`degenerate_cells`: per (table, k, learner, device), the share of tasks whose query
  predictions are all equal (the ``tied_share`` metric, worst seed); at least
  :data:`DEGENERATE_SHARE` of them tied marks the line *degenerate*.

Stability: experimental.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.evaluation.floors import is_floor
from bench.evaluation.metrics import is_ranking_metric
from bench.results.analysis.frames import Results
from bench.results.analysis.pairs import PairedFamilies
from bench.results.analysis.stats import holm
from bench.results.analysis.summary import (
    ALPHA,
    FAMILY_KEYS,
    TABLE_KEYS,
    learner_order,
    sort_rows,
)

FLOOR_COLUMNS = (
    *FAMILY_KEYS,
    "learner",
    "floor",
    "n_pairs",
    "mean_diff",
    "p_value",
    "p_holm",
    "at_floor",
)
DEGENERATE_SHARE = 0.5
"""A cell with at least this share of fully tied tasks is degenerate."""
DEGENERATE_COLUMNS = (*TABLE_KEYS, "k", "learner", "device", "tied_share", "degenerate")


def floor_marks(
    results: Results, alpha: float = ALPHA, *, pairs: PairedFamilies | None = None
) -> pd.DataFrame:
    """Each non-floor learner against the higher floor of each ranking family (``FLOOR_COLUMNS``);
    ``pairs`` as for :func:`bench.results.analysis.summary.compare_to_reference`."""
    pairs = PairedFamilies(results) if pairs is None else pairs
    rows = []
    for index, found_family in pairs:
        family = found_family.key
        if not is_ranking_metric(str(family["metric"])):
            continue
        learners = found_family.learners
        floors = [c for c in learners if is_floor(c)]
        if not floors:
            continue
        floor = max(floors, key=lambda c: float(np.nanmean(found_family.column(c))))
        others = [c for c in learners if not is_floor(c)]
        tests = [pairs.test(index, o, floor) for o in others]
        adjusted = holm([t.p_value for t in tests])
        for learner, test, p_holm in zip(others, tests, adjusted, strict=True):
            above = bool(p_holm < alpha and test.difference.mean > 0)
            rows.append(
                {
                    **family,
                    "learner": learner,
                    "floor": floor,
                    "n_pairs": test.n_pairs,
                    "mean_diff": test.difference.mean,
                    "p_value": test.p_value,
                    "p_holm": float(p_holm),
                    "at_floor": not above,
                }
            )
    frame = pd.DataFrame(rows, columns=list(FLOOR_COLUMNS))
    return sort_rows(frame, learner_order(results))


def degenerate_cells(results: Results) -> pd.DataFrame:
    """The worst seed's ``tied_share`` of each line (``DEGENERATE_COLUMNS``); floors included."""
    metrics = results.metrics
    tied = metrics[metrics["metric"] == "tied_share"]
    keys = [*TABLE_KEYS, "k", "learner", "device"]
    rows = []
    for key, group in tied.groupby(keys, sort=False):
        share = float(np.nanmax(group["value"].to_numpy(dtype=float))) if len(group) else np.nan
        row = dict(zip(keys, key, strict=True))
        row.update(tied_share=share, degenerate=bool(share >= DEGENERATE_SHARE))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(DEGENERATE_COLUMNS))
    return sort_rows(frame, learner_order(results))


def summary_with_marks(results: Results, *, pairs: PairedFamilies | None = None) -> pd.DataFrame:
    """:func:`bench.results.analysis.summary.summarise` with ``at_floor`` (on a ranking metric of a
    family with floors; empty elsewhere) and ``degenerate`` joined on its lines; ``pairs`` as for
    :func:`floor_marks`."""
    from bench.results.analysis.summary import summarise

    line = [*TABLE_KEYS, "k", "learner", "device"]
    marks = floor_marks(results, pairs=pairs)[[*line, "metric", "at_floor"]]
    tied = degenerate_cells(results)[[*line, "degenerate"]]
    out = summarise(results).merge(marks, on=[*line, "metric"], how="left")
    return out.merge(tied, on=line, how="left")


def marks_by_line(
    results: Results, *, pairs: PairedFamilies | None = None
) -> dict[tuple[str, ...], list[str]]:
    """Per (dataset, protocol, scenario, k, learner, device): the words a table shows beside it:
    ``at floor: METRIC, ...``, ``ignores support`` (in a cold scenario, every task's predictions
    stay the same without its support set, on some seed) and ``degenerate`` (floors themselves
    are not marked); ``pairs`` as for :func:`floor_marks`."""
    out: dict[tuple[str, ...], list[str]] = {}
    line = [*TABLE_KEYS, "k", "learner", "device"]
    marks = floor_marks(results, pairs=pairs)
    for key, group in marks[marks["at_floor"].astype(bool)].groupby(line, sort=False):
        names = ", ".join(sorted(set(group["metric"])))
        out.setdefault(tuple(map(str, key)), []).append(f"at floor: {names}")
    for cell in results.cells.itertuples(index=False):
        if is_floor(str(cell.learner)):
            continue
        for where, share in dict(cell.support_ignored).items():
            scenario, _, k = where.partition("/")
            if share >= 1.0:
                key = (str(cell.dataset), str(cell.protocol), scenario, k, str(cell.learner))
                words = out.setdefault((*key, str(cell.device)), [])
                if "ignores support" not in words:
                    words.append("ignores support")
    degenerate = degenerate_cells(results)
    for row in degenerate[degenerate["degenerate"].astype(bool)].itertuples(index=False):
        if not is_floor(str(row.learner)):
            key = tuple(str(getattr(row, c)) for c in line)
            out.setdefault(key, []).append(f"degenerate ({row.tied_share:.0%} of tasks tied)")
    return out
