"""The coverage of a scenario's table: tasks per seed, candidates left out, tasks a metric could
not score, and what the leakage audit said."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.results.report.document import Cell, Paragraph, Table
from bench.results.report.formatting import rows_where

LEFT_OUT_WARNING = 0.10
"""A scenario whose left-out share of candidate tasks reaches this is flagged."""


def coverage_blocks(
    coverage: pd.DataFrame, unscorable: pd.DataFrame, where: dict[str, str], metrics: list[str]
) -> list[Any]:
    """The coverage table of one scenario's table, with its warnings and notes."""
    coverage = rows_where(coverage, **where).sort_values("seed")
    if coverage.empty:
        return [Paragraph("Coverage: no split summary stored.")]
    unscored = rows_where(unscorable, **where)
    unscored = unscored[unscored["metric"].isin(metrics)]
    lossy = [m for m in metrics if (unscored[unscored["metric"] == m]["n_unscored"] > 0).any()]
    first = coverage.iloc[0]
    axis = first["task_axis"]
    min_pool = first["min_pool"]
    # A protocol without a pool bound (one task per entity) stores none: no bound to print.
    bounded = min_pool is not None and pd.notna(min_pool) and min_pool > 0
    left_header = f"left out (pool < {int(min_pool)} ratings)" if bounded else "left out"
    table = Table(
        ["seed", f"tasks ({axis}s)", left_header, *(f"unscorable {m}" for m in lossy)],
        caption="Coverage",
    )
    warnings = []
    for row in coverage.itertuples(index=False):
        candidates = row.tasks + row.left_out
        share = row.left_out / candidates if candidates else 0.0
        cells = [
            Cell(str(row.seed), row.seed),
            Cell(str(row.tasks), row.tasks),
            Cell(f"{row.left_out} ({share:.0%})", row.left_out),
        ]
        if share >= LEFT_OUT_WARNING:
            warnings.append(
                f"seed {row.seed}: {row.left_out} of {candidates} candidate {axis}s ({share:.0%})"
            )
        for metric in lossy:
            part = unscored[(unscored["seed"] == row.seed) & (unscored["metric"] == metric)]
            n = int(part["n_unscored"].max()) if len(part) else 0
            share_m = n / row.tasks if row.tasks else 0.0
            cells.append(Cell(f"{n} ({share_m:.0%})", n))
        table.rows.append(cells)
    notes = []
    outside = int(first["outside_activity_filter"] or 0)
    if outside:
        notes.append(
            f"{outside} {axis}s fall outside the protocol's activity filter and are in no scenario."
        )
    if first["validation_tasks"]:
        notes.append(
            f"{first['validation_tasks']} existing {axis}s per seed are validation tasks, "
            "kept out of training and of every scenario."
        )
    if not lossy:
        notes.append("Every metric scored every task.")
    notes += audit_notes(coverage)
    blocks: list[Any] = [table]
    if warnings:
        blocks.append(
            Paragraph(
                f"⚠ This scenario left out {LEFT_OUT_WARNING:.0%} or more of its candidate "
                f"{axis}s: " + "; ".join(warnings) + "."
            )
        )
    if notes:
        blocks.append(Paragraph(" ".join(notes)))
    return blocks


def audit_notes(coverage: pd.DataFrame) -> list[str]:
    """What the leakage audit said about the seeds of one table (nothing where not audited)."""
    outcomes = coverage.drop_duplicates("seed")[["seed", "audit"]]
    audited = outcomes[outcomes["audit"].astype(bool)]
    if audited.empty:
        return []
    failed = audited[audited["audit"] != "passed"]
    if failed.empty:
        return ["The leakage audit (`bench audit`) passed on every seed."]
    listed = "; ".join(f"seed {r.seed}: {r.audit}" for r in failed.itertuples(index=False))
    return [f"⚠ The leakage audit (`bench audit`) failed: {listed}."]
