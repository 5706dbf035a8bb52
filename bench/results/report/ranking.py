"""The report's view of top-N ranking: which top-N columns it shows, their headers, and per table
how full and sampled ranking agree on the learners' order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from bench.evaluation.topn import is_topn_metric, shown_name
from bench.results.analysis.views import agreements
from bench.results.report.document import Paragraph

REPORTED_TOPN: tuple[str, ...] = (
    "recall@20",
    "ndcg@20/full",
    "recall@20/sampled",
    "ndcg@20/sampled",
)
"""Top-N columns a report shows where the results hold them (every top-N metric is exported)."""

FOOTER_ITEM = (
    "**Top-N columns**: `recall@K` and `ndcg@K/full` rank every candidate item of the scenario "
    "(all items but the task user's training and support items in warm and user_cold; the "
    "split's new items but the support in item_cold and user_item_cold); `…/sampled` ranks the "
    "liked query items among the task's fixed sampled negatives; `ndcg@K/query` ranks the "
    "task's own query (graded gain). Relevant items are the liked query items, with binary "
    "gain; a task without one is not scored. Ties are broken by a seeded random order shared "
    "by every learner. **Kendall τ** compares the learners' order under full and sampled "
    "ranking (oracle excluded); a table where the two name different best learners is flagged."
)


def headers(metrics: Sequence[str], suffix: Mapping[str, str] | None = None) -> list[str]:
    """Column names (each followed by its ``suffix``, such as an arrow): the in-query NDCG is
    named ``ndcg@K/query`` beside top-N columns."""
    ranked = any(is_topn_metric(m) for m in metrics)
    return [(shown_name(m, ranked) + (f" {suffix[m]}" if suffix else "")) for m in metrics]


def footer_items(metrics: Sequence[str]) -> tuple[str, ...]:
    return (FOOTER_ITEM,) if any(is_topn_metric(m) for m in metrics) else ()


def agreement_blocks(
    summary: pd.DataFrame, where: dict[str, str], exclude: Iterable[str], show_device: bool
) -> list[Paragraph]:
    text = agreement_text(summary, where, exclude, show_device)
    return [Paragraph(text)] if text else []


def agreement_text(
    summary: pd.DataFrame, where: dict[str, str], exclude: Iterable[str], show_device: bool
) -> str | None:
    """One paragraph on full vs sampled ranking for a table, or None where it lacks either."""
    found = agreements(summary, exclude)
    lines = []
    for (dataset, protocol, scenario, k, device), agreement in found.items():
        if (dataset, protocol, scenario) != (
            where["dataset"],
            where["protocol"],
            where["scenario"],
        ):
            continue
        label = f"k={k}" + (f", {device}" if show_device else "")
        flag = "⚠ " if agreement.disagree else ""
        lines.append(f"{flag}{label}: {agreement.sentence()}.")
    return " ".join(lines) if lines else None
