"""The report's Slices section: a metric per learner in quantile buckets of the task entities'
activity and rating coherence (:mod:`bench.results.analysis.slices`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.evaluation.floors import is_floor
from bench.evaluation.metrics import is_ranking_metric
from bench.protocol.slices import ATTRIBUTES
from bench.results.analysis.frames import Results, k_order, scenario_order
from bench.results.analysis.slices import (
    DEFAULT_BUCKETS,
    UNDEFINED,
    has_slices,
    sliced_metrics,
)
from bench.results.report.document import Cell, Paragraph, Section, Table
from bench.results.report.formatting import fmt_mean, rows_where

LINE_KEYS = ("dataset", "protocol", "scenario", "k", "device")
MEANING = {
    "activity": "ratings the split holds of the entity outside its query (training plus support "
    "pool)",
    "coherence": "standard deviation of those ratings (lower: more coherent)",
}


def slices_section(
    results: Results, metric: str = "rmse", n_buckets: int = DEFAULT_BUCKETS
) -> Section | None:
    """The section, or None when no selected cell stored slice attributes."""
    if not has_slices(results):
        return None
    stored = set(results.metrics["metric"])
    if metric not in stored:
        metric = sorted(stored)[0]
    section = Section("Results by slice of the test entities", anchor="slices")
    section.blocks.append(
        Paragraph(
            f"{metric} of each learner over the test tasks of each bucket, mean over seeds ±95% "
            f"t-interval; n: the bucket's tasks per seed. Buckets are {n_buckets} quantile "
            "buckets of the attribute over the task entities of all seeds (ties can merge "
            "two), the same for every learner. "
            + " ".join(f"*{name}*: {MEANING[name]}." for name in ATTRIBUTES)
            + " The query ratings a task is scored on never enter its attribute."
        )
    )
    for attribute in ATTRIBUTES:
        sliced = sliced_metrics(results, attribute, (metric,), n_buckets)
        if not is_ranking_metric(metric):  # a floor's rating is one constant: no floor here
            sliced = sliced[~sliced["learner"].map(is_floor).astype(bool)]
        if sliced.empty:
            continue
        lines = sorted(
            sliced[list(LINE_KEYS)].drop_duplicates().itertuples(index=False, name=None),
            key=lambda t: (t[0], t[1], scenario_order(t[2]), k_order(t[3]), t[4]),
        )
        for line in lines:
            where = dict(zip(LINE_KEYS, line, strict=True))
            section.blocks.append(_table(rows_where(sliced, **where), where, attribute, metric))
    return section


def _label(attribute: str, low: float, high: float, bucket: int) -> str:
    if bucket == UNDEFINED:
        return f"{attribute} undefined"
    digits = ".0f" if attribute == "activity" else ".3f"
    if low == high:
        return f"{attribute} {low:{digits}}"
    return f"{attribute} {low:{digits}}–{high:{digits}}"


def _table(here: pd.DataFrame, where: dict[str, Any], attribute: str, metric: str) -> Table:
    buckets = (
        here[["bucket", "low", "high", "n_tasks"]]
        .drop_duplicates("bucket")
        .assign(_order=lambda f: f["bucket"].replace(UNDEFINED, 10**6))
        .sort_values("_order")
    )
    headers = ["learner"] + [
        f"{_label(attribute, b.low, b.high, int(b.bucket))} (n={b.n_tasks:.0f})"
        for b in buckets.itertuples(index=False)
    ]
    table = Table(
        headers,
        caption=(
            f"{where['dataset']} · {where['protocol']} · {where['scenario']}, k={where['k']}"
            + (f", {where['device']}" if where["device"] != "cpu" else "")
            + f": {metric} by {attribute}"
        ),
    )
    for learner in dict.fromkeys(here["learner"]):
        mine = here[here["learner"] == learner].set_index("bucket")
        row = [Cell(str(learner))]
        for bucket in buckets["bucket"]:
            if bucket in mine.index:
                value = mine.loc[bucket]
                row.append(Cell(fmt_mean(value["mean"], value["half_width"]), float(value["mean"])))
            else:
                row.append(Cell("—"))
        table.rows.append(row)
    return table
