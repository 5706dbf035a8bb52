"""A comparison as a terminal table with a closing summary, or as JSON for machines."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from tabulate import tabulate

from bench.results.gate.compare import VERDICTS, WORSE, Comparison, Verdict
from bench.results.report.formatting import fmt_p, fmt_seconds

HEADERS = (
    "verdict",
    "dataset",
    "protocol",
    "scenario",
    "k",
    "learner",
    "device",
    "metric",
    "baseline",
    "now",
    "change",
    "tolerance",
    "p (Holm)",
    "note",
)
FOOTER = (
    "A metric cell is worse or better when it moved by more than its tolerance (absolute, or "
    "relative to the baseline) and, where per-task values exist, the Wilcoxon signed-rank test "
    "on the same tasks finds the change significant after Holm's correction across all cells; "
    "values are means over the seeds both sides have. Timings compare as ratios (now / "
    "baseline) of fit seconds and adapt+predict seconds per seed."
)


def _value(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "–"
    return fmt_seconds(value) if kind == "timing" else f"{value:.6g}"


def _change(v: Verdict) -> str:
    if not math.isfinite(v.change):
        return "–"
    if v.kind == "timing":
        return f"×{v.change:.2f}"
    return f"{v.change:+.3g}"


def _tolerance(v: Verdict) -> str:
    if not math.isfinite(v.allowed):
        return "–"
    return f"×{v.allowed:g}" if v.kind == "timing" else f"±{v.allowed:.3g}"


def _row(v: Verdict) -> list[str]:
    return [
        v.verdict.upper() if v.verdict == WORSE else v.verdict,
        v.dataset,
        v.protocol,
        v.scenario,
        v.k,
        v.learner,
        v.device,
        v.metric,
        _value(v.old, v.kind),
        _value(v.new, v.kind),
        _change(v),
        _tolerance(v),
        fmt_p(v.p_holm).removeprefix("p=").removeprefix("p") if v.n_pairs else "–",
        v.note,
    ]


def _counts(comparison: Comparison) -> str:
    return ", ".join(f"{comparison.count(v)} {v}" for v in VERDICTS)


def render_text(comparison: Comparison, *, changes_only: bool = False) -> str:
    """The verdict table (only the cells that are not *same* with ``changes_only``), then the
    regressed cells one per line and the outcome."""
    shown = [v for v in comparison.verdicts if not (changes_only and v.verdict == "same")]
    lines = [f"check against {comparison.baseline}", ""]
    if shown:
        rows = [_row(v) for v in shown]
        lines += [tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True), ""]
    hidden = len(comparison.verdicts) - len(shown)
    if hidden:
        lines.append(f"({hidden} cell(s) marked same are not shown)")
    lines.append(FOOTER)
    if not comparison.timing:
        lines.append("Timings were not compared (--no-timing).")
    for v in comparison.where(WORSE):
        old, new = _value(v.old, v.kind), _value(v.new, v.kind)
        p = f", {fmt_p(v.p_holm)} after Holm" if v.n_pairs else ""
        lines.append(f"REGRESSED {v.title}: {old} -> {new} ({_change(v)}{p})")
    lines.append(f"{_counts(comparison)}: {comparison.outcome} (exit {comparison.exit_code})")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def comparison_document(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON-ready data: the same verdicts as the table."""
    return {
        "baseline": str(comparison.baseline),
        "exit_code": comparison.exit_code,
        "outcome": comparison.outcome,
        "counts": {v: comparison.count(v) for v in VERDICTS},
        "timing_compared": comparison.timing,
        "tolerances": comparison.tolerances.as_table(),
        "verdicts": [
            {key: _plain(value) for key, value in asdict(v).items()} for v in comparison.verdicts
        ],
    }


def render_json(comparison: Comparison) -> str:
    return json.dumps(comparison_document(comparison), indent=2, allow_nan=False)
