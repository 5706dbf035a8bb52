"""The report's Robustness section: metric against support-corruption strength per learner,
slopes, areas, breakdown strengths and paired tests of per-task degradation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.analysis.frames import Results, k_order, scenario_order
from bench.results.analysis.robustness import (
    DEFAULT_DELTA,
    LINE_KEYS,
    has_robustness,
    paired_degradation,
    robustness_curves,
    robustness_summary,
    robustness_verdicts,
)
from bench.results.report.document import Bullets, Cell, Figure, Paragraph, Section, Table
from bench.results.report.figures import slug
from bench.results.report.formatting import fmt_diff, fmt_mean, fmt_p, rows_where
from bench.results.report.robustness_figure import robustness_figure

DEFAULT_BASELINE = "item-mean"
TESTED_STRENGTHS = 2
"""The paired tests are shown at the largest strengths, this many of them."""


def suite_setting(results: Results, name: str, default: Any) -> Any:
    """A setting of the runs' suites' robustness tables (the first run that sets it)."""
    for config in results.runs.get("config", pd.Series(dtype=object)):
        table = config.get("robustness") if isinstance(config, dict) else None
        kinds = (int, float) if isinstance(default, float) else (type(default),)
        value = table.get(name) if isinstance(table, dict) else None
        if isinstance(value, kinds) and not isinstance(value, bool):
            return value
    return default


def verdict_frame(results: Results, metric: str = "rmse", alpha: float = 0.05) -> pd.DataFrame:
    """The verdicts of the suite's robustness rule, as the report states them (empty without a
    perturbed evaluation)."""
    if not has_robustness(results) or metric not in set(results.metrics["metric"]):
        return pd.DataFrame()
    baseline = str(suite_setting(results, "baseline", DEFAULT_BASELINE))
    delta = float(suite_setting(results, "delta", DEFAULT_DELTA))
    return robustness_verdicts(results, metric, baseline, delta, alpha)


def robustness_section(
    results: Results,
    metric: str = "rmse",
    alpha: float = 0.05,
    figure_dir: Path | None = None,
    *,
    svg: bool = True,
) -> Section | None:
    """The section, or None when the store holds no perturbed evaluation; with ``figure_dir``
    it draws the curves of each scenario and support size there (PNG, and SVG with ``svg``)."""
    if not has_robustness(results):
        return None
    stored = set(results.metrics["metric"])
    if metric not in stored:
        metric = sorted(stored)[0]
    baseline = str(suite_setting(results, "baseline", DEFAULT_BASELINE))
    delta = float(suite_setting(results, "delta", DEFAULT_DELTA))
    curves = robustness_curves(results, (metric,))
    summary = robustness_summary(results, (metric,), baseline)
    paired = paired_degradation(results, (metric,), alpha)
    section = Section("Robustness to corrupted support sets", anchor="robustness")
    section.blocks.append(
        Paragraph(
            f"Each learner was fitted once per seed and evaluated on the same test tasks with a "
            f"share s of every task's support ratings corrupted (s = 0: the clean run). Cells: "
            f"{metric} at each strength, mean over seeds ±95% t-interval. Slope: least squares "
            f"of ΔM(s) = M(s) − M(0) against s through the origin, per seed, then mean ± "
            f"interval over seeds. Area: the area under ΔM(s) over [0, s_max] divided by s_max "
            f"(the mean degradation over the range). Breakdown: the first strength at which the "
            f"learner's mean is worse than `{baseline}`'s at the same strength (— never). The "
            f"floor learners ignore the support by construction and are left out. Kinds named "
            f"`train-…` corrupt a share s of the training ratings instead, and `shill-…` add s "
            f"fake profiles per training user: both refit every learner at each s and score it "
            f"on the clean test tasks."
        )
    )
    lines = curves[list(LINE_KEYS)].drop_duplicates()
    ordered = sorted(
        lines.itertuples(index=False, name=None),
        key=lambda t: (t[0], t[1], scenario_order(t[2]), k_order(t[3]), *t[4:]),
    )
    verdicts = robustness_verdicts(results, metric, baseline, delta, alpha)
    if figure_dir is not None:
        section.blocks += _figures(curves, metric, figure_dir, svg)
    for line in ordered:
        where = dict(zip(LINE_KEYS, line, strict=True))
        section.blocks.append(_curve_table(curves, summary, where, metric))
        tests = _paired_items(paired, where) + _verdict_items(verdicts, where)
        if tests:
            section.blocks.append(Bullets(tuple(tests)))
    section.blocks.append(
        Paragraph(
            f"Verdicts (the suite's rule, fixed before the run): A is *more robust* than B under "
            f"a kind only if A's slope is lower, A degrades significantly less per task at each "
            f"of the {TESTED_STRENGTHS} largest strengths, A's clean {metric} is no worse than "
            f"B's by more than δ = {delta:g}, and B uses its support set (its clean per-task "
            f"values differ significantly from `{baseline}`'s). A flatter learner that fails "
            f"only the accuracy condition is *flatter but less accurate*; every other pair shows "
            f"*no difference*, and is not listed."
        )
    )
    return section


def _figures(curves: pd.DataFrame, metric: str, figure_dir: Path, svg: bool) -> list[Figure]:
    """One figure per (dataset, protocol, scenario, k, device), a panel per kind."""
    keys = ["dataset", "protocol", "scenario", "k", "device"]
    groups = curves[keys].drop_duplicates().itertuples(index=False, name=None)
    ordered = sorted(groups, key=lambda t: (t[0], t[1], scenario_order(t[2]), k_order(t[3])))
    out = []
    for dataset, protocol, scenario, k, device in ordered:
        part = rows_where(
            curves, dataset=dataset, protocol=protocol, scenario=scenario, k=k, device=device
        )
        title = f"{metric} against corruption: {dataset} · {protocol} · {scenario}, k={k}"
        stem = figure_dir / slug("robustness", dataset, protocol, scenario, str(k), device)
        learners = list(dict.fromkeys(part["learner"]))
        out.append(robustness_figure(part, title, metric, learners, stem, svg=svg))
    return out


def _verdict_items(verdicts: pd.DataFrame, where: dict[str, Any]) -> list[str]:
    here = rows_where(verdicts, **where)
    here = here[here["verdict"] != "no difference"]
    return [
        f"Verdict: {row.learner} is **{row.verdict}** than {row.other} under {row.kind}."
        if row.verdict == "more robust"
        else f"Verdict: {row.learner} is *{row.verdict}* than {row.other} under {row.kind} "
        f"({row.reason})."
        for row in here.itertuples(index=False)
    ]


def _curve_table(
    curves: pd.DataFrame, summary: pd.DataFrame, where: dict[str, Any], metric: str
) -> Table:
    here = rows_where(curves, **where)
    strengths = sorted(set(here["strength"]))
    table = Table(
        ["learner", *(f"s={s:g}" for s in strengths), "slope", "area", "breakdown"],
        caption=(
            f"{where['dataset']} · {where['protocol']} · {where['scenario']}, k={where['k']}, "
            f"{where['kind']}: {metric}"
        ),
    )
    lines = rows_where(summary, **where)
    for learner in dict.fromkeys(here["learner"]):
        mine = here[here["learner"] == learner].set_index("strength")
        row = [Cell(str(learner))]
        for s in strengths:
            if s in mine.index:
                value = mine.loc[s]
                row.append(Cell(fmt_mean(value["mean"], value["half_width"]), float(value["mean"])))
            else:
                row.append(Cell("—"))
        line = lines[lines["learner"] == learner]
        if line.empty:
            row += [Cell("—"), Cell("—"), Cell("—")]
        else:
            first = line.iloc[0]
            breakdown = float(first["breakdown"])
            row += [
                Cell(fmt_diff(first["slope"], first["slope_half_width"]), float(first["slope"])),
                Cell(fmt_diff(first["area"], first["area_half_width"]), float(first["area"])),
                Cell(f"{breakdown:g}" if math.isfinite(breakdown) else "—", breakdown),
            ]
        table.rows.append(row)
    return table


def _paired_items(paired: pd.DataFrame, where: dict[str, Any]) -> list[str]:
    """The significant differences in per-task degradation at the largest strengths."""
    here = rows_where(paired, **where)
    if here.empty:
        return []
    top = sorted(set(here["strength"]))[-TESTED_STRENGTHS:]
    items = []
    for row in here[here["strength"].isin(top)].itertuples(index=False):
        if row.verdict == "same":
            continue
        words = "degrades less than" if row.verdict == "less" else "degrades more than"
        items.append(
            f"s={row.strength:g}: {row.learner} {words} {row.other} (per-task Δ of the "
            f"degradation {fmt_diff(row.mean_diff, row.diff_half_width)} over "
            f"{row.n_pairs} tasks, {fmt_p(row.p_holm)}, Holm-adjusted)"
        )
    if not items:
        items.append(
            f"At s = {', '.join(f'{s:g}' for s in top)}: no pair of learners differs "
            "significantly in per-task degradation (Wilcoxon, Holm-adjusted)."
        )
    return items
