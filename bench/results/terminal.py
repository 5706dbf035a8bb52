"""Terminal tables: one per (dataset, protocol, scenario), learners as rows, metrics as columns,
mean over seeds with a 95% confidence interval; then a timing table."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.evaluation.ranking import TIE_POLICIES
from bench.evaluation.topn import is_topn_metric, shown_name, with_topn
from bench.protocol import SCENARIOS
from bench.protocol.base import WARM_HISTORY_NOTE
from bench.protocol.perturbation_labels import parse_label
from bench.results.analysis.stats import t_interval
from bench.results.analysis.views import agreements


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (NaN with fewer than two values)."""
    interval = t_interval(values)
    return interval.mean, interval.half_width


def format_mean_ci(values: Sequence[float], digits: int = 4) -> str:
    mean, half = mean_ci(values)
    if math.isnan(mean):
        return "n/a"
    if math.isnan(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ±{half:.{digits}f}"


def _k_order(k: str) -> tuple[int, int]:
    return (1, 0) if k == "all" else (0, int(k))


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    values = set(values)
    ranked = [v for v in preferred if v in values]
    return ranked + sorted(values - set(ranked))


Marks = dict[tuple[str, ...], list[str]]
"""Per (dataset, protocol, scenario, k, learner, device): words shown in a table's notes column
(``at floor: ndcg@5``, ``degenerate``), from :func:`bench.results.analysis.floors.marks_by_line`."""


def metric_tables(
    rows: list[dict[str, Any]],
    metrics: Sequence[str],
    learner_order: Sequence[str] = (),
    marks: Marks | None = None,
) -> list[tuple[str, list[str], list[list[str]]]]:
    """Group tidy metric rows into (title, headers, body) tables; with ``marks``, a notes column
    says which lines are at floor or degenerate."""
    grouped: dict[tuple[str, str, str], dict[tuple[str, str, str], dict[str, list[float]]]] = (
        defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    )
    tasks: dict[tuple[str, str, str, str, str, str], set[int]] = defaultdict(set)
    devices = {r["device"] for r in rows}
    for r in rows:
        if parse_label(r["scenario"])[1] is not None:
            continue  # perturbed evaluations: the report's Robustness section shows them
        table = (r["dataset"], r["protocol"], r["scenario"])
        line = (r["learner"], r["k"], r["device"])
        grouped[table][line][r["metric"]].append(r["value"])
        if r["metric"] == metrics[0]:
            tasks[(*table, *line)].add(r["n_tasks"])
    out = []
    show_device = len(devices) > 1
    ranked = any(is_topn_metric(m) for m in metrics)
    named = [shown_name(m, ranked) for m in metrics]
    for table in sorted(grouped, key=lambda t: (t[0], t[1], _scenario_rank(t[2]))):
        lines = grouped[table]
        learners = _order({line[0] for line in lines}, learner_order)
        headers = ["learner", "k", *(["device"] if show_device else []), *named, "tasks"]
        if marks is not None:
            headers.append("notes")
        body = []
        for k in sorted({line[1] for line in lines}, key=_k_order):
            for learner in learners:
                for device in sorted(devices):
                    line = (learner, k, device)
                    if line not in lines:
                        continue
                    cells = [format_mean_ci(lines[line][m]) for m in metrics]
                    counts = sorted(tasks.get((*table, *line), {0}))
                    # Seeds (or folds) may give different task counts: show their range.
                    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
                    row = [learner, k, *([device] if show_device else []), *cells, n]
                    if marks is not None:
                        row.append("; ".join(marks.get((*table, k, learner, device), [])))
                    body.append(row)
        title = f"{table[0]} · {table[1]} · {table[2]}"
        out.append((title, headers, body))
    return out


def _scenario_rank(scenario: str) -> int:
    return SCENARIOS.index(scenario) if scenario in SCENARIOS else len(SCENARIOS)


def timing_table(
    rows: list[dict[str, Any]], learner_order: Sequence[str] = ()
) -> tuple[list[str], list[list[str]]]:
    """Per (dataset, learner, device): fit seconds, adapt+predict seconds per evaluation, tasks per
    second over all evaluations, seconds ranking the catalogue per evaluation (where a suite
    ranks it), and peak memory; means over seeds."""
    acc: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = (r["dataset"], r["learner"], r["device"])
        if r["phase"] == "fit":
            acc[key]["fit"].append(r["seconds"])
        elif r["phase"] == "rank":
            acc[key]["rank"].append(r["seconds"])
        else:
            acc[key]["predict"].append(r["seconds"])
            acc[key]["tasks"].append(r["tasks"])
        acc[key]["memory"].append(r["peak_memory_bytes"])
        acc[key]["memory_kind"].append(0.0 if r["memory_kind"] == "rss" else 1.0)
    ranked = any(a["rank"] for a in acc.values())
    headers = ["dataset", "learner", "device", "fit s", "adapt+predict s", "tasks/s"]
    headers += ["rank s"] if ranked else []
    headers += ["peak memory"]
    body = []
    learners = _order({k[1] for k in acc}, learner_order)
    for dataset, learner, device in sorted(acc, key=lambda k: (k[0], learners.index(k[1]), k[2])):
        a = acc[(dataset, learner, device)]
        predict_total = sum(a["predict"])
        rate = sum(a["tasks"]) / predict_total if predict_total > 0 else float("nan")
        kind = "GPU" if a["memory_kind"] and max(a["memory_kind"]) > 0 else "RSS"
        body.append(
            [
                dataset,
                learner,
                device,
                format_mean_ci(a["fit"], 3),
                f"{np.mean(a['predict']):.4f}" if a["predict"] else "n/a",
                f"{rate:,.0f}" if not math.isnan(rate) else "n/a",
                *([f"{np.mean(a['rank']):.4f}" if a["rank"] else "n/a"] if ranked else []),
                f"{max(a['memory']) / 2**20:,.0f} MiB {kind}",
            ]
        )
    return headers, body


def metric_footer(title: str, body: list[list[str]]) -> str:
    """The symbols of one metric table, explained under it."""
    protocol = title.split(" · ")[1] if title.count(" · ") >= 2 else "protocol@N"
    ranged = any("-" in row[-1] for row in body if row)
    footer = (
        f"  {protocol}: protocol name@version. k: support ratings per task ('all': its whole "
        "pool). Values: mean ±95% CI over seeds (no ± with one seed). tasks: tasks scored per "
        "seed" + ("; a-b: the range over seeds or folds." if ranged else ".")
    )
    if title.endswith(" · warm") and any(row[1] != "all" for row in body):
        footer += f"\n  {WARM_HISTORY_NOTE}"
    return footer


MARKS_FOOTER = (
    "  notes: at floor: not significantly above the higher of floor-random and floor-constant "
    "on that ranking metric (paired Wilcoxon per task, Holm-adjusted, alpha 0.05); ignores "
    "support: on a seed, no task's predictions changed when its support set was taken away; "
    "degenerate: at least half of the tasks of a seed got the same prediction for every query "
    "item."
)

RANK_FOOTER = (
    "rank s: mean seconds per (scenario, k) ranking the catalogue (full and sampled top-N). "
)
TIMING_FOOTER = (
    "  fit s: mean ±95% CI over seeds. adapt+predict s: mean seconds per (scenario, k), after a "
    "warm-up on a few tasks. tasks/s: all tasks over all adapt+predict time. "
    "rank s: mean seconds per (scenario, k) ranking the catalogue (full and sampled top-N). "
    "peak memory: on CPU "
    "the peak resident memory (RSS) of the whole process while fitting or predicting, data and "
    "other learners included; on CUDA the peak memory torch allocated on the device."
)

RANKING_FOOTER = (
    "  ndcg@K/query: the task's own query ranked (graded gain). recall@K, ndcg@K/full: every "
    "candidate item ranked (all items but the user's training and support items; new items "
    "only in item_cold and user_item_cold). /sampled: the liked query items among the task's "
    "fixed sampled negatives. Relevant: liked query items."
)

UNSCORED_REASONS = {
    "ndcg": "query of fewer than 2 ratings",
    "auc": "query without both a liked and a disliked rating",
}


def unscored_reason(metric: str) -> str:
    if is_topn_metric(metric) or metric.startswith("each top-N"):
        return "no liked query item to find"
    return UNSCORED_REASONS.get(metric.partition("@")[0], "empty query")


def agreement_lines(
    metric_rows: list[dict[str, Any]], exclude: Sequence[str] = ("oracle",)
) -> dict[tuple[str, str, str], list[str]]:
    """Per table, one line per (k, device) on how full and sampled ranking order the learners."""
    import pandas as pd

    if not metric_rows:
        return {}
    frame = pd.DataFrame(metric_rows)
    keys = ["dataset", "protocol", "scenario", "k", "device", "learner", "metric"]
    means = frame.groupby(keys, as_index=False)["value"].mean().rename(columns={"value": "mean"})
    out: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for (dataset, protocol, scenario, k, device), found in agreements(means, exclude).items():
        where = f"k={k}" + (f", {device}" if means["device"].nunique() > 1 else "")
        out[(dataset, protocol, scenario)].append(f"  {where}: {found.sentence()}")
    return out


def render_terminal(
    metric_rows: list[dict[str, Any]],
    timing_rows: list[dict[str, Any]],
    metrics: Sequence[str],
    learner_order: Sequence[str] = (),
    summaries: dict[str, Any] | None = None,
    marks: Marks | None = None,
    tie_policy: str | None = None,
) -> str:
    parts = []
    metrics = with_topn(metrics, {r["metric"] for r in metric_rows})
    agreeing = agreement_lines(metric_rows)
    for title, headers, body in metric_tables(metric_rows, metrics, learner_order, marks):
        parts.append(f"\n{title}  (mean ±95% CI over seeds)")
        parts.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
        parts.append(metric_footer(title, [r[:-1] if marks is not None else r for r in body]))
        if marks is not None and any(r[-1] for r in body):
            parts.append(MARKS_FOOTER)
        parts.extend(agreeing.get(tuple(title.split(" · ")), []))  # type: ignore[arg-type]
    if any(is_topn_metric(m) for m in metrics):
        parts.append(RANKING_FOOTER.replace("  ", "\n", 1))
    if tie_policy is not None:
        parts.append(f"\nties in the predictions: {tie_policy} ({TIE_POLICIES[tie_policy]})")
    if timing_rows:
        headers, body = timing_table(timing_rows, learner_order)
        parts.append(
            "\ntiming (fit: mean ±95% CI over seeds; adapt+predict: mean per scenario and k)"
        )
        parts.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
        footer = TIMING_FOOTER
        if "rank s" not in headers:
            footer = footer.replace(RANK_FOOTER, "")
        parts.append(footer)
    unscored = [r for r in metric_rows if r["n_unscored"]]
    if unscored:
        counts: dict[str, int] = defaultdict(int)
        for r in unscored:
            counts[r["metric"]] += r["n_unscored"]
        top_n = {m: n for m, n in counts.items() if is_topn_metric(m)}
        if len(top_n) > 1 and len(set(top_n.values())) == 1:  # one line for them all
            counts = {m: n for m, n in counts.items() if m not in top_n}
            counts[f"each top-N metric ({len(top_n)})"] = next(iter(top_n.values()))
        note = "; ".join(f"{m}: {n} ({unscored_reason(m)})" for m, n in sorted(counts.items()))
        parts.append(f"\ntasks that could not be scored (summed over cells): {note}")
    return "\n".join(parts)
