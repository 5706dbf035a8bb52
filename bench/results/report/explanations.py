"""The report's Explanations section: the sanity checks of field attributions stored beside the
results store (``bench explain --check``), per learner and dataset, and whether the
meta-learners' explanations were more faithful or stable than the baselines'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.results.analysis import Results
from bench.results.explanations import read_checks
from bench.results.report.document import Bullets, Cell, Paragraph, Section, Table

HEADERS = [
    "learner",
    "dataset",
    "scenario",
    "checked",
    "randomisation ρ (max)",
    "fields' effect",
    "deletion gain [95% CI]",
    "stability ρ",
    "top-3 fields (mean |attr| [95% CI])",
    "adaptation shift ρ",
    "planted top-1",
]


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _passed(entry: dict[str, Any], check: str) -> str:
    found = entry["passed"].get(check)
    return "" if found is None else (" ✓" if found else " ✗")


def _row(entry: dict[str, Any]) -> list[Cell]:
    randomisation = [v for v in entry["randomisation"].values() if v is not None]
    deletion = entry["deletion"]
    stability = (entry.get("stability") or {}).get("ranking")
    planted = entry.get("planted") or {}
    top = "; ".join(
        f"{t['field']} {_num(t.get('mean_abs'))} [{_num(t.get('low'))}, {_num(t.get('high'))}]"
        for t in entry["top_fields"][:3]
    )
    checked = "yes" if entry["checked"] else "no"
    return [
        Cell(entry["learner"]),
        Cell(entry["dataset"]),
        Cell(entry["scenario"]),
        Cell(checked, checked),
        Cell(
            (_num(max(randomisation)) if randomisation else "–") + _passed(entry, "randomisation"),
            max(randomisation) if randomisation else None,
        ),
        Cell(_num(deletion.get("effect"), 3), deletion.get("effect")),
        Cell(
            f"{_num(deletion.get('gain'))} [{_num(deletion.get('gain_low'))}, "
            f"{_num(deletion.get('gain_high'))}]{_passed(entry, 'deletion')}",
            deletion.get("gain"),
        ),
        Cell(_num(stability) + _passed(entry, "stability"), stability),
        Cell(top),
        Cell(_num(entry.get("adaptation_shift")), entry.get("adaptation_shift")),
        Cell(_num(planted.get("top1_rate")) + _passed(entry, "planted"), planted.get("top1_rate")),
    ]


def _mean(values: list[Any]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def comparison(entries: list[dict[str, Any]], baselines: Sequence[str]) -> str:
    """Whether the meta-learners' explanations were more faithful (deletion gain) or stable than
    the baselines', said whatever the outcome."""
    meta = [e for e in entries if e["learner"] not in baselines]
    base = [e for e in entries if e["learner"] in baselines]
    if not meta or not base:
        return "No comparison of meta-learners with baselines: the stored checks cover " + (
            "no baseline." if meta else "no meta-learner."
        )
    parts = []
    for label, key in (("faithful (deletion gain)", "gain"), ("stable (stability ρ)", "ranking")):
        source = "deletion" if key == "gain" else "stability"
        m = _mean([(e.get(source) or {}).get(key) for e in meta])
        b = _mean([(e.get(source) or {}).get(key) for e in base])
        if m is None or b is None:
            parts.append(f"{label}: not measured for both")
        else:
            verdict = "more" if m > b else "not more"
            parts.append(
                f"{verdict} {label} than the baselines' ({_num(m, 3)} against {_num(b, 3)})"
            )
    names = ", ".join(sorted({e["learner"] for e in meta}))
    return f"The meta-learners' explanations ({names}) were " + "; ".join(parts) + "."


def reported_checks(results: Results) -> list[dict[str, Any]]:
    """The stored checks of the reported runs (none without a checks file)."""
    runs = set(results.runs["run_id"]) if not results.runs.empty else set()
    return [e for e in read_checks(results.path) if e["run_id"] in runs]


def explanations_section(results: Results, baselines: Sequence[str]) -> Section | None:
    """The section, or None when no checks are stored for the reported runs."""
    entries = reported_checks(results)
    if not entries:
        return None
    entries.sort(key=lambda e: (e["dataset"], e["learner"], e["scenario"], e["method"]))
    table = Table(
        HEADERS, [_row(e) for e in entries], caption="Sanity checks of field attributions"
    )
    lead = Paragraph(
        "Field attributions (Captum, one group per feature field, baseline the field's "
        "frequency-weighted mean) checked on each learner refitted from the run's config and "
        "seed. The fields' effect is the mean absolute change of a prediction with every field "
        "unknown (in rating units): a model that barely uses its fields passes the checks "
        "trivially. A learner's explanations are *checked* when every check passed: randomising its "
        "weights (all at once and layer by layer from the output) leaves a rank correlation "
        "below 0.5; deleting fields in attribution order moves predictions more than a random "
        "order (CI above 0); fits from other seeds rank the fields alike (ρ ≥ 0.5); and on a "
        "planted dataset the planted field ranks first for ≥ 90% of predictions."
    )
    return Section(
        "Explanations",
        [lead, table, Bullets((comparison(entries, baselines),))],
        anchor="explanations",
    )
