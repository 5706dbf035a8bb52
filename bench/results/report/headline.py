"""The top of the report: one headline table per dataset and protocol (learners × scenarios, a few
main metrics, the marks) and the verdicts as one compact table, so the page answers its question
before any detail.

The headline shows, per (dataset, protocol), the largest support size and the first device; the
full tables below hold every support size, device, interval and metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bench.evaluation.floors import is_floor
from bench.evaluation.topn import is_topn_metric, shown_name
from bench.results.analysis import base_name, best_of, k_order, scenario_order
from bench.results.report.document import Cell, Paragraph, Section, Table
from bench.results.report.formatting import (
    fmt_diff,
    fmt_mean,
    fmt_p,
    rows_where,
    table_title,
    verdict_mark,
)

HEADLINE_METRICS: tuple[str, ...] = (
    "rmse",
    "ndcg@10",
    "recall@20",
    "precision@5/query",
    "ndcg@5",
    "mrr@5/query",
)
"""The metrics a headline may show, in order of preference; each table takes the first
``HEADLINE_WIDTH`` its results hold."""
HEADLINE_WIDTH = 3
VERDICT_WORDS = {"better": "better", "worse": "worse", "same": "no difference"}


def headline_metrics(summary: pd.DataFrame, dataset: str, protocol: str) -> list[str]:
    """The headline's metrics for one (dataset, protocol)."""
    present = set(rows_where(summary, dataset=dataset, protocol=protocol)["metric"])
    return [m for m in HEADLINE_METRICS if m in present][:HEADLINE_WIDTH]


def _short(mean: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.3f}"


def headline_section(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    marks: pd.DataFrame,
    learners: Sequence[str],
    tables: Sequence[tuple[str, str, str]],
    reference: str,
) -> Section:
    """One table per (dataset, protocol) of ``tables``: a row per learner, a column per
    (scenario, metric) at the largest support size, the mean over seeds with its marks."""
    section = Section("Headline", anchor="headline")
    section.blocks.append(
        Paragraph(
            "Mean over seeds at the largest support size; **bold**: best of the column, "
            f"*italic*: not significantly worse than the best, ▲/▼: significantly better/worse "
            f"than `{reference}` on the same tasks. Intervals, every support size and every "
            "metric are in the full tables below."
        )
    )
    pairs = list(dict.fromkeys((d, p) for d, p, _ in tables))
    for dataset, protocol in pairs:
        scenarios = sorted(
            {s for d, p, s in tables if (d, p) == (dataset, protocol)}, key=scenario_order
        )
        here = rows_where(summary, dataset=dataset, protocol=protocol)
        here = here[here["scenario"].isin(scenarios)]
        metrics = headline_metrics(summary, dataset, protocol)
        if here.empty or not metrics:
            continue
        k = max(set(here["k"]), key=k_order)
        device = sorted(set(here["device"]))[0]
        here = rows_where(here, k=k, device=device)
        ranked = any(is_topn_metric(m) for m in metrics)
        headers = ["learner"] + [shown_name(m, ranked) for _ in scenarios for m in metrics]
        table = Table(
            headers,
            caption=f"{dataset} · {protocol}, k={k}" + ("" if device == "cpu" else f", {device}"),
            groups=[("", 1), *((scenario, len(metrics)) for scenario in scenarios)],
        )
        values = here.set_index(["scenario", "learner", "metric"])
        versus = rows_where(comparisons, dataset=dataset, protocol=protocol, k=k, device=device)
        versus = versus.set_index(["scenario", "learner", "metric"])
        best = rows_where(marks, dataset=dataset, protocol=protocol, k=k, device=device)
        best = best.set_index(["scenario", "learner", "metric"])
        present = [name for name in learners if name in set(here["learner"])]
        # The floors close the table: every other row is read against them.
        present = [n for n in present if not is_floor(n)] + [n for n in present if is_floor(n)]
        for learner in present:
            row = [Cell(f"`{learner}`", learner)]
            for scenario in scenarios:
                for metric in metrics:
                    key = (scenario, learner, metric)
                    if key not in values.index:
                        row.append(Cell("—"))
                        continue
                    mean = float(values.loc[key, "mean"])
                    text = _short(mean)
                    if key in versus.index:
                        text += verdict_mark(str(versus.loc[key, "verdict"]))
                    found: tuple[str, ...] = ()
                    if key in best.index:
                        mark = best.loc[key]
                        found = (
                            ("best",) if mark["is_best"] else ("tie",) if mark["not_worse"] else ()
                        )
                    row.append(Cell(text, mean, found))
            table.rows.append(row)
        section.blocks.append(table)
    return section


def contenders(learners: Sequence[str], baselines: Sequence[str]) -> list[str]:
    """The learners a verdict may pick: neither a baseline nor a floor."""
    names = {base_name(label) for label in learners}
    return sorted(n for n in names if n not in set(baselines) and not is_floor(n))


def verdict_section(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    tables: Sequence[tuple[str, str, str]],
    baselines: Sequence[str],
    learners: Sequence[str],
    reference: str,
    show_device: bool,
) -> Section:
    """Per table, support size and headline metric: the best meta-learner against the
    reference, as one compact table."""
    section = Section(f"Best meta-learner against {reference}", anchor="verdicts")
    chosen = contenders(learners, baselines)
    if not chosen:
        section.blocks.append(
            Paragraph(f"No meta-learner ran (every learner is a baseline: {', '.join(baselines)}).")
        )
        return section
    section.blocks.append(
        Paragraph(
            f"For each table and headline metric, at the headline's support size: the meta-learner "
            f"({', '.join(chosen)}) with the best mean, and the paired test against "
            f"`{reference}` on the same tasks (Δ = meta-learner − {reference} per task, mean ±95% "
            "interval; p Holm-adjusted across the learners of the column)."
        )
    )
    table = Table(
        [
            "table",
            "k",
            *(["device"] if show_device else []),
            "metric",
            "best meta-learner",
            "its mean",
            reference,
            "Δ per task",
            "p (Holm)",
            "verdict",
        ]
    )
    for dataset, protocol, scenario in tables:
        metrics = headline_metrics(summary, dataset, protocol)
        here = rows_where(summary, dataset=dataset, protocol=protocol, scenario=scenario)
        if here.empty:
            continue
        # The headline's support size (the largest of the dataset and protocol): the full
        # tables hold the others.
        top = max(set(rows_where(summary, dataset=dataset, protocol=protocol)["k"]), key=k_order)
        here = here[here["k"] == top]
        picks = best_of(here[here["metric"].isin(metrics)], comparisons, chosen)
        lines = sorted(
            set(zip(picks["k"], picks["device"], strict=True)),
            key=lambda kd: (k_order(kd[0]), kd[1]),
        )
        for k, device in lines:
            for metric in metrics:
                pick = rows_where(picks, k=k, device=device, metric=metric)
                if pick.empty:
                    continue
                table.rows.append(
                    _verdict_row(
                        pick.iloc[0], here, table_title(dataset, protocol, scenario), show_device
                    )
                )
    section.blocks.append(table if table.rows else Paragraph("No verdicts."))
    return section


def _verdict_row(pick: pd.Series, here: pd.DataFrame, title: str, show_device: bool) -> list[Cell]:
    k, device, metric = str(pick["k"]), str(pick["device"]), str(pick["metric"])
    reference = pick.get("reference")
    mean = float(pick["mean"])
    cells = [Cell(title), Cell(k, k_order(k)[0] * 1e9 + (0 if k == "all" else int(k)))]
    cells += [Cell(device)] if show_device else []
    cells += [
        Cell(metric),
        Cell(f"`{pick['learner']}`"),
        Cell(fmt_mean(mean, pick["half_width"]), mean),
    ]
    if not isinstance(reference, str):
        return [*cells, Cell("did not run"), Cell("—"), Cell("—"), Cell("—")]
    ref = rows_where(here, k=k, device=device, metric=metric, learner=reference)
    ref_text = fmt_mean(ref["mean"].iat[0], ref["half_width"].iat[0]) if len(ref) else "n/a"
    verdict = str(pick["verdict"])
    return [
        *cells,
        Cell(ref_text, float(ref["mean"].iat[0]) if len(ref) else None),
        Cell(fmt_diff(pick["mean_diff"], pick["diff_half_width"]), float(pick["mean_diff"])),
        Cell(fmt_p(float(pick["p_holm"])), float(pick["p_holm"])),
        Cell(VERDICT_WORDS.get(verdict, verdict) + verdict_mark(verdict)),
    ]
